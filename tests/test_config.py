from __future__ import annotations

import pytest

from cfnet.categories import Categories, load_category_records
from cfnet.config import Config, ConfigError, get_config, list_presets, load_config, save_config, validate


def test_presets_exist_and_validate():
    assert {"paper-r50", "paper-r50-dcn", "paper-r101-dcn", "shapes-tiny"} <= set(list_presets())
    for name in list_presets():
        cfg = validate(get_config(name))
        assert cfg.name == name


def test_base_inheritance():
    r50, dcn, r101 = (get_config(n) for n in ("paper-r50", "paper-r50-dcn", "paper-r101-dcn"))
    assert (r50.model.backbone.dcn, dcn.model.backbone.dcn, r101.model.backbone.dcn) == (False, True, True)
    assert (dcn.model.backbone.depth, r101.model.backbone.depth) == (50, 101)
    # everything not overridden comes from the base
    assert dcn.solver == r50.solver and r101.model.semantic == r50.model.semantic


def test_paper_settings():
    cfg = get_config("paper-r50")
    assert cfg.model.correlation.num_levels == 5 and cfg.model.correlation.num_refs == 16
    assert cfg.model.semantic.loss_weight == 0.5
    assert (cfg.solver.optimizer, cfg.solver.momentum, cfg.solver.weight_decay) == ("sgd", 0.9, 1e-4)
    assert cfg.solver.batch_size == 16
    assert (cfg.model.inference.score_thr, cfg.model.inference.update_thr) == (0.1, 0.3)
    assert cfg.model.inference.stuff_area == 4096
    cats = Categories.from_spec(cfg.model.categories)
    assert (cats.num_things, cats.num_stuff) == (80, 53)


def test_overrides_are_typed_and_validated():
    cfg = get_config(
        "shapes-tiny",
        ["model.semantic.module=attention", "model.correlation.num_refs=8", "solver.base_lr=1e-2",
         "data.crop_size=[64, 64]", "model.backbone.pretrained=null"],
    )
    assert cfg.model.semantic.module == "attention" and cfg.model.correlation.num_refs == 8
    assert cfg.solver.base_lr == 0.01 and cfg.data.crop_size == [64, 64]
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.semantic\.modul'.*did you mean"):
        get_config("shapes-tiny", ["model.semantic.modul=none"])
    with pytest.raises(ConfigError, match=r"'model\.correlation\.num_levels': expected an integer"):
        get_config("shapes-tiny", ["model.correlation.num_levels=five"])
    with pytest.raises(ConfigError, match="expected key=value"):
        get_config("shapes-tiny", ["model.semantic.module"])
    with pytest.raises(ConfigError, match=r"'model\.semantic\.module': 'transformer' is not one of"):
        validate(get_config("shapes-tiny", ["model.semantic.module=transformer"]))
    with pytest.raises(ConfigError, match="same length"):
        validate(get_config("shapes-tiny", ["model.instance.num_grids=[8]"]))
    with pytest.raises(ConfigError, match="unknown preset 'paper-r5'.*did you mean 'paper-r50'"):
        get_config("paper-r5")


def test_yaml_round_trip(tmp_path):
    cfg = get_config("paper-r50-dcn", ["model.instance.position=sine"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert Config.from_dict(cfg.to_dict()) == cfg
    (tmp_path / "bad.yaml").write_text("model:\n  semantc: {}\n")
    with pytest.raises(ConfigError, match="semantc"):
        load_config(tmp_path / "bad.yaml")


def test_contiguous_ids_put_things_first(tmp_path):
    records = [
        {"id": 7, "name": "sky", "isthing": 0},
        {"id": 3, "name": "dog", "isthing": 1},
        {"id": 1, "name": "cat", "isthing": 1},
        {"id": 5, "name": "grass", "isthing": 0},
    ]
    cats = Categories(records)
    assert [cats.category_id(i) for i in range(4)] == [1, 3, 5, 7]
    assert [cats.is_thing(i) for i in range(4)] == [True, True, False, False]
    assert cats.contiguous(5) == 2 and cats.name(3) == "sky"
    with pytest.raises(KeyError, match="unknown category id 9"):
        cats.contiguous(9)
    with pytest.raises(ValueError, match="appears twice"):
        Categories(records + [{"id": 3, "name": "x", "isthing": 1}])
    with pytest.raises(FileNotFoundError, match="not a shipped set"):
        load_category_records("nope")
