"""The image I/O boundary: files <-> float tensors.

This is the only module that converts between encoded files and the library's internal form, and the
only place where ``/255`` and ``/65535`` happen. Internal form: ``torch.float32``, shape ``(1, 3, H, W)``,
values in [0, 1], **sRGB-encoded** (``img_srgb``); an alpha channel travels separately as
``(1, 1, H, W)`` in [0, 1].

Reading (:func:`read_image`)
    JPEG, PNG (8 and 16 bit), WebP and TIFF (8 bit through Pillow, 16 bit through ``tifffile``) are
    recognised by their content, not their extension. Camera RAW files (:data:`RAW_EXTENSIONS`) go
    through the optional ``rawpy`` (``pip install 'deepexposure[raw]'``): linear output
    (``gamma=(1, 1)``), camera white balance, no auto-brightening, 16 bit, sRGB primaries; the linear
    values are then encoded with :func:`deepexposure.color.linear_to_srgb`. Every image gets

    * the EXIF orientation applied (``PIL.ImageOps.exif_transpose`` semantics, XMP orientation
      included); the returned ``exif`` block has its orientation tag reset to 1 to match the pixels;
    * an embedded non-sRGB ICC profile converted to sRGB with LittleCMS (``PIL.ImageCms`` for 8-bit
      images, ``imagecodecs.cms_transform`` with 16 bits in and out for 16-bit TIFF and PNG); when that
      is impossible the profile is ignored and ``icc_note`` says so in one sentence (``retouch`` copies
      it into the recipe's notes);
    * a corrupt EXIF block dropped (orientation 1), whatever the format;
    * 16-bit PNG decoded by libpng through ``imagecodecs``;
    * grey replicated to 3 channels; alpha split off untouched.

    Before any pixel is decoded the declared size is checked: at least :data:`MIN_SIDE` pixels on the
    short side and at most ``max_pixels`` pixels (decompression-bomb guard; Pillow's own global
    ``Image.MAX_IMAGE_PIXELS`` guard is not consulted for the formats opened here, this one replaces
    it). Every failure raises :class:`ImageReadError`, whose ``str()`` is one line ``"<path>: <problem>"``.

Writing (:func:`write_image`)
    The format follows the extension: ``.jpg``/``.jpeg`` (8 bit, quality, EXIF), ``.png`` (8 or 16 bit,
    EXIF), ``.tif``/``.tiff`` (8 or 16 bit, deflate, EXIF's IFD0 text tags), ``.webp`` (8 bit, quality; 100 means
    lossless). Writes are atomic (hidden temp file :func:`temp_name` in the target folder, then a rename;
    the temp file is removed on failure, and temp files a killed writer left are removed by the next
    process that writes into that folder), never replace an existing file unless ``overwrite=True`` and
    never touch a protected input. Failures raise :class:`ImageWriteError` (same one-line shape).

Every output embeds an sRGB ICC profile. Limits: EXIF is carried from JPEG, PNG and WebP only (not
from TIFF or RAW); TIFF outputs get its IFD0 text tags (make, model, date, artist, copyright,
description), not the Exif sub-IFD. 16-bit TIFFs compressed with LZW, PackBits or JPEG need the optional ``imagecodecs``
package (``tifffile`` decodes deflate, LZMA and uncompressed data without it).
"""

from __future__ import annotations

import contextlib
import io as _stdio
import os
import re
import secrets
import stat
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
import torch
from PIL import Image, ImageCms, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

from deepexposure.color import linear_to_srgb, srgb_to_linear

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MIN_SIDE",
    "IMAGE_EXTENSIONS",
    "RAW_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "read_image",
    "read_image_header",
    "write_image",
    "check_output_path",
    "list_images",
    "tensor_to_uint8",
    "uint8_to_tensor",
    "atomic_write_bytes",
    "temp_name",
    "is_temp_name",
    "sweep_stale_temps",
    "WORK_BYTES_PER_PIXEL",
]

#: Default decompression-bomb limit of :func:`read_image`, in pixels (width x height as declared):
#: where Pillow's own guard refuses (``2 * Image.MAX_IMAGE_PIXELS``, about 179 MP).
DEFAULT_MAX_PIXELS = 178_956_970
#: Estimated peak memory of decoding and retouching one image, in bytes per pixel (decoded samples,
#: the float32 tensor, its linear copy and the streaming fusion's bands; measured about 74 on a
#: 196 MP image). :func:`read_image` refuses an image whose estimate exceeds the available memory.
WORK_BYTES_PER_PIXEL = 80
#: Smallest accepted short side, in pixels (the segmentation and the pyramids need some room).
MIN_SIDE = 8

