"""Image metadata: EXIF orientation and blocks, ICC colour profiles (LittleCMS), the sRGB profile.

Used by :mod:`deepexposure.decode` (orientation applied, profiles converted to sRGB) and
:mod:`deepexposure.encode` (EXIF carried over with orientation 1, sRGB profile embedded).
"""

from __future__ import annotations

import io as _stdio
import os
import struct
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, TiffImagePlugin

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


#: Creation date written into the embedded sRGB profile's header (ICC header bytes 24-35: year, month,
#: day, hour, minute, second as big-endian uint16). LittleCMS stamps the time the profile was built,
#: which made every run's outputs differ; a fixed date keeps them byte-identical.
_SRGB_ICC_DATE = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)


def _srgb_icc() -> bytes:
    """An sRGB ICC profile (LittleCMS's built-in one, about 600 bytes, dated :data:`_SRGB_ICC_DATE`;
    it carries no profile ID, so the date is all that changes), embedded in every output."""
    global _SRGB_ICC
    if _SRGB_ICC is None:
        icc = bytearray(_srgb_profile().tobytes())
        icc[24:36] = _SRGB_ICC_DATE
        _SRGB_ICC = bytes(icc)
    return _SRGB_ICC


# ----------------------------------------------------------------------------------------------
# EXIF of TIFF-structured files: TIFF, DNG and the TIFF-based camera RAWs (CR2, NEF, ARW, ORF, RW2, ...)

_TAG_EXIF_IFD = 0x8769
_TAG_GPS_IFD = 0x8825
#: IFD0 tags carried from a TIFF-structured file into its EXIF block: image description, make, model,
#: orientation, x / y resolution and unit, software, date/time, artist, copyright (not the tags that
#: describe the stored raster: sizes, strips, CFA layout, DNG colour data).
_IFD0_CARRIED = (270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 33432)
#: Exif sub-IFD tags not carried: the maker note (its internal offsets point into the original file),
#: the Interoperability IFD pointer (an offset into the original file) and IFD pointers that belong in IFD0.
_EXIF_DROPPED = (0x927C, 0xA005, 0x8769, 0x8825)
#: The first 4 bytes of TIFF-structured files -> the standard TIFF header Pillow parses them with.
#: Olympus ORF (``IIRO``, ``IIRS``, ``MMOR``) and Panasonic RW2 (``IIU\0``) are TIFF with another magic.
_TIFF_MAGICS = {b"II*\x00": b"II*\x00", b"MM\x00*": b"MM\x00*", b"IIRO": b"II*\x00", b"IIRS": b"II*\x00",
                b"MMOR": b"MM\x00*", b"IIU\x00": b"II*\x00"}
#: Bounds on what :func:`exif_from_tiff` reads from a possibly hostile file, checked before Pillow parses it.
_MAX_IFD_ENTRIES = 4096
_MAX_IFD_BYTES = 64 << 20
_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def _ifd_in_bounds(f: BinaryIO, offset: int, bo: str, file_size: int) -> bool:
    """True when the IFD at ``offset`` has at most :data:`_MAX_IFD_ENTRIES` entries whose out-of-line
    values total at most :data:`_MAX_IFD_BYTES` bytes: the work Pillow will do to load it is bounded."""
    if not 8 <= offset < file_size:
        return False
    f.seek(offset)
    head = f.read(2)
    if len(head) != 2:
        return False
    (n,) = struct.unpack(bo + "H", head)
    table = f.read(12 * n)
    if n > _MAX_IFD_ENTRIES or len(table) != 12 * n:
        return False
    total = 0
    for i in range(n):
        _, typ, count = struct.unpack_from(bo + "HHI", table, 12 * i)
        size = _TYPE_BYTES.get(typ, 1) * count
        total += size if size > 4 else 0
    return total <= _MAX_IFD_BYTES


