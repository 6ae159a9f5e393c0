"""Network trunk: shapes, initialisation, safetensors storage."""

from __future__ import annotations

import json

import pytest
import torch

from deepexposure.nets import Trunk, TrunkConfig
from deepexposure.pretrained import load_trunk, save_trunk


def _brightness_ramp(n: int = 16, channels: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, channels, 64, 64, generator=g)
    return x * torch.linspace(0.05, 1.0, n)[:, None, None, None]  # from nearly black to bright


def _output_spread(init: str) -> float:
    """Std of the output over images of very different brightness, relative to its RMS."""
    torch.manual_seed(0)
    y = Trunk(TrunkConfig(9, 1, 32, 64, init=init))(_brightness_ramp()).squeeze(1).detach()
    return float(y.std() / y.pow(2).mean().sqrt())


def test_output_shape_and_input_check():
    net = Trunk(TrunkConfig(6, 3, 8, 32))
    assert net(torch.rand(2, 6, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"expected \(B, 6, 32, 32\)"):
        net(torch.rand(2, 6, 64, 64))


def test_kaiming_init_keeps_the_image_in_the_output():
    # PyTorch's default init shrinks the signal at every layer, so a fresh network answers almost
    # the same for a black and a bright image; the He init keeps the input's variation.
    kaiming, default = _output_spread("kaiming"), _output_spread("torch")
    assert kaiming > 0.3
    assert kaiming > 3 * default  # measured: 0.53 vs 0.12


def test_kaiming_init_zero_biases_small_output():
    torch.manual_seed(0)
    net = Trunk(TrunkConfig(9, 1, 32, 64, init="kaiming", out_scale=0.1))
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in net.modules() if hasattr(m, "bias") and m.bias is not None)
    assert float(net(_brightness_ramp()).detach().abs().max()) < 1.0


def test_unknown_init_refused():
    with pytest.raises(ValueError, match="init must be"):
        Trunk(TrunkConfig(init="xavier"))


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(1)
    net = Trunk(TrunkConfig(6, 1, 8, 32, kind="discriminator"))
    save_trunk(net, tmp_path, "disc")
    assert (tmp_path / "disc.safetensors").exists() and (tmp_path / "disc.config.json").exists()
    back = load_trunk(tmp_path, "disc")
    x = torch.rand(3, 6, 32, 32)
    assert torch.equal(net(x), back(x))
    assert back.config == net.config and not back.training


def test_loads_checkpoint_config_with_role_settings(tmp_path):
    # checkpoints written before the role settings left the network config hold them under "extra"
    net = Trunk(TrunkConfig(9, 1, 8, 32, kind="deepexposure-policy"))
    save_trunk(net, tmp_path, "policy")
    cfg = json.loads((tmp_path / "policy.config.json").read_text())
    (tmp_path / "policy.config.json").write_text(json.dumps({**cfg, "extra": {"ev_max": 3.0}}))
    x = torch.rand(2, 9, 32, 32)
    assert torch.equal(load_trunk(tmp_path, "policy")(x), net(x))


def test_loads_config_written_before_init_field(tmp_path):
    # models shipped before `init`/`out_scale` existed have no such keys in their config.json
    net = Trunk(TrunkConfig(6, 1, 8, 32))
    save_trunk(net, tmp_path, "old")
    cfg = json.loads((tmp_path / "old.config.json").read_text())
    del cfg["init"], cfg["out_scale"]
    (tmp_path / "old.config.json").write_text(json.dumps(cfg))
    x = torch.rand(2, 6, 32, 32)
    assert torch.equal(load_trunk(tmp_path, "old")(x), net(x))


def test_load_refuses_mismatched_weights(tmp_path):
    save_trunk(Trunk(TrunkConfig(6, 1, 8, 32)), tmp_path, "m")
    cfg = json.loads((tmp_path / "m.config.json").read_text())
    cfg["base_channels"] = 16
    (tmp_path / "m.config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="m.safetensors"):
        load_trunk(tmp_path, "m")


def test_frozen_restores_requires_grad_even_when_the_block_raises():
    from deepexposure.nets import frozen

    a, b = Trunk(TrunkConfig(6, 1, 8, 32)), Trunk(TrunkConfig(6, 1, 8, 32))
    b.fc[-1].bias.requires_grad_(False)  # a setting of its own, kept
    with pytest.raises(RuntimeError):
        with frozen(a, None, b):
            assert not any(p.requires_grad for p in [*a.parameters(), *b.parameters()])
            raise RuntimeError("inside")
    assert all(p.requires_grad for p in a.parameters())
    flags = [p.requires_grad for p in b.parameters()]
    assert flags[-1] is False and all(flags[:-1])
