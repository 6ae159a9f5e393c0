"""Hostile ``--model`` folders: refused with one line before any network is allocated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from deepexposure import nets
from deepexposure.cli import main
from deepexposure.methods import get_method
from deepexposure.modelfiles import ModelFileError, trunk_shapes

WEIGHTS = Path(nets.__file__).parent / "weights"


def _edit_json(path: Path, fn) -> None:
    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def _set(key, value, sub=None):
    def fn(d):
        (d[sub] if sub else d)[key] = value
        return d
    return fn


def _drop(key):
    def fn(d):
        del d[key]
        return d
    return fn


def _weights(fn):
    def edit(folder: Path) -> None:
        p = folder / "model.safetensors"
        state = load_file(str(p))
        save_file(fn(state), str(p))
    return edit


def _nan(state):
    state["fc.3.bias"][0] = float("nan")
    return state


META = CFG = "config.json"  # one file since the config.json format; the network's shape is under "network"
NET = "network"
CASES = {
    "base_channels_1e9": (CFG, _set("base_channels", 10**9, NET)),
    "input_size_1e9": (CFG, _set("input_size", 10**9, NET)),
    "input_size_negative": (CFG, _set("input_size", -64, NET)),
    "input_size_not_16x": (CFG, _set("input_size", 60, NET)),
    "in_channels_string": (CFG, _set("in_channels", "9", NET)),
    "fc_float": (CFG, _set("fc_features", 128.5, NET)),
    "config_unknown_key": (CFG, _set("dropout", 0.5, NET)),
    "network_list": (CFG, _set(NET, [])),
    "network_missing": (CFG, _drop(NET)),
    "network_extra": (CFG, _set("extra", {"ev_max": 3.0}, NET)),
    "format_missing": (CFG, _drop("format")),
    "ev_max_inf_string": (CFG, _set("ev_max", "inf")),
    "ev_max_zero": (CFG, _set("ev_max", 0)),
    "meta_list": (META, lambda d: [d]),
    "meta_missing_segment": (META, _drop("segment")),
    "meta_missing_fusion": (META, _drop("fusion")),
    "meta_fusion_null": (META, _set("fusion", None)),
    "meta_fusion_unknown": (META, _set("bogus", 1, "fusion")),
    "meta_fusion_levels_1e6": (META, _set("levels", 10**6, "fusion")),
    "meta_n_segments_1e6": (META, _set("n_segments", 10**6, "segment")),
    "meta_n_segments_string": (META, _set("n_segments", "5", "segment")),
    "meta_segment_unknown": (META, _set("radius", 3, "segment")),
    "meta_image_size_1e9": (META, _set("image_size", 10**9)),
    "meta_image_size_mismatch": (META, _set("image_size", 32)),
    "meta_wrong_method": (META, _set("method", "exposure")),
    "meta_deep": ("w", lambda folder: (folder / META).write_text('{"training": ' + "[" * 100_000 + "]" * 100_000 + "}")),
    "weights_float16": ("w", _weights(lambda s: {k: v.half() for k, v in s.items()})),
    "weights_int8": ("w", _weights(lambda s: {k: v.to(torch.int8) for k, v in s.items()})),
    "weights_nan": ("w", _weights(_nan)),
    "weights_missing_tensor": ("w", _weights(lambda s: {k: v for k, v in s.items() if k != "fc.3.bias"})),
    "weights_extra_tensor": ("w", _weights(lambda s: {**s, "x": torch.zeros(2)})),
    "weights_wrong_shape": ("w", _weights(lambda s: {**s, "fc.3.bias": torch.zeros(2)})),
    "weights_garbage": ("w", lambda folder: (folder / "model.safetensors").write_bytes(b"\xff" * 64)),
    "weights_huge_header": ("w", lambda folder: (folder / "model.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")),
}
LEGACY_CASES = {  # the first format's files (model.json, policy.config.json, policy.safetensors) get the same checks
    "legacy_base_channels_1e9": ("policy.config.json", _set("base_channels", 10**9)),
    "legacy_config_list": ("policy.config.json", lambda d: [d]),
    "legacy_ev_max_inf_string": ("policy.config.json", _set("ev_max", "inf", "extra")),
    "legacy_meta_missing_fusion": ("model.json", _drop("fusion")),
    "legacy_meta_image_size_mismatch": ("model.json", _set("image_size", 32)),
    "legacy_weights_nan": ("policy.safetensors", _nan),
}


def legacy_copy(src: Path, dst: Path) -> Path:
    """``src`` (a config.json model folder) written in the first format, as older versions and runs did."""
    cfg = json.loads((src / "config.json").read_text())
    net = cfg.pop("network")
    for key in ("format", "version"):
        cfg.pop(key)
    role = {k: cfg[k] for k in ("ev_max", "filters", "n_edits") if k in cfg}
    dst.mkdir(parents=True)
    (dst / "policy.config.json").write_text(json.dumps({**net, "extra": role}, indent=2))
    (dst / "model.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "ev_max"}, indent=2))
    shutil.copyfile(src / "model.safetensors", dst / "policy.safetensors")
    return dst


@pytest.fixture()
def model_copy(tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(WEIGHTS / "deepexposure", dst)
    return dst


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_model_folder_is_one_line(case, model_copy, monkeypatch):
    target, edit = CASES[case]
    if target == "w":
        edit(model_copy)
    else:
        _edit_json(model_copy / target, edit)
    built = []
    monkeypatch.setattr(nets.Trunk, "__init__", lambda self, cfg: built.append(cfg) or (_ for _ in ()).throw(AssertionError("allocated")))
    with pytest.raises(ValueError) as e:
        get_method("deepexposure", model=str(model_copy))
    msg = str(e.value)
    assert isinstance(e.value, ModelFileError) and "\n" not in msg and str(model_copy) in msg and not built, msg


@pytest.mark.parametrize("case", sorted(LEGACY_CASES))
def test_hostile_legacy_model_folder_is_one_line(case, tmp_path, monkeypatch):
    folder = legacy_copy(WEIGHTS / "deepexposure", tmp_path / "old")
    target, edit = LEGACY_CASES[case]
    if target.endswith(".safetensors"):
        save_file(edit(load_file(str(folder / target))), str(folder / target))
    else:
        _edit_json(folder / target, edit)
    built = []
    monkeypatch.setattr(nets.Trunk, "__init__", lambda self, cfg: built.append(cfg) or (_ for _ in ()).throw(AssertionError("allocated")))
    with pytest.raises(ModelFileError) as e:
        get_method("deepexposure", model=str(folder))
    assert "\n" not in str(e.value) and str(folder) in str(e.value) and not built, str(e.value)


@pytest.mark.parametrize("method, folder", [("deepexposure", "deepexposure"), ("exposure", "whitebox")])
def test_first_format_folders_load_and_plan_the_same(method, folder, tmp_path):
    """Model folders (and training runs) written before config.json load through the same
    ``from_pretrained`` and plan exactly what the converted folder plans."""
    old = legacy_copy(WEIGHTS / folder, tmp_path / "run" / "model")
    img = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    new_recipe = get_method(method).plan(img)
    for model in (old, old.parent):  # the folder, and a training run holding it
        recipe = get_method(method, model=str(model)).plan(img)
        assert recipe.ops == new_recipe.ops and recipe.method["model"] == new_recipe.method["model"]


def test_save_pretrained_leaves_one_model(tmp_path):
    """Re-exporting into a folder of the first format replaces it (one model per folder)."""
    from deepexposure.pretrained import from_pretrained, save_pretrained

    old = legacy_copy(WEIGHTS / "deepexposure", tmp_path / "m")
    loaded = from_pretrained(old, "deepexposure", old)
    save_pretrained(old, loaded.trunk, {k: v for k, v in loaded.config.items() if k not in ("format", "version", "network")})
    assert sorted(p.name for p in old.iterdir()) == ["config.json", "model.safetensors"]
    again = from_pretrained(old, "deepexposure", old)
    assert again.config == {**loaded.config, "version": 2}
    assert all(torch.equal(a, b) for a, b in zip(again.trunk.state_dict().values(), loaded.trunk.state_dict().values()))


def test_cli_reports_bad_model_as_usage_error(model_copy, tmp_path, capsys):
    _edit_json(model_copy / CFG, _set("base_channels", 10**9, NET))
    img = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(img)
    assert main(["retouch", str(img), "-o", str(tmp_path / "out"), "--model", str(model_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "base_channels" in err


def test_whitebox_hostile_meta(tmp_path):
    dst = tmp_path / "wb"
    shutil.copytree(WEIGHTS / "whitebox", dst)
    _edit_json(dst / META, _set("n_edits", 10**6))
    with pytest.raises(ModelFileError, match="n_edits"):
        get_method("exposure", model=str(dst))


def test_shapes_match_the_network():
    cfg = nets.TrunkConfig(6, 3, 8, 48, fc_features=20)
    assert trunk_shapes(cfg) == {k: tuple(v.shape) for k, v in nets.Trunk(cfg).state_dict().items()}


@pytest.mark.parametrize("name", ["deepexposure", "exposure"])
def test_shipped_models_pass(name):
    get_method(name)
