"""Mertens exposure fusion in torch (DeepExposure supplement, section D, Eqs. (30)-(31)).

DeepExposure blends its locally exposed images ``S^k`` with the exposure fusion of
Mertens, Kautz and Van Reeth (2007). For every exposure ``k`` a per-pixel weight

    W^k = C^k ** c1 * S^k ** c2 * E^k ** c3 + eps                                   (Eq. 30)

is formed from

* contrast ``C = |Laplacian(grey)|`` with ``grey = 0.299 r + 0.587 g + 0.114 b`` and the
  3x3 kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` (``cv2.Laplacian`` with ``ksize=1``),
* saturation ``S = sqrt(sum_c (x_c - mean_c x)^2)``, i.e. ``sqrt(3)`` times the population
  standard deviation over R, G, B (OpenCV's definition; the constant cancels in the
  normalisation up to the ``eps``), evaluated in the pairwise form
  ``((r-g)^2 + (g-b)^2 + (b-r)^2) / 3`` so that it is exactly 0 for grey pixels,
* well-exposedness ``E = prod_c exp(-(x_c - 0.5)^2 / (2 sigma^2))``,

and ``eps = 1e-12``. The weights are normalised over the K exposures. The result is
``collapse(sum_k G(W^k)_l * L(S^k)_l)`` for every pyramid level ``l`` (Eq. 31), where ``G`` is
a Gaussian and ``L`` a Laplacian pyramid.

The details mirror OpenCV's ``cv2.createMergeMertens(1, 1, 1)`` (``modules/photo/src/merge.cpp``):
the 5-tap binomial kernel ``[1, 4, 6, 4, 1] / 16`` of ``pyrDown``/``pyrUp``,
``BORDER_REFLECT_101`` everywhere (for ``pyrUp`` it applies to the zero-inserted signal),
``pyrUp`` to the exact size of the finer level, and ``floor(log2(min(H, W)))`` pyramid
reductions by default. Two differences from *calling* OpenCV, both deliberate:

* OpenCV's ``MergeMertens.process`` always divides its input by 255, whatever its dtype.
  Passing float32 images in [0, 1] therefore evaluates the weights on ``x / 255``, which
  is not Mertens' method. Our images are in [0, 1]; the matching OpenCV call is
  ``process([img_01 * 255 for ...])`` with float32 images.
* ``cv2.COLOR_RGB2GRAY`` is applied to whatever channel order it is given (usually BGR);
  we use the true RGB grey. Saturation and well-exposedness are symmetric in the channels.

Numerics: in float32 the contrast of flat or linear-ramp areas is 1-ulp rounding noise
(~3e-8, far above ``eps``), so there the blend depends on the order of the float operations;
two float32 implementations (OpenCV, our batched and our streaming path) differ by up to ~1e-2
at a few pixels (PSNR 57-140 dB against OpenCV, 80-95 dB between our paths and against float64).
In float64 our two paths agree to 1e-10. Where every exposure of a pixel is grey (``r = g = b``),
our saturation is exactly 0 (pairwise form), OpenCV's is rounding noise.

Two implementations share these definitions: :func:`exposure_fusion` here (batched, autograd; for
training stacks, 1-D operators as small banded matmuls) and
:mod:`deepexposure.fusion` (one full-resolution image, no autograd, bounded memory: compiled
row kernels, :mod:`deepexposure.fusion_kernels`; docs/performance.md).

The fused image is returned **unclipped** (like OpenCV): the Laplacian blend may leave
[0, 1] by a few percent near strong edges. Callers that need an image clip it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .color import rgb_to_gray

__all__ = [
    "FusionConfig",
    "MERTENS_EPS",
    "mertens_weights",
    "exposure_fusion",
    "gaussian_pyramid",
    "laplacian_pyramid",
    "collapse_laplacian",
    "pyr_down",
    "pyr_up",
    "default_levels",
]

MERTENS_EPS = 1e-12


@dataclass(frozen=True)
class FusionConfig:
    """Hyper-parameters of Mertens exposure fusion (Eq. (30) of the supplement)."""

    contrast_weight: float = 1.0
    """exponent c1 of the contrast measure |Laplacian(grey)|"""
    saturation_weight: float = 1.0
    """exponent c2 of the saturation measure (deviation over R, G, B)"""
    exposedness_weight: float = 1.0
    """exponent c3 of the well-exposedness measure"""
    sigma: float = 0.2
    """standard deviation of the well-exposedness Gaussian around 0.5"""
    levels: int | None = None
    """number of pyramid reductions (the pyramid has levels + 1 bands); None: floor(log2(min(H, W)))"""

    def __post_init__(self) -> None:
        for name in ("contrast_weight", "saturation_weight", "exposedness_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"FusionConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.sigma > 0:
            raise ValueError(f"FusionConfig.sigma must be > 0, got {self.sigma}")
        if self.levels is not None and self.levels < 0:
            raise ValueError(f"FusionConfig.levels must be >= 0 or None, got {self.levels}")


def default_levels(height: int, width: int) -> int:
    """OpenCV's number of pyramid reductions, ``int(log2(min(H, W)))`` (exact for integers)."""
    return max(int(min(height, width)).bit_length() - 1, 0)


