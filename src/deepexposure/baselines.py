"""Non-learned baselines, each a :class:`~deepexposure.methods.Method` that writes a white-box recipe.

Names in the method table (``deepexposure.methods.get_method(name, **options)``):

- ``identity``: leave the photo alone (an ``exposure_fusion`` op with no extra exposures).
- ``auto``: global auto-exposure. One EV for the whole photo, chosen so that a statistic of the
  linear relative luminance ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` (linear sRGB) reaches ``target``
  (default 0.18, photographic mid-grey) *after* exposure and clipping:
  ``mean(min(1, 2^ev Y)) = target`` solved by bisection (``statistic="mean"``, monotone in ev);
  ``2^ev median(Y) = target`` (``"median"``, closed form); or Reinhard's log-average key
  ``2^ev exp(mean(log(1e-4 + Y))) = target`` (``"log_mean"``, closed form). The EV is clamped to
  the white-box ``exposure`` filter's range [-3.5, 3.5] and written as a ``filter`` op.
- ``clahe``: contrast-limited adaptive histogram equalisation (Zuiderveld 1994) of CIELAB L*
  (scikit-image ``equalize_adapthist``), a* and b* kept, so hue and chroma are preserved; written as
  a ``clahe`` op whose pixels are computed by :func:`deepexposure.ops.clahe` (re-exported here).
- ``fusion``: fixed-bracket single-image exposure fusion: the photo re-exposed by ``ev``
  (default -1, 0, +1, +2 stops, linear light, clipped) and fused with Mertens' method -- the
  empirically crafted counterpart of DeepExposure's learned per-segment exposures (FI in Table 1
  of Yu et al. 2018 fuses derived exposures of a single image in the same spirit).

Every method plans on the image it is given and never touches files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .color import LUM_WEIGHTS_REC709, luminance, srgb_to_linear
from .ops import check_image, clahe
from .recipe import Recipe, fusion_op
from .resize import resize_long_edge

__all__ = [
    "clahe",
    "auto_exposure_ev",
    "IdentityMethod",
    "AutoExposureMethod",
    "ClaheMethod",
    "FixedFusionMethod",
    "AUTO_EV_RANGE",
]

#: EV range of the auto-exposure baseline (the white-box ``exposure`` filter's range).
AUTO_EV_RANGE = (-3.5, 3.5)
# Planning statistics are computed on a copy at most this many pixels on the long edge.
_PLAN_LONG_EDGE = 512


def auto_exposure_ev(
    img_srgb: torch.Tensor,
    target: float = 0.18,
    statistic: str = "mean",
    ev_range: tuple[float, float] = AUTO_EV_RANGE,
    iterations: int = 40,
) -> torch.Tensor:
    """The global EV that brings a luminance statistic to ``target`` (see the module docstring).

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        target: the wanted statistic of linear luminance (0.18 = mid-grey).
        statistic: ``"mean"`` (of the clipped exposed luminance, bisection), ``"median"`` or
            ``"log_mean"`` (closed form).
        ev_range: the result is clamped to this interval.
        iterations: bisection steps (40 give ~1e-11 EV).
    Returns:
        ``(B,)`` exposure values in stops.
    """
    check_image(img_srgb)
    if not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1), got {target}")
    y = luminance(srgb_to_linear(img_srgb.clamp(0.0, 1.0)), LUM_WEIGHTS_REC709).flatten(1).double()
    lo, hi = ev_range
    if statistic == "median":
        ev = torch.log2(target / y.median(dim=1).values.clamp(min=1e-6))
    elif statistic == "log_mean":
        ev = torch.log2(target / torch.exp(torch.log(1e-4 + y).mean(dim=1)))
    elif statistic == "mean":
        a = torch.full((y.shape[0],), float(lo), dtype=torch.float64, device=y.device)
        b = torch.full_like(a, float(hi))
        for _ in range(iterations):
            m = (a + b) / 2
            too_bright = (y * torch.exp2(m)[:, None]).clamp(max=1.0).mean(dim=1) > target
            b = torch.where(too_bright, m, b)
            a = torch.where(too_bright, a, m)
        ev = (a + b) / 2
    else:
        raise ValueError(f"statistic must be 'mean', 'median' or 'log_mean', got {statistic!r}")
    return ev.clamp(lo, hi).to(img_srgb.dtype)


@dataclass
class IdentityMethod:
    """Leave the photo unchanged."""

    name: str = "identity"

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        check_image(img_srgb)
        return Recipe(ops=[fusion_op([], include_original=True)], method={"name": self.name}, notes=["identity: no change"])


@dataclass
class AutoExposureMethod:
    """Global auto-exposure to a luminance target (a white-box ``exposure`` filter op)."""

    target: float = 0.18
    statistic: str = "mean"
    name: str = "auto"

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        small = resize_long_edge(img_srgb, _PLAN_LONG_EDGE, upscale=False)
        ev = float(auto_exposure_ev(small, self.target, self.statistic)[0])
        return Recipe(
            ops=[{"op": "filter", "name": "exposure", "params": [round(ev, 4)]}],
            method={"name": self.name, "target": self.target, "statistic": self.statistic},
            notes=[f"auto-exposure: {ev:+.2f} EV brings the {self.statistic} linear luminance to {self.target}"],
        )


@dataclass
class ClaheMethod:
    """CLAHE on CIELAB lightness (a ``clahe`` op)."""

    clip_limit: float = 0.01
    kernel_size: int | None = None
    name: str = "clahe"

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        check_image(img_srgb)
        return Recipe(
            ops=[{"op": "clahe", "clip_limit": self.clip_limit, "kernel_size": self.kernel_size}],
            method={"name": self.name, "clip_limit": self.clip_limit, "kernel_size": self.kernel_size},
        )


@dataclass
class FixedFusionMethod:
    """Fixed-bracket exposure fusion of the photo re-exposed by ``ev`` stops (an ``exposure_fusion`` op)."""

    ev: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0, 2.0])
    name: str = "fusion"

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        check_image(img_srgb)
        evs = [float(e) for e in self.ev]
        if not evs:
            raise ValueError("fusion needs at least one exposure value")
        return Recipe(ops=[fusion_op(evs, include_original=False)], method={"name": self.name, "ev": evs})
