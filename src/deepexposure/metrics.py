"""Image-quality metrics for paired and unpaired evaluation (pure tensor functions).

Paired metrics take ``pred_srgb`` and ``target_srgb`` of shape ``(B, 3, H, W)`` in [0, 1] (sRGB
encoded, as written to files) and return one value per image, shape ``(B,)``:

- :func:`mse`: mean squared error on the **8-bit scale**, ``mean((255 x - 255 y)^2)``, as in
  Table 1 of DeepExposure (Yu et al. 2018) and Exposure (Hu et al. 2018).
- :func:`psnr`: ``10 log10(255^2 / MSE)`` per image (equivalently ``data_range = 1``).
- :func:`ssim`: Wang et al. 2004 with a Gaussian window (sigma 1.5, 11 taps), ``K1 = 0.01``,
  ``K2 = 0.03``, population covariances; numerically the same as scikit-image's
  ``structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, channel_axis=-1)``. Default ``mode="rgb"``: SSIM of each channel, averaged;
  ``mode="luma"``: SSIM of the BT.601 luma ``0.299 R' + 0.587 G' + 0.114 B'`` of the sRGB values.
- :func:`ciede2000`: mean CIEDE2000 colour difference (Sharma, Wu & Dalal 2005) after
  sRGB -> CIE XYZ -> CIELAB with the D65 white point (:func:`srgb_to_lab`).

Unpaired metric (Exposure, Hu et al. 2018, section 6 and supplement section 9):

- :func:`histogram_intersection`: for two *sets* of images, sample patches
  (:func:`sample_patches`: per image 4 random square crops with side = short edge, each
  area-resized to 80 x 80, then 4 random 64 x 64 crops of each = 16 patches of 64 x 64, as in the
  authors' ``histogram_intersection.py``), compute per patch the **luminance** (mean of
  ``Lum = 0.27 R + 0.67 G + 0.06 B``), the **contrast** and the **saturation** (mean HSL "S"),
  histogram each over 32 equal bins on [0, 1] and return ``sum_k min(h_a[k], h_b[k])`` per quantity
  (1 = identical distributions, 0 = disjoint). Contrast follows the paper's text, "twice the variance
  of pixel luminance" (``contrast="variance"``); the authors' released script uses twice the standard
  deviation instead, available as ``contrast="std"``. Luminance is computed on the sRGB-encoded
  values, as in the authors' script.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .color import luminance, rgb_to_gray, srgb_to_linear

__all__ = [
    "mse",
    "psnr",
    "ssim",
    "srgb_to_lab",
    "delta_e2000",
    "ciede2000",
    "sample_patches",
    "patch_statistics",
    "histograms",
    "histogram_intersection",
    "histogram_intersection_from_stats",
    "collect_statistics",
    "HIST_QUANTITIES",
    "paired_metrics",
]

HIST_QUANTITIES = ("luminance", "contrast", "saturation")


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(pred.shape)} vs {tuple(target.shape)}")


def mse(pred_srgb: torch.Tensor, target_srgb: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the 8-bit scale: ``mean over pixels and channels of (255 (x - y))^2``.

    Args:
        pred_srgb, target_srgb: ``(B, 3, H, W)`` in [0, 1].
    Returns:
        ``(B,)`` per-image MSE (Table 1 of DeepExposure reports the mean over test images).
    """
    _check_pair(pred_srgb, target_srgb)
    return ((pred_srgb - target_srgb) * 255.0).pow(2).mean(dim=(1, 2, 3))


