"""Post-processing before/after, interleaved: tests/reference_postprocess.py (the previous code)
against CFNet.postprocess (the current one), on the same head outputs, checking that every output
is identical. docs/benchmarks.md has the numbers and what the cases are.

    python scripts/bench_postprocess.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import reference_postprocess as ref  # noqa: E402

import cfnet  # noqa: E402
from cfnet.config import get_config  # noqa: E402
from cfnet.model import build_model  # noqa: E402


def heads(model, image):
    with torch.no_grad():
        batch, _ = model.transform([image])
        f = model.features(batch.tensors)
        return model.semantic_head(f), model.instance_head(f), batch


def cases():
    out = {}
    # paper-r50 (133 classes), random weights, 800x1333: as is (no instance survives) ...
    torch.manual_seed(0)
    pin = ["model.input.min_size_test=800", "model.input.max_size_test=1333"]
    r50 = build_model(get_config("paper-r50", pin))
    r50.eval()
    image = torch.rand(3, 800, 1333, generator=torch.Generator().manual_seed(0))
    sem, inst, batch = heads(r50, image)
    out["r50-none"] = (r50, sem, inst, batch)
    # ... and with sparse confident category cells (~0.4 % of cells, scores 0.57-0.96), so that
    # nms_pre = 500 candidates reach Matrix NMS and max_per_img = 100 masks are upsampled and fused
    g = torch.Generator().manual_seed(1)
    cate = []
    for c in inst[0]:
        x = torch.full_like(c, -8.0)
        sel = torch.rand(c.shape, generator=g) < 0.004
        x[sel] = torch.rand(int(sel.sum()), generator=g) * 3 + 0.3
        cate.append(x)
    out["r50-heavy"] = (r50, sem, (cate, inst[1], inst[2]), batch)
    # the shipped shapes-tiny model on a shapes val image upscaled to 800x1333 (it runs at 128 px
    # and brings its 6-class map and its masks back to the 800x1333 original)
    tiny, _, _ = cfnet.load_checkpoint("default")
    tiny.eval()
    rgb = np.array(Image.open(ROOT / "app" / "examples" / "shapes-val-000000.png").convert("RGB"))
    img = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    img = torch.nn.functional.interpolate(img[None], size=(800, 1333), mode="bilinear", align_corners=False)
    img = img[0]
    out["tiny-800x1333"] = (tiny, *heads(tiny, img))
    return out


def same(a, b):
    assert torch.equal(a["panoptic_seg"], b["panoptic_seg"]) and a["segments_info"] == b["segments_info"]
    assert torch.equal(a["sem_seg"], b["sem_seg"])
    for k in ("masks", "labels", "scores"):
        assert torch.equal(a["instances"][k], b["instances"][k]), k


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}")
    with torch.no_grad():
        for name, (model, sem, inst, batch) in cases().items():
            sizes = [(800, 1333)]
            ts = {"old": [], "new": []}
            for r in range(args.repeats + 1):  # round 0 is the warm-up
                for which in ("old", "new"):  # interleaved: old, new, old, new, ...
                    t = time.perf_counter()
                    if which == "old":
                        o = ref.postprocess(model, sem, inst, batch, sizes)[0]
                    else:
                        n = model.postprocess(sem, inst, batch, sizes)[0]
                    if r:
                        ts[which].append(time.perf_counter() - t)
                same(o, n)
            old, new = (1000 * statistics.median(ts[k]) for k in ("old", "new"))
            print(f"{name:14s} old {old:8.1f} ms  new {new:8.1f} ms  x{old / new:.2f}  "
                  f"segments {len(o['segments_info'])}, instances {o['instances']['masks'].shape[0]}; "
                  f"samples old {[round(1000 * t) for t in ts['old']]} "
                  f"new {[round(1000 * t) for t in ts['new']]}",
                  flush=True)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
