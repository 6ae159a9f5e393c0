"""Colour and metadata fidelity: sRGB ICC in every output, EXIF carried or dropped cleanly, 16 bit kept."""

from __future__ import annotations

import struct

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, TiffImagePlugin

from deepexposure import io as dio, metadata
from deepexposure.cli import main

CORRUPT_EXIF = {
    "short": b"Exif\x00\x00II",
    "random": b"Exif\x00\x00" + bytes(np.random.default_rng(0).integers(0, 255, 200, dtype=np.uint8)),
}


_R = TiffImagePlugin.IFDRational
#: an Exif sub-IFD as cameras write it: exposure time, f-number, ISO, capture date, exposure bias, lens
CAMERA_EXIF = {0x829A: _R(1, 250), 0x829D: _R(28, 10), 0x8827: 400, 0x9003: "2024:05:06 07:08:09",
               0x9204: _R(-1, 3), 0xA434: "Test 50mm F2.8"}
#: the same, as tifffile names and reads them (rationals as (numerator, denominator))
CAMERA_EXIF_TIFFFILE = {"ExposureTime": (1, 250), "FNumber": (14, 5), "ISOSpeedRatings": 400,
                        "DateTimeOriginal": "2024:05:06 07:08:09", "ExposureBiasValue": (-1, 3), "LensModel": "Test 50mm F2.8"}
GPS = {1: "N", 2: (_R(52), _R(30), _R(0))}


def _exif(make: str = "TestCam", orientation: int = 1, maker_note: bool = False, byteorder: str = ">") -> bytes:
    ex = Image.Exif()
    ex.endian = byteorder
    ex[271] = make
    ex[0x0112] = orientation
    ex[0x8769] = {**CAMERA_EXIF, **({0x927C: b"MAKERNOTE" * 8} if maker_note else {})}
    ex[0x8825] = GPS
    return ex.tobytes()


