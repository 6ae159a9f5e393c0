"""PixelRL training (section VI-A2, Algorithm 1): ``deepexposure train --algo pixelrl --task ...``.

One episode per step: a mini-batch of ``batch_size`` random ``image_size`` crops (random photo,
crop, left-right flip and rotation by a multiple of 90 degrees) is degraded by the task
(:mod:`.tasks`); the agents act ``t_max`` times, sampling from their policies; the losses of
:mod:`.a2c` are back-propagated through the episode (the convGRU state included) and Adam takes one
step. The learning rate follows the paper's poly schedule ``lr (1 - episode / steps)^0.9``. Stepwise
training: reward map convolution (the learnable 33x33 ``w``, identity at the start) is switched on
after ``rmc_start * steps`` episodes; before that the return is the plain pixel-wise one.

Shared with the other agents (:mod:`deepexposure.train`): :func:`~deepexposure.train.seed_everything`
before the network is built, one ``torch.Generator`` for every draw (its state is in each checkpoint,
so ``--resume`` continues bit for bit), :class:`~deepexposure.train.Checkpoints` (rotation, SHA-256
verification, falling back to an older checkpoint), :class:`~deepexposure.train.RunLog`
(``log.csv``), ``--device``. The run folder has the layout of the other agents' runs; ``RUN/model``
is the model folder (:mod:`.model`).

Not available here: the paper initialises the trunk from a pretrained denoising CNN (Zhang et al.
2017); no weights are downloaded, so training starts from scratch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..config import ConfigError, check_config
from ..train import Checkpoints, RunLog, RunSettings, optimizer_state_from_tensors, optimizer_state_to_tensors, resolve_device
from .a2c import RewardMapConv, a2c_losses, policy_terms, returns, sample_actions
from .model import save_model
from .net import PixelRLNet, PixelRLNetConfig
from .tasks import TASKS, Task, add_noise, overlay_text, parse_noise, to_gray

__all__ = ["PixelRLConfig", "PixelRLTrainer", "PhotoCrops", "PAIRED_KINDS"]

#: what ``enhance`` trains on: the benchmark's exposure model (deepexposure.synth), as the DeepExposure agent
PAIRED_KINDS = "default"


@dataclass
class PixelRLConfig(RunSettings):
    """Settings of a PixelRL run (``deepexposure train --algo pixelrl``); defaults are the paper's unless noted."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"task": TASKS}
    """allowed values of the string options."""

    task: str = "denoise"
    """denoise (Table I actions, eq. 19), restore (text overlays, same actions) or enhance (Table VII, eq. 21)."""
    noise: str = "gaussian:5-50"
    """with --task denoise: the noise trained on, KIND:LEVEL or KIND:LO-HI (a level drawn per image):
    gaussian (sigma on 0..255), poisson (peak intensity), saltpepper (density)."""
    steps: int = 30000
    """episodes (the paper: 30000)."""
    batch_size: int = 64
    """crops per episode (the paper: 64)."""
    image_size: int = 70
    """side of the random training crops (the paper: 70)."""
    photo_size: int = 512
    """long edge (px) the training photos are decoded at before cropping (not in the paper)."""
    t_max: int = 0
    """episode length (0: the task's, 5 / 15 / 10 as in the paper)."""
    gamma: float = 0.95
    """discount factor (the authors' code)."""
    lr: float = 1e-3
    """Adam learning rate at the start of the poly schedule."""
    beta: float = 0.01
    """weight of the entropy regularisation (A3C's beta)."""
    value_coef: float = 0.5
    """weight of the value loss (eq. 14; also of the second term of eq. 17 for w)."""
    rmc: bool = True
    """use reward map convolution (eqs. 12-18) in the second stage of the stepwise schedule."""
    rmc_start: float = 0.5
    """fraction of --steps after which reward map convolution is switched on (stepwise training)."""
    rmc_size: int = 33
    """side of the reward-map filter w (33: the network's receptive field)."""
    channels: int = 64
    """channels of every hidden layer of the network (Fig. 1: 64; smaller trains faster on a CPU)."""
    conv_gru: bool = True
    """the convGRU in the policy head (the paper's '+convGRU')."""

    def __post_init__(self):
        check_config(self)
        if self.task not in TASKS:
            raise ConfigError("task", f"one of {', '.join(TASKS)}", self.task)
        for name in ("steps", "t_max", "channels"):
            if getattr(self, name) < (1 if name != "t_max" else 0):
                raise ConfigError(name, ">= 1" if name != "t_max" else ">= 0", getattr(self, name))
        if not 0.0 <= self.rmc_start <= 1.0:
            raise ConfigError("rmc_start", "in [0, 1]", self.rmc_start)
        if self.rmc_size < 1 or self.rmc_size % 2 == 0:
            raise ConfigError("rmc_size", "an odd number >= 1", self.rmc_size)
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError("gamma", "in [0, 1]", self.gamma)
        if self.task == "denoise":
            try:
                parse_noise(self.noise)
            except ValueError as e:
                raise ConfigError("noise", "KIND:LEVEL or KIND:LO-HI", self.noise) from e


