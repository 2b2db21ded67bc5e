"""cfnet.ablation: the table definitions are valid overrides, the cache is keyed and safe, tables line up.

The training path itself runs in notebook 05 (tests/test_notebooks.py, quick mode).
"""

from __future__ import annotations

import json
import sys
import types

import pytest

import cfnet
from cfnet import ablation
from cfnet.config import validate


def _fake_data(root, n_train=3, n_val=2, size=128):
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True)
        data = {
            "images": [{"id": i, "file_name": f"{i}.png", "height": size, "width": size} for i in range(n)],
            "annotations": [{"image_id": i, "file_name": f"{i}.png", "segments_info": []} for i in range(n)],
            "categories": [],
        }
        (root / split / "panoptic.json").write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("run", sorted(ablation.RUNS))
def test_every_run_is_a_valid_override_of_the_preset(run):
    cfg = validate(cfnet.get_config(ablation.DEFAULT_PRESET, ablation.RUNS[run]))
    sem, pos = cfg.model.semantic.module, cfg.model.instance.position
    assert sem in ("none", "attention", "scm") and pos in ("none", "coords", "sine", "icm", "icm-coords")


def test_tables_reference_known_runs_and_hold_the_papers_numbers():
    assert list(ablation.TABLES) == ["table4", "table5", "table6", "table7", "fn", "controls", "position"]
    for table in ablation.TABLES.values():
        for row in table.rows:
            assert row.run in ablation.RUNS, (table.name, row.label)
            assert set(row.paper) <= set(table.metrics), (table.name, row.label)
    # A few of the paper's numbers, verbatim (Tables 4-7).
    assert ablation.PAPER["table4"]["+ SCM + ICM"] == {"PQ": 40.5, "SQ": 78.6, "RQ": 49.7, "latency_ms": 93.4}
    assert ablation.PAPER["table5"]["attention"]["mIoU"] == 50.1
    assert ablation.PAPER["table6"]["coords"]["mask_AP"] == 32.9
    assert ablation.PAPER["table7"]["S=32"]["mask_AP"] == 33.6
    # The configurations the tables need: rows shared across tables are one run.
    assert ablation.table_runs("table4") == ["baseline", "scm", "icm", "scm-icm"]
    assert len(ablation.all_runs()) == 12  # the paper's four tables (with our icm-coords row)
    assert len(ablation.all_runs(list(ablation.TABLES))) == len(ablation.RUNS) == 17
    for table in ablation.TABLES.values():  # every table names its reference row
        assert table.reference in [row.label for row in table.rows], table.name


def test_table_rows_differ_from_the_full_model_only_where_they_should():
    full = cfnet.get_config(ablation.DEFAULT_PRESET, ablation.RUNS["scm-icm"]).to_dict()
    preset = cfnet.get_config(ablation.DEFAULT_PRESET).to_dict()
    assert full == preset  # the full model is the preset itself
    n3 = cfnet.get_config(ablation.DEFAULT_PRESET, ablation.RUNS["n3"])
    s32 = cfnet.get_config(ablation.DEFAULT_PRESET, ablation.RUNS["s32"])
    assert n3.model.correlation.num_levels == 3 and s32.model.correlation.num_refs == 32


def test_run_key_depends_on_every_setting(tmp_path):
    data = ablation.describe_data(_fake_data(tmp_path / "d"))
    base = ablation._settings("shapes-tiny", ["a=1"], 10, 0, data)
    keys = {
        ablation.run_key(base),
        ablation.run_key(ablation._settings("shapes-tiny", ["a=2"], 10, 0, data)),
        ablation.run_key(ablation._settings("shapes-tiny", ["a=1"], 11, 0, data)),
        ablation.run_key(ablation._settings("shapes-tiny", ["a=1"], 10, 1, data)),
        ablation.run_key(ablation._settings("paper-r50", ["a=1"], 10, 0, data)),
        ablation.run_key(ablation._settings("shapes-tiny", ["a=1"], 10, 0, {**data, "val": {}})),
    }
    assert len(keys) == 6
    assert ablation.run_key(base) == ablation.run_key(json.loads(json.dumps(base)))