def _camera_ifds(exif: bytes | None) -> tuple[dict, dict, dict]:
    """(IFD0, Exif sub-IFD, GPS sub-IFD) of an EXIF block, parsed by Pillow."""
    assert exif is not None
    ex = metadata._parse_exif(exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    assert ex is not None
    return {t: v for t, v in ex.items() if t not in (0x8769, 0x8825)}, ex.get_ifd(0x8769), ex.get_ifd(0x8825)


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
            assert tags["ExifTag"].value == CAMERA_EXIF_TIFFFILE  # the whole Exif sub-IFD, read by tifffile
            assert tags["GPSTag"].value == {"GPSLatitudeRef": "N", "GPSLatitude": (52, 1, 30, 1, 0, 1)}
        assert np.array_equal(tifffile.imread(p), dio.read_image(p).img_srgb[0].permute(1, 2, 0).mul((1 << bits) - 1).round().numpy())
    else:
        im = Image.open(p)
        icc = im.info.get("icc_profile")
        assert Image.Image.getexif(im).get(271) == "TestCam" or im.getexif().get(271) == "TestCam"
    assert icc == metadata._srgb_icc()
    ifd0, sub, gps = _camera_ifds(dio.read_image(p).exif)  # read back: every format carries the sub-IFDs
    assert (ifd0[271], sub, gps) == ("TestCam", CAMERA_EXIF, GPS)


def test_embedded_srgb_profile_is_the_same_in_every_run():
    """LittleCMS dates a profile when it builds it; the embedded one has a fixed date (and no profile
    ID that would depend on it), so two runs' outputs are byte-identical. (test_progress compares
    whole outputs of separate processes.)"""
    icc = metadata._srgb_icc()
    fresh = metadata._srgb_profile().tobytes()
    assert icc[24:36] == struct.pack(">6H", 2000, 1, 1, 0, 0, 0) and icc[84:100] == bytes(16)
    assert icc[:24] + icc[36:] == fresh[:24] + fresh[36:]
    assert metadata._icc_description(icc)[1].startswith("sRGB")  # still a valid profile


def test_16_bit_png_stays_16_bit_through_retouch(tmp_path):
    arr = np.random.default_rng(1).integers(0, 65535, (24, 32, 3), dtype=np.uint16)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(imagecodecs.png_encode(arr))
    assert main(["retouch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "identity", "--quiet"]) == 0
    out = imagecodecs.png_decode((tmp_path / "out" / "a.png").read_bytes())
    assert out.dtype == np.uint16 and np.array_equal(out, arr)


# ------------------------------------------------------------------------------------------------ EXIF of TIFF-based files


@pytest.mark.parametrize("magic,ext", [(b"II*\x00", "nef"), (b"MM\x00*", "cr2"), (b"IIRO", "orf"), (b"IIU\x00", "rw2")])
def test_exif_from_tiff_based_raw_structures(tmp_path, magic, ext):
    """A TIFF-structured RAW stand-in (IFD0 + Exif and GPS sub-IFDs, as NEF, CR2, ARW, ORF and RW2 are
    laid out; no raster): the camera EXIF comes back, orientation 1, the maker note left behind."""
    block = _exif("RawCam", orientation=6, maker_note=True, byteorder="<" if magic[:2] == b"II" else ">")[6:]
    assert block[:2] == magic[:2]
    p = tmp_path / f"x.{ext}"
    p.write_bytes(magic + block[4:])
    ifd0, sub, gps = _camera_ifds(metadata.exif_from_tiff(p))
    assert (ifd0, sub, gps) == ({271: "RawCam", 274: 1}, CAMERA_EXIF, GPS)


def test_exif_from_tiff_refuses_hostile_structures(tmp_path):
    head = b"II*\x00" + struct.pack("<I", 8)
    cases = {
        "text.nef": b"not a tiff at all",
        "empty.nef": b"",
        "loop.nef": head + struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, 8) + b"\0" * 4,  # Exif IFD = IFD0
        # 1100 descriptions of 64 KiB each, all the same bytes: 69 MiB for Pillow to read, refused before it does
        "huge.nef": head + struct.pack("<H", 1100) + struct.pack("<HHII", 270, 2, 1 << 16, 13214) * 1100 + b"\0" * 4
        + b"A" * (1 << 16),
        "beyond.nef": head + struct.pack("<H", 2) + struct.pack("<HHI4s", 271, 2, 4, b"Cam\0")
        + struct.pack("<HHII", 0x8769, 4, 1, 1 << 31) + b"\0" * 4,  # Exif IFD past the end of the file
    }
    got = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        got[name] = metadata.exif_from_tiff(tmp_path / name)
    assert got["text.nef"] is got["empty.nef"] is got["huge.nef"] is None
    assert _camera_ifds(got["beyond.nef"])[:2] == ({271: "Cam"}, {})
    assert got["loop.nef"] is None  # an Exif IFD that is IFD0 again holds nothing to carry


def _tiff8_with_exif(path, exif: dict):
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[271], info[272] = "TiffCam", "T1"
    info[0x8769] = exif
    info.tagtype[0x8769] = 4
    Image.fromarray(np.full((16, 24, 3), 90, np.uint8)).save(path, format="TIFF", tiffinfo=info)
    return path


@pytest.mark.parametrize("source", ["dng", "tif"])
@pytest.mark.parametrize("fmt", ["tif", "jpg", "png", "webp"])
def test_camera_exif_reaches_every_output_of_retouch(tmp_path, source, fmt):
    """RAW (a real DNG, decoded by LibRaw) and TIFF inputs: their camera EXIF (make, model, the Exif
    sub-IFD) is in every output format ``retouch`` writes."""
    (tmp_path / "in").mkdir()
    if source == "dng":
        pytest.importorskip("rawpy")
        from tests.test_io import make_dng

        cfa = np.full((32, 48), 1024, np.uint16)
        make_dng(tmp_path / "in" / "a.dng", cfa, exif=CAMERA_EXIF)
        make, model = "Test", "Synthetic"
    else:
        _tiff8_with_exif(tmp_path / "in" / "a.tif", CAMERA_EXIF)
        make, model = "TiffCam", "T1"
    assert main(["retouch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "identity", "--quiet",
                 "--format", fmt, "--no-recipe"]) == 0
    out = tmp_path / "out" / f"a.{fmt}"
    if fmt == "tif":
        with tifffile.TiffFile(out) as tif:
            tags = tif.pages.first.tags
            assert (tags[271].value, tags[272].value, tags["ExifTag"].value) == (make, model, CAMERA_EXIF_TIFFFILE)
    else:
        ex = Image.open(out).getexif()
        assert (ex[271], ex[272], ex.get_ifd(0x8769)) == (make, model, CAMERA_EXIF)
