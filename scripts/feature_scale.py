"""The scale of a trained model's backbone and FPN outputs: how the study's diverged runs differ.

For every checkpoint given, runs its first ``--images`` training images (eval mode: batch-norm's
running statistics) and prints the mean |activation| of each ResNet stage and each FPN level,
then the training loss (``cfnet.diagnostics.fit_loss``). The ResNet stages end in batch-norm;
the FPN has no normalisation, so a run whose FPN learned to amplify shows it there.

    python scripts/feature_scale.py --data data/shapes-hard-1000-500-128-seed0/train \\
        runs/ablations/checkpoints/scm-sine-1e592dbb31.pt runs/ablations/checkpoints/scm-icm-111f301c54.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from cfnet.checkpoint import load_checkpoint
from cfnet.data import PanopticDataset
from cfnet.diagnostics import fit_loss


@torch.no_grad()
def feature_scale(model: torch.nn.Module, images: list[torch.Tensor]) -> dict[str, float]:
    """Mean |x| of every ResNet stage (``body.<stage>``) and FPN level (``<level>``) on ``images``."""
    model.eval()
    stages: dict[str, torch.Tensor] = {}
    body = model.backbone.body
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: stages.__setitem__(f"body.{name}", out))
        for name, m in body.named_children()
        if name.startswith("layer")
    ]
    try:
        batch, _ = model.transform(images)
        levels = model.features(batch.tensors)
    finally:
        for h in handles:
            h.remove()
    return {name: float(x.abs().mean()) for name, x in [*stages.items(), *levels.items()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the training split the runs used")
    parser.add_argument("--images", type=int, default=8, help="images to measure on (default 8)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for path in args.checkpoints:
        model, _, _ = load_checkpoint(path)
        dataset = PanopticDataset(args.data, categories=model.categories)
        scale = feature_scale(model, [dataset[i][0] for i in range(min(args.images, len(dataset)))])
        rows.append((path.stem, scale, fit_loss(model, args.data)))
    names = list(rows[0][1])
    print("| run | " + " | ".join(names) + " | fit loss |")
    print("| --- |" + " ---: |" * (len(names) + 1))
    for run, scale, loss in rows:
        print(f"| {run} | " + " | ".join(f"{scale[n]:.3g}" for n in names) + f" | {loss:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
