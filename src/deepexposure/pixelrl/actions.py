"""The action sets of PixelRL: Table I (denoising, restoration) and Table VII (local colour enhancement).

An action set maps a state and one action index per pixel to the next state:
``apply(x (B, C, H, W) in [0, 1], a (B, H, W) int64) -> (B, C, H, W) in [0, 1]``. Pixel ``i`` takes
the value at ``i`` of the image its action produces (each filter runs on the whole current image,
as in the authors' code; only filters some pixel chose are computed).

Table I filters are re-implemented in torch (device follows the input; OpenCV is not a runtime
dependency) and tested against OpenCV (``tests/test_pixelrl.py``), with OpenCV's borders and the
authors' parameters on [0, 1] images:

====  ===============================  =============================================================
 0    box 5x5                          ``cv2.boxFilter(x, -1, (5, 5))``, reflect-101 border
 1    bilateral 5x5, sigma_c=1.0        ``cv2.bilateralFilter(x, 5, 1.0, 5.0)``: a disc of radius 2
 2    bilateral 5x5, sigma_c=0.1        ``cv2.bilateralFilter(x, 5, 0.1, 5.0)``
 3    median 5x5                       ``cv2.medianBlur(x, 5)``, replicated border
 4    Gaussian 5x5, sigma=1.5           ``cv2.GaussianBlur(x, (5, 5), 1.5)``
 5    Gaussian 5x5, sigma=0.5           ``cv2.GaussianBlur(x, (5, 5), 0.5)``
 6    pixel value += 1                 ``x + 1/255``
 7    pixel value -= 1                 ``x - 1/255``
 8    do nothing
====  ===============================  =============================================================

Table VII (13 actions, the distort-and-recover set of Park et al. plus "do nothing"), on sRGB in
[0, 1], ``k`` = 0.95 or 1.05, ``Y`` = luminance (Rec. 601 weights):

- contrast ``x' = m + k (x - m)`` with ``m`` the image's mean luminance (one number per image);
- saturation ``x' = Y + k (x - Y)`` per pixel;
- brightness ``x' = k x``;
- red-and-green, green-and-blue, red-and-blue: those two channels times ``k``;
- do nothing.

Results are clipped to [0, 1] (the authors leave ``+= 1`` unclipped; an image never leaves [0, 1] here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ActionSet", "DENOISE_ACTIONS", "ENHANCE_ACTIONS", "ACTION_SETS", "box_filter", "gaussian_filter",
           "median_filter", "bilateral_filter", "luminance601", "enhance_action"]

_ROW_BAND = 256  # rows per band of the neighbourhood filters (bounds memory on large photos)


def _banded(x: torch.Tensor, radius: int, pad_mode: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn`` (padded band ``(B, C, h + 2r, W + 2r)`` -> ``(B, C, h, W)``) band by band."""
    xp = F.pad(x, (radius,) * 4, mode=pad_mode)
    H = x.shape[-2]
    out = [fn(xp[..., y0: min(H, y0 + _ROW_BAND) + 2 * radius, :]) for y0 in range(0, H, _ROW_BAND)]
    return torch.cat(out, dim=-2)


def _pad_mode(x: torch.Tensor, radius: int) -> str:
    return "reflect" if min(x.shape[-2:]) > radius else "replicate"


def _separable(x: torch.Tensor, k1d: torch.Tensor) -> torch.Tensor:
    r = k1d.numel() // 2
    c = x.shape[1]
    k = k1d.to(x).view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    xp = F.pad(x, (r, r, r, r), mode=_pad_mode(x, r))
    y = F.conv2d(xp, k, groups=c)
    return F.conv2d(y, k.transpose(-1, -2), groups=c)


