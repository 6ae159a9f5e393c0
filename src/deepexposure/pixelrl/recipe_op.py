"""The ``pixelrl_actions`` recipe op: PixelRL's per-pixel action maps, one per step (docs/pixelrl.md).

Layout::

    {"op": "pixelrl_actions", "task": "enhance", "actions": ["contrast x0.95", ...],
     "shape": [T, C, h, w], "maps": "<base64 of zlib of the uint8 maps, T x C x h x w>",
     "counts": [[pixels per action] per step]}

:func:`render_actions_op` re-applies the steps to an image of any size: each map is resized to the
image (nearest neighbour) and every pixel takes its action's result, step after step. This module
does not import :mod:`deepexposure.recipe` (which calls it); its errors are :class:`OpError`, which
the recipe reports as a ``RecipeError``.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import torch

from .tasks import TASKS, Task

__all__ = ["OpError", "encode_maps", "decode_maps", "actions_op", "validate_actions_op", "render_actions_op"]


class OpError(ValueError):
    """A malformed ``pixelrl_actions`` op (one line naming where)."""


def encode_maps(maps: list[torch.Tensor]) -> tuple[list[int], str]:
    """``T`` maps ``(C, h, w)`` uint8 -> ``(shape [T, C, h, w], base64(zlib(bytes)))``."""
    arr = torch.stack([m.to(torch.uint8).cpu() for m in maps]).numpy()
    return list(arr.shape), base64.b64encode(zlib.compress(arr.tobytes(), 9)).decode("ascii")


def decode_maps(shape: list[int], data: str, where: str = "recipe") -> torch.Tensor:
    """Inverse of :func:`encode_maps` -> ``(T, C, h, w)`` uint8; :class:`OpError` if it does not fit ``shape``."""
    n = int(np.prod(shape))
    try:
        d = zlib.decompressobj()
        raw = d.decompress(base64.b64decode(data.encode("ascii"), validate=True), n + 1)
    except (ValueError, zlib.error) as e:
        raise OpError(f"{where}: maps are not base64 zlib data ({e})") from None
    if len(raw) != n or d.unconsumed_tail:
        raise OpError(f"{where}: maps hold {len(raw)}{'+' if d.unconsumed_tail else ''} bytes, shape {shape} needs {n}")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy())


def actions_op(task: Task, maps: list[torch.Tensor]) -> dict:
    """The ``pixelrl_actions`` op of one photo's run: ``maps`` are ``T`` tensors ``(1, C, h, w)`` or ``(1, h, w)``."""
    ms = [m[0] if m.dim() == 4 else m[0][None] for m in maps]
    shape, data = encode_maps(ms)
    counts = [torch.bincount(m.flatten().long(), minlength=task.actions.n).tolist() for m in ms]
    return {"op": "pixelrl_actions", "task": task.name, "actions": task.actions.names, "shape": shape, "maps": data, "counts": counts}


def validate_actions_op(op: dict, where: str, max_bytes: int = 4 << 20) -> None:
    """Check a ``pixelrl_actions`` op: task, action names of this build, shape bounds, the maps' size and values."""
    if op.get("task") not in TASKS:
        raise OpError(f"{where}: task must be one of {', '.join(TASKS)}, got {op.get('task')!r}")
    task = Task.make(op["task"])
    if op.get("actions") != task.actions.names:
        raise OpError(f"{where}: actions must be this build's {task.name} actions {task.actions.names}")
    shape = op.get("shape")
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in shape)):
        raise OpError(f"{where}: shape must be [steps, channels, height, width] of positive integers, got {shape!r}")
    T, C, h, w = shape
    if T > 64 or C not in ((1, 3) if task.actions.channels == 1 else (1,)) or h * w * T * C > 8 * max_bytes * 64:
        raise OpError(f"{where}: shape {shape} out of range (at most 64 steps; channels 1 or 3 for grey tasks, 1 for enhance)")
    if not isinstance(op.get("maps"), str):
        raise OpError(f"{where}: maps must be a base64 string")
    counts = op.get("counts")
    if counts is not None and not (isinstance(counts, list) and len(counts) == T):
        raise OpError(f"{where}: counts must be a list with one entry per step")
    maps = decode_maps(shape, op["maps"], where)
    if int(maps.max()) >= task.actions.n:
        raise OpError(f"{where}: an action index is >= {task.actions.n}, the number of {task.name} actions")


@torch.no_grad()
def render_actions_op(op: dict, img_srgb: torch.Tensor) -> torch.Tensor:
    """Re-apply a ``pixelrl_actions`` op to ``img_srgb (1, 3, H, W)``: maps resized (nearest) to ``H x W``."""
    task = Task.make(op["task"])
    maps = decode_maps(op["shape"], op["maps"]).to(img_srgb.device)
    H, W = img_srgb.shape[-2:]
    if tuple(maps.shape[-2:]) != (H, W):
        maps = torch.nn.functional.interpolate(maps.float(), size=(H, W), mode="nearest").to(torch.uint8)
    T, C = maps.shape[:2]
    if task.actions.channels == 1:
        x = img_srgb[:, :1] if C == 1 else img_srgb
        x = x.reshape(-1, 1, H, W)
        for t in range(T):
            x = task.actions.apply(x, maps[t].long())
        x = x.reshape(1, -1, H, W)
        return x.expand(1, 3, H, W).contiguous() if C == 1 else x
    x = img_srgb
    for t in range(T):
        x = task.actions.apply(x, maps[t].long())
    return x
