"""Tests for deepexposure.augment: the seeded random crop and flip."""

import pytest
import torch

from deepexposure import augment as A


def test_square_box_matches_historical_draws():
    # the ad-hoc crops of tests/toy.py and scripts/train_default_model.py drew exactly this sequence
    h, w = 300, 451
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(20):
        s = int(torch.randint(min(h, w) // 2, min(h, w) + 1, (1,), generator=g1))
        y = int(torch.randint(0, h - s + 1, (1,), generator=g1))
        x = int(torch.randint(0, w - s + 1, (1,), generator=g1))
        assert A.random_crop_box(h, w, g2, scale=(0.5, 1.0)) == A.CropBox(y, x, s, s)


@pytest.mark.parametrize("aspect", [(1.0, 1.0), (1.2, 1.6), (0.5, 0.8)])
def test_box_inside_scale_and_aspect(aspect):
    g = torch.Generator().manual_seed(0)
    h, w = 40, 90
    for _ in range(200):
        b = A.random_crop_box(h, w, g, scale=(0.35, 1.0), aspect=aspect)
        assert 0 <= b.y and b.y + b.h <= h and 0 <= b.x and b.x + b.w <= w
        assert min(b.h, b.w) >= 1 and min(b.h, b.w) <= 40
        if aspect == (1.0, 1.0):
            assert b.h == b.w and b.h >= int(0.35 * 40)
        elif max(b.h, b.w) < 40:  # not shrunk to fit: the ratio is in range (up to rounding)
            assert aspect[0] - 0.1 <= b.w / b.h <= aspect[1] + 0.1


def test_bad_ranges():
    g = torch.Generator()
    with pytest.raises(ValueError, match="scale"):
        A.random_crop_box(10, 10, g, scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="aspect"):
        A.random_crop_box(10, 10, g, aspect=(2.0, 1.0))


def test_augment_deterministic_and_flip():
    img = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(1))
    a, box_a = A.augment(img, torch.Generator().manual_seed(3), 16)
    b, box_b = A.augment(img, torch.Generator().manual_seed(3), 16)
    assert box_a == box_b and torch.equal(a, b) and a.shape == (1, 3, 16, 16)
    torch.testing.assert_close(A.crop(img, box_a, 16), a)
    boxes = [A.augment(img, torch.Generator().manual_seed(s))[1] for s in range(40)]
    assert 5 < sum(b.flip for b in boxes) < 35
    box = A.CropBox(2, 3, 5, 6, flip=True)
    torch.testing.assert_close(A.crop(img, box), img[..., 2:7, 3:9].flip(-1))
    assert torch.equal(A.hflip(img)[..., 0], img[..., -1])