#: Camera RAW extensions (lower case, with the dot), read through ``rawpy`` / LibRaw.
RAW_EXTENSIONS = frozenset(
    {
        ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
        ".rw2", ".rwl", ".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".mos", ".mrw", ".erf",
        ".kdc", ".dcr", ".raw",
    }
)  # fmt: skip
#: Every extension :func:`list_images` collects from folders: the raster formats plus :data:`RAW_EXTENSIONS`.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}) | RAW_EXTENSIONS
#: Extensions :func:`write_image` can write.
WRITE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"})

_EXIF_PREFIX = b"Exif\x00\x00"
_TAG_ORIENTATION = 0x0112
_TAG_ICC = 34675
_WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
_WRITE_DEPTHS = {"JPEG": (8,), "WEBP": (8,), "PNG": (8, 16), "TIFF": (16, 8)}  # first = default


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _PathError(ValueError):
    """Base of the one-line ``"<path>: <problem>"`` errors; ``.path`` and ``.problem`` keep the parts."""

    def __init__(self, path: str | os.PathLike | None, problem: str | None = None) -> None:
        if problem is None:  # single-argument form, e.g. when re-raised by a DataLoader worker
            path, problem = None, str(path)
        self.path = None if path is None else Path(path)
        self.problem = _one_line(problem)
        super().__init__(self.problem if path is None else _one_line(f"{path}: {self.problem}"))

    def __reduce__(self):
        return type(self), (self.path, self.problem)


class ImageReadError(_PathError):
    """An image could not be read; ``str(e)`` is one line ``"<path>: <problem>"``."""


class ImageWriteError(_PathError):
    """An image could not be written; ``str(e)`` is one line ``"<path>: <problem>"``."""


@dataclass(eq=False)
class LoadedImage:
    """A decoded image in the internal form.

    Attributes:
        img_srgb: ``(1, 3, H, W)`` float32 in [0, 1], sRGB-encoded, upright (EXIF orientation applied).
        alpha: ``(1, 1, H, W)`` float32 in [0, 1] (stored value / 255 or / 65535), or None.
        path: the path as given to :func:`read_image`.
        format: container format: ``"JPEG"``, ``"PNG"``, ``"WEBP"``, ``"TIFF"``, or the RAW extension
            in upper case (``"DNG"``, ``"CR2"``, ...).
        bit_depth: bits per sample of the decoded data, 8 or 16.
        exif: EXIF block (``b"Exif\\0\\0"`` + TIFF structure) with orientation reset to 1, or None.
        icc_note: one sentence when colour management could not be applied (the pixels are then the
            stored values, taken as sRGB), else None.
        is_raw: True for camera RAW files (decoded linear, see :attr:`img_lin`).
    """

    img_srgb: torch.Tensor
    alpha: torch.Tensor | None
    path: Path
    format: str
    bit_depth: int
    exif: bytes | None
    icc_note: str | None
    is_raw: bool

    @property
    def img_lin(self) -> torch.Tensor:
        """Linear-light version, ``srgb_to_linear(img_srgb)``: ``(1, 3, H, W)`` float32 in [0, 1].

        For RAW files this is LibRaw's linear output again (to float32 rounding). Computed on access.
        """
        return srgb_to_linear(self.img_srgb)


# ----------------------------------------------------------------------------------------------
# named conversions (the only /255 and /65535 of the library)


