"""Colour and metadata fidelity: sRGB ICC in every output, EXIF carried or dropped cleanly, 16 bit kept."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from deepexposure import io as dio, metadata
from deepexposure.cli import main

CORRUPT_EXIF = {
    "short": b"Exif\x00\x00II",
    "random": b"Exif\x00\x00" + bytes(np.random.default_rng(0).integers(0, 255, 200, dtype=np.uint8)),
}


def _exif(make: str = "TestCam", orientation: int = 1) -> bytes:
    ex = Image.Exif()
    ex[271] = make
    ex[0x0112] = orientation
    return ex.tobytes()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("kind", sorted(CORRUPT_EXIF))
def test_corrupt_exif_is_dropped_not_fatal(tmp_path, fmt, kind):
    p = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(np.full((16, 16, 3), 80, np.uint8)).save(p, fmt, exif=CORRUPT_EXIF[kind])
    r = dio.read_image(p)
    assert r.exif is None and r.img_srgb.shape == (1, 3, 16, 16)
    out = dio.write_image(tmp_path / f"o.{fmt.lower()}", r.img_srgb, exif=CORRUPT_EXIF[kind])
    assert dio.read_image(out).exif is None


@pytest.mark.parametrize("ext,bits", [("jpg", 8), ("png", 8), ("png", 16), ("webp", 8), ("tif", 8), ("tif", 16)])
def test_every_output_embeds_srgb_and_carries_exif(tmp_path, ext, bits):
    p = dio.write_image(tmp_path / f"a.{ext}", torch.rand(1, 3, 12, 10), exif=_exif(), bit_depth=bits, quality=95)
    if ext == "tif":
        with tifffile.TiffFile(p) as tif:
            tags = tif.pages.first.tags
            icc = tags[34675].value
            assert tags[271].value == "TestCam"
    else:
        im = Image.open(p)
        icc = im.info.get("icc_profile")
        assert Image.Image.getexif(im).get(271) == "TestCam" or im.getexif().get(271) == "TestCam"
    assert icc == metadata._srgb_icc()


def test_16_bit_png_stays_16_bit_through_retouch(tmp_path):
    arr = np.random.default_rng(1).integers(0, 65535, (24, 32, 3), dtype=np.uint16)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(imagecodecs.png_encode(arr))
    assert main(["retouch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "identity", "--quiet"]) == 0
    out = imagecodecs.png_decode((tmp_path / "out" / "a.png").read_bytes())
    assert out.dtype == np.uint16 and np.array_equal(out, arr)
