"""The ``pixelrl_actions`` recipe op: PixelRL's per-pixel action maps, one per step (docs/pixelrl.md).

Layout::

    {"op": "pixelrl_actions", "task": "enhance", "actions": ["contrast x0.95", ...],
     "shape": [T, C, h, w], "maps": "<base64 of zlib of the uint8 maps, T x C x h x w>",
     "counts": [[pixels per action] per step], "upsample": "guided"}

:func:`render_actions_op` re-applies the steps to an image of any size. With ``"upsample": "nearest"``
(the default, and every op written before the key existed) each map is resized to the image (nearest
neighbour) and every pixel takes its action's result, step after step. With ``"upsample": "guided"``
(what ``retouch --method pixelrl`` writes) the steps run on a copy of the image at the maps' size and
only their *effect* is carried to the full image, as a local transform of each channel's log value
(:func:`guided_transfer`): no blocks at object edges, and leaving a pixel alone stays exact. This module
does not import :mod:`deepexposure.recipe` (which calls it); its errors are :class:`OpError`, which
the recipe reports as a ``RecipeError``.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import torch

from .tasks import TASKS, Task

__all__ = ["OpError", "UPSAMPLE", "encode_maps", "decode_maps", "actions_op", "validate_actions_op", "render_actions_op",
           "guided_transfer"]

UPSAMPLE = ("nearest", "guided")


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


def actions_op(task: Task, maps: list[torch.Tensor], upsample: str = "nearest") -> dict:
    """The ``pixelrl_actions`` op of one photo's run: ``maps`` are ``T`` tensors ``(1, C, h, w)`` or ``(1, h, w)``.

    ``upsample``: how :func:`render_actions_op` carries maps smaller than the image to it (module docstring)."""
    if upsample not in UPSAMPLE:
        raise ValueError(f"upsample must be one of {UPSAMPLE}, got {upsample!r}")
    ms = [m[0] if m.dim() == 4 else m[0][None] for m in maps]
    shape, data = encode_maps(ms)
    counts = [torch.bincount(m.flatten().long(), minlength=task.actions.n).tolist() for m in ms]
    op = {"op": "pixelrl_actions", "task": task.name, "actions": task.actions.names, "shape": shape, "maps": data, "counts": counts}
    if upsample != "nearest":  # ops without the key render as before it existed
        op["upsample"] = upsample
    return op


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
    if op.get("upsample", "nearest") not in UPSAMPLE:
        raise OpError(f"{where}: upsample must be one of {', '.join(UPSAMPLE)}, got {op.get('upsample')!r}")
    if op.get("upsample") == "guided" and task.actions.channels == 1:
        raise OpError(f"{where}: upsample 'guided' is for the enhance task (colour actions), not {task.name}")
    counts = op.get("counts")
    if counts is not None and not (isinstance(counts, list) and len(counts) == T):
        raise OpError(f"{where}: counts must be a list with one entry per step")
    maps = decode_maps(shape, op["maps"], where)
    if int(maps.max()) >= task.actions.n:
        raise OpError(f"{where}: an action index is >= {task.actions.n}, the number of {task.name} actions")


def guided_transfer(small: torch.Tensor, small_out: torch.Tensor, full: torch.Tensor, radius: int = 2,
                    eps: float = 1e-3, delta: float = 1 / 255) -> torch.Tensor:
    """Carry an edit made on a small copy to the full image as a local transform per channel.

    In log values ``l = log(x + delta)``, for each channel ``c`` the guided filter (He et al., eqs. 5,
    6, 8) fits the edit's residual ``r_c = l(small_out_c) - l(small_c)`` locally as
    ``r_c ~ A_c * l(small_c) + B_c`` on the small grid; ``A, B`` are bilinearly upsampled (the fast
    guided filter, He and Sun 2015) and applied to the full image:
    ``out_c = full_c + (full_c + delta) * expm1(A_c * l(full_c) + B_c)``. Gains (brightness, channel
    pairs) are offsets in log values and carry over exactly, texture included; contrast and saturation
    are approximated by the local slope ``A``; edges follow the full image; a region the edit left
    alone (``r = 0``) stays exactly unchanged.

    Args:
        small: ``(B, 3, h, w)`` the small copy, values in [0, 1].
        small_out: ``(B, 3, h, w)`` the edited small copy.
        full: ``(B, 3, H, W)`` the image to edit.
        radius: box radius of the fit, pixels of the small grid.
        eps: the guided filter's regulariser (squared log units).
        delta: offset before the log (dark pixels are not amplified without bound).
    Returns:
        ``(B, 3, H, W)`` in [0, 1].
    """
    from ..masks import _lerp_axis, guided_coefficients

    if small.shape != small_out.shape or small.shape[:2] != full.shape[:2]:
        raise ValueError(f"small {tuple(small.shape)}, small_out {tuple(small_out.shape)} and full {tuple(full.shape)} do not match")
    H, W = full.shape[-2:]
    out = []
    for c in range(small.shape[1]):
        g = torch.log(small[:, c : c + 1].clamp(min=0) + delta)
        r = torch.log(small_out[:, c : c + 1].clamp(min=0) + delta) - g
        a, b = guided_coefficients(g, r, radius, eps)
        a = _lerp_axis(_lerp_axis(a, H, -2), W, -1)
        b = _lerp_axis(_lerp_axis(b, H, -2), W, -1)
        f = full[:, c : c + 1]
        out.append(f + (f + delta) * torch.expm1(a * torch.log(f.clamp(min=0) + delta) + b))
    return torch.cat(out, 1).clamp(0.0, 1.0)


def _run_maps(task: Task, maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    H, W = x.shape[-2:]
    T, C = maps.shape[:2]
    if task.actions.channels == 1:
        x = x[:, :1] if C == 1 else x
        x = x.reshape(-1, 1, H, W)
        for t in range(T):
            x = task.actions.apply(x, maps[t].long())
        x = x.reshape(1, -1, H, W)
        return x.expand(1, 3, H, W).contiguous() if C == 1 else x
    for t in range(T):
        x = task.actions.apply(x, maps[t].long())
    return x


@torch.no_grad()
def render_actions_op(op: dict, img_srgb: torch.Tensor) -> torch.Tensor:
    """Re-apply a ``pixelrl_actions`` op to ``img_srgb (1, 3, H, W)`` (module docstring): maps of another
    size are resized to ``H x W`` (``upsample`` "nearest"), or run on a copy at their size whose effect
    :func:`guided_transfer` carries to the image ("guided")."""
    task = Task.make(op["task"])
    maps = decode_maps(op["shape"], op["maps"]).to(img_srgb.device)
    H, W = img_srgb.shape[-2:]
    h, w = maps.shape[-2:]
    if (h, w) == (H, W):
        return _run_maps(task, maps, img_srgb)
    if op.get("upsample", "nearest") == "guided":
        from ..resize import resize_exact

        small = resize_exact(img_srgb, (h, w))
        return guided_transfer(small, _run_maps(task, maps, small), img_srgb)
    maps = torch.nn.functional.interpolate(maps.float(), size=(H, W), mode="nearest").to(torch.uint8)
    return _run_maps(task, maps, img_srgb)
