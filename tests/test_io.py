"""Tests of the image I/O boundary ``deepexposure.io``. All fixtures are generated in ``tmp_path``."""

from __future__ import annotations

import os
import pickle
import struct
import sys
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from deepexposure import encode, io as dio, metadata
from deepexposure.color import linear_to_srgb

ORIENTATION = 0x0112


# ------------------------------------------------------------------------------------------------ helpers


def levels(h: int, w: int, bits: int = 8, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Random ``(h, w, channels)`` integer image."""
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bits == 8 else np.uint16
    return rng.integers(0, 1 << bits, (h, w, channels), endpoint=False).astype(dtype)


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    scale = 255.0 if arr.dtype == np.uint8 else 65535.0
    return torch.from_numpy(arr.transpose(2, 0, 1)[None].astype(np.float32) / scale)


def smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1).astype(np.uint8)


def assert_one_line(err: pytest.ExceptionInfo, path: Path, *words: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert msg.startswith(f"{path}: "), msg
    for word in words:
        assert word.lower() in msg.lower(), msg
    return msg


def icc_linear_rgb() -> bytes:
    """A hand-built ICC v2 matrix/TRC profile: sRGB primaries (D50-adapted) with a linear (gamma 1) TRC."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    curv = b"curv" + bytes(4) + struct.pack(">I", 0)  # zero entries: identity curve
    text = b"Linear RGB test profile\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + struct.pack(">IIHB", 0, 0, 0, 0) + bytes(67)
    tags = [
        (b"desc", desc), (b"cprt", b"text" + bytes(4) + b"none\0"), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv),
    ]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        data += bytes(-(start + len(data)) % 4)
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body
    body = struct.pack(">I", len(tags)) + table + data
    header = (struct.pack(">I", 128 + len(body)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(24) + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48))
    assert len(header) == 128
    return header + body


def make_dng(path: Path, cfa: np.ndarray, neutral=(1.0, 1.0, 1.0), orientation: int = 1, white: int = 4095,
             exif: dict | None = None) -> Path:
    """A minimal valid Bayer (RGGB) DNG whose camera space is linear sRGB (ColorMatrix1 = XYZ->sRGB),
    written by Pillow; ``exif`` ``{tag: value}`` becomes its Exif sub-IFD, as cameras write it."""
    from PIL import TiffImagePlugin

    rational = TiffImagePlugin.IFDRational
    m = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]
    info = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, typ, value in [
        (254, 4, 0), (33421, 3, (2, 2)), (33422, 1, bytes((0, 1, 1, 2))), (262, 3, 32803),
        (271, 2, "Test"), (272, 2, "Synthetic"), (274, 3, orientation),
        (50706, 1, bytes((1, 4, 0, 0))), (50708, 2, "Test Synthetic"),
        (50721, 10, tuple(rational(round(x * 10000), 10000) for x in m)), (50778, 3, 21),
        (50728, 5, tuple(rational(round(n * 1000), 1000) for n in neutral)), (50714, 3, 0), (50717, 3, white),
    ] + ([(0x8769, 4, exif)] if exif else []):
        info[tag] = value
        info.tagtype[tag] = typ
    Image.fromarray(cfa.astype(np.uint16)).save(path, format="TIFF", tiffinfo=info)
    return path


