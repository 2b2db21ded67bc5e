"""``cfnet bench parts``: where SCM and ICM spend their time inside the model, and what is left.

    cfnet bench parts --preset paper-r50 --size 800x1333 --repeats 5

The question it answers (performance issue, item 2): the Table 8 model ("ours": SCM + ICM, four
semantic convs) costs more than the Table 8 baseline (no semantic module, three semantic convs,
CoordConv); which parts of that difference could an exact rewrite remove, and which are fixed by
the architecture?

It builds both models from the preset (random weights, ``--baseline`` holds the baseline's
overrides), runs ours once on a random image of ``--size`` to capture the inputs its SCM (P2–P5,
shared), its ICM (every instance level) and its last semantic tower conv actually receive, and
then times, in rounds (every part once per round, both full models once per round, so a drift of
the machine's load hits all of them alike; medians over ``--repeats`` rounds after ``--warmup``):

- the full eval forward of each model (:func:`cfnet.bench.model.time_inference`);
- the SCM (axial, Eq. 9) split into its θ predictor's 3×3 conv + ReLU, its two 1×1 heads, G at the
  row and column positions, the softmax, and the row and column aggregations (batched matmuls);
- the ICM split into its θ predictor's 3×3 conv + ReLU, its 1×1 heads, the correlation features
  c (Eq. 10), W_f·f and the S²→C projection of c (Eq. 11);
- the extra semantic conv (ours has 4, the baseline 3): the last tower conv + GN + ReLU;
- two exact alternatives, timed against the code the model runs:

  * **axial aggregation through fused SDPA.** For a family that is linear in its coefficients
    (:class:`~cfnet.correlation.LinearCorrelationFunction`: ``dft``, ``dft-periodic``; not
    ``gaussian``, whose widths are non-linear) the row weights are softmax(c(θ_u)·B(v_x)):
    attention with (2N+1)-dimensional queries c(θ) and keys B. The CPU's fused (flash) kernel
    needs keys as wide as the values, so queries and keys are zero-padded to C (exact: the
    padding adds zeros to every dot product);
  * **ICM projection folded into the basis.** conv1x1(c) = Σ_ab W[o, a, b] G(θ^ver, py_a)
    G(θ^hor, px_b) with G = c(θ)·B, so W can be contracted with the bases once per map size:
    W'[o, k, l] = Σ_ab W[o, a, b] B_y[k, a] B_x[l, b], and conv1x1(c) = W'·(c(θ^ver) ⊗ c(θ^hor)):
    (2N+1)² = 121 products per output channel instead of S² = 256.

  Each alternative (measured only for linear families, the first only where the device has a
  fused kernel) has its largest difference from the model's output, relative to the output's
  largest magnitude, reported beside its time.

The **floor** is what no rewrite of the correlation itself removes: the θ predictors' 3×3
convolutions (their width is fixed by the paper's +0.60 M budget, ``hidden_channels``) and the
extra semantic conv. ``floor_ratio = 1 + floor / baseline``: ours / baseline cannot drop below it
on this machine with the model as the paper defines it.

Only SCM in ``axial`` mode and the ICM (``icm`` / ``icm-coords``) are split; a model without them
raises a clear error. Times are per image (batch of one), on the CPU or CUDA (every timer
synchronises on CUDA).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cfnet.bench.model import machine_info, parse_size, time_inference

__all__ = ["add_arguments", "main", "run", "capture_inputs", "scm_parts", "icm_parts", "TABLE8_BASELINE"]

TABLE8_BASELINE = "model.semantic.module=none model.semantic.num_convs=3 model.instance.position=coords"
"""The Table 8 baseline as overrides of a ``paper-*`` preset (see ``docs/benchmarks.md``)."""

Part = Callable[[], object]


@torch.no_grad()
def capture_inputs(model: nn.Module, image: Tensor) -> dict[str, list[Tensor]]:
    """The inputs ``model``'s SCM, ICM and last semantic tower conv receive on ``image`` (eval).

    Returns ``{"scm": [P2..P5 inputs], "icm": [one per instance level], "sem_conv": [...]}``.
    """
    captured: dict[str, list[Tensor]] = {"scm": [], "icm": [], "sem_conv": []}
    head = model.semantic_head
    targets = {"scm": head.module, "icm": model.instance_head.position}
    if len(head.tower):
        targets["sem_conv"] = head.tower[-1]
    handles = [
        m.register_forward_pre_hook(lambda _m, inp, key=key: captured[key].append(inp[0]))
        for key, m in targets.items()
    ]
    try:
        batch, _ = model.transform([image])
        features = model.features(batch.tensors)
        head(features)
        model.instance_head(features)
    finally:
        for h in handles:
            h.remove()
    return captured


def _axial_sdpa(x: Tensor, theta_hor: Tensor, theta_ver: Tensor, function) -> Tensor | None:
    """Eq. 9 (DESIGN's axes) as two fused-SDPA calls; ``function`` must be linear in its coefficients.

    ``None`` where this device has no fused kernel for it (then there is nothing to compare: the
    unfused SDPA is the matmul form itself).
    """
    from cfnet.correlation import pixel_coords
    from cfnet.modules.chunked import fused_dot_attention

    batch, channels, height, width = x.shape
    pad = channels - function.coefficients(theta_hor[:1, :1, :1]).shape[-1]
    if pad < 0:
        raise ValueError(f"SDPA form needs C >= the number of basis functions; C={channels}")

    def axis(coef: Tensor, basis: Tensor, values: Tensor) -> Tensor:
        # coef (n, L, P'), basis (P', L), values (n, L, C): rows of the map as a batch.
        q = F.pad(coef, (0, pad))
        k = F.pad(basis.T, (0, pad)).expand(coef.shape[0], -1, -1)
        return fused_dot_attention(q, k, values)

    xs = pixel_coords(width, device=x.device, dtype=theta_hor.dtype)
    ys = pixel_coords(height, device=x.device, dtype=theta_ver.dtype)
    rows = axis(
        function.coefficients(theta_hor).reshape(batch * height, width, -1),
        function.basis(xs, width),
        x.permute(0, 2, 3, 1).reshape(batch * height, width, channels),
    )
    cols = axis(
        function.coefficients(theta_ver).transpose(1, 2).reshape(batch * width, height, -1),
        function.basis(ys, height),
        x.permute(0, 3, 2, 1).reshape(batch * width, height, channels),
    )
    if rows is None or cols is None:
        return None
    rows = rows.reshape(batch, height, width, channels)
    cols = cols.reshape(batch, width, height, channels)
    return rows.permute(0, 3, 1, 2) + cols.permute(0, 3, 2, 1)


def _folded_projection(module, theta_hor: Tensor, theta_ver: Tensor) -> Tensor:
    """conv1x1(c) of Eq. 11 with W contracted with the bases (see the module docstring)."""
    _, height, width, _ = theta_hor.shape
    f = module.function
    ys, xs = module.reference_points(height, width, device=theta_hor.device, dtype=theta_hor.dtype)
    b_y, b_x = f.basis(ys, height), f.basis(xs, width)  # (P', S_y), (P', S_x)
    weight = module.correlation_proj.weight  # (C, S_y·S_x, 1, 1)
    w = weight.reshape(weight.shape[0], len(ys), len(xs))
    folded = torch.einsum("oab,ka,lb->okl", w, b_y, b_x).reshape(weight.shape[0], -1)  # (C, P'²)
    cv, ch = f.coefficients(theta_ver), f.coefficients(theta_hor)  # (B, H, W, P')
    outer = (cv[..., :, None] * ch[..., None, :]).flatten(-2)  # (B, H, W, P'²)
    out = torch.addmm(module.correlation_proj.bias, outer.reshape(-1, outer.shape[-1]), folded.T)
    return out.reshape(*theta_hor.shape[:3], -1).permute(0, 3, 1, 2)


def _rel_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _over(levels: list, fn: Callable) -> Part:
    return lambda: [fn(*args) for args in levels]


@torch.no_grad()
def scm_parts(module: nn.Module, inputs: list[Tensor]) -> tuple[dict[str, Part], dict[str, dict]]:
    """The SCM's parts over ``inputs`` (its P2–P5 inputs), and its exact alternatives with their error.

    Returns ``(parts, alternatives)``: ``parts`` maps a name to a callable that runs that part on
    every level (from precomputed inputs); ``alternatives`` maps a name to
    ``{"run": callable, "replaces": part name, "max_rel_diff": float}``.
    """
    from cfnet.correlation import LinearCorrelationFunction, pixel_coords
    from cfnet.modules.scm import SemanticCorrelationModule, _axial_aggregate

    if not isinstance(module, SemanticCorrelationModule) or module.mode != "axial":
        raise ValueError("cfnet bench parts splits the SCM in axial mode only (model.semantic.module=scm)")
    f, theta = module.function, module.theta
    levels = []
    for x in inputs:
        h = torch.relu(theta.conv(x))
        th, tv = module.params(x)
        xs = pixel_coords(x.shape[-1], dtype=th.dtype, device=x.device)
        ys = pixel_coords(x.shape[-2], dtype=tv.dtype, device=x.device)
        gr, gc = f.evaluate(th, xs, x.shape[-1]), f.evaluate(tv, ys, x.shape[-2])
        wr, wc = torch.softmax(gr, -1), torch.softmax(gc, -1)
        levels.append(
            dict(x=x, h=h, th=th, tv=tv, xs=xs, ys=ys, gr=gr, gc=gc, wr=wr, wc=wc, H=len(ys), W=len(xs))
        )
    lv = [(v,) for v in levels]
    parts = {
        "SCM θ 3×3 conv + ReLU": _over(lv, lambda v: torch.relu(theta.conv(v["x"]))),
        "SCM θ 1×1 heads": _over(lv, lambda v: (theta.hor(v["h"]), theta.ver(v["h"]))),
        "SCM G at row/column positions": _over(
            lv, lambda v: (f.evaluate(v["th"], v["xs"], v["W"]), f.evaluate(v["tv"], v["ys"], v["H"]))
        ),
        "SCM softmax": _over(lv, lambda v: (torch.softmax(v["gr"], -1), torch.softmax(v["gc"], -1))),
        "SCM row aggregation (matmul)": _over(
            lv, lambda v: torch.matmul(v["wr"], v["x"].permute(0, 2, 3, 1))
        ),
        "SCM column aggregation (matmul)": _over(
            lv, lambda v: torch.matmul(v["wc"].transpose(1, 2), v["x"].permute(0, 3, 2, 1))
        ),
        "SCM aggregation from θ (as the model runs it)": _over(
            lv, lambda v: _axial_aggregate(v["x"], v["th"], v["tv"], f)
        ),
    }
    alternatives = {}
    linear = isinstance(f, LinearCorrelationFunction)
    fused = [_axial_sdpa(v["x"], v["th"], v["tv"], f) for v in levels] if linear else [None]
    if all(out is not None for out in fused):  # a linear family and a fused kernel on this device
        diff = max(
            _rel_diff(out, _axial_aggregate(v["x"], v["th"], v["tv"], f)) for out, v in zip(fused, levels)
        )
        alternatives["SCM aggregation from θ via fused SDPA"] = {
            "run": _over(lv, lambda v: _axial_sdpa(v["x"], v["th"], v["tv"], f)),
            "replaces": "SCM aggregation from θ (as the model runs it)",
            "max_rel_diff": diff,
        }
    return parts, alternatives


@torch.no_grad()
def icm_parts(module: nn.Module, inputs: list[Tensor]) -> tuple[dict[str, Part], dict[str, dict]]:
    """The ICM's parts over ``inputs`` (one per instance level); as :func:`scm_parts`."""
    from cfnet.correlation import LinearCorrelationFunction
    from cfnet.modules.icm import InstanceCorrelationModule

    if not isinstance(module, InstanceCorrelationModule):
        raise ValueError("cfnet bench parts needs the ICM (model.instance.position=icm or icm-coords)")
    theta = module.theta

    def theta_input(x: Tensor) -> Tensor:
        return x if module.theta_input is None else module.theta_input(x)

    levels = []
    for x in inputs:
        h = torch.relu(theta.conv(theta_input(x)))
        th, tv = module.params(x)
        levels.append(dict(x=x, h=h, th=th, tv=tv, c=module._features_from_theta(th, tv)))
    lv = [(v,) for v in levels]

    def projection(v: dict) -> Tensor:
        return module.correlation_proj(module._features_from_theta(v["th"], v["tv"]))

    parts = {
        "ICM θ 3×3 conv + ReLU": _over(lv, lambda v: torch.relu(theta.conv(theta_input(v["x"])))),
        "ICM θ 1×1 heads": _over(lv, lambda v: (theta.hor(v["h"]), theta.ver(v["h"]))),
        "ICM correlation features c (Eq. 10)": _over(
            lv, lambda v: module._features_from_theta(v["th"], v["tv"])
        ),
        "ICM W_f·f": _over(lv, lambda v: module.feature_proj(v["x"])),
        "ICM S²→C projection of c": _over(lv, lambda v: module.correlation_proj(v["c"])),
        "ICM c and its projection (as the model runs it)": _over(lv, projection),
    }
    alternatives = {}
    if isinstance(module.function, LinearCorrelationFunction):
        diff = max(_rel_diff(_folded_projection(module, v["th"], v["tv"]), projection(v)) for v in levels)
        alternatives["ICM projection folded into the basis"] = {
            "run": _over(lv, lambda v: _folded_projection(module, v["th"], v["tv"])),
            "replaces": "ICM c and its projection (as the model runs it)",
            "max_rel_diff": diff,
        }
    return parts, alternatives


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="paper-r50", help="preset name or YAML path (default paper-r50)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value of ours")
    parser.add_argument("--size", type=parse_size, default=(800, 1333), help="input HxW (default 800x1333)")
    parser.add_argument(
        "--baseline", default=TABLE8_BASELINE,
        help=f'overrides that make the baseline from ours, one string (default "{TABLE8_BASELINE}")',
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and image")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> dict:
    """Build, capture, time; the report as a dict (see the module docstring)."""
    from tqdm import tqdm

    from cfnet.config import get_config
    from cfnet.model import build_model

    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but CUDA is not available")
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    size = tuple(args.size)
    pin = [f"model.input.min_size_test={min(size)}", f"model.input.max_size_test={max(size)}"]
    models = {}
    variants = {"ours": list(args.overrides), "baseline": list(args.overrides) + shlex.split(args.baseline)}
    for name, overrides in variants.items():
        torch.manual_seed(args.seed)
        models[name] = build_model(get_config(args.preset, overrides + pin)).to(device).eval()
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(args.seed)).to(device)

    ours = models["ours"]
    inputs = capture_inputs(ours, image)
    parts, alternatives = scm_parts(ours.semantic_head.module, inputs["scm"])
    more_parts, more_alts = icm_parts(ours.instance_head.position, inputs["icm"])
    parts.update(more_parts)
    alternatives.update(more_alts)
    if inputs["sem_conv"]:
        conv = ours.semantic_head.tower[-1]
        parts["last semantic tower conv + GN + ReLU"] = _over([(x,) for x in inputs["sem_conv"]], conv)
    timed: dict[str, Part] = dict(parts)
    timed.update({name: alt["run"] for name, alt in alternatives.items()})

    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    samples: dict[str, list[float]] = {name: [] for name in [*models, *timed]}
    totals: dict[str, list[dict]] = {name: [] for name in models}
    rounds = args.warmup + args.repeats
    with tqdm(total=rounds, desc=f"bench parts {size[0]}x{size[1]}", disable=args.no_progress) as bar:
        for r in range(rounds):
            for name, model in models.items():
                times = time_inference(model, image, device)
                if r >= args.warmup:
                    totals[name].append(times)
                    samples[name].append(times["total"])
            for name, fn in timed.items():
                start = now()
                with torch.no_grad():
                    fn()
                elapsed = now() - start
                if r >= args.warmup:
                    samples[name].append(elapsed)
            bar.update(1)

    def ms(name: str) -> float:
        return 1000 * statistics.median(samples[name])

    base_ms, ours_ms = ms("baseline"), ms("ours")
    floor_parts = ["SCM θ 3×3 conv + ReLU", "ICM θ 3×3 conv + ReLU"]
    if "last semantic tower conv + GN + ReLU" in parts:
        floor_parts.append("last semantic tower conv + GN + ReLU")
    floor_ms = sum(ms(p) for p in floor_parts)
    return {
        "preset": args.preset,
        "overrides": list(args.overrides),
        "baseline_overrides": shlex.split(args.baseline),
        "size": list(size),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "machine": machine_info(device),
        "levels": {k: [list(x.shape[-2:]) for x in v] for k, v in inputs.items()},
        "models_ms": {
            name: {
                "total": ms(name),
                **{s: 1000 * statistics.median(t[s] for t in totals[name]) for s in ("scm", "icm", "heads")},
            }
            for name in models
        },
        "ratio": ours_ms / base_ms,
        "parts_ms": {name: ms(name) for name in parts},
        "alternatives": {
            name: {"ms": ms(name), "replaces": alt["replaces"], "replaced_ms": ms(alt["replaces"]),
                   "max_rel_diff": alt["max_rel_diff"]}
            for name, alt in alternatives.items()
        },
        "floor_parts": floor_parts,
        "floor_ms": floor_ms,
        "floor_ratio": 1 + floor_ms / base_ms,
    }