def box_filter(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Normalised box filter (mean of the ``size x size`` window), reflect-101 border.
    ``(B, C, H, W) -> (B, C, H, W)``; ``cv2.boxFilter(x, -1, (size, size))``."""
    return _separable(x, torch.full((size,), 1.0 / size, dtype=torch.float64))


def gaussian_filter(x: torch.Tensor, sigma: float, size: int = 5) -> torch.Tensor:
    """Gaussian filter, ``g(d) ~ exp(-d^2 / (2 sigma^2))`` for ``|d| <= size // 2``, normalised,
    separable, reflect-101 border: ``cv2.GaussianBlur(x, (size, size), sigma)``. ``(B, C, H, W)``."""
    d = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(d**2) / (2 * sigma**2))
    return _separable(x, g / g.sum())


def median_filter(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Median of the ``size x size`` window (odd ``size``), replicated border:
    ``cv2.medianBlur(x, size)``. ``(B, C, H, W) -> (B, C, H, W)``."""
    r = size // 2

    def band(xp: torch.Tensor) -> torch.Tensor:
        h, w = xp.shape[-2] - 2 * r, xp.shape[-1] - 2 * r
        views = [xp[..., dy: dy + h, dx: dx + w] for dy in range(size) for dx in range(size)]
        return torch.stack(views, 0).median(0).values

    return _banded(x, r, "replicate", band)


def bilateral_filter(x: torch.Tensor, sigma_color: float, sigma_space: float, diameter: int = 5) -> torch.Tensor:
    """Bilateral filter as OpenCV defines it: neighbours ``j`` within the disc ``|i - j| <= d // 2``,
    weights ``exp(-|i - j|^2 / (2 sigma_s^2)) exp(-(x_i - x_j)^2 / (2 sigma_c^2))``, normalised;
    reflect-101 border; channels filtered independently (grey-level). ``(B, C, H, W)``;
    ``cv2.bilateralFilter(x, d, sigma_c, sigma_s)`` on a one-channel float image (OpenCV reads the
    colour weight from a table, so the two differ by ~1e-4)."""
    r = diameter // 2
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r]

    def band(xp: torch.Tensor) -> torch.Tensor:
        h, w = xp.shape[-2] - 2 * r, xp.shape[-1] - 2 * r
        centre = xp[..., r: r + h, r: r + w]
        num = torch.zeros_like(centre)
        den = torch.zeros_like(centre)
        for dy, dx in offsets:
            nb = xp[..., r + dy: r + dy + h, r + dx: r + dx + w]
            wgt = math.exp(-(dy * dy + dx * dx) / (2 * sigma_space**2)) * torch.exp(-((nb - centre) ** 2) / (2 * sigma_color**2))
            num += wgt * nb
            den += wgt
        return num / den

    return _banded(x, r, _pad_mode(x, r), band)


def luminance601(x: torch.Tensor) -> torch.Tensor:
    """``Y = 0.299 R + 0.587 G + 0.114 B``: ``(B, 3, H, W) -> (B, 1, H, W)``."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


_DENOISE: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
    ("box 5x5", box_filter),
    ("bilateral sc=1.0", lambda x: bilateral_filter(x, 1.0, 5.0)),
    ("bilateral sc=0.1", lambda x: bilateral_filter(x, 0.1, 5.0)),
    ("median 5x5", median_filter),
    ("gaussian s=1.5", lambda x: gaussian_filter(x, 1.5)),
    ("gaussian s=0.5", lambda x: gaussian_filter(x, 0.5)),
    ("+1", lambda x: x + 1.0 / 255),
    ("-1", lambda x: x - 1.0 / 255),
    ("nothing", lambda x: x),
]

_CHANNEL_PAIRS = {"red+green": (0, 1), "green+blue": (1, 2), "red+blue": (0, 2)}


def enhance_action(x: torch.Tensor, kind: str, k: float) -> torch.Tensor:
    """One Table VII action on the whole image: ``kind`` in contrast, saturation, brightness,
    red+green, green+blue, red+blue; gain ``k``. ``(B, 3, H, W)`` sRGB -> same (unclipped)."""
    if kind == "contrast":
        m = luminance601(x).mean(dim=(-2, -1), keepdim=True)
        return m + k * (x - m)
    if kind == "saturation":
        y = luminance601(x)
        return y + k * (x - y)
    if kind == "brightness":
        return k * x
    gains = torch.ones(3, dtype=x.dtype, device=x.device)
    gains[list(_CHANNEL_PAIRS[kind])] = k
    return x * gains.view(1, 3, 1, 1)


_ENHANCE: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
    (f"{kind} x{k:g}", (lambda x, kind=kind, k=k: enhance_action(x, kind, k)))
    for kind in ("contrast", "saturation", "brightness", "red+green", "green+blue", "red+blue")
    for k in (0.95, 1.05)
] + [("nothing", lambda x: x)]


@dataclass(frozen=True)
class ActionSet:
    """A named list of whole-image operations; pixel ``i`` takes its action's result (module docstring)."""

    name: str
    actions: tuple[tuple[str, Callable[[torch.Tensor], torch.Tensor]], ...]
    channels: int
    """channels of the images the actions take (1: grey, applied per channel; 3: RGB)."""

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.actions]

    @property
    def n(self) -> int:
        return len(self.actions)

    def apply(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)`` in [0, 1], ``a (B, H, W)`` in ``0 .. n-1`` -> next state, clipped to [0, 1]."""
        if a.shape != (x.shape[0], *x.shape[-2:]):
            raise ValueError(f"actions {tuple(a.shape)} do not match the image {tuple(x.shape)}")
        out = x.clone()
        am = a.unsqueeze(1)
        for k, (_, fn) in enumerate(self.actions):
            sel = am == k
            if bool(sel.any()):
                out = torch.where(sel, fn(x), out)
        return out.clamp(0.0, 1.0)


DENOISE_ACTIONS = ActionSet("denoise", tuple(_DENOISE), 1)
ENHANCE_ACTIONS = ActionSet("enhance", tuple(_ENHANCE), 3)
ACTION_SETS = {"denoise": DENOISE_ACTIONS, "enhance": ENHANCE_ACTIONS}
