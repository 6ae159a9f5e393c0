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

__all__ = ["PixelRLConfig", "PixelRLTrainer", "PhotoCrops", "PAIRED_KINDS", "relaxed_episode", "final_error", "enhance_work_size",
           "model_info", "export_checkpoint"]

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
    """RL episodes (the paper: 30000); 0 with --pretrain-steps trains the warm-up alone."""
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
    pretrain_steps: int = 0
    """supervised warm-up episodes before the ``steps`` RL episodes (not in the paper, which starts from
    a pretrained denoising CNN instead; :func:`relaxed_episode`): every pixel's next state is the mix
    of all actions' results weighted by ``softmax(logits / tau)``, and the task's final error after
    ``t_max`` steps is back-propagated through the whole episode. At its end the policy's output layer
    is divided by the last temperature, so the RL phase starts from the policy the warm-up trained
    (``softmax(logits / tau)``). 0 turns it off."""
    pretrain_tau: float = 1.0
    """softmax temperature of the warm-up's first episode."""
    pretrain_tau_final: float = 0.05
    """temperature of its last episode (geometric decay): near one-hot mixes, so the greedy
    test-time policy does what the warm-up trained."""

    def __post_init__(self):
        check_config(self)
        if self.task not in TASKS:
            raise ConfigError("task", f"one of {', '.join(TASKS)}", self.task)
        for name in ("steps", "t_max", "channels", "pretrain_steps"):
            low = 0 if name in ("t_max", "pretrain_steps") or (name == "steps" and self.pretrain_steps > 0) else 1
            if getattr(self, name) < low:
                raise ConfigError(name, f">= {low}" + (" (>= 0 with --pretrain-steps)" if name == "steps" else ""), getattr(self, name))
        if not 0.0 <= self.rmc_start <= 1.0:
            raise ConfigError("rmc_start", "in [0, 1]", self.rmc_start)
        if self.rmc_size < 1 or self.rmc_size % 2 == 0:
            raise ConfigError("rmc_size", "an odd number >= 1", self.rmc_size)
        for name in ("pretrain_tau", "pretrain_tau_final"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, "> 0", getattr(self, name))
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError("gamma", "in [0, 1]", self.gamma)
        if self.task == "denoise":
            try:
                parse_noise(self.noise)
            except ValueError as e:
                raise ConfigError("noise", "KIND:LEVEL or KIND:LO-HI", self.noise) from e


def relaxed_episode(net: PixelRLNet, task: Task, state: torch.Tensor, tau: float) -> torch.Tensor:
    """The warm-up's differentiable episode: ``t_max`` steps of
    ``s' = sum_a softmax(logits / tau)_a * clip(f_a(s))`` per pixel (``f_a``: the task's actions on the
    whole image), ``state (B, C, H, W)`` in [0, 1] -> ``s_T`` (same shape), differentiable in the
    network's parameters. As ``tau -> 0`` the mix becomes the greedy policy's hard choice
    (:func:`deepexposure.pixelrl.model.run_agent`). Not in the paper."""
    s, h = state, None
    for _ in range(task.t_max):
        logits, _, h = net(task.net_input(s), h)
        pi = torch.softmax(logits / tau, 1)
        mix = torch.zeros_like(s)
        for k, (_, fn) in enumerate(task.actions.actions):
            mix = mix + pi[:, k: k + 1] * fn(s).clamp(0.0, 1.0)
        s = mix
    return s


def final_error(task: Task, out: torch.Tensor, target: torch.Tensor, target_lab: torch.Tensor | None = None) -> torch.Tensor:
    """The warm-up loss: the error the task's reward counts down, summed over the episode: mean
    squared error x255 (eq. 19's scale) or the mean CIELab distance (eq. 21's) of ``out`` to ``target``."""
    if task.name == "enhance":
        from ..metrics import srgb_to_lab

        tl = srgb_to_lab(target) if target_lab is None else target_lab
        return (srgb_to_lab(out) - tl).pow(2).sum(1).clamp_min(1e-12).sqrt().mean()
    return 255.0 * (out - target).pow(2).sum(1).mean()


def enhance_work_size(image_size: int, crop_scale: tuple[float, float]) -> int:
    """Long edge of the working copy ``retouch --method pixelrl`` should give an enhancement model so
    that a pixel covers as much of the scene as in training: the views are crops of ``crop_scale``
    (fractions of the photo's short side, :class:`deepexposure.pairs.SyntheticPairs`) resized to
    ``image_size``, so a 3:2 photo's long edge is ``1.5 image_size / mean(crop_scale)``."""
    return int(round(1.5 * image_size / (0.5 * (crop_scale[0] + crop_scale[1]))))


def model_info(cfg: PixelRLConfig, name: str, step: int, crop_scale: tuple[float, float] | None = None) -> dict[str, Any]:
    """The ``config.json`` entries of a model exported from a run after ``step`` episodes (an
    enhancement model also gets the ``work_size`` of its training views; ``crop_scale``: the crop
    fractions of its :class:`deepexposure.pairs.SyntheticPairs`)."""
    info: dict[str, Any] = {"name": name, "trained_steps": step, "seed": cfg.seed,
                            "noise": cfg.noise if cfg.task == "denoise" else None,
                            "training": {k: v for k, v in asdict(cfg).items() if k not in ("threads", "device", "log_every", "sample_every")}}
    if cfg.task == "enhance" and crop_scale is not None:
        info["work_size"] = enhance_work_size(cfg.image_size, crop_scale)
    return info


