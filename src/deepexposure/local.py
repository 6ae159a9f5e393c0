"""Truly local retouching: each region's own exposure (or filters), rendered through its mask.

DeepExposure's renderer (section 4 and supplement D of the paper) applies every chosen exposure to
the *whole* frame and lets Mertens fusion pick per pixel; the segments only steer the policy. The
paper's future work is local exposure combined with other filters. This module renders a
recipe's per-region values literally, through the soft edge-aware masks of
:mod:`deepexposure.masks` (``m_t >= 0``, ``sum_t m_t = 1``):

- **local exposure** (:func:`local_exposure_render`), in linear light::

      out_lin = clip(sum_t m_t * x_lin * 2^{e_t}, 0, 1) = clip(x_lin * g, 0, 1),  g = sum_t m_t 2^{e_t}

  i.e. a per-pixel gain map; with every ``e_t = e`` it is the global exposure ``S * 2^e``
  (:func:`deepexposure.filters.global_exposure`) exactly, and a pixel outside region ``t``'s mask
  support does not depend on ``e_t``;
- **local + fusion**: the local result fused with the original by Mertens fusion,
  ``fuse([S0, S^l])`` -- the pair the paper's state ``s_t = (S0, seg_t, S^l_t)`` holds;
- **local filters** (:func:`local_filters_render`): ``out = sum_t m_t f_t(x)`` with ``f_t`` a chain
  of the white-box filters of :data:`deepexposure.filters.FILTERS` (each clamped to [0, 1] as the
  recipe's ``filter`` op is).

The two render functions are batched, differentiable tensor functions (the trainer can render its
thumbnails locally); :func:`render_local_op` renders a recipe op at full resolution in strips of
rows, never holding the ``T x H x W`` masks.

Recipe ops (``segment_map`` of the recipe gives the regions; ``masks`` how to rebuild them)::

    {"op": "local_exposure", "evs": [e_0, ..., e_{T-1}],
     "masks": {"method": "guided", "radius": 0.02, "eps": 0.001, "guide_long_edge": 1024, "floor": 0.001},
     "fuse_original": false}                      # true: + "fusion": {FusionConfig}
    {"op": "local_filters", "masks": {...},
     "regions": [[{"name": "exposure", "params": [0.5]}, {"name": "saturation", "params": [0.2]}], [], ...]}

The masks are guided by the op's input image (the original when the op comes first).
"""

from __future__ import annotations

import copy
from dataclasses import asdict

import torch

from .color import linear_to_srgb, srgb_to_linear
from .masks import MaskConfig, RegionMasks, labels_to_onehot, mask_strip_rows

__all__ = [
    "LOCAL_OPS",
    "RENDERS",
    "as_render",
    "check_render",
    "local_exposure_op",
    "local_exposure_render",
    "local_filters_op",
    "local_filters_render",
    "region_masks_for",
    "render_local_op",
]

#: recipe ops this module renders
LOCAL_OPS = ("local_exposure", "local_filters")
#: the renderers a DeepExposure recipe can ask for
RENDERS = ("fused", "local", "local+fusion")


def _check_masks(img: torch.Tensor, masks: torch.Tensor) -> None:
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"img_srgb must be (B, 3, H, W), got {tuple(img.shape)}")
    if masks.dim() != 4 or masks.shape[0] not in (1, img.shape[0]) or masks.shape[-2:] != img.shape[-2:]:
        raise ValueError(f"masks must be (B, T, {img.shape[-2]}, {img.shape[-1]}), got {tuple(masks.shape)}")


