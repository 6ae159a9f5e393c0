"""Image metadata: EXIF orientation and blocks, ICC colour profiles (LittleCMS), the sRGB profile.

Used by :mod:`deepexposure.decode` (orientation applied, profiles converted to sRGB) and
:mod:`deepexposure.encode` (EXIF carried over with orientation 1, sRGB profile embedded).
"""

from __future__ import annotations

import io as _stdio
import struct
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageCms

from .atomic import _one_line

_EXIF_PREFIX = b"Exif\x00\x00"
_TAG_ORIENTATION = 0x0112
_TAG_ICC = 34675


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 1..8 on an ``(H, W[, C])`` array, as ``PIL.ImageOps.exif_transpose``."""
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(int(orientation)) if isinstance(orientation, (int, np.integer)) else None
    return np.ascontiguousarray(op(arr)) if op is not None else arr


def _normalise_exif(exif: bytes | None) -> bytes | None:
    """Return the EXIF block as ``b"Exif\\0\\0" + TIFF`` with orientation set to 1, or None if unusable."""
    if not exif:
        return None
    exif = bytes(exif)
    if not exif.startswith(_EXIF_PREFIX):
        exif = _EXIF_PREFIX + exif
    tiff = bytearray(exif[len(_EXIF_PREFIX):])
    try:
        bo = {b"II": "<", b"MM": ">"}[bytes(tiff[:2])]
        (ifd,) = struct.unpack_from(bo + "I", tiff, 4)
        (count,) = struct.unpack_from(bo + "H", tiff, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, typ, n = struct.unpack_from(bo + "HHI", tiff, entry)
            if tag == _TAG_ORIENTATION and n == 1 and typ in (3, 4):  # SHORT or LONG, value inline
                struct.pack_into(bo + ("H" if typ == 3 else "I"), tiff, entry + 8, 1)
    except (KeyError, struct.error):
        return None
    if _parse_exif(bytes(tiff)) is None:  # what Pillow cannot parse, no reader will: drop it
        return None
    return _EXIF_PREFIX + bytes(tiff)


def _parse_exif(data: bytes) -> Image.Exif | None:
    """Pillow's parse of an EXIF/TIFF block, its warnings silenced; None if it fails."""
    import warnings

    ex = Image.Exif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ex.load(data)
            for _ in ex.items():  # values are read lazily
                pass
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error, UnicodeDecodeError):
        return None
    return ex


def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _icc_description(icc: bytes) -> tuple[ImageCms.ImageCmsProfile | None, str]:
    try:
        prof = ImageCms.ImageCmsProfile(_stdio.BytesIO(icc))
        return prof, _one_line(ImageCms.getProfileDescription(prof)) or "unnamed"
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None, "unreadable"


def _icc_to_srgb(im: Image.Image, icc: bytes) -> tuple[Image.Image, str | None]:
    """Convert an 8-bit image with an embedded profile to sRGB; return (image, note-or-None)."""
    prof, desc = _icc_description(icc)
    if prof is None:
        return im, "the embedded ICC profile could not be parsed and was ignored; pixels are taken as sRGB."
    if "srgb" in desc.lower():
        return im, None
    try:
        out = ImageCms.profileToProfile(im, prof, _srgb_profile(), outputMode="RGB")
        assert out is not None  # inPlace=False: always a new image
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        return im, (f"the embedded ICC profile '{desc}' could not be applied to this {im.mode} image "
                    f"({_one_line(str(e))}) and was ignored; pixels are taken as sRGB.")
    return out, None


def _icc_to_srgb_16bit(arr: np.ndarray, icc: bytes | None) -> tuple[np.ndarray, str | None]:
    """Convert ``(H, W, 3)`` (or ``(H, W)`` grey) uint16 samples with an embedded profile to sRGB with
    LittleCMS (``imagecodecs.cms_transform``, 16 bit in and out); return ``(rgb (H, W, 3), note)``.

    sRGB-described profiles are taken as they are; an unusable profile is ignored with a note.
    """
    rgb = np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr
    if not icc:
        return rgb, None
    _, desc = _icc_description(icc)
    if "srgb" in desc.lower():
        return rgb, None
    import imagecodecs

    space = "gray" if arr.ndim == 2 else "rgb"
    try:
        out = imagecodecs.cms_transform(np.ascontiguousarray(arr), bytes(icc), _srgb_icc(), colorspace=space,
                                        outcolorspace="rgb", outdtype=np.uint16)
    except (RuntimeError, ValueError, TypeError) as e:
        return rgb, (f"the embedded ICC profile '{desc}' could not be applied to these 16-bit pixels "
                     f"({_one_line(str(e))}) and was ignored; pixels are taken as sRGB.")
    return np.ascontiguousarray(out.reshape(rgb.shape)), None


_SRGB_ICC: bytes | None = None


def _srgb_icc() -> bytes:
    """An sRGB ICC profile (LittleCMS's built-in one, about 600 bytes), embedded in every output."""
    global _SRGB_ICC
    if _SRGB_ICC is None:
        _SRGB_ICC = _srgb_profile().tobytes()
    return _SRGB_ICC
