"""Configs are data: nested dataclasses, filled from YAML presets, changed by ``key=value`` overrides.

    cfg = get_config("paper-r50", ["model.semantic.module=attention", "solver.base_lr=0.02"])

A preset is a YAML file in ``cfnet/presets/`` (or any path); ``_base_: other-preset`` inherits and
overrides. Every ablation of the paper (Tables 4–8) is an override of a preset, never a code fork:

====================================  ============================================================
ablation                              override
====================================  ============================================================
Table 4/5: semantic module            ``model.semantic.module=none|attention|scm``
Eq. 8 vs Eq. 9 aggregation            ``model.semantic.scm_mode=global|axial``
Table 4/6: instance position module   ``model.instance.position=none|coords|sine|icm``
no position anywhere (control)        ``model.instance.position=none model.instance.mask_coords=false``
ours: ICM whose θ sees CoordConv      ``model.instance.position=icm-coords``
Table 7: Fourier levels N, grid S     ``model.correlation.num_levels=3``, ``model.correlation.num_refs=32``
correlation function G (Eq. 5)        ``model.correlation.function=dft|dft-periodic|gaussian``
Table 8: deeper semantic head         ``model.semantic.num_convs=7``
Eq. 1: λ                              ``model.semantic.loss_weight=0.5``
another backbone family               ``model.backbone.name=regnet_y_400mf``
====================================  ============================================================

Unknown keys and values of the wrong type are errors that name the key. The allowed values of
the keys that pick a part (``model.backbone.name``, ``model.semantic.module``,
``model.instance.position``, ``model.correlation.function``) are the names registered in the
code that builds it (:data:`CHOICES`), so a part registered by user code is a valid value;
``docs/extending.md`` shows how. This module is the one place defaults are written.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A config key, value or preset is wrong; the message names it."""


@dataclass
class BackboneConfig:
    # a name registered in cfnet.backbone.BACKBONES: "resnet" (the ResNet family, with depth) or a
    # torchvision model of another family ("regnet_y_400mf")
    name: str = "resnet"
    depth: int = 50  # ResNet 10 / 18 / 34 / 50 / 101 (10: one basic block per stage)
    dcn: bool = False  # deformable 3x3 convs in stages 3-5 (the paper's "*" rows)
    pretrained: str | None = None  # torchvision weights enum name, e.g. "IMAGENET1K_V1"; None = random
    # fpn_channels is the width of P2..P6; the heads read it from the built backbone's out_channels
    norm: str = "frozen_bn"  # frozen_bn | bn | gn
    frozen_stages: int = 1  # stem + res2 frozen, as detectron2 / mmdet do for ImageNet init
    fpn_channels: int = 256


@dataclass
class CorrelationConfig:
    num_levels: int = 5  # N, Fourier levels of Eq. 5
    num_refs: int = 16  # S, reference grid of the ICM (S x S points)
    hidden_channels: int = 64  # width of the theta predictor's 3x3 conv (Fig. 4/5)
    # G of SCM and ICM: a name registered in cfnet.correlation.CORRELATION_FUNCTIONS. "dft" is the
    # paper's mirrored Eq. 5; "dft-periodic" (Eq. 3) and "gaussian" are ablations.
    function: str = "dft"


@dataclass
class SemanticConfig:
    module: str = "scm"  # cfnet.modules.SEMANTIC_MODULES: none | attention | scm   (Table 5)
    scm_mode: str = "axial"  # axial (Eq. 9) | global (Eq. 8)
    num_convs: int = 4  # stacked 3x3 GN convs shared across P2-P5 (Table 8 "deeper head": 7)
    channels: int = 128
    loss_weight: float = 0.5  # lambda of Eq. 1
    # Global SCM / attention: largest H*W aggregated with all (HW)^2 weights at once (the dense path,
    # when they also fit cfnet.modules.chunked.MAX_CHUNK_BYTES); larger maps go a block of query
    # pixels at a time in bounded memory. Before query blocks: the largest map accepted at all.
    max_global_positions: int = 16384


@dataclass
class InstanceConfig:
    # cfnet.modules.POSITION_MODULES: none | coords | sine | icm (Table 6) | icm-coords (our extension)
    position: str = "icm"
    num_grids: list[int] = field(default_factory=lambda: [40, 36, 24, 16, 12])
    strides: list[int] = field(default_factory=lambda: [8, 8, 16, 32, 32])
    scale_ranges: list[list[float]] = field(
        default_factory=lambda: [[1, 96], [48, 192], [96, 384], [192, 768], [384, 2048]]
    )
    sigma: float = 0.2  # centre-region scale of SOLO's assignment
    num_convs: int = 4  # kernel / category branch depth
    channels: int = 512  # kernel / category branch width
    mask_feature_channels: int = 256  # unified mask feature (= dynamic kernel size E)
    mask_feature_levels: int = 4  # P2..P(1+levels) feed the mask feature branch
    # SOLOv2's CoordConv channels at the mask branch's coarsest level; false = no explicit position
    # anywhere in the mask branch (the ablation study's no-position control, `scm-nopos-nomc`)
    mask_coords: bool = True
    dice_weight: float = 3.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_weight: float = 1.0
    soft_mask_targets: bool = False  # average-pooled (soft) stride-4 mask targets
    # keep a predicted mask only if its area > ratio * its level's stride; SOLOv2 uses 1.0, 0 keeps all
    min_mask_area_ratio: float = 0.0


