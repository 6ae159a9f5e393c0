"""The white-box agent's per-region mode (WhiteBoxConfig.regions > 0; issue #15 item 3, docs/local.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from deepexposure.agents.whitebox import (
    WhiteBoxAgent,
    WhiteBoxConfig,
    WhiteBoxMethod,
    WhiteBoxPolicy,
    policy_step,
    region_masks,
    rollout,
)
from deepexposure.filters import FILTER_NAMES, global_exposure
from deepexposure.local import region_masks_for
from deepexposure.pretrain import quantize_8bit
from deepexposure.recipe import Recipe
from deepexposure.train import TrainConfig, Trainer

from .toy import random_crops


def _policy(regions: int, n_edits: int, seed: int = 0) -> WhiteBoxPolicy:
    torch.manual_seed(seed)
    return WhiteBoxPolicy.create(base_channels=4, n_edits=n_edits, image_size=16, regions=regions).double()


def _constant(policy: WhiteBoxPolicy, bias: torch.Tensor) -> WhiteBoxPolicy:
    """Make the policy's outputs ``bias`` whatever it sees (same filters and parameters everywhere)."""
    last = policy.trunk.fc[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(bias)
    return policy


def test_same_filters_in_every_region_equal_the_global_agent():
    """Every region given the same chain (constant outputs): the per-region roll-out is the global one."""
    torch.manual_seed(1)
    bias = torch.randn(48, dtype=torch.float64)
    img = random_crops(4, 1, 16)[:3].double()
    masks = region_masks(img, 3)
    assert torch.equal(masks.sum(1), torch.ones(3, 16, 16, dtype=masks.dtype))
    with torch.no_grad():
        local = rollout(_constant(_policy(3, 2), bias), img, greedy=True, masks=masks)
        glob = rollout(_constant(_policy(0, 2), bias), img, greedy=True)
    assert len(local.steps) == 6 and len(glob.steps) == 2
    # region r takes the same two filters as the global agent (the used flags restart per region)
    chain = [int(s.action[0]) for s in glob.steps]
    assert [int(s.action[0]) for s in local.steps] == chain * 3
    assert float((local.final - glob.final).abs().max()) < 1e-12
    assert float((glob.final - img).abs().max()) > 1e-3  # the chain does something


def test_a_region_step_changes_pixels_only_inside_its_mask():
    pol = _policy(2, 2, seed=3)
    img = random_crops(5, 1, 16)[:2].double()
    masks = region_masks(img, 2)
    used = torch.zeros(2, len(FILTER_NAMES), dtype=torch.float64)
    steps = torch.tensor([0, 2])  # image 0 at region 0's first step, image 1 at region 1's first step
    r = policy_step(pol, img, used, steps, generator=torch.Generator().manual_seed(0), exploration=0.5, masks=masks)
    for b, region in ((0, 0), (1, 1)):
        inside = masks[b, region] > 0
        diff = (r.next_img[b] - img[b]).detach().abs().amax(0)
        assert float(diff[~inside].max()) == 0.0
        assert float(diff[inside].max()) > 0.0
    # differentiable through the mask blend: the parameters get a gradient
    r.next_img.sum().backward()
    assert pol.trunk.fc[-1].weight.grad.abs().sum() > 0
    # the used flags restart at the next region
    last = policy_step(pol, img, r.next_used, torch.tensor([1, 3]), masks=masks, greedy=True)
    assert float(last.next_used[0].sum()) == 0.0 and last.done.tolist() == [False, True]


def _two_region_pairs(n: int = 8, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """References: mid-grey halves with a little texture; inputs: the left half 2 EV too dark."""
    g = torch.Generator().manual_seed(0)
    refs = 0.45 + 0.1 * torch.rand(n, 1, 1, 1, generator=g) + 0.04 * torch.rand(n, 3, size, size, generator=g)
    inputs = refs.clone()
    inputs[..., : size // 2] = global_exposure(refs[..., : size // 2], torch.full((n, 1), -2.0))
    return quantize_8bit(inputs), refs


@pytest.mark.slow
def test_pretraining_brightens_the_dark_region_more():
    """One region 2 EV too dark, the other right: supervised pre-training teaches the agent to brighten
    the dark region (region 0, the darker segment) and leave the other about as it was."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    inputs, refs = _two_region_pairs()
    agent = WhiteBoxAgent(WhiteBoxConfig(n_edits=1, base_channels=8, image_size=16, pretrain_samples=2, regions=2),
                          batch_size=8)
    agent.prepare(inputs)
    dark = torch.zeros(16, 16, dtype=torch.bool)
    dark[:, :8] = True
    assert bool((agent.input_masks[:, 0] == dark.float()).all())  # the segmentation found the halves
    for g in agent.opt_policy.param_groups:
        g["lr"] = 3e-3

    def gains():
        with torch.no_grad():
            out = agent.generate_eval(torch.arange(8), inputs)
        return float((out - inputs)[..., dark].mean()), float((out - inputs)[..., ~dark].mean())

    d0, b0 = gains()
    for _ in range(30):
        agent.pretrain_step(torch.arange(8), inputs, refs)
    d1, b1 = gains()
    want = float((refs - inputs)[..., dark].mean())
    assert d1 > 0.5 * want, (d0, d1, want)
    assert d1 > abs(b1) + 0.5 * want, (d1, b1)


def test_trains_exports_and_plans_a_local_filters_recipe(tmp_path):
    """A short RL run of the per-region agent through the Trainer; the exported model writes one
    chain per region with the segment map, and the recipe validates."""
    inputs, targets = random_crops(1, 2, 16), random_crops(0, 2, 16)
    acfg = WhiteBoxConfig(n_edits=2, buffer_size=8, base_channels=4, image_size=16, regions=3)
    tcfg = TrainConfig(steps=3, p_steps=1, d_steps=1, disc_base_channels=4, batch_size=4, image_size=16,
                       seed=3, sample_every=0, ckpt_every=100)
    torch.manual_seed(0)
    trainer = Trainer(WhiteBoxAgent(acfg, 4), tcfg, inputs, targets, tmp_path / "run")
    trainer.fit()
    model = tmp_path / "model"
    trainer.agent.save_model(model, {"name": "tiny-regions"})
    assert json.loads((model / "config.json").read_text())["regions"] == 3
    method = WhiteBoxMethod(model)
    recipe = method.plan(random_crops(2, 1, 64)[:1])
    Recipe.from_json(recipe.to_json()).validate()
    (op,) = recipe.ops
    assert op["op"] == "local_filters" and len(op["regions"]) == 3
    assert all(len(chain) == 2 for chain in op["regions"])
    assert recipe.segment_map is not None and len(recipe.segment_map) == 16


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "deepexposure", *map(str, args)], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_retouch_and_apply_agree_and_one_region_edit_stays_inside(tmp_path):
    """`retouch` with a per-region model = `apply` of its recipe; editing region 1's chain changes
    only pixels inside region 1's mask support."""
    torch.manual_seed(0)
    agent = WhiteBoxAgent(WhiteBoxConfig(n_edits=2, buffer_size=8, base_channels=4, regions=3), batch_size=4)
    with torch.no_grad():  # visible edits
        agent.policy.trunk.fc[-1].weight.mul_(50.0)
    agent.save_model(tmp_path / "m", {"name": "tiny"})
    from deepexposure.io import read_image, tensor_to_uint8

    src = tmp_path / "photo.png"
    Image.fromarray(tensor_to_uint8(random_crops(3, 1, 96)[:1])).save(src)
    r = _cli("retouch", src, "-o", tmp_path / "out", "--method", "exposure", "--model", tmp_path / "m", "--quiet")
    assert r.returncode == 0, r.stderr
    rpath = tmp_path / "out" / "photo.png.recipe.json"
    d = json.loads(rpath.read_text())
    assert d["ops"][0]["op"] == "local_filters" and d["segment_map"]
    r = _cli("apply", rpath, src, "-o", tmp_path / "again.png")
    assert r.returncode == 0, r.stderr
    first = np.asarray(Image.open(tmp_path / "out" / "photo.png")).astype(int)
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "again.png")).astype(int))
    # edit region 1: a strong exposure in place of its chain
    d["ops"][0]["regions"][1] = [{"name": "exposure", "params": [2.0]}]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(d))
    r = _cli("apply", edited, src, "-o", tmp_path / "edited.png")
    assert r.returncode == 0, r.stderr
    changed = np.abs(np.asarray(Image.open(tmp_path / "edited.png")).astype(int) - first).max(-1) > 0
    img = read_image(src).img_srgb
    support = (region_masks_for(Recipe.from_dict(d), d["ops"][0], img).full(img)[0, 1] > 0).numpy()
    assert changed.any() and not (changed & ~support).any()
