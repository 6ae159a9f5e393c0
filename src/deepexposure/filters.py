"""Differentiable, resolution-independent photo filters.

Two families live here, both pure tensor functions on images ``(B, 3, H, W)`` with per-image
parameters ``(B, P)`` (a batch of 1 broadcasts). Device and dtype follow the image. Every filter is
strictly pixel-wise: the output at a pixel depends only on that pixel and the image's parameters,
so parameters chosen on a 64x64 thumbnail apply unchanged to the full-resolution photo
(Hu et al. 2018, section 4.1, "Resolution-independent").

1. DeepExposure (Yu et al., section 4 "The algorithmic pipeline"):

   - :func:`global_exposure` -- the global filter ``S^g = S * 2^e``, applied in linear light and
     clipped at white.
   - :func:`local_exposure` -- the local filter ``S^l = S (.) bg_mask + e * seg``: the exposed image
     inside a (soft) segment mask, the input elsewhere.

2. The eight filters of the white-box "Exposure" agent (Hu et al. 2018, Table 1 and supplement
   section 8), registered in :data:`FILTERS` in the agent's action order (index = action id, the
   order of ``cfg.filters`` in the original code)::

       0 exposure  1 gamma  2 white_balance  3 saturation  4 tone_curve  5 contrast
       6 black_and_white  7 color_curves

   Each has a ``squash`` mapping an unbounded network output to the filter's parameter range
   (the original ``tanh_range`` / ``sigmoid`` heads) and a ``neutral`` parameter vector at which
   the filter is the identity.

Colour-encoding convention (one rule for the whole module):
    Every filter takes and returns **sRGB-encoded** images (``img_srgb``). Exposure (both the
    DeepExposure filters and the white-box ``exposure``) alone decodes to linear light, scales by
    ``2^E`` and re-encodes, because an EV step is a physical scaling of light. The other seven
    white-box filters act directly on the encoded values, which is where tone/colour edits are
    perceptually meant. (The original Exposure code fed linearised ProPhoto RGB into all eight
    filters, so its gamma filter doubled as the tone encoding; on sRGB input every filter keeps
    its meaning and its neutral point.)

Range convention:
    :func:`global_exposure` / :func:`local_exposure` clip in linear light, so their output is in
    [0, 1]. The white-box filters do **not** clip their output, as in the original code (which
    penalises ``mean(relu(x - 1)^2)`` in the agent instead of clamping, so gradients survive):
    exposure with ``E > 0``, white balance and contrast may return values above 1 (contrast with
    ``p < 0`` up to about 2). Callers clamp once before display or storage
    (:func:`deepexposure.recipe.render` does); the agent should penalise the overflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .color import LUM_WEIGHTS_EXPOSURE, hsv_to_rgb, linear_to_srgb, luminance, rgb_to_hsv, srgb_to_linear

__all__ = [
    "EXPOSURE_RANGE",
    "GAMMA_RANGE",
    "WB_LOG_RANGE",
    "CURVE_STEPS",
    "TONE_CURVE_RANGE",
    "COLOR_CURVE_RANGE",
    "global_exposure",
    "local_exposure",
    "exposure",
    "gamma",
    "white_balance",
    "saturation",
    "tone_curve",
    "contrast",
    "black_and_white",
    "color_curves",
    "squash_exposure",
    "squash_gamma",
    "squash_white_balance",
    "squash_saturation",
    "squash_tone_curve",
    "squash_contrast",
    "squash_black_and_white",
    "squash_color_curves",
    "FilterSpec",
    "FILTERS",
    "FILTER_NAMES",
    "apply_filter",
]

#: White-box exposure range, ``E in [-3.5, 3.5]`` (original ``cfg.exposure_range``).
EXPOSURE_RANGE: float = 3.5
#: White-box gamma range, ``gamma in [1/3, 3]`` (original ``cfg.gamma_range``).
GAMMA_RANGE: float = 3.0
#: White-box white balance: un-normalised factors ``exp(t)``, ``t in [-0.5, 0.5]`` (original
#: ``log_wb_range``; the ``cfg.wb_range = 1.1`` of the original config is unused by its filter).
WB_LOG_RANGE: float = 0.5
#: Number of linear pieces of tone and colour curves (original ``cfg.curve_steps``).
CURVE_STEPS: int = 8
#: Slope range of the tone curve pieces (supplement section 8).
TONE_CURVE_RANGE: tuple[float, float] = (0.5, 2.0)
#: Slope range of the colour curve pieces (supplement section 8).
COLOR_CURVE_RANGE: tuple[float, float] = (0.9, 1.1)

#: Below this value gamma continues linearly (see :func:`gamma`); the original floors at 0.001.
_GAMMA_EPS = 1e-3
#: Below this luminance the contrast ratio uses its Taylor expansion (see :func:`contrast`).
_CONTRAST_EPS = 1e-4


# ----------------------------------------------------------------------------------------------
# boundary checks and small helpers
# ----------------------------------------------------------------------------------------------


def _check_image(img: torch.Tensor, name: str = "img_srgb") -> None:
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[1] != 3:
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor, got {shape}")


def _check_params(img: torch.Tensor, params: torch.Tensor, n: int, name: str) -> torch.Tensor:
    """Validate ``params`` against ``(B, n)`` (``(B,)`` allowed when ``n == 1``; batch 1 broadcasts)."""
    if not isinstance(params, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of shape (B, {n}), got {type(params).__name__}")
    if n == 1 and params.dim() == 1:
        params = params[:, None]
    if params.dim() != 2 or params.shape[1] != n or params.shape[0] not in (1, img.shape[0]):
        raise ValueError(f"{name} must have shape ({img.shape[0]}, {n}) (or (1, {n})), got {tuple(params.shape)}")
    return params.to(dtype=img.dtype)


def _lerp(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``(1 - p) a + p b`` with ``p`` of shape ``(B, 1)`` broadcast over channels and pixels."""
    w = p[:, :, None, None]
    return (1.0 - w) * a + w * b


