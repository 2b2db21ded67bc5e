"""Training and evaluation engine: ``cfnet train`` / ``eval`` / ``predict`` and their functions.

    from cfnet.engine import train, evaluate, predict_images
    result = train(cfg, "data/shapes", "runs/tiny", callback=print)
    metrics = evaluate(model, "data/shapes/val", "runs/tiny/eval")

Imports are lazy so that ``import cfnet.engine`` stays cheap.
"""

from __future__ import annotations

__all__ = ["train", "evaluate", "predict_images", "TrainingDiverged", "format_table"]

_WHERE = {
    "train": "cfnet.engine.train",
    "TrainingDiverged": "cfnet.engine.train",
    "evaluate": "cfnet.engine.evaluate",
    "format_table": "cfnet.engine.evaluate",
    "predict_images": "cfnet.engine.predict",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'cfnet.engine' has no attribute {name!r}")
