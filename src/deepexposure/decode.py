"""Reading images: files -> float tensors (the decoding half of :mod:`deepexposure.io`; see its docstring).

Formats are recognised by content (sniffing), sizes are checked before any pixel is decoded
(decompression-bomb and memory guards), EXIF orientation and ICC profiles are applied
(:mod:`deepexposure.metadata`), RAW goes through ``rawpy``. Every failure is one
:class:`ImageReadError` line.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile
import torch
from PIL import Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

from .atomic import PathError, _one_line
from .color import linear_to_srgb, srgb_to_linear
from .metadata import (
    _TAG_ICC,
    _TAG_ORIENTATION,
    _apply_orientation,
    _icc_to_srgb,
    _icc_to_srgb_16bit,
    _normalise_exif,
    exif_from_tiff,
)

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


class ImageReadError(PathError):
    """An image could not be read; ``str(e)`` is one line ``"<path>: <problem>"``."""


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
# named conversions (the only /255 and /65535 of reading)


#: images of at least this many pixels are converted to and from arrays by the compiled
#: :mod:`deepexposure.pixel_kernels` (one parallel pass; the same values as the numpy/torch form)
COMPILED_MIN_PIXELS = 1 << 20


def _array_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """``(H, W)`` or ``(H, W, C)`` uint8/uint16 -> ``(1, C, H, W)`` float32 in [0, 1] (value / 255 or / 65535)."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}[arr.dtype]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[0] * arr.shape[1] >= COMPILED_MIN_PIXELS:
        from .pixel_kernels import interleaved_to_planar

        out = torch.empty((arr.shape[2], arr.shape[0], arr.shape[1]), dtype=torch.float32)
        interleaved_to_planar(arr, scale, out.numpy())
        return out.unsqueeze(0)
    img = np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32)
    return torch.from_numpy(np.divide(img, np.float32(scale), out=img)).unsqueeze(0)  # numpy: one thread


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


def _pil_exif(im: Image.Image, fmt: str, path: Path) -> tuple[int, bytes | None]:
    """``(orientation, normalised EXIF or None)``; a corrupt EXIF block is dropped (orientation 1).
    A TIFF's EXIF is its own IFDs (:func:`~deepexposure.metadata.exif_from_tiff`)."""
    try:
        orientation = im.getexif().get(_TAG_ORIENTATION, 1)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error, UnicodeDecodeError):
        return 1, None
    return orientation, (_normalise_exif(im.info.get("exif")) if fmt != "TIFF" else exif_from_tiff(path))


def _read_pil(path: Path, fmt: str, max_pixels: int | None) -> LoadedImage:
    with open(path, "rb") as fp:
        im = _open_pil(fp, fmt)
        _check_size(path, *im.size, max_pixels)
        png16 = fmt == "PNG" and _png_bit_depth(path) == 16
        im.load()
        orientation, exif = _pil_exif(im, fmt, path)
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
    return _loaded(path, "TIFF", rgb, alpha, orientation, 16, exif_from_tiff(path), note)


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
                       exif=exif_from_tiff(path), icc_note=None, is_raw=True)


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
