"""Hostile recipes for ``apply``: refused before any work with one line; the JSON Schema matches the validator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepexposure.cli import main
from deepexposure.recipe import LIMITS, Recipe, RecipeError, recipe_schema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "recipe.schema.json"


def _recipe(*ops, **top) -> dict:
    return {"format": "deepexposure-recipe", "version": 1, "ops": list(ops), **top}


def _fusion(**kw) -> dict:
    return {"op": "exposure_fusion", "evs": [0.5], **kw}


GOOD = [
    _recipe(_fusion()),
    _recipe(_fusion(evs=[], include_original=True)),
    _recipe(_fusion(fusion={"sigma": 0.2, "levels": None})),
    _recipe({"op": "filter", "name": "gamma", "params": [1.2]}, {"op": "clahe", "clip_limit": 0.02, "kernel_size": 16}),
    _recipe({"op": "clahe", "kernel_size": 8.0}, _fusion(fusion={"levels": 3.0})),
    _recipe({"op": "clahe"}, notes=["a"], segments=[{"index": 0}], segment_map=["00"], image={}, method={"name": "x"}),
]

# text, not dicts: some of these cannot be written with json.dumps from Python values
HOSTILE_TEXT = {
    "ev_10e400": json.dumps(_recipe(_fusion())).replace('[0.5]', "[1" + "0" * 400 + "]"),
    "ev_5000_digits": json.dumps(_recipe(_fusion())).replace('[0.5]', "[1" + "0" * 5000 + "]"),
    "ev_inf": json.dumps(_recipe(_fusion())).replace('[0.5]', "[1e400]"),
    "nested_100k": "[" * 100_000 + "]" * 100_000,
    "nested_in_image": json.dumps(_recipe(_fusion())).replace('"ops"', '"image": ' + "[" * 50 + "]" * 50 + ', "ops"'),
}
HOSTILE = {
    "sigma_1e-300": _recipe(_fusion(fusion={"sigma": 1e-300})),
    "sigma_zero": _recipe(_fusion(fusion={"sigma": 0})),
    "exposedness_1e300": _recipe(_fusion(fusion={"exposedness_weight": 1e300})),
    "weight_string": _recipe(_fusion(fusion={"contrast_weight": "1"})),
    "levels_1e6": _recipe(_fusion(fusion={"levels": 10**6})),
    "levels_float": _recipe(_fusion(fusion={"levels": 2.5})),
    "fusion_null": _recipe(_fusion(fusion=None)),
    "fusion_unknown_key": _recipe(_fusion(fusion={"bogus": 1})),
    "evs_5000": _recipe(_fusion(evs=[0.1] * 5000)),
    "evs_bool": _recipe(_fusion(evs=[True])),
    "evs_string": _recipe(_fusion(evs="1,2")),
    "include_original_string": _recipe(_fusion(include_original="no")),
    "nothing_to_fuse": _recipe(_fusion(evs=[], include_original=False)),
    "filter_name_list": _recipe({"op": "filter", "name": ["gamma"], "params": [1.0]}),
    "filter_name_dict": _recipe({"op": "filter", "name": {"a": 1}, "params": [1.0]}),
    "filter_params_big_int": _recipe({"op": "filter", "name": "gamma", "params": [10**400]}),
    "filter_ops_10000": _recipe(*[{"op": "filter", "name": "gamma", "params": [1.0]}] * 10_000),
    "op_name_list": _recipe({"op": ["clahe"]}),
    "op_unknown_key": _recipe({"op": "clahe", "radius": 3}),
    "clahe_kernel_0": _recipe({"op": "clahe", "kernel_size": 0}),
    "clahe_kernel_1e9": _recipe({"op": "clahe", "kernel_size": 10**9}),
    "clahe_kernel_fraction": _recipe({"op": "clahe", "kernel_size": 8.5}),
    "clahe_clip_nan_string": _recipe({"op": "clahe", "clip_limit": "NaN"}),
    "ops_not_list": _recipe(),
    "top_unknown_key": _recipe(_fusion(), extra=1),
    "image_list": _recipe(_fusion(), image=[1]),
    "notes_ints": _recipe(_fusion(), notes=[1]),
    "segment_map_huge": _recipe(_fusion(), segment_map=["0"] * (LIMITS["max_map_rows"] + 1)),
    "not_object": [1, 2],
}


@pytest.mark.parametrize("name", sorted(HOSTILE) + sorted(HOSTILE_TEXT))
def test_hostile_recipe_is_one_line_error(name, tmp_path):
    p = tmp_path / "r.json"
    p.write_text(HOSTILE_TEXT[name] if name in HOSTILE_TEXT else json.dumps(HOSTILE[name]))
    with pytest.raises(RecipeError) as e:
        Recipe.load(p)
    msg = str(e.value)
    assert msg.startswith(str(p)) and "\n" not in msg and len(msg) < 400


@pytest.mark.parametrize("name", ["evs_5000", "filter_ops_10000", "clahe_kernel_1e9", "ev_10e400", "nested_100k"])
def test_apply_cli_refuses_hostile_recipe(name, tmp_path, capsys):
    img = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(img)
    p = tmp_path / "r.json"
    p.write_text(HOSTILE_TEXT[name] if name in HOSTILE_TEXT else json.dumps(HOSTILE[name]))
    assert main(["apply", str(p), str(img), "-o", str(tmp_path / "out.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("recipe", GOOD)
def test_good_recipes_pass(recipe):
    Recipe.from_dict(recipe)


def test_schema_file_in_sync():
    assert json.loads(SCHEMA_FILE.read_text()) == recipe_schema(), (
        "docs/recipe.schema.json is stale: regenerate it with "
        "python -c 'import json; from deepexposure.recipe import recipe_schema; print(json.dumps(recipe_schema(), indent=2))'"
    )


def test_schema_agrees_with_validator():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(recipe_schema())
    jsonschema.Draft202012Validator.check_schema(recipe_schema())
    for r in GOOD:
        assert validator.is_valid(r), r
    for name, r in HOSTILE.items():
        assert not validator.is_valid(r), name


@pytest.mark.parametrize(
    "opts, msg",
    [
        (["--method", "fusion", "--ev", "100"], "[-10, 10]"),
        (["--exposures", ",".join(["0.5"] * 50)], "at most 32"),
        (["--method", "fusion", "--ev", ""], None),  # empty bracket: the method says so
        (["--segments", "0"], "--segments must be in 1..32"),
    ],
)
def test_retouch_options_use_the_recipe_validator(opts, msg, tmp_path, capsys):
    img = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(img)
    assert main(["retouch", str(img), "-o", str(tmp_path / "out"), "--quiet", *opts]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and (msg is None or msg in err)


@pytest.mark.parametrize(
    "opts, msg",
    [
        (["--method", "identity", "--ev", "-1,1"], "--ev is ignored"),
        (["--method", "identity", "--exposures", "0.5"], "--exposures overrides --method identity"),
        (["--method", "identity", "--segments", "3"], "--segments is ignored"),
    ],
)
def test_ignored_options_warn(opts, msg, tmp_path, capsys):
    img = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(img)
    assert main(["retouch", str(img), "-o", str(tmp_path / "out"), "--quiet", *opts]) == 0
    assert f"warning: {msg}" in capsys.readouterr().err
