"""Correlation modules (SCM, ICM) and their ablation peers, with config-facing registries.

Two registries map a config value to a builder ``builder(cfg, channels) -> nn.Module``:

- :data:`SEMANTIC_MODULES` — ``model.semantic.module`` (Table 5): ``none | attention | scm``;
- :data:`POSITION_MODULES` — ``model.instance.position`` (Table 6): ``none | coords | sine | icm``,
  plus ``icm-coords``, our extension (not the paper's): the ICM whose θ predictor also sees two
  CoordConv channels (see :mod:`cfnet.modules.icm`).

A new module registers with :func:`register_semantic_module` / :func:`register_position_module`
and becomes a valid config value at once (the config's choices are the registries' keys).
Every module a builder returns has an ``out_channels`` attribute; a position module may return
more channels than it gets (CoordConv: C + 2), a semantic module must return as many.

:func:`build_semantic_module` / :func:`build_position_module` are the keyword form for use
without a config: the keywords override the defaults of :class:`cfnet.config.Config`, the one
place defaults are written.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from cfnet.config import Config
from cfnet.modules.baselines import AddCoords, NonLocalBlock, SinePositionEmbedding
from cfnet.modules.icm import InstanceCorrelationModule
from cfnet.modules.scm import SemanticCorrelationModule
from cfnet.modules.theta import ThetaPredictor

__all__ = [
    "SemanticCorrelationModule",
    "InstanceCorrelationModule",
    "NonLocalBlock",
    "AddCoords",
    "SinePositionEmbedding",
    "ThetaPredictor",
    "SEMANTIC_MODULES",
    "POSITION_MODULES",
    "register_semantic_module",
    "register_position_module",
    "build_semantic_module",
    "build_position_module",
]

ModuleBuilder = Callable[[Config, int], nn.Module]
_B = TypeVar("_B", bound=ModuleBuilder)

SEMANTIC_MODULES: dict[str, ModuleBuilder] = {}
"""``model.semantic.module`` values → ``builder(cfg, channels)`` (:func:`register_semantic_module`)."""
POSITION_MODULES: dict[str, ModuleBuilder] = {}
"""``model.instance.position`` values → ``builder(cfg, channels)`` (:func:`register_position_module`)."""


def _register(registry: dict[str, ModuleBuilder], what: str, name: str) -> Callable[[_B], _B]:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"a {what} name must be a non-empty string without spaces around it, got {name!r}")

    def decorate(builder: _B) -> _B:
        if not callable(builder):
            raise TypeError(f"a {what} builder must be callable as builder(cfg, channels), got {builder!r}")
        if name in registry and registry[name] is not builder:
            raise ValueError(f"{what} {name!r} is already registered ({registry[name]!r})")
        registry[name] = builder
        return builder

    return decorate


def register_semantic_module(name: str) -> Callable[[_B], _B]:
    """Decorator: register ``builder(cfg, channels) -> nn.Module`` as ``model.semantic.module=name``.

    A class with a ``from_config(cfg, channels)`` classmethod can be registered by passing that
    method: ``register_semantic_module("mine")(MyModule.from_config)``.
    """
    return _register(SEMANTIC_MODULES, "semantic module", name)


def register_position_module(name: str) -> Callable[[_B], _B]:
    """Decorator: register ``builder(cfg, channels) -> nn.Module`` as ``model.instance.position=name``."""
    return _register(POSITION_MODULES, "position module", name)


def _identity(channels: int) -> nn.Module:
    module = nn.Identity()
    module.out_channels = channels
    return module


# ---------------------------------------------------------------------------------- the shipped ones
# Registration order is the order of the config's choices and of error messages.
register_semantic_module("none")(lambda cfg, channels: _identity(channels))
register_semantic_module("attention")(
    lambda cfg, channels: NonLocalBlock(channels, max_positions=cfg.model.semantic.max_global_positions)
)
register_semantic_module("scm")(SemanticCorrelationModule.from_config)

register_position_module("none")(lambda cfg, channels: _identity(channels))
register_position_module("coords")(lambda cfg, channels: AddCoords(channels))
register_position_module("sine")(lambda cfg, channels: SinePositionEmbedding(channels))
register_position_module("icm")(InstanceCorrelationModule.from_config)
# our extension, not the paper's (cfnet.modules.icm)
register_position_module("icm-coords")(
    lambda cfg, channels: InstanceCorrelationModule.from_config(cfg, channels, theta_coords=True)
)


# ---------------------------------------------------------------------------------- factories
# Keyword form: each keyword is a config key (its section and name in the config).
_OPTION_KEYS = {
    "num_levels": ("correlation", "num_levels"),
    "num_refs": ("correlation", "num_refs"),
    "hidden_channels": ("correlation", "hidden_channels"),
    "function": ("correlation", "function"),  # a registered name or a CorrelationFunction
    "mode": ("semantic", "scm_mode"),
    "max_global_positions": ("semantic", "max_global_positions"),
}


def _config_with(cfg: Config | None, options: dict[str, Any]) -> Config:
    if not options:
        return cfg if cfg is not None else Config()
    cfg = copy.deepcopy(cfg) if cfg is not None else Config()
    for key, value in options.items():
        if key not in _OPTION_KEYS:
            raise TypeError(f"unknown module option {key!r}; valid options: {', '.join(_OPTION_KEYS)}")
        section, name = _OPTION_KEYS[key]
        setattr(getattr(cfg.model, section), name, value)
    return cfg


def _build(registry: dict[str, ModuleBuilder], what: str, kind: str, channels: int, cfg, options):
    builder = registry.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise ValueError(f"unknown {what} kind {kind!r}; valid kinds: {', '.join(registry)}")
    return builder(_config_with(cfg, options), channels)


def build_semantic_module(kind: str, channels: int, cfg: Config | None = None, **options: Any) -> nn.Module:
    """The semantic-branch module registered as ``kind`` (Table 5: ``none``, ``attention``, ``scm``).

    Its settings come from ``cfg`` (default: :class:`~cfnet.config.Config`'s defaults), overridden
    by ``options``: ``num_levels``, ``mode``, ``hidden_channels``, ``max_global_positions``,
    ``function`` (the SCM's correlation function G, Eq. 5 for ``dft``).
    """
    return _build(SEMANTIC_MODULES, "semantic module", kind, channels, cfg, options)


def build_position_module(kind: str, channels: int, cfg: Config | None = None, **options: Any) -> nn.Module:
    """The instance-branch module registered as ``kind`` (Table 6: ``none``, ``coords``, ``sine``, ``icm``).

    Also ``icm-coords``: our extension, the ICM with CoordConv channels on its θ predictor's input
    only. Settings as in :func:`build_semantic_module` (``num_levels``, ``num_refs``,
    ``hidden_channels``, ``function``).
    """
    return _build(POSITION_MODULES, "position module", kind, channels, cfg, options)
