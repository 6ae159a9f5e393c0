"""``--explain`` for PixelRL: the action map of every step (the paper's Figs. 4, 6, 9), coloured by
action, with the pixel counts of each step (Fig. 2) in the caption and a legend panel."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..recipe import Recipe
from ..resize import resize_long_edge
from .recipe_op import decode_maps
from .tasks import Task

__all__ = ["explain_actions", "ACTION_PALETTE"]

#: one colour per action index (13 distinct colours, enough for Table VII)
ACTION_PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
    [240, 50, 230], [128, 128, 128], [170, 110, 40], [0, 128, 128], [255, 250, 200], [250, 190, 212],
], dtype=np.float32) / 255.0

_PREVIEW = 320


def _legend(names: list[str], height: int) -> torch.Tensor:
    from PIL import Image, ImageDraw

    from ..io import uint8_to_tensor

    canvas = Image.new("RGB", (170, max(height, 16 * len(names) + 8)), (24, 24, 24))
    d = ImageDraw.Draw(canvas)
    for k, n in enumerate(names):
        c = tuple(int(v * 255) for v in ACTION_PALETTE[k % len(ACTION_PALETTE)])
        d.rectangle([6, 6 + 16 * k, 18, 18 + 16 * k], fill=c)
        d.text((24, 6 + 16 * k), n, fill=(235, 235, 235))
    return uint8_to_tensor(np.asarray(canvas))


@torch.no_grad()
def explain_actions(img_srgb: torch.Tensor, recipe: Recipe, out_srgb: torch.Tensor | None,
                    label: Callable[[list[tuple[torch.Tensor, str]]], torch.Tensor]) -> torch.Tensor:
    """Sheet: original | the map of step 1 .. T (channel 0 for colour photos) | result | legend.
    Each map's caption gives the step and its three most used actions with their share of pixels."""
    op = next(o for o in recipe.ops if o["op"] == "pixelrl_actions")
    task = Task.make(op["task"])
    maps = decode_maps(op["shape"], op["maps"])
    prev = resize_long_edge(img_srgb.cpu(), _PREVIEW, upscale=False).clamp(0, 1)
    h, w = prev.shape[-2:]
    panels: list[tuple[torch.Tensor, str]] = [(prev, "original")]
    for t in range(maps.shape[0]):
        m = torch.nn.functional.interpolate(maps[t, :1][None].float(), size=(h, w), mode="nearest")[0, 0].long().numpy()
        colour = torch.from_numpy(ACTION_PALETTE[m % len(ACTION_PALETTE)]).permute(2, 0, 1)[None]
        counts = np.bincount(maps[t].flatten().numpy(), minlength=task.actions.n)
        top = np.argsort(-counts)[:3]
        share = ", ".join(f"{task.actions.names[k]} {100 * counts[k] / counts.sum():.0f}%" for k in top)
        panels.append((colour, f"t={t + 1}: {share}"[:60]))
    final = out_srgb.cpu() if out_srgb is not None else None
    if final is not None:
        panels.append((resize_long_edge(final, _PREVIEW, upscale=False).clamp(0, 1), f"result ({recipe.method.get('name', '?')})"))
    panels.append((_legend(task.actions.names, h)[..., :h, :], "actions"))
    return label(panels).to(img_srgb.device)