def _array_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """``(H, W)`` or ``(H, W, C)`` uint8/uint16 -> ``(1, C, H, W)`` float32 in [0, 1] (value / 255 or / 65535)."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}[arr.dtype]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    img = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32))
    return img.div_(scale).unsqueeze(0)


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
    if not bool(torch.isfinite(img).all()):
        raise ValueError("the image contains NaN or infinite values")
    maxv = (1 << bits) - 1
    q = torch.round(img.clamp(0.0, 1.0) * maxv)
    return q.permute(1, 2, 0).numpy().astype(np.uint8 if bits == 8 else np.uint16)


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


def uint8_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """``uint8`` array -> float32 tensor in [0, 1], ``x / 255``; inverse of :func:`tensor_to_uint8`.

    Args:
        arr: ``(H, W, C)`` or ``(H, W)`` uint8.
    Returns:
        ``(1, C, H, W)`` (``(1, 1, H, W)`` for 2-D input) float32 on the CPU, same encoding as the input.
    """
    arr = np.asarray(arr)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise ValueError(f"expected a (H, W) or (H, W, C) uint8 array, got {arr.dtype} {arr.shape}")
    return _array_to_tensor(arr)


# ----------------------------------------------------------------------------------------------
# reading


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _looks_like_text(head: bytes) -> bool:
    if any(b < 9 or 13 < b < 32 or b == 127 for b in head):
        return False
    for cut in range(4):  # the 16-byte window may end inside a multi-byte UTF-8 character
        with contextlib.suppress(UnicodeDecodeError):
            head[: len(head) - cut].decode("utf-8")
            return True
    return False


def _identify(path: Path) -> str:
    """Check that ``path`` is a readable, non-empty file; return its format (``"RAW"`` by extension)."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError(path, "is a folder, not an image file")
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(path, "is not a regular file")
        if st.st_size == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except NotADirectoryError:
        raise ImageReadError(path, "no such file (a parent in the path is not a folder)") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot open: {e.strerror or e}") from None
    if path.suffix.lower() in RAW_EXTENSIONS:
        return "RAW"
    fmt = _sniff(head)
    if fmt is None:
        kind = "it looks like a text file" if _looks_like_text(head) else f"it starts with {head[:8]!r}"
        named = f"named {path.suffix} but its" if path.suffix else "its"
        raise ImageReadError(path, f"{named} content is not JPEG, PNG, WebP or TIFF data ({kind})")
    return fmt


def _check_size(path: Path, width: int, height: int, max_pixels: int | None, declared: int | None = None) -> None:
    """Refuse tiny images and declared sizes above ``max_pixels`` (before decoding).

    ``declared`` is the number of pixels the decoder will allocate if it differs from width x height.
    """
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(path, f"image is {width}x{height} px; the short side must be at least {MIN_SIDE} px")
    declared = width * height if declared is None else declared
    if max_pixels is not None and declared > max_pixels:
        raise ImageReadError(
            path,
            f"declared size {width}x{height} ({declared} pixels) exceeds the limit of {max_pixels} pixels "
            "(max_pixels); refusing to decode a possible decompression bomb",
        )
    need, avail = declared * WORK_BYTES_PER_PIXEL, _available_memory()
    if avail is not None and need > avail:
        raise ImageReadError(
            path,
            f"declared size {width}x{height} ({declared} pixels) needs about {need / 2**30:.1f} GiB of memory "
            f"to retouch, but only {avail / 2**30:.1f} GiB is available; refusing to decode it",
        )


def _available_memory() -> int | None:
    """Bytes of memory this process can still get: Linux ``MemAvailable``, lowered by a cgroup v2
    limit when one is set; ``os.sysconf`` elsewhere; None when unknown (then no check is made)."""
    avail: int | None = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    if avail is None:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            room = max(int(limit) - used, 0)
            avail = room if avail is None else min(avail, room)
    return avail


@contextlib.contextmanager
def _decode_errors(path: Path, fmt: str) -> Iterator[None]:
    """Turn decoder exceptions into one-line :class:`ImageReadError`; decoder chatter (Pillow's
    ``UserWarning`` about corrupt EXIF, tifffile's logged tag errors) is silenced: a file is either
    read or refused with one line."""
    import logging
    import warnings

    tiff_log = logging.getLogger("tifffile")
    level = tiff_log.level
    tiff_log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(path, f"Pillow refused it as a possible decompression bomb ({e})") from None
    except MemoryError:
        raise ImageReadError(path, f"not enough memory to decode this {fmt} image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error,
            zlib.error, RuntimeError) as e:  # RuntimeError: imagecodecs' codec errors
        detail = str(e.args[0] if isinstance(e, KeyError) and e.args else e) or type(e).__name__
        if "imagecodecs" in detail:  # tifffile: "<COMPRESSION.LZW: 5> requires the 'imagecodecs' package"
            codec = detail.split(" requires")[0].strip("<>").split(":")[0]
            raise ImageReadError(
                path, f"this TIFF uses {codec} compression, which needs the optional 'imagecodecs' package "
                "for 16-bit data: pip install imagecodecs"
            ) from None
        what = "truncated or corrupt" if "truncat" in detail.lower() else "cannot decode"
        raise ImageReadError(path, f"{what} {fmt} data ({detail})") from None
    finally:
        tiff_log.setLevel(level)


