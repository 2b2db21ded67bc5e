"""`cfnet bench gpu` / scripts/gpu_check.sh: the GPU check's code path, as a CPU dry run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cfnet.cli import main as cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_on_cpu(tmp_path, capsys):
    assert cli(["bench", "gpu", "--device", "cpu", "--dry-run", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["device"] == "cpu"
    tr = report["training"]
    assert set(tr["runs"]) == {"device_amp", "device_fp32", "cpu_fp32"}
    assert len(tr["runs"]["device_amp"]["losses"]) == tr["train_iters"] == 3
    assert len(tr["runs"]["cpu_fp32"]["losses"]) == tr["compare_iters"] == 2
    # on the CPU the "device" fp32 run is the CPU run: identical curves
    assert tr["check"]["device_fp32"]["max_rel_diff"] == 0.0
    assert all(c["ok"] for c in tr["check"].values())
    for key, amp in (("model_fp32", False), ("model_amp", True)):
        names = [m["name"] for m in report[key]["models"]]
        assert names == ["base", "variant", "maskrcnn_resnet50_fpn"] and report[key]["amp"] is amp
    modules = {r["module"] for r in report["modules"]["results"]}
    assert modules == {"scm-axial", "scm-global", "attention", "icm"}
    md = (tmp_path / "gpu_check.md").read_text()
    for title in ("## Training shapes-tiny", "## Inference at 64x96, fp32", "## Inference at 64x96, AMP",
                  "## Modules"):
        assert title in md
    assert "Table-8 baseline" in md and "/ Mask R-CNN" in md and "passed" in md
    assert report["errors"] == {}
    assert "wrote" in capsys.readouterr().out


def test_a_failing_part_is_recorded_and_the_rest_still_runs(tmp_path, monkeypatch):
    import cfnet.bench.gpu as gpu

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(gpu, "_bench_model", boom)
    assert cli(["bench", "gpu", "--device", "cpu", "--dry-run", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["errors"]) == {"model_fp32", "model_amp"}
    assert "simulated" in report["errors"]["model_fp32"]
    assert report["training"] is not None and report["modules"] is not None
    md = (tmp_path / "gpu_check.md").read_text()
    assert "FAILED" in md and "model_fp32 failed" in md and "## Modules" in md


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")]).returncode == 0
    assert os.access(ROOT / "scripts" / "gpu_check.sh", os.X_OK)


def test_gpu_check_rejects_bad_counts(tmp_path):
    argv = ["bench", "gpu", "--device", "cpu", "--train-iters", "5", "--compare-iters", "9",
            "--out", str(tmp_path)]
    assert cli(argv) == 2
    assert not (tmp_path / "gpu_check.json").exists()
