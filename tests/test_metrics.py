"""Tests for deepexposure.metrics: scikit-image agreement, published CIEDE2000 vectors, histogram intersection."""


import numpy as np
import pytest
import torch
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deepexposure import metrics as M

# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Table 1: (Lab1, Lab2, Delta E00).
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 40, 52, generator=g, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(2, 3, 40, 52, generator=g, dtype=torch.float64)).clamp(0, 1)
    return a, b


def _hwc(t, i):
    return t[i].permute(1, 2, 0).numpy()


class TestPaired:
    def test_mse_is_8bit_scale(self):
        a = torch.zeros(1, 3, 4, 4)
        b = torch.full((1, 3, 4, 4), 2 / 255)
        assert M.mse(a, b).item() == pytest.approx(4.0, rel=1e-5)

    def test_psnr_matches_skimage(self, pair):
        a, b = pair
        ours = M.psnr(b, a)
        for i in range(2):
            ref = peak_signal_noise_ratio(_hwc(a, i), _hwc(b, i), data_range=1)
            assert ours[i].item() == pytest.approx(ref, abs=1e-9)

    def test_psnr_identical_is_capped(self):
        a = torch.rand(1, 3, 8, 8)
        assert M.psnr(a, a).item() == 100.0

    def test_ssim_rgb_matches_skimage(self, pair):
        a, b = pair
        ours = M.ssim(b, a)
        for i in range(2):
            ref = structural_similarity(
                _hwc(a, i), _hwc(b, i), gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, data_range=1, channel_axis=-1,
            )
            assert ours[i].item() == pytest.approx(ref, abs=1e-9)

    def test_ssim_luma_matches_skimage(self, pair):
        a, b = pair
        w = np.array([0.299, 0.587, 0.114])
        ours = M.ssim(b, a, mode="luma")
        ref = structural_similarity(
            _hwc(a, 0) @ w, _hwc(b, 0) @ w, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1,
        )
        assert ours[0].item() == pytest.approx(ref, abs=1e-9)

    def test_ssim_identity_and_small_image(self):
        a = torch.rand(1, 3, 16, 16)
        assert M.ssim(a, a).item() == pytest.approx(1.0, abs=1e-6)
        with pytest.raises(ValueError, match="at least 11"):
            M.ssim(a[..., :8, :8], a[..., :8, :8])

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="mismatch"):
            M.mse(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))


class TestCIEDE2000:
    def test_sharma_vectors(self):
        lab1 = torch.tensor([p[0] for p in SHARMA], dtype=torch.float64)
        lab2 = torch.tensor([p[1] for p in SHARMA], dtype=torch.float64)
        want = torch.tensor([p[2] for p in SHARMA], dtype=torch.float64)
        got = M.delta_e2000(lab1, lab2, dim=-1)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        # symmetric
        torch.testing.assert_close(M.delta_e2000(lab2, lab1, dim=-1), want, atol=1e-4, rtol=0)

    def test_lab_matches_skimage(self, pair):
        a, _ = pair
        ours = M.srgb_to_lab(a)[0].permute(1, 2, 0).numpy()
        ref = rgb2lab(_hwc(a, 0), illuminant="D65")
        np.testing.assert_allclose(ours, ref, atol=0.02)

    def test_lab_white_and_black(self):
        lab = M.srgb_to_lab(torch.tensor([1.0, 0.0], dtype=torch.float64).view(2, 1, 1).expand(2, 3, 1).reshape(2, 3, 1, 1))
        torch.testing.assert_close(lab[0].flatten(), torch.tensor([100.0, 0, 0], dtype=torch.float64), atol=1e-3, rtol=0)
        torch.testing.assert_close(lab[1].flatten(), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)

    def test_ciede2000_images(self, pair):
        a, b = pair
        assert M.ciede2000(a, a).abs().max().item() < 1e-6
        d = M.ciede2000(a, b)
        assert d.shape == (2,) and (d > 0).all()


class TestHistogramIntersection:
    def _images(self, n=3, seed=1):
        g = torch.Generator().manual_seed(seed)
        return [torch.rand(1, 3, 90 + 7 * i, 120, generator=g) for i in range(n)]

    def test_patches_shape_and_determinism(self):
        img = self._images(1)[0]
        p1 = M.sample_patches(img, torch.Generator().manual_seed(3))
        p2 = M.sample_patches(img, torch.Generator().manual_seed(3))
        assert p1.shape == (16, 3, 64, 64)
        assert torch.equal(p1, p2)

    def test_self_is_one(self):
        imgs = self._images()
        hi = M.histogram_intersection(imgs, imgs, seed=5)
        assert hi == {"luminance": pytest.approx(1.0), "contrast": pytest.approx(1.0), "saturation": pytest.approx(1.0)}

    def test_disjoint_constants(self):
        dark = [torch.full((1, 3, 80, 80), 0.1)]
        bright_red = [torch.tensor([1.0, 0.6, 0.6]).view(1, 3, 1, 1).expand(1, 3, 80, 100).clone()]
        hi = M.histogram_intersection(dark, bright_red)
        assert hi["luminance"] == 0.0
        assert hi["saturation"] == 0.0
        assert hi["contrast"] == pytest.approx(1.0)  # constant images: zero contrast in both sets

    def test_statistics_by_hand(self):
        # half black, half white patch: Lum mean .5, Var .25; grey has zero saturation
        p = torch.zeros(1, 3, 4, 4)
        p[..., :, 2:] = 1.0
        s = M.patch_statistics(p)
        torch.testing.assert_close(s, torch.tensor([[0.5, 0.5, 0.0]]))
        assert M.patch_statistics(p, contrast="std")[0, 1].item() == pytest.approx(1.0)
        red = torch.tensor([0.8, 0.2, 0.2]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
        # HSL: L = .5, S = (.8 - .2) / (1 - |1 - 1|) = .6
        assert M.patch_statistics(red)[0, 2].item() == pytest.approx(0.6)

    def test_histograms_bins(self):
        h = M.histograms(torch.tensor([[0.0], [1 / 32], [1.0], [0.999]]), bins=32)
        assert h.shape == (1, 32)
        assert h[0, 0] == 0.25 and h[0, 1] == 0.25 and h[0, 31] == 0.5
