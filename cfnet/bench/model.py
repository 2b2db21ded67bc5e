"""``cfnet bench model``: inference latency of a preset, optionally against a variant.

    cfnet bench model --preset paper-r50 --size 800x1333 \\
        --vs "model.semantic.module=none model.semantic.num_convs=3 model.instance.position=coords"

Both models are built in the same process and timed *alternating* (one image through the base,
one through the variant, ``repeats`` times, after ``warmup`` rounds), so a drift of the machine's
load hits both alike; the reported latency is the median ms per image (batch of one), and the
ratio is variant / base. ``--size HxW`` is the network input: the bench sets
``model.input.min_size_test/max_size_test`` so the transform does not resize it (default: the
preset's ``min_size_test`` square).

Per-component times come from explicit stages of the eval forward (``preprocess``; ``backbone``
= ResNet + FPN; the heads; ``postprocess`` = instance inference with Matrix NMS plus panoptic
fusion) and forward hooks on the shared modules: ``scm`` (the semantic module over P2–P5) and
``icm`` (the position module over all instance levels) are cut out of ``heads``. On CUDA every
boundary synchronises. Runs on CUDA when present (``--device auto``), else on the CPU.

``--vs-torchvision maskrcnn_resnet50_fpn`` adds torchvision's Mask R-CNN R50-FPN as a peer, built
with ``weights=None, weights_backbone=None`` (nothing downloads; random weights like ours), its
transform pinned to the same input size, and timed in the same alternation. Its stages:
``preprocess`` (its transform), ``backbone`` (ResNet-50 + FPN), ``heads`` (RPN + RoI heads) and
``postprocess`` (box rescaling and mask pasting). With random weights its class scores are about
1/91, under the default ``box_score_thresh`` of 0.05, so the mask head would never run: the peer is
built with ``box_score_thresh=0`` and keeps its ``detections_per_img`` (100) detections, i.e. the
work of a trained model on a busy image. ``--amp`` runs every model under autocast (fp16 on CUDA,
bf16 on the CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "add_arguments", "main", "time_inference", "time_torchvision", "build_peer", "machine_info", "parse_size",
]

PEERS = ("maskrcnn_resnet50_fpn",)

STAGES = ("preprocess", "backbone", "scm", "icm", "heads", "postprocess")


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size: expected HxW (e.g. 800x1333), got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"--size: both sides must be positive, got {text!r}")
    return h, w


def machine_info(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class _Timer:
    """Accumulates wall time per stage; synchronises CUDA at every boundary."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times = dict.fromkeys(STAGES, 0.0)
        self._starts: dict[str, float] = {}

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        t = self.now()
        yield
        self.times[name] += self.now() - t

    def hook(self, module: nn.Module, name: str) -> list:
        def pre(_m, _inp):
            self._starts[name] = self.now()

        def post(_m, _inp, _out):
            self.times[name] += self.now() - self._starts.pop(name)

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]


@torch.no_grad()
def time_inference(model: nn.Module, image: torch.Tensor, device: torch.device) -> dict[str, float]:
    """One eval forward of ``model`` on ``[image]``, split into stages; seconds per stage + ``total``."""
    timer = _Timer(device)
    handles = timer.hook(model.semantic_head.module, "scm") + timer.hook(model.instance_head.position, "icm")
    try:
        start = timer.now()
        images = [image]
        sizes = [tuple(image.shape[-2:])]
        with timer.stage("preprocess"):
            batch, _ = model.transform(images)
        with timer.stage("backbone"):
            features = model.features(batch.tensors)
        with timer.stage("heads"):
            sem_logits = model.semantic_head(features)
            instance_out = model.instance_head(features)
        with timer.stage("postprocess"):
            model.postprocess(sem_logits, instance_out, batch, sizes)
        total = timer.now() - start
    finally:
        for h in handles:
            h.remove()
    times = dict(timer.times)
    times["heads"] -= times["scm"] + times["icm"]
    times["total"] = total
    return times


def build_peer(name: str, size: tuple[int, int]) -> nn.Module:
    """A torchvision detection model with random weights whose transform keeps ``size`` as is."""
    from torchvision.models import detection

    if name not in PEERS:
        raise ValueError(f"--vs-torchvision: {name!r} is not one of {', '.join(PEERS)}")
    return getattr(detection, name)(
        weights=None, weights_backbone=None, min_size=min(size), max_size=max(size), box_score_thresh=0.0
    )


