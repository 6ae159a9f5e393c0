"""Colour helpers: exact sRGB transfer functions, luminance, HSV.

All functions are pure, differentiable tensor functions on images of shape
``(*, 3, H, W)`` (channel axis at ``-3``) with values in [0, 1]. Device and dtype
follow the input. Names say which encoding a tensor is in (``img_srgb``,
``img_lin``) wherever both occur.
"""

from __future__ import annotations

import torch

__all__ = [
    "srgb_to_linear",
    "linear_to_srgb",
    "luminance",
    "rgb_to_gray",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "LUM_WEIGHTS_EXPOSURE",
    "LUM_WEIGHTS_REC709",
]

#: Luminance weights of the Exposure paper (Hu et al. 2018, supplement section 8):
#: ``Lum(p) = 0.27 r + 0.67 g + 0.06 b``.
LUM_WEIGHTS_EXPOSURE = (0.27, 0.67, 0.06)
#: ITU-R BT.709 luma weights (sRGB primaries).
LUM_WEIGHTS_REC709 = (0.2126, 0.7152, 0.0722)

_SRGB_THRESH_LIN = 0.0031308
_SRGB_THRESH_ENC = 0.04045


def srgb_to_linear(img_srgb: torch.Tensor) -> torch.Tensor:
    """Decode sRGB-encoded values to linear light (IEC 61966-2-1).

    ``lin = srgb / 12.92`` if ``srgb <= 0.04045`` else ``((srgb + 0.055) / 1.055) ** 2.4``.

    Args:
        img_srgb: any shape, values in [0, 1].
    Returns:
        Tensor of the same shape, linear values in [0, 1].
    """
    low = img_srgb / 12.92
    high = ((img_srgb.clamp(min=_SRGB_THRESH_ENC) + 0.055) / 1.055) ** 2.4
    return torch.where(img_srgb <= _SRGB_THRESH_ENC, low, high)


def linear_to_srgb(img_lin: torch.Tensor) -> torch.Tensor:
    """Encode linear light as sRGB (IEC 61966-2-1), the exact inverse of :func:`srgb_to_linear`.

    ``srgb = 12.92 lin`` if ``lin <= 0.0031308`` else ``1.055 lin^(1/2.4) - 0.055``.

    Args:
        img_lin: any shape, values in [0, 1] (negative values are treated by the linear segment).
    Returns:
        Tensor of the same shape, sRGB values in [0, 1].
    """
    low = img_lin * 12.92
    high = 1.055 * img_lin.clamp(min=_SRGB_THRESH_LIN) ** (1.0 / 2.4) - 0.055
    return torch.where(img_lin <= _SRGB_THRESH_LIN, low, high)


def luminance(img: torch.Tensor, weights: tuple[float, float, float] = LUM_WEIGHTS_EXPOSURE) -> torch.Tensor:
    """Weighted sum of the RGB channels.

    ``Lum(p) = w_r r + w_g g + w_b b`` (default: the Exposure paper's 0.27, 0.67, 0.06).

    Args:
        img: ``(*, 3, H, W)``.
    Returns:
        ``(*, 1, H, W)``.
    """
    w = torch.tensor(weights, dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img * w).sum(dim=-3, keepdim=True)


def rgb_to_gray(img: torch.Tensor) -> torch.Tensor:
    """Grey value as OpenCV's ``COLOR_RGB2GRAY``: ``0.299 r + 0.587 g + 0.114 b``.

    Used by Mertens' contrast measure. ``(*, 3, H, W) -> (*, 1, H, W)``.
    """
    return luminance(img, (0.299, 0.587, 0.114))


def rgb_to_hsv(img: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """RGB to HSV, all channels in [0, 1] (hue as a fraction of a turn).

    ``V = max``, ``S = (max - min) / max``, ``H`` by the usual hexcone sectors.

    Args:
        img: ``(*, 3, H, W)`` in [0, 1].
    Returns:
        ``(*, 3, H, W)``: hue, saturation, value.
    """
    r, g, b = img.unbind(dim=-3)
    maxc, _ = img.max(dim=-3)
    minc, _ = img.min(dim=-3)
    delta = maxc - minc
    v = maxc
    s = delta / (maxc + eps)
    safe = delta + eps
    rc = (maxc - r) / safe
    gc = (maxc - g) / safe
    bc = (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    return torch.stack([h, s, v], dim=-3)


def hsv_to_rgb(img_hsv: torch.Tensor) -> torch.Tensor:
    """HSV (all in [0, 1]) to RGB, the inverse of :func:`rgb_to_hsv`.

    Uses the smooth form ``c(n) = V - V S max(0, min(k, 4 - k, 1))`` with
    ``k = (n + 6 H) mod 6`` for ``n = 5, 3, 1`` (R, G, B), which is differentiable in S and V.

    Args:
        img_hsv: ``(*, 3, H, W)``.
    Returns:
        ``(*, 3, H, W)`` RGB in [0, 1].
    """
    h, s, v = img_hsv.unbind(dim=-3)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + 6.0 * h, 6.0)
        f = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
        out.append(v - v * s * f)
    return torch.stack(out, dim=-3)
