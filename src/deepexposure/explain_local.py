"""``--explain`` for local renders: the regions' masks over the photo, one panel per region, the result.

A grid of ``COLUMNS`` panels per row, readable at a glance for up to 8 regions (3 rows of 4):

- row 1 (4 or 5 panels): the original; the soft masks drawn over it (each region in its palette colour, blended by
  mask weight, numbered at its centre); a legend (colour, region, its values, its area); for
  ``local+fusion`` the local result before fusion; the result;
- then one panel per region: the photo rendered with that region's values, shown through its mask
  (the rest dimmed), framed in the region's colour and captioned with its values.

Masks are rebuilt on the preview (the same :class:`~deepexposure.masks.MaskConfig`, guided by the
preview), so they match the full-resolution ones up to the preview's resolution.
"""

from __future__ import annotations

import numpy as np
import torch

from .recipe import Recipe, render
from .resize import resize_long_edge

__all__ = ["COLUMNS", "PANEL_SIZE", "explain_local"]

#: panels per row
COLUMNS = 4
#: long edge of each panel in pixels
PANEL_SIZE = 320
_CAPTION = 36


#: colours of segments 0, 1, ... (cycled) in every explain sheet, RGB in [0, 1]
SEGMENT_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255]],
    dtype=np.float32,
) / 255.0


def _palette() -> np.ndarray:
    return SEGMENT_PALETTE


def _describe(op: dict, t: int) -> str:
    if op["op"] == "local_exposure":
        return f"{float(op['evs'][t]):+.2f} EV"
    chain = op["regions"][t]
    if not chain:
        return "no filter"
    parts = []
    for f in chain:
        p = f["params"]
        vals = ", ".join(f"{v:.2f}" for v in p[:2]) + (" .." if len(p) > 2 else "")
        parts.append(f"{f['name']}({vals})")
    return " ".join(parts)


def _region_render(op: dict, t: int, prev: torch.Tensor) -> torch.Tensor:
    """The preview with region ``t``'s values applied everywhere."""
    from .filters import apply_filter, global_exposure

    if op["op"] == "local_exposure":
        return global_exposure(prev, torch.tensor([[float(op["evs"][t])]], dtype=prev.dtype))
    y = prev
    for f in op["regions"][t]:
        y = apply_filter(f["name"], y, torch.tensor([f["params"]], dtype=prev.dtype)).clamp(0, 1)
    return y


