"""The white-box "Exposure" agent (Hu et al. 2018): five filter edits chosen by a policy, GAN reward.

State, action and transition (sections 3.2, 5.1)::

    state   s = (image, steps taken k, used-filter flags u)          image: (B, 3, S, S) sRGB in [0, 1]
    input   x = [image, u_0 .. u_7, k / n_edits]                      12 planes, the last 9 spatially constant
    policy  (logits, raw) = Trunk(x)                                  one trunk, 8 + 40 outputs
            pi_1 = (1 - eps) softmax(logits) + eps / 8                 filter choice; sampled (train), argmax over unused filters (test)
            a_2  = FILTERS[a_1].squash(raw[slice of a_1])              that filter's parameters, deterministic
    step    s' = clamp(FILTERS[a_1].fn(image, a_2), 0, 1),  k' = k + 1,  u' = u | onehot(a_1)

Reward (sections 5.2-5.4), for one step::

    r = c (D(s') - D(s))                                   increase of the WGAN-GP discriminator's score
        - w_range mean(relu(x - 1)^2 + relu(-x)^2)         x = the filter's unclamped output (original code)
        - w_ent (log 8 + sum_F pi_1(F) log pi_1(F))        eq. (13), low-entropy penalty (0.05)
        - w_reuse [u[a_1] = 1]                             re-use of a filter (-1)

Learning (eq. 6, 7, 9, 10), with ``V`` the value network on ``(image, state planes)`` and ``gamma = 1``::

    Q     = r + gamma V(s') (1 - done)                     done: k' = n_edits (V of a finished image is 0)
    delta = Q - V(s)                                       TD error = advantage estimate
    L_pi  = -mean(Q) - mean(log pi_1(a_1) stop_grad(delta))   DPG through the filters for a_2 (eq. 7, 9),
                                                              policy gradient with advantage for a_1 (eq. 6)
    L_V   = mean(delta^2) / 2                              Q held fixed (eq. 10)

Per-region mode (``WhiteBoxConfig.regions = R > 0``; not in the paper, its future work): the
thumbnail is segmented into ``R`` 0/1 masks ``m_r`` (:func:`region_masks`); a trajectory takes
``n_edits`` steps for region 0, then region 1, ... (``R * n_edits`` in all). The policy and value
networks also see the current region's mask; a step is ``s' = s + m_r (clamp(F(s), 0, 1) - s)``
(:func:`masked_step`), so it changes nothing outside region ``r`` and stays differentiable. The
used-filter flags restart with each region. At inference the chains become a ``local_filters`` op.

The gradient of ``-Q`` reaches the parameters through the differentiable filter, the clamp-free
range penalty, the (frozen) discriminator and the (frozen) value network; it also reaches the
filter logits through the entropy penalty, as in the original code.

Supervised pre-training (:meth:`WhiteBoxAgent.pretrain_step`, not in the paper): with paired data the
policy is first fitted to the references through its own filters, by the unbiased gradient of the
expected final error (:func:`pretrain_objective`); the RL phase then continues from it.

Out-of-order training (Algorithm 1): a :class:`TrajectoryBuffer` holds ``buffer_size`` in-flight
trajectories. Each training step draws ``batch_size`` of them, replaces the finished ones by fresh
inputs, applies one step and puts the results back. Finished images wait in the buffer (they are
what the discriminator sees) until they are drawn again. The buffer starts in its steady state
(:meth:`TrajectoryBuffer.warm`), so terminal transitions anchor the value network from the first step.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..filters import FILTER_NAMES, FILTERS
from ..nets import Trunk, TrunkConfig, frozen, update_average
from ..pretrained import from_pretrained, resolve_model_dir, save_pretrained
from ..recipe import Recipe
from ..resize import make_thumbnail
from ..threads import torch_threads

__all__ = [
    "WhiteBoxConfig",
    "WhiteBoxPolicy",
    "TrajectoryBuffer",
    "StepResult",
    "Trajectory",
    "N_FILTERS",
    "N_PARAMS",
    "state_planes",
    "region_masks",
    "masked_step",
    "apply_chosen_filters",
    "policy_step",
    "rollout",
    "entropy_penalty",
    "reuse_penalty",
    "range_penalty",
    "edit_cost",
    "PretrainResult",
    "unused_log_probs",
    "pretrain_objective",
    "WhiteBoxAgent",
    "WhiteBoxMethod",
    "DEFAULT_MODEL_DIR",
]

#: the default model shipped inside the package
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights" / "whitebox"
#: number of filters = size of the discrete action space (``filters.FILTERS`` order)
N_FILTERS = len(FILTER_NAMES)
#: total number of filter parameters (40: 1 + 1 + 3 + 1 + 8 + 1 + 1 + 24)
N_PARAMS = sum(FILTERS[n].n_params for n in FILTER_NAMES)
#: state planes appended to the image: the used-filter flags and the step count
N_STATE_PLANES = N_FILTERS + 1
_IN_CHANNELS = 3 + N_STATE_PLANES


@dataclass
class WhiteBoxConfig:
    """Hyper-parameters of the white-box agent (Hu et al. 2018, sections 5.2-5.4 and Algorithm 1)."""

    n_edits: int = 5
    """filter steps per image (the paper's five edits)."""
    buffer_size: int = 256
    """in-flight trajectories in the out-of-order buffer (paper: 2,048 with batch 64; keep ~32x batch_size)."""
    base_channels: int = 32
    """channels of the first convolution of the policy and value networks (doubled per layer)."""
    image_size: int = 64
    """training thumbnails are image_size x image_size (the paper: 64)."""
    gamma: float = 1.0
    """discount factor (the paper: 1)."""
    lr_policy: float = 1.5e-5
    """Adam learning rate of the policy (filter choice and parameters; the paper: 1.5e-5)."""
    lr_value: float = 5e-4
    """Adam learning rate of the value network (the paper: 5e-4)."""
    lr_policy_final: float = 1e-3
    """the policy's learning rate decays exponentially to this fraction of its start (the paper: 1e-3)."""
    lr_value_final: float = 1e-3
    """the value network's learning rate decays exponentially to this fraction of its start (the paper: 1e-3)."""
    adam_betas: tuple[float, float] = (0.5, 0.9)
    """Adam betas of the policy and value optimisers (original code: 0.5, 0.9)."""
    disc_reward_scale: float = 0.05
    """c: the reward is c * (D(next) - D(current)) (original code's critic_logit_multiplier)."""
    entropy_penalty: float = 0.05
    """weight of the low-entropy penalty log|F| + sum pi log pi of eq. (13) (the paper: 0.05)."""
    reuse_penalty: float = 1.0
    """penalty for choosing a filter that was already used in this trajectory (the paper: 1)."""
    range_penalty: float = 1.0
    """weight of mean(relu(x-1)^2 + relu(-x)^2) on each filter's unclamped output (original code: 1)."""
    edit_penalty: float = 0.0
    """weight of an edit cost mean((s' - s)^2) on the change one step makes to the image (not in the
    paper; 0 turns it off). Without it our short CPU runs drifted to one strong look for every
    photo; the cost pulls each edit towards doing nothing unless the discriminator pays for it."""
    exploration: float = 0.05
    """eps: filters are drawn from (1 - eps) softmax + eps / 8 while training (original code: 0.05)."""
    pretrain_samples: int = 4
    """supervised pre-training (--pretrain-steps; not in the paper): filter sequences drawn per
    image; each one's baseline is the mean cost of the others (leave-one-out). At least 2."""
    policy_ema: float = 0.0
    """beta of an exponential moving average of the policy's weights, updated after every policy
    step, supervised pre-training included (0: off; not in the paper). With it on, the exported
    model and the sample grids use the average (0.99 averages over about the last 100 steps):
    checkpoints 50 steps apart differed by up to 1 dB on validation without it."""
    regions: int = 0
    """per-region mode (not in the paper; its future work): 0 = the paper's global agent; R > 0 =
    segment each thumbnail into R regions (:func:`region_masks`) and take ``n_edits`` filter steps
    for each region in turn, each applied inside that region's mask only; the model writes a
    ``local_filters`` recipe op (docs/local.md)."""

    def __post_init__(self):
        self.adam_betas = tuple(self.adam_betas)
        if self.n_edits < 1:
            raise ValueError(f"n_edits must be >= 1, got {self.n_edits}")
        if self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {self.image_size}")
        if not 0.0 <= self.exploration < 1.0:
            raise ValueError(f"exploration must be in [0, 1), got {self.exploration}")
        if self.pretrain_samples < 2:
            raise ValueError(f"pretrain_samples must be >= 2 (leave-one-out baseline), got {self.pretrain_samples}")
        if self.regions < 0:
            raise ValueError(f"regions must be >= 0 (0 = global agent), got {self.regions}")
        if not 0.0 <= self.policy_ema < 1.0:
            raise ValueError(f"policy_ema must be in [0, 1), got {self.policy_ema}")

    def to_dict(self) -> dict:
        return asdict(self)


# -- networks ---------------------------------------------------------------------------------


def state_planes(used: torch.Tensor, steps: torch.Tensor, n_edits: int, size: int) -> torch.Tensor:
    """The spatially constant state planes of section 5.1.

    Args:
        used: ``(B, 8)`` 0/1 flags, filter ``i`` of :data:`~deepexposure.filters.FILTERS` used so far.
        steps: ``(B,)`` steps taken so far (0 .. n_edits).
        n_edits: trajectory length; the step plane is ``steps / n_edits`` in [0, 1].
        size: side of the planes.
    Returns:
        ``(B, 9, size, size)``: the 8 used-filter planes, then the step plane.
    """
    vals = torch.cat([used.float(), (steps.float() / n_edits)[:, None]], dim=1)
    return vals[:, :, None, None].expand(-1, -1, size, size)


def _net_input(img: torch.Tensor, used: torch.Tensor, steps: torch.Tensor, n_edits: int,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    planes = [img] if mask is None else [img, mask.to(img)]
    return torch.cat([*planes, state_planes(used, steps, n_edits, img.shape[-1]).to(img)], dim=1)


def region_masks(thumbs: torch.Tensor, regions: int) -> torch.Tensor:
    """The per-region mode's masks: each thumbnail segmented into ``regions`` 0/1 masks.

    Args:
        thumbs: ``(B, 3, S, S)`` sRGB in [0, 1].
        regions: ``R`` (:func:`deepexposure.segment.segment_thumbnail` with ``n_segments = R``,
            regions ordered by mean luma, darkest first).
    Returns:
        ``(B, R, S, S)`` 0/1 masks, one-hot over ``R`` at every pixel.
    """
    return torch.cat([_segment(thumbs[i : i + 1], regions)[1] for i in range(thumbs.shape[0])]).to(thumbs)


def _segment(thumb: torch.Tensor, regions: int):
    """``(Segmentation, masks (1, R, S, S))`` of one thumbnail ``(1, 3, S, S)`` (missing regions: empty masks)."""
    from ..segment import SegmentConfig, segment_thumbnail

    seg = segment_thumbnail(thumb.detach().cpu(), SegmentConfig(n_segments=regions))
    masks = torch.zeros(1, regions, *thumb.shape[-2:])
    masks[0, : seg.masks.shape[0]] = seg.masks[:, 0]
    return seg, masks


class WhiteBoxPolicy(nn.Module):
    """Both policies of section 5.1 on one trunk: ``(image, state) -> (filter logits (B, 8), raw params (B, 40))``.

    ``raw[:, offset_f : offset_f + P_f]`` is filter ``f``'s slice, mapped into the filter's range by
    ``FILTERS[f].squash`` (:meth:`filter_params`). The trunk's input is the image plus the 9 state
    planes of :func:`state_planes`.

    Per-region mode (``regions = R > 0``): a trajectory is ``n_steps = R * n_edits`` steps, step
    ``k`` edits region ``k // n_edits``; the input gains that region's mask as a 4th plane (after
    the image), the used-filter flags restart with each region and the step plane is ``k / n_steps``.
    """

    def __init__(self, trunk: Trunk, n_edits: int = 5, filters: tuple[str, ...] | list[str] = FILTER_NAMES, regions: int = 0):
        super().__init__()
        names = tuple(filters)
        if names != FILTER_NAMES:
            raise ValueError(f"policy was trained for filters {names}, this build has {FILTER_NAMES}")
        if trunk.config.out_features != N_FILTERS + N_PARAMS or trunk.config.in_channels != _in_channels(regions):
            raise ValueError("not a white-box policy network (wrong input or output size)")
        self.trunk = trunk
        self.n_edits = int(n_edits)
        self.regions = int(regions)
        self.n_steps = self.n_edits * max(self.regions, 1)
        offsets, o = [], 0
        for name in FILTER_NAMES:
            offsets.append(o)
            o += FILTERS[name].n_params
        self.offsets = offsets

    @classmethod
    def create(cls, base_channels: int = 32, n_edits: int = 5, image_size: int = 64, regions: int = 0) -> WhiteBoxPolicy:
        cfg = TrunkConfig(
            _in_channels(regions), N_FILTERS + N_PARAMS, base_channels, image_size, kind="whitebox-policy",
        )
        policy = cls(Trunk(cfg), n_edits, regions=regions)
        policy.start_near_neutral()
        return policy

    @torch.no_grad()
    def start_near_neutral(self, p: float = 0.05) -> None:
        """Bias the parameter outputs so that a fresh policy's every filter is (almost) the identity.

        Most squashes give the neutral parameter at raw 0, but the sigmoid heads of saturation and
        black & white give ``p = 0.5`` there: an untrained agent would half-desaturate every photo
        it picks black & white for. Their biases start at ``logit(p)`` (strength ``p``) instead.
        """
        last = self.trunk.fc[-1]
        assert isinstance(last, nn.Linear)
        bias = last.bias
        probe = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        for name, off in zip(FILTER_NAMES, self.offsets):
            spec = FILTERS[name]
            at_zero = spec.fn(probe, spec.squash(torch.zeros(1, spec.n_params)))
            if not torch.allclose(at_zero, probe, atol=1e-5):  # raw 0 is not the identity
                bias[N_FILTERS + off : N_FILTERS + off + spec.n_params] = math.log(p / (1.0 - p))

    def forward(self, img: torch.Tensor, used: torch.Tensor, steps: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``mask (B, 1, S, S)``: the current region's mask (per-region mode only)."""
        if (mask is None) != (self.regions == 0):
            raise ValueError("a per-region policy needs the region's mask (and a global one takes none)")
        out = self.trunk(_net_input(img, used, steps, self.n_steps, mask))
        return out[:, :N_FILTERS], out[:, N_FILTERS:]

    def region_mask(self, masks: torch.Tensor | None, steps: torch.Tensor) -> torch.Tensor | None:
        """The mask of the region step ``steps[b]`` edits, ``(B, R, S, S), (B,) -> (B, 1, S, S)``; None for a global policy."""
        if not self.regions:
            return None
        if masks is None or masks.dim() != 4 or masks.shape[1] != self.regions:
            raise ValueError(f"a per-region policy needs masks (B, {self.regions}, S, S), got "
                             f"{None if masks is None else tuple(masks.shape)}")
        r = torch.div(steps, self.n_edits, rounding_mode="floor").clamp(max=self.regions - 1).to(masks.device)
        return masks[torch.arange(masks.shape[0], device=masks.device), r][:, None]

    def next_used(self, used: torch.Tensor, action: torch.Tensor, next_steps: torch.Tensor) -> torch.Tensor:
        """``used | onehot(action)``; in per-region mode cleared when ``next_steps`` starts a new region."""
        out = torch.maximum(used, torch.nn.functional.one_hot(action, N_FILTERS).to(used))
        if self.regions:
            out = out * (next_steps % self.n_edits != 0).to(out)[:, None]
        return out

    def filter_params(self, raw: torch.Tensor) -> list[torch.Tensor]:
        """Squash ``raw (B, 40)`` into each filter's range: a list of ``(B, P_f)`` in :data:`FILTERS` order."""
        out = []
        for name, off in zip(FILTER_NAMES, self.offsets):
            spec = FILTERS[name]
            out.append(spec.squash(raw[:, off : off + spec.n_params]))
        return out


def _in_channels(regions: int) -> int:
    return _IN_CHANNELS + (1 if regions else 0)


def _value_trunk(base_channels: int, image_size: int, regions: int = 0) -> Trunk:
    return Trunk(TrunkConfig(_in_channels(regions), 1, base_channels, image_size, kind="whitebox-value"))


def masked_step(img: torch.Tensor, out: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's result inside a region: ``(raw, next)`` with ``raw = S + m (f(S) - S)`` (unclamped,
    for the range penalty) and ``next = S + m (clamp(f(S), 0, 1) - S)`` (:func:`deepexposure.local.local_filters_render`'s
    blend); ``mask`` None: the global step ``(f(S), clamp(f(S), 0, 1))``. Shapes ``(B, 3, S, S)``, ``mask (B, 1, S, S)``."""
    if mask is None:
        return out, out.clamp(0.0, 1.0)
    m = mask.to(img)
    return img + m * (out - img), img + m * (out.clamp(0.0, 1.0) - img)


# -- one step ---------------------------------------------------------------------------------


def apply_chosen_filters(img: torch.Tensor, action: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """Apply filter ``action[b]`` with ``params[action[b]][b]`` to image ``b`` (differentiable in params).

    Args:
        img: ``(B, 3, H, W)`` sRGB.
        action: ``(B,)`` filter indices into :data:`~deepexposure.filters.FILTER_NAMES`.
        params: per filter, ``(B, P_f)`` parameters (as from :meth:`WhiteBoxPolicy.filter_params`).
    Returns:
        ``(B, 3, H, W)`` unclamped filter outputs.
    """
    out = torch.zeros_like(img)
    for f, name in enumerate(FILTER_NAMES):
        rows = (action == f).nonzero().squeeze(1)
        if rows.numel():
            out = out.index_copy(0, rows, FILTERS[name].fn(img[rows], params[f][rows]).to(out.dtype))
    return out


@dataclass
class StepResult:
    """One policy step on a batch. ``probs (B, 8)`` (with exploration mixed in), ``action (B,)``,
    ``params`` (list of ``(B, P_f)``), ``raw_out`` the filter output before clamping, ``next_img``
    clamped to [0, 1], ``next_steps (B,)``, ``next_used (B, 8)``, ``done (B,)`` bool."""

    probs: torch.Tensor
    action: torch.Tensor
    params: list[torch.Tensor]
    raw_out: torch.Tensor
    next_img: torch.Tensor
    next_steps: torch.Tensor
    next_used: torch.Tensor
    done: torch.Tensor
    mask: torch.Tensor | None = None
    """``(B, 1, S, S)`` the mask of the region this step edited (per-region mode), else None."""

    def chosen_params(self, b: int) -> torch.Tensor:
        """``(P,)`` parameters of the filter image ``b`` chose."""
        return self.params[int(self.action[b])][b]


def policy_step(
    policy: WhiteBoxPolicy,
    img: torch.Tensor,
    used: torch.Tensor,
    steps: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    exploration: float = 0.0,
    masks: torch.Tensor | None = None,
) -> StepResult:
    """Choose a filter and its parameters for every image and apply them (section 3.2, fig. 4).

    Args:
        img: ``(B, 3, S, S)`` sRGB in [0, 1]; ``used (B, 8)``; ``steps (B,)``.
        generator: draws the filter choice (ignored when ``greedy``).
        greedy: take the most likely *unused* filter (inference) instead of sampling (training).
        exploration: ``eps`` of ``pi_1 = (1 - eps) softmax + eps / 8``.
        masks: per-region mode: ``(B, R, S, S)`` region masks (:func:`region_masks`); the step
            edits region ``steps // n_edits`` only (:func:`masked_step`).
    """
    mask = policy.region_mask(masks, steps)
    logits, raw = policy(img, used, steps, mask)
    probs = torch.softmax(logits, dim=1)
    if exploration:
        probs = probs * (1.0 - exploration) + exploration / N_FILTERS
    if greedy:
        # Inference: the most likely filter among those not used yet (the reuse penalty's intent).
        # The original's test-time argmax could pick a used filter again when pi_1 is flat.
        unused = used < 0.5
        unused = unused | ~unused.any(dim=1, keepdim=True)  # every filter used: plain argmax
        action = probs.detach().masked_fill(~unused, -1.0).argmax(dim=1)
    else:
        action = torch.multinomial(probs.detach().cpu(), 1, generator=generator).squeeze(1).to(img.device)
    params = policy.filter_params(raw)
    out, next_img = masked_step(img, apply_chosen_filters(img, action, params), mask)
    next_steps = steps + 1
    return StepResult(
        probs, action, params, out, next_img, next_steps, policy.next_used(used, action, next_steps),
        next_steps >= policy.n_steps, mask,
    )


@dataclass
class Trajectory:
    """A full roll-out: ``images[t]`` for ``t = 0..T`` and the ``T`` :class:`StepResult` s."""

    images: list[torch.Tensor]
    steps: list[StepResult]

    @property
    def final(self) -> torch.Tensor:
        return self.images[-1]


def rollout(
    policy: WhiteBoxPolicy,
    img: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    exploration: float = 0.0,
    masks: torch.Tensor | None = None,
) -> Trajectory:
    """Apply ``policy.n_steps`` steps from a fresh state (nothing used, step 0); ``masks (B, R, S, S)`` in per-region mode."""
    b = img.shape[0]
    used = torch.zeros(b, N_FILTERS, device=img.device, dtype=img.dtype)
    steps = torch.zeros(b, dtype=torch.long, device=img.device)
    images, results = [img], []
    for _ in range(policy.n_steps):
        r = policy_step(policy, img, used, steps, generator=generator, greedy=greedy, exploration=exploration, masks=masks)
        img, used, steps = r.next_img, r.next_used, r.next_steps
        images.append(img)
        results.append(r)
    return Trajectory(images, results)


# -- penalties (section 5.4) ---------------------------------------------------------------------


def entropy_penalty(probs: torch.Tensor, weight: float = 0.05) -> torch.Tensor:
    """Eq. (13): ``weight * (log |F| + sum_F pi(F) log pi(F))``, ``(B, n) -> (B,)``; 0 for a uniform ``pi``."""
    return weight * (math.log(probs.shape[1]) + torch.special.xlogy(probs, probs).sum(dim=1))


def reuse_penalty(used: torch.Tensor, action: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """``weight`` where the chosen filter was already used in the trajectory, else 0: ``(B, n), (B,) -> (B,)``."""
    return weight * used.gather(1, action[:, None]).squeeze(1).to(torch.get_default_dtype())


def edit_cost(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Size of one edit: ``mean((after - before)^2)`` per image, ``(B, 3, S, S) x 2 -> (B,)``."""
    return (after - before).pow(2).mean(dim=(1, 2, 3))


def range_penalty(img: torch.Tensor) -> torch.Tensor:
    """``mean(relu(x - 1)^2 + relu(-x)^2)`` over channels and pixels, ``(B, 3, H, W) -> (B,)``."""
    return (torch.relu(img - 1.0) ** 2 + torch.relu(-img) ** 2).mean(dim=(1, 2, 3))


# -- supervised pre-training (not in the paper) ---------------------------------------------------

#: ``cost = 10 log10(MSE + PRETRAIN_MSE_EPS)``: the negative PSNR, capped at 40 dB for a perfect fit
PRETRAIN_MSE_EPS = 1e-4


def unused_log_probs(logits: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """``log pi_1`` restricted to the filters not used yet and renormalised, ``(B, 8), (B, 8) -> (B, 8)``.

    ``log softmax(logits)`` over the unused filters, ``-inf`` on the used ones (every filter used:
    over all 8). Its argmax is the greedy inference choice of :func:`policy_step`.
    """
    unused = used < 0.5
    unused = unused | ~unused.any(dim=1, keepdim=True)
    return torch.log_softmax(logits.masked_fill(~unused, float("-inf")), dim=1)


@dataclass
class PretrainResult:
    """One pre-training roll-out of ``B * K`` trajectories (``K`` per image, sample-major).

    ``loss ()`` is what to minimise (its gradient is the estimator of :func:`pretrain_objective`);
    ``cost (B*K,)`` each trajectory's cost in dB (with its path-wise graph), ``mse (B*K,)`` its final error, ``final`` its
    last image, ``actions (n_edits, B*K)``, ``entropy (B*K,)`` the mean entropy of ``pi_1`` and
    ``reuse_mass (B*K,)`` the mean probability ``pi_1`` put on used filters.
    """

    loss: torch.Tensor
    cost: torch.Tensor
    mse: torch.Tensor
    final: torch.Tensor
    actions: torch.Tensor
    entropy: torch.Tensor
    reuse_mass: torch.Tensor


def pretrain_objective(
    policy: WhiteBoxPolicy,
    inputs: torch.Tensor,
    references: torch.Tensor,
    cfg: WhiteBoxConfig,
    generator: torch.Generator | None = None,
    samples: int | None = None,
    masks: torch.Tensor | None = None,
) -> PretrainResult:
    """The supervised pre-training loss of the white-box agent (not in the paper).

    Each image ``x`` is edited ``K = samples`` times (default ``cfg.pretrain_samples``) by the
    policy, as at inference: ``n_edits`` steps, each a filter drawn from ``pi_1`` restricted to the
    unused filters (:func:`unused_log_probs`; greedy inference takes its argmax), with the
    deterministic parameters ``a_2 = pi_2(s, a_1)``. A trajectory ``tau`` costs::

        C(tau) = 10 log10(mean((s_T - y)^2) + 1e-4)                    the final image's negative PSNR (dB)
                 + sum_t [ w_range range(x_t)                          unclamped overflow, as in the RL reward
                           + w_ent (log 8 + sum_F pi_1 log pi_1)         eq. (13)
                           + w_reuse sum_{F used} pi_1(F) ]              the expected reuse penalty of section 5.4

    and the objective is ``J = E_{tau ~ pi}[C(tau)]``, averaged over images (the mean PSNR the
    benchmark reports, at the thumbnail). Its gradient has two parts, the paper's two policy
    gradients with the reference in place of the critic and the exact return in place of ``Q``:

    * the filter parameters (``pi_2``, eq. 7): the path-wise gradient ``dC/d theta`` through the
      differentiable filters of the sampled trajectory (and through the images the later steps see);
    * the filter choice (``pi_1``, eq. 6): the score function ``(C - b) d/d theta sum_t log pi_1(a_t | s_t)``
      with the leave-one-out baseline ``b`` = the mean cost of the image's other ``K - 1``
      trajectories (REINFORCE leave-one-out; Kool et al. 2019).

    Together they are an unbiased estimate of ``dJ/d theta`` (tested against the exact expectation
    over the 8 choices). Why this and not a relaxation: a soft mixture ``sum_F pi(F) F(s)`` or a
    straight-through Gumbel choice trains on images (or gradients) the agent never produces at
    inference, and is biased; here every trained image is one the agent can output, and the
    discrete choice is learned from the same cost as the parameters.

    Args:
        inputs, references: ``(B, 3, S, S)`` sRGB in [0, 1], pixel-aligned pairs.
        cfg: ``n_edits`` must match the policy; the penalty weights ``range_penalty``,
            ``entropy_penalty``, ``reuse_penalty`` (in dB) are the RL reward's.
        generator: draws the filter choices.
        masks: per-region mode: ``(B, R, S, S)`` region masks (:func:`region_masks`).
    """
    k = int(samples if samples is not None else cfg.pretrain_samples)
    if k < 2:
        raise ValueError(f"pretrain_objective needs >= 2 samples per image (leave-one-out baseline), got {k}")
    if inputs.shape != references.shape:
        raise ValueError(f"references {tuple(references.shape)} do not match inputs {tuple(inputs.shape)}")
    b = inputs.shape[0]
    img = inputs.repeat(k, 1, 1, 1)
    refs = references.repeat(k, 1, 1, 1).to(img)
    masks = masks.repeat(k, 1, 1, 1) if masks is not None else None
    n = img.shape[0]
    used = torch.zeros(n, N_FILTERS, device=img.device, dtype=img.dtype)
    steps = torch.zeros(n, dtype=torch.long, device=img.device)
    log_pi = img.new_zeros(n)
    penalty = img.new_zeros(n)
    ent = img.new_zeros(n)
    reuse = img.new_zeros(n)
    actions = []
    for _ in range(policy.n_steps):
        mask = policy.region_mask(masks, steps)
        logits, raw = policy(img, used, steps, mask)
        probs = torch.softmax(logits, dim=1)
        logp = unused_log_probs(logits, used)
        action = torch.multinomial(logp.detach().exp().cpu(), 1, generator=generator).squeeze(1).to(img.device)
        log_pi = log_pi + logp.gather(1, action[:, None]).squeeze(1)
        out, next_img = masked_step(img, apply_chosen_filters(img, action, policy.filter_params(raw)), mask)
        mass = (probs * used).sum(dim=1)
        penalty = (penalty + cfg.range_penalty * range_penalty(out) + entropy_penalty(probs, cfg.entropy_penalty)
                   + cfg.reuse_penalty * mass)
        ent = ent - torch.special.xlogy(probs, probs).sum(1).detach()
        reuse = reuse + mass.detach()
        img = next_img
        steps = steps + 1
        used = policy.next_used(used, action, steps)
        actions.append(action)
    mse = (img - refs).pow(2).mean(dim=(1, 2, 3))
    cost = 10.0 * torch.log10(mse + PRETRAIN_MSE_EPS) + penalty
    c = cost.detach().view(k, b)
    baseline = (c.sum(0, keepdim=True) - c) / (k - 1)
    advantage = (c - baseline).reshape(n)
    loss = cost.mean() + (advantage * log_pi).mean()
    t = float(policy.n_steps)
    return PretrainResult(loss, cost, mse.detach(), img.detach(), torch.stack(actions), ent / t, reuse / t)


# -- the trajectory buffer (Algorithm 1) -----------------------------------------------------------


class TrajectoryBuffer:
    """Algorithm 1's buffer of in-flight trajectories: ``images (N, 3, S, S)``, ``steps (N,)``, ``used (N, 8)``.

    An entry with ``steps == n_edits`` is finished: it stays (the discriminator samples from the
    finished entries) until it is drawn again, when it is replaced by a fresh input. ``src (N,)``
    is the training input each entry started from (``-1``: unknown), so that paired training can
    find the entry's reference.
    """

    def __init__(self, images: torch.Tensor, steps: torch.Tensor, used: torch.Tensor, n_edits: int, src: torch.Tensor | None = None):
        self.images, self.steps, self.used, self.n_edits = images, steps.long(), used.float(), n_edits
        self.src = src.long() if src is not None else torch.full_like(self.steps, -1)

    @classmethod
    def fill(cls, inputs: torch.Tensor, size: int, n_edits: int, generator: torch.Generator) -> TrajectoryBuffer:
        """``size`` fresh trajectories from random ``inputs`` (drawn with replacement)."""
        pick = torch.randint(0, inputs.shape[0], (size,), generator=generator).to(inputs.device)
        return cls.fresh(inputs[pick], n_edits, src=pick)

    @classmethod
    def warm(
        cls, policy: WhiteBoxPolicy, inputs: torch.Tensor, size: int, generator: torch.Generator, exploration: float = 0.0,
        input_masks: torch.Tensor | None = None,
    ) -> TrajectoryBuffer:
        """``size`` trajectories in the buffer's steady state: entry ``i`` has taken ``k_i ~ U{1..n_edits}``
        steps of ``policy`` (sampled, no learning) from a random input.

        Algorithm 1 draws entries uniformly, so in steady state the stages ``1..n_edits`` are equally
        frequent and a fifth of a batch's transitions are terminal. A buffer that starts with every
        entry at step 0 has no terminal transition for ~``buffer_size / batch_size`` steps, so the
        value network (gamma = 1) bootstraps only on itself and drifts without bound; the original
        code ran 100 agent steps at learning rate 0 first for the same reason.

        A trajectory is ``policy.n_steps`` long; in per-region mode ``input_masks (N_in, R, S, S)``
        are the inputs' region masks.
        """
        buf = cls.fill(inputs, size, policy.n_steps, generator)
        target = torch.randint(1, policy.n_steps + 1, (size,), generator=generator).to(buf.steps.device)
        with torch.no_grad():
            for _ in range(policy.n_steps):
                rows = (buf.steps < target).nonzero().squeeze(1)
                if not rows.numel():
                    break
                img, steps, used = buf.get(rows)
                masks = input_masks[buf.src[rows].to(input_masks.device)] if input_masks is not None else None
                r = policy_step(policy, img, used, steps, generator=generator, exploration=exploration, masks=masks)
                buf.put(rows, r.next_img, r.next_steps, r.next_used)
        return buf

    @classmethod
    def fresh(cls, images: torch.Tensor, n_edits: int, src: torch.Tensor | None = None) -> TrajectoryBuffer:
        n = images.shape[0]
        steps = torch.zeros(n, dtype=torch.long, device=images.device)
        return cls(images.clone(), steps, torch.zeros(n, N_FILTERS, device=images.device), n_edits, src)

    def __len__(self) -> int:
        return self.images.shape[0]

    def finished(self) -> torch.Tensor:
        """``(N,)`` bool: trajectories that took all ``n_edits`` steps."""
        return self.steps >= self.n_edits

    def draw(self, fresh: torch.Tensor, generator: torch.Generator, fresh_src: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``b = len(fresh)`` distinct slots at random; finished ones restart from ``fresh[j]``
        (which is training input ``fresh_src[j]``, when given).

        Returns the slots ``(b,)``; read them with :meth:`get`, write the stepped entries with :meth:`put`.
        """
        b = fresh.shape[0]
        if b > len(self):
            raise ValueError(f"cannot draw {b} trajectories from a buffer of {len(self)}")
        slots = torch.randperm(len(self), generator=generator)[:b].to(self.steps.device)
        done = self.finished()[slots]
        if done.any():
            s = slots[done]
            self.images[s] = fresh[done].to(self.images)
            self.steps[s] = 0
            self.used[s] = 0.0
            self.src[s] = fresh_src[done.to(fresh_src.device)].to(self.src) if fresh_src is not None else -1
        return slots

    def get(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[slots], self.steps[slots], self.used[slots]

    def put(self, slots: torch.Tensor, images: torch.Tensor, steps: torch.Tensor, used: torch.Tensor) -> None:
        self.images[slots] = images.detach().to(self.images)
        self.steps[slots] = steps.to(self.steps)
        self.used[slots] = used.detach().to(self.used)

    def sample_finished(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Up to ``n`` distinct finished images at random, ``(k, 3, S, S)`` with ``k = min(n, #finished)``."""
        fin = self.finished().nonzero().squeeze(1)
        order = torch.randperm(fin.numel(), generator=generator)[:n].to(fin.device)
        return self.images[fin[order]]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"buffer_images": self.images.clone(), "buffer_steps": self.steps.clone(), "buffer_used": self.used.clone(),
                "buffer_src": self.src.clone()}

    @classmethod
    def from_state_dict(cls, d: dict[str, torch.Tensor], n_edits: int) -> TrajectoryBuffer:
        src = d["buffer_src"].clone() if "buffer_src" in d else None  # checkpoints before paired training had none
        return cls(d["buffer_images"].float().clone(), d["buffer_steps"].clone(), d["buffer_used"].float().clone(), n_edits, src)


# -- the agent ---------------------------------------------------------------------------------


class WhiteBoxAgent(nn.Module):
    """Networks, buffer and losses of the white-box agent, driven by :class:`deepexposure.train.Trainer`.

    The trainer owns the discriminator, the data and the schedule; the agent owns the policy, the
    value network, their optimisers and the trajectory buffer (part of the checkpoint).
    """

    #: :meth:`train_step` takes ``references`` (paired training; the buffer knows each entry's input)
    supports_references = True

    log_fields = ["pretrain_psnr", "pretrain_cost", "reuse_mass", "reward", "d_gain", "advantage", "entropy", "reuse_rate", "range_penalty", "finished"] + [
        f"use_{n}" for n in FILTER_NAMES
    ]

    def __init__(self, cfg: WhiteBoxConfig, batch_size: int):
        super().__init__()
        if cfg.buffer_size < batch_size:
            raise ValueError(f"buffer_size ({cfg.buffer_size}) must be at least batch_size ({batch_size})")
        self.cfg = cfg
        self.batch_size = batch_size
        self.policy = WhiteBoxPolicy.create(cfg.base_channels, cfg.n_edits, cfg.image_size, cfg.regions)
        self.policy_avg: WhiteBoxPolicy | None = copy.deepcopy(self.policy).requires_grad_(False) if cfg.policy_ema > 0 else None
        self.value = _value_trunk(cfg.base_channels, cfg.image_size, cfg.regions)
        self.input_masks: torch.Tensor | None = None  # per-region mode: (N_in, R, S, S), made by prepare
        self.opt_policy = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr_policy, betas=cfg.adam_betas)
        self.opt_value = torch.optim.Adam(self.value.parameters(), lr=cfg.lr_value, betas=cfg.adam_betas)
        self.buffer: TrajectoryBuffer | None = None  # filled at the first training step
        # Filter draws of supervised pre-training (the trainer's generator is not passed to
        # pretrain_step): seeded from the seed the networks were built with, saved in checkpoints.
        self.pretrain_gen = torch.Generator().manual_seed(torch.initial_seed() + 7919)

    # -- trainer interface -------------------------------------------------------------------
    def prepare(self, inputs: torch.Tensor, progress=None) -> None:
        """Check the training thumbnails; in per-region mode segment each one (:func:`region_masks`)."""
        s = self.cfg.image_size
        if inputs.dim() != 4 or inputs.shape[1:] != (3, s, s):
            raise ValueError(f"inputs must be (N, 3, {s}, {s}), got {tuple(inputs.shape)}")
        if self.cfg.regions:
            self.input_masks = region_masks(inputs, self.cfg.regions).to(inputs.device)

    def prepare_rows(self, rows: torch.Tensor, inputs: torch.Tensor) -> None:
        """Re-segment training rows ``rows`` that a pair pool replaced (now ``inputs``; per-region mode only)."""
        if self.cfg.regions and self.input_masks is not None:
            self.input_masks[rows.to(self.input_masks.device)] = region_masks(inputs, self.cfg.regions).to(self.input_masks)

    def _masks(self, idx: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor | None:
        """Region masks of ``inputs[idx]`` (per-region mode; None for the global agent)."""
        if not self.cfg.regions:
            return None
        if self.input_masks is None or self.input_masks.shape[0] != inputs.shape[0]:
            raise RuntimeError("per-region white-box agent: call prepare(inputs) with the training inputs first")
        return self.input_masks[idx.to(self.input_masks.device)]

    def networks(self) -> dict[str, Trunk]:
        nets = {"policy": self.policy.trunk, "value": self.value}
        if self.policy_avg is not None:
            nets["policy_ema"] = self.policy_avg.trunk
        return nets

    @property
    def exported_policy(self) -> WhiteBoxPolicy:
        """The policy the model export and sample grids use: the weight average if ``policy_ema`` > 0."""
        return self.policy_avg if self.policy_avg is not None else self.policy

    def _update_average(self) -> None:
        assert self.policy_avg is not None
        update_average(self.policy_avg, self.policy, self.cfg.policy_ema)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"policy": self.opt_policy, "value": self.opt_value}

    def lr_schedule(self) -> dict[str, tuple[float, float]]:
        """optimiser name -> (initial lr, final fraction) for exponential decay."""
        return {"policy": (self.cfg.lr_policy, self.cfg.lr_policy_final), "value": (self.cfg.lr_value, self.cfg.lr_value_final)}

    def extra_state(self) -> dict[str, torch.Tensor]:
        state = self.buffer.state_dict() if self.buffer is not None else {}
        return {**state, "pretrain_rng": self.pretrain_gen.get_state()}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.buffer = TrajectoryBuffer.from_state_dict(state, self.policy.n_steps) if "buffer_images" in state else None
        if "pretrain_rng" in state:  # checkpoints from before pre-training existed have none
            self.pretrain_gen.set_state(state["pretrain_rng"].to(torch.uint8).cpu())

    def pretrain_step(self, idx: torch.Tensor, inputs: torch.Tensor, references: torch.Tensor) -> dict[str, float]:
        """One supervised Adam step on ``inputs[idx]`` against ``references[idx]`` (``--pretrain-steps``; not in the paper).

        Minimises :func:`pretrain_objective` (the expected negative PSNR of the agent's own
        ``n_edits``-filter edit, plus the RL reward's penalties) with the policy optimiser; the
        trainer sets its learning rate (``--pretrain-lr``). The value network is left alone.
        """
        res = pretrain_objective(self.policy, inputs[idx], references[idx], self.cfg, self.pretrain_gen,
                                 masks=self._masks(idx, inputs))
        self.opt_policy.zero_grad(set_to_none=True)
        res.loss.backward(inputs=list(self.policy.parameters()))
        self.opt_policy.step()
        if self.policy_avg is not None:
            self._update_average()
        counts = torch.bincount(res.actions.flatten(), minlength=N_FILTERS).float() / res.actions.shape[1]
        metrics = {
            "pretrain_mse": float(res.mse.mean()),
            "pretrain_psnr": float((-10.0 * torch.log10(res.mse.clamp_min(1e-10))).mean()),
            "pretrain_cost": float(res.cost.detach().mean()),
            "entropy": float(res.entropy.mean()),
            "reuse_mass": float(res.reuse_mass.mean()),
        }
        metrics.update({f"use_{n}": float(c) for n, c in zip(FILTER_NAMES, counts)})
        return metrics

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Finished images of the current (sampling) policy, ``(B, 3, S, S)``, for discriminator pre-training."""
        return rollout(self.policy, inputs[idx], generator=generator, exploration=self.cfg.exploration,
                       masks=self._masks(idx, inputs)).final

    @torch.no_grad()
    def generate_eval(self, idx: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Deterministic (argmax) retouches of :attr:`exported_policy` for sample grids."""
        return rollout(self.exported_policy, inputs[idx], greedy=True, masks=self._masks(idx, inputs)).final

    def train_step(
        self, idx: torch.Tensor, inputs: torch.Tensor, disc: nn.Module, generator: torch.Generator,
        references: torch.Tensor | None = None, fidelity_weight: float = 0.0,
    ) -> tuple[dict[str, float], torch.Tensor]:
        """One iteration of Algorithm 1: draw from the buffer, step, learn, put back.

        With ``references`` (``(N_in, 3, S, S)``, row ``i`` the reference of ``inputs[i]``), every
        discriminator score in the reward becomes :class:`deepexposure.gan.FidelityScore`'s
        ``D(s) - w * MSE(s, reference of the entry's input)``, so the reward
        ``c * (score(s') - score(s))`` also pays for each edit that moves towards the reference.

        Returns ``(metrics, fakes)``; ``fakes`` are ``len(idx)`` finished images from the buffer for
        the discriminator (topped up with fresh roll-outs of ``inputs[idx]`` in the rare case that the
        buffer holds too few finished ones; it starts warm, about a fifth finished).
        """
        from ..gan import FidelityScore

        cfg = self.cfg
        if self.buffer is None:  # start in the steady state (terminal transitions and finished images at once)
            self.buffer = TrajectoryBuffer.warm(self.policy, inputs, cfg.buffer_size, generator, cfg.exploration,
                                                self._masks(torch.arange(inputs.shape[0]), inputs))
        buf = self.buffer
        slots = buf.draw(inputs[idx], generator, fresh_src=idx)
        img, steps, used = buf.get(slots)
        masks = None
        if cfg.regions:
            if bool((buf.src[slots] < 0).any()):
                raise ValueError("per-region training: some buffer entries do not know their input")
            masks = self._masks(buf.src[slots], inputs)
        refs = None
        if references is not None:
            src = buf.src[slots]
            if bool((src < 0).any()):
                raise ValueError("paired training: some buffer entries do not know their input (resumed from an unpaired run?)")
            refs = references[src.to(references.device)].to(img)
            disc = FidelityScore(disc, refs, fidelity_weight)

        with frozen(disc):  # the reward's gradients reach the policy, not the critic
            with frozen(self.value):  # Q's bootstrap V(s') is a target here
                r = policy_step(self.policy, img, used, steps, generator=generator, exploration=cfg.exploration, masks=masks)
                with torch.no_grad():
                    d_now = disc(img).squeeze(1)
                d_next = disc(r.next_img).squeeze(1)
                pen_range = range_penalty(r.raw_out)
                pen_ent = entropy_penalty(r.probs, cfg.entropy_penalty)
                pen_reuse = reuse_penalty(used, r.action, cfg.reuse_penalty).to(img)
                reward = cfg.disc_reward_scale * (d_next - d_now) - cfg.range_penalty * pen_range - pen_ent - pen_reuse
                if cfg.edit_penalty:
                    reward = reward - cfg.edit_penalty * edit_cost(img, r.next_img)
                n = self.policy.n_steps
                mask_next = self.policy.region_mask(masks, r.next_steps)
                v_next = self.value(_net_input(r.next_img, r.next_used, r.next_steps, n, mask_next)).squeeze(1)
                q = reward + cfg.gamma * v_next * (~r.done).to(v_next)
            v_now = self.value(_net_input(img, used, steps, self.policy.n_steps, r.mask)).squeeze(1)
            delta = q.detach() - v_now
            log_pi = torch.log(r.probs.gather(1, r.action[:, None]).squeeze(1))
            loss_pi = -q.mean() - (log_pi * delta.detach()).mean()
            self.opt_policy.zero_grad(set_to_none=True)
            loss_pi.backward(inputs=list(self.policy.parameters()))
            self.opt_policy.step()
            if self.policy_avg is not None:
                self._update_average()
            loss_v = 0.5 * (delta**2).mean()
            self.opt_value.zero_grad(set_to_none=True)
            loss_v.backward(inputs=list(self.value.parameters()))
            self.opt_value.step()

        buf.put(slots, r.next_img, r.next_steps, r.next_used)
        b = idx.shape[0]
        fakes = buf.sample_finished(b, generator)
        if fakes.shape[0] < b:
            extra = self.generate(idx[: b - fakes.shape[0]], inputs, generator)
            fakes = torch.cat([fakes, extra.to(fakes)])

        with torch.no_grad():
            ent = -torch.special.xlogy(r.probs, r.probs).sum(1)
            counts = torch.bincount(r.action, minlength=N_FILTERS).float() / b
            metrics = {
                "policy_objective": float(q.mean()),
                "value_loss": float(loss_v),
                "reward": float(reward.mean()),
                "d_gain": float((d_next - d_now).mean()),
                "advantage": float(delta.mean()),
                "entropy": float(ent.mean()),
                "reuse_rate": float((pen_reuse > 0).float().mean()),
                "range_penalty": float(pen_range.mean()),
                "finished": int(buf.finished().sum()),
            }
            if refs is not None:
                metrics["fidelity_mse"] = float((r.next_img - refs).pow(2).mean())
        metrics.update({f"use_{n}": float(c) for n, c in zip(FILTER_NAMES, counts)})
        return metrics, fakes.detach()

    # -- export ------------------------------------------------------------------------------
    def save_model(self, directory: str | Path, info: dict | None = None) -> None:
        """Write the inference model folder (:func:`~deepexposure.pretrained.save_pretrained`): ``config.json`` + ``model.safetensors``."""
        config = {
            "method": "exposure",
            "n_edits": self.policy.n_edits,
            "image_size": self.cfg.image_size,
            "filters": list(FILTER_NAMES),
            "regions": self.cfg.regions,
            **(info or {}),
        }
        save_pretrained(directory, self.exported_policy.trunk, config)


# -- inference ---------------------------------------------------------------------------------


def _recipe_params(name: str, values: torch.Tensor) -> list[float]:
    """Round to 6 decimals, then clamp into the filter's documented range (so Recipe.validate passes)."""
    spec = FILTERS[name]
    return [min(max(round(float(v), 6), lo), hi) for v, lo, hi in zip(values.tolist(), spec.low, spec.high)]


class WhiteBoxMethod:
    """The white-box agent at inference: ``n_edits`` argmax steps on the thumbnail, as filter ops.

    A per-region model (config.json ``"regions": R > 0``) segments the thumbnail into ``R`` regions,
    takes ``n_edits`` steps per region and writes one ``local_filters`` op (one chain per region)
    with the recipe's ``segment_map``; ``apply`` renders it through the edge-aware masks.
    """

    name = "exposure"

    def __init__(self, model: str | Path | None = None):
        try:
            loaded = from_pretrained(model, "exposure", DEFAULT_MODEL_DIR)  # every file checked before allocating
        except FileNotFoundError:
            where = resolve_model_dir(model, DEFAULT_MODEL_DIR)
            raise FileNotFoundError(f"{where}: no white-box model here (model.safetensors missing); "
                                    "train one with `deepexposure train --algo exposure`") from None
        self.model_dir, self.meta = loaded.path, loaded.config
        regions = int(self.meta.get("regions", 0))
        self.policy = WhiteBoxPolicy(loaded.trunk, self.meta.get("n_edits", 5), self.meta.get("filters", FILTER_NAMES), regions).eval()
        self.size = int(self.meta.get("image_size", 64))

    def decide(self, img_srgb: torch.Tensor, masks: torch.Tensor | None = None) -> Trajectory:
        """The greedy trajectory on the ``size x size`` thumbnail of ``img_srgb (1, 3, H, W)``
        (per-region mode: with the thumbnail's ``masks (1, R, size, size)``)."""
        return self._decide(make_thumbnail(img_srgb, self.size), masks)

    @torch.no_grad()
    def _decide(self, thumb: torch.Tensor, masks: torch.Tensor | None) -> Trajectory:
        with torch_threads(1):  # thumbnail-sized ops (deepexposure.threads)
            return rollout(self.policy, thumb, greedy=True, masks=masks)

    def plan(self, img_srgb: torch.Tensor) -> Recipe:
        seg = masks = None
        thumb = make_thumbnail(img_srgb, self.size)
        if self.policy.regions:
            with torch_threads(1):
                seg, masks = _segment(thumb, self.policy.regions)
        traj = self._decide(thumb, masks)
        ops: list[dict] = []
        notes: list[str] = []
        chains: list[list[dict]] = []
        for t, r in enumerate(traj.steps):
            f = int(r.action[0])
            name = FILTER_NAMES[f]
            op = {"name": name, "params": _recipe_params(name, r.chosen_params(0))}
            where = ""
            if seg is None:
                ops.append({"op": "filter", **op})
            else:
                region = t // self.policy.n_edits
                if region >= len(chains):
                    chains.append([])
                chains[region].append(op)
                where = f" in region {region}"
            notes.append(f"step {t + 1}: {name}{where} (policy probability {float(r.probs[0, f]):.2f})")
        if seg is not None:
            from ..local import local_filters_op

            ops.append(local_filters_op(chains[: seg.masks.shape[0]]))
            notes.append("region t's filters act on segment t through an edge-aware mask (docs/local.md)")
        notes.append(f"filters and parameters were chosen on a {self.size}x{self.size} thumbnail")
        return Recipe(
            ops=ops,
            method={"name": self.name, "model": self.meta.get("name", self.model_dir.name), "model_path": str(self.model_dir)},
            notes=notes,
            segment_map=seg.label_rows() if seg is not None else None,
        )
