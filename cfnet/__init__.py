"""CFNet: learning correlation functions for one-stage panoptic segmentation.

Public entry points::

    cfg = cfnet.get_config("shapes-tiny", ["model.semantic.module=attention"])
    model = cfnet.build_model(cfg)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["get_config", "build_model", "load_checkpoint", "__version__"]


def __getattr__(name: str):
    # Lazy so `import cfnet` (and the CLI's start-up) does not import torch.
    if name == "get_config":
        from cfnet.config import get_config

        return get_config
    if name == "build_model":
        from cfnet.model import build_model

        return build_model
    if name == "load_checkpoint":
        from cfnet.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'cfnet' has no attribute {name!r}")
