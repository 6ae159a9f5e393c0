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
        p = folder / "policy.safetensors"
        state = load_file(str(p))
        save_file(fn(state), str(p))
    return edit


def _nan(state):
    state["fc.3.bias"][0] = float("nan")
    return state


META, CFG = "model.json", "policy.config.json"
CASES = {
    "base_channels_1e9": (CFG, _set("base_channels", 10**9)),
    "input_size_1e9": (CFG, _set("input_size", 10**9)),
    "input_size_negative": (CFG, _set("input_size", -64)),
    "input_size_not_16x": (CFG, _set("input_size", 60)),
    "in_channels_string": (CFG, _set("in_channels", "9")),
    "fc_float": (CFG, _set("fc_features", 128.5)),
    "config_unknown_key": (CFG, _set("dropout", 0.5)),
    "config_list": (CFG, lambda d: [d]),
    "ev_max_inf_string": (CFG, _set("ev_max", "inf", "extra")),
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
    "weights_garbage": ("w", lambda folder: (folder / "policy.safetensors").write_bytes(b"\xff" * 64)),
    "weights_huge_header": ("w", lambda folder: (folder / "policy.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")),
}


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


def test_cli_reports_bad_model_as_usage_error(model_copy, tmp_path, capsys):
    _edit_json(model_copy / CFG, _set("base_channels", 10**9))
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
