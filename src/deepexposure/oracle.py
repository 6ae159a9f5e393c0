"""Oracle ceilings: the best a renderer can do when its choices are made by looking at the reference.

They are not retouching methods a user can run on a new photo (they need the answer); ``eval``
reports them beside the learned models, so every table shows how much of the *reachable* gain a
model captured:

- ``oracle-global``: the single global exposure ``e*`` (linear light, clipped, the white-box
  ``exposure`` filter) that minimises ``MSE(expose(x, e), y)`` against the reference ``y``;
  a grid search over ``ev_range`` at a reduced resolution, refined on a finer grid around the best.
- ``oracle-exposures``: the best ``T`` exposures for DeepExposure's renderer (the fused bracket
  ``fuse([S0, S0·2^e_1, ..., S0·2^e_T])``, Algorithm 3): coordinate descent over the ``T`` slots,
  each slot searched over a grid of ``ev_range`` with the others fixed, started from ``e*`` in
  every slot. The fused renderer depends only on the *set* of exposures, so this is the ceiling of
  any policy's choices (up to the search's resolution and local optima).

- ``oracle-local`` / ``oracle-local-fusion``: the best per-region exposures for the local
  renderers of :mod:`deepexposure.local` (each region through its edge-aware mask; the second
  fused with the original), coordinate descent with a 1-D search per region (:func:`best_local_evs`).

All search at ``search_long_edge`` pixels (the fusion pyramid at that size approximates the
full-resolution one), and all write ordinary recipes, rendered at full resolution like every
other method. Not in the papers: a measuring device of this project.
"""

from __future__ import annotations

import torch

from .filters import global_exposure
from .fusion import FusionConfig, exposure_fusion
from .recipe import Recipe, fusion_op
from .resize import resize_long_edge

__all__ = ["best_global_ev", "best_fusion_evs", "best_local_evs", "OracleGlobalMethod", "OracleExposuresMethod", "OracleLocalMethod"]