def _load_ifd(f: BinaryIO, ifh: bytes, offset: int, group: int | None = None) -> TiffImagePlugin.ImageFileDirectory_v2:
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh, group=group)
    f.seek(offset)
    ifd.load(f)
    return ifd


def exif_from_tiff(path: str | os.PathLike) -> bytes | None:
    """The EXIF block (``b"Exif\\0\\0"`` + TIFF structure, orientation reset to 1) of a TIFF-structured
    file: TIFF, DNG, and the TIFF-based camera RAWs (CR2, NEF, NRW, ARW, SR2, SRF, PEF, ORF, RW2, 3FR,
    ERF, IIQ, MOS, ...), whose camera EXIF ``rawpy`` does not return.

    Carried: the descriptive IFD0 tags (:data:`_IFD0_CARRIED`: make, model, date, artist, copyright,
    ...), the whole Exif sub-IFD (exposure time, aperture, ISO, lens, dates, ...) except the maker
    note and the interoperability pointer, and the GPS sub-IFD. Files that are not TIFF-structured
    (CR3, RAF, CRW, MRW, X3F, BigTIFF) and unreadable or oversized EXIF give None; nothing raises.
    The file is read with seeks, not loaded whole; IFD sizes are bounded before they are parsed.
    """
    import warnings

    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = f.read(8)
            magic = _TIFF_MAGICS.get(head[:4])
            if magic is None or len(head) != 8:
                return None
            size = os.fstat(f.fileno()).st_size
            bo = "<" if head[:2] == b"II" else ">"
            ifh = magic + head[4:8]
            (offset,) = struct.unpack(bo + "I", head[4:8])
            if not _ifd_in_bounds(f, offset, bo, size):
                return None
            ifd0 = _load_ifd(f, ifh, offset)
            out = Image.Exif()
            for tag in _IFD0_CARRIED:
                if tag in ifd0:
                    out[tag] = ifd0[tag]
            for pointer in (_TAG_EXIF_IFD, _TAG_GPS_IFD):
                sub_offset = ifd0.get(pointer)
                if isinstance(sub_offset, int) and _ifd_in_bounds(f, sub_offset, bo, size):
                    sub = _load_ifd(f, ifh, sub_offset, group=pointer)
                    kept = {t: v for t, v in sub.items() if t not in _EXIF_DROPPED}
                    if kept:
                        out[pointer] = kept
            if not len(out):
                return None
            block = out.tobytes()
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error, UnicodeDecodeError,
            RecursionError):
        return None
    return _normalise_exif(block)


def exif_sub_ifds(exif: bytes | None) -> dict[int, dict]:
    """The Exif and GPS sub-IFDs of an EXIF block: ``{0x8769: {tag: value}, 0x8825: {...}}`` (empty or
    unparseable ones left out; the maker note and interoperability pointer dropped as in
    :func:`exif_from_tiff`). Used to write them into TIFF outputs."""
    ex = _parse_exif(exif[len(_EXIF_PREFIX):] if exif and exif.startswith(_EXIF_PREFIX) else exif or b"")
    if ex is None:
        return {}
    out: dict[int, dict] = {}
    for pointer in (_TAG_EXIF_IFD, _TAG_GPS_IFD):
        try:
            kept = {t: v for t, v in ex.get_ifd(pointer).items() if t not in _EXIF_DROPPED}
        except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error, UnicodeDecodeError):
            continue
        if kept:
            out[pointer] = kept
    return out


def sub_ifd_bytes(pointer: int, tags: dict, offset: int) -> bytes:
    """One little-endian IFD (entries, next-IFD 0, then the values) to be written at file ``offset``;
    tag types follow Pillow's table for the ``pointer`` group (Exif or GPS)."""
    ifd = TiffImagePlugin.ImageFileDirectory_v2(b"II*\x00\x00\x00\x00\x00", group=pointer)
    for tag, value in tags.items():
        ifd[tag] = value
    return ifd.tobytes(offset)
