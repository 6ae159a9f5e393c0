"""The fully convolutional A3C network of PixelRL (Fig. 1 of the paper).

Every layer is a 3x3 convolution; (filter size, dilation, output channels) per layer::

    shared trunk   conv1 (3, 1, 64) -> conv2 (3, 2, 64) -> conv3 (3, 3, 64) -> conv4 (3, 4, 64)   ReLU each
    policy head    conv5 (3, 3, 64) -> conv6 (3, 2, 64) -> convGRU (3, 1, 64) -> conv7 (3, 1, |A|) -> softmax
    value head     conv5 (3, 3, 64) -> conv6 (3, 2, 64) -> conv7 (3, 1, 1)

Padding equals the dilation, so every map keeps the input's ``H x W`` and each pixel gets its own
policy ``pi(a_i | s_i)`` and value ``V(s_i)``. The receptive field of the value head is
``1 + 2 (1 + 2 + 3 + 4 + 3 + 2 + 1) = 33`` pixels, the size of the reward-map filter ``w``
(section VI-A2). The policy head's convGRU reads conv6 through a 3x3 convolution as well, so one
step of the policy sees ``35 x 35`` pixels (plus, through the hidden state, what earlier steps saw);
with ``conv_gru=False`` it is 33 like the value head. ``channels`` (64 in the paper) is a setting so
small models can be trained on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PixelRLNetConfig", "PixelRLNet", "ConvGRU", "receptive_field", "TRUNK_DILATIONS", "HEAD_DILATIONS"]

#: dilations of the shared trunk (conv1-conv4) and of each head's conv5, conv6, conv7
TRUNK_DILATIONS = (1, 2, 3, 4)
HEAD_DILATIONS = (3, 2, 1)


@dataclass
class PixelRLNetConfig:
    """Constructor arguments of :class:`PixelRLNet` (written to the model's ``config.json``)."""

    in_channels: int = 1
    """input planes: 1 for grey-level denoising/restoration (colour photos: one channel at a time), 3 for Lab enhancement."""
    n_actions: int = 9
    """|A|: size of the action set (9 for Table I, 13 for Table VII)."""
    channels: int = 64
    """channels of every hidden layer (64 in Fig. 1)."""
    conv_gru: bool = True
    """policy head with the convGRU of Fig. 1 (the paper's '+convGRU')."""


class ConvGRU(nn.Module):
    """Convolutional GRU cell (3x3 convolutions, no biases on the recurrent terms as in the authors' code).

    ``z = sigmoid(W_z x + U_z h)``, ``r = sigmoid(W_r x + U_r h)``, ``h~ = tanh(W x + U (r * h))``,
    ``h' = (1 - z) h + z h~``. Shapes: ``x, h (B, C, H, W) -> h' (B, C, H, W)``.
    """

    def __init__(self, channels: int):
        super().__init__()
        conv = lambda: nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.w_z, self.u_z, self.w_r, self.u_r, self.w_h, self.u_h = conv(), conv(), conv(), conv(), conv(), conv()

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(self.w_z(x) + self.u_z(h))
        r = torch.sigmoid(self.w_r(x) + self.u_r(h))
        h_tilde = torch.tanh(self.w_h(x) + self.u_h(r * h))
        return (1 - z) * h + z * h_tilde


def _conv(c_in: int, c_out: int, dilation: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation)


class PixelRLNet(nn.Module):
    """Fig. 1: ``forward(x (B, in_channels, H, W), h (B, channels, H, W) | None)`` ->
    ``(logits (B, n_actions, H, W), value (B, 1, H, W), h' (B, channels, H, W))``.

    ``logits`` are the policy before the softmax (``pi = softmax(logits, dim=1)``); ``h'`` is the
    convGRU state for the next step (zeros at ``t = 0``; it equals ``h`` when ``conv_gru`` is off).
    """

    def __init__(self, cfg: PixelRLNetConfig):
        super().__init__()
        self.config = cfg
        c = cfg.channels
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for d in TRUNK_DILATIONS:
            layers += [_conv(c_in, c, d), nn.ReLU()]
            c_in = c
        self.trunk = nn.Sequential(*layers)
        d5, d6, d7 = HEAD_DILATIONS
        self.pi_head = nn.Sequential(_conv(c, c, d5), nn.ReLU(), _conv(c, c, d6), nn.ReLU())
        self.gru = ConvGRU(c) if cfg.conv_gru else None
        self.pi_out = _conv(c, cfg.n_actions, d7)
        self.v_head = nn.Sequential(_conv(c, c, d5), nn.ReLU(), _conv(c, c, d6), nn.ReLU(), _conv(c, 1, d7))

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """The convGRU state at ``t = 0``: zeros ``(B, channels, H, W)`` like ``x``."""
        return x.new_zeros(x.shape[0], self.config.channels, *x.shape[-2:])

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if h is None:
            h = self.initial_state(x)
        f = self.trunk(x)
        p = self.pi_head(f)
        if self.gru is not None:
            h = self.gru(p, h)
            p = h
        return self.pi_out(p), self.v_head(f), h


def receptive_field(conv_gru: bool = False) -> int:
    """Side of the receptive field of one step: 33 for the value head (and the policy without the
    convGRU), 35 for the policy with it (its input convolution is 3x3 too)."""
    dil = list(TRUNK_DILATIONS) + list(HEAD_DILATIONS) + ([1] if conv_gru else [])
    return 1 + 2 * sum(dil)
