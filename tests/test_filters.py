"""Tests for deepexposure.filters: identities, hand-computed fixtures, gradcheck, pixel-wise-ness.

Expected values in the fixtures are computed with the Python ``math`` module from the formulas in
the papers (not with deepexposure.color), so they check the filters independently.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as tnf

from deepexposure import filters as F

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _lin(s: float) -> float:
    """sRGB -> linear (IEC 61966-2-1), scalar reference."""
    return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4


def _enc(x: float) -> float:
    """linear -> sRGB, scalar reference (extends above 1 with the power segment)."""
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


def _img(rows, dtype=torch.float64) -> torch.Tensor:
    """(1, 3, H, W) from a nested list [channel][row][col]."""
    return torch.tensor(rows, dtype=dtype)[None]


def _pixel(rgb, dtype=torch.float64) -> torch.Tensor:
    """(1, 3, 1, 1) image of one pixel."""
    return torch.tensor(rgb, dtype=dtype).view(1, 3, 1, 1)


#: 1x3x2x2 gradcheck image: distinct channels per pixel (no HSV ties), V != 0.5, no value near a
#: multiple of 1/8 (curve breakpoints), above the sRGB toe (0.04045), linear * 2^0.3 < 1.
GC_IMG = [
    [[0.20, 0.61], [0.33, 0.71]],
    [[0.45, 0.17], [0.58, 0.29]],
    [[0.68, 0.40], [0.14, 0.55]],
]


def _smooth_image(n: int, batch: int = 2) -> torch.Tensor:
    """Smooth (B, 3, n, n) test image defined on pixel-centre coordinates in [0, 1].

    Channels live in disjoint bands (R in [0.55, 0.85], G in [0.3, 0.5], B in [0.1, 0.25]), so no
    pixel is ever grey (where HSV saturation is discontinuous).
    """
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    out = []
    for b in range(batch):
        chans = []
        for c, (lo, hi) in enumerate(((0.55, 0.85), (0.3, 0.5), (0.1, 0.25))):
            wave = torch.sin(2 * math.pi * (0.7 * xx + (0.4 + 0.3 * c) * yy) + 1.3 * c + 0.7 * b)
            chans.append(lo + (hi - lo) * 0.5 * (wave + 1.0))
        out.append(torch.stack(chans))
    return torch.stack(out).float()


def _rand_img(b=2, h=8, w=8, seed=0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g, dtype=dtype)


# --------------------------------------------------------------------------------------------
# contract shared by the eight white-box filters
# --------------------------------------------------------------------------------------------


class _FilterContract:
    """Generic properties; subclasses set NAME and PARAMS (two rows of in-range, non-neutral params)."""

    NAME: str = ""
    PARAMS: list[list[float]] = []
    #: max |avgpool(f(x256)) - f(avgpool(x256))| on the smooth image (measured: <= 1.4e-5 for the
    #: smooth filters; curves 2e-4 .. 6e-4 because their kinks do not commute with averaging)
    RES_TOL: float = 1e-4

    @property
    def spec(self) -> F.FilterSpec:
        return F.FILTERS[self.NAME]

    def params(self, dtype=torch.float32) -> torch.Tensor:
        return torch.tensor(self.PARAMS, dtype=dtype)

    def test_params_in_range(self):
        p = self.params(torch.float64)
        assert p.shape == (2, self.spec.n_params)
        assert (p >= torch.tensor(self.spec.low, dtype=torch.float64)).all()
        assert (p <= torch.tensor(self.spec.high, dtype=torch.float64)).all()

    def test_identity_at_neutral(self):
        x = _rand_img()
        y = F.apply_filter(self.NAME, x, self.spec.neutral_params(2))
        torch.testing.assert_close(y, x, atol=1e-6, rtol=0)

    def test_shape_dtype_and_batch_broadcast(self):
        x = _rand_img(b=2, h=5, w=7, dtype=torch.float64)
        p = self.params(torch.float64)
        y = F.apply_filter(self.NAME, x, p)
        assert y.shape == x.shape and y.dtype == torch.float64 and torch.isfinite(y).all()
        # a (1, P) parameter row applies to every image of the batch
        y0 = F.apply_filter(self.NAME, x, p[:1])
        torch.testing.assert_close(y0[1:], F.apply_filter(self.NAME, x[1:], p[:1]))

    def test_rejects_bad_shapes(self):
        x = _rand_img(b=2)
        with pytest.raises(ValueError):
            F.apply_filter(self.NAME, x, torch.zeros(2, self.spec.n_params + 1))
        with pytest.raises(ValueError):
            F.apply_filter(self.NAME, x, torch.zeros(3, self.spec.n_params))
        with pytest.raises(ValueError):
            F.apply_filter(self.NAME, x[:, :2], self.params())

    def test_gradcheck(self):
        x = _img(GC_IMG).requires_grad_(True)
        p = self.params(torch.float64)[:1].clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b: F.apply_filter(self.NAME, a, b), (x, p))

    def test_pixelwise(self):
        """f(crop(x)) == crop(f(x)) and f(shuffle(x)) == shuffle(f(x)) at any size, same params."""
        x = _rand_img(b=2, h=24, w=32, seed=1)
        p = self.params()
        y = F.apply_filter(self.NAME, x, p)
        crop = (slice(None), slice(None), slice(5, 17), slice(3, 30))
        torch.testing.assert_close(F.apply_filter(self.NAME, x[crop], p), y[crop], atol=1e-6, rtol=0)
        perm = torch.randperm(24 * 32, generator=torch.Generator().manual_seed(2))
        xs = x.flatten(2)[:, :, perm].view_as(x)
        ys = y.flatten(2)[:, :, perm].view_as(y)
        torch.testing.assert_close(F.apply_filter(self.NAME, xs, p), ys, atol=1e-6, rtol=0)

    def test_resolution_independence(self):
        """Params applied at 256x256 then 4x area-downsampled ~= params applied at 64x64.

        Pixel-wise nonlinear filters commute with averaging only up to the local variance of
        the image times the curvature of the filter (or the slope jump at a curve breakpoint); on
        the smooth test image the difference stays below RES_TOL (1e-4, curves 1e-3 .. 2e-3).
        """
        x256 = _smooth_image(256)
        x64 = tnf.avg_pool2d(x256, 4)
        p = self.params()
        y_hi = tnf.avg_pool2d(F.apply_filter(self.NAME, x256, p), 4)
        y_lo = F.apply_filter(self.NAME, x64, p)
        assert (y_hi - y_lo).abs().max().item() < self.RES_TOL

    def test_squash_range(self):
        g = torch.Generator().manual_seed(3)
        raw = torch.randn(256, self.spec.n_params, generator=g, dtype=torch.float64) * 5.0
        raw = torch.cat([raw, torch.full((1, self.spec.n_params), 60.0, dtype=torch.float64), -raw[:1].abs() - 60.0])
        p = self.spec.squash(raw)
        assert p.shape == raw.shape and torch.isfinite(p).all()
        lo = torch.tensor(self.spec.low, dtype=torch.float64)
        hi = torch.tensor(self.spec.high, dtype=torch.float64)
        assert (p >= lo - 1e-9).all() and (p <= hi + 1e-9).all()

    def test_squash_gradcheck(self):
        raw = torch.linspace(-1.5, 1.3, self.spec.n_params, dtype=torch.float64)[None].requires_grad_(True)
        assert torch.autograd.gradcheck(self.spec.squash, (raw,))


# --------------------------------------------------------------------------------------------
# DeepExposure filters
# --------------------------------------------------------------------------------------------


class TestGlobalExposure:
    def test_identity_at_zero_ev(self):
        x = _rand_img()
        torch.testing.assert_close(F.global_exposure(x, torch.zeros(2, 1)), x, atol=1e-6, rtol=0)

    def test_plus_one_ev_doubles_linear_below_clip(self):
        vals = [0.01, 0.03, 0.1, 0.3, 0.5, 0.6, 0.7]  # linear * 2 < 1 for all (sRGB 0.7 -> 0.448)
        x = torch.tensor(vals, dtype=torch.float64).view(1, 1, 1, -1).expand(1, 3, 1, -1)
        y = F.global_exposure(x, torch.ones(1, 1, dtype=torch.float64))
        expected = torch.tensor([_enc(2 * _lin(v)) for v in vals], dtype=torch.float64)
        torch.testing.assert_close(y[0, 0, 0], expected)

    def test_fixture_values(self):
        # sRGB 0.5 -> linear 0.2140411; -1 EV -> 0.1070206 -> sRGB 0.3607802
        y = F.global_exposure(_pixel([0.5, 0.5, 0.5]), torch.tensor([-1.0], dtype=torch.float64))
        torch.testing.assert_close(y.flatten(), torch.full((3,), 0.3607802, dtype=torch.float64), atol=1e-6, rtol=0)
        assert abs(_enc(0.5 * _lin(0.5)) - 0.3607802) < 1e-6

    def test_clips_at_white(self):
        x = _pixel([0.9, 0.95, 1.0])
        y = F.global_exposure(x, torch.tensor([[1.0]], dtype=torch.float64))
        torch.testing.assert_close(y.flatten(), torch.ones(3, dtype=torch.float64))
        assert F.global_exposure(_rand_img(), torch.full((2, 1), 3.0)).max() <= 1.0

    def test_accepts_1d_ev_and_per_image_values(self):
        x = _rand_img(b=2)
        ev = torch.tensor([0.5, -1.5])
        y = F.global_exposure(x, ev)
        torch.testing.assert_close(y[1:], F.global_exposure(x[1:], torch.tensor([[-1.5]])))
        torch.testing.assert_close(y, F.global_exposure(x, ev[:, None]))

    def test_gradcheck(self):
        x = _img(GC_IMG).requires_grad_(True)
        ev = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(F.global_exposure, (x, ev))

    def test_gradient_wrt_ev_survives_except_past_white(self):
        x = torch.tensor([0.01, 0.2, 0.6, 0.99], dtype=torch.float64).view(1, 1, 1, 4).expand(1, 3, 1, 4)
        ev = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
        y = F.global_exposure(x, ev)
        grads = [torch.autograd.grad(y[0, 0, 0, i], ev, retain_graph=True)[0].item() for i in range(4)]
        assert all(g > 0 for g in grads[:3])  # dark, mid, bright: non-zero
        assert grads[3] == 0.0  # 0.99 * 2^0.5 is past white: clipped, physically no gradient

    def test_pixelwise_and_resolution(self):
        x = _rand_img(b=2, h=24, w=32, seed=1)
        ev = torch.tensor([[0.7], [-1.2]])
        y = F.global_exposure(x, ev)
        torch.testing.assert_close(F.global_exposure(x[..., 4:20, 2:30], ev), y[..., 4:20, 2:30])
        x256 = _smooth_image(256)
        diff = tnf.avg_pool2d(F.global_exposure(x256, ev), 4) - F.global_exposure(tnf.avg_pool2d(x256, 4), ev)
        assert diff.abs().max().item() < 3e-3  # measured 1e-3: the clip at white is a kink

    def test_rejects_bad_shapes(self):
        with pytest.raises(ValueError):
            F.global_exposure(_rand_img(b=2), torch.zeros(2, 2))
        with pytest.raises(ValueError):
            F.global_exposure(torch.rand(3, 8, 8), torch.zeros(1, 1))


class TestLocalExposure:
    def test_mask_zero_is_identity(self):
        x = _rand_img()
        y = F.local_exposure(x, torch.zeros(2, 1, 8, 8), torch.tensor([[2.0], [-2.0]]))
        torch.testing.assert_close(y, x)

    def test_mask_one_is_global(self):
        x = _rand_img()
        ev = torch.tensor([[1.3], [-0.4]])
        torch.testing.assert_close(F.local_exposure(x, torch.ones(2, 1, 8, 8), ev), F.global_exposure(x, ev))

    def test_fixture_hard_and_soft_mask(self):
        x = torch.full((1, 3, 1, 3), 0.5, dtype=torch.float64)
        mask = torch.tensor([0.0, 1.0, 0.25], dtype=torch.float64).view(1, 1, 1, 3)
        y = F.local_exposure(x, mask, torch.tensor([-1.0], dtype=torch.float64))
        e = _enc(0.5 * _lin(0.5))  # 0.3607802
        expected = torch.tensor([0.5, e, 0.75 * 0.5 + 0.25 * e], dtype=torch.float64)
        torch.testing.assert_close(y[0, 1, 0], expected)

    def test_mask_batch_broadcast(self):
        x = _rand_img(b=2)
        m = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(4))
        ev = torch.tensor([[1.0], [-1.0]])
        y = F.local_exposure(x, m, ev)
        torch.testing.assert_close(y[1:], F.local_exposure(x[1:], m, ev[1:]))

    def test_gradcheck(self):
        x = _img(GC_IMG).requires_grad_(True)
        m = torch.tensor([[[[0.0, 0.3], [0.8, 1.0]]]], dtype=torch.float64, requires_grad=True)
        ev = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(F.local_exposure, (x, m, ev))

    def test_rejects_bad_mask(self):
        with pytest.raises(ValueError):
            F.local_exposure(_rand_img(), torch.zeros(2, 3, 8, 8), torch.zeros(2, 1))
        with pytest.raises(ValueError):
            F.local_exposure(_rand_img(), torch.zeros(2, 1, 4, 8), torch.zeros(2, 1))


# --------------------------------------------------------------------------------------------
# the eight white-box filters
# --------------------------------------------------------------------------------------------


class TestExposure(_FilterContract):
    NAME = "exposure"
    PARAMS = [[0.4], [-1.3]]

    def test_fixture_values(self):
        x = _pixel([0.5, 0.2, 0.9])
        y = F.exposure(x, torch.tensor([[1.0]], dtype=torch.float64))
        expected = torch.tensor([_enc(2 * _lin(v)) for v in (0.5, 0.2, 0.9)], dtype=torch.float64)
        torch.testing.assert_close(y.flatten(), expected)
        assert y[0, 2].item() > 1.0  # not clipped, unlike global_exposure

    def test_squash(self):
        assert F.squash_exposure(torch.zeros(1, 1)).item() == 0.0
        assert F.squash_exposure(torch.tensor([[1.0]])).item() == pytest.approx(3.5 * math.tanh(1.0))


class TestGamma(_FilterContract):
    NAME = "gamma"
    PARAMS = [[0.7], [2.2]]

    def test_fixture_values(self):
        x = _img([[[0.25, 0.64]], [[0.0, 1.0]], [[5e-4, 0.5]]])
        y2 = F.gamma(x, torch.tensor([[2.0]], dtype=torch.float64))
        torch.testing.assert_close(y2[0, 0, 0], torch.tensor([0.0625, 0.4096], dtype=torch.float64))
        torch.testing.assert_close(y2[0, 1, 0], torch.tensor([0.0, 1.0], dtype=torch.float64))
        # below eps = 1e-3 the curve continues linearly: 5e-4 * 1e-3^(2 - 1)
        torch.testing.assert_close(y2[0, 2, 0], torch.tensor([5e-7, 0.25], dtype=torch.float64))
        yh = F.gamma(x, torch.tensor([0.5], dtype=torch.float64))
        torch.testing.assert_close(yh[0, 0, 0], torch.tensor([0.5, 0.8], dtype=torch.float64))

    def test_continuous_and_finite_gradient_at_eps(self):
        x = torch.tensor([1e-3 - 1e-12, 1e-3, 0.0], dtype=torch.float64).view(1, 1, 1, 3).expand(1, 3, 1, 3)
        x = x.clone().requires_grad_(True)
        g = torch.tensor([[1 / 3]], dtype=torch.float64, requires_grad=True)
        y = F.gamma(x, g)
        assert abs(y[0, 0, 0, 0].item() - y[0, 0, 0, 1].item()) < 1e-9
        y.sum().backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(g.grad).all()

    def test_squash(self):
        assert F.squash_gamma(torch.zeros(1, 1)).item() == pytest.approx(1.0)
        assert F.squash_gamma(torch.tensor([[1.0]])).item() == pytest.approx(3.0 ** math.tanh(1.0))
        assert F.squash_gamma(torch.tensor([[-50.0]])).item() == pytest.approx(1 / 3)


class TestWhiteBalance(_FilterContract):
    NAME = "white_balance"
    PARAMS = [[1.1, 0.9, 1.2], [0.8, 1.05, 0.6]]

    def test_fixture_values(self):
        x = _img([[[0.5, 0.2]], [[0.4, 0.8]], [[0.3, 0.1]]])
        y = F.white_balance(x, torch.tensor([[1.2, 1.0, 0.5]], dtype=torch.float64))
        expected = _img([[[0.6, 0.24]], [[0.4, 0.8]], [[0.15, 0.05]]])
        torch.testing.assert_close(y, expected)

    def test_squash_neutral_normalised_and_red_ignored(self):
        assert torch.equal(F.squash_white_balance(torch.zeros(1, 3)), torch.ones(1, 3))
        raw = torch.randn(64, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 3
        w = F.squash_white_balance(raw)
        lum = 0.27 * w[:, 0] + 0.67 * w[:, 1] + 0.06 * w[:, 2]
        torch.testing.assert_close(lum, torch.ones(64, dtype=torch.float64))  # a grey keeps its luminance
        raw2 = raw.clone()
        raw2[:, 0] = -raw2[:, 0] + 7.0
        torch.testing.assert_close(F.squash_white_balance(raw2), w)  # raw red output unused

    def test_squash_fixture(self):
        # g = e^{0.5 tanh(1)}, b = e^{0.5 tanh(-2)}; W = (1, g, b) / (0.27 + 0.67 g + 0.06 b)
        g, b = math.exp(0.5 * math.tanh(1.0)), math.exp(0.5 * math.tanh(-2.0))
        d = 0.27 + 0.67 * g + 0.06 * b
        w = F.squash_white_balance(torch.tensor([[0.0, 1.0, -2.0]], dtype=torch.float64))
        torch.testing.assert_close(w[0], torch.tensor([1 / d, g / d, b / d], dtype=torch.float64))


class TestSaturation(_FilterContract):
    NAME = "saturation"
    PARAMS = [[0.6], [0.25]]

    def test_fixture_values(self):
        # (0.2, 0.4, 0.8): V = 0.8, S = 0.75 -> EnhancedS = 0.75 + 0.25 * 0.2 * 0.8 = 0.79.
        # Same hue and V: c' = V - (V - c) S'/S -> (0.168, 0.3786667, 0.8).
        x = _pixel([0.2, 0.4, 0.8])
        full = torch.tensor([0.168, 0.8 - 0.4 * 0.79 / 0.75, 0.8], dtype=torch.float64)
        torch.testing.assert_close(F.saturation(x, torch.tensor([[1.0]], dtype=torch.float64)).flatten(), full)
        half = 0.5 * (x.flatten() + full)
        torch.testing.assert_close(F.saturation(x, torch.tensor([0.5], dtype=torch.float64)).flatten(), half)

    def test_greys_black_white_unchanged(self):
        x = _img([[[0.0, 0.5, 1.0, 0.3]]] * 3)
        y = F.saturation(x, torch.ones(1, 1, dtype=torch.float64))
        torch.testing.assert_close(y, x)  # exact greys stay grey (no red tint from hue = 0)

    def test_stays_in_unit_range(self):
        y = F.saturation(_rand_img(b=2, h=16, w=16), torch.tensor([[1.0], [0.7]]))
        assert y.min() >= 0.0 and y.max() <= 1.0 + 1e-6

    def test_squash(self):
        assert F.squash_saturation(torch.zeros(1, 1)).item() == 0.5  # original sigmoid head
        assert F.squash_saturation(torch.tensor([[-40.0]])).item() == pytest.approx(0.0, abs=1e-12)


class TestToneCurve(_FilterContract):
    NAME = "tone_curve"
    PARAMS = [[0.5, 0.8, 1.2, 2.0, 1.5, 0.9, 0.6, 1.1], [1.9, 1.7, 1.3, 1.0, 0.9, 0.7, 0.6, 0.5]]
    RES_TOL = 2e-3

    def test_fixture_values(self):
        # t = (2, 1, ..., 1), T_L = 9: f(1/16) = 0.5 * 2 / 9, f(0.3) = (2 + 1 + 0.4) / 9,
        # f(0.5) = 5 / 9, f(1) = 1, f(0) = 0
        x = _img([[[1 / 16, 0.3, 0.5, 1.0, 0.0]]] * 3)
        t = torch.tensor([[2.0] + [1.0] * 7], dtype=torch.float64)
        y = F.tone_curve(x, t)
        expected = torch.tensor([1 / 9, 3.4 / 9, 5 / 9, 1.0, 0.0], dtype=torch.float64)
        for c in range(3):
            torch.testing.assert_close(y[0, c, 0], expected)

    def test_monotone_and_only_ratios_matter(self):
        x = torch.linspace(0, 1, 101).view(1, 1, 1, -1).expand(1, 3, 1, -1)
        t = self.params()[:1]
        y = F.tone_curve(x, t)
        assert (y[..., 1:] - y[..., :-1] >= 0).all()
        torch.testing.assert_close(F.tone_curve(x, 1.5 * t), y)

    def test_squash_zero_is_identity(self):
        x = _rand_img()
        torch.testing.assert_close(F.tone_curve(x, F.squash_tone_curve(torch.zeros(2, 8))), x, atol=1e-6, rtol=0)


class TestContrast(_FilterContract):
    NAME = "contrast"
    PARAMS = [[0.5], [-0.6]]

    def test_fixture_values(self):
        # grey 0.25: Lum = 0.25, EnhancedLum = (1 - cos(pi / 4)) / 2 = 0.1464466
        el = (1 - math.cos(math.pi / 4)) / 2
        x = _img([[[0.25, 0.5, 0.0]]] * 3)
        for p, v in ((1.0, el), (0.5, 0.5 * (0.25 + el)), (-1.0, 2 * 0.25 - el)):
            y = F.contrast(x, torch.tensor([[p]], dtype=torch.float64))
            # mid-grey is a fixed point, black stays black (no 0/0)
            torch.testing.assert_close(y[0, :, 0], torch.tensor([[v, 0.5, 0.0]] * 3, dtype=torch.float64))

    def test_colour_pixel_scales_by_luminance_ratio(self):
        x = _pixel([0.6, 0.3, 0.2])
        lum = 0.27 * 0.6 + 0.67 * 0.3 + 0.06 * 0.2
        ratio = (1 - math.cos(math.pi * lum)) / 2 / lum
        y = F.contrast(x, torch.tensor([[1.0]], dtype=torch.float64))
        torch.testing.assert_close(y.flatten(), torch.tensor([0.6, 0.3, 0.2], dtype=torch.float64) * ratio)

    def test_dark_pixels_finite_gradient(self):
        x = _pixel([1e-6, 0.0, 3e-5]).requires_grad_(True)
        p = torch.tensor([[0.8]], dtype=torch.float64, requires_grad=True)
        F.contrast(x, p).sum().backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(p.grad).all()

    def test_squash(self):
        assert F.squash_contrast(torch.zeros(1, 1)).item() == 0.0


class TestBlackAndWhite(_FilterContract):
    NAME = "black_and_white"
    PARAMS = [[0.3], [0.9]]

    def test_fixture_values(self):
        x = _pixel([1.0, 0.0, 0.0])
        y1 = F.black_and_white(x, torch.tensor([[1.0]], dtype=torch.float64))
        torch.testing.assert_close(y1.flatten(), torch.full((3,), 0.27, dtype=torch.float64))
        yh = F.black_and_white(x, torch.tensor([[0.5]], dtype=torch.float64))
        torch.testing.assert_close(yh.flatten(), torch.tensor([0.635, 0.135, 0.135], dtype=torch.float64))

    def test_squash(self):
        assert F.squash_black_and_white(torch.zeros(1, 1)).item() == 0.5  # original sigmoid head


class TestColorCurves(_FilterContract):
    NAME = "color_curves"
    PARAMS = [
        [0.9, 1.0, 1.1, 1.05, 0.95, 0.92, 1.08, 1.0] + [1.1, 1.1, 1.0, 0.9, 0.9, 1.0, 1.05, 0.97] + [0.93] * 4 + [1.07] * 4,
        [1.02] * 8 + [0.91, 0.99, 1.04, 1.09, 1.0, 0.96, 0.94, 1.1] + [1.1, 0.9] * 4,
    ]
    RES_TOL = 1e-3

    def test_fixture_values(self):
        # R: t = (1.1, 0.9 x 7), T = 7.4: f(0.1) = 0.8 * 1.1 / 7.4, f(0.3) = (2.0 + 0.4 * 0.9) / 7.4
        # G: identity. B: t = (0.9 x 4, 1.1 x 4), T = 8: f(0.3) = 0.3 * 0.9 = 0.27, f(0.8) = (3.6 + 1.1 * 2.4) / 8
        t = torch.tensor([[1.1] + [0.9] * 7 + [1.0] * 8 + [0.9] * 4 + [1.1] * 4], dtype=torch.float64)
        x = _img([[[0.1, 0.3]], [[0.1, 0.3]], [[0.3, 0.8]]])
        y = F.color_curves(x, t)
        expected = _img([[[0.88 / 7.4, 2.36 / 7.4]], [[0.1, 0.3]], [[0.27, (3.6 + 1.1 * 2.4) / 8]]])
        torch.testing.assert_close(y, expected)

    def test_channels_independent(self):
        x = _rand_img(b=1)
        t = self.params()[:1]
        y = F.color_curves(x, t)
        for c in range(3):
            tc = t[:, 8 * c : 8 * c + 8]
            torch.testing.assert_close(y[:, c : c + 1], F.tone_curve(x, tc)[:, c : c + 1])


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


class TestRegistry:
    def test_order_is_the_agents_action_index(self):
        assert F.FILTER_NAMES == (
            "exposure",
            "gamma",
            "white_balance",
            "saturation",
            "tone_curve",
            "contrast",
            "black_and_white",
            "color_curves",
        )
        assert tuple(F.FILTERS) == F.FILTER_NAMES

    def test_specs_consistent(self):
        for name, spec in F.FILTERS.items():
            assert spec.name == name
            assert len(spec.low) == len(spec.high) == len(spec.neutral) == spec.n_params
            assert all(lo <= n <= hi for lo, n, hi in zip(spec.low, spec.neutral, spec.high))
            assert spec.neutral_params(3).shape == (3, spec.n_params)

    def test_ranges_match_the_original(self):
        assert (F.FILTERS["exposure"].low, F.FILTERS["exposure"].high) == ((-3.5,), (3.5,))
        assert F.FILTERS["gamma"].low[0] == pytest.approx(1 / 3) and F.FILTERS["gamma"].high == (3.0,)
        assert set(F.FILTERS["tone_curve"].low) == {0.5} and set(F.FILTERS["tone_curve"].high) == {2.0}
        assert set(F.FILTERS["color_curves"].low) == {0.9} and set(F.FILTERS["color_curves"].high) == {1.1}
        assert (F.FILTERS["contrast"].low, F.FILTERS["contrast"].high) == ((-1.0,), (1.0,))
        e = math.exp(0.5)
        assert F.FILTERS["white_balance"].high[0] == pytest.approx(1 / (0.27 + 0.73 / e))
        assert F.FILTERS["white_balance"].high[2] == pytest.approx(e / (0.27 + 0.67 / e + 0.06 * e))

    def test_frozen(self):
        with pytest.raises(dataclasses.FrozenInstanceError):
            F.FILTERS["gamma"].n_params = 2  # type: ignore[misc]

    def test_unknown_name(self):
        with pytest.raises(ValueError, match="unknown filter"):
            F.apply_filter("vignette", _rand_img(), torch.zeros(2, 1))

    def test_every_filter_differentiable_in_a_chain(self):
        """The agent's rollout: squash raw outputs, apply all eight in order, backprop to raw."""
        x = _rand_img(b=2, h=16, w=16, seed=6) * 0.8 + 0.1
        raws = [torch.randn(2, s.n_params, generator=torch.Generator().manual_seed(i)).requires_grad_(True)
                for i, s in enumerate(F.FILTERS.values())]
        y = x
        for raw, (name, spec) in zip(raws, F.FILTERS.items()):
            y = F.apply_filter(name, y, spec.squash(raw))
        y.mean().backward()
        for raw, name in zip(raws, F.FILTER_NAMES):
            assert torch.isfinite(raw.grad).all(), name
            cols = raw.grad[:, 1:] if name == "white_balance" else raw.grad
            assert cols.abs().sum() > 0, name