def local_exposure_render(img_srgb: torch.Tensor, masks: torch.Tensor, evs: torch.Tensor) -> torch.Tensor:
    """Per-region exposure through soft masks, in linear light.

    ``out = linear_to_srgb(clip(srgb_to_linear(S) * sum_t m_t 2^{e_t}, 0, 1))``. With all
    ``e_t = e`` this is :func:`deepexposure.filters.global_exposure` (``sum_t m_t = 1``). The clip is
    physical as in ``global_exposure``: only pixels pushed strictly past white lose their gradient.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        masks: ``(B, T, H, W)`` (or ``(1, T, H, W)``) soft masks, >= 0, summing to one over ``T``
            (:func:`deepexposure.masks.edge_aware_masks`).
        evs: ``(B, T)`` (or ``(1, T)``) exposures in stops (the agent's range is +-3).
    Returns:
        ``(B, 3, H, W)`` sRGB in [0, 1].
    """
    _check_masks(img_srgb, masks)
    if evs.dim() != 2 or evs.shape[1] != masks.shape[1]:
        raise ValueError(f"evs must be (B, {masks.shape[1]}), got {tuple(evs.shape)}")
    gain = (masks.to(img_srgb) * torch.exp2(evs.to(img_srgb))[:, :, None, None]).sum(1, keepdim=True)
    return linear_to_srgb((srgb_to_linear(img_srgb) * gain).clamp(0.0, 1.0))


FilterChain = list[tuple[str, torch.Tensor]]


def local_filters_render(img_srgb: torch.Tensor, masks: torch.Tensor, chains: list[FilterChain]) -> torch.Tensor:
    """Per-region white-box filters through soft masks: ``out = sum_t m_t f_t(S)``.

    ``f_t`` applies region ``t``'s chain of filters of :data:`deepexposure.filters.FILTERS` in order,
    each followed by ``clamp(., 0, 1)`` (as the recipe's ``filter`` op); an empty chain is the
    identity. With the same chain in every region it is that chain applied globally.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        masks: ``(B, T, H, W)`` soft masks summing to one over ``T``.
        chains: ``T`` lists of ``(filter name, params (B, P) or (1, P))``.
    Returns:
        ``(B, 3, H, W)`` sRGB in [0, 1].
    """
    from .filters import apply_filter

    _check_masks(img_srgb, masks)
    if len(chains) != masks.shape[1]:
        raise ValueError(f"expected {masks.shape[1]} filter chains (one per region), got {len(chains)}")
    out = torch.zeros_like(img_srgb)
    for t, chain in enumerate(chains):
        y = img_srgb
        for name, params in chain:
            y = apply_filter(name, y, params.to(img_srgb)).clamp(0.0, 1.0)
        out = out + masks[:, t : t + 1].to(img_srgb) * y
    return out


# ----------------------------------------------------------------------------------------------
# recipe ops
# ----------------------------------------------------------------------------------------------


def _mask_settings(cfg: MaskConfig | None) -> dict:
    return {"method": "guided", **(cfg or MaskConfig()).to_dict()}


def local_exposure_op(evs: list[float], mask_cfg: MaskConfig | None = None, fuse_original: bool = False, fusion_cfg=None) -> dict:
    """A ``local_exposure`` recipe op (``fuse_original``: the ``local+fusion`` renderer)."""
    from .fusion import FusionConfig

    op = {"op": "local_exposure", "evs": [round(float(e), 4) for e in evs], "masks": _mask_settings(mask_cfg), "fuse_original": bool(fuse_original)}
    if fuse_original:
        op["fusion"] = asdict(fusion_cfg or FusionConfig())
    return op


def local_filters_op(regions: list[list[dict]], mask_cfg: MaskConfig | None = None) -> dict:
    """A ``local_filters`` recipe op: ``regions[t]`` = list of ``{"name": filter, "params": [...]}``."""
    return {"op": "local_filters", "masks": _mask_settings(mask_cfg), "regions": copy.deepcopy(regions)}


def check_render(render: str) -> str:
    """Return ``render`` if it is one of :data:`RENDERS`, else raise ``ValueError`` (the methods' ``render`` option)."""
    if render not in RENDERS:
        raise ValueError(f"render must be one of {', '.join(RENDERS)}, got {render!r}")
    return render