_PIL_CLASSES: dict[str, Any] = {  # Pillow plugin classes (typed Any: their stubs mark them abstract)
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
}


def _open_pil(fp: BinaryIO, fmt: str) -> Image.Image:
    """Parse the header only (lazy). The plugin class is used directly so that :func:`_check_size`,
    not Pillow's global ``MAX_IMAGE_PIXELS``, decides about the size."""
    return _PIL_CLASSES[fmt](fp)


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


def _pil_pixels(im: Image.Image, icc: bytes | None) -> tuple[np.ndarray, np.ndarray | None, int, str | None]:
    """Decoded Pillow image -> (rgb (H, W, 3), alpha (H, W) or None, bit depth, icc note)."""
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("RGBa", "La"):
        im = im.convert(im.mode[:-1] + "A")
    alpha = None
    if im.mode in ("RGBA", "LA"):
        alpha = np.asarray(im.getchannel("A"))
        im = im.convert(im.mode[:-1])
    if im.mode.startswith("I;16"):
        rgb, note = _icc_to_srgb_16bit(np.asarray(im).astype(np.uint16), icc)
        return rgb, alpha, 16, note
    if im.mode not in ("L", "RGB", "RGBX", "CMYK", "YCbCr"):
        raise ValueError(f"unsupported pixel mode {im.mode!r}")
    note = None
    if icc:
        im, note = _icc_to_srgb(im, icc)
    elif im.mode == "CMYK":
        note = "CMYK image without an ICC profile: converted with Pillow's naive formula, colours are approximate."
    if im.mode != "RGB":
        im = im.convert("RGB")  # L -> grey replicated to R, G, B
    return np.asarray(im), alpha, 8, note


def _png16_pixels(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """All samples of a 16-bit PNG through libpng (``imagecodecs.png_decode``): ``(colour, alpha)``,
    colour ``(H, W)`` grey or ``(H, W, 3)``, alpha ``(H, W)`` or None, both uint16."""
    import imagecodecs

    try:
        arr = imagecodecs.png_decode(path.read_bytes())
    except RuntimeError as e:  # imagecodecs.PngError
        raise ValueError(f"libpng: {_one_line(str(e))}") from None
    if arr.dtype != np.uint16:
        raise ValueError(f"expected 16-bit samples, libpng returned {arr.dtype}")
    if arr.ndim == 2:
        return arr, None
    if arr.shape[2] == 2:
        return arr[..., 0], arr[..., 1]
    return np.ascontiguousarray(arr[..., :3]), (arr[..., 3] if arr.shape[2] == 4 else None)


def _pil_exif(im: Image.Image, fmt: str) -> tuple[int, bytes | None]:
    """``(orientation, normalised EXIF or None)``; a corrupt EXIF block is dropped (orientation 1)."""
    try:
        orientation = im.getexif().get(_TAG_ORIENTATION, 1)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error, UnicodeDecodeError):
        return 1, None
    return orientation, (_normalise_exif(im.info.get("exif")) if fmt != "TIFF" else None)


def _read_pil(path: Path, fmt: str, max_pixels: int | None) -> LoadedImage:
    with open(path, "rb") as fp:
        im = _open_pil(fp, fmt)
        _check_size(path, *im.size, max_pixels)
        png16 = fmt == "PNG" and _png_bit_depth(path) == 16
        im.load()
        orientation, exif = _pil_exif(im, fmt)
        icc = im.info.get("icc_profile")
        if png16:
            colour, alpha = _png16_pixels(path)
            rgb, note = _icc_to_srgb_16bit(colour, icc)
            depth = 16
        else:
            rgb, alpha, depth, note = _pil_pixels(im, icc)
    return _loaded(path, fmt, rgb, alpha, orientation, depth, exif, note)


def _png_bit_depth(path: Path) -> int:
    """Bit depth byte of a PNG's IHDR (the 25th byte of the file)."""
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if len(head) == 25 else 8


