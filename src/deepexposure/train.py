"""The adversarial training loop shared by every agent (DeepExposure I/II, the white-box agent).

Schedule (Algorithms 1-2 of the DeepExposure supplement; Exposure Algorithm 1):

1. ``p_steps`` discriminator pre-training steps on roll-outs of the current policy;
2. then, per training step: ``g_steps`` agent updates (each an asynchronous update over a
   mini-batch of ``batch_size`` images), whose outputs go to the memory M1, followed by ``d_steps``
   WGAN-GP discriminator updates (eq. 12) on M1 against random target photos; M1 is then emptied
   (with ``fake_pool`` > 0 the outputs go into a ring buffer of past outputs instead, and
   ``disc_batch`` sets the discriminator's batch size; neither is in the paper).

Learning rates decay exponentially to a fraction of their start over ``steps``.

Reproducibility (cleanrl's "seed first, then build"): :func:`seed_everything` seeds Python's,
NumPy's and torch's global generators before the agent is built (``deepexposure train`` does it),
and the trainer seeds again before it builds the discriminator, so a run's initial weights depend
on ``seed`` alone. Every draw during training goes through the run's own ``torch.Generator``
(seeded by ``seed``); its state, the optimisers, the OU process / trajectory buffer and the step are
in every checkpoint, so a resumed run reaches the same weights, bit for bit, as one that was never
interrupted (same machine, torch version and thread count). Each checkpoint lists the SHA-256 of its
files; on resume a checkpoint that fails to load or to match is skipped for the one before it
(:meth:`Trainer.load_latest_checkpoint`).

Run directory layout::

    RUN/config.json                 the whole configuration (written at start)
    RUN/log.csv                     one row per step (rows past a resumed checkpoint are dropped)
    RUN/tb/                         TensorBoard events (if the tensorboard package is installed)
    RUN/samples/step_000100.png     input | output grids
    RUN/checkpoints/step_000100/    networks (safetensors + config.json), optimisers, RNG, state.json
    RUN/checkpoints/latest          name of the newest complete checkpoint
    RUN/checkpoints/corrupt_step_N/ a checkpoint found unusable on resume, kept for inspection
    RUN/model/                      the inference model (what ``--model RUN`` loads), refreshed at every checkpoint
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from .config import ConfigError, check_config
from .distributed import DistContext, gather_rows, mean_metrics, on_main
from .gan import DISC_CHANNELS, GAN_LOSSES, Discriminator, discriminator_loss
from .nets import Trunk, TrunkConfig
from .pretrained import load_trunk, save_trunk

__all__ = [
    "TrainConfig", "Trainer", "CheckpointError", "resolve_device", "seed_everything", "verify_checkpoint", "export_checkpoint",
    "load_agent_networks", "optimizer_state_to_tensors", "optimizer_state_from_tensors",
    "OPERATIONAL_SETTINGS", "FIXED_SETTINGS", "RunSettings", "Agent", "Pretrainable", "Resegmentable", "FakePool", "Checkpoints", "RunLog",
]


class Agent(Protocol):
    """What :class:`Trainer` needs from an agent (``DeepExposureAgent`` and ``WhiteBoxAgent`` both are one;
    the type checker verifies it where ``deepexposure train`` builds them). ``docs/dev/CONTRACT.md`` has the prose."""

    @property
    def cfg(self) -> Any:
        """the agent's settings: a dataclass with ``to_dict()`` (recorded in ``RUN/config.json``)."""

    @property
    def supports_references(self) -> bool:
        """whether :meth:`train_step` takes ``references`` (paired training)."""

    @property
    def log_fields(self) -> Sequence[str]:
        """metric names of :meth:`train_step` to add to ``log.csv``."""

    def prepare(self, inputs: torch.Tensor, progress: Any = None) -> None:
        """Per-input precomputation (e.g. segment masks) for ``inputs (N, 3, S, S)``."""

    def networks(self) -> dict[str, Trunk]:
        """name -> network, saved in and loaded from every checkpoint."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """name -> optimiser (``"policy"`` included), saved in every checkpoint."""

    def lr_schedule(self) -> dict[str, tuple[float, float]]:
        """optimiser name -> (initial lr, final fraction) for the exponential decay."""

    def generate(self, idx: torch.Tensor, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Machine outputs ``(B, 3, S, S)`` of ``inputs[idx]`` for discriminator pre-training."""

    def generate_eval(self, idx: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Deterministic outputs ``(B, 3, S, S)`` for the sample grids."""

    def train_step(self, idx: torch.Tensor, inputs: torch.Tensor, disc: nn.Module, generator: torch.Generator,
                   references: torch.Tensor | None = None, fidelity_weight: float = 0.0) -> tuple[dict[str, float], torch.Tensor]:
        """One agent update; returns ``(metrics, fakes)``, the fakes for the discriminator."""

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors beyond networks and optimisers that a checkpoint must hold (noise, buffers)."""

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`extra_state`."""

    def save_model(self, directory: str | Path, info: dict | None = None) -> None:
        """Write the inference model folder (:func:`deepexposure.pretrained.save_pretrained`)."""


@runtime_checkable
class Pretrainable(Protocol):
    """An agent with supervised pre-training (``--pretrain-steps``)."""

    def pretrain_step(self, idx: torch.Tensor, inputs: torch.Tensor, references: torch.Tensor) -> dict[str, float]:
        """One supervised step on ``inputs[idx]`` against ``references[idx]``; returns its metrics."""


@runtime_checkable
class Resegmentable(Protocol):
    """An agent whose :meth:`Agent.prepare` work must be redone for rows a pair pool replaced."""

    def prepare_rows(self, rows: torch.Tensor, inputs: torch.Tensor) -> None:
        """Redo the preparation of training rows ``rows`` (now ``inputs``)."""

#: Settings that change how a run is carried out, not what it computes: ``--resume`` may change them
#: freely (they are reported and recorded). ``steps`` is here so a run can be extended; note that
#: the learning rates decay over ``steps``, so from the resumed step on they follow the new length.
OPERATIONAL_SETTINGS = frozenset({"steps", "log_every", "sample_every", "ckpt_every", "keep_checkpoints", "threads", "device"})

#: Settings that size the networks or the state saved in a checkpoint: ``--resume`` can never change
#: them (the checkpoint would not fit). Every other setting changes the run's maths and needs
#: ``--allow-changes``.
FIXED_SETTINGS = frozenset({"algo", "image_size", "base_channels", "disc_base_channels", "batch_size", "n_edits", "buffer_size", "fake_pool", "regions"})


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch's (CPU and every device).

    Call it before building networks: their initial weights come from torch's global generator.
    Draws made during training use an explicit ``torch.Generator`` instead (see :class:`Trainer`).
    Thread counts and deterministic-algorithm flags are left alone.
    """
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class CheckpointError(RuntimeError):
    """No checkpoint of a run can be resumed from (all unusable), or one does not fit the run's settings."""


@dataclass
class RunSettings:
    """A training run's bookkeeping, shared by every trainer's config (:class:`TrainConfig`,
    :class:`deepexposure.pixelrl.train.PixelRLConfig`). None of these changes the maths; all but
    ``seed`` are :data:`OPERATIONAL_SETTINGS`, which ``--resume`` may change."""

    seed: int = 0
    """seed of the run's one random generator (and, through seed_everything, of the initial weights)."""
    log_every: int = 1
    """write a log row every this many steps (episodes for PixelRL)."""
    sample_every: int = 200
    """write an input | output sample grid every this many steps (episodes for PixelRL) (0: never)."""
    ckpt_every: int = 100
    """write a checkpoint every this many steps (episodes for PixelRL) (and at the end)."""
    keep_checkpoints: int = 2
    """how many checkpoints to keep on disk."""
    threads: int = 0
    """torch CPU threads (0: leave torch's default)."""
    device: str = "cpu"
    """where training runs: 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA if available, else CPU). Random
    numbers are drawn on the CPU and moved, so a run draws the same ones on either; checkpoints hold
    CPU tensors."""


@dataclass
class TrainConfig(RunSettings):
    """Settings of the adversarial training loop (agent-specific settings live in the agent's config)."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"gan_loss": GAN_LOSSES}
    """allowed values of the string options (shown by --help, checked by argparse)."""

    steps: int = 2000
    """training steps after pre-training (each: g_steps agent updates + d_steps discriminator updates)."""
    batch_size: int = 8
    """N: images per asynchronous update and per discriminator batch."""
    p_steps: int = 30
    """discriminator pre-training steps before the agent learns."""
    d_steps: int = 5
    """discriminator updates per training step."""
    g_steps: int = 1
    """agent updates per training step."""
    lr_disc: float = 5e-5
    """Adam learning rate of the discriminator."""
    lr_disc_final: float = 1e-3
    """the discriminator's learning rate decays exponentially to this fraction of its start."""
    disc_betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas of the discriminator."""
    lambda_gp: float = 10.0
    """gradient-penalty weight lambda of eq. (12)."""
    gan_loss: str = "wgan-gp"
    """discriminator loss: 'wgan-gp' (eq. 12, the paper) or 'logistic' (a real/fake classifier with the
    same gradient penalty; not in the paper). On a toy set with 'logistic', the discriminator learned
    photo-dependent preferences: brighten the dark photos, darken the bright ones. WGAN-GP learned
    one direction for all. On the default-model data it has not helped yet (see
    :mod:`deepexposure.gan`)."""
    disc_batch: int = 0
    """images of each kind (machine outputs, targets) per discriminator update (0: ``batch_size``)."""
    fake_pool: int = 0
    """size of a memory of past machine outputs that discriminator updates draw from (0: only this
    step's outputs, the paper's M1). The newest outputs replace the oldest. Not in the paper."""
    fidelity_weight: float = 10000.0
    """weight ``w`` of the paired term ``-w * MSE(output, reference)`` added to every score the agent
    maximises (:class:`deepexposure.gan.FidelityScore`). Used only when the trainer has references
    (``--references``); without them training is unpaired, as in the paper. The shipped DeepExposure
    default used 10000 (runs with 1000 and 3000 scored lower on validation); the white-box default 50000."""
    pretrain_steps: int = 0
    """supervised steps before discriminator pre-training: the policy is fitted to the references
    through its own renderer (deepexposure.pretrain; the white-box agent: through its own filters,
    WhiteBoxAgent.pretrain_step; needs --references or
    --pairs-from). Not in the paper; 0 turns it off."""
    pretrain_lr: float = 3e-4
    """Adam learning rate of the policy during supervised pre-training."""
    pretrain_lr_final: float = 0.1
    """the pre-training learning rate decays exponentially to this fraction of its start."""
    pairs_pool: int = 1024
    """with --pairs-from: training pairs held in memory, drawn from the endless synthetic stream."""
    pairs_refresh: int = 2
    """with --pairs-from: pool entries replaced by fresh pairs after every step."""
    pairs_kinds: str = "default"
    """with --pairs-from: degradation kinds of the synthetic inputs (a comma list of
    deepexposure.synth.KINDS, 'default' = the benchmark's exposure model, or 'all')."""
    disc_base_channels: int = 32
    """channels of the discriminator's first convolution."""
    image_size: int = 64
    """side of the training thumbnails."""

    def __post_init__(self):
        self.disc_betas = (float(self.disc_betas[0]), float(self.disc_betas[1]))
        check_config(self)
        if self.steps + self.p_steps + self.pretrain_steps < 1:
            raise ConfigError("steps", ">= 1 when p_steps and pretrain_steps are 0", self.steps)
        if self.pairs_refresh > self.pairs_pool:
            raise ConfigError("pairs_refresh", f"<= --pairs-pool ({self.pairs_pool})", self.pairs_refresh)
        if self.gan_loss not in GAN_LOSSES:
            raise ConfigError("gan_loss", f"one of {', '.join(GAN_LOSSES)}", self.gan_loss)


def resolve_device(name: str) -> torch.device:
    """``'auto'`` -> ``cuda`` if available else ``cpu``; anything else as ``torch.device`` (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine")
    return dev


def _lr_at(start: float, final_fraction: float, step: int, total: int) -> float:
    if total <= 1:
        return start
    return start * final_fraction ** (min(step, total) / total)


def optimizer_state_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's ``state_dict`` into safetensors-able tensors and JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                key = f"{prefix}.{pid}.{k}"
                tensors[key] = v.detach().cpu().contiguous()
                meta["state"][str(pid)][k] = {"tensor": key}
            else:
                meta["state"][str(pid)][k] = v
    return tensors, meta


def optimizer_state_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: (tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v) for k, v in st.items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class FakePool:
    """Ring buffer of past machine outputs for the discriminator (``fake_pool`` > 0; not in the paper).

    ``images (size, 3, S, S)``; ``filled`` entries are valid; ``next`` is the slot written next.
    """

    def __init__(self, size: int, image_size: int, device: torch.device):
        self.images = torch.zeros(size, 3, image_size, image_size, device=device)
        self.filled = 0
        self.next = 0

    @property
    def size(self) -> int:
        return self.images.shape[0]

    def add(self, fakes: torch.Tensor) -> None:
        """Put ``fakes`` into the ring buffer, overwriting the oldest entries (one indexed copy)."""
        size = self.size
        fakes = fakes[-size:]
        n = fakes.shape[0]
        slots = (self.next + torch.arange(n)) % size
        self.images[slots.to(self.images.device)] = fakes.to(self.images)
        self.next = (self.next + n) % size
        self.filled = min(self.filled + n, size)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` entries drawn uniformly (with replacement) from the filled ones."""
        return self.images[torch.randint(0, self.filled, (n,), generator=generator)]

    def saved(self) -> torch.Tensor:
        """The filled entries, for a checkpoint."""
        return self.images[: self.filled].cpu().contiguous()

    def restore(self, saved: torch.Tensor, next_slot: int | None, where: Path) -> None:
        """Load :meth:`saved` entries (``next_slot`` from the checkpoint, or after them)."""
        if saved.shape[0] > self.size or saved.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"{where}: its fake pool {tuple(saved.shape)} does not fit fake_pool={self.size}")
        self.images.zero_()
        self.images[: saved.shape[0]] = saved
        self.filled = saved.shape[0]
        self.next = int(saved.shape[0] if next_slot is None else next_slot) % self.size


class Checkpoints:
    """The checkpoint folders of a run: ``RUN/checkpoints/step_N``, the ``latest`` pointer, rotation,
    and the choice of the newest usable one on resume (the files in a folder: :meth:`Trainer.save_checkpoint`)."""

    def __init__(self, run_dir: Path, keep: int, required: Sequence[str] = ("state.safetensors", "discriminator.safetensors")):
        self.run_dir, self.root, self.keep, self.required = run_dir, run_dir / "checkpoints", keep, tuple(required)

    def all(self) -> list[Path]:
        """The folders ``step_N``, newest (highest N) first, complete or not."""
        found = [p for p in self.root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)

    def latest(self) -> Path | None:
        """The newest folder that has its ``state.json`` (not verified)."""
        return next((p for p in self.all() if (p / "state.json").exists()), None)

    def staging(self, step: int) -> tuple[Path, Path]:
        """A fresh hidden folder to write step ``step`` into, and its final name."""
        final, tmp = self.root / f"step_{step:07d}", self.root / f".tmp_step_{step:07d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp, final

    def publish(self, tmp: Path, final: Path) -> Path:
        """Rename the written folder into place, point ``latest`` at it, drop the oldest beyond ``keep``."""
        from .atomic import atomic_write_bytes

        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write_bytes(self.root / "latest", final.name.encode(), overwrite=True)
        kept = sorted(p for p in self.root.glob("step_*") if p.is_dir())
        for old in kept[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def find_usable(self) -> tuple[Path, list[tuple[Path, str]]]:
        """The newest checkpoint that :func:`verify_checkpoint` accepts, and the newer ones it rejected."""
        bad: list[tuple[Path, str]] = []
        for path in self.all():
            reason = verify_checkpoint(path, self.required)
            if reason is None:
                return path, bad
            bad.append((path, reason))
        if not bad:
            raise FileNotFoundError(f"{self.run_dir}: nothing to resume (no complete checkpoint)")
        raise CheckpointError(f"{self.run_dir}: no usable checkpoint to resume from ({'; '.join(f'{p.name}: {r}' for p, r in bad)})")

    def set_aside(self, bad: list[tuple[Path, str]], used: Path, warn: Callable[[str], None]) -> None:
        """Rename rejected checkpoints to ``corrupt_step_N`` (kept for inspection) and point ``latest`` at ``used``."""
        for p, reason in bad:
            kept = p.with_name("corrupt_" + p.name)
            if kept.exists():
                shutil.rmtree(kept)
            p.rename(kept)
            warn(f"{p}: unusable checkpoint ({reason}); resuming from {used.name} instead (moved to {kept.name})")
        if bad:
            from .atomic import atomic_write_bytes

            atomic_write_bytes(self.root / "latest", used.name.encode(), overwrite=True)


class RunLog:
    """``RUN/log.csv`` (one row per logged step), TensorBoard events if available, and sample grids."""

    FIELDS = ["step", "phase", "pretrain_mse", "disc_loss", "wasserstein", "policy_objective", "d_fused", "value_loss", "ev_mean", "ev_std", "fidelity_mse", "lr_policy", "time_s"]

    def __init__(self, run_dir: Path, extra_fields: Sequence[str], start_step: int):
        """Open the log at ``start_step``: rows past it (from before a resume) are dropped, so there is no jump and no duplicate."""
        self.run_dir = run_dir
        path = run_dir / "log.csv"
        fields = self.FIELDS + [f for f in extra_fields if f not in self.FIELDS]
        if path.exists():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r["step"])) < start_step]
            tmp = path.with_suffix(".csv.tmp")
            with tmp.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
            tmp.replace(path)
            self.fh = path.open("a", newline="")
        else:
            self.fh = path.open("w", newline="")
            csv.DictWriter(self.fh, fieldnames=fields).writeheader()
        self.writer = csv.DictWriter(self.fh, fieldnames=fields, extrasaction="ignore")
        self.tb = self._tensorboard(start_step)

    def _tensorboard(self, start_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: CSV only
            return None
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step)

    def write(self, m: dict[str, float]) -> None:
        self.writer.writerow(m)
        self.fh.flush()
        if self.tb is not None:
            for k, v in m.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, m["step"])

    def sample_grid(self, step: int, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        """``RUN/samples/step_N.png``: the inputs above the outputs."""
        from .io import write_image

        (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
        grid = torch.cat([torch.cat(list(inputs), dim=2), torch.cat(list(outputs), dim=2)], dim=1)
        write_image(self.run_dir / "samples" / f"step_{step:07d}.png", grid.unsqueeze(0).clamp(0, 1).cpu(), overwrite=True)

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


class Trainer:
    """Runs an agent against a WGAN-GP discriminator on unpaired inputs and targets.

    Args:
        agent: an :class:`Agent` (e.g. :class:`deepexposure.agents.deepexposure.DeepExposureAgent`);
            :class:`Pretrainable` for ``pretrain_steps``, :class:`Resegmentable` to redo its
            preparation of the rows a pair pool renews.
        cfg: loop settings.
        inputs: ``(N_in, 3, S, S)`` sRGB thumbnails to retouch.
        targets: ``(N_t, 3, S, S)`` sRGB thumbnails in the wanted style (unpaired).
        run_dir: where logs, samples, checkpoints and the model go.
        extra_config: more settings to record in ``config.json`` (data folders, command line).
        references: optional ``(N_in, 3, S, S)``, row ``i`` the well-exposed reference of input ``i``
            (pixel-aligned). With them the agent maximises :class:`~deepexposure.gan.FidelityScore`
            instead of the bare discriminator score; the discriminator is still trained unpaired.
        warn: called with a one-line message for each unusable checkpoint skipped on resume
            (default: :func:`warnings.warn`).
        dist: this process's place in a multi-process run (:func:`deepexposure.distributed.init_from_env`;
            None: one process). Each rank computes its rows of every global batch, gradients are
            averaged before each optimiser step, and only rank 0 writes files.

    The discriminator is built right after ``seed_everything(cfg.seed)``; build the agent after the
    same call (as ``deepexposure train`` does) and the run's initial weights depend on the seed alone.
    """

    def __init__(self, agent: Agent, cfg: TrainConfig, inputs: torch.Tensor, targets: torch.Tensor, run_dir: str | Path, extra_config: dict | None = None, progress: bool = False,
                 references: torch.Tensor | None = None, warn: Callable[[str], None] | None = None, pairs=None,
                 dist: DistContext | None = None):
        if pairs is not None:  # inputs and references come from (and are renewed by) the pool
            inputs, references = pairs.inputs.clone(), pairs.references.clone()
            pairs.on_rows = self._pool_rows
        self.pairs = pairs
        if inputs.shape[0] < 1 or targets.shape[0] < 1:
            raise ValueError("training needs at least one input and one target photo")
        self.agent, self.cfg = agent, cfg  # cfg.threads is applied by the command (torch.set_num_threads is process-wide)
        self.device = resolve_device(cfg.device)
        self.inputs, self.targets = inputs.float().to(self.device), targets.float().to(self.device)
        if references is not None and references.shape != self.inputs.shape:
            raise ValueError(f"references {tuple(references.shape)} do not match inputs {tuple(self.inputs.shape)}")
        if references is not None and not agent.supports_references:
            raise ValueError(f"{type(agent).__name__} cannot train with references (paired data)")
        self.references = references.float().to(self.device) if references is not None else None
        self.run_dir = Path(run_dir)
        self.extra_config = extra_config or {}
        self.progress = progress
        self.warn = warn or (lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=3))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        seed_everything(cfg.seed)  # the discriminator's initial weights below
        dcfg = TrunkConfig(DISC_CHANNELS, 1, cfg.disc_base_channels, cfg.image_size, kind="discriminator")
        self.disc = Discriminator(Trunk(dcfg)).to(self.device)
        if isinstance(agent, nn.Module):
            agent.to(self.device)  # in place: the agent's optimisers keep their parameters
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_disc, betas=(cfg.disc_betas[0], cfg.disc_betas[1]))
        if cfg.pretrain_steps and self.references is None:
            raise ValueError("supervised pre-training (--pretrain-steps) needs paired data: --references or --pairs-from")
        if cfg.pretrain_steps and not isinstance(agent, Pretrainable):
            raise ValueError(f"{type(agent).__name__} has no supervised pre-training (--pretrain-steps is for DeepExposure and the white-box agent)")
        self.step = 0  # counts both pre-training phases too
        self.total = cfg.pretrain_steps + cfg.p_steps + cfg.steps
        self.fake_pool = FakePool(cfg.fake_pool, cfg.image_size, self.device)
        self.ckpts = Checkpoints(self.run_dir, cfg.keep_checkpoints)
        self.dist, self.rows, self.is_main = dist, slice(None), dist is None or dist.is_main
        if dist is not None:
            self._shard(dist)

    def _shard(self, dist: DistContext) -> None:
        """Multi-process run (:mod:`deepexposure.distributed`): this rank's rows, gradients averaged over the ranks."""
        from .distributed import Shardable, average_gradients, rows

        if not isinstance(self.agent, Shardable):
            raise ValueError(f"{type(self.agent).__name__} cannot be trained on several processes (docs/scaling.md)")
        for what, n in (("--batch-size", self.cfg.batch_size), ("--disc-batch", self.cfg.disc_batch)):
            if n % dist.world:
                raise ValueError(f"{what} {n} does not split evenly over {dist.world} processes")
        self.rows = self.agent.rows = rows(dist, self.cfg.batch_size)
        for opt in [self.opt_disc, *self.agent.optimizers().values()]:
            average_gradients(dist, opt)

    # -- bookkeeping ---------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {"train": asdict(self.cfg), "agent": self.agent.cfg.to_dict(), **self.extra_config}

    def _set_lrs(self) -> None:
        pre, c = self.cfg.pretrain_steps, self.cfg
        for g in self.opt_disc.param_groups:
            g["lr"] = _lr_at(c.lr_disc, c.lr_disc_final, max(0, self.step - pre), c.p_steps + c.steps)
        if self.step < pre:
            for g in self.agent.optimizers()["policy"].param_groups:
                g["lr"] = _lr_at(c.pretrain_lr, c.pretrain_lr_final, self.step, pre)
            return
        sched = self.agent.lr_schedule()
        for name, opt in self.agent.optimizers().items():
            start, final = sched[name]
            for g in opt.param_groups:
                g["lr"] = _lr_at(start, final, max(0, self.step - pre - c.p_steps), c.steps)

    def _pool_rows(self, rows: torch.Tensor, inputs: torch.Tensor) -> None:
        """:class:`~deepexposure.pretrain.PairPool` replaced ``rows``: copy them in and re-segment them."""
        assert self.references is not None and self.pairs is not None  # a pair pool implies references
        self.inputs[rows.to(self.device)] = inputs.to(self.device)
        self.references[rows.to(self.device)] = self.pairs.references[rows].to(self.device)
        if isinstance(self.agent, Resegmentable) and len(rows) < self.inputs.shape[0]:
            self.agent.prepare_rows(rows, self.inputs[rows.to(self.device)])

    def _prepare(self, start_step: int) -> None:
        """Fill the pair pool as it is at ``start_step`` (if any), then let the agent prepare the inputs."""
        if self.pairs is not None:
            self.pairs.rebuild(start_step)
        self.agent.prepare(self.inputs)

    def _sample_idx(self, n_pool: int, n: int) -> torch.Tensor:
        return torch.randint(0, n_pool, (n,), generator=self.gen)

    # -- one step ------------------------------------------------------------------------------
    def _disc_update(self, fakes: torch.Tensor) -> dict[str, float]:
        """One discriminator step on ``fakes`` (the global batch); a multi-process run computes its rows of it."""
        from .distributed import rows

        real = self.targets[self._sample_idx(self.targets.shape[0], fakes.shape[0])]
        eps = torch.rand(fakes.shape[0], 1, 1, 1, generator=self.gen, dtype=real.dtype)  # the gradient penalty's
        r = rows(self.dist, fakes.shape[0])
        loss, w = discriminator_loss(self.disc, real[r], fakes[r], self.cfg.lambda_gp, self.gen, self.cfg.gan_loss, eps=eps[r])
        self.opt_disc.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_disc.step()
        return {"disc_loss": loss.item(), "wasserstein": w.item()}

    def _disc_fakes(self, fresh: torch.Tensor) -> torch.Tensor:
        """The machine outputs of one discriminator update: from the pool if there is one, else from ``fresh``."""
        n = self.cfg.disc_batch or self.cfg.batch_size
        if self.fake_pool.size:
            return self.fake_pool.sample(n, self.gen)
        return fresh[self._sample_idx(fresh.shape[0], n)]

    def train_one(self) -> dict[str, float]:
        """One step of the schedule; returns the metrics logged for it."""
        self._set_lrs()
        b = self.cfg.batch_size
        metrics: dict[str, float] = {"step": self.step}
        if self.step < self.cfg.pretrain_steps:
            idx = self._sample_idx(self.inputs.shape[0], b)
            metrics["phase"] = -1
            assert isinstance(self.agent, Pretrainable) and self.references is not None  # checked in __init__
            metrics.update(self.agent.pretrain_step(idx[self.rows], self.inputs, self.references))
        elif self.step - self.cfg.pretrain_steps < self.cfg.p_steps:
            idx = self._sample_idx(self.inputs.shape[0], b)
            fakes = gather_rows(self.dist, self.agent.generate(idx[self.rows], self.inputs, self.gen))
            metrics["phase"] = 0
            if self.fake_pool.size:
                self.fake_pool.add(fakes)
            if self.fake_pool.size or self.cfg.disc_batch:
                fakes = self._disc_fakes(fakes)
            metrics.update(self._disc_update(fakes))
        else:
            metrics["phase"] = 1
            memory = []
            for _ in range(self.cfg.g_steps):
                idx = self._sample_idx(self.inputs.shape[0], b)
                mine = idx[self.rows]
                if self.references is None:  # unpaired: the agent's defaults
                    m, fakes = self.agent.train_step(mine, self.inputs, self.disc, self.gen)
                else:
                    m, fakes = self.agent.train_step(mine, self.inputs, self.disc, self.gen, references=self.references, fidelity_weight=self.cfg.fidelity_weight)
                memory.append(gather_rows(self.dist, fakes))
                metrics.update(m)
            memory_t = torch.cat(memory)
            if self.fake_pool.size:
                self.fake_pool.add(memory_t)
            for _ in range(self.cfg.d_steps):
                metrics.update(self._disc_update(self._disc_fakes(memory_t)))
        if self.pairs is not None:
            self.pairs.refresh(self.step)
        self.step += 1
        return mean_metrics(self.dist, metrics, self.device)

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint_dir(self) -> Path:
        return self.ckpts.root

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_N/`` then point ``latest`` at it (each file written atomically)."""
        from safetensors.torch import save as st_save

        from .atomic import atomic_write_bytes

        tmp, final = self.ckpts.staging(self.step)
        save_trunk(self.disc.trunk, tmp, "discriminator")
        for name, net in self.agent.networks().items():
            save_trunk(net, tmp, name)
        tensors: dict[str, torch.Tensor] = {"rng": self.gen.get_state()}
        if self.fake_pool.size:
            tensors["fake_pool"] = self.fake_pool.saved()
        opt_meta = {}
        for name, opt in {"discriminator": self.opt_disc, **self.agent.optimizers()}.items():
            t, m = optimizer_state_to_tensors(opt, f"opt.{name}")
            tensors.update(t)
            opt_meta[name] = m
        for k, v in self.agent.extra_state().items():
            tensors[f"agent.{k}"] = v.detach().cpu().contiguous()
        atomic_write_bytes(tmp / "state.safetensors", st_save(tensors), overwrite=True)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file() and not p.name.startswith(".")}
        state = {"step": self.step, "optimizers": opt_meta, "pool_next": self.fake_pool.next, "files": files,
                 "torch_rng_note": "the run's generator state is 'rng' in state.safetensors; 'files' are SHA-256 of the other files"}
        atomic_write_bytes(tmp / "state.json", json.dumps(state).encode(), overwrite=True)
        return self.ckpts.publish(tmp, final)

    def checkpoints(self) -> list[Path]:
        """The run's checkpoint folders ``checkpoints/step_N``, newest (highest N) first, complete or not."""
        return self.ckpts.all()

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint folder that has its ``state.json`` (not verified; see :meth:`load_latest_checkpoint`)."""
        return self.ckpts.latest()

    def _resume_from(self, path: Path, bad: list[tuple[Path, str]]) -> None:
        try:
            self.load_checkpoint(path)
        except (ValueError, KeyError, RuntimeError) as e:  # verified files, wrong shapes: the settings differ
            raise CheckpointError(f"{path}: does not fit this run's settings ({' '.join(str(e).split())[:300]})") from None
        self.ckpts.set_aside(bad, path, self.warn)

    def load_latest_checkpoint(self) -> Path:
        """Load the newest usable checkpoint and return its folder.

        Checkpoints are tried newest first; one that :func:`verify_checkpoint` rejects (a file
        missing, truncated, garbled or not matching its recorded SHA-256) is reported through
        ``warn`` (one line naming it), renamed to ``corrupt_step_N`` and the previous one is used.
        Raises :class:`FileNotFoundError` if the run has no checkpoint, :class:`CheckpointError`
        if none is usable or the usable one does not fit the current settings.
        """
        path, bad = self.ckpts.find_usable()
        self._resume_from(path, bad)
        return path

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.disc.trunk.load_state_dict(load_trunk(path, "discriminator").state_dict())
        load_agent_networks(self.agent, path)
        tensors = load_file(str(path / "state.safetensors"))
        state = json.loads((path / "state.json").read_text())
        for name, opt in {"discriminator": self.opt_disc, **self.agent.optimizers()}.items():
            optimizer_state_from_tensors(opt, tensors, state["optimizers"][name])
        self.gen.set_state(tensors["rng"])
        self.agent.load_extra_state({k[len("agent.") :]: v for k, v in tensors.items() if k.startswith("agent.")})
        self.step = int(state["step"])
        if self.fake_pool.size:
            saved = tensors.get("fake_pool", torch.zeros(0, *self.fake_pool.images.shape[1:]))
            self.fake_pool.restore(saved, state.get("pool_next"), path)

    # -- logging -------------------------------------------------------------------------------
    def _write_sample(self, log: RunLog) -> None:
        with torch.no_grad():
            n = min(8, self.inputs.shape[0])
            out = self.agent.generate_eval(torch.arange(n), self.inputs)
        log.sample_grid(self.step, self.inputs[:n], out)

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool = False, stop_after: int | None = None) -> Path:
        """Train until ``p_steps + steps`` (or ``stop_after`` more steps); returns the model directory.

        With ``resume``, continue from the newest usable checkpoint in the run directory
        (:meth:`load_latest_checkpoint`; :class:`FileNotFoundError` if there is none). If
        ``extra_config`` has a ``"resumes"`` list, its last entry gets ``from_step`` and
        ``checkpoint``. ``RUN/config.json`` is (re)written before the first step.
        """
        from tqdm import tqdm

        from .atomic import atomic_write_bytes

        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.run_dir / "config.json"
        if resume:
            ckpt, bad = on_main(self.dist, self.ckpts.find_usable)  # before the (slow) preparation; rank 0 chooses
            self._prepare(int(json.loads((ckpt / "state.json").read_text())["step"]))
            self._resume_from(ckpt, bad if self.is_main else [])
            resumes = self.extra_config.get("resumes")
            if resumes:  # the command's record of this resume: say where it started
                resumes[-1].update(from_step=self.step, checkpoint=ckpt.name)
        else:
            if self.checkpoints():
                raise FileExistsError(f"{self.run_dir}: already holds a training run (use --resume, or another --out)")
            self._prepare(0)
        log = None
        if self.is_main:  # one writer in a multi-process run
            atomic_write_bytes(cfg_path, json.dumps(self.config_dict(), indent=2, default=str).encode(), overwrite=True)
            log = RunLog(self.run_dir, self.agent.log_fields, self.step)
        end = self.total if stop_after is None else min(self.total, self.step + stop_after)
        bar = tqdm(total=self.total, initial=self.step, disable=not (self.progress and self.is_main), desc="train", unit="step")
        t0 = time.time()
        try:
            while self.step < end:
                m = self.train_one()
                m["time_s"] = round(time.time() - t0, 3)
                opts = self.agent.optimizers()
                if "policy" in opts:
                    m["lr_policy"] = opts["policy"].param_groups[0]["lr"]
                bar.update(1)
                bar.set_postfix({k: f"{m[k]:.3g}" for k in ("wasserstein", "ev_mean") if k in m})
                if log is None:
                    continue
                if (self.step - 1) % self.cfg.log_every == 0:
                    log.write(m)
                if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                    self._write_sample(log)
                if self.step % self.cfg.ckpt_every == 0 or self.step == self.total:
                    self.save_checkpoint()
                    self.export_model()
        finally:
            bar.close()
            if log is not None:
                log.close()
        return self.export_model() if self.is_main else self.run_dir / "model"

    def export_model(self) -> Path:
        """Write the inference model to ``RUN/model/`` (also done at every checkpoint)."""
        model_dir = self.run_dir / "model"
        self.agent.save_model(model_dir, {"name": self.run_dir.name, "trained_steps": self.step, "seed": self.cfg.seed})
        return model_dir


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checkpoint(path: str | Path, required: Sequence[str] = ("state.safetensors", "discriminator.safetensors")) -> str | None:
    """Why checkpoint folder ``path`` cannot be resumed from, or None if it can.

    Reads every file: ``state.json`` must parse; each file it lists must exist and match its
    SHA-256 (checkpoints written before the list existed skip this); every ``*.safetensors`` must
    load and every ``*.json`` parse. Whether the networks fit the current settings is not checked
    here (:meth:`Trainer.load_checkpoint` does). ``required``: files every checkpoint of this kind of
    run has (a PixelRL run has no discriminator).
    """
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
    except FileNotFoundError:
        return "no state.json"
    except (OSError, ValueError) as e:
        return f"state.json unreadable: {_first_line(e)}"
    if not isinstance(state, dict) or "step" not in state or "optimizers" not in state:
        return "state.json lacks step or optimizers"
    for name, digest in (state.get("files") or {}).items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if _sha256(f) != digest:
            return f"{name} does not match its SHA-256"
    for name in required:
        if not (path / name).is_file():
            return f"{name} is missing"
    for f in sorted(path.iterdir()):
        try:
            if f.suffix == ".safetensors":
                load_file(str(f))
            elif f.suffix == ".json":
                json.loads(f.read_text())
        except Exception as e:  # safetensors raises several types
            return f"{f.name} unreadable: {_first_line(e)}"
    return None


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def load_agent_networks(agent, checkpoint: str | Path) -> None:
    """Load every network of ``agent`` (policy, its running average, value) from a checkpoint folder."""
    for name, net in agent.networks().items():
        net.load_state_dict(load_trunk(Path(checkpoint), name).state_dict())


def export_checkpoint(agent, checkpoint: str | Path, out_dir: str | Path, info: dict | None = None) -> Path:
    """Write the inference model of an earlier checkpoint (``RUN/checkpoints/step_N``) to ``out_dir``.

    ``agent`` must be built with the run's config (``deepexposure train --out RUN --export-step N``
    does that from ``RUN/config.json``). The model is what ``RUN/model/`` held right after that
    checkpoint was written, so a checkpoint chosen on a validation set can be shipped.
    """
    checkpoint = Path(checkpoint)
    if not (checkpoint / "state.json").exists():
        raise FileNotFoundError(f"{checkpoint}: not a complete checkpoint (no state.json)")
    load_agent_networks(agent, checkpoint)
    step = int(json.loads((checkpoint / "state.json").read_text())["step"])
    agent.save_model(Path(out_dir), {"trained_steps": step, **(info or {})})
    return Path(out_dir)