@dataclass
class InferenceConfig:
    score_thr: float = 0.1  # category score threshold before Matrix NMS
    update_thr: float = 0.3  # score threshold after Matrix NMS
    mask_thr: float = 0.5
    nms_pre: int = 500
    max_per_img: int = 100
    nms_kernel: str = "gaussian"  # gaussian | linear
    nms_sigma: float = 2.0
    overlap_thr: float = 0.5  # panoptic fusion: drop an instance whose visible part is < this fraction
    stuff_area: int = 4096  # panoptic fusion: drop stuff segments smaller than this (pixels of the input)


@dataclass
class InputConfig:
    min_size_test: int = 800
    max_size_test: int = 1333
    size_divisibility: int = 32
    pixel_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    pixel_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class ModelConfig:
    categories: str = "coco"  # shipped set (coco, shapes) or a JSON path; see cfnet.categories
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    correlation: CorrelationConfig = field(default_factory=CorrelationConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    instance: InstanceConfig = field(default_factory=InstanceConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    input: InputConfig = field(default_factory=InputConfig)
    # zeros | circular: circular removes the border cue from which a CNN infers absolute position
    # (cfnet/padding.py); the study's position controls use it
    padding: str = "zeros"


@dataclass
class DataConfig:
    min_size_train: list[int] = field(default_factory=lambda: [640, 672, 704, 736, 768, 800])
    max_size_train: int = 1333
    crop_size: list[int] | None = None  # [h, w] random crop after resizing; None = no crop
    flip_prob: float = 0.5
    num_workers: int = 4


@dataclass
class SolverConfig:
    optimizer: str = "sgd"  # sgd | adamw
    base_lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    batch_size: int = 16  # total over all processes
    max_iters: int = 270000
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    steps: list[int] = field(default_factory=lambda: [210000, 250000])
    gamma: float = 0.1
    clip_grad_norm: float | None = 35.0
    amp: bool = True  # used on CUDA only
    checkpoint_period: int = 5000
    log_period: int = 20


@dataclass
class Config:
    name: str = "custom"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        cfg = cls()
        _merge(cfg, data, prefix="")
        return cfg


# ----------------------------------------------------------------------------------------------
# presets and overrides


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_preset(name_or_path: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        path = Path(name_or_path)
    if not path.is_file():
        hint = difflib.get_close_matches(str(name_or_path), list_presets(), n=1)
        raise ConfigError(
            f"unknown preset {name_or_path!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; presets: {', '.join(list_presets())}, or a path to a YAML file"
        )
    if str(path) in chain:
        raise ConfigError(f"preset {path}: _base_ cycle {' -> '.join(chain)}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"preset {path}: invalid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path}: expected a mapping at top level")
    base = data.pop("_base_", None)
    if base is None:
        return data
    merged = _read_preset(base, chain + (str(path),))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def get_config(name: str, overrides: Iterable[str] = ()) -> Config:
    """The config of preset ``name`` (or a YAML path) with ``key=value`` overrides applied.

    Values are parsed as YAML (``x=3``, ``x=[1, 2]``, ``x=null``, ``x=true``) and type-checked.
    """
    data = _read_preset(name)
    data.setdefault("name", Path(name).stem)
    cfg = Config()
    _merge(cfg, data, prefix="")
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: Iterable[str]) -> Config:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. model.semantic.module=none)")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key}: cannot parse value {raw!r} ({e})") from e
        nested: dict[str, Any] = {}
        cur = nested
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
        _merge(cfg, nested, prefix="")
    return cfg


