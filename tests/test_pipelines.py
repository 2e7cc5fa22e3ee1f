"""Recipes as documents (validation, file:line errors, overrides, JSON Schema) and the pipeline's pure parts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest

from xlstm_zoo.registry.cli import main
from xlstm_zoo.registry.pipelines.recipes import load_recipe
from xlstm_zoo.registry.pipelines.reproduce import table, within
from xlstm_zoo.registry.pipelines.train import lr_factor
from xlstm_zoo.schemas.entry import Result
from xlstm_zoo.schemas.errors import ConfigError
from xlstm_zoo.schemas.export import schema_path, schema_text
from xlstm_zoo.schemas.recipe import Schedule
from xlstm_zoo.schemas.yaml_io import load_yaml

import xlstm_zoo

ZOO = Path(xlstm_zoo.__file__).parent / "zoo"
RECIPES = sorted((ZOO / "recipes").glob("*.yaml"))
PARITY = ZOO / "recipes" / "parity-slstm.yaml"


def test_committed_recipe_schema_is_current():
    assert schema_path("recipe").read_text() == schema_text("recipe"), "run: xlstm-zoo schema --kind recipe --write"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=../../schemas/recipe.schema.json"
    recipe = load_recipe(path)
    jsonschema.validate(json.loads(json.dumps(load_yaml(path).data)), json.loads(schema_path("recipe").read_text()))
    assert recipe.train.max_steps > 0


def test_entries_point_at_existing_recipes():
    from xlstm_zoo import get_entry, list_models

    roles = [(name, role, path) for name in list_models() for role, path in get_entry(name).recipes.items()]
    assert {"formal-lang-small", "xlstm-shakespeare-char"} <= {name for name, _, _ in roles}
    for name, role, path in roles:
        load_recipe(ZOO / path)


def test_bad_recipe_reports_every_problem_with_its_position(tmp_path, capsys):
    bad = PARITY.read_text().replace("batch_size: 128", "batch_sise: 128").replace("lr: 3.0e-3", "lr: fast")
    bad = bad.replace("train_lengths: {min: 3, max: 40}", "train_lengths: {min: 30, max: 4}")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    lines = str(info.value).splitlines()
    line_of = {key: 1 + next(i for i, l in enumerate(bad.splitlines()) if key in l) for key in
               ("batch_sise", "lr: fast", "train_lengths")}
    assert any(l.startswith(f"{path}:{line_of['batch_sise']}:") and "train.batch_sise: unknown key (did you mean "
               "batch_size" in l for l in lines), lines
    assert any(l.startswith(f"{path}:{line_of['lr: fast']}:") and "optimizer.lr: expected a number" in l for l in lines)
    assert any(l.startswith(f"{path}:{line_of['train_lengths']}:") and "data.train_lengths.max: expected at least min"
               in l for l in lines)
    assert any("train.batch_size: expected this required key" in l for l in lines)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    assert f"{path}:{line_of['batch_sise']}:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_override_is_named(tmp_path, capsys):
    assert main(["train", str(PARITY), "train.batch_size=many", "data.tsk=parity", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "<command line>: train.batch_size: expected an integer, got 'many'" in err
    assert "data.tsk: unknown key (did you mean task?)" in err
    assert main(["train", "formal-lang-smal", "--out", str(tmp_path)]) == 2
    assert "did you mean formal-lang-small" in capsys.readouterr().err


def test_schedule_warms_up_then_decays_to_the_floor():
    f = lr_factor(Schedule(warmup_steps=10, decay_steps=110, min_lr_ratio=0.1), max_steps=200)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1) and f(199) == pytest.approx(0.1)


def test_result_bounds_and_table():
    at_least = Result(task="t", dataset="d", metric="m", value=1.0, tolerance=0.01, compare="at_least")
    around = Result(task="t", dataset="d", metric="m", value=0.5, tolerance=0.1)
    assert within(at_least, 0.995) and within(at_least, 1.0) and not within(at_least, 0.98)
    assert within(around, 0.59) and not within(around, 0.61) and not within(around, 0.39)
    row = {"task": "parity", "dataset": "d", "metric": "m", "recipe": "r", "bound": ">= 0.99", "measured": 0.5,
           "seconds": 3.0, "step": 100, "passed": False}
    assert table([row]).splitlines()[-1] == "| parity | d | m | r | >= 0.99 | 0.5 | 100 | 3 s | FAIL |"
