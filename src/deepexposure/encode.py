"""Writing images: float tensors -> files (the encoding half of :mod:`deepexposure.io`; see its docstring).

The format follows the extension; every output embeds an sRGB ICC profile; writes are atomic
(:mod:`deepexposure.atomic`) and never replace an existing file or a protected input unless asked.
Failures raise :class:`ImageWriteError` (a :class:`~deepexposure.atomic.WriteError`), one line.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
import torch
from PIL import Image

from . import decode as _decode
from .atomic import _EXISTS, _NAME_MAX, FileToWrite, WriteError, atomic_write_many
from .metadata import _EXIF_PREFIX, _normalise_exif, _parse_exif, _srgb_icc, exif_sub_ifds, sub_ifd_bytes

#: Extensions :func:`write_image` can write.
WRITE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"})
_WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
_WRITE_DEPTHS = {"JPEG": (8,), "WEBP": (8,), "PNG": (8, 16), "TIFF": (16, 8)}  # first = default


class ImageWriteError(WriteError):
    """An image could not be written; ``str(e)`` is one line ``"<path>: <problem>"``."""


# ----------------------------------------------------------------------------------------------
# named conversions (the only *255 and *65535 of writing)


def _tensor_to_array(img: torch.Tensor, bits: int) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` float in [0, 1] -> ``(H, W, C)`` uint8 / uint16, round to nearest.

    Values outside [0, 1] are clipped; non-finite values raise ValueError.
    """
    if not isinstance(img, torch.Tensor) or not img.is_floating_point():
        raise ValueError(f"expected a floating-point torch.Tensor, got {type(img).__name__} "
                         f"{getattr(img, 'dtype', '')}".rstrip())
    if img.ndim == 4:
        if img.shape[0] != 1:
            raise ValueError(f"expected a batch of one image (1, C, H, W), got shape {tuple(img.shape)}")
        img = img[0]
    if img.ndim != 3:
        raise ValueError(f"expected shape (1, C, H, W) or (C, H, W), got {tuple(img.shape)}")
    img = img.detach().to("cpu", torch.float32)
    maxv = (1 << bits) - 1
    if img.shape[-2] * img.shape[-1] >= _decode.COMPILED_MIN_PIXELS:
        from .pixel_kernels import planar_to_interleaved

        out = np.empty((img.shape[1], img.shape[2], img.shape[0]), dtype=np.uint8 if bits == 8 else np.uint16)
        if planar_to_interleaved(img.contiguous().numpy(), maxv, out):
            raise ValueError("the image contains NaN or infinite values")
        return out
    x = img.numpy()  # numpy: one thread for a small image, no parallel region per op
    if not np.isfinite(x).all():
        raise ValueError("the image contains NaN or infinite values")
    q = np.rint(np.clip(x, 0.0, 1.0) * np.float32(maxv))  # half to even, as torch.round
    return q.transpose(1, 2, 0).astype(np.uint8 if bits == 8 else np.uint16)


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """Float image in [0, 1] -> ``uint8`` array, ``round(255 * clip(x, 0, 1))``.

    Args:
        img: ``(1, C, H, W)`` or ``(C, H, W)`` floating point (any device); typically C = 3.
    Returns:
        ``(H, W, C)`` uint8 numpy array (``(H, W, 3)`` for an RGB image), same encoding as the input.
    Raises:
        ValueError: wrong shape or dtype, or NaN / infinite values.
    """
    return _tensor_to_array(img, 8)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: compare the resolved names
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_output_path(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *,
                      overwrite: bool = False) -> Path:
    """Validate an output path before any work is done.

    Refuses (always) a path that is, or resolves to, one of ``inputs`` (symlinks, hard links, ``..``),
    a folder, and (unless ``overwrite``) an existing file.

    Returns:
        ``Path(path)``.
    Raises:
        ImageWriteError: one line ``"<path>: <problem>"``.
    """
    out = Path(path)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if len(out.name.encode("utf-8", "surrogateescape")) > _NAME_MAX:
        raise ImageWriteError(out, f"the file name is longer than {_NAME_MAX} bytes")
    if out.is_dir():
        raise ImageWriteError(out, "is a folder, not a file name")
    for inp in inputs:
        if _same_file(out, Path(inp)):
            raise ImageWriteError(out, f"refusing to write over the input file {inp}")
    if not overwrite and (out.exists() or out.is_symlink()):
        raise ImageWriteError(out, _EXISTS)
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png16(f: BinaryIO, arr: np.ndarray, exif: bytes | None, icc: bytes | None = None) -> None:
    """Write an ``(H, W, C)`` uint16 array (C = 1, 2, 3, 4) as a 16-bit PNG through libpng
    (``imagecodecs.png_encode``), with ``iCCP`` and ``eXIf`` chunks inserted after ``IHDR``."""
    import imagecodecs

    data = imagecodecs.png_encode(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr), level=6)
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length + type, IHDR data, CRC
    extra = _png_chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(icc)) if icc else b""
    if exif:
        extra += _png_chunk(b"eXIf", exif[len(_EXIF_PREFIX):])
    f.write(data[:ihdr_end] + extra + data[ihdr_end:])


