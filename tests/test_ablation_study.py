"""The seeded study: statistics on hand-made numbers, the plan, the report, and one real tiny run."""

from __future__ import annotations

import json
import math

import pytest

from cfnet import ablation
from cfnet.ablation_report import (
    collect,
    diverged_runs,
    load_results,
    paired_difference,
    render_report,
    resolution_lines,
    summarize,
    t_quantile_975,
)
from cfnet.ablation_study import STUDY, StudyProtocol, parse_seeds, parse_tables, plan, run_study
from cfnet.cli import main as cli_main


def test_summary_and_t_interval_on_hand_numbers():
    s = summarize([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.std == pytest.approx(1.0) and s.n == 3
    one = summarize([4.0])
    assert one.mean == 4.0 and one.std is None and one.n == 1
    assert summarize([]) is None
    assert t_quantile_975(2) == 4.303 and t_quantile_975(100) == 1.96
    with pytest.raises(ValueError):
        t_quantile_975(0)
    # diffs 1, 2, 3: mean 2, s = 1, half-width 4.303 / sqrt(3) = 2.484 -> [-0.48, 4.48]: not resolved
    d = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d.mean == pytest.approx(2.0) and d.n == 3
    assert d.low == pytest.approx(2 - 4.303 / math.sqrt(3)) and d.high == pytest.approx(
        2 + 4.303 / math.sqrt(3)
    )
    assert not d.resolved
    # diffs 0.9, 1.0, 1.1 -> [0.75, 1.25]: resolved
    tight = paired_difference({0: 10.9, 1: 11.0, 2: 11.1}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert tight.resolved and tight.low == pytest.approx(1 - 0.4303 / math.sqrt(3))
    # pairing: only common seeds count, and differences are per seed (not of the means)
    paired = paired_difference({0: 5.0, 1: 7.0, 5: 100.0}, {0: 4.0, 1: 6.0})
    assert paired.n == 2 and paired.mean == pytest.approx(1.0) and paired.low == pytest.approx(1.0)
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    single = paired_difference({0: 3.0}, {0: 1.0})
    assert single.mean == 2.0 and single.low is None and not single.resolved


def test_plan_runs_tables_4_and_6_on_every_seed_and_the_rest_on_the_first():
    pairs = plan(["table4", "table5"], [0, 1, 2])
    assert pairs[:5] == [("baseline", 0), ("scm", 0), ("icm", 0), ("scm-icm", 0), ("att-icm", 0)]
    assert ("att-icm", 1) not in pairs and ("icm", 2) in pairs  # icm is also a Table 4 row
    assert len(pairs) == 4 * 3 + 1
    assert len(plan(["table5"], [0, 1], all_seeds=True)) == 3 * 2
    full = plan(list(ablation.TABLES), list(STUDY.seeds))
    assert len(full) == len(set(full))
    assert {r for r, _ in full} == set(ablation.RUNS)  # every defined run is in some table


def test_parse_tables_and_seeds_name_bad_values():
    assert parse_tables("4, table6,fn,controls") == ["table4", "table6", "fn", "controls"]
    with pytest.raises(ValueError, match="unknown table '9'"):
        parse_tables("4,9")
    assert parse_seeds("2,0,2") == [2, 0]
    for bad in ("", "a", "-1"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


def _record(
    name, seed, metrics, *, preset=STUDY.preset, iters=STUDY.iters, diagnostics=None, fit=None, scale=None
):
    training = {"fit_loss": fit} if fit is not None else None
    if scale is not None:
        training = dict(training or {}, feature_scale=scale)
    return {
        "training": training,
        "format": ablation.RESULT_FORMAT,
        "version": ablation.RESULT_VERSION,
        "name": name,
        "settings": {
            "preset": preset,
            "overrides": list(ablation.RUNS[name]),
            "iters": iters,
            "seed": seed,
            "data": {"val": {"images": 500}},
        },
        "metrics": metrics,
        "diagnostics": diagnostics,
        "environment": {"device": "cpu", "processor": "x86_64", "torch": "2.14.1"},
    }


def _write(results, rec):
    results.mkdir(exist_ok=True)
    key = ablation.run_key(rec["settings"])
    (results / f"{rec['name']}-{key}.json").write_text(json.dumps(rec))


def test_report_is_deterministic_and_shows_seeds_differences_and_pending(tmp_path, capsys):
    results = tmp_path / "results"
    base = {"SQ": 80.0, "RQ": 60.0, "PQ_th": 40.0, "PQ_st": 70.0, "latency_ms": 20.0}
    for seed, (b, s) in enumerate([(50.0, 51.0), (52.0, 53.2), (51.0, 51.8)]):
        _write(results, _record("baseline", seed, dict(base, PQ=b)))
        _write(results, _record("scm", seed, dict(base, PQ=s), diagnostics={"scm_same_class_mass": 0.5}))
    _write(results, _record("scm", 0, dict(base, PQ=99.0), iters=7))  # another protocol: ignored
    text = render_report(load_results(results), STUDY)
    assert text == render_report(load_results(results), STUDY)  # stable
    assert "\nWhy this protocol. On the standard" in text
    assert "| + SCM | `scm` | 0,1,2 | 52.0 ± 1.1 |" in text
    # paired: diffs 1.0, 1.2, 0.8 -> mean 1.0, s 0.2, half 4.303*0.2/sqrt(3) = 0.50
    assert "| + SCM | +1.0 [+0.5, +1.5] ✓ |" in text
    assert "+0.6" in text  # the paper's ΔPQ for + SCM (39.9 - 39.3)
    assert "Resolved (interval excludes 0): + SCM PQ +1.0" in text
    assert "`icm`/s0" in text  # pending runs are listed
    assert "| `scm` | 3 | 0.500 |" in text
    assert cli_main(["ablate", "report", "--results", str(results), "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text() == text
    assert cli_main(["ablate", "report", "--results", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_run_whose_weights_stopped_fitting_is_marked_diverged_but_kept(tmp_path):
    results = tmp_path / "results"
    base = {"SQ": 80.0, "RQ": 60.0, "PQ_th": 40.0, "PQ_st": 70.0, "mIoU": 60.0}
    fits = {("baseline", 0): 0.20, ("baseline", 1): 0.19, ("scm", 0): 0.17, ("scm", 1): 2.40}
    for (run, seed), fit in fits.items():
        p = 3.0 + seed if fit < 1 else 150.0  # mean |P_l| over the FPN levels; body.* left out
        scale = {"body.layer4": 0.5, "p2": p - 1, "p3": p + 1}
        diagnostics = {"icm_term_ratio": 0.1 if fit < 1 else 9e4}  # a broken network's ratio explodes
        _write(results, _record(run, seed, dict(base, PQ=50.0 if fit < 1 else 2.0), fit=fit, scale=scale,
                                diagnostics=diagnostics))
    _write(results, _record("icm", 0, dict(base, PQ=49.0)))  # no fit loss (older result): not judged
    data = collect(load_results(results), preset=STUDY.preset, iters=STUDY.iters)
    # median of 0.17, 0.19, 0.20, 2.40 is 0.195; only 2.40 is above 3x that
    assert diverged_runs(data) == {("scm", 1)}
    text = render_report(load_results(results), STUDY)
    assert "1 of 4 runs diverged" in text
    assert "| `scm` | 1 | 2.400 | 150.0 | 2.0 | 60.0 |" in text
    assert "In the converged runs that have it, it lies between 3.00 and 4.00." in text
    assert "| + SCM | `scm` | 0,1‡ | 26.0 ± 33.9 |" in text  # kept in the statistics, as measured
    assert "+ SCM PQ -24.0 (a diverged seed included)" in text
    # ...and read again without it: only seed 0 of `scm` pairs with a converged baseline seed
    diag = text[text.index("## Correlation diagnostics"):]
    assert "| `scm` | 1 | — | — | — | — | — | — | — | — | 0.100 | 0.170 |" in diag  # seed 0 alone
    assert "| `scm` seed 1 ‡ | 1 | — | — | — | — | — | — | — | — | 90000.000 | 2.400 |" in diag
    converged = resolution_lines("table4", data)[-1]
    assert converged.startswith("Converged seeds only") and converged in text
    assert "+ SCM PQ +0.0 (1 seed)" in converged and "+ ICM" not in converged
    assert "The converged runs lie between 0.170 and 0.200." in text
    for rec in list(data["scm"].values()) + list(data["baseline"].values()):
        rec["training"]["fit_loss"] = 0.2
    assert diverged_runs(data) == set()


def test_collect_refuses_two_results_for_one_run_and_seed(tmp_path):
    a = dict(_record("scm", 0, {"PQ": 1.0}), path="a.json")
    b = dict(_record("scm", 0, {"PQ": 2.0}), path="b.json")
    b["settings"]["data"] = {"other": 1}
    with pytest.raises(ValueError, match="two results for run 'scm' seed 0"):
        collect([a, b], preset=STUDY.preset, iters=STUDY.iters)
    stale = dict(_record("scm", 1, {"PQ": 3.0}), path="c.json")
    stale["settings"]["overrides"] = ["model.semantic.module=scm"]  # an older definition of the run
    assert collect([a, stale], preset=STUDY.preset, iters=STUDY.iters) == {"scm": {0: a}}


@pytest.mark.slow
def test_one_real_study_run_then_cached_then_reported(tmp_path, one_torch_thread):
    tiny = StudyProtocol(num_train=2, num_val=2, size=64, iters=1, seeds=(0,))
    lines = []
    records = run_study(
        [("scm", 0)],
        tmp_path / "data",
        tmp_path / "results",
        tmp_path / "runs",
        protocol=tiny,
        progress=False,
        log=lines.append,
    )
    assert records[0]["metrics"]["PQ"] is not None and "PQ_touch" in records[0]["metrics"]
    assert "training 1 iterations" in lines[0] and "ETA" in lines[1]
    kept = list((tmp_path / "runs" / "checkpoints").glob("scm-*.pt"))
    assert len(kept) == 1 and not (tmp_path / "runs" / "scm-seed0").exists()
    assert kept[0].with_suffix(".jsonl").is_file()  # the loss curve stays beside the weights
    assert set(records[0]["diagnostics"]) >= {
        "scm_same_class_mass",
        "icm_separability",
        "coords_separability",
    }
    assert records[0]["diagnostics"]["icm_separability"] is None  # `scm` has CoordConv, no ICM
    # A result written without diagnostics (older code) gets them from its kept checkpoint, untrained.
    path = next((tmp_path / "results").glob("scm-*.json"))
    path.write_text(json.dumps(dict(json.loads(path.read_text()), diagnostics=None, training=None)))
    again = []
    run_study(
        [("scm", 0)],
        tmp_path / "data",
        tmp_path / "results",
        tmp_path / "runs",
        protocol=tiny,
        progress=False,
        log=again.append,
    )
    assert "cached" in again[0]
    backfilled = json.loads(path.read_text())
    assert backfilled["diagnostics"] == records[0]["diagnostics"]
    assert backfilled["training"]["fit_loss"] == pytest.approx(records[0]["training"]["fit_loss"])
    assert backfilled["training"]["feature_scale"] == pytest.approx(records[0]["training"]["feature_scale"])
    assert list(records[0]["training"]["feature_scale"])[-1] == "p6"
    assert backfilled["metrics"] == records[0]["metrics"]
    report = render_report(load_results(tmp_path / "results"), tiny)
    assert "1 of " in report and "`scm` | 0 |" in report