def png_with_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares a size but holds a single tiny IDAT (a 'decompression bomb' header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------------------ conversions


class TestConversions:
    def test_uint8_round_trip_and_shapes(self):
        arr = levels(5, 7)
        t = dio.uint8_to_tensor(arr)
        assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
        assert torch.equal(t, torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255)
        assert np.array_equal(dio.tensor_to_uint8(t), arr)
        assert np.array_equal(dio.tensor_to_uint8(t[0]), arr)
        assert dio.uint8_to_tensor(arr[..., 0]).shape == (1, 1, 5, 7)

    def test_rounding_and_clipping(self):
        t = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 2.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
        assert dio.tensor_to_uint8(t)[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]

    @pytest.mark.parametrize(
        "bad", [torch.zeros(2, 3, 4, 4), torch.zeros(4, 4), torch.zeros(1, 3, 4, 4, dtype=torch.uint8)]
    )
    def test_bad_tensors(self, bad):
        with pytest.raises(ValueError):
            dio.tensor_to_uint8(bad)

    def test_non_finite_refused(self):
        with pytest.raises(ValueError, match="NaN"):
            dio.tensor_to_uint8(torch.full((3, 2, 2), float("nan")))

    def test_uint8_to_tensor_rejects_other_dtypes(self):
        with pytest.raises(ValueError):
            dio.uint8_to_tensor(np.zeros((4, 4, 3), np.uint16))

    def test_compiled_conversions_equal_the_numpy_forms(self, monkeypatch):
        # large photos are converted by deepexposure.pixel_kernels (one parallel pass); the values
        # must be those of the numpy/torch form, rounding ties (half to even) and clipping included
        from deepexposure import decode

        g = torch.Generator().manual_seed(0)
        img = torch.rand(3, 37, 29, generator=g) * 1.2 - 0.1
        img[0, 0, :6] = torch.tensor([0.5 / 255, 1.5 / 255, 2.5 / 255, 254.5 / 255, -0.0, 1.0])
        arr8 = (torch.rand(37, 29, 3, generator=g) * 255).to(torch.uint8).numpy()
        arr16 = (torch.rand(23, 31, generator=g) * 65535).to(torch.int32).numpy().astype(np.uint16)
        rotated = np.rot90(arr8)  # a strided view, as orientation handling makes
        plain = [encode._tensor_to_array(img, 8), encode._tensor_to_array(img, 16), dio.uint8_to_tensor(arr8),
                 decode._array_to_tensor(arr16), decode._array_to_tensor(rotated)]
        monkeypatch.setattr(decode, "COMPILED_MIN_PIXELS", 0)
        compiled = [encode._tensor_to_array(img, 8), encode._tensor_to_array(img, 16), dio.uint8_to_tensor(arr8),
                    decode._array_to_tensor(arr16), decode._array_to_tensor(rotated)]
        for a, b in zip(plain, compiled):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(np.asarray(a), np.asarray(b))
        with pytest.raises(ValueError, match="NaN"):
            dio.tensor_to_uint8(torch.full((3, 2, 2), float("inf")))


# ------------------------------------------------------------------------------------------------ round trips


class TestRoundTrips:
    def test_png8_exact(self, tmp_path):
        arr = levels(20, 31)
        p = dio.write_image(tmp_path / "a.png", as_tensor(arr))
        r = dio.read_image(p)
        assert (r.format, r.bit_depth, r.is_raw, r.alpha, r.icc_note) == ("PNG", 8, False, None, None)
        assert r.img_srgb.shape == (1, 3, 20, 31) and r.img_srgb.dtype == torch.float32
        assert np.array_equal(dio.tensor_to_uint8(r.img_srgb), arr)

    def test_png16_exact(self, tmp_path):
        arr = levels(20, 31, bits=16)
        r = dio.read_image(dio.write_image(tmp_path / "a.png", as_tensor(arr), bit_depth=16))
        assert r.bit_depth == 16
        assert np.array_equal(np.rint(r.img_srgb[0].permute(1, 2, 0).numpy() * 65535).astype(np.uint16), arr)

    def test_png16_against_libpng(self, tmp_path):
        """OpenCV's libpng uses adaptive filters (Paeth, Average): our reader must match it, and it ours."""
        cv2 = pytest.importorskip("cv2")
        arr = levels(33, 45, bits=16, seed=3)
        arr[:12] = np.linspace(0, 65535, 45).astype(np.uint16)[None, :, None]  # smooth rows -> other filters
        cv2.imwrite(str(tmp_path / "cv.png"), arr[..., ::-1])
        r = dio.read_image(tmp_path / "cv.png")
        assert torch.equal(r.img_srgb, as_tensor(arr))
        dio.write_image(tmp_path / "ours.png", as_tensor(arr), bit_depth=16)
        assert np.array_equal(cv2.imread(str(tmp_path / "ours.png"), cv2.IMREAD_UNCHANGED)[..., ::-1], arr)

    def test_tiff16_exact_to_1_over_65535(self, tmp_path):
        arr = levels(21, 30, bits=16, seed=1)
        img = as_tensor(arr)
        r = dio.read_image(dio.write_image(tmp_path / "a.tif", img))  # TIFF defaults to 16 bit
        assert (r.format, r.bit_depth) == ("TIFF", 16)
        assert (r.img_srgb - img).abs().max().item() <= 0.5 / 65535
        assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), arr)
        tifffile.imwrite(tmp_path / "planar.tif", arr.transpose(2, 0, 1), photometric="rgb", planarconfig="separate")
        assert torch.equal(dio.read_image(tmp_path / "planar.tif").img_srgb, img)

    def test_tiff8(self, tmp_path):
        arr = levels(20, 24, seed=2)
        r = dio.read_image(dio.write_image(tmp_path / "a.tiff", as_tensor(arr), bit_depth=8))
        assert (r.format, r.bit_depth) == ("TIFF", 8)
        assert np.array_equal(dio.tensor_to_uint8(r.img_srgb), arr)

    def test_jpeg_within_tolerance(self, tmp_path):
        arr = smooth_rgb()
        r = dio.read_image(dio.write_image(tmp_path / "a.jpg", as_tensor(arr), quality=95))
        err = (r.img_srgb - as_tensor(arr)).abs()
        assert r.format == "JPEG" and err.mean().item() < 1.5 / 255 and err.max().item() < 12 / 255

    def test_webp_lossless_and_lossy(self, tmp_path):
        arr = levels(16, 24, seed=4)
        r = dio.read_image(dio.write_image(tmp_path / "a.webp", as_tensor(arr), quality=100))
        assert r.format == "WEBP" and np.array_equal(dio.tensor_to_uint8(r.img_srgb), arr)
        smooth = smooth_rgb()
        r = dio.read_image(dio.write_image(tmp_path / "b.webp", as_tensor(smooth), quality=90))
        assert (r.img_srgb - as_tensor(smooth)).abs().mean().item() < 3 / 255

    def test_format_from_content_not_extension(self, tmp_path):
        arr = levels(10, 12)
        Image.fromarray(arr).save(tmp_path / "really_png.jpg", format="PNG")
        r = dio.read_image(tmp_path / "really_png.jpg")
        assert r.format == "PNG" and np.array_equal(dio.tensor_to_uint8(r.img_srgb), arr)

    def test_header_probe(self, tmp_path):
        dio.write_image(tmp_path / "a.png", as_tensor(levels(10, 17)))
        assert dio.read_image_header(tmp_path / "a.png") == (17, 10)
        dio.write_image(tmp_path / "a.tif", as_tensor(levels(10, 17)))
        assert dio.read_image_header(tmp_path / "a.tif") == (17, 10)