#: IFD0 tags copied from the EXIF block into TIFF outputs (ASCII): description, make, model,
#: date/time, artist, copyright; the Exif and GPS sub-IFDs follow (:func:`_add_sub_ifds`).
_TIFF_EXIF_TAGS = (270, 271, 272, 306, 315, 33432)


def _tiff_extratags(exif: bytes | None) -> list[tuple]:
    if not exif:
        return []
    ex = _parse_exif(exif)
    if ex is None:
        return []
    items = [(t, ex.get(t)) for t in _TIFF_EXIF_TAGS]
    out = []
    for tag, v in items:
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        if isinstance(v, str) and v and v.isprintable() and v.isascii():
            out.append((tag, "s", 0, v, True))
    return out


def _add_sub_ifds(f: BinaryIO, subs: dict[int, dict]) -> None:
    """Give the classic little-endian TIFF just written to ``f`` (readable) the Exif / GPS sub-IFDs ``subs``
    (:func:`~deepexposure.metadata.exif_sub_ifds`). tifffile writes no sub-IFDs, so they are appended,
    followed by a copy of IFD0 with their pointer tags added; the header is pointed at that copy (the
    first IFD0, a few hundred bytes, stays in the file unused; every other offset is unchanged)."""
    if not subs:
        return
    f.seek(0)
    head = f.read(8)
    if head[:4] != b"II*\x00":
        return
    (ifd0,) = struct.unpack("<I", head[4:])
    f.seek(ifd0)
    (n,) = struct.unpack("<H", f.read(2))
    table = f.read(12 * n)
    entries = {struct.unpack_from("<H", table, 12 * i)[0]: table[12 * i : 12 * i + 12] for i in range(n)}
    next_ifd = f.read(4)
    pos, blocks = f.seek(0, os.SEEK_END), []
    for pointer, tags in sorted(subs.items()):
        pos += pos % 2  # IFDs start on a word boundary
        blocks.append((pos, sub_ifd_bytes(pointer, tags, pos)))
        entries[pointer] = struct.pack("<HHII", pointer, 4, 1, pos)
        pos += len(blocks[-1][1])
    pos += pos % 2
    if pos + 6 + 12 * len(entries) >= 1 << 32:  # a classic TIFF's offsets are 32 bit: leave it without them
        return
    for at, data in blocks:
        f.write(b"\0" * (at - f.tell()) + data)
    f.write(b"\0" * (pos - f.tell()))
    f.write(struct.pack("<H", len(entries)) + b"".join(entries[t] for t in sorted(entries)) + next_ifd)
    f.seek(4)
    f.write(struct.pack("<I", pos))
    f.seek(0, os.SEEK_END)


def _encode(f: BinaryIO, fmt: str, rgb: np.ndarray, alpha: np.ndarray | None, exif: bytes | None,
            quality: int) -> None:
    arr = rgb if alpha is None else np.concatenate([rgb, alpha[:, :, None]], axis=2)
    icc = _srgb_icc()
    if fmt == "TIFF":
        extra: dict[str, Any] = {"extrasamples": ("unassalpha",)} if alpha is not None else {}
        tifffile.imwrite(f, arr, photometric="rgb", compression="zlib", predictor=True, metadata=None, byteorder="<",
                         iccprofile=icc, extratags=_tiff_extratags(exif), **extra)
        _add_sub_ifds(f, exif_sub_ifds(exif))
    elif fmt == "PNG" and arr.dtype == np.uint16:
        _encode_png16(f, arr, exif, icc)
    else:
        im = Image.fromarray(arr)
        kw: dict[str, object] = {"exif": exif} if exif else {}
        kw["icc_profile"] = icc
        if fmt == "JPEG":
            im.save(f, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2, **kw)
        elif fmt == "PNG":
            im.save(f, format="PNG", compress_level=6, **kw)
        else:
            im.save(f, format="WEBP", quality=quality, lossless=quality >= 100, exact=True, **kw)


