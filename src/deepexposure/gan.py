"""WGAN-GP pieces shared by every agent: discriminator features, loss, gradient penalty.

Eq. (12) of the DeepExposure paper (Gulrajani et al. 2017)::

    L_D = E_{S ~ ours}[D(S)] - E_{S ~ targets}[D(S)] + lambda * E_{S_hat}[(||grad D(S_hat)||_2 - 1)^2]

with ``S_hat = eps * S_target + (1 - eps) * S_ours``, ``eps ~ U[0, 1]`` per image. The discriminator
gives *higher* scores to photos that look like the targets, so ``D(S)`` is the aesthetic reward.
"""

from __future__ import annotations

import torch
from torch import nn

from .color import luminance, rgb_to_hsv

__all__ = ["disc_features", "gradient_penalty", "discriminator_loss", "DISC_CHANNELS"]

#: channels of :func:`disc_features` (RGB + luminance, contrast, saturation planes)
DISC_CHANNELS = 6


def disc_features(img_srgb: torch.Tensor) -> torch.Tensor:
    """RGB plus three spatially constant planes (Exposure section 5.1, DeepExposure section 4).

    Planes: mean luminance ``mean(Lum)``; contrast ``2 * var(Lum)`` (Exposure supplement 9);
    mean HSV saturation ``(max - min) / (max + 1e-3)``. ``Lum = 0.27 R + 0.67 G + 0.06 B``.

    Args:
        img_srgb: ``(B, 3, H, W)`` in [0, 1].
    Returns:
        ``(B, 6, H, W)``.
    """
    lum = luminance(img_srgb)  # (B,1,H,W)
    mean_l = lum.mean(dim=(-2, -1), keepdim=True)
    contrast = 2.0 * ((lum - mean_l) ** 2).mean(dim=(-2, -1), keepdim=True)
    # eps 1e-3 bounds d(sat)/d(pixel) by ~1e3 on near-black pixels (with 1e-8 a dark image gave
    # gradients of ~1e5 that blew up the critic's Adam state and stalled it for good)
    sat = rgb_to_hsv(img_srgb.clamp(0, 1), eps=1e-3)[:, 1:2].mean(dim=(-2, -1), keepdim=True)
    planes = torch.cat([mean_l, contrast, sat], dim=1).expand(-1, -1, *img_srgb.shape[-2:])
    return torch.cat([img_srgb, planes], dim=1)


def gradient_penalty(
    disc: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates ``x_hat = eps real + (1 - eps) fake``.

    ``disc`` maps images ``(B, 3, H, W)`` to scores ``(B, 1)`` (features are computed inside the
    caller's ``disc``). Per-image gradient norms over all pixels and channels.
    """
    b = real.shape[0]
    eps = torch.rand(b, 1, 1, 1, generator=generator, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    score = disc(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean()


def discriminator_loss(
    disc: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float = 10.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (12): returns ``(L_D, wasserstein_estimate)`` with ``W = E[D(real)] - E[D(fake)]``."""
    d_real = disc(real).mean()
    d_fake = disc(fake.detach()).mean()
    gp = gradient_penalty(disc, real, fake.detach(), generator)
    w = d_real - d_fake
    return -w + lambda_gp * gp, w.detach()


class Discriminator(nn.Module):
    """``D(img_srgb) = Trunk(disc_features(img_srgb))``: ``(B, 3, 64, 64) -> (B, 1)``."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, img_srgb: torch.Tensor) -> torch.Tensor:
        return self.trunk(disc_features(img_srgb))


__all__.append("Discriminator")
