"""Oracle ceilings: they recover known exposures and beat any fixed choice on the search's own objective."""

from __future__ import annotations

import pytest
import torch

from deepexposure.filters import global_exposure
from deepexposure.fusion import FusionConfig, exposure_fusion
from deepexposure.methods import get_method
from deepexposure.oracle import best_fusion_evs, best_global_ev
from deepexposure.pipeline import retouch_tensor

from .toy import random_crops


def _pair(ev: float):
    ref = random_crops(1, 1, size=64)[:1] * 0.6  # no highlight above 0.6: nothing clips at -ev
    return global_exposure(ref, torch.tensor([[ev]])), ref


@pytest.mark.parametrize("ev", [-1.7, 0.0, 1.2])
def test_best_global_ev_recovers_a_known_exposure(ev):
    inp, ref = _pair(ev)
    assert best_global_ev(inp, ref) == pytest.approx(-ev, abs=0.02)


def test_best_fusion_evs_beat_identity_and_a_flat_bracket():
    inp, ref = _pair(-1.5)
    cfg = FusionConfig()
    evs = best_fusion_evs(inp, ref, 3, cfg, search_long_edge=64)
    assert len(evs) == 3 and evs == sorted(evs) and all(-3 <= e <= 3 for e in evs)

    def err(e):
        stack = torch.cat([inp.unsqueeze(1), torch.stack([global_exposure(inp, torch.tensor([[v]])) for v in e], 1)], 1)
        return float((exposure_fusion(stack, cfg).clamp(0, 1) - ref).pow(2).mean())

    assert err(evs) <= err([0.0, 0.0, 0.0])
    assert err(evs) <= err([1.5, 1.5, 1.5]) + 1e-9
    assert err(evs) < 0.5 * float((inp - ref).pow(2).mean())


def test_oracle_methods_need_the_reference_and_use_it():
    inp, ref = _pair(-1.0)
    for name in ("oracle-global", "oracle-exposures"):
        m = get_method(name)
        with pytest.raises(ValueError, match="reference"):
            retouch_tensor(m, inp)
        out, recipe = retouch_tensor(m, inp, reference=ref)
        assert recipe.method["name"] == name and "oracle" in recipe.notes[0]
        assert float((out - ref).pow(2).mean()) < 0.25 * float((inp - ref).pow(2).mean())
