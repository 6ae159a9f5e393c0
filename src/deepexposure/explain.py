"""``--explain``: a picture of what a recipe did, for people.

For an ``exposure_fusion`` recipe: the original, its segments (coloured, numbered), each step's
whole-frame exposure of the fused bracket, labelled with its EV and the segment it was chosen for,
and the fused result, side by side (the exposures are not confined to their segments; fusion mixes them). For filter
recipes: the image after each filter, labelled with the filter and its parameters. Recipes with
local ops (``local_exposure``, ``local_filters``) get a grid of masks and regions
(:mod:`deepexposure.explain_local`); PixelRL recipes the action map of every step with its counts
(:mod:`deepexposure.pixelrl.explain`).
"""

from __future__ import annotations

import numpy as np
import torch

from .explain_local import SEGMENT_PALETTE
from .recipe import Recipe, render
from .resize import resize_long_edge

__all__ = ["explain_image", "PREVIEW_SIZE"]

#: long edge of each panel in pixels
PREVIEW_SIZE = 320

_PALETTE = SEGMENT_PALETTE


def _segments_panel(preview: torch.Tensor, rows: list[str]) -> torch.Tensor:
    from .segment import Segmentation

    labels = Segmentation.labels_from_rows(rows).float()[None, None]  # a CPU label map, coloured by numpy below
    h, w = preview.shape[-2:]
    lab = torch.nn.functional.interpolate(labels, size=(h, w), mode="nearest")[0, 0].long()
    colours = torch.from_numpy(_PALETTE[lab.numpy() % len(_PALETTE)]).permute(2, 0, 1)
    return (0.45 * preview[0] + 0.55 * colours.to(preview)).unsqueeze(0)


def _label(panels: list[tuple[torch.Tensor, str]]) -> torch.Tensor:
    """Paste panels side by side with a caption strip under each; returns ``(1, 3, H, W)``."""
    from PIL import Image, ImageDraw

    from .io import tensor_to_uint8, uint8_to_tensor

    cap = 22
    h = max(p.shape[-2] for p, _ in panels)
    width = sum(p.shape[-1] for p, _ in panels) + 4 * (len(panels) - 1)
    canvas = Image.new("RGB", (width, h + cap), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for p, text in panels:
        canvas.paste(Image.fromarray(tensor_to_uint8(p)), (x, 0))
        draw.text((x + 4, h + 5), text, fill=(235, 235, 235))
        x += p.shape[-1] + 4
    return uint8_to_tensor(np.asarray(canvas))


@torch.no_grad()
def explain_image(img_srgb: torch.Tensor, recipe: Recipe, out_srgb: torch.Tensor | None = None) -> torch.Tensor:
    """Build the explanation sheet.

    Args:
        img_srgb: ``(1, 3, H, W)`` the original.
        recipe: what was done.
        out_srgb: the full-resolution result (recomputed on the preview if omitted).
    Returns:
        ``(1, 3, h, w)`` sRGB picture.
    """
    from .filters import global_exposure

    if any(op["op"] in ("local_exposure", "local_filters") for op in recipe.ops):  # per-region renders: a grid
        from .explain_local import explain_local

        return explain_local(img_srgb, recipe, out_srgb)
    if any(op["op"] == "pixelrl_actions" for op in recipe.ops):  # per-pixel action maps (PixelRL, Figs. 2, 4, 9)
        from .pixelrl.explain import explain_actions

        return explain_actions(img_srgb, recipe, out_srgb, _label)
    prev = resize_long_edge(img_srgb, PREVIEW_SIZE, upscale=False).clamp(0, 1)
    panels: list[tuple[torch.Tensor, str]] = [(prev, "original")]
    if recipe.segment_map:
        panels.append((_segments_panel(prev, recipe.segment_map), f"{len(recipe.segments or [])} segments"))
    current = prev
    for op in recipe.ops:
        if op["op"] == "exposure_fusion":
            for t, ev in enumerate(op["evs"]):
                tag = f" (chosen for seg {t})" if recipe.segments else ""
                shown = global_exposure(current, torch.tensor([[float(ev)]], dtype=current.dtype, device=current.device))
                panels.append((shown, f"bracket {float(ev):+.2f} EV{tag}"))
            current = render(Recipe(ops=[op]), current)
        else:
            current = render(Recipe(ops=[op]), current)
            if op["op"] == "filter":
                params = ", ".join(f"{p:.2f}" for p in op["params"][:3]) + (" ..." if len(op["params"]) > 3 else "")
                panels.append((current, f"{op['name']}({params})"))
            else:
                panels.append((current, op["op"]))
    final = resize_long_edge(out_srgb, PREVIEW_SIZE, upscale=False).clamp(0, 1) if out_srgb is not None else current
    panels.append((final, f"result ({recipe.method.get('name', '?')})"))
    return _label(panels).to(img_srgb.device)  # drawn on the CPU (Pillow), returned where the photo is
