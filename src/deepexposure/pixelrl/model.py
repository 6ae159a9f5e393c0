"""PixelRL model folders and inference.

A model folder is the project's one format (:func:`deepexposure.pretrained.save_pretrained`):
``config.json`` (``method: "pixelrl"``, the task, its action names, ``t_max``, the network's
:class:`~deepexposure.pixelrl.net.PixelRLNetConfig` under ``"network"``, training information) and
``model.safetensors`` (the network; the reward-map filter ``w`` is a training-only parameter and is not
shipped). :func:`load_model` checks both files before it allocates anything.

Inference (:func:`run_agent`) is greedy, as in the authors' code: every pixel takes its most
probable action, ``t_max`` times; it returns the result and the action map of every step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..modelfiles import CONFIG_NAME, MODEL_FORMAT, WEIGHTS_NAME, ModelFileError, read_json_object, read_state
from ..pretrained import save_pretrained
from .a2c import sample_actions
from .net import PixelRLNet, PixelRLNetConfig
from .tasks import TASKS, Task

__all__ = ["PixelRLModel", "save_model", "load_model", "load_models", "choose_model", "trained_sigma", "run_agent", "AgentRun",
           "WEIGHTS_DIR", "default_model_dir", "SHIPPED_DENOISERS"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
_LIMITS = {"channels": (1, 256), "t_max": (1, 64)}


#: the shipped Gaussian denoisers, one per noise level (sigma on 0..255), as the paper trains them
SHIPPED_DENOISERS = {15: "pixelrl-denoise-gaussian15", 25: "pixelrl-denoise-gaussian25", 50: "pixelrl-denoise-gaussian50"}


def default_model_dir(task: str) -> Path:
    """The shipped model of ``task``: ``weights/pixelrl-enhance`` / ``pixelrl-restore``, or for
    ``denoise`` the sigma-25 member of :data:`SHIPPED_DENOISERS` (also used for ``restore`` should no
    restoration model be shipped; :func:`load_models` gives the whole set)."""
    d = WEIGHTS_DIR / f"pixelrl-{task}"
    if task == "denoise" or (task == "restore" and not (d / WEIGHTS_NAME).exists()):
        return WEIGHTS_DIR / SHIPPED_DENOISERS[25]
    return d


def load_models(model: str | Path | None, task: str, map_location: str | torch.device = "cpu") -> list[PixelRLModel]:
    """The models ``deepexposure denoise`` chooses from (:func:`choose_model`): the shipped set of
    Gaussian denoisers when ``model`` is None and ``task`` is ``denoise``, else ``[load_model(...)]``."""
    if model is None and task == "denoise":
        return [load_model(WEIGHTS_DIR / name, task, map_location) for name in SHIPPED_DENOISERS.values()]
    return [load_model(model, task, map_location)]


def trained_sigma(m: PixelRLModel) -> float | None:
    """The Gaussian noise level a denoiser was trained at (the middle of its range), or None."""
    from .tasks import parse_noise

    try:
        n = parse_noise(str(m.config.get("noise")))
    except ValueError:
        return None
    return 0.5 * (n.lo + n.hi) if n.kind == "gaussian" else None


def choose_model(models: list[PixelRLModel], state: torch.Tensor) -> tuple[PixelRLModel, float | None]:
    """The model for a photo ``state (B, C, H, W)``: with several Gaussian denoisers, the one trained at
    the level nearest to the photo's estimated noise (:func:`~deepexposure.pixelrl.tasks.noise_sigma`,
    the median over images); returns it and that estimate (None with one model)."""
    if len(models) == 1:
        return models[0], None
    from .tasks import noise_sigma

    sigma = float(noise_sigma(state).median())
    levels = [trained_sigma(m) for m in models]
    if any(lv is None for lv in levels):
        raise ValueError("choose_model needs Gaussian denoisers with a trained noise level each")
    best = min(range(len(models)), key=lambda k: abs(float(levels[k]) - sigma))  # type: ignore[arg-type]
    return models[best], sigma


@dataclass
class PixelRLModel:
    """A loaded model: folder, checked ``config`` and the network (eval mode)."""

    path: Path | None
    config: dict[str, Any]
    net: PixelRLNet

    @property
    def task(self) -> Task:
        return Task.make(self.config["task"], int(self.config["t_max"]))


def save_model(directory: str | Path, net: PixelRLNet, task: Task, info: dict | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` for ``net`` trained on ``task``."""
    cfg = {"method": "pixelrl", "task": task.name, "t_max": task.t_max, "actions": task.actions.names, **(info or {})}
    return save_pretrained(directory, net, cfg)