# ------------------------------------------------------------------------------------------------ orientation


class TestOrientation:
    def test_jpeg_orientation_6(self, tmp_path):
        arr = np.zeros((24, 40, 3), np.uint8)
        arr[:8, :8] = (255, 0, 0)  # marker in the stored top-left corner
        exif = Image.Exif()
        exif[ORIENTATION] = 6
        exif[0x010F] = "TestCam"  # Make: must survive
        Image.fromarray(arr).save(tmp_path / "o6.jpg", exif=exif.tobytes(), quality=95)
        r = dio.read_image(tmp_path / "o6.jpg")
        assert r.img_srgb.shape == (1, 3, 40, 24)  # rotated: H=40, W=24
        assert dio.read_image_header(tmp_path / "o6.jpg") == (24, 40)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o6.jpg")).convert("RGB"))
        assert np.array_equal(dio.tensor_to_uint8(r.img_srgb), expected)
        assert r.img_srgb[0, 0, :4, -4:].mean() > 0.9  # orientation 6 = rotate 90 deg clockwise: marker top-right
        out = dio.write_image(tmp_path / "out.jpg", r.img_srgb, exif=r.exif)
        written = Image.open(out).getexif()
        assert written[ORIENTATION] == 1 and written[0x010F] == "TestCam"
        assert r.exif.startswith(b"Exif\x00\x00")
        back = dio.read_image(out)
        assert back.img_srgb.shape == (1, 3, 40, 24)  # not rotated a second time

    @pytest.mark.parametrize("orientation", range(1, 9))
    def test_all_orientations_match_pillow(self, tmp_path, orientation):
        arr = levels(9, 14, seed=orientation)
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        p = tmp_path / "o.png"
        Image.fromarray(arr).save(p, exif=exif.tobytes())
        expected = np.asarray(ImageOps.exif_transpose(Image.open(p)))
        assert np.array_equal(dio.tensor_to_uint8(dio.read_image(p).img_srgb), expected)
        assert dio.read_image_header(p) == expected.shape[1::-1]

    def test_tiff16_orientation(self, tmp_path):
        arr = levels(10, 16, bits=16)
        tifffile.imwrite(tmp_path / "o.tif", arr, photometric="rgb", extratags=[(274, "H", 1, 8, True)])
        r = dio.read_image(tmp_path / "o.tif")
        assert torch.equal(r.img_srgb, as_tensor(np.ascontiguousarray(np.rot90(arr, 1))))  # 8 = 90 deg ccw
        assert dio.read_image_header(tmp_path / "o.tif") == (10, 16)

    def test_exif_patch_keeps_everything_else(self):
        exif = Image.Exif()
        exif[ORIENTATION] = 3
        exif[0x0110] = "Model X"
        raw = exif.tobytes()
        fixed = metadata._normalise_exif(raw)
        assert len(fixed) == len(raw) and sum(a != b for a, b in zip(fixed, raw)) == 1
        assert metadata._normalise_exif(raw[6:]) == fixed  # without the "Exif\0\0" prefix
        assert metadata._normalise_exif(b"Exif\x00\x00garbage") is None


# ------------------------------------------------------------------------------------------------ colour, channels


