"""Resizing helpers shared by data loading, evaluation, training and the pipeline.

All functions take and return ``(B, C, H, W)`` float tensors (any C, any value range; device and
dtype follow the input). Downscaling is antialiased (``torch.nn.functional.interpolate`` with
``antialias=True``: the bilinear kernel is stretched by the scale factor, which is close to
OpenCV's ``INTER_AREA`` for large factors); upscaling is plain bilinear. ``mode="area"`` is box
averaging (``adaptive_avg_pool2d``), the exact analogue of ``INTER_AREA`` for integer factors.

The papers' conventions live here once:

- DeepExposure and Exposure scale every photo down to **500 px on the long edge** for training
  and testing (:func:`resize_long_edge` with ``size=500``, ``upscale=False``);
- the agents see a **64 x 64 thumbnail** of the whole photo, squashed (aspect ratio not kept),
  :func:`make_thumbnail`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resize_exact", "resize_long_edge", "long_edge_shape", "make_thumbnail", "THUMBNAIL_SIZE", "PAPER_LONG_EDGE"]

#: Side of the square thumbnail the agents see (both papers).
THUMBNAIL_SIZE = 64
#: Long edge in pixels that both papers scale photos to for training and testing.
PAPER_LONG_EDGE = 500


def _check(img: torch.Tensor) -> None:
    if not isinstance(img, torch.Tensor) or img.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got {getattr(img, 'shape', type(img))}")
    if not img.is_floating_point():
        raise ValueError(f"expected a floating-point tensor, got {img.dtype}")


def resize_exact(img: torch.Tensor, size: int | tuple[int, int], *, mode: str = "bilinear") -> torch.Tensor:
    """Resize to exactly ``size`` = ``(height, width)`` (an int means square).

    Args:
        img: ``(B, C, H, W)`` float.
        size: target ``(h, w)`` or ``s`` for ``(s, s)``.
        mode: ``"bilinear"`` (antialiased when shrinking) or ``"area"`` (box average).
    Returns:
        ``(B, C, h, w)``, same dtype/device. Returns ``img`` itself when the size already matches.
    """
    _check(img)
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"target size must be positive, got {(h, w)}")
    if (h, w) == tuple(img.shape[-2:]):
        return img
    if mode == "area":
        return F.adaptive_avg_pool2d(img, (h, w))
    if mode != "bilinear":
        raise ValueError(f"mode must be 'bilinear' or 'area', got {mode!r}")
    shrink = h < img.shape[-2] or w < img.shape[-1]
    return F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)


def long_edge_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` with the long edge equal to ``size`` and the aspect ratio kept (short edge rounded, >= 1)."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if height >= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


def resize_long_edge(img: torch.Tensor, size: int, *, upscale: bool = True, mode: str = "bilinear") -> torch.Tensor:
    """Scale so the long edge is ``size`` pixels, keeping the aspect ratio.

    Args:
        img: ``(B, C, H, W)`` float.
        size: target long edge in pixels (500 in both papers).
        upscale: when False, images whose long edge is already ``<= size`` are returned unchanged
            (the papers' "scaled down to 500 px").
        mode: see :func:`resize_exact`.
    Returns:
        ``(B, C, h, w)`` with ``max(h, w) == size`` (or the input when not upscaling).
    """
    _check(img)
    H, W = img.shape[-2:]
    if not upscale and max(H, W) <= size:
        return img
    return resize_exact(img, long_edge_shape(H, W, size), mode=mode)


def make_thumbnail(img_srgb: torch.Tensor, size: int = THUMBNAIL_SIZE) -> torch.Tensor:
    """The agents' view of a photo: the whole frame squashed to ``size x size`` (antialiased).

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1].
    Returns:
        ``(B, 3, size, size)``, clamped to [0, 1].
    """
    return resize_exact(img_srgb, size).clamp(0.0, 1.0)
