"""``retouch`` folder mode: mirrored outputs, outputs as one unit, --skip-existing, temp files, -o errors."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from deepexposure import io as dio
from deepexposure.cli import main


def _run(*args) -> int:
    return main([str(a) for a in args])


def _jpeg(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)


FUSION = ("--method", "fusion", "--ev", "-1,0,1", "--quiet")


def test_same_name_in_two_subfolders_is_mirrored(tmp_path, capsys):
    _jpeg(tmp_path / "in" / "a" / "x.jpg", 1)
    _jpeg(tmp_path / "in" / "b" / "x.jpg", 2)
    out = tmp_path / "out"
    assert _run("retouch", tmp_path / "in", "-o", out, *FUSION, "--explain") == 0
    for sub in ("a", "b"):
        assert (out / sub / "x.jpg").is_file()
        assert (out / sub / "x.jpg.recipe.json").is_file()
        assert (out / sub / "x.explain.jpg").is_file()
    assert not (out / "x.jpg").exists()


def test_colliding_outputs_refused_before_any_work(tmp_path, capsys):
    _jpeg(tmp_path / "in" / "x.jpg", 1)
    Image.open(tmp_path / "in" / "x.jpg").save(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    assert _run("retouch", tmp_path / "in", "-o", out, *FUSION, "--format", "png", "--overwrite") == 1
    err = capsys.readouterr().err
    assert "collide" in err and err.count("error:") == 1
    assert sorted(p.name for p in out.iterdir()) == ["x.png", "x.png.recipe.json"]


@pytest.mark.parametrize("existing", ["x.jpg.recipe.json", "x.explain.jpg"])
def test_existing_recipe_or_sheet_writes_nothing(tmp_path, capsys, existing):
    _jpeg(tmp_path / "in" / "x.jpg", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_bytes(b"keep")
    assert _run("retouch", tmp_path / "in" / "x.jpg", "-o", out, *FUSION, "--explain") == 1
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" in err and existing in err
    assert [p.name for p in out.iterdir()] == [existing]
    assert (out / existing).read_bytes() == b"keep"


def test_skip_existing(tmp_path, capsys):
    _jpeg(tmp_path / "in" / "x.jpg", 1)
    _jpeg(tmp_path / "in" / "y.jpg", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.jpg").write_bytes(b"old")
    assert _run("retouch", tmp_path / "in", "-o", out, "--method", "fusion", "--skip-existing") == 0
    text = capsys.readouterr().out
    assert "1 skipped" in text and "1 retouched, 0 failed" in text
    assert (out / "x.jpg").read_bytes() == b"old" and not (out / "x.jpg.recipe.json").exists()
    assert (out / "y.jpg").is_file()
    assert _run("retouch", tmp_path / "in", "-o", out, "--skip-existing", "--overwrite") == 1


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_out_dir_not_a_folder_is_one_line(tmp_path, capsys, kind):
    _jpeg(tmp_path / "x.jpg", 1)
    f = tmp_path / "afile"
    f.write_bytes(b"")
    out = f if kind == "file" else f / "sub"
    assert _run("retouch", tmp_path / "x.jpg", "-o", out, *FUSION) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "Traceback" not in err


def test_long_names_and_stale_temps(tmp_path, capsys):
    stem = "p" * 230  # 230 + ".jpg" + ".recipe.json" = 246 bytes: the old temp suffix made 260
    _jpeg(tmp_path / "in" / f"{stem}.jpg", 1)
    out = tmp_path / "out"
    out.mkdir()
    stale_old = out / ".x.jpg.0123abcd.tmp"  # name of an earlier version's temp file
    stale_new = out / (dio.temp_name("x.jpg"))
    fresh = out / dio.temp_name("y.jpg")
    for p in (stale_old, stale_new, fresh):
        p.write_bytes(b"partial")
    day = time.time() - 86400
    os.utime(stale_old, (day, day))
    os.utime(stale_new, (day, day))
    assert _run("retouch", tmp_path / "in", "-o", out, *FUSION) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{stem}.jpg", f"{stem}.jpg.recipe.json", fresh.name])
    assert len(dio.temp_name("z" * 255).encode()) == 255 and dio.is_temp_name(dio.temp_name("é" * 200))


def test_name_too_long_for_recipe_fails_before_writing(tmp_path, capsys):
    stem = "q" * 248  # the image name fits (252 bytes), its recipe name (264) does not
    _jpeg(tmp_path / "in" / f"{stem}.jpg", 1)
    out = tmp_path / "out"
    assert _run("retouch", tmp_path / "in", "-o", out, *FUSION) == 1
    assert "longer than 255 bytes" in capsys.readouterr().err
    assert list(out.rglob("*")) == []


def test_apply_one_recipe_to_a_folder(tmp_path, capsys):
    _jpeg(tmp_path / "in" / "a" / "x.jpg", 1)
    _jpeg(tmp_path / "in" / "b" / "x.jpg", 2)
    assert _run("retouch", tmp_path / "in" / "a" / "x.jpg", "-o", tmp_path / "r", *FUSION) == 0
    recipe = tmp_path / "r" / "x.jpg.recipe.json"
    out = tmp_path / "new" / "deeper"
    assert _run("apply", recipe, tmp_path / "in", "-o", out, "--format", "png") == 0
    assert (out / "a" / "x.png").is_file() and (out / "b" / "x.png").is_file()
    assert "2 rendered, 0 failed" in capsys.readouterr().out
    single = tmp_path / "made" / "one.jpg"
    assert _run("apply", recipe, tmp_path / "in" / "a" / "x.jpg", "-o", single) == 0 and single.is_file()
    assert _run("apply", recipe, tmp_path / "in" / "a" / "x.jpg", "-o", single) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_methods_lists_only_the_table(capsys):
    assert _run("methods") == 0
    out = capsys.readouterr().out
    assert "command," not in out and "goes through" not in out
    assert "fusion                     fixed-bracket" in out


def test_package_is_typed():
    from pathlib import Path

    import deepexposure

    assert (Path(deepexposure.__file__).parent / "py.typed").is_file()