class TestColourAndChannels:
    def test_icc_linear_profile_is_converted(self, tmp_path):
        ramp = np.repeat(np.arange(32, 256, dtype=np.uint8)[None, :], 8, 0)
        arr = np.stack([ramp, ramp, ramp], -1)
        Image.fromarray(arr).save(tmp_path / "lin.png", icc_profile=icc_linear_rgb())
        r = dio.read_image(tmp_path / "lin.png")
        assert r.icc_note is None
        expected = linear_to_srgb(torch.from_numpy(ramp[0].astype(np.float32) / 255))
        got = r.img_srgb[0, :, 0, :]
        assert (got - expected).abs().max().item() < 2.5 / 255
        assert got[1, 96].item() > 0.7  # 128/255 linear -> ~0.735 sRGB: a big, real change

    def test_icc_that_cannot_apply_is_noted(self, tmp_path):
        lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
        arr = levels(12, 12)
        Image.fromarray(arr).save(tmp_path / "lab.png", icc_profile=lab)
        r = dio.read_image(tmp_path / "lab.png")
        assert "ignored" in r.icc_note and "\n" not in r.icc_note
        assert np.array_equal(dio.tensor_to_uint8(r.img_srgb), arr)

    @pytest.mark.parametrize("ext", ["tif", "png"])
    def test_icc_on_16_bit_is_converted(self, tmp_path, ext):
        """16-bit TIFF and PNG go through LittleCMS (imagecodecs) with 16 bits in and out."""
        ramp = np.repeat(np.linspace(8192, 65535, 64).astype(np.uint16)[None, :], 8, 0)
        arr = np.stack([ramp, ramp, ramp], -1)
        if ext == "tif":
            tifffile.imwrite(tmp_path / "p.tif", arr, photometric="rgb", iccprofile=icc_linear_rgb())
        else:
            data = imagecodecs.png_encode(arr)
            chunk = encode._png_chunk(b"iCCP", b"lin\0\0" + zlib.compress(icc_linear_rgb()))
            (tmp_path / "p.png").write_bytes(data[:33] + chunk + data[33:])
        r = dio.read_image(tmp_path / f"p.{ext}")
        assert r.icc_note is None and r.bit_depth == 16
        expected = linear_to_srgb(torch.from_numpy(ramp[0].astype(np.float32) / 65535))
        assert (r.img_srgb[0, :, 0, :] - expected).abs().max().item() < 1.0 / 255

    def test_icc_that_cannot_apply_on_16_bit_is_noted(self, tmp_path):
        arr = levels(10, 10, bits=16)
        tifffile.imwrite(tmp_path / "p.tif", arr, photometric="rgb", iccprofile=b"\0" * 200)
        r = dio.read_image(tmp_path / "p.tif")
        assert "ignored" in r.icc_note and "\n" not in r.icc_note
        assert torch.equal(r.img_srgb, as_tensor(arr))

    def test_srgb_profile_is_left_alone(self, tmp_path):
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        arr = levels(10, 10)
        Image.fromarray(arr).save(tmp_path / "s.png", icc_profile=srgb)
        r = dio.read_image(tmp_path / "s.png")
        assert r.icc_note is None and np.array_equal(dio.tensor_to_uint8(r.img_srgb), arr)

    def test_grey_8_and_16(self, tmp_path):
        g8 = levels(10, 12, channels=1)[..., 0]
        Image.fromarray(g8).save(tmp_path / "g8.png")
        r = dio.read_image(tmp_path / "g8.png")
        assert r.img_srgb.shape == (1, 3, 10, 12) and r.bit_depth == 8
        assert np.array_equal(dio.tensor_to_uint8(r.img_srgb), np.repeat(g8[..., None], 3, 2))
        g16 = levels(10, 12, bits=16, channels=1)[..., 0]
        Image.fromarray(g16).save(tmp_path / "g16.png")  # Pillow writes I;16 grey PNG
        r = dio.read_image(tmp_path / "g16.png")
        assert r.bit_depth == 16 and torch.equal(r.img_srgb, as_tensor(np.repeat(g16[..., None], 3, 2)))
        tifffile.imwrite(tmp_path / "g16.tif", g16, photometric="minisblack")
        assert torch.equal(dio.read_image(tmp_path / "g16.tif").img_srgb, r.img_srgb)

    @pytest.mark.parametrize("ext,bits", [("png", 8), ("png", 16), ("tif", 8), ("tif", 16), ("webp", 8)])
    def test_alpha_pass_through(self, tmp_path, ext, bits):
        rgba = levels(12, 18, bits=bits, channels=4, seed=bits)
        img, alpha = as_tensor(rgba[..., :3]), as_tensor(rgba[..., 3:])
        p = dio.write_image(tmp_path / f"a.{ext}", img, alpha=alpha, bit_depth=bits, quality=100)
        r = dio.read_image(p)
        assert r.alpha.shape == (1, 1, 12, 18)
        assert torch.equal(r.alpha, alpha) and torch.equal(r.img_srgb, img)
        q = dio.write_image(tmp_path / f"b.{ext}", r.img_srgb, alpha=r.alpha, bit_depth=bits, quality=100)
        assert torch.equal(dio.read_image(q).alpha, alpha)

    def test_alpha_from_pillow_modes(self, tmp_path):
        la = levels(10, 10, channels=2)
        Image.merge("LA", [Image.fromarray(la[..., 0]), Image.fromarray(la[..., 1])]).save(tmp_path / "la.png")
        r = dio.read_image(tmp_path / "la.png")
        assert np.array_equal(dio.tensor_to_uint8(r.alpha)[..., 0], la[..., 1])
        assert np.array_equal(dio.tensor_to_uint8(r.img_srgb), np.repeat(la[..., :1], 3, 2))
        pal = Image.new("P", (10, 10), 1)
        pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
        pal.info["transparency"] = 0
        pal.putpixel((0, 0), 0)
        pal.save(tmp_path / "p.png", transparency=0)
        r = dio.read_image(tmp_path / "p.png")
        assert r.alpha[0, 0, 0, 0] == 0 and r.alpha[0, 0, 5, 5] == 1
        assert dio.tensor_to_uint8(r.img_srgb)[5, 5].tolist() == [200, 100, 50]

    def test_grey_alpha_16_bit_png(self, tmp_path):
        la = levels(9, 11, bits=16, channels=2)
        with open(tmp_path / "la16.png", "wb") as f:
            encode._encode_png16(f, la, None)
        r = dio.read_image(tmp_path / "la16.png")
        assert r.bit_depth == 16
        assert torch.equal(r.alpha, as_tensor(la[..., 1:]))
        assert torch.equal(r.img_srgb, as_tensor(np.repeat(la[..., :1], 3, 2)))