def write_image(
    path: str | os.PathLike,
    img_srgb: torch.Tensor,
    *,
    alpha: torch.Tensor | None = None,
    exif: bytes | None = None,
    quality: int = 95,
    bit_depth: int | None = None,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike] = (),
) -> Path:
    """Encode an sRGB image to a file, atomically: :func:`image_file` (the arguments, formats and checks)
    written by :func:`deepexposure.atomic.atomic_write_many`.

    Returns:
        ``Path(path)``.
    Raises:
        ImageWriteError: one line ``"<path>: <problem>"``; no temp file is left behind.
    """
    file = image_file(path, img_srgb, alpha=alpha, exif=exif, quality=quality, bit_depth=bit_depth,
                      overwrite=overwrite, protect=protect)
    atomic_write_many([file], overwrite)
    return file[0]


def image_file(
    path: str | os.PathLike,
    img_srgb: torch.Tensor,
    *,
    alpha: torch.Tensor | None = None,
    exif: bytes | None = None,
    quality: int = 95,
    bit_depth: int | None = None,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike] = (),
) -> FileToWrite:
    """An sRGB image as a file for :func:`deepexposure.atomic.atomic_write_many`: checked and converted
    now, encoded when written.

    Samples are ``round(x * (2^bits - 1))`` after clipping to [0, 1]. The format follows the extension
    (:data:`WRITE_EXTENSIONS`): JPEG (8 bit; chroma 4:4:4 when ``quality >= 90``), PNG (8 or 16 bit),
    TIFF (8 or 16 bit, deflate + predictor), WebP (8 bit; ``quality=100`` means lossless). An sRGB ICC
    profile is embedded in every format.

    Args:
        path: output file; must not exist unless ``overwrite``; its folder must exist.
        img_srgb: ``(1, 3, H, W)`` or ``(3, H, W)`` float in [0, 1], sRGB-encoded, any device.
        alpha: ``(1, 1, H, W)`` / ``(1, H, W)`` float in [0, 1], or None. Not possible for JPEG.
        exif: EXIF block (e.g. ``LoadedImage.exif``), with or without the ``b"Exif\\0\\0"`` prefix;
            written to JPEG, PNG and WebP with the orientation tag reset to 1 (the pixels are upright),
            and to TIFF as IFD0 text tags plus the Exif and GPS sub-IFDs; unparseable blocks are dropped.
        quality: 1..100 for JPEG and WebP.
        bit_depth: 8 or 16; None: 16 for TIFF, 8 otherwise.
        overwrite: allow replacing an existing file (never one in ``protect``).
        protect: input paths that must never be written over (see :func:`check_output_path`).
    Returns:
        the file for :func:`deepexposure.atomic.atomic_write_many` (the image checked and converted,
        encoded when written).
    Raises:
        ImageWriteError: one line ``"<path>: <problem>"``.
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(path, f"unsupported output extension {path.suffix!r} "
                                    f"(use one of {', '.join(sorted(WRITE_EXTENSIONS))})")
    depth = _WRITE_DEPTHS[fmt][0] if bit_depth is None else bit_depth
    if depth not in _WRITE_DEPTHS[fmt]:
        raise ImageWriteError(path, f"{fmt} cannot be written with bit_depth={bit_depth} "
                                    f"(allowed: {', '.join(map(str, _WRITE_DEPTHS[fmt]))})")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ImageWriteError(path, f"quality must be an integer in 1..100, got {quality!r}")
    if alpha is not None and fmt == "JPEG":
        raise ImageWriteError(path, "JPEG cannot store an alpha channel; drop it or write .png, .tif or .webp")
    check_output_path(path, protect, overwrite=overwrite)
    try:
        rgb = _tensor_to_array(img_srgb, depth)
        if rgb.shape[2] != 3:
            raise ValueError(f"img_srgb must have 3 channels, got {rgb.shape[2]}")
        a = None
        if alpha is not None:
            a = _tensor_to_array(alpha if alpha.ndim != 2 else alpha[None], depth)
            if a.shape != (*rgb.shape[:2], 1):
                raise ValueError(f"alpha must be (1, 1, H, W) matching the image {rgb.shape[:2]}, "
                                 f"got {tuple(alpha.shape)}")
            a = a[:, :, 0]
    except ValueError as e:
        raise ImageWriteError(path, str(e)) from None
    exif_up = _normalise_exif(exif)
    return path, lambda f: _encode(f, fmt, rgb, a, exif_up, int(quality)), ImageWriteError
