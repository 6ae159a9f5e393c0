"""The ``deepexposure`` command line: retouch, apply, explain, bad input in a batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deepexposure.cli import main

from .toy import photo


@pytest.fixture()
def photos(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    from deepexposure.io import tensor_to_uint8
    from deepexposure.resize import resize_long_edge

    for name in ("coffee", "chelsea"):
        Image.fromarray(tensor_to_uint8(resize_long_edge(photo(name), 160))).save(d / f"{name}.jpg", quality=92)
    return d


def _run(*args) -> int:
    return main([str(a) for a in args])


def test_retouch_fusion_writes_output_and_recipe(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run("retouch", photos, "-o", out, "--method", "fusion", "--ev", "-1,0,1,2", "--quiet") == 0
    for name in ("coffee", "chelsea"):
        img = Image.open(out / f"{name}.jpg")
        assert img.size == Image.open(photos / f"{name}.jpg").size
        recipe = json.loads((out / f"{name}.jpg.recipe.json").read_text())
        assert recipe["ops"][0]["evs"] == [-1.0, 0.0, 1.0, 2.0]
        assert recipe["method"]["name"] == "fusion"


def test_explicit_exposures_and_explain(photos, tmp_path):
    out = tmp_path / "out"
    assert _run("retouch", photos / "coffee.jpg", "-o", out, "--exposures", "-0.5,1,1.5", "--explain", "--quiet") == 0
    recipe = json.loads((out / "coffee.jpg.recipe.json").read_text())
    assert recipe["ops"][0]["evs"] == [-0.5, 1.0, 1.5]
    assert len(recipe["segments"]) == 3 and len(recipe["segment_map"]) == 64
    sheet = Image.open(out / "coffee.explain.jpg")
    assert sheet.size[0] > 4 * 160  # original, segments, 3 steps, result


def test_segmented_fusion_recipe_says_its_exposures_are_a_fused_bracket(photos, tmp_path):
    """The exposures of a fused render are chosen region by region but applied to the whole frame: the
    recipe says so, and it is true (the same exposures in the opposite segment order give the same bytes)."""
    from deepexposure.pipeline import BRACKET_NOTE

    for name, evs in (("fwd", "-1,0.5,1.5"), ("rev", "1.5,0.5,-1")):
        assert _run("retouch", photos / "coffee.jpg", "-o", tmp_path / name, "--exposures", evs, "--quiet") == 0
    recipe = json.loads((tmp_path / "fwd" / "coffee.jpg.recipe.json").read_text())
    assert BRACKET_NOTE in recipe["notes"] and "fused bracket" in BRACKET_NOTE
    assert (tmp_path / "fwd" / "coffee.jpg").read_bytes() == (tmp_path / "rev" / "coffee.jpg").read_bytes()


def test_apply_edited_recipe_rerenders(photos, tmp_path):
    out = tmp_path / "out"
    assert _run("retouch", photos / "coffee.jpg", "-o", out, "--exposures", "0,0", "--quiet", "--format", "png") == 0
    rpath = out / "coffee.png.recipe.json"
    recipe = json.loads(rpath.read_text())
    recipe["ops"][0]["evs"] = [1.5, 1.5]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(recipe))
    assert _run("apply", edited, photos / "coffee.jpg", "-o", tmp_path / "brighter.png") == 0
    a = np.asarray(Image.open(out / "coffee.png"), dtype=float).mean()
    b = np.asarray(Image.open(tmp_path / "brighter.png"), dtype=float).mean()
    assert b > a + 5
    # apply refuses to overwrite without --overwrite, and never writes onto its input
    assert _run("apply", edited, photos / "coffee.jpg", "-o", tmp_path / "brighter.png") == 1
    assert _run("apply", edited, photos / "coffee.jpg", "-o", photos / "coffee.jpg", "--overwrite") == 1


def test_bad_inputs_do_not_stop_the_batch(photos, tmp_path, capsys):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.jpg").write_text("this is not a photo\n")
    good = (photos / "coffee.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 3])
    Image.new("RGB", (1, 1)).save(photos / "tiny.png")
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    code = _run("retouch", photos, tmp_path / "missing.jpg", "-o", out, "--method", "fusion", "--quiet")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert (out / "coffee.jpg").exists() and (out / "chelsea.jpg").exists()
    for bad in ("empty.jpg", "text.jpg", "truncated.jpg", "tiny.png", "missing.jpg"):
        lines = [line for line in err if bad in line]
        assert len(lines) == 1, (bad, err)
        assert not (out / bad).exists()
    assert all(line.startswith("error: ") for line in err)
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # inputs untouched


def test_existing_output_is_kept_without_overwrite(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "coffee.jpg").write_bytes(b"keep me")
    assert _run("retouch", photos / "coffee.jpg", "-o", out, "--method", "fusion", "--quiet") == 1
    assert (out / "coffee.jpg").read_bytes() == b"keep me"
    assert _run("retouch", photos / "coffee.jpg", "-o", out, "--method", "fusion", "--quiet", "--overwrite") == 0
    assert (out / "coffee.jpg").read_bytes() != b"keep me"


def test_decompression_bomb_limit(photos, tmp_path, capsys):
    code = _run("retouch", photos / "coffee.jpg", "-o", tmp_path / "o", "--method", "fusion", "--max-pixels", "1000", "--quiet")
    assert code == 1 and "coffee.jpg" in capsys.readouterr().err


def test_unknown_method_is_one_line(photos, tmp_path, capsys):
    assert _run("retouch", photos, "-o", tmp_path / "o", "--method", "nope") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown method" in err


@pytest.mark.slow
def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "deepexposure", "--help"], capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 0 and "retouch" in r.stdout and "train" in r.stdout
