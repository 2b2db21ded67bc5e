"""`cfnet bench modules` on tiny sizes: JSON structure, refusals, argument errors."""

from __future__ import annotations

import json

import pytest

from cfnet.bench.modules import DEFAULT_MODULES, estimate_bytes, format_table, parse_sizes
from cfnet.cli import main as cli_main

# Memory limit between the 8×8 and 12×16 estimates of the O((HW)²) modules at C = 16, hidden 8.
LIMIT_GB = 0.0003


def test_estimates_put_the_tiny_limit_between_the_two_sizes():
    for name in ("scm-global", "attention"):
        assert estimate_bytes(name, 1, 16, 8, 8, 8) < LIMIT_GB * 1e9 < estimate_bytes(name, 1, 16, 12, 16, 8)
    # ICM's is above it too (S² = 256 correlation channels), but only O((HW)²) modules are refused.
    assert estimate_bytes("icm", 1, 16, 12, 16, 8) > LIMIT_GB * 1e9
    # P2 of an 800×1333 image: far beyond the dense global modules, not beyond query blocks.
    for name in ("scm-global", "attention"):
        assert estimate_bytes(f"{name}-dense", 1, 256, 200, 334) > 50e9
        assert estimate_bytes(name, 1, 256, 200, 334) < 2e9
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
    assert set(results) == {(m, h, w) for m in DEFAULT_MODULES for h, w in [(8, 8), (12, 16)]}

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
    assert "valid: scm-axial, scm-global, attention, icm, scm-global-dense, attention-dense" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="positive"):
        parse_sizes("0x4")
    assert parse_sizes("32x32, 100x167") == [(32, 32), (100, 167)]


def test_bench_modules_global_section_dense_against_blocks(tmp_path, capsys):
    # The global modules as shipped against the dense reference; a budget of 8·192·4 bytes puts
    # 12×16 (192 positions) in blocks of 8 queries while 6×6 stays dense.
    out = tmp_path / "global.json"
    argv = [
        "bench", "modules", "--sizes", "6x6,12x16", "--channels", "8", "--repeats", "1", "--warmup", "0",
        "--hidden-channels", "4", "--device", "cpu", "--threads", "1", "--max-chunk-bytes", str(8 * 192 * 4),
        "--modules", "scm-global-dense,scm-global,attention-dense,attention", "--json", str(out),
    ]  # fmt: skip
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["config"]["warmup"] == 0 and report["config"]["max_chunk_bytes"] == 8 * 192 * 4
    assert "after 0 warm-up" in printed
    notes = {(r["module"], r["height"]): r["note"] for r in report["results"]}
    assert all(r["status"] == "ok" and len(r["times_ms"]) == 1 for r in report["results"])
    for name in ("scm-global", "attention"):
        assert notes[(name, 6)] == notes[(f"{name}-dense", 6)] == notes[(f"{name}-dense", 12)] == "dense"
    assert notes[("scm-global", 12)] == "blocks of 8 queries"
    assert notes[("attention", 12)] == "fused SDPA kernel"  # the CPU has one
    for name in ("scm-global", "attention"):
        # The blocks' estimate: 4 blocks of 8×192 floats instead of 4 × 192² for dense.
        dense, blocks = (estimate_bytes(n, 1, 8, 12, 16, 4, 8 * 192 * 4) for n in (f"{name}-dense", name))
        assert dense - blocks == 4 * 4 * (192 - 8) * 192
    assert "| scm-global | 12×16 |" in printed and "blocks of 8 queries |" in printed
    assert "peak memory (MiB)" in printed


def test_bench_modules_rejects_bad_warmup_and_budget(capsys):
    assert cli_main(["bench", "modules", "--sizes", "8x8", "--warmup", "-1"]) == 2
    assert "--warmup" in capsys.readouterr().err
    assert cli_main(["bench", "modules", "--sizes", "8x8", "--max-chunk-bytes", "0"]) == 2
    assert "--max-chunk-bytes" in capsys.readouterr().err