# ------------------------------------------------------------------------------------------------ bad input


class TestBadInput:
    def test_empty_file(self, tmp_path):
        p = tmp_path / "empty.jpg"
        p.write_bytes(b"")
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p)
        assert_one_line(e, p, "empty")

    def test_truncated_jpeg(self, tmp_path):
        Image.fromarray(levels(64, 64)).save(tmp_path / "full.jpg", quality=90)
        data = (tmp_path / "full.jpg").read_bytes()
        for name, cut in [("half.jpg", len(data) // 2), ("head.jpg", 40)]:
            p = tmp_path / name
            p.write_bytes(data[:cut])
            with pytest.raises(dio.ImageReadError) as e:
                dio.read_image(p)
            assert_one_line(e, p, "JPEG")

    def test_truncated_png(self, tmp_path):
        dio.write_image(tmp_path / "full.png", as_tensor(levels(64, 64)))
        p = tmp_path / "cut.png"
        p.write_bytes((tmp_path / "full.png").read_bytes()[:300])
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p)
        assert_one_line(e, p, "PNG")

    def test_truncated_tiff16(self, tmp_path):
        tifffile.imwrite(tmp_path / "full.tif", levels(64, 64, bits=16), photometric="rgb")
        p = tmp_path / "cut.tif"
        p.write_bytes((tmp_path / "full.tif").read_bytes()[:12000])
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p)
        assert_one_line(e, p, "TIFF")

    def test_tiff16_lzw(self, tmp_path):
        """tifffile needs imagecodecs for LZW: without it, a one-line message says what to install."""
        p = tmp_path / "lzw.tif"
        Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(p, compression="tiff_lzw")
        try:
            import imagecodecs  # noqa: F401
        except ImportError:
            with pytest.raises(dio.ImageReadError) as e:
                dio.read_image(p)
            assert_one_line(e, p, "LZW", "pip install imagecodecs")
        else:
            assert torch.allclose(dio.read_image(p).img_srgb, torch.tensor(40000 / 65535))

    def test_text_named_jpg(self, tmp_path):
        p = tmp_path / "notes.jpg"
        p.write_text("this is not an image\nsecond line\n")
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p)
        assert_one_line(e, p, "text", ".jpg")
        with pytest.raises(dio.ImageReadError):
            dio.read_image_header(p)

    @pytest.mark.parametrize("size", [(1, 1), (7, 100)])
    def test_too_small(self, tmp_path, size):
        p = tmp_path / "tiny.png"
        Image.new("RGB", size).save(p)
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p)
        assert_one_line(e, p, f"{size[0]}x{size[1]}", str(dio.MIN_SIDE))

    def test_decompression_bomb_header(self, tmp_path):
        p = png_with_header_only(tmp_path / "bomb.png", 100_000, 100_000)
        assert dio.read_image_header(p) == (100_000, 100_000)  # probing is cheap and allowed
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p)
        assert_one_line(e, p, "10000000000", "decompression bomb")

    def test_max_pixels_is_configurable(self, tmp_path):
        p = dio.write_image(tmp_path / "a.png", as_tensor(levels(40, 40)))
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p, max_pixels=1000)
        assert_one_line(e, p, "1600", "1000")
        assert dio.read_image(p, max_pixels=1600).img_srgb.shape == (1, 3, 40, 40)
        assert dio.read_image(p, max_pixels=None).img_srgb.shape == (1, 3, 40, 40)

    def test_pillow_decompression_bomb_error(self, tmp_path, monkeypatch):
        """Pillow's own guard (it fires while loading TIFF tiles) is reported as one line too."""
        p = dio.write_image(tmp_path / "a.tif", as_tensor(levels(40, 40)), bit_depth=8)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p, max_pixels=None)
        assert_one_line(e, p, "decompression bomb")

    def test_missing_directory_and_bad_parent(self, tmp_path):
        (tmp_path / "file.png").write_bytes(b"x")
        cases = [(tmp_path / "missing.png", "no such file"), (tmp_path, "folder"),
                 (tmp_path / "file.png" / "x.png", "no such file")]
        for p, word in cases:
            for fn in (dio.read_image, dio.read_image_header):
                with pytest.raises(dio.ImageReadError) as e:
                    fn(p)
                assert_one_line(e, p, word)

    @pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root can read anything")
    def test_permission_denied(self, tmp_path):
        p = dio.write_image(tmp_path / "a.png", as_tensor(levels(10, 10)))
        p.chmod(0)
        try:
            with pytest.raises(dio.ImageReadError) as e:
                dio.read_image(p)
            assert_one_line(e, p, "permission")
        finally:
            p.chmod(0o644)

    def test_error_pickles_and_keeps_parts(self, tmp_path):
        err = dio.ImageReadError(tmp_path / "x.png", "bad\nthing")
        assert str(err) == f"{tmp_path / 'x.png'}: bad thing" and err.problem == "bad thing"
        back = pickle.loads(pickle.dumps(err))
        assert str(back) == str(err) and back.path == err.path
        assert str(dio.ImageReadError("whole message")) == "whole message"  # DataLoader re-raise form
        assert isinstance(err, ValueError) and isinstance(dio.ImageWriteError("x"), ValueError)


