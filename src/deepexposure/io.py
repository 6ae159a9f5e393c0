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
    * the EXIF of TIFF inputs and of TIFF-based camera RAWs (DNG, CR2, NEF, ARW, ORF, RW2, ...; ``rawpy``
      returns none) read from their own IFDs: descriptive IFD0 tags, the Exif and GPS sub-IFDs
      (:func:`deepexposure.metadata.exif_from_tiff`; the maker note is left behind);
    * 16-bit PNG decoded by libpng through ``imagecodecs``;
    * grey replicated to 3 channels; alpha split off untouched.

    Before any pixel is decoded the declared size is checked: at least :data:`MIN_SIDE` pixels on the
    short side and at most ``max_pixels`` pixels (decompression-bomb guard; Pillow's own global
    ``Image.MAX_IMAGE_PIXELS`` guard is not consulted for the formats opened here, this one replaces
    it). Every failure raises :class:`ImageReadError`, whose ``str()`` is one line ``"<path>: <problem>"``.

Writing (:func:`write_image`)
    The format follows the extension: ``.jpg``/``.jpeg`` (8 bit, quality, EXIF), ``.png`` (8 or 16 bit,
    EXIF), ``.tif``/``.tiff`` (8 or 16 bit, deflate, EXIF's IFD0 text tags and its Exif and GPS sub-IFDs), ``.webp`` (8 bit, quality; 100 means
    lossless). Writes are atomic (hidden temp file :func:`temp_name` in the target folder, then a rename;
    the temp file is removed on failure, and temp files a killed writer left are removed by the next
    process that writes into that folder), never replace an existing file unless ``overwrite=True`` and
    never touch a protected input. Failures raise :class:`ImageWriteError` (same one-line shape).

Every output embeds an sRGB ICC profile. Limits: RAWs that are not TIFF-structured (CR3, RAF, CRW, MRW,
X3F) and BigTIFF inputs bring no EXIF; maker notes are not carried; TIFF outputs get the IFD0 text tags
(make, model, date, artist, copyright, description) and the Exif and GPS sub-IFDs, not other IFD0 tags. 16-bit TIFFs compressed with LZW, PackBits or JPEG need the optional ``imagecodecs``
package (``tifffile`` decodes deflate, LZMA and uncompressed data without it).

The code lives in :mod:`deepexposure.decode` (reading), :mod:`deepexposure.encode` (writing),
:mod:`deepexposure.metadata` (EXIF, ICC) and :mod:`deepexposure.atomic` (atomic writes of any
file); this module is the one import for callers and re-exports their public names.
"""

from __future__ import annotations

from .atomic import PathError, WriteError, atomic_write_bytes, is_temp_name, sweep_stale_temps, temp_name
from .decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MIN_SIDE,
    RAW_EXTENSIONS,
    WORK_BYTES_PER_PIXEL,
    ImageReadError,
    LoadedImage,
    list_images,
    read_image,
    read_image_header,
    uint8_to_tensor,
)
from .encode import _WRITE_DEPTHS, _WRITE_FORMATS, WRITE_EXTENSIONS, ImageWriteError, check_output_path, tensor_to_uint8, write_image

_PathError = PathError  # the base class's name before the split

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
    "PathError",
    "WriteError",
    "_WRITE_DEPTHS",
    "_WRITE_FORMATS",
]