@torch.no_grad()
def time_torchvision(model: nn.Module, image: torch.Tensor, device: torch.device) -> dict[str, float]:
    """One eval forward of a torchvision ``GeneralizedRCNN`` split into the same stages as ours."""
    timer = _Timer(device)
    start = timer.now()
    original = [tuple(image.shape[-2:])]
    with timer.stage("preprocess"):
        images, _ = model.transform([image])
    with timer.stage("backbone"):
        features = model.backbone(images.tensors)
    with timer.stage("heads"):
        proposals, _ = model.rpn(images, features)
        detections, _ = model.roi_heads(features, proposals, images.image_sizes)
    with timer.stage("postprocess"):
        model.transform.postprocess(detections, images.image_sizes, original)
    times = dict(timer.times)
    times["total"] = timer.now() - start
    return times


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, help="preset name or YAML path")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value for the base model")
    parser.add_argument(
        "--size", type=parse_size, default=None, help="input HxW (default: min_size_test square)"
    )
    parser.add_argument(
        "--vs", default=None, help='overrides of the variant, one string: "key=value key=value"'
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed images per model (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed images per model first (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and image")
    parser.add_argument(
        "--vs-torchvision", choices=PEERS, default=None, metavar="MODEL",
        help="also time this torchvision model (random weights, nothing downloads): maskrcnn_resnet50_fpn",
    )
    parser.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA, bf16 on the CPU)")


def _format(results: list[dict], ratio: float | None, peer_ratios: dict[str, float] | None = None) -> str:
    width = max(8, *(len(r["name"]) for r in results))
    head = f"{'model':<{width}} {'params (M)':>10} {'median ms':>10} " + " ".join(f"{s:>11}" for s in STAGES)
    lines = [head, "-" * len(head)]
    for r in results:
        comp = " ".join(f"{r['components_ms'][s]:>11.1f}" for s in STAGES)
        lines.append(f"{r['name']:<{width}} {r['params'] / 1e6:>10.2f} {r['median_ms']:>10.1f} {comp}")
    if ratio is not None:
        lines.append(f"ratio variant / base: {ratio:.3f}")
    for name, value in (peer_ratios or {}).items():
        lines.append(f"ratio {name}: {value:.3f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cfnet.config import ConfigError, get_config
    from cfnet.info import count_parameters
    from cfnet.model import build_model

    if args.repeats < 1 or args.warmup < 0:
        print("cfnet bench model: --repeats must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("cfnet bench model: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    variants = [("base", list(args.overrides))]
    if args.vs:
        variants.append(("variant", list(args.overrides) + shlex.split(args.vs)))
    models = []
    try:
        base_cfg = get_config(args.preset, args.overrides)
        size = args.size or (base_cfg.model.input.min_size_test,) * 2
        pin = [f"model.input.min_size_test={min(size)}", f"model.input.max_size_test={max(size)}"]
        for name, overrides in variants:
            torch.manual_seed(args.seed)
            cfg = get_config(args.preset, overrides + pin)
            models.append((name, overrides, build_model(cfg).to(device).eval()))
        peer = getattr(args, "vs_torchvision", None)
        if peer:
            torch.manual_seed(args.seed)
            models.append((peer, [], build_peer(peer, size).to(device).eval()))
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"cfnet bench model: {e}", file=sys.stderr)
        return 2
    gen = torch.Generator().manual_seed(args.seed)
    image = torch.rand(3, *size, generator=gen).to(device)
    samples: dict[str, list[dict]] = {name: [] for name, _, _ in models}
    total = (args.warmup + args.repeats) * len(models)
    amp = getattr(args, "amp", False)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp else nullcontext
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    peak: dict[str, int] = {}
    with tqdm(total=total, desc=f"bench {args.preset} {size[0]}x{size[1]} on {device.type}") as bar:
        for r in range(args.warmup + args.repeats):
            for name, _, model in models:  # alternating: base, variant, [peer,] base, ...
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with autocast():
                    if name == peer:
                        times = time_torchvision(model, image, device)
                    else:
                        times = time_inference(model, image, device)
                if device.type == "cuda":
                    peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated(device))
                if r >= args.warmup:
                    samples[name].append(times)
                bar.update(1)
    results = []
    for name, overrides, model in models:
        runs = samples[name]
        results.append(
            {
                "name": name,
                "overrides": overrides,
                "params": (
                    sum(p.numel() for p in model.parameters()) if name == peer
                    else count_parameters(model)["total"]
                ),
                "median_ms": 1000 * statistics.median(t["total"] for t in runs),
                "components_ms": {s: 1000 * statistics.median(t[s] for t in runs) for s in STAGES},
                "samples_ms": [1000 * t["total"] for t in runs],
                "peak_memory_mb": peak[name] / 2**20 if name in peak else None,
            }
        )
    ours = [r for r in results if r["name"] != peer]
    ratio = ours[1]["median_ms"] / ours[0]["median_ms"] if len(ours) > 1 else None
    peer_ratios = {}
    if peer:
        peer_ms = results[-1]["median_ms"]
        peer_ratios = {f"{r['name']} / {peer}": r["median_ms"] / peer_ms for r in ours}
    print(_format(results, ratio, peer_ratios))
    if args.json is not None:
        out = {
            "preset": args.preset,
            "size": list(size),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "machine": machine_info(device),
            "models": results,
            "ratio": ratio,
            "amp": amp,
            "peer": peer,
            "peer_ratios": peer_ratios,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0