# ------------------------------------------------------------------------------------------------ writing


class TestWriting:
    def test_atomic_no_temp_left_and_no_overwrite(self, tmp_path):
        img = as_tensor(levels(10, 10))
        p = dio.write_image(tmp_path / "a.png", img)
        assert sorted(os.listdir(tmp_path)) == ["a.png"]
        before = p.read_bytes()
        with pytest.raises(dio.ImageWriteError) as e:
            dio.write_image(p, as_tensor(levels(10, 10, seed=9)))
        assert_one_line(e, p, "exists", "overwrite")
        assert p.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["a.png"]
        dio.write_image(p, as_tensor(levels(10, 10, seed=9)), overwrite=True)
        assert p.read_bytes() != before and sorted(os.listdir(tmp_path)) == ["a.png"]

    @pytest.mark.parametrize("ext", ["png", "tif", "jpg"])
    def test_failure_mid_write_cleans_up(self, tmp_path, monkeypatch, ext):
        p = dio.write_image(tmp_path / f"a.{ext}", as_tensor(levels(10, 10)))
        before = p.read_bytes()

        def broken(f, *args, **kwargs):
            f.write(b"partial data")
            raise OSError("disk full")

        monkeypatch.setattr(encode, "_encode", broken)
        with pytest.raises(dio.ImageWriteError) as e:
            dio.write_image(p, as_tensor(levels(10, 10, seed=5)), overwrite=True)
        assert_one_line(e, p, "disk full")
        assert p.read_bytes() == before and os.listdir(tmp_path) == [f"a.{ext}"]

    def test_files_written_as_one_unit(self, tmp_path):
        # atomic_write_many (retouch_file's image + recipe + sheet): all placed, or none and no temp file
        from deepexposure.atomic import atomic_write_many, bytes_file

        img = as_tensor(levels(10, 10))
        atomic_write_many([encode.image_file(tmp_path / "a.png", img), bytes_file(tmp_path / "a.json", b"{}")], False)
        assert sorted(os.listdir(tmp_path)) == ["a.json", "a.png"]

        def broken(f):
            raise OSError("disk full")

        with pytest.raises(dio.WriteError) as e:  # the second file fails while written: the first is never placed
            atomic_write_many([encode.image_file(tmp_path / "b.png", img), (tmp_path / "b.json", broken, dio.WriteError)], False)
        assert_one_line(e, tmp_path / "b.json", "disk full")
        with pytest.raises(dio.WriteError) as e:  # the second exists: the first, placed already, is removed again
            atomic_write_many([encode.image_file(tmp_path / "c.png", img), bytes_file(tmp_path / "a.json", b"[]")], False)
        assert_one_line(e, tmp_path / "a.json", "exists")
        assert sorted(os.listdir(tmp_path)) == ["a.json", "a.png"] and (tmp_path / "a.json").read_bytes() == b"{}"

    def test_missing_folder(self, tmp_path):
        p = tmp_path / "nope" / "a.png"
        with pytest.raises(dio.ImageWriteError) as e:
            dio.write_image(p, as_tensor(levels(10, 10)))
        assert_one_line(e, p, "does not exist")

    def test_refuses_to_overwrite_an_input(self, tmp_path):
        src = dio.write_image(tmp_path / "in.png", as_tensor(levels(10, 10)))
        before = src.read_bytes()
        (tmp_path / "sub").mkdir()
        (tmp_path / "link.png").symlink_to(src)
        for out in [src, tmp_path / "sub" / ".." / "in.png", tmp_path / "link.png", str(src)]:
            with pytest.raises(dio.ImageWriteError) as e:
                dio.write_image(out, as_tensor(levels(10, 10, seed=1)), overwrite=True, protect=[src])
            assert_one_line(e, Path(out), "input")
            with pytest.raises(dio.ImageWriteError):
                dio.check_output_path(out, [src], overwrite=True)
        assert src.read_bytes() == before
        assert dio.check_output_path(tmp_path / "new.png", [src]) == tmp_path / "new.png"
        with pytest.raises(dio.ImageWriteError):
            dio.check_output_path(src, src, overwrite=True)  # a single path, not a list
        with pytest.raises(dio.ImageWriteError) as e:
            dio.check_output_path(tmp_path, [src])
        assert_one_line(e, tmp_path, "folder")

    @pytest.mark.parametrize(
        "name,kwargs,word",
        [
            ("a.bmp", {}, "extension"),
            ("a.jpg", {"bit_depth": 16}, "bit_depth"),
            ("a.webp", {"bit_depth": 16}, "bit_depth"),
            ("a.png", {"bit_depth": 12}, "bit_depth"),
            ("a.jpg", {"alpha": torch.ones(1, 1, 10, 10)}, "alpha"),
            ("a.png", {"alpha": torch.ones(1, 1, 5, 5)}, "alpha"),
            ("a.jpg", {"quality": 0}, "quality"),
            ("a.jpg", {"quality": 101}, "quality"),
        ],
    )
    def test_bad_arguments(self, tmp_path, name, kwargs, word):
        p = tmp_path / name
        with pytest.raises(dio.ImageWriteError) as e:
            dio.write_image(p, as_tensor(levels(10, 10)), **kwargs)
        assert_one_line(e, p, word)
        assert os.listdir(tmp_path) == []

    @pytest.mark.parametrize("img", [torch.full((1, 3, 10, 10), float("nan")), torch.zeros(1, 4, 10, 10),
                                     torch.zeros(2, 3, 10, 10), torch.zeros(10, 10)])
    def test_bad_images(self, tmp_path, img):
        p = tmp_path / "a.png"
        with pytest.raises(dio.ImageWriteError) as e:
            dio.write_image(p, img)
        assert_one_line(e, p)
        assert os.listdir(tmp_path) == []

    def test_accepts_chw_and_clips(self, tmp_path):
        img = torch.linspace(-1, 2, 3 * 10 * 10).view(3, 10, 10)
        r = dio.read_image(dio.write_image(tmp_path / "a.png", img))
        assert torch.equal(r.img_srgb[0], (torch.round(img.clamp(0, 1) * 255) / 255))