class PhotoCrops:
    """Clean photos in memory (grey or RGB, long edge ``photo_size``) and seeded random crops of them."""

    def __init__(self, paths: list[Path], photo_size: int, gray: bool, cache_dir: Path | None = None,
                 warn: Callable[[str], None] | None = None):
        from ..data import load_image_at
        from ..io import ImageReadError

        self.images: list[torch.Tensor] = []
        self.paths: list[Path] = []
        for p in paths:
            try:
                img = load_image_at(Path(p), photo_size, cache_dir)
            except (ImageReadError, OSError) as e:
                if warn:
                    warn(f"{p}: skipped ({e})")
                continue
            self.images.append(to_gray(img) if gray else img)
            self.paths.append(Path(p))
        if not self.images:
            raise ValueError("no readable training photos")

    def sample(self, n: int, size: int, g: torch.Generator) -> torch.Tensor:
        """``(n, C, size, size)`` crops: photo, position, flip and rotation drawn from ``g``."""
        out = []
        for _ in range(n):
            img = self.images[int(torch.randint(0, len(self.images), (1,), generator=g))]
            h, w = img.shape[-2:]
            s = min(size, h, w)
            y = int(torch.randint(0, h - s + 1, (1,), generator=g))
            x = int(torch.randint(0, w - s + 1, (1,), generator=g))
            c = img[..., y: y + s, x: x + s]
            if s < size:
                c = torch.nn.functional.interpolate(c, size=(size, size), mode="bilinear", align_corners=False)
            if bool(torch.rand(1, generator=g) < 0.5):
                c = c.flip(-1)
            c = torch.rot90(c, int(torch.randint(0, 4, (1,), generator=g)), dims=(-2, -1))
            out.append(c)
        return torch.cat(out).contiguous()


