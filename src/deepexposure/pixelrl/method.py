"""PixelRL as a retouching method (its recipe op: :mod:`deepexposure.pixelrl.recipe_op`).

``deepexposure retouch --method pixelrl`` runs the enhancement agents (Table VII) on a working copy
of the photo (long edge ``work_size``: the scale the model was trained at, or 512, the paper's test
images being 384x512) and
records what every pixel did at every step (a ``pixelrl_actions`` op, ``"upsample": "guided"``: the
edit of the working copy reaches the full photo as a local per-channel transform, guided filter). ``retouch``
renders the recipe it writes, so ``apply`` on the same photo gives the same pixels. ``denoise`` and
``restore`` plan at full resolution with the same op (``C`` = 1 for a grey photo, 3 for colour).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..recipe import Recipe
from .model import choose_model, load_model, load_models, model_info, run_agent
from .recipe_op import actions_op

__all__ = ["PixelRLMethod", "PixelRLRestorer"]


def _is_gray(img_srgb: torch.Tensor) -> bool:
    return bool((img_srgb.amax(1) - img_srgb.amin(1)).max() < 1e-6)


class PixelRLMethod:
    """``--method pixelrl``: local colour and exposure enhancement by the PixelRL agents (Table VII).

    ``model``: a model folder or training run (default: the shipped ``pixelrl-enhance``);
    ``work_size``: long edge the agents look at (their edit is carried to the full photo); default the
    model's ``work_size`` (the scale of its training views, written by the trainer), else 512."""

    name = "pixelrl"

    def __init__(self, model: str | Path | None = None, work_size: int | None = None, device: str = "cpu"):
        self.model = load_model(model, "enhance", device)
        if self.model.config["task"] != "enhance":
            raise ValueError(f"{self.model.path}: a {self.model.config['task']} model; --method pixelrl needs an enhance model")
        self.work_size = int(work_size or self.model.config.get("work_size") or 512)
        self.device = device

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        from ..resize import resize_long_edge

        small = resize_long_edge(img_srgb, self.work_size, upscale=False).to(self.device)
        run = run_agent(self.model.net, self.model.task, small, tile=512)
        big = tuple(small.shape[-2:]) != tuple(img_srgb.shape[-2:])
        return Recipe(ops=[actions_op(self.model.task, run.maps, upsample="guided")], method=model_info(self.model),
                      notes=[f"PixelRL agents acted on a {small.shape[-1]}x{small.shape[-2]} working copy"
                             + ("; their edit is carried to the full photo as a local per-channel transform "
                                "(guided filter)" if big else "")])


class PixelRLRestorer:
    """The method behind ``deepexposure denoise`` / ``restore``: the agents act on the full-resolution photo
    (grey photos as one channel, colour photos channel by channel), ``tile`` px at a time. Without
    ``model``, ``denoise`` chooses per photo among the shipped Gaussian denoisers by the photo's
    estimated noise level (:func:`~deepexposure.pixelrl.model.choose_model`)."""

    def __init__(self, task: str, model: str | Path | None = None, device: str = "cpu", tile: int = 1024):
        self.models = load_models(model, task, device)
        for m in self.models:
            if m.config["task"] not in ("denoise", "restore"):
                raise ValueError(f"{m.path}: a {m.config['task']} model; {task} needs a denoise or restore model")
        self.name = f"pixelrl-{task}"
        self.device, self.tile = device, tile

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        x = img_srgb.to(self.device)
        if _is_gray(x):
            x = x[:, :1]
        model, sigma = choose_model(self.models, x)
        run = run_agent(model.net, model.task, x, tile=self.tile)
        notes = [] if sigma is None else [f"estimated noise sigma {sigma:.1f} (of 255): the agents trained at {model.config.get('noise')}"]
        return Recipe(ops=[actions_op(model.task, run.maps)], method=model_info(model), notes=notes)
