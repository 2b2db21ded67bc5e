"""``cfnet info``: parameter counts per component and the resolved config of a preset.

    cfnet info --preset paper-r50 model.semantic.module=none --json info.json

Components (disjoint, they add up to the total; Table 8 of the paper counts all parameters,
frozen ones included, and so do we):

=============  ==============================================================================
backbone       the ResNet body (stem + res2..res5, DCN offsets included)
fpn            the FPN (lateral and output convs; P6 is a parameter-free subsampling)
instance       the SOLOv2 branch: kernel/category towers and predictors, mask-feature branch
semantic       the semantic branch: shared conv tower and 1×1 classifier
scm            the shared semantic module (SCM, or the non-local block with ``attention``)
icm            the shared position module (ICM; 0 for ``coords``/``sine``/``none``)
=============  ==============================================================================
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch import nn

__all__ = ["count_parameters", "add_arguments", "main"]

COMPONENTS = ("backbone", "fpn", "instance", "semantic", "scm", "icm")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total", "backbone", "fpn", "instance", "semantic", "scm", "icm"}`` parameter counts of a CFNet."""
    scm = _count(model.semantic_head.module)
    icm = _count(model.instance_head.position)
    counts = {
        "total": _count(model),
        "backbone": _count(model.backbone.body),
        "fpn": _count(model.backbone.fpn),
        "instance": _count(model.instance_head) - icm,
        "semantic": _count(model.semantic_head) - scm,
        "scm": scm,
        "icm": icm,
    }
    rest = counts["total"] - sum(counts[k] for k in COMPONENTS)
    if rest:  # a new top-level submodule would silently escape the table otherwise
        raise RuntimeError(f"count_parameters: {rest} parameters belong to no component")
    return counts


def format_table(counts: dict[str, int]) -> str:
    lines = [f"{'component':<10} {'parameters':>12} {'M':>8}", "-" * 32]
    for key in COMPONENTS + ("total",):
        if key == "total":
            lines.append("-" * 32)
        lines.append(f"{key:<10} {counts[key]:>12,d} {counts[key] / 1e6:>8.3f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, help="preset name (cfnet/presets) or a YAML path")
    parser.add_argument(
        "overrides", nargs="*", help="config overrides key=value (e.g. model.semantic.module=none)"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write {params, config} to this JSON file"
    )


def main(args: argparse.Namespace) -> int:
    from cfnet.config import ConfigError, get_config
    from cfnet.model import build_model
    from cfnet.panoptic_io import check_output_file, describe_os_error

    try:
        if args.json is not None:
            check_output_file(args.json, "--json")  # before any work
        cfg = get_config(args.preset, args.overrides)
        model = build_model(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"cfnet info: {e}", file=sys.stderr)
        return 2
    counts = count_parameters(model)
    print(f"preset {args.preset}" + (f" with {' '.join(args.overrides)}" if args.overrides else ""))
    print(format_table(counts))
    print()
    print(cfg.to_yaml(), end="")
    if args.json is not None:
        try:
            args.json.write_text(json.dumps({"params": counts, "config": cfg.to_dict()}, indent=2))
        except OSError as e:
            print(f"cfnet info: --json: cannot write {describe_os_error(e)}", file=sys.stderr)
            return 1
        print(f"wrote {args.json}")
    return 0
