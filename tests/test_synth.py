"""Tests for deepexposure.synth: determinism, the recorded field reproduces the input, the CLI."""

import json

import numpy as np
import pytest
import torch

from deepexposure import synth as S
from deepexposure.io import read_image, write_image


def _write_photos(folder, n=2):
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        base = torch.rand(1, 3, 5, 7, generator=g)
        img = torch.nn.functional.interpolate(base, size=(30 + 4 * i, 44), mode="bilinear", align_corners=False)
        write_image(folder / f"p{i}.png", img)
    return sorted(folder.iterdir())


CFG = S.SynthConfig(seed=3, size=40, variants=2)


def test_field_reproduces_input(tmp_path):
    src = _write_photos(tmp_path / "src")
    man = S.make_benchmark(src, tmp_path / "b", CFG)
    assert len(man["items"]) == 4
    for it in man["items"]:
        ref = read_image(tmp_path / "b" / it["reference"]).img_srgb
        inp = read_image(tmp_path / "b" / it["input"]).img_srgb
        field = torch.from_numpy(np.load(tmp_path / "b" / it["field"]))
        assert field.shape == ref.shape[-2:] and max(ref.shape[-2:]) == 40
        again = S.apply_ev_field(ref, field)
        assert (again - inp).abs().max().item() <= 0.5 / 255 + 1e-6
        meta = json.loads((tmp_path / "b" / "fields" / f"{it['name']}.json").read_text())
        assert meta["ev_min"] == pytest.approx(float(field.min()))
        assert 0.0 <= meta["clipped_fraction"] <= 1.0


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    src = _write_photos(tmp_path / "src")
    S.make_benchmark(src, tmp_path / "a", CFG)
    S.make_benchmark(src, tmp_path / "b", CFG)
    S.make_benchmark(src, tmp_path / "c", S.SynthConfig(seed=4, size=40, variants=2))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 1 + 4 * 4
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "input" / "p0_v0.png").read_bytes() != (tmp_path / "c" / "input" / "p0_v0.png").read_bytes()


def test_refuses_existing_and_skips_unreadable(tmp_path):
    src = _write_photos(tmp_path / "src", n=1)
    bad = tmp_path / "src" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    man = S.make_benchmark(src + [bad], tmp_path / "b", S.SynthConfig(size=32))
    assert [s["path"] for s in man["skipped"]] == [str(bad)]
    with pytest.raises(ValueError, match="overwrite"):
        S.make_benchmark(src, tmp_path / "b", S.SynthConfig(size=32))
    with pytest.raises(ValueError, match="could be read"):
        S.make_benchmark([bad], tmp_path / "c")


def test_field_model_terms():
    cfg = S.SynthConfig(tone_ev=0.0, local_ev=0.0, global_ev=(-1.0, -1.0))
    err = S.sample_exposure_error(cfg, torch.Generator().manual_seed(0))
    ref = torch.rand(1, 3, 10, 12)
    e = S.ev_field(err, ref)
    torch.testing.assert_close(e, torch.full((1, 1, 10, 12), -1.0))
    # local field bounded by its amplitude, and resolution-independent (same value at the same place)
    err = S.sample_exposure_error(S.SynthConfig(tone_ev=0.0, global_ev=(0.0, 0.0)), torch.Generator().manual_seed(1))
    big = S.ev_field(err, torch.rand(1, 3, 64, 64))
    small = S.ev_field(err, torch.rand(1, 3, 16, 16))
    assert big.abs().max() <= err.amplitude + 1e-6
    assert (big[..., 2::4, 2::4] - small).abs().max() < 0.15  # sample centres are close, field smooth


def test_apply_ev_field_clips_highlights():
    img = torch.full((1, 3, 2, 2), 0.8)
    out = S.apply_ev_field(img, torch.full((2, 2), 3.0))
    assert torch.allclose(out, torch.ones_like(out))


def test_cli(tmp_path):
    from deepexposure.cli import main

    _write_photos(tmp_path / "src", n=1)
    rc = main(["synth", str(tmp_path / "src"), "--out", str(tmp_path / "b"), "--size", "32", "--seed", "1", "--quiet"])
    assert rc == 0
    assert (tmp_path / "b" / "input" / "p0.png").is_file()
    assert main(["synth", str(tmp_path / "src"), "--out", str(tmp_path / "b"), "--quiet"]) == 2