def test_describe_data_ignores_the_folder_but_not_the_content(tmp_path):
    a = ablation.describe_data(_fake_data(tmp_path / "a"))
    b = ablation.describe_data(_fake_data(tmp_path / "b"))
    c = ablation.describe_data(_fake_data(tmp_path / "c", n_val=3))
    assert a == b and a != c
    assert a["train"]["images"] == 3 and a["val"]["sizes"] == [[128, 128]]
    with pytest.raises(FileNotFoundError, match="no train split"):
        ablation.describe_data(tmp_path / "missing")


def test_cached_result_is_returned_without_training(tmp_path, monkeypatch):
    data_dir = _fake_data(tmp_path / "data")
    results = tmp_path / "results"
    described = ablation.describe_data(data_dir)
    settings = ablation._settings("shapes-tiny", list(ablation.RUNS["scm"]), 5, 0, described)
    path = ablation.result_path(results, "scm", settings)
    path.parent.mkdir()
    path.write_text(json.dumps({"format": ablation.RESULT_FORMAT, "settings": settings,
                                "metrics": {"PQ": 12.5, "mIoU": 40.0}}))

    def boom(*args, **kwargs):
        raise AssertionError("run_ablation trained although a cached result exists")

    monkeypatch.setitem(sys.modules, "cfnet.engine.train", types.SimpleNamespace(train=boom))
    monkeypatch.setitem(sys.modules, "cfnet.engine.evaluate", types.SimpleNamespace(evaluate=boom))
    got = ablation.run_ablation("scm", ablation.RUNS["scm"], data_dir, tmp_path / "runs", iters=5, seed=0,
                                results_dir=results)
    assert got == {"PQ": 12.5, "mIoU": 40.0}
    found = ablation.find_result("scm", ablation.RUNS["scm"], data_dir, 5, 0, results_dir=results)
    assert found["metrics"] == got and found["path"] == str(path)
    assert ablation.find_result("scm", ablation.RUNS["scm"], data_dir, 6, 0, results_dir=results) is None
    assert ablation.find_result("scm-icm", ablation.RUNS["scm"], data_dir, 5, 0, results_dir=results) is None
    # Another setting (here: more iterations) is not served from that file: it would train.
    with pytest.raises(AssertionError, match="trained although"):
        ablation.run_ablation("scm", ablation.RUNS["scm"], data_dir, tmp_path / "runs", iters=6, seed=0,
                              results_dir=results)


def test_load_result_rejects_foreign_files(tmp_path):
    assert ablation.load_result(tmp_path / "absent.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ablation.load_result(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else", "metrics": {}}))
    with pytest.raises(ValueError, match="not a cached ablation result"):
        ablation.load_result(other)


def test_table_records_put_ours_beside_the_paper():
    recs = ablation.table_records("table5", {"att-icm": {"mIoU": 61.0, "PQ_st": 70.0, "latency_ms": 12.0}})
    assert [r["row"] for r in recs] == ["none", "attention", "SCM"]
    att = recs[1]
    assert att["mIoU"] == 61.0 and att["mIoU (paper)"] == 50.1 and att["PQ_st (paper)"] is None
    assert recs[0]["mIoU"] is None  # a run without results
    with pytest.raises(ValueError, match="unknown ablation table"):
        ablation.table_records("table9", {})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iters": 0}, "iters"),
        ({"iters": 2.5}, "iters"),
        ({"seed": "0"}, "seed"),
        ({"overrides": "model.semantic.module=none"}, "list of key=value"),
        ({"overrides": ["model.semantic.module"]}, "key=value"),
    ],
)
def test_run_ablation_names_bad_arguments(tmp_path, kwargs, match):
    args = {"name": "x", "overrides": [], "data_dir": tmp_path, "out_dir": tmp_path, "iters": 1, "seed": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ablation.run_ablation(**args)


def test_measure_latency_takes_the_median():
    calls = []

    class Model:
        def eval(self):
            return self

        def __call__(self, images):
            calls.append(len(images))

    class Image:
        def to(self, device):
            return self

    ms = ablation.measure_latency(Model(), [Image(), Image(), Image()], warmup=1)
    assert ms >= 0 and calls == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="at least one image"):
        ablation.measure_latency(Model(), [])
