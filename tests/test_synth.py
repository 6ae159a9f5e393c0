"""Tests for deepexposure.synth: determinism, the recorded field reproduces the input, the CLI."""

import json
import math

import numpy as np
import pytest
import torch

from deepexposure import synth as S
from deepexposure.io import read_image

from .toy import write_smooth_photos


def _write_photos(folder, n=2):
    return write_smooth_photos(folder, n, (5, 7), 30, 4, 44)


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


# ---------------------------------------------------------------------------------------------
# the wider family of degradations


def _tiny():
    """A 1x3x2x2 linear image with hand-checkable values."""
    return torch.tensor([[[[0.01, 0.2], [0.5, 0.9]], [[0.02, 0.3], [0.4, 0.8]], [[0.03, 0.1], [0.6, 1.0]]]], dtype=torch.float64)


def test_parse_kinds():
    assert S.parse_kinds(None) == ("exposure",) == S.parse_kinds("default")
    assert S.parse_kinds("all") == S.KINDS
    assert S.parse_kinds("clip, global,clip") == ("clip", "global")
    with pytest.raises(ValueError, match="unknown degradation kind 'nope'"):
        S.parse_kinds("global,nope")


def test_kind_formulas_by_hand():
    x = _tiny()
    torch.testing.assert_close(S.expose_lin(x, 1.0), 2 * x)
    torch.testing.assert_close(S.expose_lin(x, -2.0), x / 4)
    # crushed shadows: max(0, x - t) / (1 - t)
    t = 0.1
    want = torch.tensor([[[[0.0, 0.1 / 0.9], [0.4 / 0.9, 0.8 / 0.9]], [[0.0, 0.2 / 0.9], [0.3 / 0.9, 0.7 / 0.9]], [[0.0, 0.0], [0.5 / 0.9, 1.0]]]], dtype=torch.float64)
    torch.testing.assert_close(S.crush_shadows(x, t), want)
    # clipped highlights: min(1, k x)
    torch.testing.assert_close(S.clip_highlights(x, 2.0), (2 * x).clamp(max=1.0))
    assert S.clip_highlights(x, 2.0)[0, 0, 1, 1] == 1.0 and S.clip_highlights(x, 2.0)[0, 0, 1, 0] == 1.0
    # contrast: x ((Y + 1e-3) / 0.18)^(c - 1), Y Rec. 709
    y11 = 0.2126 * 0.9 + 0.7152 * 0.8 + 0.0722 * 1.0
    out = S.contrast_lin(x, 1.5)
    torch.testing.assert_close(out[0, :, 1, 1], x[0, :, 1, 1] * ((y11 + 1e-3) / 0.18) ** 0.5)
    grey = torch.full((1, 3, 1, 1), 0.18 - 1e-3, dtype=torch.float64)
    torch.testing.assert_close(S.contrast_lin(grey, 0.6), grey)  # the pivot is a fixed point
    # white balance: gains (2^T, 2^G, 2^-T) / n keep the luminance of a grey
    r, g, b = S.wb_gains(0.5, 0.0)
    n = 0.2126 * 2**0.5 + 0.7152 + 0.0722 * 2**-0.5
    assert (r, g, b) == pytest.approx((2**0.5 / n, 1 / n, 2**-0.5 / n))
    assert 0.2126 * r + 0.7152 * g + 0.0722 * b == pytest.approx(1.0)
    torch.testing.assert_close(S.white_balance_lin(x, (r, g, b))[0, :, 0, 1], x[0, :, 0, 1] * torch.tensor([r, g, b], dtype=torch.float64))


def test_backlit_field_by_hand():
    f = S.backlit_field(2, 4, cx=0.375, cy=0.125, sigma=0.25, subject_ev=-2.0, background_ev=1.0)
    # pixel (row 0, col 1) has centre (u, v) = (1.5 / 4, 0.5 / 4) = the subject centre: E = subject_ev
    assert f[0, 1].item() == pytest.approx(-2.0)
    u, v = 3.5 / 4, 1.5 / 4
    m = math.exp(-((u - 0.375) ** 2 + (v - 0.125) ** 2) / (2 * 0.25**2))
    assert f[1, 3].item() == pytest.approx(1.0 * (1 - m) - 2.0 * m)


def test_local_field_is_the_benchmark_cosine_field():
    err = S.sample_exposure_error(S.SynthConfig(), torch.Generator().manual_seed(2))
    d = S.Degradation("local", {"amplitude": err.amplitude, "components": err.components})
    x = torch.full((1, 3, 6, 8), 0.1, dtype=torch.float64)
    out = S.apply_degradation(x, d)
    torch.testing.assert_close(out, x * torch.exp2(S.cosine_field(err.components, err.amplitude, 6, 8)))


def test_exposure_kind_matches_the_benchmark_model():
    ref = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    err = S.sample_exposure_error(S.SynthConfig(), torch.Generator().manual_seed(9))
    want = S.apply_ev_field(ref, S.ev_field(err, ref))
    got = S.linear_to_srgb(S.apply_degradation(S.srgb_to_linear(ref), S.Degradation("exposure", err.to_dict())).clamp(0, 1))
    assert (got - want).abs().max() < 1e-5


def test_sample_every_kind_deterministic_and_in_range():
    x = S.srgb_to_linear(torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(1)))
    seen = set()
    for s in range(60):
        d1 = S.sample_degradation(S.KINDS, torch.Generator().manual_seed(s), x)
        d2 = S.sample_degradation(S.KINDS, torch.Generator().manual_seed(s), x)
        assert d1 == d2
        json.dumps(d1.to_dict())
        seen.add(d1.kind)
        out = S.apply_degradation(x, d1)
        assert out.shape == x.shape and torch.isfinite(out).all() and out.min() >= 0
        p = d1.params
        if d1.kind == "global":
            assert -3 <= p["ev"] <= 3
        if d1.kind == "clip":  # about the drawn fraction of pixels has a clipped channel
            frac = float((x.amax(dim=1) * p["gain"] >= 1.0 - 1e-9).float().mean())
            assert abs(frac - p["fraction"]) < 0.02
            assert out.max() <= 1.0
        if d1.kind == "crush":
            assert 0.01 <= p["black"] <= 0.05
    assert seen == set(S.KINDS)
    one = S.sample_degradation(("contrast",), torch.Generator().manual_seed(0), x)
    assert one.kind == "contrast" and 2**-0.8 <= one.params["c"] <= 2**0.6


def test_cli_default_unchanged_by_kinds_default(tmp_path):
    from deepexposure.cli import main

    _write_photos(tmp_path / "src", n=1)
    assert main(["synth", str(tmp_path / "src"), "--out", str(tmp_path / "a"), "--size", "32", "--quiet"]) == 0
    assert not (tmp_path / "a" / "pairs.json").exists() and (tmp_path / "a" / "fields").is_dir()
