"""Discriminator pieces shared by every agent: features, losses, gradient penalty.

Eq. (12) of the DeepExposure paper (WGAN-GP, Gulrajani et al. 2017), ``loss="wgan-gp"``::

    L_D = E_{S ~ ours}[D(S)] - E_{S ~ targets}[D(S)] + lambda * E_{S_hat}[(||grad D(S_hat)||_2 - 1)^2]

with ``S_hat = eps * S_target + (1 - eps) * S_ours``, ``eps ~ U[0, 1]`` per image. The discriminator
gives *higher* scores to photos that look like the targets, so ``D(S)`` is the aesthetic reward.

``loss="logistic"`` (not in the paper) replaces the two linear terms by the logistic loss of a
real/fake classifier with logit ``D`` (Goodfellow et al. 2014), same gradient penalty::

    L_D = E_ours[softplus(D(S))] + E_targets[softplus(-D(S))] + lambda * E_{S_hat}[(||grad D(S_hat)||_2 - 1)^2]

Why it exists: the WGAN loss is linear in ``D``, and in our short runs its critic stayed close to a
linear function of brightness, with one preferred direction for *every* photo. On unpaired toy data
where half the inputs are 1.5 EV too dark and half 1.5 EV too bright, a WGAN-GP critic trained for
400 steps against fixed outputs scored -2.5 EV highest for every photo, and the policies trained
against it chose the same exposure for dark and bright inputs. The logistic critic stops gaining
from fakes it already rejects, so it must bend around the targets. After 100-200 steps its
preferred exposure was about +0.3 to +1.2 EV for the dark inputs and about -1.4 to -2.1 EV for the
bright ones (benchmarks/results/default_model_runs.md). The reward is still the raw score ``D``.
On the default-model data, a 350-step run with it still drove segments to +-3 EV, so it is not
the default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .color import luminance, rgb_to_hsv

if TYPE_CHECKING:
    from .nets import Trunk

__all__ = ["disc_features", "gradient_penalty", "discriminator_loss", "DISC_CHANNELS", "GAN_LOSSES"]

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
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates ``x_hat = eps real + (1 - eps) fake``.

    ``disc`` maps images ``(B, 3, H, W)`` to scores ``(B, 1)`` (features are computed inside the
    caller's ``disc``). Per-image gradient norms over all pixels and channels. ``eps (B, 1, 1, 1)``
    in [0, 1] is drawn from ``generator`` unless given (a multi-process run draws the global batch's
    and passes each rank its rows).
    """
    b = real.shape[0]
    if eps is None:  # drawn on the CPU (the generator's device) and moved: the same numbers on every device
        eps = torch.rand(b, 1, 1, 1, generator=generator, dtype=real.dtype)
    eps = eps.to(real)
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    score = disc(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean()


#: discriminator losses :func:`discriminator_loss` knows
GAN_LOSSES = ("wgan-gp", "logistic")


def discriminator_loss(
    disc: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    lambda_gp: float = 10.0,
    generator: torch.Generator | None = None,
    loss: str = "wgan-gp",
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (12) (``loss="wgan-gp"``) or the logistic loss (module docstring); ``eps``: see :func:`gradient_penalty`.

    Returns ``(L_D, gap)`` with ``gap = E[D(real)] - E[D(fake)]`` (the Wasserstein estimate for
    WGAN-GP; for the logistic loss the mean logit gap, logged under the same name).
    """
    if loss not in GAN_LOSSES:
        raise ValueError(f"discriminator loss must be one of {GAN_LOSSES}, got {loss!r}")
    d_real, d_fake = disc(torch.cat([real, fake.detach()])).split([real.shape[0], fake.shape[0]])  # one call
    gp = gradient_penalty(disc, real, fake.detach(), generator, eps)
    gap = d_real.mean() - d_fake.mean()
    if loss == "wgan-gp":
        main = -gap
    else:
        main = nn.functional.softplus(d_fake).mean() + nn.functional.softplus(-d_real).mean()
    return main + lambda_gp * gp, gap.detach()


class Discriminator(nn.Module):
    """``D(img_srgb) = Trunk(disc_features(img_srgb))``: ``(B, 3, 64, 64) -> (B, 1)``."""

    def __init__(self, trunk: Trunk):
        super().__init__()
        self.trunk = trunk

    def forward(self, img_srgb: torch.Tensor) -> torch.Tensor:
        return self.trunk(disc_features(img_srgb))


__all__.append("Discriminator")


class FidelityScore(nn.Module):
    """The agent's score with paired references: ``D(S) - w * mean_pixels((S - R)^2)``, ``(B, 1)``.

    Not in the paper (which trains unpaired). When the training inputs come with well-exposed
    references (``deepexposure train --references``, e.g. FiveK's expert versions or ``deepexposure
    synth`` pairs), the agents' ``train_step`` wraps the discriminator in this module, so every
    score the agent maximises (the reward, and in DeepExposure II the value) also rewards
    closeness to the input's own reference. The discriminator itself is still trained unpaired.

    Args:
        disc: the discriminator, ``(B, 3, H, W) -> (B, 1)``.
        references: ``(B, 3, H, W)`` in [0, 1], row ``i`` the reference of the image scored in row ``i``.
        weight: ``w``. The gradient of the squared error has a norm of about ``2 w rmse / sqrt(3 H W)``
            against about 1 for the (gradient-penalised) discriminator: at 64 x 64 and an RMSE of 0.1,
            ``w`` of about 550 weighs as much as the discriminator.
    """

    def __init__(self, disc: nn.Module, references: torch.Tensor, weight: float):
        super().__init__()
        self.disc = disc
        self.references: torch.Tensor
        self.register_buffer("references", references, persistent=False)
        self.weight = float(weight)

    def forward(self, img_srgb: torch.Tensor) -> torch.Tensor:
        if img_srgb.shape != self.references.shape:
            raise ValueError(f"FidelityScore: images {tuple(img_srgb.shape)} do not match references {tuple(self.references.shape)}")
        mse = (img_srgb - self.references).pow(2).flatten(1).mean(1, keepdim=True)
        return self.disc(img_srgb) - self.weight * mse


__all__.append("FidelityScore")
