"""Tests of deepexposure.fusion (Mertens exposure fusion, supplement section D)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepexposure import fusion, mertens
from deepexposure.color import linear_to_srgb, srgb_to_linear
from deepexposure.fusion import (
    FusionConfig,
    collapse_laplacian,
    default_levels,
    exposure_fusion,
    exposure_fusion_streaming,
    gaussian_pyramid,
    laplacian_pyramid,
    mertens_weights,
    pyr_down,
    pyr_up,
)

EVS = {3: (-1.5, 0.0, 1.5), 4: (-2.0, -0.7, 0.7, 2.0), 5: (-2.0, -1.0, 0.0, 1.0, 2.0)}


def _photo(name: str, size: tuple[int, int]) -> torch.Tensor:
    """A real skimage photo resized to (H, W) as (1, 3, H, W) sRGB float32 in [0, 1]."""
    skdata = pytest.importorskip("skimage.data")
    from skimage.transform import resize

    img = getattr(skdata, name)()
    img = resize(img, size, order=1, anti_aliasing=True, preserve_range=True)
    return torch.from_numpy(np.round(img).astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def _exposures(img_srgb: torch.Tensor, evs: tuple[float, ...]) -> torch.Tensor:
    """Global exposures ``S * 2^ev`` in linear light, clipped: (1, 3, H, W) -> (1, K, 3, H, W)."""
    img_lin = srgb_to_linear(img_srgb)
    return torch.stack([linear_to_srgb((img_lin * 2.0**ev).clamp(0, 1)) for ev in evs], dim=1)


def _opencv_mertens(stack: torch.Tensor) -> np.ndarray:
    """``cv2.createMergeMertens(1, 1, 1)`` on one (1, K, 3, H, W) stack, as (H, W, 3).

    MergeMertens divides its input by 255 whatever the dtype, so float32 images in [0, 1]
    would be weighted as values in [0, 1/255]; the equivalent of our [0, 1] call is float32
    in [0, 255]. Channels are passed in RGB order so that COLOR_RGB2GRAY is the true grey.
    """
    cv2 = pytest.importorskip("cv2")
    imgs = [np.ascontiguousarray(s.permute(1, 2, 0).numpy() * 255.0, dtype=np.float32) for s in stack[0]]
    return cv2.createMergeMertens(1.0, 1.0, 1.0).process(imgs)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


@pytest.fixture(params=["matmul", "slicing"])
def axis_path(request, monkeypatch):
    """Run a test with both forms of the batched 1-D operators (banded matmul / slicing)."""
    if request.param == "slicing":
        monkeypatch.setattr(mertens, "_MATMUL_MAX", 0)
    return request.param


class TestPyramid:
    @pytest.mark.parametrize("hw", [(1, 1), (1, 5), (2, 3), (3, 2), (5, 7), (8, 8), (19, 10), (37, 53)])
    def test_pyr_down_up_match_opencv(self, hw, axis_path):
        cv2 = pytest.importorskip("cv2")
        g = torch.Generator().manual_seed(hw[0] * 100 + hw[1])
        x = torch.rand(1, 1, *hw, generator=g)
        ours = pyr_down(x)[0, 0].numpy()
        ref = cv2.pyrDown(x[0, 0].numpy())
        assert ours.shape == ((hw[0] + 1) // 2, (hw[1] + 1) // 2) and ref.size == ours.size
        np.testing.assert_allclose(ours, ref.reshape(ours.shape), atol=1e-6)
        small = torch.rand(1, 1, (hw[0] + 1) // 2, (hw[1] + 1) // 2, generator=g)
        ours_up = pyr_up(small, hw)[0, 0].numpy()
        ref_up = cv2.pyrUp(small[0, 0].numpy(), dstsize=(hw[1], hw[0]))
        np.testing.assert_allclose(ours_up, ref_up.reshape(ours_up.shape), atol=1e-6)

    def test_laplacian_matches_opencv(self, axis_path):
        cv2 = pytest.importorskip("cv2")
        x = torch.rand(1, 1, 9, 14, generator=torch.Generator().manual_seed(11))
        ref = cv2.Laplacian(x[0, 0].numpy(), cv2.CV_32F)
        np.testing.assert_allclose(mertens._laplacian3x3(x)[0, 0].numpy(), ref, atol=1e-6)

    def test_shapes_and_perfect_reconstruction(self, axis_path):
        x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        g = gaussian_pyramid(x, 5)
        assert [t.shape[-2:] for t in g] == [(37, 53), (19, 27), (10, 14), (5, 7), (3, 4), (2, 2)]
        lap = laplacian_pyramid(x, 5)
        torch.testing.assert_close(collapse_laplacian(lap), x, atol=1e-12, rtol=0)

    def test_default_levels_is_opencv_maxlevel(self):
        assert default_levels(256, 256) == 8
        assert default_levels(255, 300) == 7
        assert default_levels(37, 53) == 5
        assert default_levels(1, 9) == 0


class TestWeights:
    def test_sum_to_one_and_nonnegative(self):
        stack = torch.rand(2, 4, 3, 16, 12, generator=torch.Generator().manual_seed(1))
        w = mertens_weights(stack)
        assert w.shape == (2, 4, 1, 16, 12)
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(dim=1), torch.ones(2, 1, 16, 12))

    def test_hand_computed_pixel(self):
        # 3x3 image whose centre pixel differs; weights of the centre pixel by hand.
        img = torch.full((1, 1, 3, 3, 3), 0.5)
        img[0, 0, :, 1, 1] = torch.tensor([0.8, 0.5, 0.2])
        other = torch.full_like(img, 0.3)
        other[0, 0, :, 1, 1] = torch.tensor([0.6, 0.3, 0.3])
        stack = torch.cat([img, other], dim=1)
        w = mertens_weights(stack)[0, :, 0, 1, 1]

        def raw(rgb, grey_c, grey_n):
            contrast = abs(4 * grey_n - 4 * grey_c)
            sat = math.sqrt(sum((c - sum(rgb) / 3) ** 2 for c in rgb))
            expo = math.prod(math.exp(-((c - 0.5) ** 2) / 0.08) for c in rgb)
            return contrast * sat * expo + 1e-12

        g1 = 0.299 * 0.8 + 0.587 * 0.5 + 0.114 * 0.2
        g2 = 0.299 * 0.6 + 0.587 * 0.3 + 0.114 * 0.3
        r1, r2 = raw((0.8, 0.5, 0.2), g1, 0.5), raw((0.6, 0.3, 0.3), g2, 0.3)
        torch.testing.assert_close(w, torch.tensor([r1 / (r1 + r2), r2 / (r1 + r2)]), rtol=1e-5, atol=1e-6)

    def test_zero_exponents_give_uniform_weights_and_mean(self):
        cfg = FusionConfig(contrast_weight=0, saturation_weight=0, exposedness_weight=0)
        stack = torch.rand(1, 3, 3, 20, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        uniform = torch.full((1, 3, 1, 20, 24), 1 / 3, dtype=torch.float64)
        torch.testing.assert_close(mertens_weights(stack, cfg), uniform)
        torch.testing.assert_close(exposure_fusion(stack, cfg), stack.mean(dim=1))

    def test_config_validation(self):
        with pytest.raises(ValueError):
            FusionConfig(sigma=0)
        with pytest.raises(ValueError):
            FusionConfig(contrast_weight=-1)
        with pytest.raises(ValueError):
            FusionConfig(levels=-1)
        with pytest.raises(ValueError):
            exposure_fusion(torch.rand(1, 3, 8, 8))


class TestExposureFusion:
    def test_constant_stack_identity(self):
        img = torch.rand(2, 1, 3, 33, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        out = exposure_fusion(img.expand(2, 4, 3, 33, 20))
        torch.testing.assert_close(out, img[:, 0], atol=1e-12, rtol=0)

    def test_shape_dtype_and_levels_zero(self):
        stack = torch.rand(3, 2, 3, 9, 11, generator=torch.Generator().manual_seed(4))
        out = exposure_fusion(stack)
        assert out.shape == (3, 3, 9, 11) and out.dtype == torch.float32
        flat = exposure_fusion(stack, FusionConfig(levels=0))  # no pyramid: per-pixel weighted mean
        torch.testing.assert_close(flat, (mertens_weights(stack) * stack).sum(dim=1))

    def test_matmul_and_slicing_paths_agree(self, monkeypatch):
        stack = torch.rand(2, 3, 3, 21, 34, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
        ref = exposure_fusion(stack)
        monkeypatch.setattr(mertens, "_MATMUL_MAX", 0)
        torch.testing.assert_close(exposure_fusion(stack), ref, atol=1e-12, rtol=0)

    def test_batch_elements_are_independent(self):
        stack = torch.rand(3, 4, 3, 16, 16, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(exposure_fusion(stack)[1:2], exposure_fusion(stack[1:2]))

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(6)
        # full Jacobian on a small odd-sized stack (kept small: the test suite runs on 2 loaded cores)
        stack = (0.05 + 0.9 * torch.rand(1, 2, 3, 6, 7, generator=g, dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(exposure_fusion, (stack,), eps=1e-6, atol=1e-5)
        # random-projection check on 8x8 with non-default exponents
        stack8 = (0.05 + 0.9 * torch.rand(1, 2, 3, 8, 8, generator=g, dtype=torch.float64)).requires_grad_()
        cfg = FusionConfig(contrast_weight=0.7, saturation_weight=1.5, exposedness_weight=2.0, sigma=0.3, levels=2)
        fused = lambda s: exposure_fusion(s, cfg)  # noqa: E731
        assert torch.autograd.gradcheck(fused, (stack8,), eps=1e-6, atol=1e-5, fast_mode=True)
        assert torch.autograd.gradcheck(exposure_fusion, (stack8,), eps=1e-6, atol=1e-5, fast_mode=True)

    def test_gradient_finite_on_clipped_grey_pixels(self):
        stack = _exposures(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(7)), EVS[3])
        stack[..., :4, :4] = 1.0  # blown-out white: zero saturation, zero contrast
        stack.requires_grad_()
        exposure_fusion(stack, FusionConfig(contrast_weight=0.5, saturation_weight=0.5)).sum().backward()
        assert torch.isfinite(stack.grad).all()


class TestOpenCVAgreement:
    @pytest.mark.parametrize(
        "name,size,k",
        [("astronaut", (256, 256), 5), ("coffee", (192, 256), 4), ("chelsea", (200, 256), 3), ("chelsea", (37, 53), 5)],
    )
    def test_matches_merge_mertens(self, name, size, k):
        stack = _exposures(_photo(name, size), EVS[k])
        ref = _opencv_mertens(stack)
        ours = exposure_fusion(stack)[0].permute(1, 2, 0).numpy()
        assert _psnr(ours, ref) >= 40.0
        # Unclipped values agree too, apart from the rare pixels where OpenCV's float rounding
        # noise decides between weights that are all ~1e-12 (exactly grey, flat pixels).
        assert np.mean(np.abs(ours - ref) < 1e-3) > 0.99

    def test_streaming_matches_opencv(self):
        stack = _exposures(_photo("coffee", (120, 161)), EVS[4])
        ours = exposure_fusion_streaming(lambda i: stack[:, i], 4)[0].permute(1, 2, 0).numpy()
        assert _psnr(ours, _opencv_mertens(stack)) >= 40.0


@pytest.fixture(params=["serial", "parallel"])
def parallel(request, monkeypatch):
    """Run a test with the kernels' serial loops (small planes) and with their parallel loops on every
    plane (two threads at least)."""
    if request.param == "parallel":
        monkeypatch.setattr(fusion, "PARALLEL_MIN_PIXELS", 0)
        before = torch.get_num_threads()
        torch.set_num_threads(max(2, before))
        yield request.param
        torch.set_num_threads(before)
    else:
        yield request.param


class TestStreaming:
    # The compiled engine (deepexposure.fusion_kernels) in float64 does the batched path's
    # arithmetic in the same order, so the two agree to rounding. Sizes are odd and below, at and
    # above the row block of expose_weigh (32) and not multiples of 2^levels; (1, 1) .. (3, 2)
    # exercise the reflect-101 borders of one- and two-sample axes.
    @pytest.mark.parametrize("hw", [(64, 64), (37, 53), (100, 77), (65, 33), (5, 9), (3, 2), (2, 1), (1, 1)])
    @pytest.mark.parametrize("keep_weights", [True, False])
    def test_equals_batched(self, hw, keep_weights, parallel):
        g = torch.Generator().manual_seed(hw[0] + hw[1])
        stack = torch.rand(1, 4, 3, *hw, generator=g, dtype=torch.float64)
        before = stack.clone()
        calls = []

        def make_image(i):
            calls.append(i)
            return stack[:, i]

        out = exposure_fusion_streaming(make_image, 4, keep_weights=keep_weights)
        torch.testing.assert_close(out, exposure_fusion(stack), atol=1e-10, rtol=0)
        assert torch.equal(stack, before), "make_image results must not be modified"
        assert sorted(calls) == sorted(list(range(4)) * 2)

    @pytest.mark.parametrize("threads", [1, 2])
    def test_matches_batched_float32_photo(self, threads, parallel):
        # In float32 the contrast |Laplacian| of flat or linear-ramp areas is 1-ulp rounding noise
        # (~3e-8), far above eps = 1e-12, so there the blend depends on the order of the float
        # operations -- for any two float32 implementations, OpenCV's included. Both of ours are
        # equally close to the float64 result; they differ by > 1e-3 at < 0.5 % of the pixels.
        # The result must not depend on the number of threads.
        stack = _exposures(_photo("coffee", (90, 131)), EVS[5])
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out = exposure_fusion_streaming(lambda i: stack[:, i], 5)[0].permute(1, 2, 0).numpy()
        finally:
            torch.set_num_threads(before)
        ref = exposure_fusion(stack)[0].permute(1, 2, 0).numpy()
        assert out.dtype == np.float32
        assert _psnr(out, ref) >= 75.0
        assert np.mean(np.abs(out - ref) > 1e-3) < 0.005


class TestFuseExposures:
    """``fuse_exposures``: the recipe's render, re-exposing the photo by table lookup."""

    @pytest.mark.parametrize("dtype,atol", [(torch.float32, 3e-7), (torch.float64, 1e-7)])
    def test_exposure_curve_is_global_exposure(self, dtype, atol):
        # the kernels' re-exposure (linear where the transfer functions' powers cancel, a power only
        # across the knee) against global_exposure in float64; one exposure without levels is the
        # exposure itself. float64: the curve's knee is 0.04045 on both sides, the transfer
        # functions' are 0.04045 and 12.92 * 0.0031308 = 0.0404499: 3e-8 apart in between.
        from deepexposure.filters import global_exposure

        s = torch.cat([torch.linspace(0, 1, 20001, dtype=torch.float64), torch.arange(256) / 255.0,
                       0.04045 + torch.linspace(-1e-6, 1e-6, 21, dtype=torch.float64)])
        img = torch.stack([s, s.flip(0), s]).view(1, 3, 1, -1).to(dtype)
        for ev in (-8.0, -2.5, -0.3, -1e-4, 0.0, 1e-4, 0.7, 1.9, 3.0, 8.0):
            exact = global_exposure(img.double(), torch.tensor([[ev]], dtype=torch.float64))
            out = fusion.fuse_exposures(img, [ev], FusionConfig(levels=0))
            assert out.dtype == dtype
            torch.testing.assert_close(out.double(), exact, atol=atol, rtol=0)
        assert not fusion.exposure_curve(0.5).flags.writeable

    @pytest.mark.parametrize("hw", [(67, 45), (33, 97), (300, 211)])
    def test_equals_exact_render_at_odd_sizes(self, hw):
        # today's exact render: the batched fusion of the exposures computed by global_exposure
        # (two transfer functions per sample) in float64, at sizes that are multiples of neither
        # the row block nor 2^levels
        from deepexposure.filters import global_exposure

        img = _photo("astronaut", hw)
        evs = [None, -1.3, 0.4, 1.9]
        stack64 = torch.stack(
            [img.double()] + [global_exposure(img.double(), torch.tensor([[e]], dtype=torch.float64)) for e in evs[1:]], dim=1
        )
        exact = exposure_fusion(stack64)[0].permute(1, 2, 0).numpy()
        out = fusion.fuse_exposures(img, evs)
        assert out.shape == (1, 3, *hw) and out.dtype == torch.float32
        ours = out[0].permute(1, 2, 0).numpy()
        assert _psnr(ours, exact) >= 60.0
        assert np.mean(np.abs(ours - exact) > 1e-3) < 0.005
        assert _psnr(ours, _opencv_mertens(stack64.float())) >= 50.0

    def test_float64_render_equals_batched(self):
        from deepexposure.filters import global_exposure

        img = torch.rand(1, 3, 41, 29, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        evs = [-0.8, None, 1.2]
        stack = torch.stack([img if e is None else global_exposure(img, torch.tensor([[e]], dtype=torch.float64)) for e in evs], 1)
        out = fusion.fuse_exposures(img, evs)
        assert out.dtype == torch.float64
        # the exposures agree to 3e-8 (the transfer functions' two knees, see above)
        torch.testing.assert_close(out, exposure_fusion(stack), atol=1e-7, rtol=0)

    @pytest.mark.parametrize("hw", [(1, 1), (3, 2), (65, 33), (130, 67)])
    @pytest.mark.parametrize("keep_weights", [True, False])
    def test_8bit_photo_same_as_computed(self, hw, keep_weights, parallel, monkeypatch):
        # a decoded 8-bit photo is looked up in 256-entry tables: bit for bit the values the curve
        # gives the float samples (sizes around the 64-row blocks of expose_level0, and the 1-row borders)
        g = torch.Generator().manual_seed(hw[0])
        img = torch.randint(0, 256, (1, 3, *hw), generator=g).float() / 255.0
        evs = [None, -1.3, 0.4, 1.9]
        assert fusion._codes8(img[0].numpy()) is not None
        direct = fusion.fuse_exposures(img, evs, keep_weights=keep_weights)
        monkeypatch.setattr(fusion, "_codes8", lambda src: None)
        computed = fusion.fuse_exposures(img, evs, keep_weights=keep_weights)
        assert torch.equal(direct, computed)

    def test_codes8_only_for_exact_8bit_values(self):
        img = torch.arange(256, dtype=torch.float32).view(1, 1, 256).expand(3, 2, 256).contiguous() / 255.0
        codes = fusion._codes8(img.numpy())
        assert codes is not None and codes.dtype == np.uint8 and codes[0, 0].tolist() == list(range(256))
        for bad in (0.5 / 255.0, float("nan"), -1.0 / 255.0, 1.0 + 1e-6):
            other = img.clone()
            other[1, 1, 7] = bad
            assert fusion._codes8(other.numpy()) is None
        assert fusion._codes8(img.double().numpy()) is None  # float64 computes every sample
        assert np.array_equal(fusion._table8(None), np.arange(256, dtype=np.float32) / np.float32(255.0))

    def test_input_not_modified_and_bad_input(self):
        img = torch.rand(1, 3, 20, 30)
        before = img.clone()
        fusion.fuse_exposures(img, [None, 1.0])
        assert torch.equal(img, before)
        with pytest.raises(ValueError, match="at least one"):
            fusion.fuse_exposures(img, [])
        with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
            fusion.fuse_exposures(img[0], [None, 1.0])

    def test_config_and_levels(self):
        stack = _exposures(_photo("astronaut", (48, 40)), EVS[3])
        cfg = FusionConfig(contrast_weight=0.5, saturation_weight=2.0, exposedness_weight=1.5, sigma=0.25, levels=3)
        out = exposure_fusion_streaming(lambda i: stack[:, i].double(), 3, cfg)
        torch.testing.assert_close(out, exposure_fusion(stack.double(), cfg), atol=1e-10, rtol=0)

    def test_float64_and_no_grad(self):
        stack = torch.rand(1, 2, 3, 12, 10, dtype=torch.float64, requires_grad=True)
        out = exposure_fusion_streaming(lambda i: stack[:, i], 2)
        assert out.dtype == torch.float64 and not out.requires_grad
        torch.testing.assert_close(out, exposure_fusion(stack).detach(), atol=1e-12, rtol=0)

    def test_rejects_bad_images(self):
        with pytest.raises(ValueError):
            exposure_fusion_streaming(lambda i: torch.rand(1, 3, 8, 8 + i), 2)
        with pytest.raises(ValueError):
            exposure_fusion_streaming(lambda i: torch.rand(3, 8, 8), 1)
        with pytest.raises(ValueError):
            exposure_fusion_streaming(lambda i: torch.rand(1, 3, 8, 8), 0)
