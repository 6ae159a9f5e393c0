"""Geometric augmentation of a base photo: seeded random crops and flips.

The one implementation of a seeded random crop in the project (the training scripts and the toy
data of the tests call it). Every draw goes through an explicit ``torch.Generator``; the draws of
:func:`random_crop_box` for a square crop are exactly::

    s = randint(floor(scale_lo * short), floor(scale_hi * short) + 1)     crop side (px)
    y = randint(0, H - s + 1);  x = randint(0, W - s + 1)                 top-left corner

so the historical ad-hoc crops (``scale=(0.5, 1.0)``) give the same boxes. With a non-square
``aspect`` range one more number is drawn (after ``s``): the crop's width / height ratio ``a``,
log-uniform in ``aspect``; the short side of the crop is ``s`` and the long side ``round(s a)`` (or
``round(s / a)``), both shrunk by the same factor if the box would not fit in the image.

Images are ``(B, C, H, W)`` float tensors (any range); device and dtype follow the input.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .resize import resize_exact

__all__ = ["CropBox", "random_crop_box", "crop", "random_crop", "hflip", "augment"]


@dataclass(frozen=True)
class CropBox:
    """A crop in pixels: rows ``y .. y + h - 1``, columns ``x .. x + w - 1``; ``flip``: mirrored after cropping."""

    y: int
    x: int
    h: int
    w: int
    flip: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """An integer in ``[lo, hi)`` (``hi > lo``)."""
    return int(torch.randint(lo, hi, (1,), generator=g))


def random_crop_box(
    height: int,
    width: int,
    generator: torch.Generator,
    *,
    scale: tuple[float, float] = (0.35, 1.0),
    aspect: tuple[float, float] = (1.0, 1.0),
) -> CropBox:
    """Draw a crop box (draw order in the module docstring).

    Args:
        height, width: the image size in px.
        generator: the source of randomness (CPU).
        scale: range of the crop's short side as a fraction of the image's short side.
        aspect: range of the crop's width / height (log-uniform); ``(1, 1)`` = square crops. For
            "near the original" pass e.g. ``(r / 1.15, r * 1.15)`` with ``r = width / height``.
    Returns:
        A :class:`CropBox` inside the image (``flip=False``).
    Raises:
        ValueError: empty image or a scale/aspect range outside (0, 1] / (0, inf).
    """
    if height < 1 or width < 1:
        raise ValueError(f"empty image {height}x{width}")
    lo, hi = scale
    if not (0 < lo <= hi <= 1):
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    a_lo, a_hi = aspect
    if not (0 < a_lo <= a_hi):
        raise ValueError(f"aspect must satisfy 0 < lo <= hi, got {aspect}")
    short = min(height, width)
    s_lo = max(1, int(short * lo))
    s_hi = max(s_lo, int(short * hi))
    s = _randint(generator, s_lo, s_hi + 1)
    ch = cw = s
    if a_hi > a_lo or a_lo != 1.0:
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        a = math.exp(math.log(a_lo) + u * (math.log(a_hi) - math.log(a_lo)))
        ch, cw = (s, round(s * a)) if a >= 1 else (round(s / a), s)
        shrink = min(1.0, height / ch, width / cw)
        ch, cw = max(1, min(height, round(ch * shrink))), max(1, min(width, round(cw * shrink)))
    y = _randint(generator, 0, height - ch + 1)
    x = _randint(generator, 0, width - cw + 1)
    return CropBox(y, x, ch, cw)


def hflip(img: torch.Tensor) -> torch.Tensor:
    """Mirror left-right: ``out[..., x] = img[..., W - 1 - x]``."""
    return torch.flip(img, dims=(-1,))


def crop(img: torch.Tensor, box: CropBox, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Cut ``box`` out of ``img`` (``(B, C, H, W)``), mirror it if ``box.flip``, resize to ``size``.

    Resizing is :func:`deepexposure.resize.resize_exact` (antialiased when shrinking, bilinear when
    enlarging); ``size=None`` keeps the crop's size.
    """
    out = img[..., box.y : box.y + box.h, box.x : box.x + box.w]
    if box.flip:
        out = hflip(out)
    if size is not None:
        out = resize_exact(out, size)
    return out


def random_crop(
    img: torch.Tensor,
    generator: torch.Generator,
    size: int | tuple[int, int] | None = None,
    *,
    scale: tuple[float, float] = (0.35, 1.0),
    aspect: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """A random crop of ``img`` (:func:`random_crop_box`), resized to ``size`` (None: as cut)."""
    box = random_crop_box(img.shape[-2], img.shape[-1], generator, scale=scale, aspect=aspect)
    return crop(img, box, size)


def augment(
    img: torch.Tensor,
    generator: torch.Generator,
    size: int | tuple[int, int] | None = None,
    *,
    scale: tuple[float, float] = (0.35, 1.0),
    aspect: tuple[float, float] = (1.0, 1.0),
    flip_p: float = 0.5,
) -> tuple[torch.Tensor, CropBox]:
    """Random crop (:func:`random_crop_box`) then a horizontal flip with probability ``flip_p``.

    The flip draws one uniform number after the box. Returns ``(crop, box)``; ``crop(img, box, size)``
    gives the same crop again.
    """
    box = random_crop_box(img.shape[-2], img.shape[-1], generator, scale=scale, aspect=aspect)
    flip = bool(torch.rand((), generator=generator, dtype=torch.float64) < flip_p)
    box = CropBox(box.y, box.x, box.h, box.w, flip)
    return crop(img, box, size), box