# ------------------------------------------------------------------------------------------------ listing


def test_list_images(tmp_path):
    files = ["b.jpg", "a.PNG", "c.txt", ".hidden.jpg", "sub/z.tif", "sub/a.dng", ".git/x.png", "sub/deep/y.webp"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    rel = [p.relative_to(tmp_path).as_posix() for p in dio.list_images([tmp_path])]
    assert rel == ["a.PNG", "b.jpg", "sub/a.dng", "sub/deep/y.webp", "sub/z.tif"]
    assert [p.name for p in dio.list_images([tmp_path], recursive=False)] == ["a.PNG", "b.jpg"]
    explicit = dio.list_images([tmp_path / "c.txt", tmp_path / "sub", tmp_path / "sub" / "z.tif"])
    assert [p.name for p in explicit] == ["c.txt", "a.dng", "y.webp", "z.tif"]  # explicit file kept, no duplicate
    assert dio.list_images(tmp_path / "b.jpg") == [tmp_path / "b.jpg"]
    with pytest.raises(dio.ImageReadError) as e:
        dio.list_images([tmp_path / "missing"])
    assert_one_line(e, tmp_path / "missing", "no such")
    assert ".dng" in dio.RAW_EXTENSIONS and dio.RAW_EXTENSIONS <= dio.IMAGE_EXTENSIONS


# ------------------------------------------------------------------------------------------------ RAW


class TestRaw:
    @pytest.fixture(autouse=True)
    def _rawpy(self):
        pytest.importorskip("rawpy")

    def bayer(self, r: int, g: int, b: int, h: int = 32, w: int = 48) -> np.ndarray:
        cfa = np.full((h, w), g, np.uint16)
        cfa[0::2, 0::2] = r
        cfa[1::2, 1::2] = b
        return cfa

    def test_real_dng_linear_camera_white_balance(self, tmp_path):
        # blue photosites read half; the camera's as-shot neutral says blue is half as sensitive
        p = make_dng(tmp_path / "a.dng", self.bayer(1024, 1024, 512), neutral=(1.0, 1.0, 0.5))
        r = dio.read_image(p)
        assert (r.is_raw, r.format, r.bit_depth, r.alpha) == (True, "DNG", 16, None)
        assert {t: v for t, v in metadata._parse_exif(r.exif[6:]).items()} == {271: "Test", 272: "Synthetic", 274: 1}
        assert r.img_srgb.shape == (1, 3, 32, 48)
        centre_lin = r.img_lin[0, :, 8:-8, 8:-8]
        # linear and not auto-brightened: the stored 1024 / 4095 comes back
        assert torch.allclose(centre_lin, torch.full_like(centre_lin, 1024 / 4095), atol=2 / 65535)
        centre = r.img_srgb[0, :, 8:-8, 8:-8]
        assert torch.allclose(centre, linear_to_srgb(torch.tensor(1024 / 4095)).expand_as(centre), atol=1e-4)

    def test_real_dng_orientation(self, tmp_path):
        p = make_dng(tmp_path / "o.dng", self.bayer(1024, 1024, 1024), orientation=6)
        assert dio.read_image(p).img_srgb.shape == (1, 3, 48, 32)
        assert dio.read_image_header(p) == (32, 48)

    def test_dng_limits_checked_before_postprocess(self, tmp_path):
        p = make_dng(tmp_path / "a.dng", self.bayer(1, 1, 1))
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p, max_pixels=1000)
        assert_one_line(e, p, "1536", "max_pixels")

    def test_postprocess_arguments(self, tmp_path, monkeypatch):
        import rawpy

        calls = {}
        lin = np.tile(np.array([0, 32768, 65535], np.uint16), (10, 12, 1))

        class FakeRaw:
            sizes = type("Sizes", (), {"width": 12, "height": 10, "raw_width": 12, "raw_height": 10, "flip": 0})()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def postprocess(self, **kwargs):
                calls.update(kwargs)
                return lin

        monkeypatch.setattr(rawpy, "imread", lambda path: FakeRaw())
        p = tmp_path / "x.nef"
        p.write_bytes(b"fake raw")
        r = dio.read_image(p)
        assert calls == {"gamma": (1, 1), "no_auto_bright": True, "output_bps": 16, "use_camera_wb": True,
                         "output_color": rawpy.ColorSpace.sRGB}
        assert r.format == "NEF" and r.img_srgb.shape == (1, 3, 10, 12)
        assert torch.allclose(r.img_srgb[0, :, 0, 0], linear_to_srgb(torch.tensor([0, 32768 / 65535, 1.0])))
        assert torch.allclose(r.img_lin[0, :, 0, 0], torch.tensor([0, 32768 / 65535, 1.0]), atol=1e-6)

    def test_not_a_raw_file(self, tmp_path):
        p = tmp_path / "bad.cr2"
        p.write_text("definitely not a raw file\n")
        with pytest.raises(dio.ImageReadError) as e:
            dio.read_image(p)
        assert_one_line(e, p, "LibRaw")

    def test_missing_rawpy_message(self, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "rawpy", None)  # makes `import rawpy` fail
        p = tmp_path / "a.arw"
        p.write_bytes(b"whatever")
        for fn in (dio.read_image, dio.read_image_header):
            with pytest.raises(dio.ImageReadError) as e:
                fn(p)
            assert_one_line(e, p, "install 'deepexposure[raw]'")
