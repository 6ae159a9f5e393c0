"""Pixel-wise advantage actor-critic with reward map convolution (section V, Algorithm 1).

Every pixel ``i`` is an agent with policy ``pi(a_i | s_i)`` and value ``V(s_i)``; one network
(:class:`~deepexposure.pixelrl.net.PixelRLNet`) computes all of them, so the gradients are the means
over pixels of the usual A2C gradients.

n-step return with reward map convolution, eq. (13), computed backwards as in Algorithm 1::

    R = 0 (terminal: the episode ends after t_max steps) or V(s_{t_max}) (bootstrap)
    for k = t_max - 1 .. 0:   R <- r_k + gamma * (w * R)            (* = 2-D convolution)

With ``w`` the identity (only the centre is 1) this is the plain pixel-wise return of eq. (8),
``R_i = r_i + gamma R_i'``. Losses (eqs. 14-18), summed over the steps ``k`` and averaged over pixels::

    A     = R - V(s_k)                                     (15)
    L_pi  = -mean( log pi(a_k | s_k) * A )                 (16); the first term of (17) for w
    L_v   =  mean( (R - V(s_k))^2 )                        (14); the second term of (17) for w
    L_ent = -mean( H(pi(. | s_k)) )                        A3C's entropy regularisation

The policy's advantage is a constant for ``theta_p`` (``V`` is detached there), but not for ``w``:
``w`` receives the gradient of both terms through ``R`` (eq. 17). The bootstrap value is a target
(detached). ``total = L_pi + value_coef * L_v + beta * L_ent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RewardMapConv", "returns", "sample_actions", "policy_terms", "a2c_losses", "A2CLosses"]


class RewardMapConv(nn.Module):
    """The learnable reward-map filter ``w`` (``size x size``, 33 in the paper), initialised to the
    identity (centre 1, else 0). ``forward(R (B, 1, H, W)) -> w * R (B, 1, H, W)``, zero padding."""

    def __init__(self, size: int = 33):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"reward map filter size must be odd and positive, got {size}")
        w = torch.zeros(1, 1, size, size)
        w[0, 0, size // 2, size // 2] = 1.0
        self.weight = nn.Parameter(w)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return F.conv2d(r, self.weight, padding=self.weight.shape[-1] // 2)


def returns(rewards: list[torch.Tensor], gamma: float, bootstrap: torch.Tensor | None = None,
            w: RewardMapConv | None = None) -> list[torch.Tensor]:
    """The n-step returns ``R^(k)`` of eq. (13) for ``k = 0 .. T-1``, in step order.

    Args:
        rewards: ``T`` maps ``r^(k) (B, 1, H, W)``.
        gamma: discount factor.
        bootstrap: ``V(s^(T)) (B, 1, H, W)`` for a non-terminal last state (detached here), or None
            for a terminal one (``R = 0``, Algorithm 1).
        w: the reward-map filter (eq. 12), or None for the plain pixel-wise return (eq. 8).
    """
    R = torch.zeros_like(rewards[-1]) if bootstrap is None else bootstrap.detach()
    out: list[torch.Tensor] = []
    for r in reversed(rewards):
        R = gamma * R
        if w is not None:
            R = w(R)
        R = r + R
        out.append(R)
    return out[::-1]


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None = None, greedy: bool = False) -> torch.Tensor:
    """One action per pixel: ``logits (B, A, H, W) -> a (B, H, W)`` int64.

    Sampled from ``softmax(logits, dim=1)`` by inverse CDF with uniforms drawn on the CPU from
    ``generator`` (the same draws on any device), or the most probable action when ``greedy``
    (test time, as in the authors' code).
    """
    if greedy:
        return logits.argmax(1)
    p = torch.softmax(logits.detach().float(), 1)
    u = torch.rand((p.shape[0], 1, *p.shape[2:]), generator=generator).to(p.device)
    cdf = p.cumsum(1)
    return (u > cdf[:, :-1]).sum(1)


def policy_terms(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log pi(a_i | s_i) (B, 1, H, W), entropy H(pi(. | s_i)) (B, 1, H, W))``."""
    logp = torch.log_softmax(logits, 1)
    taken = logp.gather(1, actions.unsqueeze(1))
    entropy = -(logp.exp() * logp).sum(1, keepdim=True)
    return taken, entropy


@dataclass
class A2CLosses:
    """The three loss terms of an episode (summed over its steps) and their weighted total."""

    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor
    total: torch.Tensor


def a2c_losses(log_probs: list[torch.Tensor], values: list[torch.Tensor], entropies: list[torch.Tensor],
               returns_: list[torch.Tensor], value_coef: float = 0.5, beta: float = 0.01) -> A2CLosses:
    """Eqs. (14)-(18) summed over the ``T`` steps of an episode; every argument is ``T`` maps
    ``(B, 1, H, W)``: ``log pi(a_k | s_k)``, ``V(s_k)``, the entropies and ``R^(k)`` (:func:`returns`)."""
    pol = val = ent = log_probs[0].new_zeros(())
    for logp, v, h, R in zip(log_probs, values, entropies, returns_):
        pol = pol - (logp * (R - v.detach())).mean()
        val = val + (R - v).pow(2).mean()
        ent = ent - h.mean()
    return A2CLosses(pol, val, ent, pol + value_coef * val + beta * ent)
