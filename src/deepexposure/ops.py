"""Pixel operations a recipe renders that are not differentiable filters.

These sit below :mod:`deepexposure.recipe` (beside :mod:`deepexposure.filters`): the recipe's
renderer calls them, and the methods that plan them (:mod:`deepexposure.baselines`) only write ops.

- :func:`clahe`: contrast-limited adaptive histogram equalisation (Zuiderveld 1994) of CIELAB L*,
  a* and b* kept (the ``clahe`` recipe op).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["clahe", "check_image"]


def check_image(img: torch.Tensor, name: str = "image") -> None:
    """Raise ``ValueError`` unless ``img`` is a ``(B, 3, H, W)`` tensor (the one public-boundary shape check)."""
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) {name}, got {getattr(img, 'shape', type(img))}")


def clahe(img_srgb: torch.Tensor, clip_limit: float = 0.01, kernel_size: int | None = None, nbins: int = 256) -> torch.Tensor:
    """CLAHE on CIELAB lightness, colour (a*, b*) preserved.

    ``L*' = 100 equalize_adapthist(L* / 100, kernel_size, clip_limit, nbins)``; a*, b* unchanged;
    back to sRGB and clipped to [0, 1]. Not differentiable (numpy, via scikit-image, which owns the
    algorithm); runs on the CPU in float64 and returns on the input's device and dtype. Used by
    :func:`deepexposure.recipe.render` for the ``clahe`` op.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        clip_limit: normalised clip limit in (0, 1] (scikit-image's convention; higher = more contrast).
        kernel_size: tile size in pixels; ``None`` = 1/8 of each image dimension (scikit-image default).
        nbins: histogram bins.
    Returns:
        ``(B, 3, H, W)`` sRGB in [0, 1].
    """
    from skimage.color import lab2rgb, rgb2lab
    from skimage.exposure import equalize_adapthist

    check_image(img_srgb)
    if not 0 < clip_limit <= 1:
        raise ValueError(f"clip_limit must be in (0, 1], got {clip_limit}")
    outs = []
    for img in img_srgb.detach().to("cpu", torch.float64).clamp(0.0, 1.0):
        rgb = img.permute(1, 2, 0).numpy()
        lab = rgb2lab(rgb)
        lightness = np.clip(lab[..., 0] / 100.0, 0.0, 1.0)
        lab[..., 0] = 100.0 * equalize_adapthist(lightness, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins)
        with warnings.catch_warnings():  # out-of-gamut colours are clipped below, as intended
            warnings.simplefilter("ignore", UserWarning)
            out = np.clip(lab2rgb(lab), 0.0, 1.0)
        outs.append(torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1))
    return torch.stack(outs).to(device=img_srgb.device, dtype=img_srgb.dtype)
