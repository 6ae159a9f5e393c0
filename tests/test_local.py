"""Local renderers (deepexposure.local): per-region exposure and filters through edge-aware masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from deepexposure.cli import main
from deepexposure.filters import apply_filter, global_exposure
from deepexposure.local import (
    as_render,
    local_exposure_op,
    local_exposure_render,
    local_filters_op,
    local_filters_render,
    region_masks_for,
)
from deepexposure.recipe import Recipe, RecipeError, fusion_op, render
from deepexposure.resize import make_thumbnail
from deepexposure.segment import SegmentConfig, segment_thumbnail

from .toy import photo


def _small(name: str = "coffee", size=(96, 128), dtype=torch.float32) -> torch.Tensor:
    return F.interpolate(photo(name), size=size, mode="bilinear", antialias=True).clamp(0, 1).to(dtype)


def _recipe(img: torch.Tensor, ops: list[dict], t: int = 4) -> Recipe:
    seg = segment_thumbnail(make_thumbnail(img.float()), SegmentConfig(n_segments=t))
    return Recipe(ops=ops, segments=seg.summary(), segment_map=seg.label_rows())


class TestLocalExposureRender:
    def test_hand_computed(self):
        # two pixels, two regions: pixel 0 fully in region 0 (+1 EV), pixel 1 half/half (+1, -1)
        img_lin = torch.tensor([0.2, 0.4]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
        from deepexposure.color import linear_to_srgb

        img = linear_to_srgb(img_lin)
        masks = torch.tensor([[1.0, 0.5], [0.0, 0.5]]).view(1, 2, 1, 2)
        out = local_exposure_render(img, masks, torch.tensor([[1.0, -1.0]]))
        want_lin = torch.tensor([0.2 * 2, 0.4 * (0.5 * 2 + 0.5 * 0.5)])
        torch.testing.assert_close(out[0, 0, 0], linear_to_srgb(want_lin), atol=1e-6, rtol=0)

    @pytest.mark.parametrize("ev", [-1.5, 0.0, 0.7, 2.5])
    def test_same_value_everywhere_is_global_exposure(self, ev):
        img = _small(dtype=torch.float64)
        masks = torch.rand(1, 5, 96, 128, dtype=torch.float64)
        masks = masks / masks.sum(1, keepdim=True)
        out = local_exposure_render(img, masks, torch.full((1, 5), ev, dtype=torch.float64))
        torch.testing.assert_close(out, global_exposure(img, torch.tensor([[ev]], dtype=torch.float64)), atol=1e-12, rtol=0)

    def test_batched_shapes_and_broadcast(self):
        img = torch.rand(3, 3, 8, 10)
        masks = torch.softmax(torch.rand(1, 4, 8, 10), 1)
        out = local_exposure_render(img, masks, torch.zeros(3, 4))
        assert out.shape == (3, 3, 8, 10) and out.dtype == torch.float32
        torch.testing.assert_close(out, img, atol=1e-6, rtol=0)
        with pytest.raises(ValueError):
            local_exposure_render(img, masks, torch.zeros(3, 5))

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(0)
        img = (torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64) * 0.3).requires_grad_()  # no clipping
        masks = torch.softmax(torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64), 1).requires_grad_()
        evs = (torch.rand(2, 3, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
        assert torch.autograd.gradcheck(local_exposure_render, (img, masks, evs), eps=1e-6, atol=1e-6)


class TestLocalFiltersRender:
    CHAIN = (("gamma", (1.3,)), ("saturation", (0.4,)), ("contrast", (0.3,)))

    def test_same_chain_everywhere_is_the_global_chain(self):
        img = _small(dtype=torch.float64)
        masks = torch.softmax(torch.rand(1, 3, 96, 128, dtype=torch.float64), 1)
        chain = [(n, torch.tensor([list(p)], dtype=torch.float64)) for n, p in self.CHAIN]
        out = local_filters_render(img, masks, [chain] * 3)
        want = img
        for n, p in chain:
            want = apply_filter(n, want, p).clamp(0, 1)
        torch.testing.assert_close(out, want, atol=1e-12, rtol=0)

    def test_region_without_filters_is_identity_there(self):
        img = _small()
        masks = torch.zeros(1, 2, 96, 128)
        masks[:, 0, :, :64] = 1
        masks[:, 1, :, 64:] = 1
        out = local_filters_render(img, masks, [[("exposure", torch.tensor([[1.0]]))], []])
        assert torch.equal(out[..., 64:], img[..., 64:])
        assert not torch.allclose(out[..., :64], img[..., :64])

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(0)
        img = (0.2 + 0.5 * torch.rand(1, 3, 4, 5, generator=g, dtype=torch.float64)).requires_grad_()
        masks = torch.softmax(torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64), 1).requires_grad_()
        p0 = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
        p1 = torch.tensor([[1.2]], dtype=torch.float64, requires_grad=True)

        def f(x, m, a, b):
            return local_filters_render(x, m, [[("exposure", a)], [("gamma", b)]])

        assert torch.autograd.gradcheck(f, (img, masks, p0, p1), eps=1e-6, atol=1e-6)


class TestRecipeOps:
    def test_local_exposure_all_equal_renders_the_global_exposure(self):
        img = _small()
        r = _recipe(img, [local_exposure_op([0.8] * 4)])
        Recipe.from_dict(r.to_dict())  # validates
        out = render(r, img)
        torch.testing.assert_close(out, global_exposure(img, torch.tensor([[0.8]])), atol=2e-6, rtol=0)

    def test_local_filters_all_equal_renders_the_global_filters(self):
        img = _small()
        chain = [{"name": "white_balance", "params": [1.1, 1.0, 0.9]}, {"name": "tone_curve", "params": [1.2] * 8}]
        r = _recipe(img, [local_filters_op([chain] * 4)])
        Recipe.from_dict(r.to_dict())
        glob = Recipe(ops=[{"op": "filter", **f} for f in chain])
        torch.testing.assert_close(render(r, img), render(glob, img), atol=2e-6, rtol=0)

    def test_strip_render_equals_batched_render(self):
        img = _small("chelsea", (300, 200))
        r = _recipe(img, [local_exposure_op([1.0, -0.5, 0.3, 2.0])])
        rm = region_masks_for(r, r.ops[0], img)
        want = local_exposure_render(img, rm.full(img), torch.tensor([[1.0, -0.5, 0.3, 2.0]]))
        torch.testing.assert_close(render(r, img), want)

    def test_local_plus_fusion_is_fuse_of_original_and_local(self):
        from deepexposure.fusion import exposure_fusion

        img = _small()
        r = _recipe(img, [local_exposure_op([1.5, 1.0, 0.5, 0.0], fuse_original=True)])
        local = render(_recipe(img, [local_exposure_op([1.5, 1.0, 0.5, 0.0])]), img)
        want = exposure_fusion(torch.stack([img, local], 1)).clamp(0, 1)
        torch.testing.assert_close(render(r, img), want, atol=1e-3, rtol=0)

    @pytest.mark.parametrize(
        "bad,msg",
        [
            ({"op": "local_exposure", "evs": [0.0, 1.0]}, "2 exposures for 4 regions"),
            ({"op": "local_exposure", "evs": [0, 0, 0, 20]}, r"\[-10, 10\]"),
            ({"op": "local_exposure", "evs": [0] * 4, "masks": {"radius": -1}}, "bad mask settings"),
            ({"op": "local_filters", "regions": [[]] * 3}, "list of 4 filter lists"),
            ({"op": "local_filters", "regions": [[{"name": "blur", "params": [1]}], [], [], []]}, "unknown filter"),
            ({"op": "local_filters", "regions": [[{"name": "gamma", "params": [9.0]}], [], [], []]}, "outside"),
        ],
    )
    def test_validation(self, bad, msg):
        d = _recipe(_small(), [bad]).to_dict()
        with pytest.raises(RecipeError, match=msg):
            Recipe.from_dict(d)

    def test_needs_segment_map(self):
        with pytest.raises(RecipeError, match="segment_map"):
            Recipe.from_dict(Recipe(ops=[local_exposure_op([0.0])]).to_dict())

    def test_as_render(self):
        img = _small()
        r = _recipe(img, [fusion_op([1.0, 0.5, 0.0, -0.5])])
        local = as_render(Recipe.from_dict(r.to_dict()), "local")
        assert local.ops[0]["op"] == "local_exposure" and local.ops[0]["evs"] == [1.0, 0.5, 0.0, -0.5]
        assert local.method["render"] == "local" and not local.ops[0]["fuse_original"]
        lf = as_render(Recipe.from_dict(r.to_dict()), "local+fusion")
        assert lf.ops[0]["fuse_original"] and "fusion" in lf.ops[0]
        assert as_render(r, "fused") is r
        with pytest.raises(ValueError):
            as_render(Recipe(ops=[fusion_op([1.0])]), "local")
        with pytest.raises(ValueError):
            as_render(r, "sideways")


def _run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture()
def coffee(tmp_path):
    from deepexposure.io import tensor_to_uint8

    p = tmp_path / "coffee.png"
    Image.fromarray(tensor_to_uint8(_small("coffee", (120, 160)))).save(p)
    return p


class TestCli:
    def test_edit_one_region_changes_only_its_mask_support(self, coffee, tmp_path):
        out = tmp_path / "out"
        assert _run("retouch", coffee, "-o", out, "--exposures", "0.5,0.5,0.5,0.5", "--render", "local", "--quiet") == 0
        rpath = out / "coffee.png.recipe.json"
        d = json.loads(rpath.read_text())
        assert d["ops"][0]["op"] == "local_exposure" and d["method"]["render"] == "local"
        # all regions at the same value: the global exposure
        from deepexposure.io import read_image

        src = read_image(coffee).img_srgb
        first = read_image(out / "coffee.png").img_srgb
        want = global_exposure(src, torch.tensor([[0.5]]))
        assert float((first - want).abs().max()) <= 1.5 / 255
        # edit region 2 and re-apply
        d["ops"][0]["evs"][2] = 2.0
        edited = tmp_path / "edited.json"
        edited.write_text(json.dumps(d))
        assert _run("apply", edited, coffee, "-o", tmp_path / "edited.png") == 0
        second = np.asarray(Image.open(tmp_path / "edited.png")).astype(int)
        first8 = np.asarray(Image.open(out / "coffee.png")).astype(int)
        changed = np.abs(second - first8).max(-1) > 0
        support = (region_masks_for(Recipe.from_dict(d), d["ops"][0], src).full(src)[0, 2] > 0).numpy()
        assert changed.any()
        assert not (changed & ~support).any()
        assert changed.sum() > 0.5 * (region_masks_for(Recipe.from_dict(d), d["ops"][0], src).full(src)[0, 2] > 0.5).sum().item()

    def test_local_plus_fusion_and_explain(self, coffee, tmp_path):
        out = tmp_path / "out"
        assert _run("retouch", coffee, "-o", out, "--exposures", "1,0.5,0,-0.5,-1,0,0.3,1.2", "--render", "local+fusion",
                    "--explain", "--quiet") == 0
        d = json.loads((out / "coffee.png.recipe.json").read_text())
        assert d["ops"][0]["fuse_original"] is True and len(d["ops"][0]["evs"]) == 8
        sheet = Image.open(out / "coffee.explain.jpg")
        assert sheet.size[1] > 2 * 200  # a grid (several rows), not one strip
        assert sheet.size[0] < 6 * 340  # at most 5 columns

    def test_render_needs_a_per_region_method(self, coffee, tmp_path, capsys):
        assert _run("retouch", coffee, "-o", tmp_path / "o", "--method", "fusion", "--render", "local") == 2
        assert "needs a method" in capsys.readouterr().err

    def test_deepexposure_local(self, coffee, tmp_path):
        from deepexposure.methods import get_method
        from deepexposure.pipeline import retouch_tensor

        img = _small()
        out_f, r_f = retouch_tensor(get_method("deepexposure"), img)
        out_l, r_l = retouch_tensor(get_method("deepexposure", render="local"), img)
        assert r_l.ops[0]["op"] == "local_exposure"
        assert r_l.ops[0]["evs"] == r_f.ops[0]["evs"]
        assert out_l.shape == out_f.shape
        assert get_method("deepexposure-local").render == "local"  # the name `eval --methods` takes
        assert get_method("deepexposure-local-fusion").render == "local+fusion"


class TestOracleLocal:
    def test_recovers_the_exposures_of_a_local_render(self):
        from deepexposure.methods import get_method
        from deepexposure.metrics import psnr
        from deepexposure.pipeline import retouch_tensor

        img = _small("coffee", (120, 160))
        truth = [1.5, 0.5, -0.5, 1.0, 0.0]
        ref, _ = retouch_tensor(get_method("exposures", evs=truth, render="local"), img)
        out, rec = retouch_tensor(get_method("oracle-local"), img, reference=ref)
        assert rec.ops[0]["op"] == "local_exposure" and rec.method["name"] == "oracle-local"
        assert max(abs(a - b) for a, b in zip(rec.ops[0]["evs"], truth)) < 0.1
        assert float(psnr(out, ref)) > 45
        glob, _ = retouch_tensor(get_method("oracle-global"), img, reference=ref)
        assert float(psnr(out, ref)) > float(psnr(glob, ref)) + 10

    def test_needs_the_reference(self):
        from deepexposure.methods import get_method
        from deepexposure.pipeline import retouch_tensor

        with pytest.raises(ValueError, match="reference"):
            retouch_tensor(get_method("oracle-local"), _small())