def _tanh_range(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``low + (high - low) (tanh(raw) + 1) / 2``: R -> (low, high), ``0 -> (low + high) / 2``."""
    return low + (high - low) * (torch.tanh(raw) + 1.0) * 0.5


def _expose_srgb(img_srgb: torch.Tensor, ev: torch.Tensor, clip: bool) -> torch.Tensor:
    """``linear_to_srgb(L * 2^ev)`` with ``L = srgb_to_linear(img_srgb)``, optionally clipped to [0, 1]."""
    return _expose_linear(srgb_to_linear(img_srgb), ev, clip)


def exposed_from_linear(img_lin: torch.Tensor, ev: torch.Tensor) -> torch.Tensor:
    """:func:`global_exposure` for an image already decoded to linear light (saves one transfer
    function per exposure when one photo is re-exposed many times, as full-resolution fusion does).

    ``linear_to_srgb(clip(img_lin * 2^ev, 0, 1))``; ``img_lin (B,3,H,W)`` linear in [0, 1], ``ev (B,1)``.
    """
    return _expose_linear(img_lin, _check_params(img_lin, ev, 1, "ev"), clip=True)


def _expose_linear(img_lin: torch.Tensor, ev: torch.Tensor, clip: bool) -> torch.Tensor:
    img_lin = img_lin * torch.exp2(ev)[:, :, None, None]
    if clip:
        # Physical: light pushed past white saturates. torch.clamp passes the gradient at the
        # bounds themselves, so only pixels strictly beyond white lose their gradient w.r.t. ev.
        img_lin = img_lin.clamp(0.0, 1.0)
    return linear_to_srgb(img_lin)


# ----------------------------------------------------------------------------------------------
# DeepExposure filters
# ----------------------------------------------------------------------------------------------


def global_exposure(img_srgb: torch.Tensor, ev: torch.Tensor) -> torch.Tensor:
    """DeepExposure global filter: re-expose the whole image by ``ev`` stops.

    ``S^g = linear_to_srgb(clip(srgb_to_linear(S) * 2^ev, 0, 1))`` (Yu et al., section 4,
    "The global filter performs S^g_t = S * e_t", with ``e_t`` read as an EV step in linear light).

    Gradients: the clip is physical -- a pixel pushed strictly past white has zero gradient
    w.r.t. ``ev`` and the image; every other pixel keeps a non-zero gradient (also the dark ones,
    through the linear toe of the sRGB curve).

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        ev: ``(B, 1)`` or ``(B,)`` exposure values in stops (the DeepExposure policy's range is ``+-ev_max``, 3 by default)
            ([-3, 3]); any real value works. Neutral: 0.
    Returns:
        ``(B, 3, H, W)`` sRGB in [0, 1].
    """
    _check_image(img_srgb)
    ev = _check_params(img_srgb, ev, 1, "ev")
    return _expose_srgb(img_srgb, ev, clip=True)


def local_exposure(img_srgb: torch.Tensor, mask: torch.Tensor, ev: torch.Tensor) -> torch.Tensor:
    """DeepExposure local filter: expose inside a segment mask, keep the background.

    ``S^l = S (.) (1 - m) + global_exposure(S, ev) (.) m`` (Yu et al., section 4,
    ``S^l_t = S (.) bg_mask + e_t * seg_t`` with ``bg_mask = 1 - m``). A soft mask blends linearly.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        mask: ``(B, 1, H, W)`` (or ``(1, 1, H, W)``) in [0, 1]; 1 = exposed segment. Neutral: 0.
        ev: ``(B, 1)`` or ``(B,)`` exposure values in stops (the policy's ``+-ev_max``). Neutral: 0.
    Returns:
        ``(B, 3, H, W)`` sRGB in [0, 1].
    """
    _check_image(img_srgb)
    if (
        not isinstance(mask, torch.Tensor)
        or mask.dim() != 4
        or mask.shape[1] != 1
        or mask.shape[0] not in (1, img_srgb.shape[0])
        or mask.shape[2:] != img_srgb.shape[2:]
    ):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must have shape ({img_srgb.shape[0]}, 1, {img_srgb.shape[2]}, {img_srgb.shape[3]}), got {shape}")
    mask = mask.to(dtype=img_srgb.dtype)
    return img_srgb * (1.0 - mask) + global_exposure(img_srgb, ev) * mask


# ----------------------------------------------------------------------------------------------
# White-box "Exposure" filters (Hu et al. 2018)
# ----------------------------------------------------------------------------------------------


def exposure(img_srgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """White-box exposure: ``p_O = 2^E p_I`` in linear light (Table 1), not clipped.

    ``out = linear_to_srgb(srgb_to_linear(p) * 2^E)``. Unlike :func:`global_exposure` there is no
    clip, as in the original (the agent penalises overflow); values above white stay above 1 and
    keep their gradient. The original multiplied its (already linear) input directly.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB, nominally [0, 1].
        params: ``(B, 1)`` (or ``(B,)``): ``E`` in [-3.5, 3.5] stops. Neutral: ``(0,)``.
    Returns:
        ``(B, 3, H, W)`` sRGB, >= 0, may exceed 1 for ``E > 0``.
    """
    _check_image(img_srgb)
    params = _check_params(img_srgb, params, 1, "exposure params")
    return _expose_srgb(img_srgb, params, clip=False)


def squash_exposure(raw: torch.Tensor) -> torch.Tensor:
    """``E = 3.5 tanh(raw)`` in (-3.5, 3.5); ``0 -> 0`` (neutral). ``(B, 1) -> (B, 1)``."""
    return _tanh_range(raw, -EXPOSURE_RANGE, EXPOSURE_RANGE)


def gamma(img_srgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """White-box gamma: ``p_O = p_I ^ gamma`` per channel.

    Safe near 0: for ``p < eps = 1e-3`` the curve continues linearly, ``p * eps^(gamma - 1)``
    (continuous at ``eps``, finite gradients, exactly the identity at ``gamma = 1`` and 0 at 0).
    The original instead floors the input, ``max(p, 0.001)^gamma``, which is not the identity at
    neutral for ``p < 0.001``.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB, nominally [0, 1].
        params: ``(B, 1)`` (or ``(B,)``): ``gamma`` in [1/3, 3]. Neutral: ``(1,)``.
    Returns:
        ``(B, 3, H, W)``, in [0, 1] for input in [0, 1].
    """
    _check_image(img_srgb)
    params = _check_params(img_srgb, params, 1, "gamma params")
    g = params[:, :, None, None]
    power = img_srgb.clamp(min=_GAMMA_EPS) ** g
    toe = img_srgb * _GAMMA_EPS ** (g - 1.0)
    return torch.where(img_srgb >= _GAMMA_EPS, power, toe)


def squash_gamma(raw: torch.Tensor) -> torch.Tensor:
    """``gamma = exp(log(3) tanh(raw)) = 3^tanh(raw)`` in (1/3, 3); ``0 -> 1`` (neutral)."""
    log_range = math.log(GAMMA_RANGE)
    return torch.exp(_tanh_range(raw, -log_range, log_range))


def white_balance(img_srgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """White-box white balance: ``p_O = (W_r r_I, W_g g_I, W_b b_I)`` (Table 1).

    The factors are used as given; the luminance normalisation of the original lives in
    :func:`squash_white_balance`, so a hand-edited recipe means exactly what it says.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB, nominally [0, 1].
        params: ``(B, 3)``: ``(W_r, W_g, W_b)``; the agent's reachable box is
            :data:`FILTERS` ``["white_balance"].low/high`` (about [0.68, 1.40] x [0.78, 1.17] x
            [0.43, 2.13]). Neutral: ``(1, 1, 1)``.
    Returns:
        ``(B, 3, H, W)``, may exceed 1 where a factor is above 1.
    """
    _check_image(img_srgb)
    params = _check_params(img_srgb, params, 3, "white_balance params")
    return img_srgb * params[:, :, None, None]


def _wb_factors(raw_g: torch.Tensor, raw_b: torch.Tensor) -> torch.Tensor:
    one = torch.ones_like(raw_g)
    w = torch.stack(
        [one, torch.exp(WB_LOG_RANGE * torch.tanh(raw_g)), torch.exp(WB_LOG_RANGE * torch.tanh(raw_b))], dim=-1
    )
    wr, wg, wb = LUM_WEIGHTS_EXPOSURE
    # Normalise so that the factors have luminance 1 (a grey keeps its luminance). The denominator
    # is at least 0.27 + 0.73 e^-0.5 > 0.7, so no epsilon is needed (the original adds 1e-5).
    return w / (wr * w[..., 0:1] + wg * w[..., 1:2] + wb * w[..., 2:3])


def squash_white_balance(raw: torch.Tensor) -> torch.Tensor:
    """Original white-balance head: ``(B, 3) -> (B, 3)`` factors.

    ``w = (1, exp(0.5 tanh(raw_g)), exp(0.5 tanh(raw_b)))``, then ``W = w / Lum(w)`` with
    ``Lum(w) = 0.27 w_r + 0.67 w_g + 0.06 w_b``. ``raw[:, 0]`` is ignored (the original masks the
    red output with ``(0, 1, 1)``: only green and blue are learned, red is the reference, and the
    normalisation keeps a grey pixel's luminance). ``0 -> (1, 1, 1)`` (neutral).
    """
    return _wb_factors(raw[..., 1], raw[..., 2])


def saturation(img_srgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """White-box saturation: ``p_O = (1 - p) p_I + p Enhanced(p_I)`` (supplement section 8).

    ``EnhancedS(s, v) = s + (1 - s) (0.5 - |0.5 - v|) 0.8`` and
    ``Enhanced(p_I) = HSVtoRGB(H(p_I), EnhancedS(S(p_I), V(p_I)), V(p_I))``. As in the original,
    the HSV conversion sees the input clamped to [0, 1]; the ``(1 - p) p_I`` term uses the input
    itself, so ``p = 0`` is exactly the identity. Exact greys (``S = 0``, hue undefined) stay
    grey; the original's ``H = 0`` convention tinted them red (a mid-grey by ``EnhancedS = 0.4``).
    Near-grey pixels are still boosted to ``S ~ 0.8 (0.5 - |0.5 - V|)`` in their own hue, as the
    formula says.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB, nominally [0, 1].
        params: ``(B, 1)`` (or ``(B,)``): ``p`` in [0, 1] (the original's sigmoid head).
            Neutral: ``(0,)``.
    Returns:
        ``(B, 3, H, W)``, in [0, 1] for input in [0, 1].
    """
    _check_image(img_srgb)
    params = _check_params(img_srgb, params, 1, "saturation params")
    img_c = img_srgb.clamp(0.0, 1.0)
    hsv = rgb_to_hsv(img_c)
    h, s, v = hsv.unbind(dim=-3)
    enhanced_s = s + (1.0 - s) * (0.5 - (0.5 - v).abs()) * 0.8
    full = hsv_to_rgb(torch.stack([h, enhanced_s, v], dim=-3))
    # Exact greys have no hue (rgb_to_hsv reports 0 = red); keep them grey instead of tinting red.
    full = torch.where((s > 0).unsqueeze(-3), full, img_c)
    return _lerp(img_srgb, full, params)


def squash_saturation(raw: torch.Tensor) -> torch.Tensor:
    """``p = sigmoid(raw)`` in (0, 1) as in the original; note ``0 -> 0.5`` (neutral 0 is at -inf)."""
    return torch.sigmoid(raw)


def _piecewise_curve(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. (5): ``f(x) = (1 / T_L) sum_i clip(L x - i, 0, 1) t_i`` with ``T_L = sum_i t_i``.

    ``x``: ``(B, C, H, W)``; ``t``: ``(B, C', L)`` with ``C'`` in {1, C} (broadcast over channels).
    """
    steps = t.shape[-1]
    total = t.sum(dim=-1).clamp(min=1e-12)  # > 0 for any slope in range; guards hand-made zeros
    t = t / total[..., None]
    out = torch.zeros_like(x)
    for i in range(steps):
        out = out + (x * steps - i).clamp(0.0, 1.0) * t[:, :, i, None, None]
    return out


def tone_curve(img_srgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """White-box tone curve: one monotone 8-piece linear curve applied to all channels.

    Eq. (5): ``f(x) = (1 / T_L) sum_{i<L} clip(L x - i, 0, 1) t_i``, ``T_L = sum t_i``, ``L = 8``:
    the curve through ``(k / L, T_k / T_L)``; it maps [0, 1] onto [0, 1] (``f(0) = 0``,
    ``f(1) = 1``) and is constant outside [0, 1]. The actual slope of piece ``i`` is
    ``L t_i / T_L``, so only ratios of the ``t_i`` matter.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB, nominally [0, 1].
        params: ``(B, 8)``: ``t_i`` in [0.5, 2] (supplement section 8). Neutral: all equal
            (``(1,) * 8``, the identity; the squash gives ``1.25`` each, also the identity).
    Returns:
        ``(B, 3, H, W)`` in [0, 1].
    """
    _check_image(img_srgb)
    params = _check_params(img_srgb, params, CURVE_STEPS, "tone_curve params")
    return _piecewise_curve(img_srgb, params[:, None, :])


def squash_tone_curve(raw: torch.Tensor) -> torch.Tensor:
    """``t = 0.5 + 1.5 (tanh(raw) + 1) / 2`` in (0.5, 2); ``0 -> 1.25`` each (identity curve)."""
    return _tanh_range(raw, *TONE_CURVE_RANGE)


def color_curves(img_srgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """White-box colour curves: ``p_O = (L_{C_r}(r_I), L_{C_g}(g_I), L_{C_b}(b_I))`` (Table 1).

    One eq. (5) curve (see :func:`tone_curve`) per channel, 8 pieces each.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB, nominally [0, 1].
        params: ``(B, 24)``: channel-major, ``params[:, 8 c + i]`` is piece ``i`` of channel ``c``
            (R, G, B); each in [0.9, 1.1] (supplement section 8). Neutral: ``(1,) * 24``.
    Returns:
        ``(B, 3, H, W)`` in [0, 1].
    """
    _check_image(img_srgb)
    params = _check_params(img_srgb, params, 3 * CURVE_STEPS, "color_curves params")
    return _piecewise_curve(img_srgb, params.reshape(params.shape[0], 3, CURVE_STEPS))


def squash_color_curves(raw: torch.Tensor) -> torch.Tensor:
    """``t = 0.9 + 0.2 (tanh(raw) + 1) / 2`` in (0.9, 1.1); ``0 -> 1`` (neutral)."""
    return _tanh_range(raw, *COLOR_CURVE_RANGE)


def contrast(img_srgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """White-box contrast: ``p_O = (1 - p) p_I + p Enhanced(p_I)`` (supplement section 8).

    ``EnhancedLum = (1 - cos(pi Lum)) / 2`` and ``Enhanced = p_I * EnhancedLum / Lum`` with
    ``Lum = 0.27 r + 0.67 g + 0.06 b`` clamped to [0, 1] (as in the original). The ratio is
    evaluated as ``sin^2(pi Lum / 2) / Lum`` and, below ``Lum = 1e-4``, as its limit
    ``pi^2 Lum / 4`` (the original divides by ``Lum + 1e-6``). ``p < 0`` reduces contrast.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB, nominally [0, 1].
        params: ``(B, 1)`` (or ``(B,)``): ``p`` in [-1, 1] (the original's tanh head).
            Neutral: ``(0,)``.
    Returns:
        ``(B, 3, H, W)``, >= 0 for input in [0, 1]; may exceed 1 (saturated colours).
    """
    _check_image(img_srgb)
    params = _check_params(img_srgb, params, 1, "contrast params")
    lum = luminance(img_srgb).clamp(0.0, 1.0)
    safe = lum.clamp(min=_CONTRAST_EPS)
    ratio = torch.where(lum >= _CONTRAST_EPS, torch.sin(0.5 * math.pi * safe) ** 2 / safe, (math.pi**2 / 4.0) * lum)
    return _lerp(img_srgb, img_srgb * ratio, params)


def squash_contrast(raw: torch.Tensor) -> torch.Tensor:
    """``p = tanh(raw)`` in (-1, 1); ``0 -> 0`` (neutral)."""
    return torch.tanh(raw)


def black_and_white(img_srgb: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """White-box black & white: ``p_O = (1 - p) p_I + p (Lum, Lum, Lum)`` (supplement section 8).

    ``Lum = 0.27 r + 0.67 g + 0.06 b``.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB, nominally [0, 1].
        params: ``(B, 1)`` (or ``(B,)``): ``p`` in [0, 1] (the original's sigmoid head).
            Neutral: ``(0,)``.
    Returns:
        ``(B, 3, H, W)``, in [0, 1] for input in [0, 1].
    """
    _check_image(img_srgb)
    params = _check_params(img_srgb, params, 1, "black_and_white params")
    return _lerp(img_srgb, luminance(img_srgb).expand_as(img_srgb), params)


def squash_black_and_white(raw: torch.Tensor) -> torch.Tensor:
    """``p = sigmoid(raw)`` in (0, 1) as in the original; note ``0 -> 0.5`` (neutral 0 is at -inf)."""
    return torch.sigmoid(raw)


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterSpec:
    """One white-box filter: its parameter layout, range, neutral point and functions."""

    name: str
    """registry key, also the recipe's ``"name"``"""
    n_params: int
    """P, the width of the ``(B, P)`` parameter tensor"""
    low: tuple[float, ...]
    """per-parameter lower bound of the agent's range (length ``n_params``)"""
    high: tuple[float, ...]
    """per-parameter upper bound of the agent's range (length ``n_params``)"""
    neutral: tuple[float, ...]
    """parameters at which ``fn`` is the identity (length ``n_params``)"""
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """``fn(img_srgb (B, 3, H, W), params (B, P)) -> (B, 3, H, W)``"""
    squash: Callable[[torch.Tensor], torch.Tensor]
    """``squash(raw (B, P)) -> params (B, P)`` within ``[low, high]``"""

    def neutral_params(self, batch_size: int = 1, *, device=None, dtype=torch.float32) -> torch.Tensor:
        """The neutral parameters as a ``(batch_size, n_params)`` tensor."""
        return torch.tensor(self.neutral, device=device, dtype=dtype).expand(batch_size, self.n_params).clone()


def _wb_box() -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Each normalised factor is monotone in tanh(raw_g) and tanh(raw_b), so the box is spanned
    # by the four corners of the (g, b) square.
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], dtype=torch.float64) * 40.0
    w = _wb_factors(corners[:, 0], corners[:, 1])
    return tuple(w.min(dim=0).values.tolist()), tuple(w.max(dim=0).values.tolist())


def _spec(name, n, low, high, neutral, fn, squash) -> FilterSpec:
    def as_tuple(v) -> tuple[float, ...]:
        return tuple(float(x) for x in v) if isinstance(v, (tuple, list)) else (float(v),) * n

    return FilterSpec(name, n, as_tuple(low), as_tuple(high), as_tuple(neutral), fn, squash)


_WB_LOW, _WB_HIGH = _wb_box()

#: The white-box filters in the agent's action order (index = action id; original ``cfg.filters``).
FILTERS: dict[str, FilterSpec] = {
    s.name: s
    for s in (
        _spec("exposure", 1, -EXPOSURE_RANGE, EXPOSURE_RANGE, 0.0, exposure, squash_exposure),
        _spec("gamma", 1, 1.0 / GAMMA_RANGE, GAMMA_RANGE, 1.0, gamma, squash_gamma),
        _spec("white_balance", 3, _WB_LOW, _WB_HIGH, 1.0, white_balance, squash_white_balance),
        _spec("saturation", 1, 0.0, 1.0, 0.0, saturation, squash_saturation),
        _spec("tone_curve", CURVE_STEPS, *TONE_CURVE_RANGE, 1.0, tone_curve, squash_tone_curve),
        _spec("contrast", 1, -1.0, 1.0, 0.0, contrast, squash_contrast),
        _spec("black_and_white", 1, 0.0, 1.0, 0.0, black_and_white, squash_black_and_white),
        _spec("color_curves", 3 * CURVE_STEPS, *COLOR_CURVE_RANGE, 1.0, color_curves, squash_color_curves),
    )
}
#: ``tuple(FILTERS)``: action id -> filter name.
FILTER_NAMES: tuple[str, ...] = tuple(FILTERS)


def apply_filter(name: str, img: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply the white-box filter ``name`` of :data:`FILTERS`.

    Args:
        name: a key of :data:`FILTERS`.
        img: ``(B, 3, H, W)`` sRGB image.
        params: ``(B, P)`` with ``P = FILTERS[name].n_params`` (already squashed, in range).
    Returns:
        ``(B, 3, H, W)``.
    Raises:
        ValueError: unknown name or wrong shapes.
    """
    spec = FILTERS.get(name)
    if spec is None:
        raise ValueError(f"unknown filter {name!r} (known: {', '.join(FILTERS)})")
    return spec.fn(img, params)