def export_checkpoint(run_dir: str | Path, checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write the model of an earlier checkpoint of a PixelRL run (``RUN/checkpoints/step_N``) to
    ``out_dir``: what ``RUN/model/`` held right after that checkpoint was written (the settings come
    from ``RUN/config.json``; an enhancement model's ``work_size`` from ``RUN/model/config.json``)."""
    from safetensors.torch import load_file

    run_dir, checkpoint = Path(run_dir), Path(checkpoint)
    saved = json.loads((run_dir / "config.json").read_text())
    cfg = PixelRLConfig(**saved["train"])
    task = Task.make(cfg.task, cfg.t_max)
    net = PixelRLNet(PixelRLNetConfig(task.in_channels, task.actions.n, cfg.channels, cfg.conv_gru))
    state = load_file(str(checkpoint / "net.safetensors"))
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")}, strict=True)
    step = int(json.loads((checkpoint / "state.json").read_text())["step"])
    info = model_info(cfg, f"{run_dir.name}-step_{step}", step)
    latest = run_dir / "model" / "config.json"
    if cfg.task == "enhance" and latest.exists():
        info["work_size"] = json.loads(latest.read_text()).get("work_size")
    return save_model(out_dir, net, task, {k: v for k, v in info.items() if v is not None or k == "noise"})


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

    LOG_FIELDS = ("episode_reward", "policy_loss", "value_loss", "entropy", "err_in", "err_out", "rmc", "w_centre", "tau", "lr")

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
        self.total = cfg.pretrain_steps + cfg.steps
        self.rmc_from = cfg.pretrain_steps + int(round(cfg.rmc_start * cfg.steps)) if cfg.rmc else self.total + 1

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

    def learning_rate(self) -> float:
        """The poly schedule ``lr (1 - k / n)^0.9`` of the current phase (warm-up: ``k`` of
        ``pretrain_steps``, floored at 0.1 ``lr``; RL: ``k`` of ``steps``)."""
        c, pre = self.cfg, self.cfg.pretrain_steps
        if self.step < pre:
            return c.lr * max(0.1, (1.0 - self.step / pre) ** 0.9)
        return c.lr * (1.0 - (self.step - pre) / c.steps) ** 0.9

    def warmup_tau(self) -> float:
        """The warm-up temperature of the current episode (geometric from ``pretrain_tau`` to ``pretrain_tau_final``)."""
        c = self.cfg
        f = self.step / max(1, c.pretrain_steps - 1)
        return c.pretrain_tau * (c.pretrain_tau_final / c.pretrain_tau) ** min(1.0, f)

    def warmup_one(self) -> dict[str, Any]:
        """One supervised warm-up episode (:func:`relaxed_episode`, :func:`final_error`) and one Adam step."""
        lr = self.learning_rate()
        for grp in self.opt.param_groups:
            grp["lr"] = lr
        s0, target = self.batch()
        tau = self.warmup_tau()
        self.net.train()
        out = relaxed_episode(self.net, self.task, s0, tau)
        loss = final_error(self.task, out, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        episode = self.step
        self.step += 1
        if self.step == self.cfg.pretrain_steps:  # hand over: pi = softmax(logits / tau) becomes the RL policy
            with torch.no_grad():
                for prm in self.net.pi_out.parameters():
                    prm.div_(tau)
        return {"step": episode, "phase": "warmup", "policy_loss": float(loss.detach()), "err_in": self.error(s0, target),
                "err_out": self.error(out.detach(), target), "tau": tau, "lr": lr}

    @torch.no_grad()
    def error(self, x: torch.Tensor, target: torch.Tensor) -> float:
        """The log's error of ``x``: mean squared error on the 0..255 scale, or the mean CIELab distance (enhance)."""
        e = float(final_error(self.task, x, target))
        return e if self.task.name == "enhance" else e * 255.0 / x.shape[1]

    def train_one(self) -> dict[str, Any]:
        """One episode and one Adam step (Algorithm 1; the warm-up's during the first ``pretrain_steps``);
        returns the log row."""
        if self.step < self.cfg.pretrain_steps:
            return self.warmup_one()
        c, task = self.cfg, self.task
        lr = self.learning_rate()
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
        err = lambda x: self.error(x, target)
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
        return save_model(self.run_dir / "model", self.net, self.task,
                          model_info(self.cfg, self.run_dir.name, self.step, getattr(self.data, "scale", None)))

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
        bar = tqdm(total=self.total, initial=self.step, disable=not self.progress, desc="pixelrl", unit="episode")
        t0 = time.time()
        try:
            while self.step < self.total:
                m = self.train_one()
                m["time_s"] = round(time.time() - t0, 3)
                if m["step"] % self.cfg.log_every == 0:
                    log.write(m)
                bar.update(1)
                bar.set_postfix({"err": f"{m['err_in']:.1f}->{m['err_out']:.1f}"})
                if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                    self._sample(log)
                if self.step % self.cfg.ckpt_every == 0 or self.step == self.total:
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