def psnr(pred_srgb: torch.Tensor, target_srgb: torch.Tensor, *, max_db: float = 100.0) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(255^2 / MSE_8bit)`` in dB, per image.

    Same value as ``skimage.metrics.peak_signal_noise_ratio(y, x, data_range=1)``. Identical images
    give ``max_db`` instead of infinity.

    Returns:
        ``(B,)``.
    """
    err = mse(pred_srgb, target_srgb)
    out = 10.0 * torch.log10(255.0**2 / err.clamp(min=1e-30))
    return torch.where(err > 0, out.clamp(max=max_db), torch.full_like(out, max_db))


def _gaussian_window(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(
    pred_srgb: torch.Tensor,
    target_srgb: torch.Tensor,
    *,
    mode: str = "rgb",
    sigma: float = 1.5,
    truncate: float = 3.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), mean over the image, per image.

    ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with
    local statistics from a normalised Gaussian window (``sigma``; radius ``int(truncate sigma + .5)``,
    i.e. 11 taps for sigma 1.5), ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, ``L = data_range``, population
    (not sample) covariances. The map is averaged over positions where the window lies fully inside
    the image (scikit-image crops the same border), then over channels.

    Args:
        pred_srgb, target_srgb: ``(B, 3, H, W)`` in [0, 1], H and W at least the window size.
        mode: ``"rgb"`` (per channel, averaged) or ``"luma"`` (BT.601 luma of the sRGB values).
    Returns:
        ``(B,)``.
    """
    _check_pair(pred_srgb, target_srgb)
    if mode == "luma":
        x, y = rgb_to_gray(pred_srgb), rgb_to_gray(target_srgb)
    elif mode == "rgb":
        x, y = pred_srgb, target_srgb
    else:
        raise ValueError(f"mode must be 'rgb' or 'luma', got {mode!r}")
    radius = int(truncate * sigma + 0.5)
    win = 2 * radius + 1
    if min(x.shape[-2:]) < win:
        raise ValueError(f"images must be at least {win} x {win} for SSIM, got {tuple(x.shape[-2:])}")
    b, c = x.shape[:2]
    g = _gaussian_window(sigma, radius, x.dtype, x.device)
    gh = g.view(1, 1, win, 1)
    gw = g.view(1, 1, 1, win)

    def blur(t: torch.Tensor) -> torch.Tensor:  # valid separable Gaussian, per channel
        t = t.reshape(b * c, 1, *t.shape[-2:])
        return F.conv2d(F.conv2d(t, gh), gw)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(b, c, -1).mean(dim=2).mean(dim=1)


# sRGB (D65) -> XYZ, IEC 61966-2-1 / Lindbloom.
_M_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)