def _check_config(d: dict, where: str) -> tuple[dict, PixelRLNetConfig]:
    if d.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{where}: not a deepexposure model config (format={d.get('format')!r})")
    if d.get("method") != "pixelrl":
        raise ModelFileError(f"{where}: not a pixelrl model (method={d.get('method')!r})")
    if d.get("task") not in TASKS:
        raise ModelFileError(f"{where}: task must be one of {', '.join(TASKS)}, got {d.get('task')!r}")
    t = d.get("t_max")
    lo, hi = _LIMITS["t_max"]
    if isinstance(t, bool) or not isinstance(t, int) or not lo <= t <= hi:
        raise ModelFileError(f"{where}: t_max must be an integer in [{lo}, {hi}], got {t!r}")
    task = Task.make(d["task"], t)
    if d.get("actions") != task.actions.names:
        raise ModelFileError(f"{where}: actions {d.get('actions')!r} are not this build's {task.name} actions {task.actions.names}")
    net = d.get("network")
    if not isinstance(net, dict):
        raise ModelFileError(f"{where}: 'network' must be an object")
    known = {f.name for f in fields(PixelRLNetConfig)}
    unknown = [k for k in net if k not in known]
    if unknown:
        raise ModelFileError(f"{where}: unknown key {unknown[0]!r} in 'network' (known: {', '.join(sorted(known))})")
    ch = net.get("channels", 64)
    if isinstance(ch, bool) or not isinstance(ch, int) or not _LIMITS["channels"][0] <= ch <= _LIMITS["channels"][1]:
        raise ModelFileError(f"{where}: network.channels must be an integer in {list(_LIMITS['channels'])}, got {ch!r}")
    if net.get("in_channels", task.in_channels) != task.in_channels or net.get("n_actions", task.actions.n) != task.actions.n:
        raise ModelFileError(f"{where}: network in_channels/n_actions do not fit the {task.name} task "
                             f"({task.in_channels} input planes, {task.actions.n} actions)")
    if not isinstance(net.get("conv_gru", True), bool):
        raise ModelFileError(f"{where}: network.conv_gru must be true or false")
    ws = d.get("work_size")
    if ws is not None and (isinstance(ws, bool) or not isinstance(ws, int) or not 16 <= ws <= 8192):
        raise ModelFileError(f"{where}: work_size must be an integer in [16, 8192], got {ws!r}")
    return d, PixelRLNetConfig(**net)


def load_model(model: str | Path | None, task: str, map_location: str | torch.device = "cpu") -> PixelRLModel:
    """Load the model folder ``model`` (a training run's ``RUN/model`` too; None/'default': the shipped
    one of ``task``). One-line :class:`~deepexposure.modelfiles.ModelFileError` for a bad file,
    ``FileNotFoundError`` for a folder without a model."""
    from ..pretrained import resolve_model_dir

    directory = resolve_model_dir(model, default_model_dir(task))
    if not (directory / WEIGHTS_NAME).exists():
        raise FileNotFoundError(f"{directory}: no pixelrl model here ({WEIGHTS_NAME} missing)")
    cfg_path = directory / CONFIG_NAME
    d, net_cfg = _check_config(read_json_object(cfg_path), str(cfg_path))
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in PixelRLNet(net_cfg).state_dict().items()}
    state = read_state(directory / WEIGHTS_NAME, shapes, map_location)
    net = PixelRLNet(net_cfg)
    net.load_state_dict(state, strict=True)
    return PixelRLModel(directory, d, net.to(map_location).eval())


