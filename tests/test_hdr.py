"""Tests for deepexposure.hdr: perspective views of equirectangular maps, exposure, EXR reading."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepexposure import hdr as H

HDR_DIR = Path("/work/photos/hdr")


def _lonlat_map(h=64, w=128):
    """A map whose channels encode (cos lon, sin lon, lat) of each pixel centre (module docstring)."""
    lon = 2 * math.pi * (torch.arange(w, dtype=torch.float64) + 0.5) / w - math.pi
    lat = math.pi / 2 - math.pi * (torch.arange(h, dtype=torch.float64) + 0.5) / h
    lon, lat = lon.view(1, w).expand(h, w), lat.view(h, 1).expand(h, w)
    return torch.stack([torch.cos(lon), torch.sin(lon), lat])[None]


def _lon_columns(h=32, w=720):
    """Channel 0 = longitude of the column centre (no wrap inside the test views)."""
    lon = 2 * math.pi * (torch.arange(w, dtype=torch.float64) + 0.5) / w - math.pi
    return lon.view(1, 1, 1, w).expand(1, 3, h, w).contiguous()


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (0.7, 0.3), (-2.0, -0.4), (math.pi - 0.01, 0.1)])
def test_centre_ray_points_at_yaw_pitch(yaw, pitch):
    d = H.perspective_directions(H.View(yaw, pitch, math.radians(60)), 5, 7)
    lon, lat = H.directions_to_lonlat(d)
    assert lon[2, 3].item() == pytest.approx(yaw, abs=1e-12)
    assert lat[2, 3].item() == pytest.approx(pitch, abs=1e-12)
    # pixels to the right look further east, pixels above look higher
    assert (lon[2, 4] - lon[2, 3]).item() > 0 or yaw > 3.1
    assert lat[1, 3].item() > lat[2, 3].item()


def test_straight_ahead_view_recovers_longitudes():
    env = _lon_columns()
    fov, yaw, w = math.radians(80), 0.4, 41
    view = H.equirect_to_perspective(env, H.View(yaw, 0.0, fov), (21, w))
    xc = (2 * (torch.arange(w, dtype=torch.float64) + 0.5) / w - 1) * math.tan(fov / 2)
    want = yaw + torch.atan(xc)  # middle row (pitch 0): d = R_yaw (x_c, 0, 1)
    torch.testing.assert_close(view[0, 0, 10], want, atol=1e-9, rtol=0)
    assert view[0, 0, 10, 20].item() == pytest.approx(yaw)


def test_view_across_the_seam_and_centre_pixel():
    env = _lonlat_map()
    for yaw, pitch in [(math.pi, 0.2), (-math.pi + 0.05, -0.3), (1.0, 0.5)]:
        v = H.equirect_to_perspective(env, H.View(yaw, pitch, math.radians(50)), (9, 9))
        lon = torch.atan2(v[0, 1], v[0, 0])
        # bilinear interpolation of cos/sin/lat: close to the exact direction (grid spacing 2.8 deg)
        assert math.remainder(lon[4, 4].item() - yaw, 2 * math.pi) == pytest.approx(0.0, abs=2e-3)
        assert v[0, 2, 4, 4].item() == pytest.approx(pitch, abs=1e-9)
        assert (v[0, 0] ** 2 + v[0, 1] ** 2).min() > 0.99  # no seam artefact (a gap would pull cos/sin to 0)


def test_fov_checked():
    with pytest.raises(ValueError, match="field of view"):
        H.perspective_directions(H.View(0, 0, math.pi), 4, 4)


def test_shoulder_and_key():
    k = 0.5
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 3.0, -1.0], dtype=torch.float64)
    want = torch.tensor([0.0, 0.25, 0.5, 0.75 - 0.0625 / 2, 1.0 - 0.25 / 2, 1.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(H.shoulder(x, k), want)
    dense = H.shoulder(torch.linspace(0, 2, 2001, dtype=torch.float64))
    assert (dense.diff() >= 0).all() and dense.diff().max() <= 0.001 + 1e-12  # monotone, slope <= 1
    img = torch.full((1, 3, 4, 4), 0.5)
    assert H.key_exposure(img) == pytest.approx(0.18 / (0.5 + 1e-4), rel=1e-6)


def test_sample_view_seeded_and_in_range():
    a = H.sample_view(torch.Generator().manual_seed(3))
    assert a == H.sample_view(torch.Generator().manual_seed(3))
    for s in range(50):
        v = H.sample_view(torch.Generator().manual_seed(s))
        assert -math.pi <= v.yaw <= math.pi and abs(v.pitch) <= math.radians(25) + 1e-12
        assert math.radians(45) <= v.fov <= math.radians(90) + 1e-12


def test_missing_openexr_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "OpenEXR", None)
    with pytest.raises(H.HDRReadError, match="needs the OpenEXR package") as e:
        H.read_exr(tmp_path / "x.exr")
    assert "\n" not in str(e.value)


def test_read_exr_roundtrip(tmp_path):
    OpenEXR = pytest.importorskip("OpenEXR", reason="OpenEXR not installed (pip install 'deepexposure[hdr]')")
    arr = np.random.default_rng(0).random((4, 6, 3), dtype=np.float32) * 100
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, {"RGB": arr}) as f:
        f.write(str(tmp_path / "t.exr"))
    img = H.read_exr(tmp_path / "t.exr")
    assert img.shape == (1, 3, 4, 6) and img.dtype == torch.float32
    torch.testing.assert_close(img[0].permute(1, 2, 0), torch.from_numpy(arr))
    (tmp_path / "bad.exr").write_bytes(b"nope")
    with pytest.raises(H.HDRReadError, match="bad.exr"):
        H.read_exr(tmp_path / "bad.exr")


@pytest.mark.skipif(not HDR_DIR.is_dir(), reason="no /work/photos/hdr (scripts/collect_photos.py)")
def test_read_real_blender_map():
    pytest.importorskip("OpenEXR", reason="OpenEXR not installed (pip install 'deepexposure[hdr]')")
    files = H.list_hdr(HDR_DIR)
    assert files
    img = H.read_exr(files[0])
    assert img.shape == (1, 3, 512, 1024) and img.max() > 1.0