def _merge(obj: Any, data: dict[str, Any], prefix: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"config key {prefix.rstrip('.') or '<root>'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        full = prefix + key
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            raise ConfigError(
                f"unknown config key {full!r}"
                + (f" (did you mean {prefix + hint[0]!r}?)" if hint else "")
                + f"; valid keys here: {', '.join(names)}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, prefix=full + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key {key!r}: invalid value {value!r}")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-2" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
    raise ConfigError(f"config key {key!r}: unsupported type {tp}")


def _from(module: str, attribute: str) -> Callable[[], tuple[Any, ...]]:
    """The allowed values of a key, read at validation time from the code that implements them
    (a registry's keys or a module's tuple), so that what user code registers is a valid choice.
    Imported lazily: the model code needs torch, the config does not."""

    def allowed() -> tuple[Any, ...]:
        import importlib

        return tuple(getattr(importlib.import_module(module), attribute))

    allowed.__qualname__ = f"{module}.{attribute}"
    return allowed


# Allowed values per key: the registry or list in the code that implements the choices; a plain
# tuple only where no code holds one.
CHOICES: dict[str, tuple[Any, ...] | Callable[[], tuple[Any, ...]]] = {
    "model.backbone.name": _from("cfnet.backbone", "BACKBONES"),
    "model.backbone.depth": _from("cfnet.backbone", "DEPTHS"),
    "model.backbone.norm": _from("cfnet.backbone", "NORMS"),
    "model.semantic.module": _from("cfnet.modules", "SEMANTIC_MODULES"),
    "model.semantic.scm_mode": _from("cfnet.modules.scm", "SCM_MODES"),
    "model.instance.position": _from("cfnet.modules", "POSITION_MODULES"),
    "model.correlation.function": _from("cfnet.correlation", "CORRELATION_FUNCTIONS"),
    "model.inference.nms_kernel": _from("cfnet.matrix_nms", "KERNELS"),
    "model.padding": _from("cfnet.padding", "PADDING_MODES"),
    "solver.optimizer": ("sgd", "adamw"),
}


def choices(key: str) -> tuple[Any, ...]:
    """The allowed values of config key ``key`` (one of :data:`CHOICES`), e.g. the registered names."""
    allowed = CHOICES[key]
    return allowed() if callable(allowed) else allowed


def validate(cfg: Config) -> Config:
    """Cross-field checks (choices, list lengths); called by build_model and the trainer."""
    for key in CHOICES:
        allowed = choices(key)
        value: Any = cfg
        for p in key.split("."):
            value = getattr(value, p)
        if value not in allowed:
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {', '.join(map(str, allowed))}")
    if cfg.model.padding != "zeros" and cfg.model.backbone.dcn:
        raise ConfigError(
            f"config key 'model.padding': {cfg.model.padding!r} needs model.backbone.dcn=false "
            "(deformable convolutions pad with zeros only)"
        )
    inst = cfg.model.instance
    n = len(inst.num_grids)
    if not (len(inst.strides) == len(inst.scale_ranges) == n):
        raise ConfigError(
            "config keys model.instance.num_grids / strides / scale_ranges must have the same length "
            f"(got {n}, {len(inst.strides)}, {len(inst.scale_ranges)})"
        )
    if n > 5:
        raise ConfigError(f"config key 'model.instance.num_grids': at most 5 levels (P2-P6), got {n}")
    if cfg.data.crop_size is not None and len(cfg.data.crop_size) != 2:
        raise ConfigError(f"config key 'data.crop_size': expected [h, w], got {cfg.data.crop_size}")
    _check_solver_ranges(cfg)
    return cfg


# (key, smallest allowed value): a 0 period divides by zero, 0 iterations train nothing.
_SOLVER_MINIMUM = {
    "solver.max_iters": 1,
    "solver.batch_size": 1,
    "solver.checkpoint_period": 1,
    "solver.log_period": 1,
    "solver.warmup_iters": 0,
    "data.num_workers": 0,
}


def _check_solver_ranges(cfg: Config) -> None:
    for key, low in _SOLVER_MINIMUM.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value < low:
            raise ConfigError(f"config key {key!r}: must be >= {low}, got {value}")
    s = cfg.solver
    if s.base_lr < 0:
        raise ConfigError(f"config key 'solver.base_lr': must be >= 0, got {s.base_lr}")
    if s.clip_grad_norm is not None and s.clip_grad_norm <= 0:
        raise ConfigError(
            f"config key 'solver.clip_grad_norm': must be > 0 (or null = off), got {s.clip_grad_norm}"
        )


def config_kwargs(target: Callable[..., Any], *sections: Any) -> dict[str, Any]:
    """The keyword-only arguments of ``target`` that config ``sections`` (dataclasses) hold, by name.

    The detectron2-style ``from_config`` classmethods use it so that the cfg-to-arguments mapping
    is the names themselves: a keyword-only constructor argument named like a config field gets
    that field's value; positional arguments (channels, the module a head wraps) are the caller's,
    and a required keyword no section holds is left to the caller (Python names it if missing).
    """
    import inspect

    params = inspect.signature(target).parameters
    wanted = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    out: dict[str, Any] = {}
    for section in sections:
        for f in dataclasses.fields(section):
            if f.name in wanted:
                out[f.name] = getattr(section, f.name)
    return out


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(cfg.to_yaml())


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from e
    return Config.from_dict(data)
