"""Policy, value and discriminator networks (their files: :mod:`deepexposure.pretrained`).

All three share one trunk shape (DeepExposure supplement figure 2; Exposure section 5.1, fig. 7):
four 4x4 stride-2 convolutions with LeakyReLU, a 128-unit fully connected layer, an output layer.
They never share weights. No dropout (the Exposure paper keeps 50 % dropout on at test time; we do
not, so inference is deterministic).

- policy (DeepExposure): 9 input channels ``[S0, seg_t, S^l_t]`` -> one exposure value
  ``e = ev_max * tanh(raw)`` in ``[-ev_max, ev_max]`` EV.
- value / discriminator: 6 channels, the RGB image plus three spatially constant planes
  (mean luminance, contrast, saturation; :func:`deepexposure.gan.disc_features`) -> one score.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TrunkConfig", "Trunk", "frozen", "update_average"]


@torch.no_grad()
def update_average(avg: nn.Module, model: nn.Module, beta: float) -> None:
    """Polyak average of weights: ``avg <- beta avg + (1 - beta) theta`` for every parameter of
    ``model`` (same architecture); buffers are copied. Used by both agents' ``--policy-ema``."""
    for a, p in zip(avg.parameters(), model.parameters()):
        a.lerp_(p, 1.0 - beta)
    for buf_avg, buf in zip(avg.buffers(), model.buffers()):
        buf_avg.copy_(buf)


@contextlib.contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Turn off ``requires_grad`` of every parameter of ``modules`` (``None`` entries are skipped) for
    the ``with`` block; each parameter's previous setting is restored on exit, also when the block
    raises. Gradients still flow *through* a frozen network to its inputs."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


@dataclass
class TrunkConfig:
    """Constructor arguments of :class:`Trunk` (written to ``config.json``)."""

    in_channels: int = 9
    """input planes (9 for the DeepExposure policy, 6 for value/discriminator)."""
    out_features: int = 1
    """size of the output layer."""
    base_channels: int = 32
    """channels of the first convolution; doubled at each of the four layers."""
    input_size: int = 64
    """side of the square input (the paper's 64x64 thumbnails)."""
    fc_features: int = 128
    """width of the hidden fully connected layer."""
    leaky_slope: float = 0.2
    """LeakyReLU negative slope."""
    init: str = "kaiming"
    """weight initialisation for training from scratch: 'kaiming' (He normal for the LeakyReLU
    slope, zero biases, output layer scaled by ``out_scale``) keeps the input's variation alive
    through the five layers; 'torch' is PyTorch's default (signal shrinks at every layer, so at
    the start the output is mostly the biases and hardly depends on the image)."""
    out_scale: float = 0.1
    """with init='kaiming': factor on the output layer's initial weights (small first outputs)."""
    kind: str = "generic"
    """role: 'policy', 'value', 'discriminator', 'whitebox-policy', ... (the role's own settings,
    such as the policy's ``ev_max``, are fields of the model's ``config.json``, not of the network)."""


class Trunk(nn.Module):
    """Four 4x4/2 convolutions + LeakyReLU, FC 128 + LeakyReLU, FC ``out_features``.

    Input ``(B, in_channels, S, S)`` with ``S = cfg.input_size``; output ``(B, out_features)``.
    """

    def __init__(self, cfg: TrunkConfig):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for i in range(4):
            c_out = cfg.base_channels * 2**i
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(cfg.leaky_slope)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        side = cfg.input_size // 16
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side * side, cfg.fc_features),
            nn.LeakyReLU(cfg.leaky_slope),
            nn.Linear(cfg.fc_features, cfg.out_features),
        )
        if cfg.init == "kaiming":
            self._init_kaiming()
        elif cfg.init != "torch":
            raise ValueError(f"TrunkConfig.init must be 'kaiming' or 'torch', got {cfg.init!r}")

    @torch.no_grad()
    def _init_kaiming(self) -> None:
        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for m in layers:
            nn.init.kaiming_normal_(m.weight, a=self.config.leaky_slope, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        layers[-1].weight.mul_(self.config.out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        if x.shape[-2:] != (s, s) or x.shape[-3] != self.config.in_channels:
            raise ValueError(f"expected (B, {self.config.in_channels}, {s}, {s}), got {tuple(x.shape)}")
        return self.fc(self.features(x))
