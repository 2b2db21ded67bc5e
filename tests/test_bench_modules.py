"""`cfnet bench modules` on tiny sizes: JSON structure, refusals, argument errors."""

from __future__ import annotations

import json

import pytest

from cfnet.bench.modules import MODULE_NAMES, estimate_bytes, format_table, parse_sizes
from cfnet.cli import main as cli_main

# Memory limit between the 8×8 and 12×16 estimates of the O((HW)²) modules at C = 16, hidden 8.
LIMIT_GB = 0.0003


def test_estimates_put_the_tiny_limit_between_the_two_sizes():
    for name in ("scm-global", "attention"):
        assert estimate_bytes(name, 1, 16, 8, 8, 8) < LIMIT_GB * 1e9 < estimate_bytes(name, 1, 16, 12, 16, 8)
    # ICM's is above it too (S² = 256 correlation channels), but only O((HW)²) modules are refused.
    assert estimate_bytes("icm", 1, 16, 12, 16, 8) > LIMIT_GB * 1e9
    # The default sizes: P2 of an 800×1333 image is far beyond any quadratic module.
    assert estimate_bytes("scm-global", 1, 256, 200, 334) > 50e9
    assert estimate_bytes("scm-axial", 1, 256, 200, 334) < 2e9


def test_bench_modules_tiny_run_writes_json_and_refuses(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "bench", "modules", "--sizes", "8x8,12x16", "--channels", "16", "--repeats", "1",
        "--hidden-channels", "8", "--device", "cpu", "--threads", "1",
        "--memory-limit-gb", str(LIMIT_GB), "--json", str(out),
    ]  # fmt: skip
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())

    assert report["device"] == "cpu" and report["torch_version"]
    assert "ru_maxrss" in report["memory_method"]
    assert report["config"]["sizes"] == [[8, 8], [12, 16]]
    assert report["config"]["channels"] == 16 and report["config"]["repeats"] == 1
    results = {(r["module"], r["height"], r["width"]): r for r in report["results"]}
    assert set(results) == {(m, h, w) for m in MODULE_NAMES for h, w in [(8, 8), (12, 16)]}

    refused = {k for k, r in results.items() if r["status"] == "refused"}
    assert refused == {("scm-global", 12, 16), ("attention", 12, 16)}
    for key in refused:
        assert results[key]["note"].startswith("refused (needs ~") and results[key]["note"].endswith(" GB)")
        assert "time_ms" not in results[key]
    for key, r in results.items():
        if key in refused:
            continue
        assert r["status"] == "ok", r
        assert r["time_ms"] > 0 and len(r["times_ms"]) == 1
        assert r["peak_memory_mb"] >= 0 and r["params"] > 0
    assert results[("scm-axial", 8, 8)]["params"] == results[("scm-global", 8, 8)]["params"]
    assert "refused (needs ~" in printed and "| scm-axial | 12×16 |" in printed
    assert format_table(report).count("\n") == 2 + len(results) - 1


def test_bench_modules_argument_errors(capsys):
    assert cli_main(["bench", "modules", "--sizes", "8by8"]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert cli_main(["bench", "modules", "--sizes", "8x8", "--modules", "scm,icm"]) == 2
    assert "valid: scm-axial, scm-global, attention, icm" in capsys.readouterr().err
    with pytest.raises(ValueError, match="positive"):
        parse_sizes("0x4")
    assert parse_sizes("32x32, 100x167") == [(32, 32), (100, 167)]