class PixelRLTrainer:
    """Runs Algorithm 1 (A2C: one thread) for ``cfg.steps`` episodes in ``run_dir``.

    ``data``: a :class:`PhotoCrops` (denoise, restore) or a :class:`deepexposure.pairs.SyntheticPairs`
    (enhance). ``extra_config`` is written into ``RUN/config.json`` beside the settings.
    """

    LOG_FIELDS = ("episode_reward", "policy_loss", "value_loss", "entropy", "err_in", "err_out", "rmc", "w_centre", "lr")

    def __init__(self, cfg: PixelRLConfig, data: Any, run_dir: str | Path, extra_config: dict | None = None,
                 progress: bool = False, warn: Callable[[str], None] = print):
        self.cfg, self.data, self.run_dir = cfg, data, Path(run_dir)
        self.task = Task.make(cfg.task, cfg.t_max)
        self.noise = parse_noise(cfg.noise) if cfg.task == "denoise" else None
        self.device = resolve_device(cfg.device)
        self.net = PixelRLNet(PixelRLNetConfig(self.task.in_channels, self.task.actions.n, cfg.channels, cfg.conv_gru)).to(self.device)
        self.w = RewardMapConv(cfg.rmc_size).to(self.device)
        self.opt = torch.optim.Adam(list(self.net.parameters()) + list(self.w.parameters()), lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.extra_config = dict(extra_config or {})
        self.progress, self.warn = progress, warn
        self.ckpts = Checkpoints(self.run_dir, cfg.keep_checkpoints, required=("state.safetensors", "net.safetensors"))
        self.rmc_from = int(round(cfg.rmc_start * cfg.steps)) if cfg.rmc else cfg.steps + 1

    # -- one episode ---------------------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s0, target)`` of the next episode, each ``(B, C, S, S)`` on the device."""
        c = self.cfg
        if self.task.name == "enhance":
            inp, ref = self.data.batch(self.step, c.batch_size)
            return inp.to(self.device), ref.to(self.device)
        clean = self.data.sample(c.batch_size, c.image_size, self.gen)
        noisy = add_noise(clean, self.noise, self.gen) if self.noise is not None else overlay_text(clean, self.gen)
        return noisy.to(self.device), clean.to(self.device)

    def train_one(self) -> dict[str, float]:
        """One episode and one Adam step (Algorithm 1); returns the log row."""
        c, task = self.cfg, self.task
        lr = c.lr * (1.0 - self.step / c.steps) ** 0.9
        for grp in self.opt.param_groups:
            grp["lr"] = lr
        s, target = self.batch()
        target_lab = None
        if task.name == "enhance":
            from ..metrics import srgb_to_lab

            target_lab = srgb_to_lab(target)
        s0 = s
        h = None
        logps, values, ents, rewards = [], [], [], []
        self.net.train()
        for _ in range(task.t_max):
            logits, v, h = self.net(task.net_input(s), h)
            a = sample_actions(logits, self.gen)
            logp, ent = policy_terms(logits, a)
            with torch.no_grad():
                s_next = task.actions.apply(s, a)
                r = task.reward(s, s_next, target, target_lab)
            logps.append(logp)
            values.append(v)
            ents.append(ent)
            rewards.append(r)
            s = s_next
        use_rmc = self.step >= self.rmc_from
        rets = returns(rewards, c.gamma, None, self.w if use_rmc else None)
        L = a2c_losses(logps, values, ents, rets, c.value_coef, c.beta)
        self.opt.zero_grad(set_to_none=True)
        L.total.backward()
        self.opt.step()
        episode = self.step
        self.step += 1
        with torch.no_grad():
            disc = sum(c.gamma**k * r.mean() for k, r in enumerate(rewards))
            err = (lambda x: float((x - target).pow(2).mean()) * 255**2) if task.name != "enhance" else (
                lambda x: float(task.reward(x, target, target, target_lab).mean()))
        return {"step": episode, "phase": "pixelrl", "episode_reward": float(disc), "policy_loss": float(L.policy.detach()),
                "value_loss": float(L.value.detach()), "entropy": -float(L.entropy.detach()) / task.t_max, "err_in": err(s0), "err_out": err(s),
                "rmc": int(use_rmc), "w_centre": float(self.w.weight.detach()[0, 0, c.rmc_size // 2, c.rmc_size // 2]), "lr": lr}

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        from safetensors.torch import save as st_save

        from ..atomic import atomic_write_bytes
        from ..train import _sha256

        tmp, final = self.ckpts.staging(self.step)
        net_state = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        net_state["rmc.weight"] = self.w.weight.detach().cpu().contiguous()
        atomic_write_bytes(tmp / "net.safetensors", st_save(net_state), overwrite=True)
        tensors, meta = optimizer_state_to_tensors(self.opt, "opt.adam")
        tensors["rng"] = self.gen.get_state()
        atomic_write_bytes(tmp / "state.safetensors", st_save(tensors), overwrite=True)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        state = {"step": self.step, "optimizers": {"adam": meta}, "files": files}
        atomic_write_bytes(tmp / "state.json", json.dumps(state).encode(), overwrite=True)
        return self.ckpts.publish(tmp, final)

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file

        net_state = load_file(str(path / "net.safetensors"))
        self.net.load_state_dict({k[4:]: v for k, v in net_state.items() if k.startswith("net.")}, strict=True)
        self.w.weight.data.copy_(net_state["rmc.weight"])
        tensors = load_file(str(path / "state.safetensors"))
        state = json.loads((path / "state.json").read_text())
        optimizer_state_from_tensors(self.opt, tensors, state["optimizers"]["adam"])
        self.gen.set_state(tensors["rng"])
        self.step = int(state["step"])

    def export_model(self) -> Path:
        info = {"name": self.run_dir.name, "trained_steps": self.step, "seed": self.cfg.seed,
                "noise": self.cfg.noise if self.task.name == "denoise" else None,
                "training": {k: v for k, v in asdict(self.cfg).items() if k not in ("threads", "device", "log_every", "sample_every")}}
        return save_model(self.run_dir / "model", self.net, self.task, info)

    def config_dict(self) -> dict:
        return {"train": asdict(self.cfg), "agent": {}, **self.extra_config}

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> Path:
        """Train to ``cfg.steps`` episodes (continuing the newest usable checkpoint with ``resume``)."""
        from tqdm import tqdm

        from ..atomic import atomic_write_bytes
        from ..train import CheckpointError

        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            path, bad = self.ckpts.find_usable()
            try:
                self.load_checkpoint(path)
            except (ValueError, KeyError, RuntimeError) as e:
                raise CheckpointError(f"{path}: does not fit this run's settings ({' '.join(str(e).split())[:300]})") from None
            self.ckpts.set_aside(bad, path, self.warn)
            if self.extra_config.get("resumes"):
                self.extra_config["resumes"][-1].update(from_step=self.step, checkpoint=path.name)
        elif self.ckpts.all():
            raise FileExistsError(f"{self.run_dir}: already holds a training run (use --resume, or another --out)")
        atomic_write_bytes(self.run_dir / "config.json", json.dumps(self.config_dict(), indent=2, default=str).encode(), overwrite=True)
        log = RunLog(self.run_dir, self.LOG_FIELDS, self.step)
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=not self.progress, desc="pixelrl", unit="episode")
        t0 = time.time()
        try:
            while self.step < self.cfg.steps:
                m = self.train_one()
                m["time_s"] = round(time.time() - t0, 3)
                if m["step"] % self.cfg.log_every == 0:
                    log.write(m)
                bar.update(1)
                bar.set_postfix({"err": f"{m['err_in']:.1f}->{m['err_out']:.1f}"})
                if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                    self._sample(log)
                if self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                    self.save_checkpoint()
                    self.export_model()
        finally:
            bar.close()
            log.close()
        return self.export_model()

    @torch.no_grad()
    def _sample(self, log: RunLog) -> None:
        from .model import run_agent

        g = torch.Generator().manual_seed(self.cfg.seed + 1)  # a fixed batch, not the run's generator
        saved = self.gen
        self.gen = g
        try:
            s0, _ = self.batch()
        finally:
            self.gen = saved
        s0 = s0[:4]
        self.net.eval()
        out = run_agent(self.net, self.task, s0).out
        rgb = lambda x: x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        log.sample_grid(self.step, rgb(s0).cpu(), rgb(out).cpu())