def as_render(recipe, render: str = "fused"):
    """Turn a fused DeepExposure recipe into the same choices rendered ``local`` or ``local+fusion``.

    Replaces its ``exposure_fusion`` op (``evs[t]`` chosen for segment ``t``) by a ``local_exposure``
    op with the same values (and, for ``local+fusion``, the same fusion settings). ``fused``
    returns the recipe unchanged.

    Raises:
        ValueError: unknown ``render``, or a recipe without segments / exposure_fusion op.
    """
    if check_render(render) == "fused":
        return recipe
    if not recipe.segment_map:
        raise ValueError(f"--render {render} needs a method that chooses one exposure per region (deepexposure, exposures)")
    ops = []
    done = False
    for op in recipe.ops:
        if op.get("op") == "exposure_fusion" and not done:
            from .fusion import FusionConfig

            t = _n_regions(recipe.segment_map)
            if len(op["evs"]) != t:
                raise ValueError(f"--render {render}: {len(op['evs'])} exposures for {t} regions")
            fusion = FusionConfig(**op.get("fusion", {})) if render == "local+fusion" else None
            ops.append(local_exposure_op(op["evs"], fuse_original=render == "local+fusion", fusion_cfg=fusion))
            done = True
        else:
            ops.append(op)
    if not done:
        raise ValueError(f"--render {render} needs a method that chooses one exposure per region (deepexposure, exposures)")
    recipe.ops = ops
    recipe.method["render"] = render
    recipe.notes.append(f"render {render}: exposure t acts on segment t through an edge-aware mask (docs/local.md)")
    return recipe


def _labels(segment_map: list[str]) -> torch.Tensor:
    from .segment import Segmentation

    return Segmentation.labels_from_rows(segment_map)


def _n_regions(segment_map: list[str]) -> int:
    return int(_labels(segment_map).max()) + 1


def region_masks_for(recipe, op: dict, img_srgb: torch.Tensor) -> RegionMasks:
    """The :class:`~deepexposure.masks.RegionMasks` of a local op, rebuilt from the recipe's ``segment_map``."""
    labels = _labels(recipe.segment_map)
    onehot = labels_to_onehot(labels, int(labels.max()) + 1, dtype=img_srgb.dtype).to(img_srgb.device)
    return RegionMasks.build(img_srgb, onehot, MaskConfig.from_dict(op.get("masks")))


def _chains(op: dict, dtype, device) -> list[FilterChain]:
    return [[(f["name"], torch.tensor([f["params"]], dtype=dtype, device=device)) for f in region] for region in op["regions"]]


@torch.no_grad()
def render_local_op(recipe, op: dict, img_srgb: torch.Tensor) -> torch.Tensor:
    """Render one local op at full resolution, in strips of rows (see the module docstring).

    Args:
        recipe: the :class:`~deepexposure.recipe.Recipe` (its ``segment_map`` gives the regions).
        op: a ``local_exposure`` or ``local_filters`` op.
        img_srgb: ``(1, 3, H, W)`` sRGB in [0, 1], the op's input.
    Returns:
        ``(1, 3, H, W)`` sRGB in [0, 1].
    """
    rm = region_masks_for(recipe, op, img_srgb)
    h, w = img_srgb.shape[-2:]
    out = torch.empty_like(img_srgb)
    if op["op"] == "local_exposure":
        evs = torch.tensor([[float(e) for e in op["evs"]]], dtype=img_srgb.dtype, device=img_srgb.device)
        step = lambda x, m: local_exposure_render(x, m, evs)
    else:
        chains = _chains(op, img_srgb.dtype, img_srgb.device)
        step = lambda x, m: local_filters_render(x, m, chains)
    rows = mask_strip_rows(w, rm.n_regions)
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        x = img_srgb[:, :, r0:r1]
        out[:, :, r0:r1] = step(x, rm.rows(x, r0, r1))
    if op["op"] == "local_exposure" and op.get("fuse_original"):
        from .fusion import FusionConfig, exposure_fusion_streaming

        cfg = FusionConfig(**op.get("fusion", {}))
        local = out
        out = exposure_fusion_streaming(lambda i: img_srgb if i == 0 else local, 2, cfg).clamp_(0.0, 1.0)
    return out