@dataclass
class AgentRun:
    """What :func:`run_agent` did: the result ``(B, C, H, W)`` and one action map ``(B, H, W)`` uint8 per step."""

    out: torch.Tensor
    maps: list[torch.Tensor]

    def counts(self, n_actions: int) -> list[list[int]]:
        """Pixels per action, per step (the paper's Fig. 2)."""
        return [torch.bincount(m.flatten().long(), minlength=n_actions).tolist() for m in self.maps]


@torch.no_grad()
def run_agent(net: PixelRLNet | None, task: Task, state: torch.Tensor, *, greedy: bool = True,
              generator: torch.Generator | None = None, t_max: int | None = None, tile: int = 0) -> AgentRun:
    """Run the agents for ``t_max`` steps (the task's by default) from ``state (B, C, H, W)`` in [0, 1].

    Grey-level tasks take ``C`` = 1 or 3 (channels are processed independently, folded into the batch);
    ``net=None`` is the paper's "random agents" baseline (uniform actions from ``generator``).
    ``tile`` > 0 runs the network on overlapping tiles of that side (a 33-pixel margin is more than
    the receptive field, so the result does not change) to bound memory on large photos.
    """
    B, C, H, W = state.shape
    grey = task.actions.channels == 1
    x = state.reshape(B * C, 1, H, W) if grey else state
    h: torch.Tensor | None = None
    maps: list[torch.Tensor] = []
    for _ in range(t_max or task.t_max):
        if net is None:
            a = torch.randint(0, task.actions.n, (x.shape[0], H, W), generator=generator).to(x.device)
        else:
            logits, h = _policy(net, task.net_input(x), h, tile)
            a = sample_actions(logits, generator, greedy=greedy)
        maps.append(a.to(torch.uint8).reshape(B, C, H, W) if grey else a.to(torch.uint8))
        x = task.actions.apply(x, a)
    out = x.reshape(B, C, H, W) if grey else x
    return AgentRun(out, maps)


def _policy(net: PixelRLNet, inp: torch.Tensor, h: torch.Tensor | None, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    H, W = inp.shape[-2:]
    if tile <= 0 or (H <= tile and W <= tile):
        logits, _, h2 = net(inp, h)
        return logits, h2
    m = 40  # margin per side, > the per-step receptive radius (17); the convGRU state is carried per tile
    if h is None:
        h = net.initial_state(inp)
    logits = inp.new_empty(inp.shape[0], net.config.n_actions, H, W)
    h_new = torch.empty_like(h)
    step = max(1, tile - 2 * m)
    for y0 in range(0, H, step):
        for x0 in range(0, W, step):
            y1, x1 = min(H, y0 + step), min(W, x0 + step)
            ya, xa, yb, xb = max(0, y0 - m), max(0, x0 - m), min(H, y1 + m), min(W, x1 + m)
            lg, _, hh = net(inp[..., ya:yb, xa:xb], h[..., ya:yb, xa:xb])
            logits[..., y0:y1, x0:x1] = lg[..., y0 - ya: y1 - ya, x0 - xa: x1 - xa]
            h_new[..., y0:y1, x0:x1] = hh[..., y0 - ya: y1 - ya, x0 - xa: x1 - xa]
    return logits, h_new


def model_info(m: PixelRLModel) -> dict[str, Any]:
    """The recipe's ``method`` entry for a model."""
    return {"name": "pixelrl", "model": m.config.get("name"), "task": m.config["task"], "t_max": int(m.config["t_max"]),
            "network": asdict(m.net.config), "params": int(sum(math.prod(p.shape) for p in m.net.parameters()))}