def _read_tiff16(path: Path, max_pixels: int | None) -> LoadedImage | None:
    """16-bit TIFF through tifffile; None when the first page is not 16 bit (then Pillow reads it)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        _check_size(path, page.imagewidth, page.imagelength, max_pixels)
        if page.bitspersample != 16:
            return None
        photometric = int(page.photometric)
        if photometric not in (0, 1, 2):
            raise ValueError(f"unsupported 16-bit TIFF photometric interpretation {page.photometric.name}")
        tags = page.tags
        orientation = tags[_TAG_ORIENTATION].value if _TAG_ORIENTATION in tags else 1
        icc = tags[_TAG_ICC].value if _TAG_ICC in tags else None
        arr = page.asarray()
        axes = page.axes
    if arr.dtype != np.uint16:
        raise ValueError(f"unsupported 16-bit TIFF sample format {arr.dtype}")
    if "S" in axes:
        arr = np.moveaxis(arr, axes.index("S"), -1)
    else:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"unsupported TIFF layout {axes} {arr.shape}")
    ncolor = 3 if photometric == 2 else 1
    if arr.shape[2] < ncolor:
        raise ValueError(f"RGB TIFF with only {arr.shape[2]} samples per pixel")
    color = arr[..., :ncolor]
    if photometric == 0:  # min-is-white
        color = 65535 - color
    alpha = arr[..., ncolor] if arr.shape[2] > ncolor else None
    rgb, note = _icc_to_srgb_16bit(color[..., 0] if ncolor == 1 else color, icc)
    return _loaded(path, "TIFF", rgb, alpha, orientation, 16, None, note)


def _loaded(path: Path, fmt: str, rgb: np.ndarray, alpha: np.ndarray | None, orientation: int, depth: int,
            exif: bytes | None, note: str | None) -> LoadedImage:
    rgb = _apply_orientation(rgb, orientation)
    img = _array_to_tensor(rgb)
    a = _array_to_tensor(_apply_orientation(alpha, orientation)) if alpha is not None else None
    return LoadedImage(img_srgb=img, alpha=a, path=path, format=fmt, bit_depth=depth, exif=exif,
                       icc_note=note, is_raw=False)


def _import_rawpy(path: Path):
    try:
        import rawpy
    except ImportError:
        raise ImageReadError(
            path, "reading camera RAW files needs the optional 'rawpy' package: pip install 'deepexposure[raw]'"
        ) from None
    return rawpy


@contextlib.contextmanager
def _open_raw(path: Path) -> Iterator[Any]:
    rawpy = _import_rawpy(path)
    fmt = path.suffix[1:].upper()
    try:
        with rawpy.imread(str(path)) as raw:
            yield raw
    except rawpy.LibRawFileUnsupportedError:
        raise ImageReadError(
            path, f"LibRaw cannot read this {fmt} file (unsupported camera or not a RAW file)"
        ) from None
    except rawpy.LibRawError as e:
        detail = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ImageReadError(
            path,
            f"LibRaw cannot decode this {fmt} file, it may be truncated or corrupt ({type(e).__name__}: {detail})",
        ) from None


def _raw_size(raw) -> tuple[int, int, int]:
    """(width, height, declared pixels) of LibRaw's output, before rotation by ``sizes.flip``."""
    s = raw.sizes
    return s.width, s.height, max(s.width * s.height, s.raw_width * s.raw_height)


def _read_raw(path: Path, max_pixels: int | None) -> LoadedImage:
    with _open_raw(path) as raw:
        rawpy = _import_rawpy(path)  # already imported by _open_raw; this just names the module
        width, height, declared = _raw_size(raw)
        _check_size(path, width, height, max_pixels, declared)
        rgb16 = raw.postprocess(
            gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
            output_color=rawpy.ColorSpace.sRGB,
        )
    if rgb16.dtype != np.uint16 or rgb16.ndim != 3 or rgb16.shape[2] != 3:
        raise ImageReadError(path, f"LibRaw returned unexpected data {rgb16.dtype} {rgb16.shape}")
    img_lin = _array_to_tensor(rgb16)
    img_srgb = linear_to_srgb(img_lin).clamp_(0.0, 1.0)
    return LoadedImage(img_srgb=img_srgb, alpha=None, path=path, format=path.suffix[1:].upper(), bit_depth=16,
                       exif=None, icc_note=None, is_raw=True)


