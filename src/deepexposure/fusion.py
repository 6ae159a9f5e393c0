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

Two implementations share these definitions: :func:`exposure_fusion` (batched, autograd; for
training stacks, 1-D operators as small banded matmuls) and :func:`exposure_fusion_streaming`
(one full-resolution image, no autograd, bounded memory, in-place strip processing).

The fused image is returned **unclipped** (like OpenCV): the Laplacian blend may leave
[0, 1] by a few percent near strong edges. Callers that need an image clip it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .color import rgb_to_gray

__all__ = [
    "FusionConfig",
    "MERTENS_EPS",
    "mertens_weights",
    "exposure_fusion",
    "exposure_fusion_streaming",
    "gaussian_pyramid",
    "laplacian_pyramid",
    "collapse_laplacian",
    "pyr_down",
    "pyr_up",
    "default_levels",
]

#: Added to every raw weight before normalisation (OpenCV's ``1e-12f``).
MERTENS_EPS = 1e-12


@dataclass
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


# --------------------------------------------------------------------------------------------
# Streaming full-resolution path (no autograd).
#
# Every full-resolution quantity is produced in horizontal strips of rows into small reused
# buffers: the arithmetic runs on cache-resident data, no full-size temporary is allocated
# (fresh 100+ MB tensors cost more in page faults than the arithmetic), and the number of
# torch calls stays small (each costs microseconds of dispatch and a thread-pool barrier).
# From level 1 up, an exposure's image and weight share one (4, h, w) buffer so that a single
# set of calls reduces both. The kernels compute the same sums as pyr_down / pyr_up /
# _raw_weights; up-sampled strips are left unscaled (x64) and the consumer folds 1/64 into
# its ``alpha``.
# --------------------------------------------------------------------------------------------

_UP_SCALE = 1.0 / 64.0
#: pixels per strip (rows = _STRIP_PIXELS // width, even): 32 MB per channel, three strips of
#: a 24 MP frame. Smaller strips are kinder to the cache but cost more torch calls; each call
#: on more than 32k elements is an OpenMP parallel region, and on an oversubscribed machine
#: (libgomp's default spin-waiting) the number of regions, not the arithmetic, sets the time.
_STRIP_PIXELS = 1 << 23


