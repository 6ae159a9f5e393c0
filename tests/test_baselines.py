"""Tests for deepexposure.baselines: each baseline is a registered Method whose recipe renders."""

import pytest
import torch

from deepexposure import baselines as B
from deepexposure.color import LUM_WEIGHTS_REC709, luminance, srgb_to_linear
from deepexposure.methods import get_method
from deepexposure.pipeline import retouch_tensor
from deepexposure.recipe import Recipe


def _photo(seed=0, h=48, w=64, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 6, 8, generator=g)
    img = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return (img * scale).clamp(0, 1)


@pytest.mark.parametrize("name", ["identity", "auto", "clahe", "fusion"])
def test_registered_and_recipe_round_trips(name):
    m = get_method(name)
    img = _photo()
    out, recipe = retouch_tensor(m, img)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert 0 <= out.min() and out.max() <= 1
    again = Recipe.from_json(recipe.to_json())
    assert again.method["name"] == name


def test_identity_is_exact():
    img = _photo()
    out, _ = retouch_tensor(get_method("identity"), img)
    assert torch.equal(out, img)


def test_bad_option_is_clear():
    with pytest.raises(ValueError, match="bad options"):
        get_method("auto", nonsense=1)


class TestAutoExposure:
    def test_mean_hits_target(self):
        img = _photo(scale=0.4)
        ev = B.auto_exposure_ev(img, target=0.18)
        assert B.AUTO_EV_RANGE[0] < ev.item() < B.AUTO_EV_RANGE[1]
        y = luminance(srgb_to_linear(img), LUM_WEIGHTS_REC709)
        assert (y * 2 ** ev.item()).clamp(max=1).mean().item() == pytest.approx(0.18, abs=1e-6)
        assert ev.item() > 0  # a dark photo is brightened

    def test_median_closed_form(self):
        img = torch.full((1, 3, 8, 8), 0.5)
        ev = B.auto_exposure_ev(img, target=0.18, statistic="median")
        lin = srgb_to_linear(torch.tensor(0.5)).item()
        assert ev.item() == pytest.approx(torch.log2(torch.tensor(0.18 / lin)).item(), abs=1e-5)

    def test_clamped_and_batched(self):
        img = torch.cat([torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)])
        ev = B.auto_exposure_ev(img)
        assert ev.shape == (2,)
        assert ev[0].item() == pytest.approx(B.AUTO_EV_RANGE[1]) and ev[1].item() < 0

    def test_recipe_uses_exposure_filter(self):
        _, recipe = retouch_tensor(get_method("auto"), _photo(scale=0.1))
        (op,) = recipe.ops
        assert op["op"] == "filter" and op["name"] == "exposure" and op["params"][0] > 0
        out, _ = retouch_tensor(get_method("auto"), _photo(scale=0.1))
        assert out.mean() > _photo(scale=0.1).mean()


class TestClahe:
    def test_preserves_hue_and_raises_contrast(self):
        img = _photo(scale=0.4) * torch.tensor([1.0, 0.7, 0.5]).view(1, 3, 1, 1)
        out = B.clahe(img, clip_limit=0.03)
        from deepexposure.metrics import srgb_to_lab

        lab_in, lab_out = srgb_to_lab(img), srgb_to_lab(out)
        # a*, b* preserved up to gamut clipping and float round trip
        assert (lab_in[:, 1:] - lab_out[:, 1:]).abs().mean() < 1.0
        assert lab_out[:, 0].std() > lab_in[:, 0].std()

    def test_device_dtype_follow_input(self):
        img = _photo().double()
        assert B.clahe(img).dtype == torch.float64

    def test_bad_clip_limit(self):
        with pytest.raises(ValueError):
            B.clahe(_photo(), clip_limit=0)


def test_fusion_brightens_dark_photo_and_records_evs():
    img = _photo(scale=0.15)
    out, recipe = retouch_tensor(get_method("fusion", ev=[0, 1, 2]), img)
    assert recipe.ops[0]["evs"] == [0.0, 1.0, 2.0] and recipe.ops[0]["include_original"] is False
    assert out.mean() > img.mean()
