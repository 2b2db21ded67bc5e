"""Release export: fp16 weights that load back into the float32 model, no optimiser state, a card."""

from __future__ import annotations

import json

import torch

import cfnet
from cfnet.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from cfnet.engine.export import export_run


def test_export_half_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = cfnet.get_config("shapes-tiny", ["model.backbone.depth=18"])
    model = cfnet.build_model(cfg).eval()
    run = tmp_path / "run"
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(run / "model_final.pt", model=model, cfg=cfg, optimizer=opt, iteration=7)
    (run / "metrics.jsonl").write_text(json.dumps({"iteration": 7, "elapsed": 12.5}) + "\n")
    (run / "eval.json").write_text(json.dumps({"PQ": 81.5, "mIoU": 90.0}))

    card = export_run(run, tmp_path / "out" / "m.pt", data_info={"seed": 0})
    raw = read_checkpoint(tmp_path / "out" / "m.pt")
    assert raw["optimizer"] is None and raw["iteration"] == 7
    floats = [v for v in raw["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert card["metrics"]["PQ"] == 81.5 and card["wall_time_seconds"] == 12.5 and card["data"]["seed"] == 0
    assert json.loads((tmp_path / "out" / "m.json").read_text())["iterations"] == 7
    assert card["file_size_bytes"] < (run / "model_final.pt").stat().st_size / 1.9

    loaded, _, _ = load_checkpoint(tmp_path / "out" / "m.pt")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, k  # cast back to the model's float32
        if a.is_floating_point():
            torch.testing.assert_close(b, a.half().to(a.dtype), rtol=0, atol=0)
        else:
            assert torch.equal(a, b), k
