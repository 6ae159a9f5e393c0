"""Edge-aware full-resolution region masks (deepexposure.masks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepexposure.masks import (
    MaskConfig,
    RegionMasks,
    _box1d,
    _lerp_axis,
    edge_aware_masks,
    joint_bilateral_indicators,
    labels_to_onehot,
)
from deepexposure.resize import make_thumbnail
from deepexposure.segment import SegmentConfig, segment_thumbnail

from .toy import photo


def _two_regions(h: int = 300, w: int = 500, edge: int = 157, axis: str = "x") -> torch.Tensor:
    img = torch.full((1, 3, h, w), 0.15)
    if axis == "x":
        img[..., edge:] = 0.8
    else:
        img[..., edge:, :] = 0.8
    return img


def _masks_of(img: torch.Tensor, labels: torch.Tensor, cfg: MaskConfig | None = None) -> torch.Tensor:
    return RegionMasks.build(img, labels_to_onehot(labels), cfg).full(img)


class TestHelpers:
    def test_box_filter_equals_loop(self):
        x = torch.rand(2, 3, 7, 11, dtype=torch.float64)
        r = 2
        got = _box1d(x, r, -1)
        want = torch.stack([x[..., max(0, i - r) : i + r + 1].mean(-1) for i in range(11)], -1)
        torch.testing.assert_close(got, want)

    @pytest.mark.parametrize("size", [(37, 53), (64, 64), (9, 100)])
    def test_lerp_axis_equals_interpolate_and_strips(self, size):
        x = torch.rand(1, 2, 8, 13, dtype=torch.float64)
        want = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        got = _lerp_axis(_lerp_axis(x, size[0], -2), size[1], -1)
        torch.testing.assert_close(got, want)
        strip = _lerp_axis(_lerp_axis(x, size[0], -2, 3, 7), size[1], -1)
        torch.testing.assert_close(strip, want[:, :, 3:7])

    def test_labels_to_onehot(self):
        lab = torch.tensor([[0, 1], [2, 1]])
        oh = labels_to_onehot(lab)
        assert oh.shape == (1, 3, 2, 2) and oh.dtype == torch.float32
        assert torch.equal(oh.argmax(1)[0], lab)

    def test_config_checks(self):
        with pytest.raises(ValueError):
            MaskConfig(radius=0)
        with pytest.raises(TypeError):
            MaskConfig.from_dict({"radius": 0.02, "colour": 1})
        assert MaskConfig.from_dict({"method": "guided", "eps": 0.01}).eps == 0.01


class TestRegionMasks:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_shape_dtype_partition_of_unity(self, dtype):
        img = make_thumbnail(photo("coffee"), 64)  # any photo: 5 segments
        big = F.interpolate(photo("coffee"), size=(150, 200), mode="bilinear", antialias=True).clamp(0, 1).to(dtype)
        seg = segment_thumbnail(img, SegmentConfig(n_segments=5))
        m = _masks_of(big, seg.labels)
        assert m.shape == (1, 5, 150, 200) and m.dtype == dtype
        assert m.min() >= 0
        torch.testing.assert_close(m.sum(1), torch.ones(1, 150, 200, dtype=dtype), atol=1e-6, rtol=0)
        # every region keeps pixels where it dominates
        assert all(bool((m.argmax(1) == t).any()) for t in range(5))

    @pytest.mark.parametrize("edge,axis", [(157, "x"), (150, "x"), (101, "y")])
    def test_mask_follows_a_sharp_edge_at_full_resolution(self, edge, axis):
        """Labels from the 64x64 thumbnail (cells of ~8 px here) are moved onto the true edge."""
        img = _two_regions(edge=edge, axis=axis)
        seg = segment_thumbnail(make_thumbnail(img), SegmentConfig(n_segments=2))
        m = _masks_of(img, seg.labels)[0, 0]  # region 0 = the dark side (darkest first)
        prof = m[150] if axis == "x" else m[:, 250]
        assert bool((prof[: edge - 2] > 0.97).all()), prof[edge - 6 : edge]
        assert bool((prof[edge + 2 :] < 0.03).all()), prof[edge : edge + 6]  # no halo on the bright side

    @pytest.mark.parametrize("edge,first", [(305, 31), (304, 30), (296, 30)])
    def test_misaligned_labels_snap_to_the_edge(self, edge, first):
        """The map's boundary (at ``10 * first`` px) lies up to half a cell off the photo's edge, inside
        a mixed cell: the mask's edge is still the photo's edge (a guided filter alone leaks 30-50 %)."""
        h, w = 300, 640  # cells of 10 px
        img = _two_regions(h, w, edge)
        lab = torch.zeros(64, 64, dtype=torch.long)
        lab[:, first:] = 1
        m = _masks_of(img, lab)[0, 0, 150]
        assert bool((m[: edge - 2] > 0.95).all()) and bool((m[edge + 2 :] < 0.05).all())

    def test_soft_where_the_photo_is_flat_and_compact_support(self):
        img = torch.full((1, 3, 200, 400), 0.5)
        lab = torch.zeros(64, 64, dtype=torch.long)
        lab[:, 32:] = 1
        m = _masks_of(img, lab)[0, 0, 100]
        soft = ((m > 0.05) & (m < 0.95)).sum()
        assert soft >= 8  # a feathered blend over several pixels, not a step
        assert float(m[:150].min()) > 0.99 and float(m[260:].max()) == 0.0  # exactly 0 far away

    def test_strips_equal_full_and_batched_function(self):
        img = F.interpolate(photo("chelsea"), size=(90, 120), mode="bilinear", antialias=True).clamp(0, 1).double()
        seg = segment_thumbnail(make_thumbnail(img.float()), SegmentConfig(n_segments=4))
        onehot = labels_to_onehot(seg.labels, dtype=torch.float64)
        rm = RegionMasks.build(img, onehot)
        full = rm.full(img)
        strips = torch.cat([rm.rows(img[:, :, r0 : r0 + 13], r0, min(r0 + 13, 90)) for r0 in range(0, 90, 13)], dim=2)
        torch.testing.assert_close(strips, full)
        torch.testing.assert_close(edge_aware_masks(img, onehot), full)

    def test_guide_grid_is_capped(self):
        """A photo larger than guide_long_edge: coefficients stay on the small grid, masks come at full size."""
        img = _two_regions(300, 500, 157)
        seg = segment_thumbnail(make_thumbnail(img), SegmentConfig(n_segments=2))
        rm = RegionMasks.build(img, labels_to_onehot(seg.labels), MaskConfig(guide_long_edge=128))
        assert rm.coeff_a.shape[-1] == 128
        m = rm.full(img)[0, 0, 150]
        assert m.shape == (500,)
        assert bool((m[:150] > 0.95).all()) and bool((m[165:] < 0.05).all())

    def test_bad_shapes(self):
        with pytest.raises(ValueError):
            edge_aware_masks(torch.rand(1, 1, 8, 8), torch.rand(1, 2, 4, 4))
        with pytest.raises(ValueError):
            RegionMasks.build(torch.rand(2, 3, 8, 8), torch.rand(1, 2, 4, 4))


class TestGradients:
    def test_gradcheck_edge_aware_masks(self):
        g = torch.Generator().manual_seed(0)
        img = torch.rand(2, 3, 10, 12, generator=g, dtype=torch.float64, requires_grad=True)
        lo = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) + 0.5
        lo = (lo / lo.sum(1, keepdim=True)).requires_grad_()
        cfg = MaskConfig(radius=0.2, eps=0.01, floor=0.0)
        # fast mode: the Jacobian against random input and output directions (816 inputs here; the
        # full Jacobian took 37 s on 2 cores); the smaller joint-bilateral check below is exhaustive
        assert torch.autograd.gradcheck(lambda x, p: edge_aware_masks(x, p, cfg), (img, lo), eps=1e-6, atol=1e-5, fast_mode=True)

    def test_gradcheck_joint_bilateral(self):
        g = torch.Generator().manual_seed(1)
        img = torch.rand(1, 3, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
        lo = torch.rand(1, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, p: joint_bilateral_indicators(x, p, reach=1), (img, lo), eps=1e-6, atol=1e-5)