def format_report(report: dict) -> str:
    """The report as Markdown tables."""
    m = report["models_ms"]
    lines = [
        "| model | total ms | SCM | ICM | heads (rest) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {v['total']:,.0f} | {v['scm']:,.0f} | {v['icm']:,.0f} | {v['heads']:,.0f} |"
            for name, v in m.items()
        ),
        "",
        f"ours / baseline: **{report['ratio']:.3f}**; floor (θ 3×3 convs + the extra semantic conv): "
        f"{report['floor_ms']:,.0f} ms → ours / baseline ≥ **{report['floor_ratio']:.3f}**",
        "",
        "| part (summed over the levels) | ms |",
        "| --- | ---: |",
        *(f"| {name} | {v:,.1f} |" for name, v in report["parts_ms"].items()),
    ]
    if report["alternatives"]:
        lines += [
            "",
            "| exact alternative | ms | replaces | ms | max relative difference |",
            "| --- | ---: | --- | ---: | ---: |",
            *(
                f"| {name} | {a['ms']:,.1f} | {a['replaces']} | {a['replaced_ms']:,.1f} "
                f"| {a['max_rel_diff']:.1e} |"
                for name, a in report["alternatives"].items()
            ),
        ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from cfnet.config import ConfigError

    try:
        report = run(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"cfnet bench parts: {e}", file=sys.stderr)
        return 2
    mach = report["machine"]
    print(f"{report['preset']} at {report['size'][0]}x{report['size'][1]}, levels {report['levels']}")
    print(f"machine: {json.dumps(mach)}")
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
