"""Supervised pre-training: the policy learns a known exposure; the pair pool is a pure function of the step."""

from __future__ import annotations

import torch

from deepexposure.agents.deepexposure import DeepExposureAgent, DeepExposureConfig, rollout
from deepexposure.filters import global_exposure
from deepexposure.pretrain import PairPool, pretrain_step, quantize_8bit
from deepexposure.train import seed_everything

from .toy import random_crops


def test_pretraining_learns_to_undo_a_known_underexposure():
    """Inputs are their references 1.5 EV too dark: the fitted policy brightens them, the error falls."""
    seed_everything(0)
    refs = random_crops(3, 4, size=32) * 0.7
    inputs = quantize_8bit(global_exposure(refs, torch.full((refs.shape[0], 1), -1.5)))
    agent = DeepExposureAgent(DeepExposureConfig(algo="de2", n_segments=2, base_channels=8, image_size=32), refs.shape[0])
    agent.prepare(inputs)
    opt = torch.optim.Adam(agent.policy.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        m = pretrain_step(agent, opt, inputs, refs, agent.masks)
        first = first if first is not None else m
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
