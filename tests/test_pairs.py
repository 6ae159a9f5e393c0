"""Tests for deepexposure.pairs: the seeded training stream and the CLI that writes a sample of it."""

import hashlib
import json
import math

import pytest
import torch

from deepexposure import hdr as H, pairs as P
from deepexposure.color import linear_to_srgb, luminance, srgb_to_linear
from deepexposure.data import PairedFolder
from deepexposure.io import read_image
from deepexposure.synth import parse_kinds

from .toy import write_smooth_photos


def _write_photos(folder, n=3):
    return write_smooth_photos(folder, n, (6, 8), 60, 10, 90)


@pytest.fixture
def fake_hdr(monkeypatch, tmp_path):
    """Two fake .exr maps served by a patched reader (no OpenEXR needed): smooth, up to 40x brighter."""

    def read(path):
        s = int(hashlib.sha256(str(path).encode()).hexdigest()[:6], 16)
        base = torch.rand(1, 3, 4, 8, generator=torch.Generator().manual_seed(s))
        return torch.nn.functional.interpolate(base, size=(32, 64), mode="bilinear", align_corners=False) ** 4 * 40

    monkeypatch.setattr(H, "read_exr", read)
    d = tmp_path / "hdr"
    d.mkdir()
    for n in ("a.exr", "b.exr"):
        (d / n).write_bytes(b"")
    return d


def test_shapes_ranges_determinism(tmp_path, fake_hdr):
    photos = _write_photos(tmp_path / "src")
    ds = P.SyntheticPairs(photos, fake_hdr, size=16, seed=1, kinds="all", hdr_fraction=0.4)
    assert ds.n_photos == 3 and ds.n_hdr == 2
    x, y = ds.batch(5, 6)
    assert x.shape == y.shape == (6, 3, 16, 16) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and 0 <= y.min() and y.max() <= 1
    x2, y2 = P.SyntheticPairs(photos, fake_hdr, size=16, seed=1, kinds="all", hdr_fraction=0.4).batch(5, 6)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # a fresh object (a resumed run) gives the same batch
    x3, _ = P.SyntheticPairs(photos, fake_hdr, size=16, seed=2, kinds="all", hdr_fraction=0.4).batch(5, 6)
    assert not torch.equal(x, x3)
    assert not torch.equal(ds.batch(6, 6)[0], x)
    recs = ds.records(5, 6)
    json.dumps(recs)
    for i, rec in enumerate(recs):  # a record rebuilds its pair exactly
        inp, ref = ds.render(rec)
        assert torch.equal(inp, x[i : i + 1]) and torch.equal(ref, y[i : i + 1])


def test_no_repeats_over_many_steps(tmp_path, fake_hdr):
    ds = P.SyntheticPairs(_write_photos(tmp_path / "src"), fake_hdr, size=12, seed=0, kinds="all")
    seen_in, seen_ref, types = set(), set(), set()
    n = 0
    for step in range(150):
        x, y = ds.batch(step, 4)
        for i in range(4):
            seen_in.add(x[i].numpy().tobytes())
            seen_ref.add(y[i].numpy().tobytes())
            n += 1
        types.update(r["type"] for r in ds.records(step, 4)) if step < 5 else None
    assert len(seen_in) == n  # 600 inputs, all different
    assert len(seen_ref) > 0.97 * n  # references differ too (crop, flip, view); a few tiny crops may coincide
    assert types == {"photo", "hdr"}


def test_photo_pairs_use_the_kind_formula(tmp_path):
    ds = P.SyntheticPairs(_write_photos(tmp_path / "src", n=1), size=16, kinds="global")
    assert ds.n_hdr == 0 and ds.hdr_fraction == 0.0
    x, y = ds.batch(0, 3)
    for i, rec in enumerate(ds.records(0, 3)):
        ev = rec["degradation"]["params"]["ev"]
        want = linear_to_srgb((srgb_to_linear(y[i]) * 2**ev).clamp(0, 1))
        assert (want - x[i]).abs().max() < 1e-5
        assert rec["box"]["h"] == rec["box"]["w"] and rec["box"]["h"] >= int(0.35 * 60)


def test_hdr_pairs_expose_the_same_radiance(tmp_path, fake_hdr):
    ds = P.SyntheticPairs([], fake_hdr, size=16, kinds="global")
    x, y = ds.batch(0, 4)
    for i, rec in enumerate(ds.records(0, 4)):
        assert rec["type"] == "hdr" and rec["exposure_gain"] > 0
        v = H.equirect_to_perspective(H.read_exr(fake_hdr / f"{rec['source']}.exr"), H.View(**rec["view"]), (32, 32))
        v = torch.nn.functional.avg_pool2d(v, 2) * rec["exposure_gain"]
        # the reference's log-average luminance is at the key before the response
        ylum = luminance(v.double(), (0.2126, 0.7152, 0.0722))
        assert math.exp(torch.log(ylum + 1e-4).mean()) == pytest.approx(0.18, rel=1e-2)  # up to the 1e-4 offset
        torch.testing.assert_close(y[i : i + 1], linear_to_srgb(H.shoulder(v)).clamp(0, 1))
        ev = rec["degradation"]["params"]["ev"]
        torch.testing.assert_close(x[i : i + 1], linear_to_srgb(H.shoulder(v * 2**ev)).clamp(0, 1))


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no usable"):
        P.SyntheticPairs([], None)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="1 unreadable"):
        P.SyntheticPairs([bad])
    with pytest.raises(ValueError, match="unknown degradation kind"):
        P.SyntheticPairs(_write_photos(tmp_path / "src", n=1), kinds="sepia")


def test_cache_reused(tmp_path):
    photos = _write_photos(tmp_path / "src", n=1)
    a = P.SyntheticPairs(photos, size=16, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*_le256.png"))) == 1
    b = P.SyntheticPairs(photos, size=16, cache_dir=tmp_path / "cache")
    assert torch.equal(a.batch(0, 2)[0], b.batch(0, 2)[0])


def test_cli_writes_paired_folder(tmp_path, fake_hdr):
    from deepexposure.cli import main

    _write_photos(tmp_path / "src", n=2)
    args = ["synth", str(tmp_path / "src"), "--augment", "2", "--kinds", "all", "--hdr", str(fake_hdr), "--views", "3", "--size", "24", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    man = json.loads((tmp_path / "a" / "pairs.json").read_text())
    assert len(man["items"]) == 2 * 2 + 2 * 3 and man["kinds"] == list(parse_kinds("all"))
    pf = PairedFolder(tmp_path / "a")
    assert len(pf) == 10 and not pf.unmatched
    for f in sorted((tmp_path / "a").rglob("*")):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes(), f
    img = read_image(tmp_path / "a" / "input" / "p0_a0.png").img_srgb
    assert max(img.shape[-2:]) == 24
    view = read_image(tmp_path / "a" / "reference" / "a_view0.png").img_srgb
    assert view.shape[-2:] == (18, 24)
    rec = json.loads((tmp_path / "a" / "params" / "p0_a0.json").read_text())
    assert rec["degradation"]["kind"] in parse_kinds("all") and "box" in rec
    # full frames with --kinds only; one-line errors
    assert main(["synth", str(tmp_path / "src"), "--kinds", "backlit", "--size", "24", "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "c" / "input").iterdir()) == ["p0.png", "p1.png"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 2  # exists
    assert main(["synth", str(tmp_path / "src"), "--kinds", "nope", "--out", str(tmp_path / "d"), "--quiet"]) == 2
