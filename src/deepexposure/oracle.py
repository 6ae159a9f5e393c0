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

Both search at ``search_long_edge`` pixels (the fusion pyramid at that size approximates the
full-resolution one), and both write ordinary recipes, rendered at full resolution like every
other method. Not in the papers: a measuring device of this project.
"""

from __future__ import annotations

import torch

from .filters import global_exposure
from .fusion import FusionConfig, exposure_fusion
from .recipe import Recipe, fusion_op
from .resize import resize_long_edge

__all__ = ["best_global_ev", "best_fusion_evs", "OracleGlobalMethod", "OracleExposuresMethod"]


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
