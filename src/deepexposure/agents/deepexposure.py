"""The DeepExposure agent (Yu et al. 2018): one exposure per segment, in turn, then fusion.

Rollout (Algorithms 1-3 of the supplement), for a thumbnail ``S0`` with ordered segment masks
``m_1..m_T``::

    S^l_0 = S0
    for t = 0 .. T-1:
        seg_t     = S0 * m_t                                   (the segment's sub-image)
        e_t       = pi(S0, seg_t, S^l_t) + OU_t                 (OU noise only while training)
        S^g_{t+1} = global_exposure(S0, e_t)                    (S0 * 2^e_t in linear light)
        S^l_{t+1} = local_exposure(S^l_t, m_t, e_t)             (exposure inside segment t only)
    S^f = exposure_fusion([S0, S^g_1, ..., S^g_T])              (Mertens, eq. 16 / supp. eq. 31)

Everything is differentiable, so the deterministic policy gradient (eq. 7-10) flows from the
critic through the transition into the policy ("generative loss approximation", section 2.4).
``DeepExposureConfig.policy_gradient`` chooses how far it flows:

- ``"paper"`` (the default for new runs; sections 2.1-2.5, supplement A-C): the roll-out takes
  noisy actions and keeps its states without a graph; step ``t`` contributes one term at the
  noiseless action ``a_t = pi(s_t)``, differentiated through its own transition only
  (:meth:`DeepExposureAgent.paper_terms`). Credit reaches the early steps only through DE I's value
  network, or through DE II's per-step discriminator scores.
- ``"direct"`` (the behaviour before the option existed; saved configs without the field get it):
  the episode's objective is back-propagated through the fusion and every step of the unrolled
  noisy episode (:meth:`DeepExposureAgent.direct_objective`); DE I's value terms are added to it.

- **DeepExposure I**: a value network ``V(S^l_t)`` trained by TD (eq. 6, 11) with
  ``r_t = 0`` for ``t < T-1`` and ``r_{T-1} = R = D(S^f) + w_l D(S^l_T)``; the policy ascends
  ``Q(s_t, a_t) = r_t + gamma V(S^l_{t+1})``.
- **DeepExposure II**: no value network; ``V(s_t) = D(.) gamma^{T-t}`` (eq. 14-15, supplement B-C),
  with the final image approximated by ``S^l_{t+1}`` at step ``t``. The advantage
  ``A_t = D (gamma - 1) gamma^{T-1-t}`` has a negative constant; as the paper says, that constant
  is folded into the learning rate, *with its sign*, so that the policy ascends
  ``sum_t gamma^{T-1-t} D(S^l_{t+1}) / sum_t gamma^{T-1-t}`` plus the final reward ``D(S^f)`` — it
  is pushed towards *higher* discriminator scores (tested).

The reward on ``S^l`` follows section 4 ("the discriminator reward can be applied directly to the
finally local direct fusion image S^l").
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..filters import global_exposure, local_exposure
from ..fusion import FusionConfig, exposure_fusion
from ..local import as_render, check_render
from ..nets import Trunk, TrunkConfig, frozen, update_average
from ..pretrained import from_pretrained, save_pretrained
from ..recipe import Recipe, fusion_op
from ..resize import make_thumbnail as thumbnail
from ..segment import SegmentConfig, segment_thumbnail
from ..threads import torch_threads

__all__ = [
    "DeepExposureConfig",
    "DeepExposureLocalMethod",
    "DeepExposureLocalFusionMethod",
    "ExposurePolicy",
    "OUNoise",
    "Rollout",
    "rollout",
    "policy_steps",
    "de2_advantage_weights",
    "de2_policy_weights",
    "DeepExposureAgent",
    "DeepExposureMethod",
    "ExplicitExposuresMethod",
    "thumbnail",
    "DEFAULT_MODEL_DIR",
    "POLICY_GRADIENTS",
    "PaperTerms",
]

#: values of :attr:`DeepExposureConfig.policy_gradient`
POLICY_GRADIENTS = ("paper", "direct")

#: the default model shipped inside the package
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights" / "deepexposure"


@dataclass
class DeepExposureConfig:
    """Hyper-parameters of DeepExposure I/II (paper section 5.1 and footnote 2)."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"algo": ("de1", "de2"), "policy_gradient": POLICY_GRADIENTS, "render": ("fused", "local"),
                                                   "pretrain_target": ("render", "exposures")}
    """allowed values of the string options (shown by --help, checked by argparse)."""

    algo: str = "de2"
    """'de1' (value network, TD) or 'de2' (discriminator as value function)."""
    n_segments: int = 5
    """T: segments, and so exposure steps, per image."""
    ev_max: float = 3.0
    """policy output range: e = ev_max * tanh(raw), in [-ev_max, ev_max] EV."""
    base_channels: int = 32
    """channels of the first convolution of each network (doubled per layer)."""
    image_size: int = 64
    """training thumbnails are image_size x image_size (the paper: 64)."""
    gamma: float = 0.99
    """discount factor."""
    ou_theta: float = 0.015
    """Ornstein-Uhlenbeck mean reversion (paper footnote 2)."""
    ou_mu: float = 0.0
    """Ornstein-Uhlenbeck mean."""
    ou_sigma: float = 0.03
    """Ornstein-Uhlenbeck noise scale."""
    lr_policy: float = 1.5e-5
    """Adam learning rate of the policy."""
    lr_value: float = 5e-4
    """Adam learning rate of the value network (DE I only)."""
    lr_policy_final: float = 1e-3
    """the policy's learning rate decays exponentially to this fraction of its start."""
    lr_value_final: float = 1e-2
    """the value network's learning rate decays exponentially to this fraction of its start."""
    local_reward_weight: float = 1.0
    """w_l: weight of D(S^l) next to D(S^f) in the reward (section 4)."""
    policy_gradient: str = "paper"
    """how the policy's gradient is formed: 'paper' (sections 2.1-2.5, supplement C: roll out with OU
    noise without a graph across steps, then one deterministic-policy-gradient term per step at the
    noiseless action a_t = pi(s_t), through that step's transition only, scored by the value network
    (DE I) or by the discriminator with the advantage weights (DE II)) or 'direct' (the final reward
    back-propagated through the fusion and every step of the noisy episode: the behaviour before this
    option existed, and what a saved run config without this field gets)."""
    render: str = "fused"
    """the renderer the policy is trained for and its model records for inference: 'fused' (the
    paper: the bracket of exposures, fused) or 'local' (each segment's exposure through its own mask,
    S^l_T; at full resolution the edge-aware masks of deepexposure.local). It sets what supervised
    pre-training (--pretrain-steps) fits to the references; retouch --render overrides it."""
    pretrain_target: str = "render"
    """what supervised pre-training (--pretrain-steps) fits: 'render' (the rendered image against the
    reference, through the renderer named by render) or 'exposures' (each segment's exposure against
    the one that maps the input onto the reference inside it, with teacher forcing; about five times
    cheaper per step; deepexposure.pretrain). Neither is in the paper."""
    ev_penalty: float = 0.0
    """lambda_e: the policy maximises its objective minus lambda_e * mean(e_t^2) (not in the paper; 0
    turns it off). Without it a short run can drive the exposures to +-ev_max, where tanh's gradient
    vanishes and the fusion just picks pixels from the extremes. In our 1,500-step CPU runs 3 kept
    the exposures moderate and 0.5 did not (benchmarks/results/default_model_runs.md)."""
    adam_betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas of policy and value optimisers."""
    policy_ema: float = 0.0
    """beta of an exponential moving average of the policy's weights, updated after every policy
    step (0: off; not in the paper). With it on, the exported model and the sample grids use the
    average, which smooths the step-to-step swings of adversarial training (0.99 averages over
    about the last 100 steps)."""
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    """thumbnail segmentation (n_segments is copied from above)."""
    fusion: FusionConfig = field(default_factory=FusionConfig)
    """exposure fusion settings used in training and recorded for inference."""

    def __post_init__(self):
        if isinstance(self.segment, dict):
            self.segment = SegmentConfig(**self.segment)
        if isinstance(self.fusion, dict):
            self.fusion = FusionConfig(**self.fusion)
        self.adam_betas = tuple(self.adam_betas)
        self.segment = dataclasses.replace(self.segment, n_segments=self.n_segments)  # a copy: the caller's config is left alone
        if self.algo not in ("de1", "de2"):
            raise ValueError(f"algo must be 'de1' or 'de2', got {self.algo!r}")
        if self.policy_gradient not in POLICY_GRADIENTS:
            raise ValueError(f"policy_gradient must be one of {POLICY_GRADIENTS}, got {self.policy_gradient!r}")
        if self.render not in ("fused", "local"):
            raise ValueError(f"render must be 'fused' or 'local', got {self.render!r}")
        if self.pretrain_target not in ("render", "exposures"):
            raise ValueError(f"pretrain_target must be 'render' or 'exposures', got {self.pretrain_target!r}")

    @classmethod
    def upgrade_saved(cls, saved: dict) -> dict:
        """Fill in what a config saved before a field existed meant: ``policy_gradient='direct'``.

        A dict counts as saved (a run's ``config.json``) when it holds the nested ``segment`` settings,
        which every saved :meth:`to_dict` has and no command line sets. New runs get the defaults.
        """
        out = dict(saved)
        if "segment" in out and "policy_gradient" not in out:
            out["policy_gradient"] = "direct"
        return out

    @classmethod
    def from_dict(cls, saved: dict) -> DeepExposureConfig:
        """Rebuild a config from :meth:`to_dict` output (old runs' dicts via :meth:`upgrade_saved`)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cls.upgrade_saved(saved).items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


class ExposurePolicy(nn.Module):
    """``pi(S0, seg_t, S^l_t) -> e_t``: the 9-channel trunk, output squashed to ``[-ev_max, ev_max]``."""

    def __init__(self, trunk: Trunk, ev_max: float = 3.0):
        super().__init__()
        self.trunk = trunk
        self.ev_max = float(ev_max)

    @classmethod
    def create(cls, base_channels: int = 32, ev_max: float = 3.0, image_size: int = 64) -> ExposurePolicy:
        cfg = TrunkConfig(9, 1, base_channels, image_size, kind="deepexposure-policy")
        return cls(Trunk(cfg), ev_max)

    def forward(self, s0: torch.Tensor, seg: torch.Tensor, s_local: torch.Tensor) -> torch.Tensor:
        """``(B,3,h,w) x 3 -> (B,)`` exposure values in EV."""
        raw = self.trunk(torch.cat([s0, seg, s_local], dim=1)).squeeze(1)
        return self.ev_max * torch.tanh(raw)


class OUNoise:
    """Ornstein-Uhlenbeck process ``x <- x + theta (mu - x) + sigma N(0, 1)`` (dt = 1), one per batch slot.

    The state persists across episodes (it is part of the checkpoint), giving slowly varying
    exploration offsets with stationary std ``sigma / sqrt(2 theta - theta^2)``.
    """

    def __init__(self, size: int, theta: float, mu: float, sigma: float):
        self.theta, self.mu, self.sigma = theta, mu, sigma
        self.state = torch.full((size,), float(mu))

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.state.shape, generator=generator)
        self.state = self.state + self.theta * (self.mu - self.state) + self.sigma * noise
        return self.state.clone()


def de2_advantage_weights(t_steps: int, gamma: float) -> torch.Tensor:
    """Eq. (15) / supplement eq. (19) constants ``(gamma - 1) gamma^{T-1-t}`` for steps ``t = 0..T-1``.

    ``A(s_t, a_t) = D * (gamma - 1) * gamma^{T-1-t}`` (0-based ``t``; the paper's ``t`` is 1-based).
    """
    t = torch.arange(t_steps, dtype=torch.float64)
    return (gamma - 1.0) * gamma ** (t_steps - 1 - t)


def de2_policy_weights(t_steps: int, gamma: float) -> torch.Tensor:
    """Weights the DE II policy *ascends* ``D(S^l_{t+1})`` with: ``-A_t / D / (1 - gamma)``, normalised to sum 1.

    Dividing by the positive ``1 - gamma`` folds the constant into the learning rate; the sign flip
    makes gradient *ascent* on the objective raise the discriminator's score.
    """
    w = -de2_advantage_weights(t_steps, gamma) / (1.0 - gamma)
    return w / w.sum()


@dataclass
class Rollout:
    """One batch of episodes. ``evs (B,T)``; ``local[t] = S^l_t`` for ``t = 0..T``; ``stack (B,T+1,3,h,w)`` = ``[S0, S^g_1..T]``; ``fused (B,3,h,w)``."""

    evs: torch.Tensor
    local: list[torch.Tensor]
    stack: torch.Tensor
    fused: torch.Tensor


def rollout(
    policy: ExposurePolicy,
    s0: torch.Tensor,
    masks: torch.Tensor,
    fusion_cfg: FusionConfig,
    noise: torch.Tensor | None = None,
) -> Rollout:
    """Run the policy over all segments (see module docstring).

    Args:
        s0: ``(B, 3, h, w)`` sRGB thumbnails in [0, 1].
        masks: ``(B, T, 1, h, w)`` ordered segment masks.
        noise: optional ``(B, T)`` exploration noise added to the policy's output.
    """
    globals_ = [s0]
    evs, locals_ = policy_steps(policy, s0, masks, noise, on_step=lambda ev: globals_.append(global_exposure(s0, ev)))
    stack = torch.stack(globals_, dim=1)
    fused = exposure_fusion(stack, fusion_cfg).clamp(0.0, 1.0)
    return Rollout(evs, locals_, stack, fused)


def policy_steps(
    policy: ExposurePolicy,
    s0: torch.Tensor,
    masks: torch.Tensor,
    noise: torch.Tensor | None = None,
    on_step: Callable[[torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The policy's decisions of a rollout: ``e_t = pi(S0, S0 * m_t, S^l_t)`` and
    ``S^l_{t+1} = local_exposure(S^l_t, m_t, e_t)`` for each segment in turn, without the global
    exposures and their fusion (all that inference needs; :func:`rollout` adds them).

    Args:
        s0, masks, noise: as :func:`rollout`.
        on_step: called with each step's ``(B, 1)`` exposure before ``S^l_{t+1}`` is computed.
    Returns:
        ``(evs (B, T), [S^l_0, ..., S^l_T])``.
    """
    s_local = s0
    locals_ = [s0]
    evs = []
    for t in range(masks.shape[1]):
        m = masks[:, t]
        e = policy(s0, s0 * m, s_local)
        if noise is not None:
            e = e + noise[:, t].to(e)
        evs.append(e)
        ev = e.unsqueeze(1)
        if on_step is not None:
            on_step(ev)
        s_local = local_exposure(s_local, m, ev)
        locals_.append(s_local)
    return torch.stack(evs, dim=1), locals_


class DeepExposureAgent(nn.Module):
    """Networks and losses of DeepExposure I/II, driven by :class:`deepexposure.train.Trainer`.

    The trainer owns the discriminator, the data and the schedule; the agent owns the policy
    (and the value network for DE I), their optimisers, the OU process and the per-image masks.
    """

    #: :meth:`train_step` takes ``references`` (paired training, ``Trainer(references=...)``)
    supports_references = True
    #: metrics of :meth:`train_step` beyond the trainer's own log columns (none)
    log_fields: tuple[str, ...] = ()
    #: the rows of each global batch this process computes (a multi-process run sets them; deepexposure.distributed)
    rows: slice = slice(None)

    def __init__(self, cfg: DeepExposureConfig, batch_size: int):
        super().__init__()
        self.cfg = cfg
        self.policy = ExposurePolicy.create(cfg.base_channels, cfg.ev_max, cfg.image_size)
        self.value: Trunk | None = None
        if cfg.algo == "de1":
            vcfg = TrunkConfig(6, 1, cfg.base_channels, cfg.image_size, kind="deepexposure-value")
            self.value = Trunk(vcfg)
        self.opt_policy = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr_policy, betas=cfg.adam_betas)
        self.opt_value: torch.optim.Optimizer | None = (
            torch.optim.Adam(self.value.parameters(), lr=cfg.lr_value, betas=cfg.adam_betas) if self.value else None
        )
        self.ou = OUNoise(batch_size, cfg.ou_theta, cfg.ou_mu, cfg.ou_sigma)
        if not 0.0 <= cfg.policy_ema < 1.0:
            raise ValueError(f"policy_ema must be in [0, 1), got {cfg.policy_ema}")
        self.policy_avg: ExposurePolicy | None = copy.deepcopy(self.policy).requires_grad_(False) if cfg.policy_ema > 0 else None
        self.masks: torch.Tensor | None = None  # (N_inputs, T, 1, h, w), set by prepare()

    # -- trainer interface -------------------------------------------------------------------
    def prepare(self, inputs: torch.Tensor, progress=None) -> None:
        """Segment every training thumbnail once (cached for the run)."""
        masks = []
        it = range(inputs.shape[0])
        for i in progress(it) if progress else it:
            masks.append(segment_thumbnail(inputs[i : i + 1], self.cfg.segment).masks)
        self.masks = torch.stack(masks).to(inputs.device)

    def pretrain_step(self, idx: torch.Tensor, inputs: torch.Tensor, references: torch.Tensor) -> dict[str, float]:
        """One supervised step on ``inputs[idx]`` against ``references[idx]`` (:mod:`deepexposure.pretrain`; not in the paper)."""
        from ..pretrain import pretrain_step

        return pretrain_step(self, self.opt_policy, inputs[idx], references[idx], self._masks()[idx])

    def unroll(self, s0: torch.Tensor, masks: torch.Tensor, noise: torch.Tensor | None = None) -> Rollout:
        """:func:`rollout` of the training policy with the agent's fusion settings (differentiable)."""
        return rollout(self.policy, s0, masks, self.cfg.fusion, noise)

    def _masks(self) -> torch.Tensor:
        if self.masks is None:
            raise RuntimeError("DeepExposureAgent: call prepare(inputs) first")
        return self.masks

    def prepare_rows(self, rows: torch.Tensor, inputs: torch.Tensor) -> None:
        """Re-segment the training thumbnails ``rows`` after they were replaced by ``inputs`` ``(len(rows), 3, S, S)``
        (nothing to do before :meth:`prepare`, which segments every row)."""
        if self.masks is None:
            return
        for r, x in zip(rows.tolist(), inputs):
            masks = self._masks()
            masks[r] = segment_thumbnail(x.unsqueeze(0).cpu(), self.cfg.segment).masks.to(masks)

    def networks(self) -> dict[str, Trunk]:
        nets = {"policy": self.policy.trunk}
        if self.policy_avg is not None:
            nets["policy_ema"] = self.policy_avg.trunk
        if self.value is not None:
            nets["value"] = self.value
        return nets

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts: dict[str, torch.optim.Optimizer] = {"policy": self.opt_policy}
        if self.opt_value is not None:
            opts["value"] = self.opt_value
        return opts

    def lr_schedule(self) -> dict[str, tuple[float, float]]:
        """optimiser name -> (initial lr, final fraction) for exponential decay."""
        s = {"policy": (self.cfg.lr_policy, self.cfg.lr_policy_final)}
        if self.value is not None:
            s["value"] = (self.cfg.lr_value, self.cfg.lr_value_final)
        return s

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"ou_state": self.ou.state.clone()}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.ou.state = state["ou_state"].clone()

    def _noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``(n, T)`` exploration noise: the OU process steps for the whole batch, this process takes its :attr:`rows`."""
        cols = [self.ou.sample(generator)[self.rows][:n] for _ in range(self.cfg.n_segments)]
        return torch.stack(cols, dim=1)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Machine-retouched thumbnails for discriminator pre-training: ``(B, 3, h, w)``."""
        r = rollout(self.policy, inputs[idx], self._masks()[idx], self.cfg.fusion, self._noise(len(idx), generator))
        return r.fused

    @torch.no_grad()
    def generate_eval(self, idx: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Deterministic outputs (no exploration noise, OU state untouched), for sample grids: ``(B, 3, h, w)``."""
        return self.output(rollout(self.exported_policy, inputs[idx], self._masks()[idx], self.cfg.fusion))

    def output(self, r: Rollout) -> torch.Tensor:
        """The episode's result for the renderer the policy is trained for: ``S^f`` (``render='fused'``)
        or ``S^l_T`` (``render='local'``: each segment by its own exposure), ``(B, 3, h, w)``."""
        return r.local[-1] if self.cfg.render == "local" else r.fused

    @property
    def exported_policy(self) -> ExposurePolicy:
        """The policy the model export and sample grids use: the weight average if ``policy_ema`` > 0."""
        return self.policy_avg if self.policy_avg is not None else self.policy

    def _update_average(self) -> None:
        assert self.policy_avg is not None
        update_average(self.policy_avg, self.policy, self.cfg.policy_ema)

    def reward(self, disc: nn.Module, r: Rollout) -> torch.Tensor:
        """``R = D(S^f) + w_l D(S^l_T)``, ``(B,)`` (``render='local'``: ``S^l_T`` in place of ``S^f``)."""
        out = disc(self.output(r)).squeeze(1)
        if self.cfg.local_reward_weight:
            out = out + self.cfg.local_reward_weight * disc(r.local[-1]).squeeze(1)
        return out

    def train_step(
        self, idx: torch.Tensor, inputs: torch.Tensor, disc: nn.Module, generator: torch.Generator,
        references: torch.Tensor | None = None, fidelity_weight: float = 0.0,
    ) -> tuple[dict[str, float], torch.Tensor]:
        """One asynchronous update: roll out N images x T steps, apply the collected gradients once.

        The policy's gradient follows ``cfg.policy_gradient`` (:meth:`paper_terms` or
        :meth:`direct_objective`); DE I's value network is then trained by TD on the noisy roll-out.

        With ``references`` (``(N_in, 3, S, S)``, row ``i`` the reference of ``inputs[i]``; not in the
        paper), every score the agent maximises is :class:`deepexposure.gan.FidelityScore`'s
        ``D(S) - w * MSE(S, reference)`` instead of ``D(S)``.

        With ``cfg.render == 'local'`` the episode's result is ``S^l_T`` instead of the fused ``S^f``
        wherever the paper scores ``S^f`` (reward, final term, the discriminator's fakes, the fidelity).

        Returns ``(metrics, fakes)``; ``fakes`` are the outputs (:meth:`output`) of the noisy roll-out
        for the discriminator (memory M1).
        """
        cfg = self.cfg
        refs = references[idx].to(inputs) if references is not None else None
        score = _Scorer(disc, refs, fidelity_weight)
        with frozen(disc):  # the scores' gradients reach the actions, not the critic
            s0, masks = inputs[idx], self._masks()[idx].to(inputs)
            noise = self._noise(len(idx), generator)
            with frozen(self.value):
                if cfg.policy_gradient == "direct":
                    objective, r, reward, d_fused = self.direct_objective(s0, masks, noise, score)
                else:
                    terms = self.paper_terms(s0, masks, noise, score)
                    objective, r, reward, d_fused = terms.objective, terms.rollout, terms.reward, terms.d_fused
            loss_pi = -objective.mean()
            self.opt_policy.zero_grad(set_to_none=True)
            loss_pi.backward()
            self.opt_policy.step()
            if self.policy_avg is not None:
                self._update_average()
            metrics: dict[str, float] = {"policy_objective": objective.mean().item(), "d_fused": d_fused.mean().item()}
            if cfg.algo == "de1":
                metrics.update(self._value_step([x.detach() for x in r.local], reward.detach()))
        evs = r.evs.detach()
        metrics["ev_mean"] = float(evs.mean())
        metrics["ev_std"] = float(evs.std()) if evs.numel() > 1 else 0.0
        out = self.output(r).detach()
        if refs is not None:
            metrics["fidelity_mse"] = float((out - refs).pow(2).mean())
        return metrics, out

    def direct_objective(self, s0: torch.Tensor, masks: torch.Tensor, noise: torch.Tensor, score) -> tuple:
        """``policy_gradient='direct'``: the objective back-propagated through the whole noisy episode.

        DE II: ``D(S^f) + w_l sum_t w_t D(S^l_{t+1})`` (``w_t`` = :func:`de2_policy_weights`); DE I:
        ``R + sum_{t<T-1} gamma V(S^l_{t+1})`` with ``R = D(S^f) + w_l D(S^l_T)``; both minus the EV
        penalty. The gradient reaches every action through the fusion and through every later state
        of the unrolled episode, at the noisy actions. Returns ``(objective (B,), rollout, R (B,) or
        None, D(S^f) (B,))``.
        """
        cfg = self.cfg
        r = rollout(self.policy, s0, masks, cfg.fusion, noise)
        b, t_steps = s0.shape[0], masks.shape[1]
        reward = None
        if cfg.algo == "de2":
            d = score(torch.cat([self.output(r), *r.local[1:]])).view(t_steps + 1, b)  # one discriminator call
            d_fused, d_local = d[0], d[1:].t()  # (B,), (B,T)
            w = de2_policy_weights(t_steps, cfg.gamma).to(s0)
            objective = d_fused + cfg.local_reward_weight * (d_local * w).sum(1)
        else:
            d = score(torch.cat([self.output(r), r.local[-1]])).view(2, b)
            d_fused = d[0]
            reward = d_fused + cfg.local_reward_weight * d[1]
            objective = reward
            if t_steps > 1:  # Q(s_t, a_t) = r_t + gamma V(S^l_{t+1}); r_t = 0 before the last step
                assert self.value is not None  # de1
                v = self.value(_vfeat(torch.cat(r.local[1:t_steps]))).view(t_steps - 1, b)
                objective = objective + cfg.gamma * v.sum(0)
        if cfg.ev_penalty:
            objective = objective - cfg.ev_penalty * r.evs.pow(2).mean(1)
        return objective, r, reward, d_fused

    def paper_terms(self, s0: torch.Tensor, masks: torch.Tensor, noise: torch.Tensor, score) -> PaperTerms:
        """``policy_gradient='paper'``: one deterministic policy gradient term per step (eq. 7-10, 14-15).

        The behaviour roll-out takes the noisy actions ``e_t = a_t + OU_t`` with ``a_t = pi(s_t)``; its
        states are kept without a graph (no gradient crosses steps). Step ``t``'s term is evaluated at
        the noiseless ``a_t`` through that step's transition only,
        ``S'_{t+1} = local_exposure(S^l_t, m_t, a_t)`` with ``S^l_t`` the stored behaviour state:

        - DE I: ``Q(s_t, a_t) = gamma V(S'_{t+1})`` for ``t < T-1`` (``r_t = 0``) and
          ``Q = r_{T-1} = D(S'^f) + w_l D(S'_T)`` at the last step (terminal ``V = 0``);
        - DE II: ``w_l w_t D(S'_{t+1})`` with ``w_t`` = :func:`de2_policy_weights` (eq. 14-15, the
          advantage's negative constant folded into the learning rate), plus ``D(S'^f)`` at the last step.

        ``S'^f`` is the fusion of ``[S0, S^g_1, .., S^g_{T-1}]`` from the behaviour roll-out (stored,
        no graph) and ``global_exposure(S0, a_{T-1})``: the last action is the one that completes the
        episode, the earlier exposures are part of its state (``render='local'``: ``S'^f`` is
        ``S'_T``, the last step's own transition). ``- lambda_e a_t^2 / T`` is added to each
        term when ``ev_penalty`` is set. The value subtracted in the advantage ``Q - V(s_t)`` does not
        depend on ``a_t``, so it is left out.
        """
        cfg = self.cfg
        b, t_steps = s0.shape[0], masks.shape[1]
        s_local = s0.detach()
        locals_, globals_, acts, evs, one_step = [s_local], [s0.detach()], [], [], []
        for t in range(t_steps):
            m = masks[:, t]
            a = self.policy(s0, s0 * m, s_local)  # graph in the policy's weights only
            acts.append(a)
            one_step.append(local_exposure(s_local, m, a.unsqueeze(1)))
            with torch.no_grad():
                e = (a + noise[:, t].to(a)).unsqueeze(1)
                evs.append(e.squeeze(1))
                globals_.append(global_exposure(s0, e))
                s_local = local_exposure(s_local, m, e)
            locals_.append(s_local)
        with torch.no_grad():
            stack = torch.stack(globals_, dim=1)
            fused = exposure_fusion(stack, cfg.fusion).clamp(0.0, 1.0)
            behaviour = Rollout(torch.stack(evs, dim=1), locals_, stack, fused)
            d_beh = score(torch.cat([self.output(behaviour), s_local])).view(2, b)
            reward = d_beh[0] + cfg.local_reward_weight * d_beh[1]
        if cfg.render == "local":  # the episode's result is S^l_T: the last one-step transition
            fused_last = one_step[-1]
        else:
            last = global_exposure(s0, acts[-1].unsqueeze(1)).unsqueeze(1)
            fused_last = exposure_fusion(torch.cat([stack[:, :t_steps], last], dim=1), cfg.fusion).clamp(0.0, 1.0)
        a_all = torch.stack(acts, dim=1)  # (B,T)
        if cfg.algo == "de2":
            d = score(torch.cat([fused_last, *one_step])).view(t_steps + 1, b)
            w = de2_policy_weights(t_steps, cfg.gamma).to(s0)
            terms = cfg.local_reward_weight * d[1:].t() * w
            terms = torch.cat([terms[:, :-1], (terms[:, -1] + d[0]).unsqueeze(1)], dim=1)
        else:
            d = score(torch.cat([fused_last, one_step[-1]])).view(2, b)
            last_q = d[0] + cfg.local_reward_weight * d[1]
            if t_steps > 1:
                assert self.value is not None  # de1
                v = self.value(_vfeat(torch.cat(one_step[:-1]))).view(t_steps - 1, b).t()
                terms = torch.cat([cfg.gamma * v, last_q.unsqueeze(1)], dim=1)
            else:
                terms = last_q.unsqueeze(1)
        if cfg.ev_penalty:
            terms = terms - cfg.ev_penalty * a_all.pow(2) / t_steps
        return PaperTerms(terms, terms.sum(1), a_all, behaviour, reward, d_beh[0])

    def _value_step(self, local: list[torch.Tensor], reward: torch.Tensor) -> dict[str, float]:
        """TD(0), eq. (6)/(11): ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``, terminal ``V = 0``."""
        t_steps = len(local) - 1
        b = local[0].shape[0]
        assert self.value is not None and self.opt_value is not None  # de1
        v = self.value(_vfeat(torch.cat(local[:t_steps]))).view(t_steps, b).t()  # (B,T), one call
        targets = td_targets(v.detach(), reward, self.cfg.gamma)
        loss = 0.5 * ((targets - v) ** 2).mean()
        self.opt_value.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_value.step()
        return {"value_loss": loss.item()}

    # -- export ------------------------------------------------------------------------------
    def save_model(self, directory: str | Path, info: dict | None = None) -> None:
        """Write the inference model folder (:func:`~deepexposure.pretrained.save_pretrained`): ``config.json`` + ``model.safetensors``."""
        config = {
            "method": "deepexposure",
            "algo": self.cfg.algo,
            "ev_max": self.exported_policy.ev_max,
            "n_segments": self.cfg.n_segments,
            "image_size": self.cfg.image_size,
            "segment": self.cfg.segment.to_dict(),
            "fusion": asdict(self.cfg.fusion),
            "render": self.cfg.render,
            **(info or {}),
        }
        save_pretrained(directory, self.exported_policy.trunk, config)


@dataclass
class PaperTerms:
    """The ``policy_gradient='paper'`` pieces of one update.

    ``terms (B,T)``: step ``t``'s deterministic-policy-gradient objective (its gradient reaches
    ``a_t`` only); ``objective (B,)`` their sum; ``actions (B,T)`` the noiseless ``a_t = pi(s_t)``;
    ``rollout`` the noisy behaviour roll-out (no graph); ``reward (B,)`` its ``R = D(S^f) + w_l D(S^l_T)``
    (the TD target of DE I's value network); ``d_fused (B,)`` its ``D(S^f)``.
    """

    terms: torch.Tensor
    objective: torch.Tensor
    actions: torch.Tensor
    rollout: Rollout
    reward: torch.Tensor
    d_fused: torch.Tensor


class _Scorer:
    """``imgs (k*B, 3, h, w) -> (k*B,)``: the discriminator, or with references :class:`FidelityScore`.

    ``k`` stacked batches of the same ``B`` images' states are scored in one call, each against the
    reference of its row (the references repeat ``k`` times).
    """

    def __init__(self, disc: nn.Module, refs: torch.Tensor | None, weight: float):
        self.disc, self.refs, self.weight = disc, refs, weight

    def __call__(self, imgs: torch.Tensor) -> torch.Tensor:
        if self.refs is None:
            return self.disc(imgs).squeeze(1)
        from ..gan import FidelityScore

        k = imgs.shape[0] // self.refs.shape[0]
        return FidelityScore(self.disc, self.refs.repeat(k, 1, 1, 1), self.weight)(imgs).squeeze(1)


def _vfeat(img: torch.Tensor) -> torch.Tensor:
    from ..gan import disc_features

    return disc_features(img)


def td_targets(values: torch.Tensor, reward: torch.Tensor, gamma: float) -> torch.Tensor:
    """TD(0) targets ``y_t = r_t + gamma V(s_{t+1})`` with ``r_t = 0`` (t < T-1), ``r_{T-1} = R``, ``V(s_T) = 0``.

    Args:
        values: ``(B, T)`` current estimates ``V(s_t)``.
        reward: ``(B,)`` terminal reward ``R``.
    """
    nxt = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    r = torch.zeros_like(values)
    r[:, -1] = reward
    return r + gamma * nxt


# -- inference (Algorithm 3) -----------------------------------------------------------------


class DeepExposureMethod:
    """Algorithm 3: thumbnail -> segments -> sequential exposures from the policy -> full-res fusion."""

    name = "deepexposure"

    def __init__(self, model: str | Path | None = None, n_segments: int | None = None, render: str | None = None):
        self.render = check_render(render) if render is not None else None
        loaded = from_pretrained(model, "deepexposure", DEFAULT_MODEL_DIR)  # every file checked before allocating
        self.model_dir, self.meta = loaded.path, loaded.config
        self.policy = ExposurePolicy(loaded.trunk, self.meta.get("ev_max", 3.0)).eval()
        self.segment_cfg = SegmentConfig(**self.meta["segment"])
        if n_segments:
            self.segment_cfg = dataclasses.replace(self.segment_cfg, n_segments=int(n_segments))
        self.fusion_cfg = FusionConfig(**self.meta["fusion"])
        self.size = int(self.meta.get("image_size", 64))
        if self.render is None:  # the renderer the model was trained for (older models: fused)
            self.render = check_render(str(self.meta.get("render", "fused")))

    def exposures(self, img_srgb: torch.Tensor):
        """Decide on the thumbnail: returns ``(evs list, segmentation)``."""
        s0 = thumbnail(img_srgb, self.size)
        with torch.no_grad(), torch_threads(1):  # thumbnail-sized ops (deepexposure.threads)
            seg = segment_thumbnail(s0, self.segment_cfg)
            evs, _ = policy_steps(self.policy, s0, seg.masks.unsqueeze(0).to(s0))
        return [float(e) for e in evs[0]], seg

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        evs, seg = self.exposures(img_srgb)
        name = self.meta.get("name", self.model_dir.name)
        return as_render(Recipe(
            ops=[fusion_op(evs, self.fusion_cfg)],
            method={"name": self.name, "model": name, "algo": self.meta.get("algo"), "model_path": str(self.model_dir)},
            segments=seg.summary(),
            segment_map=seg.label_rows(),
            notes=[f"exposure t of the fused bracket was chosen by the policy while looking at segment t (darkest first), on a {self.size}x{self.size} thumbnail"],
        ), self.render or "fused")


class DeepExposureLocalMethod(DeepExposureMethod):
    """``deepexposure-local``: the policy's exposures rendered per region through edge-aware masks (``render='local'``)."""

    def __init__(self, model: str | Path | None = None, n_segments: int | None = None, render: str | None = "local"):
        super().__init__(model, n_segments, render)


class DeepExposureLocalFusionMethod(DeepExposureMethod):
    """``deepexposure-local-fusion``: the same, then fused with the original (``render='local+fusion'``)."""

    def __init__(self, model: str | Path | None = None, n_segments: int | None = None, render: str | None = "local+fusion"):
        super().__init__(model, n_segments, render)


class ExplicitExposuresMethod:
    """User-given exposures, one per segment (``--exposures``): segments are still computed for the recipe."""

    name = "exposures"

    def __init__(self, evs: list[float], fusion: FusionConfig | None = None, size: int = 64, render: str = "fused", **seg_options):
        self.render = check_render(render)
        if not evs:
            raise ValueError("--exposures needs at least one value")
        self.evs = [float(e) for e in evs]
        self.fusion_cfg = fusion or FusionConfig()
        self.segment_cfg = SegmentConfig(n_segments=len(self.evs), **seg_options)
        self.size = size

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        seg = segment_thumbnail(thumbnail(img_srgb, self.size), self.segment_cfg)
        return as_render(Recipe(
            ops=[fusion_op(self.evs, self.fusion_cfg)],
            method={"name": self.name},
            segments=seg.summary(),
            segment_map=seg.label_rows(),
        ), self.render)
