"""Supervised pre-training of the DeepExposure policy on paired data, before the RL phase (not in the paper).

With pairs ``(x_i, y_i)`` (a badly exposed photo and its well-exposed reference, e.g. from
:class:`deepexposure.pairs.SyntheticPairs`), the policy's own renderer is differentiable end to
end, so the policy can first be fitted to the references directly:

    L(theta) = mean_i || F(x_i, pi_theta) - y_i ||^2

where ``F(x, pi)`` is the deterministic roll-out (no exploration noise) of
:func:`deepexposure.agents.deepexposure.rollout`: one exposure per segment in turn, then the
fused bracket ``S^f`` (Algorithm 3), or with ``render='local'`` the locally exposed ``S^l_T``
(each segment by its own exposure), all on the ``image_size`` thumbnail, sRGB in [0, 1]. It
regresses the policy onto the exposures that the references imply, through the renderer itself,
which sidesteps the ambiguity of regressing on oracle exposures directly (the fused renderer gives
nearly the same image for many exposure sets). The RL phase (``deepexposure train``) then starts
from this policy. The papers have no such phase; `docs/training.md` ("Supervised pre-training")
says when it is used and what it changed.

``DeepExposureConfig.pretrain_target = "exposures"`` regresses on exposures instead (the issue's
"regression on oracle exposures"): each segment's target is the exposure that maps the input onto
its reference inside that segment (:func:`segment_exposure_targets`), and the policy is fitted to it
step by step with teacher forcing (the state ``S^l_t`` is built from the *target* exposures of the
earlier segments, :func:`exposure_regression_loss`):

    L(theta) = mean_{i,t} ( pi_theta(S0_i, S0_i m_it, S^l*_it) - e*_it )^2

No renderer is unrolled, so a step costs about a fifth of a ``"render"`` step, and the loss does
not depend on how forgiving the fusion is: the policy learns what each region needs, which both
renderers (fused and local) then use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .color import luminance, srgb_to_linear
from .filters import local_exposure

__all__ = ["PairPool", "quantize_8bit", "fidelity_loss", "segment_exposure_targets", "exposure_regression_loss", "pretrain_step", "PRETRAIN_TARGETS"]

#: values of ``DeepExposureConfig.pretrain_target``
PRETRAIN_TARGETS = ("render", "exposures")


class PairPool:
    """A fixed-size, slowly renewed pool of training pairs drawn from a :class:`~deepexposure.pairs.SyntheticPairs` stream.

    Every training step draws its mini-batch from the pool (by index, like the fixed folders), and
    :meth:`refresh` then replaces ``refresh`` rows with fresh pairs, so over a long run the agent
    sees new crops and degradations all the time while the per-pair work that is not the networks'
    arithmetic (segmentation) stays bounded: ``refresh`` pairs per step. Contents are a pure
    function of ``(stream seed, size, refresh, step)``: the pool at step ``n`` is rebuilt exactly by
    :meth:`rebuild` (used on ``--resume``) without storing it in checkpoints.

    Rows written at step ``s`` (``s = -1`` for the initial fill) are ``(s * refresh + j) mod size``.

    Attributes:
        inputs, references: ``(size, 3, S, S)`` sRGB in [0, 1]; inputs are rounded to 8 bits, as
            photos read from files are.
    """

    def __init__(self, pairs, size: int, refresh: int, on_rows: Callable[[torch.Tensor, torch.Tensor], None] | None = None):
        if size < 1 or refresh < 0 or refresh > size:
            raise ValueError(f"pool size must be >= 1 and 0 <= refresh <= size, got {size}, {refresh}")
        self.pairs, self.size, self.refresh_n = pairs, int(size), int(refresh)
        self.on_rows = on_rows
        s = pairs.size
        self.inputs = torch.zeros(self.size, 3, s, s)
        self.references = torch.zeros(self.size, 3, s, s)

    _CHUNK = 256

    def _fill(self) -> None:
        """The initial pool (chunks of the stream at negative step numbers, apart from the training steps')."""
        for c, start in enumerate(range(0, self.size, self._CHUNK)):
            n = min(self._CHUNK, self.size - start)
            x, y = self.pairs.batch(-1 - c, n)
            self.inputs[start : start + n] = quantize_8bit(x)
            self.references[start : start + n] = y

    def _rows(self, step: int) -> torch.Tensor:
        return (step * self.refresh_n + torch.arange(self.refresh_n)) % self.size

    def _write(self, step: int) -> torch.Tensor:
        rows = self._rows(step)
        x, y = self.pairs.batch(step, self.refresh_n)
        self.inputs[rows] = quantize_8bit(x)
        self.references[rows] = y
        return rows

    def rebuild(self, step: int) -> None:
        """The pool as it is after ``step`` calls of :meth:`refresh` (steps ``0 .. step-1``); calls ``on_rows`` once for all rows."""
        self._fill()
        if self.refresh_n:
            first = max(0, step - -(-self.size // self.refresh_n))  # older writes are all overwritten
            for s in range(first, step):
                self._write(s)
        if self.on_rows is not None:
            self.on_rows(torch.arange(self.size), self.inputs)

    def refresh(self, step: int) -> None:
        """Replace this step's ``refresh`` rows with fresh pairs (``on_rows`` is told which)."""
        if not self.refresh_n:
            return
        rows = self._write(step)
        if self.on_rows is not None:
            self.on_rows(rows, self.inputs[rows])


def quantize_8bit(img: torch.Tensor) -> torch.Tensor:
    """``round(255 x) / 255``: what an 8-bit file holds (training inputs then match photos read from disk)."""
    return torch.round(img.clamp(0.0, 1.0) * 255.0) / 255.0


def fidelity_loss(agent, inputs: torch.Tensor, references: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean ||F(x, pi) - y||^2`` over the batch (module docstring).

    Args:
        agent: a :class:`~deepexposure.agents.deepexposure.DeepExposureAgent`.
        inputs, references: ``(B, 3, S, S)`` sRGB in [0, 1].
        masks: ``(B, T, 1, S, S)`` the inputs' ordered segment masks.
    Returns:
        ``(loss (), evs (B, T))``.
    """
    r = agent.unroll(inputs, masks)
    out = r.local[-1] if getattr(agent.cfg, "render", "fused") == "local" else r.fused
    return (out - references).pow(2).mean(), r.evs.detach()


@torch.no_grad()
def segment_exposure_targets(inputs: torch.Tensor, references: torch.Tensor, masks: torch.Tensor, ev_max: float = 3.0,
                             clip: float = 0.98, floor: float = 1e-3) -> torch.Tensor:
    """The exposure that maps each segment of the input onto its reference, in stops.

    ``e*_t = sum_p w_tp log2(Y_ref(p) / Y_in(p)) / sum_p w_tp``, with ``Y`` the linear luminance and
    ``w_tp = m_t(p) [max_c x(p) < clip] [Y_in(p) > floor] [Y_ref(p) > floor]``: pixels clipped or black
    in the input or black in the reference say nothing about the exposure and are left out. A
    segment with no such pixel falls back to all its pixels. For a pure exposure error
    ``x = y 2^f`` (linear light, before clipping) this is minus the mean of the field ``f`` over the
    segment. Clamped to ``[-ev_max, ev_max]`` (what the policy can output).

    Args:
        inputs, references: ``(B, 3, H, W)`` sRGB in [0, 1], pixel-aligned.
        masks: ``(B, T, 1, H, W)`` segment masks in [0, 1].
    Returns:
        ``(B, T)`` exposures in stops.
    """
    y_in = luminance(srgb_to_linear(inputs)).clamp_min(floor)  # (B,1,H,W)
    y_ref = luminance(srgb_to_linear(references)).clamp_min(floor)
    ratio = torch.log2(y_ref / y_in).unsqueeze(1)  # (B,1,1,H,W)
    valid = ((inputs.amax(1, keepdim=True) < clip) & (y_in > floor) & (y_ref > floor)).unsqueeze(1).to(masks.dtype)
    w = masks * valid
    num, den = (w * ratio).flatten(2).sum(2), w.flatten(2).sum(2)
    num_all, den_all = (masks * ratio).flatten(2).sum(2), masks.flatten(2).sum(2).clamp_min(1e-8)
    few = den < 1.0  # less than one usable pixel's worth of mask
    e = torch.where(few, num_all / den_all, num / den.clamp_min(1e-8))
    return e.clamp(-ev_max, ev_max)


def exposure_regression_loss(agent, inputs: torch.Tensor, references: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean_{b,t} (pi(S0, S0 m_t, S^l*_t) - e*_t)^2`` with teacher forcing (module docstring).

    Args:
        agent: a :class:`~deepexposure.agents.deepexposure.DeepExposureAgent` (its ``policy`` and ``cfg.ev_max``).
        inputs, references: ``(B, 3, S, S)`` sRGB in [0, 1].
        masks: ``(B, T, 1, S, S)`` the inputs' ordered segment masks.
    Returns:
        ``(loss (), evs (B, T))`` the policy's exposures (detached).
    """
    target = segment_exposure_targets(inputs, references, masks, agent.cfg.ev_max)
    s_local, errs, evs = inputs, [], []
    for t in range(masks.shape[1]):
        m = masks[:, t]
        e = agent.policy(inputs, inputs * m, s_local)
        errs.append((e - target[:, t]).pow(2))
        evs.append(e.detach())
        s_local = local_exposure(s_local, m, target[:, t : t + 1])
    return torch.stack(errs, 1).mean(), torch.stack(evs, 1)


def pretrain_step(agent, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, references: torch.Tensor,
                  masks: torch.Tensor) -> dict[str, float]:
    """One Adam step on :func:`fidelity_loss` or, with ``agent.cfg.pretrain_target == "exposures"``, on
    :func:`exposure_regression_loss`; returns ``{"pretrain_mse", "ev_mean", "ev_std"}`` (``pretrain_mse``
    is the loss: an image MSE or an exposure MSE in stops squared)."""
    target = getattr(agent.cfg, "pretrain_target", "render")
    loss_fn = exposure_regression_loss if target == "exposures" else fidelity_loss
    loss, evs = loss_fn(agent, inputs, references, masks)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if getattr(agent, "policy_avg", None) is not None:
        agent._update_average()
    return {"pretrain_mse": float(loss.detach()), "ev_mean": float(evs.mean()), "ev_std": float(evs.std()) if evs.numel() > 1 else 0.0}
