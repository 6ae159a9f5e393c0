"""Supervised pre-training: the policy learns a known exposure; the pair pool is a pure function of the step."""

from __future__ import annotations

import pytest
import torch

from deepexposure.agents.deepexposure import DeepExposureAgent, DeepExposureConfig, rollout
from deepexposure.filters import global_exposure
from deepexposure.pretrain import PairPool, pretrain_step, quantize_8bit
from deepexposure.train import seed_everything

from .toy import random_crops


def _pretrain(agent, inputs, refs, steps: int, lr: float = 3e-3) -> tuple[dict, dict]:
    """``steps`` Adam steps of :func:`pretrain_step` on the whole batch; returns the first and last metrics."""
    opt = torch.optim.Adam(agent.policy.parameters(), lr=lr)
    first = last = pretrain_step(agent, opt, inputs, refs, agent.masks)
    for _ in range(steps - 1):
        last = pretrain_step(agent, opt, inputs, refs, agent.masks)
    return first, last


def test_pretraining_learns_to_undo_a_known_underexposure():
    """Inputs are their references 1.5 EV too dark: the fitted policy brightens them, the error falls."""
    seed_everything(0)
    refs = random_crops(3, 4, size=32) * 0.7
    inputs = quantize_8bit(global_exposure(refs, torch.full((refs.shape[0], 1), -1.5)))
    agent = DeepExposureAgent(DeepExposureConfig(algo="de2", n_segments=2, base_channels=8, image_size=32), refs.shape[0])
    agent.prepare(inputs)
    first, m = _pretrain(agent, inputs, refs, 60)
    with torch.no_grad():
        evs = rollout(agent.policy, inputs, agent.masks, agent.cfg.fusion).evs
    assert m["pretrain_mse"] < 0.3 * first["pretrain_mse"]
    assert float(evs.mean()) > 1.0  # towards the +1.5 EV that undoes the error (fusion with S0 asks for more)


class _Stream:
    """A stand-in for SyntheticPairs: batch(step, n) is a pure function of (step, n)."""

    size = 8

    def batch(self, step, n):
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.rand(n, 3, 8, 8, generator=g)
        return x, 1 - x


def test_pair_pool_rebuild_equals_the_pool_after_refreshes():
    seen = []
    live = PairPool(_Stream(), size=10, refresh=3, on_rows=lambda rows, x: seen.append(rows.clone()))
    live.rebuild(0)
    assert seen[-1].tolist() == list(range(10))
    for step in range(7):
        live.refresh(step)
    assert seen[-1].tolist() == [(6 * 3 + j) % 10 for j in range(3)]
    again = PairPool(_Stream(), size=10, refresh=3)
    again.rebuild(7)
    assert torch.equal(again.inputs, live.inputs) and torch.equal(again.references, live.references)
    assert torch.equal(live.inputs, quantize_8bit(live.inputs))  # inputs hold 8-bit values
    fresh = PairPool(_Stream(), size=10, refresh=3)
    fresh.rebuild(3)
    assert not torch.equal(fresh.inputs, live.inputs)


def test_local_render_pretraining_fits_the_local_image_and_is_recorded(tmp_path):
    """With render='local' the loss is on S^l_T (each segment by its own exposure); the exported model says so."""
    from deepexposure.agents.deepexposure import DeepExposureMethod
    from deepexposure.pretrain import fidelity_loss

    seed_everything(0)
    refs = random_crops(3, 2, size=32) * 0.7
    inputs = quantize_8bit(global_exposure(refs, torch.full((refs.shape[0], 1), -1.0)))
    agent = DeepExposureAgent(DeepExposureConfig(algo="de2", n_segments=2, base_channels=8, image_size=32, render="local"), refs.shape[0])
    agent.prepare(inputs)
    loss, _ = fidelity_loss(agent, inputs, refs, agent.masks)
    r = rollout(agent.policy, inputs, agent.masks, agent.cfg.fusion)
    assert torch.allclose(loss, (r.local[-1] - refs).pow(2).mean())
    agent.save_model(tmp_path / "m")
    assert DeepExposureMethod(tmp_path / "m").render == "local"
    assert DeepExposureMethod(tmp_path / "m", render="fused").render == "fused"


def test_segment_exposure_targets_recover_a_known_per_segment_field_and_skip_clipped_pixels():
    """x = y 2^f with f constant per segment: the target of segment t is -f_t; clipped pixels do not count."""
    from deepexposure.color import linear_to_srgb, srgb_to_linear
    from deepexposure.pretrain import segment_exposure_targets

    g = torch.Generator().manual_seed(0)
    ref = 0.1 + 0.3 * torch.rand(2, 3, 16, 16, generator=g)
    masks = torch.zeros(2, 2, 1, 16, 16)
    masks[:, 0, :, :, :8], masks[:, 1, :, :, 8:] = 1.0, 1.0
    f = torch.tensor([[-1.5, 0.5], [1.0, -0.25]])
    field = (masks[:, :, 0] * f[:, :, None, None]).sum(1, keepdim=True)
    x = linear_to_srgb((srgb_to_linear(ref) * 2.0**field).clamp(0, 1))
    assert torch.allclose(segment_exposure_targets(x, ref, masks), -f, atol=1e-3)
    x_clip = x.clone()
    x_clip[:, :, :4, :4] = 1.0  # blown out: says nothing about the exposure
    assert torch.allclose(segment_exposure_targets(x_clip, ref, masks), -f, atol=1e-3)


@pytest.mark.slow
def test_exposure_regression_pretraining_learns_exposures_that_depend_on_the_photo():
    """Inputs are their references exposed by a random g in [-1.5, 1.5]: regression on per-segment targets
    teaches the policy -g photo by photo (the references share one brightness, so g is visible)."""
    seed_everything(0)
    refs = random_crops(3, 8, size=32) * 0.5 + 0.1
    g = torch.linspace(-1.5, 1.5, refs.shape[0])[torch.randperm(refs.shape[0])]
    inputs = quantize_8bit(global_exposure(refs, g.unsqueeze(1)))
    cfg = DeepExposureConfig(algo="de2", n_segments=2, base_channels=8, image_size=32, pretrain_target="exposures")
    agent = DeepExposureAgent(cfg, refs.shape[0])
    agent.prepare(inputs)
    first, m = _pretrain(agent, inputs, refs, 80)
    with torch.no_grad():
        evs = rollout(agent.policy, inputs, agent.masks, agent.cfg.fusion).evs.mean(1)
    assert m["pretrain_mse"] < 0.2 * first["pretrain_mse"]
    assert float(torch.corrcoef(torch.stack([evs, -g]))[0, 1]) > 0.9