def _mse(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``(K,3,h,w), (1,3,h,w) -> (K,)`` mean squared error per candidate."""
    return (out - ref).pow(2).flatten(1).mean(1)


def _small(img: torch.Tensor, long_edge: int) -> torch.Tensor:
    return resize_long_edge(img.float(), long_edge, upscale=False).clamp(0, 1)


def best_global_ev(img_srgb: torch.Tensor, ref_srgb: torch.Tensor, ev_range: tuple[float, float] = (-3.5, 3.5),
                   step: float = 0.1, search_long_edge: int = 256) -> float:
    """``argmin_e MSE(global_exposure(x, e), y)`` over a grid of ``ev_range`` (``step``), refined to ``step / 10``.

    Args:
        img_srgb, ref_srgb: ``(1, 3, H, W)`` sRGB in [0, 1], pixel-aligned.
    Returns:
        the exposure in stops.
    """
    x, y = _small(img_srgb, search_long_edge), _small(ref_srgb, search_long_edge)
    lo, hi = ev_range
    grid = torch.arange(lo, hi + 1e-9, step, dtype=torch.float32)
    for _ in range(2):
        errs = _mse(global_exposure(x.expand(len(grid), -1, -1, -1), grid.unsqueeze(1)), y)
        best = float(grid[int(errs.argmin())])
        step = step / 10
        grid = torch.arange(max(lo, best - 10 * step), min(hi, best + 10 * step) + 1e-9, step, dtype=torch.float32)
    return best


def best_fusion_evs(img_srgb: torch.Tensor, ref_srgb: torch.Tensor, t_steps: int, fusion_cfg: FusionConfig | None = None,
                    ev_range: tuple[float, float] = (-3.0, 3.0), step: float = 0.25, sweeps: int = 3,
                    search_long_edge: int = 160, include_original: bool = True) -> list[float]:
    """The ``T`` exposures whose fused bracket is closest (MSE) to the reference; see the module docstring.

    Args:
        img_srgb, ref_srgb: ``(1, 3, H, W)`` sRGB in [0, 1], pixel-aligned.
        t_steps: ``T``, the number of exposures (DeepExposure's segments).
        fusion_cfg: Mertens settings of the renderer.
        ev_range, step: the grid each slot is searched over (DeepExposure's policy range is +-3 EV).
        sweeps: coordinate-descent passes over the ``T`` slots.
    Returns:
        ``T`` exposures in stops, sorted ascending (the renderer ignores their order).
    """
    cfg = fusion_cfg or FusionConfig()
    x, y = _small(img_srgb, search_long_edge), _small(ref_srgb, search_long_edge)
    lo, hi = ev_range
    grid = torch.arange(lo, hi + 1e-9, step, dtype=torch.float32)
    exposed = global_exposure(x.expand(len(grid), -1, -1, -1), grid.unsqueeze(1))  # (G,3,h,w)
    start = min(max(best_global_ev(x, y, (lo, hi), search_long_edge=search_long_edge), lo), hi)
    cur = [int((grid - start).abs().argmin())] * t_steps
    base = [x[0]] if include_original else []
    best_err = float("inf")
    for _ in range(sweeps):
        improved = False
        for t in range(t_steps):
            others = [exposed[k] for j, k in enumerate(cur) if j != t]
            fixed = torch.stack(base + others)  # (K-1,3,h,w)
            stacks = torch.cat([fixed.unsqueeze(0).expand(len(grid), -1, -1, -1, -1), exposed.unsqueeze(1)], dim=1)
            errs = _mse(exposure_fusion(stacks, cfg).clamp(0, 1), y)
            k = int(errs.argmin())
            if float(errs[k]) < best_err - 1e-12:
                improved = improved or k != cur[t]
                best_err = float(errs[k])
                cur[t] = k
        if not improved:
            break
    return sorted(float(grid[k]) for k in cur)


class OracleGlobalMethod:
    """``oracle-global``: the best single global exposure, found against the reference (a ceiling, not a method for new photos)."""

    name = "oracle-global"
    needs_reference = True

    def __init__(self, ev_range: tuple[float, float] = (-3.5, 3.5)):
        self.ev_range = (float(ev_range[0]), float(ev_range[1]))

    def plan(self, img_srgb: torch.Tensor, reference: torch.Tensor | None = None) -> Recipe:
        if reference is None:
            raise ValueError("oracle-global needs the reference photo (it is a ceiling for eval, not a retouching method)")
        ev = best_global_ev(img_srgb, reference, self.ev_range)
        return Recipe(ops=[{"op": "filter", "name": "exposure", "params": [round(ev, 4)]}],
                      method={"name": self.name, "ev": ev},
                      notes=["oracle: the exposure was chosen by looking at the reference"])


class OracleExposuresMethod:
    """``oracle-exposures``: the best ``T`` exposures for DeepExposure's fused renderer, found against the reference."""

    name = "oracle-exposures"
    needs_reference = True

    def __init__(self, n_segments: int = 5, fusion: FusionConfig | None = None, ev_range: tuple[float, float] = (-3.0, 3.0)):
        self.t_steps = int(n_segments)
        self.fusion_cfg = fusion or FusionConfig()
        self.ev_range = (float(ev_range[0]), float(ev_range[1]))

    def plan(self, img_srgb: torch.Tensor, reference: torch.Tensor | None = None) -> Recipe:
        if reference is None:
            raise ValueError("oracle-exposures needs the reference photo (it is a ceiling for eval, not a retouching method)")
        evs = best_fusion_evs(img_srgb, reference, self.t_steps, self.fusion_cfg, self.ev_range)
        return Recipe(ops=[fusion_op(evs, self.fusion_cfg)], method={"name": self.name},
                      notes=["oracle: the exposures were chosen by looking at the reference"])


# -- the local renderer's ceiling (deepexposure.local) ------------------------------------------


def best_local_evs(img_srgb: torch.Tensor, ref_srgb: torch.Tensor, masks_lo: torch.Tensor, mask_cfg=None,
                   ev_range: tuple[float, float] = (-3.0, 3.0), step: float = 0.1, sweeps: int = 3,
                   search_long_edge: int = 256, fuse_original: bool = False, fusion_cfg: FusionConfig | None = None) -> list[float]:
    """The per-region exposures whose local render is closest (MSE) to the reference.

    The local render ``clip(x_lin * sum_t m_t 2^{e_t})`` (:func:`deepexposure.local.local_exposure_render`)
    changes only inside region ``t``'s mask support when ``e_t`` changes, so each region is nearly
    independent: coordinate descent over the regions, each a 1-D grid search of the MSE over
    ``ev_range`` (``step``) with the others fixed (which is the MSE on that region's support),
    started from the best global exposure in every region; ``sweeps`` passes, then one pass on a
    grid of ``step / 5`` around each value. With ``fuse_original`` the objective is the
    ``local+fusion`` render ``fuse([x, local])``.

    Args:
        img_srgb, ref_srgb: ``(1, 3, H, W)`` sRGB in [0, 1], pixel-aligned.
        masks_lo: ``(1, T, h0, w0)`` region indicators (the one-hot 64x64 segment map).
        mask_cfg: :class:`~deepexposure.masks.MaskConfig` of the renderer.
    Returns:
        ``T`` exposures in stops, region order.
    """
    from .color import linear_to_srgb, srgb_to_linear
    from .masks import RegionMasks

    long_edge = min(search_long_edge, 160) if fuse_original else search_long_edge
    x, y = _small(img_srgb, long_edge), _small(ref_srgb, long_edge)
    masks = RegionMasks.build(x, masks_lo.to(x), mask_cfg).full(x)[0]  # (T,h,w)
    t_steps = masks.shape[0]
    x_lin = srgb_to_linear(x)
    fcfg = fusion_cfg or FusionConfig()
    lo, hi = ev_range
    start = min(max(best_global_ev(x, y, (lo, hi), search_long_edge=long_edge), lo), hi)
    evs = [start] * t_steps

    def errors(t: int, grid: torch.Tensor) -> torch.Tensor:
        # Without fusion only the support of m_t changes: search on its bounding box (same argmin).
        box = (slice(None), slice(None))
        if not fuse_original:
            rows, cols = (masks[t] > 0).any(1).nonzero(), (masks[t] > 0).any(0).nonzero()
            if len(rows):
                box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        gain_others = sum(masks[s][box] * 2.0 ** evs[s] for s in range(t_steps) if s != t)
        gain = gain_others + masks[t][box] * torch.exp2(grid)[:, None, None]  # (G,h,w)
        xb = x[..., box[0], box[1]]
        out = linear_to_srgb((x_lin[..., box[0], box[1]] * gain[:, None]).clamp(0, 1))
        if fuse_original:
            out = exposure_fusion(torch.stack([xb.expand_as(out), out], 1), fcfg).clamp(0, 1)
        return _mse(out, y[..., box[0], box[1]])

    coarse = torch.arange(lo, hi + 1e-9, step, dtype=torch.float32)
    for _ in range(sweeps):
        changed = False
        for t in range(t_steps):
            grid = torch.cat([coarse, torch.tensor([evs[t]])])
            best = float(grid[int(errors(t, grid).argmin())])
            changed = changed or abs(best - evs[t]) > 1e-9
            evs[t] = best
        if not changed:
            break
    for t in range(t_steps):
        fine = torch.arange(max(lo, evs[t] - step), min(hi, evs[t] + step) + 1e-9, step / 5, dtype=torch.float32)
        grid = torch.cat([fine, torch.tensor([evs[t]])])
        evs[t] = float(grid[int(errors(t, grid).argmin())])
    return evs


class OracleLocalMethod:
    """``oracle-local``: the best per-region exposures for the local renderer, found against the reference.

    ``render="local+fusion"`` searches (and writes) the local render fused with the original.
    """

    name = "oracle-local"
    needs_reference = True

    def __init__(self, n_segments: int = 5, render: str = "local", ev_range: tuple[float, float] = (-3.0, 3.0),
                 fusion: FusionConfig | None = None, size: int = 64):
        if render not in ("local", "local+fusion"):
            raise ValueError(f"oracle-local: render must be 'local' or 'local+fusion', got {render!r}")
        self.t_steps = int(n_segments)
        self.render = render
        self.ev_range: tuple[float, float] = (float(ev_range[0]), float(ev_range[1]))
        self.fusion_cfg = fusion or FusionConfig()
        self.size = int(size)

    def plan(self, img_srgb: torch.Tensor, reference: torch.Tensor | None = None) -> Recipe:
        from .local import local_exposure_op
        from .masks import MaskConfig, labels_to_onehot
        from .resize import make_thumbnail
        from .segment import SegmentConfig, segment_thumbnail

        if reference is None:
            raise ValueError("oracle-local needs the reference photo (it is a ceiling for eval, not a retouching method)")
        seg = segment_thumbnail(make_thumbnail(img_srgb, self.size), SegmentConfig(n_segments=self.t_steps))
        cfg = MaskConfig()
        fuse = self.render == "local+fusion"
        evs = best_local_evs(img_srgb, reference, labels_to_onehot(seg.labels), cfg, self.ev_range,
                             fuse_original=fuse, fusion_cfg=self.fusion_cfg)
        return Recipe(ops=[local_exposure_op(evs, cfg, fuse_original=fuse, fusion_cfg=self.fusion_cfg)],
                      method={"name": self.name, "render": self.render},
                      segments=seg.summary(), segment_map=seg.label_rows(),
                      notes=["oracle: the per-region exposures were chosen by looking at the reference"])


class OracleLocalFusionMethod(OracleLocalMethod):
    """``oracle-local-fusion``: :class:`OracleLocalMethod` with ``render="local+fusion"``."""

    name = "oracle-local-fusion"

    def __init__(self, **options):
        options.setdefault("render", "local+fusion")
        super().__init__(**options)