def read_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file to the internal form.

    JPEG / PNG / WebP / TIFF are recognised by content; RAW by extension (:data:`RAW_EXTENSIONS`,
    needs ``rawpy``: linear, camera white balance, no auto-bright, 16 bit, sRGB primaries, then
    :func:`~deepexposure.color.linear_to_srgb`). EXIF orientation applied, non-sRGB ICC converted
    (8 bit) or reported in ``icc_note``, grey -> 3 channels, alpha returned separately.

    Args:
        path: the file.
        max_pixels: refuse images whose declared width x height exceeds this, checked from the header
            before decoding (None: no limit). Images with a short side below :data:`MIN_SIDE` are refused.
    Returns:
        :class:`LoadedImage` with ``img_srgb`` ``(1, 3, H, W)`` float32 in [0, 1], sRGB-encoded
        (``.img_lin`` gives linear light).
    Raises:
        ImageReadError: one line ``"<path>: <problem>"`` for any unreadable, unsupported or refused file.
    """
    path = Path(path)
    fmt = _identify(path)
    with _decode_errors(path, fmt if fmt != "RAW" else path.suffix[1:].upper()):
        if fmt == "RAW":
            return _read_raw(path, max_pixels)
        if fmt == "TIFF":
            loaded = _read_tiff16(path, max_pixels)
            if loaded is not None:
                return loaded
        return _read_pil(path, fmt, max_pixels)


def read_image_header(path: str | os.PathLike) -> tuple[int, int]:
    """Cheap probe: ``(width, height)`` of the image as :func:`read_image` would return it.

    Only the header is parsed (for RAW, LibRaw opens the file without unpacking); EXIF / RAW rotation
    is taken into account (an EXIF chunk stored after the pixel data of a PNG is not seen). No size
    limits are applied here.

    Raises:
        ImageReadError: as :func:`read_image` for unreadable or unrecognised files.
    """
    path = Path(path)
    fmt = _identify(path)
    if fmt == "RAW":
        with _open_raw(path) as raw:
            width, height, _ = _raw_size(raw)
            flip = raw.sizes.flip
        return (height, width) if flip in (5, 6) else (width, height)
    with _decode_errors(path, fmt):
        if fmt == "TIFF":
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                width, height = page.imagewidth, page.imagelength
                orientation = page.tags[_TAG_ORIENTATION].value if _TAG_ORIENTATION in page.tags else 1
        else:
            with open(path, "rb") as fp:
                im = _open_pil(fp, fmt)
                # The base method reads what the header held; PngImageFile.getexif would decode the
                # whole image looking for an eXIf chunk after the pixel data.
                exif = Image.Image.getexif(im)
                (width, height), orientation = im.size, exif.get(_TAG_ORIENTATION, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def list_images(paths: Iterable[str | os.PathLike] | str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Expand files and folders into a deterministic list of image files.

    Paths are processed in the given order. A file named explicitly is kept whatever its extension
    (:func:`read_image` then reports a clear error if it is not an image). A folder contributes its
    files whose lower-cased extension is in :data:`IMAGE_EXTENSIONS`, sorted by relative path, from
    sub-folders too when ``recursive``; names starting with ``.`` (hidden files and folders, including
    the temp files of :func:`write_image`) are skipped; symlinked folders are not followed.
    Duplicates (same absolute path) are kept once, at their first position.

    Raises:
        ImageReadError: a path does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    seen: set[str] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
                found += [Path(root, f) for f in files
                          if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
            found.sort(key=lambda f: f.relative_to(p).parts)
        elif p.exists():
            found = [p]
        else:
            raise ImageReadError(p, "no such file or folder")
        for f in found:
            key = os.path.normcase(os.path.abspath(f))
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


# ----------------------------------------------------------------------------------------------
# writing


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
#: date/time, artist, copyright. (The Exif sub-IFD itself is not written into TIFFs.)
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


def _encode(f: BinaryIO, fmt: str, rgb: np.ndarray, alpha: np.ndarray | None, exif: bytes | None,
            quality: int) -> None:
    arr = rgb if alpha is None else np.concatenate([rgb, alpha[:, :, None]], axis=2)
    icc = _srgb_icc()
    if fmt == "TIFF":
        extra: dict[str, Any] = {"extrasamples": ("unassalpha",)} if alpha is not None else {}
        tifffile.imwrite(f, arr, photometric="rgb", compression="zlib", predictor=True, metadata=None,
                         iccprofile=icc, extratags=_tiff_extratags(exif), **extra)
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


#: the message for an existing output; names the CLI flag and the keyword argument
_EXISTS = "already exists; use --overwrite (overwrite=True) to replace it"
#: temp files of :func:`_atomic_write`: ``.dxtmp-<8 hex>-<start of the target name>``
TEMP_PREFIX = ".dxtmp-"
_TEMP_RE = re.compile(r"^(\.dxtmp-[0-9a-f]{8}-.*|\..+\.[0-9a-f]{8}\.tmp)$")  # current and pre-0.2 names
#: a temp file untouched for this long, and older than this process, was left by a killed writer
STALE_TEMP_SECONDS = 600.0
_RUN_START = time.time()
_swept: set[str] = set()
_NAME_MAX = 255  # bytes, for a name in one folder (ext4, APFS, NTFS in UTF-16 units)


def temp_name(name: str) -> str:
    """Hidden temp name for ``name``: :data:`TEMP_PREFIX` + 8 random hex digits + ``-`` + as much of
    ``name`` as fits in 255 bytes (so a target name of any legal length gets a legal temp name)."""
    head = f"{TEMP_PREFIX}{secrets.token_hex(4)}-"
    room = _NAME_MAX - len(head.encode())
    return head + name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")


def is_temp_name(name: str) -> bool:
    """True for names :func:`temp_name` makes (and the ``.NAME.xxxxxxxx.tmp`` names of earlier versions)."""
    return bool(_TEMP_RE.match(name))


def sweep_stale_temps(folder: str | os.PathLike, *, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove temp files in ``folder`` left by killed writers: temp-named regular files not modified
    for ``max_age`` seconds and older than this process. Returns the removed paths; errors are ignored."""
    removed: list[Path] = []
    cutoff = min(time.time() - max_age, _RUN_START)
    with contextlib.suppress(OSError), os.scandir(os.fspath(folder)) as it:
        for e in it:
            if not is_temp_name(e.name):
                continue
            with contextlib.suppress(OSError):
                st = e.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                    os.unlink(e.path)
                    removed.append(Path(e.path))
    return removed


