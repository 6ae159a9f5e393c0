"""Thumbnail segmentation: exactly T disjoint covering masks, deterministic order, merging and splitting."""

import pytest
import torch

from deepexposure.resize import make_thumbnail
from deepexposure.segment import Segmentation, SegmentConfig, segment_thumbnail

from .toy import photo


@pytest.fixture(scope="module")
def thumb():
    return make_thumbnail(photo("astronaut"), 64)


@pytest.mark.parametrize("t", [1, 3, 5, 8])
def test_exactly_t_disjoint_covering_masks(thumb, t):
    seg = segment_thumbnail(thumb, SegmentConfig(n_segments=t))
    assert seg.masks.shape == (t, 1, 64, 64)
    assert torch.equal(seg.masks.sum(0), torch.ones(1, 64, 64))  # disjoint and covering
    assert all(a > 0 for a in seg.area) and abs(sum(seg.area) - 1) < 1e-9


def test_ordered_by_luminance_and_deterministic(thumb):
    a = segment_thumbnail(thumb)
    b = segment_thumbnail(thumb.clone())
    assert torch.equal(a.labels, b.labels)
    assert a.mean_luma == sorted(a.mean_luma)  # darkest first


def test_small_segments_are_merged(thumb):
    seg = segment_thumbnail(thumb, SegmentConfig(n_segments=12, min_area=0.05, scale=10))
    # every segment respects min_area unless splitting was needed to reach T
    assert len(seg.area) == 12


def test_flat_image_is_split_to_t():
    seg = segment_thumbnail(torch.full((1, 3, 64, 64), 0.4), SegmentConfig(n_segments=4))
    assert seg.masks.shape[0] == 4
    assert torch.equal(seg.masks.sum(0), torch.ones(1, 64, 64))


def test_two_tone_image_separates_tones():
    img = torch.full((1, 3, 64, 64), 0.1)
    img[..., 32:] = 0.9
    seg = segment_thumbnail(img, SegmentConfig(n_segments=2))
    assert torch.equal(seg.masks[0, 0, :, :32], torch.ones(64, 32))  # dark half first
    assert torch.equal(seg.masks[1, 0, :, 32:], torch.ones(64, 32))


def test_label_rows_round_trip_and_summary(thumb):
    seg = segment_thumbnail(thumb)
    rows = seg.label_rows()
    assert len(rows) == 64 and all(len(r) == 64 for r in rows)
    assert torch.equal(Segmentation.labels_from_rows(rows), seg.labels)
    summ = seg.summary()
    assert [s["index"] for s in summ] == list(range(5))
    for s in summ:
        x0, y0, x1, y1 = s["bbox"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_bad_shapes(thumb):
    with pytest.raises(ValueError):
        segment_thumbnail(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError):
        segment_thumbnail(torch.rand(1, 8, 8))
