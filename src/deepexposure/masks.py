"""Region masks at full resolution: the thumbnail's segment map, upsampled edge-aware.

The policy segments a 64x64 thumbnail (:mod:`deepexposure.segment`); a *local* renderer needs those
regions at the photo's own resolution, soft, summing to one, and following the photo's edges
(a one-cell mismatch of the 64x64 map is 90 px at 24 MP). We upsample the one-hot indicators with
the **fast guided filter** (He, Sun & Tang, "Guided Image Filtering", TPAMI 2013, Eqs. (5)-(8);
He & Sun, "Fast Guided Filter", arXiv:1505.00996, Algorithm 2), guided by the photo's luminance:

1. guide ``I`` = luma of the sRGB photo (Rec. 709 weights on the encoded values, where edges are
   perceptual), shrunk to ``guide_long_edge`` pixels on the long edge (antialiased): ``I_g``;
   indicators ``p_t`` on the same grid by **joint bilateral upsampling** of the one-hot label map
   (Kopf et al. 2007; :func:`joint_bilateral_indicators`): each guide pixel takes the labels of
   the nearby thumbnail cells whose mean colour resembles its own. This moves the map's
   boundaries, which can lie half a cell (45 px at 24 MP) off the true edge, onto the edge; a
   guided filter alone, fed a misaligned indicator, leaks 14-50 % of a mask across the edge;
2. on that grid, with a box window of radius ``r = radius * long_edge_g`` pixels and mean ``f``::

       a_t = (f(I p_t) - f(I) f(p_t)) / (f(I^2) - f(I)^2 + eps)          (Eq. 5)
       b_t = f(p_t) - a_t f(I)                                           (Eq. 6)
       A_t = f(a_t),  B_t = f(b_t)                                       (Eq. 8)

3. ``A_t, B_t`` bilinearly upsampled to ``H x W`` and applied to the **full-resolution** guide:
   ``q_t = A_t I + B_t`` (the linear model that keeps the full-resolution edges);
4. ``m_t = max(q_t, 0)``, values below ``floor`` set to 0 (so every mask has a compact support),
   then ``m_t / sum_s m_s``.

Since ``sum_t p_t = 1`` and the filter is linear in ``p``, ``sum_t q_t = 1`` before step 4, which
only removes the small negative lobes the linear model can produce across strong edges (the
"halos" of the guided filter; clamping them is what makes the result a partition of unity).
Where the guide is flat, ``a ~ 0`` and the mask is a smooth blend over about ``2r`` pixels; across
a strong edge (variance >> ``eps``), ``q`` follows the edge of ``I`` at full resolution, within
a pixel or two.

Two entry points share the maths:

- :func:`edge_aware_masks` -- batched and differentiable (autograd through every step; the clamp
  and the floor zero the gradient where they act): a ``(B,3,H,W)`` photo and ``(B,T,h0,w0)`` soft
  masks to ``(B,T,H,W)`` masks, for training at thumbnail resolution;
- :class:`RegionMasks` -- one photo at full resolution in bounded memory: the coefficients live on
  the guide grid, the masks are produced for strips of rows on demand (:meth:`RegionMasks.rows`),
  never all ``T x H x W`` at once (the local renderer consumes them strip by strip).

Device and dtype follow the inputs; nothing here is in the DeepExposure paper (which fuses global
exposures, section 4); it is the "local exposure" its future-work paragraph asks for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from .color import LUM_WEIGHTS_REC709, luminance
from .resize import long_edge_shape, resize_exact

__all__ = [
    "MaskConfig",
    "RegionMasks",
    "edge_aware_masks",
    "guide_luma",
    "guided_coefficients",
    "joint_bilateral_indicators",
    "labels_to_onehot",
    "mask_strip_rows",
]


@dataclass
class MaskConfig:
    """Settings of the edge-aware mask upsampling (the fast guided filter, see the module docstring)."""

    radius: float = 0.02
    """box window radius as a fraction of the long edge (resolution-independent; 0.02 = 20 px on a 1024 px guide)"""
    eps: float = 1e-3
    """guided-filter regulariser, in squared luma units: edges with a luma step well above sqrt(eps) are followed"""
    guide_long_edge: int = 1024
    """long edge of the grid the coefficients are computed on (the photo's own size when smaller)"""
    floor: float = 1e-3
    """mask values below this are set to 0 before renormalising (compact support)"""

    def __post_init__(self) -> None:
        if not 0 < self.radius <= 0.5:
            raise ValueError(f"MaskConfig.radius must be in (0, 0.5], got {self.radius}")
        if not self.eps > 0:
            raise ValueError(f"MaskConfig.eps must be > 0, got {self.eps}")
        if int(self.guide_long_edge) < 8:
            raise ValueError(f"MaskConfig.guide_long_edge must be >= 8, got {self.guide_long_edge}")
        if not 0 <= self.floor < 0.5:
            raise ValueError(f"MaskConfig.floor must be in [0, 0.5), got {self.floor}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> MaskConfig:
        """Build from a recipe's ``masks`` settings (ignores the ``method`` key; unknown keys raise ``TypeError``)."""
        d = dict(d or {})
        d.pop("method", None)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TypeError(f"unknown mask settings {sorted(unknown)} (known: {sorted(known)})")
        return cls(**d)


def labels_to_onehot(labels: torch.Tensor, n_regions: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(h0, w0)`` int label map with values ``0..T-1`` -> ``(1, T, h0, w0)`` one-hot indicators."""
    if labels.dim() != 2:
        raise ValueError(f"labels must be an (h, w) label map, got {tuple(labels.shape)}")
    t = int(labels.max()) + 1 if n_regions is None else int(n_regions)
    return F.one_hot(labels.long(), t).permute(2, 0, 1).unsqueeze(0).to(dtype)


def guide_luma(img_srgb: torch.Tensor) -> torch.Tensor:
    """The guide: Rec. 709 luma of the sRGB-encoded values, ``(B, 3, H, W) -> (B, 1, H, W)``."""
    return luminance(img_srgb, LUM_WEIGHTS_REC709)


def _box1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Mean over the window ``[i - r, i + r]`` along ``dim``, clipped at the borders (He's normalised box), O(1) per pixel."""
    n = x.shape[dim]
    if r <= 0 or n == 1:
        return x
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    c = torch.cat([zero, x.cumsum(dim)], dim)  # c[k] = sum of x[:k]
    i = torch.arange(n, device=x.device)
    hi = (i + r).clamp(max=n - 1) + 1
    lo = (i - r).clamp(min=0)
    count = (hi - lo).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = n
    return (c.index_select(dim, hi) - c.index_select(dim, lo)) / count.view(shape)


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return _box1d(_box1d(x, r, -1), r, -2)


def guided_coefficients(guide_g: torch.Tensor, p_g: torch.Tensor, r: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided filter's averaged linear coefficients ``(A, B)`` on one grid (Eqs. 5, 6, 8 of He et al.).

    Args:
        guide_g: ``(B, 1, h, w)`` guide ``I``.
        p_g: ``(B, T, h, w)`` inputs ``p_t`` (filtered independently, same guide).
        r: box radius in pixels of this grid.
        eps: regulariser.
    Returns:
        ``A, B`` of shape ``(B, T, h, w)``: the filter output is ``A * I + B`` (also on a finer grid,
        with ``A, B`` upsampled and ``I`` at the finer resolution).
    """
    # Box sums in float64 when the input is float32: the variance f(I^2) - f(I)^2 cancels.
    # One region at a time: the float64 temporaries stay at a few planes of the guide grid.
    work = torch.float64 if guide_g.dtype == torch.float32 and guide_g.device.type == "cpu" else guide_g.dtype
    i = guide_g.to(work)
    mean_i = _box(i, r)
    var_i = _box(i * i, r) - mean_i * mean_i
    coeff_a, coeff_b = [], []
    for t in range(p_g.shape[1]):
        p = p_g[:, t : t + 1].to(work)
        mean_p = _box(p, r)
        a = (_box(i * p, r) - mean_i * mean_p) / (var_i + eps)
        b = mean_p - a * mean_i
        coeff_a.append(_box(a, r).to(p_g.dtype))
        coeff_b.append(_box(b, r).to(p_g.dtype))
    return torch.cat(coeff_a, 1), torch.cat(coeff_b, 1)


def _lerp_axis(x: torch.Tensor, size: int, dim: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Rows/columns ``start:stop`` of the bilinear (``align_corners=False``) resize of ``x`` to ``size`` along ``dim``.

    Equals ``F.interpolate(..., mode="bilinear", align_corners=False)`` (separable) restricted to a
    range, so a strip can be produced without the whole upsampled plane.
    """
    n = x.shape[dim]
    stop = size if stop is None else stop
    dst = torch.arange(start, stop, device=x.device, dtype=torch.float64)
    src = ((dst + 0.5) * (n / size) - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=n - 1)
    i1 = (i0 + 1).clamp(max=n - 1)
    w = (src - i0.to(torch.float64)).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = stop - start
    w = w.view(shape)
    x0 = x.index_select(dim, i0)
    x1 = x.index_select(dim, i1)
    return x0 + (x1 - x0) * w


def _normalise(q: torch.Tensor, floor: float) -> torch.Tensor:
    """``max(q, 0)``, zero below ``floor``, divided by the sum over regions (dim 1)."""
    m = q.clamp(min=0.0)
    if floor > 0:
        m = torch.where(m < floor, torch.zeros_like(m), m)
    s = m.sum(dim=1, keepdim=True)
    # sum_t q_t = 1 and at least one q_t >= 1/T > floor, so s > 0; the guard is for degenerate input.
    return m / s.clamp(min=torch.finfo(m.dtype).tiny)


def _grid_and_radius(height: int, width: int, cfg: MaskConfig) -> tuple[tuple[int, int], int]:
    long_g = min(max(height, width), int(cfg.guide_long_edge))
    hg, wg = long_edge_shape(height, width, long_g)
    return (hg, wg), max(1, round(cfg.radius * max(hg, wg)))


def mask_strip_rows(width: int, n_regions: int, budget: int = 1 << 22) -> int:
    """Rows per strip so that one strip of ``T`` mask planes holds about ``budget`` values (>= 8 rows)."""
    return max(8, budget // max(1, width * n_regions))


class RegionMasks:
    """Edge-aware full-resolution masks of one photo, produced strip by strip (see the module docstring).

    Holds only the coefficients ``A, B (1, T, h_g, w_g)`` on the guide grid; :meth:`rows` returns
    the masks of a strip of rows of the photo, :meth:`full` all of them (``T x H x W`` values).
    """

    def __init__(self, coeff_a: torch.Tensor, coeff_b: torch.Tensor, height: int, width: int, floor: float):
        self.coeff_a, self.coeff_b = coeff_a, coeff_b
        self.height, self.width = int(height), int(width)
        self.floor = float(floor)

    @property
    def n_regions(self) -> int:
        return int(self.coeff_a.shape[1])

    @classmethod
    def build(cls, img_srgb: torch.Tensor, masks_lo: torch.Tensor, cfg: MaskConfig | None = None) -> RegionMasks:
        """Compute the coefficients for one photo.

        Args:
            img_srgb: ``(1, 3, H, W)`` sRGB in [0, 1] at full resolution (the guide).
            masks_lo: ``(1, T, h0, w0)`` soft or one-hot region indicators summing to one
                (e.g. :func:`labels_to_onehot` of the recipe's 64x64 ``segment_map``; the map covers
                the whole frame, squashed, as the thumbnail does).
            cfg: :class:`MaskConfig`.
        """
        cfg = cfg or MaskConfig()
        if img_srgb.dim() != 4 or img_srgb.shape[:2] != (1, 3):
            raise ValueError(f"img_srgb must be (1, 3, H, W), got {tuple(img_srgb.shape)}")
        if masks_lo.dim() != 4 or masks_lo.shape[0] != 1:
            raise ValueError(f"masks_lo must be (1, T, h0, w0), got {tuple(masks_lo.shape)}")
        h, w = img_srgb.shape[-2:]
        grid, r = _grid_and_radius(h, w, cfg)
        a, b = _coefficients(img_srgb, masks_lo, grid, r, cfg)
        return cls(a, b, h, w, cfg.floor)

    def rows(self, img_srgb_rows: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Masks of rows ``r0:r1``: ``(1, T, r1 - r0, W)``, >= 0, summing to one over ``T``.

        Args:
            img_srgb_rows: ``(1, 3, r1 - r0, W)`` the same rows of the photo (the full-resolution guide).
        """
        a = _lerp_axis(_lerp_axis(self.coeff_a, self.height, -2, r0, r1), self.width, -1)
        b = _lerp_axis(_lerp_axis(self.coeff_b, self.height, -2, r0, r1), self.width, -1)
        q = a * guide_luma(img_srgb_rows).to(a) + b
        return _normalise(q, self.floor)

    def full(self, img_srgb: torch.Tensor) -> torch.Tensor:
        """All masks, ``(1, T, H, W)`` (``T x H x W`` values: for previews, tests and small photos)."""
        return self.rows(img_srgb, 0, self.height)


def _coefficients(img_srgb: torch.Tensor, masks_lo: torch.Tensor, grid: tuple[int, int], r: int,
                  cfg: MaskConfig) -> tuple[torch.Tensor, torch.Tensor]:
    img_g = resize_exact(img_srgb, grid)
    p_g = joint_bilateral_indicators(img_g, masks_lo)
    return guided_coefficients(guide_luma(img_g), p_g, r, cfg.eps)


def edge_aware_masks(img_srgb: torch.Tensor, masks_lo: torch.Tensor, cfg: MaskConfig | None = None) -> torch.Tensor:
    """Batched, differentiable edge-aware upsampling of soft region masks to the photo's size.

    ``m_t = normalise(max(A_t I + B_t, 0))`` with ``A_t, B_t`` the guided filter's coefficients of
    the jointly-bilaterally upsampled ``p_t`` on the guide grid, bilinearly upsampled to ``H x W``,
    and ``I`` the photo's luma (see the module docstring for the equations). Gradients flow to both
    inputs (zero where the clamp or the floor act).

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1], the photo (the guide).
        masks_lo: ``(B, T, h0, w0)`` or ``(1, T, h0, w0)`` soft masks in [0, 1] summing to one
            over ``T`` (e.g. the 64x64 segment masks).
        cfg: :class:`MaskConfig`.
    Returns:
        ``(B, T, H, W)`` masks, >= 0, summing to one over ``T``; dtype/device of ``img_srgb``.
    """
    cfg = cfg or MaskConfig()
    if img_srgb.dim() != 4 or img_srgb.shape[1] != 3:
        raise ValueError(f"img_srgb must be (B, 3, H, W), got {tuple(img_srgb.shape)}")
    if masks_lo.dim() != 4 or masks_lo.shape[0] not in (1, img_srgb.shape[0]):
        raise ValueError(f"masks_lo must be (B, T, h0, w0) or (1, T, h0, w0), got {tuple(masks_lo.shape)}")
    h, w = img_srgb.shape[-2:]
    grid, r = _grid_and_radius(h, w, cfg)
    a, b = _coefficients(img_srgb, masks_lo.expand(img_srgb.shape[0], -1, -1, -1), grid, r, cfg)
    a = _lerp_axis(_lerp_axis(a, h, -2), w, -1)
    b = _lerp_axis(_lerp_axis(b, h, -2), w, -1)
    return _normalise(a * guide_luma(img_srgb) + b, cfg.floor)


def joint_bilateral_indicators(img_g: torch.Tensor, masks_lo: torch.Tensor, sigma_s: float = 1.0, sigma_r: float = 0.1,
                               reach: int = 2) -> torch.Tensor:
    """Joint bilateral upsampling of region indicators (Kopf et al. 2007) onto the guide grid.

    ``p_t(x) = sum_c w(x, c) m_t(c) / sum_c w(x, c)`` over the thumbnail cells ``c`` within
    ``reach`` cells of ``x``'s cell, with ``w = exp(-d(x, c)^2 / 2 sigma_s^2) (exp(-||I(x) - I_c||^2
    / 2 sigma_r^2) + 1e-3)``: ``d`` the distance from ``x`` to the cell centre in cells, ``I`` the
    sRGB colour and ``I_c`` the cell's mean colour. A pixel takes the labels of nearby cells that
    look like it, which moves the 64x64 map's boundaries (up to half a cell off) onto the photo's
    edges; in flat areas it is a smooth spatial blend.

    Args:
        img_g: ``(B, 3, h, w)`` sRGB on the guide grid.
        masks_lo: ``(B, T, h0, w0)`` region indicators on the thumbnail grid.
    Returns:
        ``(B, T, h, w)``, summing to one over ``T`` when ``masks_lo`` does.
    """
    h, w = img_g.shape[-2:]
    h0, w0 = masks_lo.shape[-2:]
    cells = F.adaptive_avg_pool2d(img_g, (h0, w0))  # (B,3,h0,w0) mean colour per cell
    masks_lo = masks_lo.to(img_g)
    dev = img_g.device
    fy = (torch.arange(h, device=dev, dtype=torch.float64) + 0.5) * (h0 / h)  # position in cell units
    fx = (torch.arange(w, device=dev, dtype=torch.float64) + 0.5) * (w0 / w)
    cy, cx = fy.floor().long().clamp(max=h0 - 1), fx.floor().long().clamp(max=w0 - 1)
    num = torch.zeros((*masks_lo.shape[:2], h, w), dtype=img_g.dtype, device=dev)
    den = torch.zeros((img_g.shape[0], 1, h, w), dtype=img_g.dtype, device=dev)
    for dy in range(-reach, reach + 1):
        iy = cy + dy
        vy = (iy >= 0) & (iy < h0)
        wy = torch.exp(-((fy - (iy.to(torch.float64) + 0.5)) ** 2) / (2 * sigma_s**2)) * vy
        iy = iy.clamp(0, h0 - 1)
        for dx in range(-reach, reach + 1):
            ix = cx + dx
            vx = (ix >= 0) & (ix < w0)
            wx = torch.exp(-((fx - (ix.to(torch.float64) + 0.5)) ** 2) / (2 * sigma_s**2)) * vx
            ix = ix.clamp(0, w0 - 1)
            ws = (wy[:, None] * wx[None, :]).to(img_g.dtype)  # (h, w)
            c = cells[:, :, iy][:, :, :, ix]  # (B,3,h,w)
            wr = torch.exp(-((img_g - c) ** 2).sum(1, keepdim=True) / (2 * sigma_r**2)) + 1e-3
            wgt = ws * wr
            num = num + wgt * masks_lo[:, :, iy][:, :, :, ix]
            den = den + wgt
    return num / den