def _atomic_write(path: Path, fill: Callable[[BinaryIO], None], overwrite: bool) -> None:
    """Write through a hidden temp file (:func:`temp_name`) in the target folder, then rename into place.

    The first write into a folder in this process also removes stale temp files there
    (:func:`sweep_stale_temps`)."""
    parent = path.parent
    if not parent.is_dir():
        raise ImageWriteError(path, f"the output folder {parent} does not exist")
    if len(path.name.encode("utf-8", "surrogateescape")) > _NAME_MAX:
        raise ImageWriteError(path, f"the file name is longer than {_NAME_MAX} bytes")
    key = os.path.normcase(os.path.abspath(parent))
    if key not in _swept:
        _swept.add(key)
        sweep_stale_temps(parent)
    tmp: Path | None = None
    try:
        while True:
            tmp = parent / temp_name(path.name)
            try:
                f = open(tmp, "xb")  # exclusive create; the umask applies, as for any new file
                break
            except FileExistsError:
                continue
        with f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and fails if the target appeared meanwhile
            except FileExistsError:
                raise ImageWriteError(path, _EXISTS) from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise ImageWriteError(path, _EXISTS) from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
        tmp = None
    except ImageWriteError:
        raise
    except PermissionError:
        raise ImageWriteError(path, "permission denied") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ImageWriteError(path, f"cannot write ({type(e).__name__}: {e})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


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
    """Encode an sRGB image to a file, atomically.

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
            and as IFD0 text tags to TIFF; unparseable blocks are dropped.
        quality: 1..100 for JPEG and WebP.
        bit_depth: 8 or 16; None: 16 for TIFF, 8 otherwise.
        overwrite: allow replacing an existing file (never one in ``protect``).
        protect: input paths that must never be written over (see :func:`check_output_path`).
    Returns:
        ``Path(path)``.
    Raises:
        ImageWriteError: one line ``"<path>: <problem>"``; no temp file is left behind.
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
    _atomic_write(path, lambda f: _encode(f, fmt, rgb, a, exif_up, int(quality)), overwrite)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (hidden temp file in the same folder + rename).

    Used for every non-image file the library writes (recipes, checkpoints, configs, reports).
    Raises :class:`ImageWriteError` (one line) if the folder is missing or, unless ``overwrite``,
    the file exists.
    """
    path = Path(path)
    def write(f: BinaryIO) -> None:
        f.write(data)

    _atomic_write(path, write, overwrite)
    return path