def _resolve_levels(height: int, width: int, levels: int | None) -> int:
    """``levels`` or OpenCV's default; more levels than that just repeat 1-pixel bands."""
    return default_levels(height, width) if levels is None else int(levels)


# --------------------------------------------------------------------------------------------
# Borders and the 5-tap binomial pyramid (OpenCV pyrDown / pyrUp)
# --------------------------------------------------------------------------------------------


def _reflect101(p: int, n: int) -> int:
    """OpenCV ``borderInterpolate(p, n, BORDER_REFLECT_101)``."""
    if n == 1:
        return 0
    while p < 0 or p >= n:
        p = -p if p < 0 else 2 * n - 2 - p
    return p


def _pad_reflect101(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Pad ``pad`` samples on both sides of ``dim`` with ``BORDER_REFLECT_101`` (any size)."""
    n = x.shape[dim]
    left = [_reflect101(p, n) for p in range(-pad, 0)]
    right = [_reflect101(p, n) for p in range(n, n + pad)]
    parts = [x.narrow(dim, i, 1) for i in left] + [x] + [x.narrow(dim, i, 1) for i in right]
    return torch.cat(parts, dim=dim)


#: Along an axis of at most this many samples the batched (differentiable) pyramid and
#: Laplacian run as a product with a small banded matrix: two matmuls per operation instead
#: of a dozen slicing ops, which is what the 64 x 64 training stacks need. Longer axes use
#: the slicing form (the matmul cost grows with the axis length).
_MATMUL_MAX = 512

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


@functools.lru_cache(maxsize=256)
def _axis_matrix(kind: str, n: int, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(size, n)`` matrix of a 1-D operator on ``n`` samples (reflect-101 folded in).

    ``down``: blur ``[1, 4, 6, 4, 1] / 16``, keep even samples (``size = ceil(n / 2)``).
    ``up``: zero-insert to ``2n``, blur ``2 * [1, 4, 6, 4, 1] / 16``, crop to ``size``.
    ``lap``: second difference ``[1, -2, 1]`` (``size = n``).
    """
    m = torch.zeros(size, n, dtype=torch.float64)
    for i in range(size):
        if kind == "down":
            for t, k in enumerate(_BINOMIAL):
                m[i, _reflect101(2 * i + t - 2, n)] += k / 16.0
        elif kind == "up":
            for t, k in enumerate(_BINOMIAL):
                q = _reflect101(i + t - 2, 2 * n)
                if q % 2 == 0:
                    m[i, q // 2] += k / 8.0
        else:
            for t, k in ((-1, 1.0), (0, -2.0), (1, 1.0)):
                m[i, _reflect101(i + t, n)] += k
    return m.to(dtype=dtype, device=device)


def _apply_axis(x: torch.Tensor, mat: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply the ``(size, n)`` matrix along ``dim`` (-2 or -1) of ``x``."""
    return torch.matmul(mat, x) if dim == -2 else torch.matmul(x, mat.t())


def _down1d(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Blur with ``[1, 4, 6, 4, 1] / 16`` (reflect-101) and keep even samples along ``dim`` (-2 or -1)."""
    n = x.shape[dim]
    m = (n + 1) // 2
    if n <= _MATMUL_MAX:
        return _apply_axis(x, _axis_matrix("down", n, m, x.dtype, x.device), dim)
    p = _pad_reflect101(x, 2, dim)
    tap = [p.narrow(dim, t, 2 * m - 1)[_step2(dim, x.dim())] for t in range(5)]
    return (tap[0] + tap[4] + 4.0 * (tap[1] + tap[3]) + 6.0 * tap[2]) * (1.0 / 16.0)


def _step2(dim: int, ndim: int) -> tuple:
    idx = [slice(None)] * ndim
    idx[dim] = slice(None, None, 2)
    return tuple(idx)


def _up1d(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Zero-insert x2, blur with ``2 * [1, 4, 6, 4, 1] / 16`` (reflect-101 on the 2n signal), crop to ``size``.

    In polyphase form with ``s[-1] = s[lo]``, ``s[n] = s[hi]`` (``lo = 1``, ``hi = n - 1`` for
    ``n >= 2``: what reflect-101 of the zero-inserted signal amounts to):
    ``out[2i] = (s[i-1] + 6 s[i] + s[i+1]) / 8``, ``out[2i+1] = (s[i] + s[i+1]) / 2``.
    """
    n = x.shape[dim]
    if size not in (2 * n, 2 * n - 1):
        raise ValueError(f"pyr_up: target size {size} incompatible with source size {n}")
    if n <= _MATMUL_MAX:
        return _apply_axis(x, _axis_matrix("up", n, size, x.dtype, x.device), dim)
    dim = dim % x.dim()
    lo = _reflect101(-2, 2 * n) // 2
    hi = _reflect101(2 * n, 2 * n) // 2
    a = torch.cat([x.narrow(dim, lo, 1), x, x.narrow(dim, hi, 1)], dim=dim)
    a0, a1, a2 = a.narrow(dim, 0, n), a.narrow(dim, 1, n), a.narrow(dim, 2, n)
    even = (a0 + a2 + 6.0 * a1) * 0.125
    odd = (a1 + a2) * 0.5
    out = torch.stack([even, odd], dim=dim + 1).flatten(dim, dim + 1)
    return out.narrow(dim, 0, size)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """One Gaussian reduction as ``cv2.pyrDown``: ``(N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2))``.

    Separable ``[1, 4, 6, 4, 1] / 16`` blur with ``BORDER_REFLECT_101``, then even rows/columns.
    """
    return _down1d(_down1d(x, -2), -1)


def pyr_up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One expansion as ``cv2.pyrUp(x, dstsize=(W, H))``: ``(N, C, h, w) -> (N, C, H, W)``.

    ``H`` is ``2h`` or ``2h - 1`` (same for ``W``): zero insertion, blur with
    ``4 * [1, 4, 6, 4, 1]^T [1, 4, 6, 4, 1] / 256`` and reflect-101 borders, then a crop.
    """
    return _up1d(_up1d(x, -2, size[0]), -1, size[1])


def gaussian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Gaussian pyramid ``[x, down(x), down(down(x)), ...]`` with ``levels + 1`` entries.

    Args:
        x: ``(N, C, H, W)``.
        levels: number of reductions (``cv2.buildPyramid``'s ``maxlevel``).
    """
    pyr = [x]
    for _ in range(levels):
        pyr.append(pyr_down(pyr[-1]))
    return pyr


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid ``L_l = G_l - up(G_{l+1})`` for ``l < levels``, ``L_levels = G_levels``.

    Args:
        x: ``(N, C, H, W)``.
        levels: number of reductions; the result has ``levels + 1`` bands.
    """
    g = gaussian_pyramid(x, levels)
    return [g[i] - pyr_up(g[i + 1], (g[i].shape[-2], g[i].shape[-1])) for i in range(levels)] + [g[-1]]


def collapse_laplacian(pyr: list[torch.Tensor]) -> torch.Tensor:
    """Invert :func:`laplacian_pyramid`: ``x_l = L_l + up(x_{l+1})`` from the coarsest band down."""
    cur = pyr[-1]
    for band in reversed(pyr[:-1]):
        cur = band + pyr_up(cur, (band.shape[-2], band.shape[-1]))
    return cur


# --------------------------------------------------------------------------------------------
# Weights (Eq. 30)
# --------------------------------------------------------------------------------------------


def _laplacian3x3(x: torch.Tensor) -> torch.Tensor:
    """``cv2.Laplacian(x, ksize=1)``: 4-neighbour Laplacian with ``BORDER_REFLECT_101``; ``(N, 1, H, W)``."""
    h, w = x.shape[-2:]
    if h <= _MATMUL_MAX and w <= _MATMUL_MAX:
        return _apply_axis(x, _axis_matrix("lap", h, h, x.dtype, x.device), -2) + _apply_axis(
            x, _axis_matrix("lap", w, w, x.dtype, x.device), -1
        )
    p = _pad_reflect101(_pad_reflect101(x, 1, -2), 1, -1)
    c = p[..., 1 : h + 1, 1 : w + 1]
    vertical = p[..., 0:h, 1 : w + 1] + p[..., 2 : h + 2, 1 : w + 1] - 2.0 * c
    return vertical + (p[..., 1 : h + 1, 0:w] + p[..., 1 : h + 1, 2 : w + 2] - 2.0 * c)


def _safe_pow(x: torch.Tensor, e: float) -> torch.Tensor:
    """``x ** e`` for ``x >= 0`` with a zero (not NaN/inf) gradient at ``x = 0``."""
    if e == 1.0:
        return x
    if e == 0.0:
        return torch.ones_like(x)
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)) ** e, torch.zeros_like(x))


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a zero gradient at ``x = 0`` (grey pixels have zero saturation)."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


def _channel_sq_deviation(img: torch.Tensor) -> torch.Tensor:
    """``sum_c (x_c - mean)^2 = ((r - g)^2 + (g - b)^2 + (b - r)^2) / 3``; exactly 0 for grey pixels.

    The pairwise form avoids OpenCV's float rounding noise at ``r = g = b`` (where every
    exposure's weight is then exactly ``eps`` and the pixel gets the plain average).
    """
    r, g, b = img.unbind(dim=-3)
    rg, gb, br = r - g, g - b, b - r
    return ((rg * rg + gb * gb + br * br) * (1.0 / 3.0)).unsqueeze(-3)


def _raw_weights(img: torch.Tensor, cfg: FusionConfig) -> torch.Tensor:
    """Unnormalised Mertens weight ``C^c1 S^c2 E^c3 + eps`` of images ``(N, 3, H, W)`` -> ``(N, 1, H, W)``."""
    w = None
    if cfg.contrast_weight != 0:
        contrast = _laplacian3x3(rgb_to_gray(img)).abs()
        w = _safe_pow(contrast, cfg.contrast_weight)
    if cfg.saturation_weight != 0:
        sat = _safe_sqrt(_channel_sq_deviation(img))
        s = _safe_pow(sat, cfg.saturation_weight)
        w = s if w is None else w * s
    if cfg.exposedness_weight != 0:
        d = img - 0.5
        e = torch.exp((d * d).sum(dim=-3, keepdim=True) * (-cfg.exposedness_weight / (2.0 * cfg.sigma**2)))
        w = e if w is None else w * e
    if w is None:
        w = torch.ones_like(img[..., :1, :, :])
    return w + MERTENS_EPS


def _check_stack(stack: torch.Tensor) -> None:
    if stack.dim() != 5 or stack.shape[2] != 3:
        raise ValueError(f"expected a stack of shape (B, K, 3, H, W), got {tuple(stack.shape)}")
    if stack.shape[1] < 1:
        raise ValueError("the stack needs at least one exposure (K >= 1)")
    if not stack.is_floating_point():
        raise TypeError(f"expected a floating-point stack, got {stack.dtype}")


def mertens_weights(stack: torch.Tensor, cfg: FusionConfig = FusionConfig()) -> torch.Tensor:
    """Normalised Mertens weights ``W^k / sum_j W^j`` (Eq. 30 of the supplement).

    Args:
        stack: ``(B, K, 3, H, W)`` RGB exposures in [0, 1] (any encoding; sRGB in DeepExposure).
        cfg: exponents and sigma.
    Returns:
        ``(B, K, 1, H, W)`` non-negative weights summing to 1 over ``K``. Differentiable.
    """
    _check_stack(stack)
    b, k, c, h, w = stack.shape
    raw = _raw_weights(stack.reshape(b * k, c, h, w), cfg).reshape(b, k, 1, h, w)
    return raw / raw.sum(dim=1, keepdim=True)


# --------------------------------------------------------------------------------------------
# Fusion (Eq. 31)
# --------------------------------------------------------------------------------------------


def exposure_fusion(stack: torch.Tensor, cfg: FusionConfig = FusionConfig()) -> torch.Tensor:
    """Mertens exposure fusion of K exposures, batched and differentiable (Eq. 31).

    ``out = collapse_l( sum_k G(W^k)_l * L(S^k)_l )`` with the normalised weights of
    :func:`mertens_weights`, ``G`` the Gaussian and ``L`` the Laplacian pyramid.

    Args:
        stack: ``(B, K, 3, H, W)`` exposures in [0, 1]; float32 or float64; any device.
        cfg: :class:`FusionConfig`.
    Returns:
        ``(B, 3, H, W)``, **not clipped** (it may leave [0, 1] slightly, like OpenCV's
        ``MergeMertens``); clip before display or saving.
    """
    weights = mertens_weights(stack, cfg)
    b, k, c, h, w = stack.shape
    levels = _resolve_levels(h, w, cfg.levels)
    lap = laplacian_pyramid(stack.reshape(b * k, c, h, w), levels)
    gw = gaussian_pyramid(weights.reshape(b * k, 1, h, w), levels)
    fused = [
        (li.reshape(b, k, c, *li.shape[-2:]) * gi.reshape(b, k, 1, *gi.shape[-2:])).sum(dim=1)
        for li, gi in zip(lap, gw)
    ]
    return collapse_laplacian(fused)