def srgb_to_lab(img_srgb: torch.Tensor) -> torch.Tensor:
    """sRGB -> CIELAB (D65 reference white, CIE 1976).

    ``XYZ = M lin(rgb)``; ``L = 116 f(Y/Yn) - 16``, ``a = 500 (f(X/Xn) - f(Y/Yn))``,
    ``b = 200 (f(Y/Yn) - f(Z/Zn))`` with ``f(t) = t^(1/3)`` above ``(6/29)^3`` and
    ``t / (3 (6/29)^2) + 4/29`` below.

    Args:
        img_srgb: ``(*, 3, H, W)`` in [0, 1].
    Returns:
        ``(*, 3, H, W)``: L in [0, 100], a and b roughly in [-128, 127].
    """
    lin = srgb_to_linear(img_srgb.clamp(0.0, 1.0))
    m = torch.tensor(_M_RGB_TO_XYZ, dtype=lin.dtype, device=lin.device)
    xyz = torch.einsum("ij,...jhw->...ihw", m, lin)
    white = torch.tensor(_D65_WHITE, dtype=lin.dtype, device=lin.device).view(3, 1, 1)
    t = xyz / white
    eps = (6.0 / 29.0) ** 3
    f = torch.where(t > eps, t.clamp(min=eps).pow(1.0 / 3.0), t / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(dim=-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def delta_e2000(lab1: torch.Tensor, lab2: torch.Tensor, *, dim: int = -3, kl: float = 1.0, kc: float = 1.0, kh: float = 1.0) -> torch.Tensor:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005, Eqs. 1-22), elementwise.

    Args:
        lab1, lab2: CIELAB values with the L, a, b components along ``dim`` (default: channel axis
            of ``(*, 3, H, W)``).
        kl, kc, kh: parametric weights (1 for the reference conditions).
    Returns:
        Delta E00 with ``dim`` removed.
    """
    L1, a1, b1 = lab1.unbind(dim=dim)
    L2, a2, b2 = lab2.unbind(dim=dim)
    p25_7 = 25.0**7
    c1 = torch.sqrt(a1 * a1 + b1 * b1)
    c2 = torch.sqrt(a2 * a2 + b2 * b2)
    c_bar7 = ((c1 + c2) / 2) ** 7
    g = 0.5 * (1 - torch.sqrt(c_bar7 / (c_bar7 + p25_7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p = torch.sqrt(a1p * a1p + b1 * b1)
    c2p = torch.sqrt(a2p * a2p + b2 * b2)
    two_pi = 2 * math.pi
    h1p = torch.remainder(torch.atan2(b1, a1p), two_pi)
    h2p = torch.remainder(torch.atan2(b2, a2p), two_pi)
    zero_c = (c1p * c2p) == 0

    dl = L2 - L1
    dc = c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > math.pi, dh - two_pi, torch.where(dh < -math.pi, dh + two_pi, dh))
    dh = torch.where(zero_c, torch.zeros_like(dh), dh)
    dH = 2 * torch.sqrt(c1p * c2p) * torch.sin(dh / 2)

    l_bar = (L1 + L2) / 2
    c_bar_p = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = torch.where(
        (h1p - h2p).abs() <= math.pi,
        h_sum / 2,
        torch.where(h_sum < two_pi, (h_sum + two_pi) / 2, (h_sum - two_pi) / 2),
    )
    h_bar = torch.where(zero_c, h_sum, h_bar)
    deg = math.pi / 180
    t = (
        1
        - 0.17 * torch.cos(h_bar - 30 * deg)
        + 0.24 * torch.cos(2 * h_bar)
        + 0.32 * torch.cos(3 * h_bar + 6 * deg)
        - 0.20 * torch.cos(4 * h_bar - 63 * deg)
    )
    d_theta = 30 * deg * torch.exp(-(((h_bar / deg - 275) / 25) ** 2))
    cbp7 = c_bar_p**7
    rc = 2 * torch.sqrt(cbp7 / (cbp7 + p25_7))
    sl = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    sc = 1 + 0.045 * c_bar_p
    sh = 1 + 0.015 * c_bar_p * t
    rt = -torch.sin(2 * d_theta) * rc
    tl, tc, th = dl / (kl * sl), dc / (kc * sc), dH / (kh * sh)
    return torch.sqrt((tl * tl + tc * tc + th * th + rt * tc * th).clamp(min=0))


def ciede2000(pred_srgb: torch.Tensor, target_srgb: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 difference per image after sRGB -> Lab (D65), see :func:`srgb_to_lab`.

    Returns:
        ``(B,)``.
    """
    _check_pair(pred_srgb, target_srgb)
    return delta_e2000(srgb_to_lab(pred_srgb), srgb_to_lab(target_srgb)).mean(dim=(1, 2))


def paired_metrics(pred_srgb: torch.Tensor, target_srgb: torch.Tensor, *, ssim_mode: str = "rgb") -> dict[str, torch.Tensor]:
    """All paired metrics at once: ``{"mse", "psnr", "ssim", "ciede2000"}``, each ``(B,)``."""
    return {
        "mse": mse(pred_srgb, target_srgb),
        "psnr": psnr(pred_srgb, target_srgb),
        "ssim": ssim(pred_srgb, target_srgb, mode=ssim_mode),
        "ciede2000": ciede2000(pred_srgb, target_srgb),
    }


# --------------------------------------------------------------------------------------------
# Histogram intersection (Exposure, supplement section 9)


def _randint(high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[0, high)`` (0 when ``high <= 0``)."""
    if high <= 0:
        return 0
    return int(torch.randint(high, (1,), generator=generator).item())


def sample_patches(
    img_srgb: torch.Tensor,
    generator: torch.Generator,
    *,
    n_squares: int = 4,
    patches_per_square: int = 4,
    square_size: int = 80,
    patch_size: int = 64,
) -> torch.Tensor:
    """Random patches of one image for the histogram-intersection metric.

    ``n_squares`` random square crops whose side is the image's short edge, each area-resized to
    ``square_size`` px, then ``patches_per_square`` random ``patch_size`` crops of each (defaults:
    4 x 4 = 16 patches of 64 x 64 from 80 x 80 squares, as in Exposure's evaluation script).

    Args:
        img_srgb: ``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1].
        generator: drives every random offset (CPU generator).
    Returns:
        ``(n_squares * patches_per_square, 3, patch_size, patch_size)``.
    """
    from .resize import resize_exact

    if img_srgb.dim() == 3:
        img_srgb = img_srgb.unsqueeze(0)
    if img_srgb.dim() != 4 or img_srgb.shape[:2] != (1, 3):
        raise ValueError(f"expected a (1, 3, H, W) image, got {tuple(img_srgb.shape)}")
    if patch_size > square_size:
        raise ValueError("patch_size must not exceed square_size")
    H, W = img_srgb.shape[-2:]
    side = min(H, W)
    out = []
    for _ in range(n_squares):
        y0 = _randint(H - side + 1, generator)
        x0 = _randint(W - side + 1, generator)
        square = resize_exact(img_srgb[..., y0 : y0 + side, x0 : x0 + side], square_size, mode="area")
        for _ in range(patches_per_square):
            sy = _randint(square_size - patch_size, generator)
            sx = _randint(square_size - patch_size, generator)
            out.append(square[..., sy : sy + patch_size, sx : sx + patch_size])
    return torch.cat(out, dim=0)


def _hsl_saturation(img: torch.Tensor) -> torch.Tensor:
    """HSL saturation ``(max - min) / (1 - |max + min - 1|)`` (0 for greys), ``(*, 3, H, W) -> (*, H, W)``."""
    mx = img.amax(dim=-3)
    mn = img.amin(dim=-3)
    denom = 1.0 - (mx + mn - 1.0).abs()
    return torch.where(denom > 1e-12, (mx - mn) / denom.clamp(min=1e-12), torch.zeros_like(mx))


def patch_statistics(patches_srgb: torch.Tensor, *, contrast: str = "variance") -> torch.Tensor:
    """Per-patch luminance, contrast and saturation (Exposure, supplement section 9).

    - luminance: mean of ``0.27 R + 0.67 G + 0.06 B``;
    - contrast: ``2 Var(Lum)`` (``contrast="variance"``, the paper's text) or ``2 Std(Lum)``
      (``"std"``, the authors' script);
    - saturation: mean HSL saturation.

    Args:
        patches_srgb: ``(N, 3, h, w)`` in [0, 1] (clamped).
    Returns:
        ``(N, 3)`` columns in :data:`HIST_QUANTITIES` order.
    """
    x = patches_srgb.clamp(0.0, 1.0)
    lum = luminance(x).flatten(1)
    var = lum.var(dim=1, unbiased=False)
    if contrast == "variance":
        con = 2.0 * var
    elif contrast == "std":
        con = 2.0 * var.sqrt()
    else:
        raise ValueError(f"contrast must be 'variance' or 'std', got {contrast!r}")
    sat = _hsl_saturation(x).flatten(1).mean(dim=1)
    return torch.stack([lum.mean(dim=1), con, sat], dim=1)


def histograms(stats: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """Normalised histograms of each column of ``stats (N, Q)`` over ``bins`` equal bins on [0, 1].

    Bin ``k`` holds ``[k/bins, (k+1)/bins)``; 1.0 falls in the last bin; values outside [0, 1] are
    clamped into the end bins. Returns ``(Q, bins)``, each row summing to 1.
    """
    if stats.dim() != 2 or stats.shape[0] == 0:
        raise ValueError(f"expected non-empty (N, Q) statistics, got {tuple(stats.shape)}")
    idx = (stats.double() * bins).floor().clamp(0, bins - 1).long()
    h = torch.zeros(stats.shape[1], bins, dtype=torch.float64)
    for q in range(stats.shape[1]):
        h[q] = torch.bincount(idx[:, q].cpu(), minlength=bins).double()
    return h / stats.shape[0]


def histogram_intersection_from_stats(stats_a: torch.Tensor, stats_b: torch.Tensor, bins: int = 32) -> dict[str, float]:
    """``sum_k min(h_a[k], h_b[k])`` for each quantity, from precomputed :func:`patch_statistics`."""
    ha, hb = histograms(stats_a, bins), histograms(stats_b, bins)
    inter = torch.minimum(ha, hb).sum(dim=1)
    return {name: float(v) for name, v in zip(HIST_QUANTITIES, inter)}


def collect_statistics(
    images_srgb: Sequence[torch.Tensor], *, seed: int = 0, contrast: str = "variance", **patch_kwargs
) -> torch.Tensor:
    """Patch statistics ``(N_images * 16, 3)`` of a set of images; patches drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    stats = [patch_statistics(sample_patches(img, g, **patch_kwargs), contrast=contrast) for img in images_srgb]
    if not stats:
        raise ValueError("no images")
    return torch.cat(stats, dim=0)


def histogram_intersection(
    images_a: Sequence[torch.Tensor],
    images_b: Sequence[torch.Tensor],
    *,
    seed: int = 0,
    bins: int = 32,
    contrast: str = "variance",
    **patch_kwargs,
) -> dict[str, float]:
    """Exposure's histogram intersection between two sets of images (any sizes).

    Args:
        images_a, images_b: sequences of ``(1, 3, H, W)`` sRGB images in [0, 1] (e.g. method outputs
            and target-style photos; they need not be paired or equally many).
        seed: seed of the patch sampler (the same seed is used for both sets).
        bins: histogram bins on [0, 1] (32 in the paper).
        contrast: ``"variance"`` (paper text) or ``"std"`` (authors' script).
        patch_kwargs: forwarded to :func:`sample_patches`.
    Returns:
        ``{"luminance": float, "contrast": float, "saturation": float}``, each in [0, 1].
    """
    sa = collect_statistics(images_a, seed=seed, contrast=contrast, **patch_kwargs)
    sb = collect_statistics(images_b, seed=seed, contrast=contrast, **patch_kwargs)
    return histogram_intersection_from_stats(sa, sb, bins)
