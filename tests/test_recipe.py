"""Recipes: JSON round trip, validation errors, rendering each op, editing a value re-renders."""

import json

import pytest
import torch

from deepexposure.filters import global_exposure
from deepexposure.fusion import FusionConfig, exposure_fusion
from deepexposure.recipe import Recipe, RecipeError, fusion_op, render

from .toy import photo


@pytest.fixture(scope="module")
def img():
    from deepexposure.resize import resize_long_edge

    return resize_long_edge(photo("coffee"), 96)


def test_json_round_trip(tmp_path):
    r = Recipe(ops=[fusion_op([1.0, -0.5])], method={"name": "x"}, segments=[{"index": 0}], segment_map=["01", "10"])
    p = tmp_path / "r.json"
    r.save(p)
    back = Recipe.load(p)
    assert back.to_dict() == r.to_dict()
    with pytest.raises(ValueError, match="exists"):
        r.save(p)
    r.save(p, overwrite=True)


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"format": "other"}, "not a deepexposure recipe"),
        ({"format": "deepexposure-recipe", "version": 99, "ops": []}, "unsupported recipe version"),
        ({"format": "deepexposure-recipe", "version": 1, "ops": []}, "non-empty"),
        ({"format": "deepexposure-recipe", "version": 1, "ops": [{"op": "blur"}]}, "unknown op"),
        ({"format": "deepexposure-recipe", "version": 1, "ops": [{"op": "exposure_fusion", "evs": ["a"]}]}, "list of numbers"),
        ({"format": "deepexposure-recipe", "version": 1, "ops": [{"op": "filter", "name": "gamma", "params": [9.0]}]}, "outside"),
        ({"format": "deepexposure-recipe", "version": 1, "ops": [{"op": "filter", "name": "gamma", "params": [1, 2]}]}, "takes 1"),
        ({"format": "deepexposure-recipe", "version": 1, "ops": [{"op": "exposure_fusion", "evs": [1], "fusion": {"bogus": 1}}]}, "bad fusion"),
    ],
)
def test_validation_errors_are_one_line(bad, msg, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(RecipeError) as e:
        Recipe.load(p)
    assert msg in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_invalid_json_and_missing_file(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(RecipeError, match="invalid JSON"):
        Recipe.load(p)
    with pytest.raises(RecipeError, match="cannot read"):
        Recipe.load(tmp_path / "missing.json")


def test_render_fusion_equals_batched_fusion(img):
    evs = [1.0, -0.5]
    out = render(Recipe(ops=[fusion_op(evs)]), img)
    stack = torch.stack([img] + [global_exposure(img, torch.tensor([[e]])) for e in evs], dim=1)
    ref = exposure_fusion(stack, FusionConfig()).clamp(0, 1)
    assert torch.allclose(out, ref, atol=1e-4)


def test_editing_a_value_changes_the_render(img):
    r = Recipe(ops=[fusion_op([0.5, 0.5])])
    a = render(r, img)
    r.ops[0]["evs"][1] = 2.0
    b = render(r, img)
    assert b.mean() > a.mean() + 0.01


def test_filter_and_clahe_ops(img):
    r = Recipe(ops=[{"op": "filter", "name": "exposure", "params": [1.0]}, {"op": "clahe", "clip_limit": 0.02, "kernel_size": None}])
    r.validate()
    out = render(r, img)
    assert out.shape == img.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_identity_recipe(img):
    assert torch.equal(render(Recipe(ops=[fusion_op([], include_original=True)]), img), img)
