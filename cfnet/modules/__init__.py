"""Correlation modules (SCM, ICM) and their ablation peers, with config-facing factories.

Table 5 (semantic branch): ``build_semantic_module(kind)`` with kind ``none | attention | scm``.
Table 6 (instance branch): ``build_position_module(kind)`` with kind ``none | coords | sine | icm``,
plus ``icm-coords``, our extension (not the paper's): the ICM whose θ predictor also sees two
CoordConv channels (see :mod:`cfnet.modules.icm`).
Every module the factories return has an ``out_channels`` attribute. The correlation modules take
``function``, the registered name of their correlation function G (default ``dft``, Eq. 5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from cfnet.correlation import CorrelationFunction
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
    "build_semantic_module",
    "build_position_module",
    "SEMANTIC_KINDS",
    "POSITION_KINDS",
]

SEMANTIC_KINDS = ("none", "attention", "scm")


def _identity(channels: int) -> nn.Module:
    module = nn.Identity()
    module.out_channels = channels
    return module


def build_semantic_module(
    kind: str,
    channels: int,
    *,
    num_levels: int = 5,
    mode: str = "axial",
    hidden_channels: int = 64,
    max_global_positions: int = 16384,
    function: str | CorrelationFunction = "dft",
) -> nn.Module:
    """The semantic-branch module of Table 5: ``none`` (identity), ``attention`` (non-local), ``scm``.

    ``function`` names the SCM's correlation function G (Eq. 5 for ``dft``).
    """
    if kind == "none":
        return _identity(channels)
    if kind == "attention":
        return NonLocalBlock(channels, max_positions=max_global_positions)
    if kind == "scm":
        return SemanticCorrelationModule(
            channels,
            num_levels=num_levels,
            mode=mode,
            hidden_channels=hidden_channels,
            max_global_positions=max_global_positions,
            function=function,
        )
    raise ValueError(f"unknown semantic module kind {kind!r}; valid kinds: {', '.join(SEMANTIC_KINDS)}")


def _icm(theta_coords: bool) -> Callable[..., nn.Module]:
    def build(
        channels: int,
        *,
        num_levels: int,
        num_refs: int | Sequence[int],
        hidden_channels: int,
        function: str | CorrelationFunction,
    ) -> nn.Module:
        return InstanceCorrelationModule(
            channels,
            num_levels=num_levels,
            num_refs=num_refs,
            hidden_channels=hidden_channels,
            function=function,
            theta_coords=theta_coords,
        )

    return build


# The one list of position kinds: the factory, its error message and the config's choices for
# model.instance.position all read it. Every builder takes the channels and the correlation
# keywords; the baselines ignore the latter.
_POSITION_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "none": lambda channels, **_: _identity(channels),
    "coords": lambda channels, **_: AddCoords(channels),
    "sine": lambda channels, **_: SinePositionEmbedding(channels),
    "icm": _icm(theta_coords=False),
    "icm-coords": _icm(theta_coords=True),  # our extension, not the paper's (cfnet.modules.icm)
}
POSITION_KINDS = tuple(_POSITION_BUILDERS)


def build_position_module(
    kind: str,
    channels: int,
    *,
    num_levels: int = 5,
    num_refs: int | Sequence[int] = 16,
    hidden_channels: int = 64,
    function: str | CorrelationFunction = "dft",
) -> nn.Module:
    """The instance-branch module of Table 6: ``none``, ``coords`` (CoordConv), ``sine`` (DETR), ``icm``.

    Also ``icm-coords``: our extension, the ICM with CoordConv channels on its θ predictor's input
    only. ``function`` names the ICM's correlation function G (Eq. 5 for ``dft``).
    """
    build = _POSITION_BUILDERS.get(kind) if isinstance(kind, str) else None
    if build is None:
        raise ValueError(f"unknown position module kind {kind!r}; valid kinds: {', '.join(POSITION_KINDS)}")
    return build(
        channels,
        num_levels=num_levels,
        num_refs=num_refs,
        hidden_channels=hidden_channels,
        function=function,
    )