class _Workspace:
    """Named flat buffers, grown on demand and handed out as views of the requested shape."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        self._dtype = dtype
        self._device = device
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n:
            self._bufs.pop(name, None)
            buf = torch.empty(n, dtype=self._dtype, device=self._device)
            self._bufs[name] = buf
        return buf[:n].view(shape)


def _strip_rows(width: int) -> int:
    return max(2, (_STRIP_PIXELS // max(width, 1)) & ~1)


_ALL = slice(None)


def _every2(t: torch.Tensor, dim: int, start: int, count: int) -> torch.Tensor:
    """``count`` samples of ``t`` along ``dim`` (0, 1 or 2) from ``start`` with step 2 (a view)."""
    return t[(_ALL,) * dim + (slice(start, start + 2 * count - 1 if count > 0 else start, 2),)]


def _down_axis_into(src: torch.Tensor, dst: torch.Tensor, dim: int, first: int = 0) -> None:
    """``dst[j] = sum_t k_t src[2 (first + j) + t - 2]``, ``k = (1, 4, 6, 4, 1)`` (unscaled), reflect-101.

    ``dst`` holds outputs ``first .. first + dst.shape[dim] - 1`` of the reduction of ``src``.
    """
    n = src.shape[dim]
    j0, j1 = first, first + dst.shape[dim]
    a, b = max(j0, 1), min(j1, (n - 3) // 2 + 1)  # outputs reading only in-range samples
    if b > a:
        inner = dst.narrow(dim, a - j0, b - a)
        torch.add(_every2(src, dim, 2 * a - 2, b - a), _every2(src, dim, 2 * a + 2, b - a), out=inner)
        inner.add_(_every2(src, dim, 2 * a - 1, b - a), alpha=4.0)
        inner.add_(_every2(src, dim, 2 * a + 1, b - a), alpha=4.0)
        inner.add_(_every2(src, dim, 2 * a, b - a), alpha=6.0)
    for j in range(j0, j1):
        if a <= j < b:
            continue
        row = dst.select(dim, j - j0)
        row.copy_(src.select(dim, _reflect101(2 * j - 2, n)))
        for t, k in ((1, 4.0), (2, 6.0), (3, 4.0), (4, 1.0)):
            row.add_(src.select(dim, _reflect101(2 * j + t - 2, n)), alpha=k)


def _up_axis_into(src: torch.Tensor, dst: torch.Tensor, dim: int, first: int, size: int) -> None:
    """Samples ``first ..`` (``first`` even) of ``8 * up(src)`` along ``dim`` (unscaled) into ``dst``.

    ``size`` is the full up-sampled length (``2n`` or ``2n - 1``).
    ``up[2i] = s[i-1] + 6 s[i] + s[i+1]``, ``up[2i+1] = 4 s[i] + 4 s[i+1]`` with the
    reflect-101 extension of the zero-inserted signal (``s[-1] = s[lo]``, ``s[n] = s[hi]``).
    """
    n = src.shape[dim]
    count = dst.shape[dim]
    if size not in (2 * n, 2 * n - 1) or first % 2 or first + count > size or n < 2:
        raise ValueError("internal error: bad up-sampling strip")
    lo = _reflect101(-2, 2 * n) // 2
    hi = _reflect101(2 * n, 2 * n) // 2
    i0 = first // 2
    n_even, n_odd = (count + 1) // 2, count // 2
    even = _every2(dst, dim, 0, n_even)
    odd = _every2(dst, dim, 1, n_odd)
    a, b = max(i0, 1), min(i0 + n_even, n - 1)
    if b > a:
        inner = even.narrow(dim, a - i0, b - a)
        torch.add(src.narrow(dim, a - 1, b - a), src.narrow(dim, a + 1, b - a), out=inner)
        inner.add_(src.narrow(dim, a, b - a), alpha=6.0)
    for i in range(i0, i0 + n_even):
        if a <= i < b:
            continue
        row = even.select(dim, i - i0)
        torch.add(src.select(dim, i - 1 if i >= 1 else lo), src.select(dim, i + 1 if i + 1 < n else hi), out=row)
        row.add_(src.select(dim, i), alpha=6.0)
    b = max(min(i0 + n_odd, n - 1), i0)
    if b > i0:
        inner = odd.narrow(dim, 0, b - i0)
        torch.mul(src.narrow(dim, i0, b - i0), 4.0, out=inner)
        inner.add_(src.narrow(dim, i0 + 1, b - i0), alpha=4.0)
    for i in range(b, i0 + n_odd):
        row = odd.select(dim, i - i0)
        torch.mul(src.select(dim, i), 4.0, out=row)
        row.add_(src.select(dim, hi), alpha=4.0)


def _down_rows(
    sources: list[tuple[torch.Tensor, slice]], dst: torch.Tensor, j0: int, j1: int, ws: _Workspace
) -> None:
    """``dst[:, j0:j1] = pyr_down(cat(sources))[:, j0:j1]``; ``sources`` are ``(C_s, H, W)`` planes and
    the channel slices of ``dst`` they go to."""
    c = dst.shape[0]
    h, w = sources[0][0].shape[-2:]
    if h < 3 or w < 3:  # tiny top levels: the generic path
        for src, ch in sources:
            dst[ch, j0:j1] = pyr_down(src.unsqueeze(0))[0, :, j0:j1]
        return
    n = j1 - j0
    tmp = ws.get("down_v", (c, n, w + 4))  # two reflect-101 columns each side
    for src, ch in sources:
        _down_axis_into(src, tmp[ch, :, 2 : w + 2], 1, first=j0)
    for p in (0, 1, w + 2, w + 3):  # padded column p is original column p - 2
        tmp[:, :, p].copy_(tmp[:, :, _reflect101(p - 2, w) + 2])
    m = dst.shape[-1]
    out = dst[:, j0:j1]
    torch.add(_every2(tmp, 2, 0, m), _every2(tmp, 2, 4, m), out=out)
    out.add_(_every2(tmp, 2, 1, m), alpha=4.0)
    out.add_(_every2(tmp, 2, 3, m), alpha=4.0)
    out.add_(_every2(tmp, 2, 2, m), alpha=6.0)
    out.mul_(1.0 / 256.0)


def _up_rows(src: torch.Tensor, r0: int, r1: int, size: tuple[int, int], ws: _Workspace) -> torch.Tensor:
    """Rows ``r0:r1`` (``r0`` even) of ``64 * pyr_up(src, size)`` as a workspace view ``(C, r1 - r0, W)``."""
    c, hs, wsrc = src.shape
    out = ws.get("up_h", (c, r1 - r0, size[1]))
    if hs < 2 or wsrc < 2:  # tiny top levels: the generic path
        torch.mul(pyr_up(src.unsqueeze(0), size)[0, :, r0:r1], 64.0, out=out)
        return out
    tmp = ws.get("up_v", (c, r1 - r0, wsrc + 2))  # one reflect-101 column each side
    _up_axis_into(src, tmp[:, :, 1 : wsrc + 1], 1, first=r0, size=size[0])
    tmp[:, :, 0].copy_(tmp[:, :, 1 + _reflect101(-2, 2 * wsrc) // 2])
    tmp[:, :, wsrc + 1].copy_(tmp[:, :, 1 + _reflect101(2 * wsrc, 2 * wsrc) // 2])
    n_even, n_odd = (size[1] + 1) // 2, size[1] // 2
    even, odd = _every2(out, 2, 0, n_even), _every2(out, 2, 1, n_odd)
    torch.add(tmp[:, :, 0:n_even], tmp[:, :, 2 : n_even + 2], out=even)
    even.add_(tmp[:, :, 1 : n_even + 1], alpha=6.0)
    torch.mul(tmp[:, :, 1 : n_odd + 1], 4.0, out=odd)
    odd.add_(tmp[:, :, 2 : n_odd + 2], alpha=4.0)
    return out


def _raw_weight_rows(img: torch.Tensor, out: torch.Tensor, r0: int, r1: int, cfg: FusionConfig, ws: _Workspace) -> None:
    """Rows ``r0:r1`` of the raw weight ``C^c1 S^c2 E^c3 + eps`` of ``img (3, H, W)`` into ``out (r1 - r0, W)``.

    The same arithmetic as :func:`_raw_weights`, on strip-sized reused buffers.
    """
    _, h, w = img.shape
    n = r1 - r0
    strip = img[:, r0:r1]
    if cfg.contrast_weight != 0:
        # grey of rows r0-1 .. r1 (reflect-101 at the image border), one padded column each side
        pad = ws.get("w_pad", (n + 2, w + 2))
        ga, gb = max(r0 - 1, 0), min(r1 + 1, h)
        grey = pad[ga - (r0 - 1) : gb - (r0 - 1), 1 : w + 1]
        src = img[:, ga:gb]
        torch.mul(src[0], 0.299, out=grey)
        grey.add_(src[1], alpha=0.587)
        grey.add_(src[2], alpha=0.114)
        for k in (0, n + 1):
            p = r0 - 1 + k
            if not ga <= p < gb:
                pad[k, 1 : w + 1].copy_(pad[_reflect101(p, h) - (r0 - 1), 1 : w + 1])
        pad[:, 0].copy_(pad[:, 1 + _reflect101(-1, w)])
        pad[:, w + 1].copy_(pad[:, 1 + _reflect101(w, w)])
        # (up + down - 2 c) + (left + right - 2 c), in this order: exactly 0 on flat areas
        # (clipped highlights), as the batched path; "+ 4 neighbours - 4 c" leaves rounding
        # noise there, which then decides the otherwise all-eps weights.
        centre = pad[1 : n + 1, 1 : w + 1]
        torch.add(pad[0:n, 1 : w + 1], pad[2 : n + 2, 1 : w + 1], out=out)
        out.add_(centre, alpha=-2.0)
        out.add_(pad[1 : n + 1, 0:w])
        out.add_(pad[1 : n + 1, 2 : w + 2])
        out.add_(centre, alpha=-2.0)
        out.abs_()
        if cfg.contrast_weight != 1:
            out.pow_(cfg.contrast_weight)
    else:
        out.fill_(1.0)
    zero = img.new_zeros(())
    t3 = ws.get("w_t3", (3, n, w))
    t1 = ws.get("w_t1", (n, w))
    if cfg.saturation_weight != 0:
        # sqrt(((r - g)^2 + (g - b)^2 + (b - r)^2) / 3) ** c2
        torch.sub(strip[0:2], strip[1:3], out=t3[0:2])
        torch.sub(strip[2], strip[0], out=t3[2])
        torch.addcmul(zero, t3[0], t3[0], value=1.0 / 3.0, out=t1)
        t1.addcmul_(t3[1], t3[1], value=1.0 / 3.0)
        t1.addcmul_(t3[2], t3[2], value=1.0 / 3.0)
        if cfg.saturation_weight == 1:
            t1.sqrt_()
        else:
            t1.pow_(0.5 * cfg.saturation_weight)
        out.mul_(t1)
    if cfg.exposedness_weight != 0:
        torch.sub(strip, 0.5, out=t3)
        scale = -cfg.exposedness_weight / (2.0 * cfg.sigma**2)
        torch.addcmul(zero, t3[0], t3[0], value=scale, out=t1)
        t1.addcmul_(t3[1], t3[1], value=scale)
        t1.addcmul_(t3[2], t3[2], value=scale)
        out.mul_(t1.exp_())
    out.add_(MERTENS_EPS)


def _raw_weight_plane(
    img: torch.Tensor, out: torch.Tensor, cfg: FusionConfig, ws: _Workspace, wsum: torch.Tensor | None = None
) -> None:
    """``out (1, H, W)`` = raw weight of ``img (3, H, W)``, strip by strip; also ``wsum += out`` if given."""
    h, w = img.shape[-2:]
    rows = _strip_rows(w)
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        _raw_weight_rows(img, out[0, r0:r1], r0, r1, cfg, ws)
        if wsum is not None:
            wsum[:, r0:r1].add_(out[:, r0:r1])


def _level_shapes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    shapes = [(h, w)]
    for _ in range(levels):
        h, w = (h + 1) // 2, (w + 1) // 2
        shapes.append((h, w))
    return shapes


def _check_image(img: torch.Tensor, i: int, shape: tuple[int, ...] | None) -> torch.Tensor:
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[0] != 1 or img.shape[1] != 3:
        got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"make_image({i}) must return a (1, 3, H, W) tensor, got {got}")
    if shape is not None and tuple(img.shape) != shape:
        raise ValueError(f"make_image({i}) returned {tuple(img.shape)}, expected {shape}")
    return img[0]


def _accumulate_levels(
    img: torch.Tensor,
    weight: torch.Tensor,
    out: list[torch.Tensor],
    shapes: list[tuple[int, int]],
    first: int,
    last: int,
    ws: _Workspace,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``out[l] += sum_g G(w_g)_l * L(img_g)_l`` for levels ``first <= l < last``, strip by strip.

    ``img (3G, h, w)`` holds ``G`` images and ``weight (G, h, w)`` their normalised weights, both
    at level ``first``. Level ``l + 1`` of both pyramids is produced just ahead of the strip of
    level ``l`` that needs it, so each strip is read from memory about once. Returns the
    level-``last`` Gaussian images and weights (workspace views).
    """
    g = weight.shape[0]
    sources = [(img, slice(0, 3 * g)), (weight, slice(3 * g, 4 * g))]
    cur_img, cur_w = img, weight
    for lvl in range(first, last):
        (hc, wc), (hn, wn) = shapes[lvl], shapes[lvl + 1]
        nxt = ws.get("lvl_" + "ab"[lvl % 2], (4 * g, hn, wn))
        rows = _strip_rows(wc * g)
        done = 0
        for r0 in range(0, hc, rows):
            r1 = min(r0 + rows, hc)
            need = min(hn, (r1 + 1) // 2 + 1)
            if need > done:
                _down_rows(sources, nxt, done, need, ws)
                done = need
            band = _up_rows(nxt[0 : 3 * g], r0, r1, (hc, wc), ws)
            torch.sub(cur_img[:, r0:r1], band, alpha=_UP_SCALE, out=band)
            for j in range(g):
                out[lvl][:, r0:r1].addcmul_(band[3 * j : 3 * j + 3], cur_w[j : j + 1, r0:r1])
        sources = [(nxt, slice(0, 4 * g))]
        cur_img, cur_w = nxt[0 : 3 * g], nxt[3 * g : 4 * g]
    return cur_img, cur_w


#: Pyramid levels of at most this many pixels are not streamed per exposure: the K exposures'
#: Gaussian images and weights at the first such level are kept (at most K x 4 x this many
#: floats) and the coarse levels are processed for all K at once, with K times fewer calls.
_COARSE_PIXELS = 1 << 19


def exposure_fusion_streaming(
    make_image: Callable[[int], torch.Tensor],
    k: int,
    cfg: FusionConfig = FusionConfig(),
    *,
    keep_weights: bool = True,
) -> torch.Tensor:
    """Memory-frugal full-resolution Mertens fusion (Eqs. 30-31); the result of :func:`exposure_fusion`.

    Computes the same function as :func:`exposure_fusion` (float64: equal to 1e-10; float32: see
    the module notes on rounding). Holds one exposure and one image pyramid at a time, never all
    ``k``:

    1. pass 1: for each ``i`` build ``make_image(i)``, compute its raw weight ``W^i`` (in strips of
       rows) and add it to the weight sum; then normalise the kept weights;
    2. pass 2: for each ``i`` rebuild ``make_image(i)`` and walk both pyramids level by level,
       ``out_l += G(W^i)_l * (G_l - up(G_{l+1}))``, in strips of rows, producing level ``l + 1``
       just ahead of the strip of level ``l`` that needs it, down to the first level of at most
       ``2^19`` pixels, whose Gaussian image and weight are kept;
    3. do the remaining coarse levels for all ``k`` exposures at once (fewer, larger calls);
    4. collapse the accumulated Laplacian pyramid in place.

    Memory beyond the caller's images (24 MP, k = 5: about 1.1-1.2 GiB): the output pyramid
    (4/3 of an image), the ``k`` weight planes (``keep_weights=True``; else the weight sum and one
    recomputed weight), one exposure's levels 1 and 2 (4 channels), strip buffers of at most
    ~2^23 pixels per channel, and the coarse Gaussians (``k x 4 x 2^19`` floats at most). Nothing
    of that size is allocated per call of an inner loop. Runs under ``torch.no_grad()`` in the
    images' dtype (float32 expected); threading is the caller's business
    (``torch.set_num_threads``; see ``benchmarks/bench_fusion.py`` for ``OMP_WAIT_POLICY`` on a
    shared machine).

    Args:
        make_image: ``i -> (1, 3, H, W)`` exposure ``i`` in [0, 1], ``0 <= i < k``. Called twice per
            index, so it must be deterministic (a global exposure of the original is cheap).
            Its result is only read, never modified.
        k: number of exposures, ``>= 1``.
        cfg: :class:`FusionConfig`.
        keep_weights: keep the weight planes between the passes (faster) instead of
            recomputing them in pass 2 (``k - 2`` fewer planes held).
    Returns:
        ``(1, 3, H, W)`` fused image, unclipped like :func:`exposure_fusion`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    with torch.no_grad():
        first: torch.Tensor | None = _check_image(make_image(0), 0, None)
        assert first is not None
        shape = (1, *first.shape)
        _, h, w = first.shape
        dtype, device = first.dtype, first.device
        levels = _resolve_levels(h, w, cfg.levels)
        shapes = _level_shapes(h, w, levels)
        coarse = next((i for i, (hl, wl) in enumerate(shapes) if hl * wl <= _COARSE_PIXELS), levels)

        # pass 1: raw weights and their sum (own workspace, released before the pyramids exist)
        ws1 = _Workspace(dtype, device)
        wsum = torch.zeros((1, h, w), dtype=dtype, device=device)
        raws: list[torch.Tensor | None] = []
        for i in range(k):
            img = first if first is not None else _check_image(make_image(i), i, shape)  # i == 0 <=> first held
            first = None  # hold one exposure at a time
            raw = torch.empty_like(wsum) if keep_weights else ws1.get("raw", (1, h, w))
            _raw_weight_plane(img, raw, cfg, ws1, wsum)
            raws.append(raw if keep_weights else None)
            del img, raw
        del ws1
        if keep_weights:  # normalise now and drop the sum: one plane less while the pyramids exist
            for kept in raws:
                assert kept is not None
                kept.div_(wsum)
            del kept, wsum

        # pass 2: out_l = sum_i G(W^i / sum W)_l * L(img_i)_l for the fine levels l < coarse
        ws = _Workspace(dtype, device)
        out = [torch.zeros((3, hl, wl), dtype=dtype, device=device) for hl, wl in shapes]
        hc, wc = shapes[coarse]
        coarse_img = torch.empty((3 * k, hc, wc), dtype=dtype, device=device)
        coarse_w = torch.empty((k, hc, wc), dtype=dtype, device=device)
        for i in range(k):
            img = _check_image(make_image(i), i, shape)
            weight = raws[i]
            raws[i] = None
            if weight is None:
                weight = ws.get("raw", (1, h, w))
                _raw_weight_plane(img, weight, cfg, ws)
                weight.div_(wsum)
            g_img, g_w = _accumulate_levels(img, weight, out, shapes, 0, coarse, ws)
            coarse_img[3 * i : 3 * i + 3].copy_(g_img)
            coarse_w[i : i + 1].copy_(g_w)
            del img, weight, g_img, g_w
        del raws
        if not keep_weights:
            del wsum

        # the coarse levels, all exposures at once
        top_img, top_w = _accumulate_levels(coarse_img, coarse_w, out, shapes, coarse, levels, ws)
        for j in range(k):
            out[levels].addcmul_(top_img[3 * j : 3 * j + 3], top_w[j : j + 1])
        del ws, coarse_img, coarse_w, top_img, top_w

        # collapse in place: out_{l-1} += up(out_l)
        ws = _Workspace(dtype, device)
        for lvl in range(levels, 0, -1):
            hc, wc = shapes[lvl - 1]
            rows_l = _strip_rows(wc)
            for r0 in range(0, hc, rows_l):
                r1 = min(r0 + rows_l, hc)
                out[lvl - 1][:, r0:r1].add_(_up_rows(out[lvl], r0, r1, (hc, wc), ws), alpha=_UP_SCALE)
            out[lvl] = None  # type: ignore[call-overload]
        return out[0].unsqueeze(0)