def _grid(items: list[tuple[torch.Tensor, str, tuple[int, int, int] | None]], breaks: set[int]) -> torch.Tensor:
    """Lay panels out in rows of ``max(COLUMNS, panels before the first break)`` (a new row before each index in ``breaks``)."""
    from PIL import Image, ImageDraw

    from .io import tensor_to_uint8, uint8_to_tensor

    cols = max(COLUMNS, min(breaks, default=0))
    rows: list[list] = [[]]
    for i, it in enumerate(items):
        if (i in breaks and rows[-1]) or len(rows[-1]) == cols:
            rows.append([])
        rows[-1].append(it)
    cell_w = max(p.shape[-1] for p, _, _ in items) + 8
    cell_h = max(p.shape[-2] for p, _, _ in items) + 8 + _CAPTION
    canvas = Image.new("RGB", (cell_w * cols, cell_h * len(rows)), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        for c, (p, text, frame) in enumerate(row):
            x, y = c * cell_w + 4, r * cell_h + 4
            if frame is not None:
                draw.rectangle([x - 3, y - 3, x + p.shape[-1] + 2, y + p.shape[-2] + 2], outline=frame, width=3)
            canvas.paste(Image.fromarray(tensor_to_uint8(p)), (x, y))
            for k, line in enumerate(_wrap(text, max(12, p.shape[-1] // 6))[:2]):
                draw.text((x + 2, y + p.shape[-2] + 6 + 13 * k), line, fill=(235, 235, 235))
    return uint8_to_tensor(np.asarray(canvas))


def _wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    return lines + [cur]


def _overlay(prev: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    pal = torch.from_numpy(_palette()).to(prev)
    t = masks.shape[1]
    colours = pal[torch.arange(t) % len(pal)]  # (T, 3)
    tint = torch.einsum("bthw,tc->bchw", masks, colours)
    return 0.45 * prev + 0.55 * tint


def _number_regions(panel: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Write each region's index at the weighted centre of its mask."""
    from PIL import Image, ImageDraw

    from .io import tensor_to_uint8, uint8_to_tensor

    im = Image.fromarray(tensor_to_uint8(panel))
    draw = ImageDraw.Draw(im)
    h, w = masks.shape[-2:]
    ys = torch.arange(h, dtype=masks.dtype)[:, None]
    xs = torch.arange(w, dtype=masks.dtype)[None, :]
    for t in range(masks.shape[1]):
        m = masks[0, t]
        s = float(m.sum())
        if s <= 0:
            continue
        cy, cx = float((m * ys).sum() / s), float((m * xs).sum() / s)
        draw.rectangle([cx - 6, cy - 7, cx + 8, cy + 8], fill=(0, 0, 0))
        draw.text((cx - 3, cy - 6), str(t), fill=(255, 255, 255))
    return uint8_to_tensor(np.asarray(im))


def _legend(op: dict, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    from PIL import Image, ImageDraw

    from .io import uint8_to_tensor

    h, w = size
    im = Image.new("RGB", (w, h), (40, 40, 40))
    draw = ImageDraw.Draw(im)
    t_count = masks.shape[1]
    area = masks.mean(dim=(0, 2, 3))
    step = max(14, min(34, (h - 8) // max(1, t_count)))
    pal = (_palette() * 255).astype(int)
    for t in range(t_count):
        y = 6 + t * step
        c = tuple(int(v) for v in pal[t % len(pal)])
        draw.rectangle([8, y, 24, y + 12], fill=c)
        draw.text((32, y), f"{t}: {_describe(op, t)}  ({100 * float(area[t]):.0f}%)"[: max(10, (w - 36) // 6)], fill=(235, 235, 235))
    return uint8_to_tensor(np.asarray(im))


@torch.no_grad()
def explain_local(img_srgb: torch.Tensor, recipe: Recipe, out_srgb: torch.Tensor | None = None) -> torch.Tensor:
    """The explanation sheet of a recipe with ``local_exposure`` / ``local_filters`` ops (see the module docstring).

    Args:
        img_srgb: ``(1, 3, H, W)`` the original, sRGB in [0, 1].
        recipe: what was done.
        out_srgb: the full-resolution result (recomputed on the preview if omitted).
    Returns:
        ``(1, 3, h, w)`` sRGB picture.
    """
    from .local import LOCAL_OPS, local_exposure_render, region_masks_for

    prev = resize_long_edge(img_srgb, PANEL_SIZE, upscale=False).clamp(0, 1)
    pal = (_palette() * 255).astype(int)
    items: list[tuple[torch.Tensor, str, tuple[int, int, int] | None] | None] = [(prev, "original", None)]
    breaks: set[int] = set()
    current = prev
    for op in recipe.ops:
        if op["op"] not in LOCAL_OPS:
            current = render(Recipe(ops=[op]), current)
            items.append((current, op.get("name", op["op"]), None))
            continue
        masks = region_masks_for(recipe, op, current).full(current)
        t_count = masks.shape[1]
        items.append((_number_regions(_overlay(current, masks), masks), f"{t_count} regions (soft masks)", None))
        items.append((_legend(op, masks, (int(current.shape[-2]), int(current.shape[-1]))), f"{op['op']}: values per region", None))
        if op["op"] == "local_exposure" and op.get("fuse_original"):
            local = local_exposure_render(current, masks, torch.tensor([[float(e) for e in op["evs"]]]))
            items.append((local, "local, before fusion with the original", None))
        region_panels: list[tuple[torch.Tensor, str, tuple[int, int, int] | None] | None] = []
        for t in range(t_count):
            m = masks[:, t : t + 1]
            shown = m * _region_render(op, t, current) + (1 - m) * (0.25 * current + 0.1)
            region_panels.append((shown, f"region {t}: {_describe(op, t)}", (int(pal[t % len(pal)][0]), int(pal[t % len(pal)][1]), int(pal[t % len(pal)][2]))))
        current = render(Recipe(ops=[op], segment_map=recipe.segment_map), current)
        breaks.add(len(items) + 1)  # region panels start on a new row, after the result
        items.append(None)  # placeholder for the result, filled below
        items.extend(region_panels)
        break  # one local op per sheet; later ops show in the result
    final = resize_long_edge(out_srgb, PANEL_SIZE, upscale=False).clamp(0, 1) if out_srgb is not None else current
    res = (final, f"result ({recipe.method.get('name', '?')}, {recipe.method.get('render', 'local')})", None)
    if any(it is None for it in items):
        items = [res if it is None else it for it in items]
    else:
        items.append(res)
    return _grid([it for it in items if it is not None], breaks)
