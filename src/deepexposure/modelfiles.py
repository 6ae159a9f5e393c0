"""Validation of model folders before anything is allocated.

A model folder (``--model DIR``) holds ``config.json`` (everything inference needs: the method, the
network's :class:`~deepexposure.nets.TrunkConfig` under ``"network"``, the policy's role settings,
thumbnail size, segmentation, fusion, training information) and ``model.safetensors`` (the policy's
weights), with ``MODEL_CARD.md`` beside them. Folders of the first format (``model.json``,
``policy.config.json`` with role settings under ``"extra"``, ``policy.safetensors``) are read into
the same config by :func:`read_model_config`. Everything here reads only
JSON and the safetensors *header* (``safe_open``: names, shapes, dtypes) and checks types, ranges
and consistency; the weights are read only once their shapes match a network of bounded size, and
then checked to be finite. Every problem raises :class:`ModelFileError`, one line naming the file.

Used by :func:`deepexposure.pretrained.from_pretrained` and :func:`deepexposure.pretrained.load_trunk`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

__all__ = ["ModelFileError", "check_model_dir", "read_model_config", "MODEL_FORMAT", "CONFIG_NAME", "WEIGHTS_NAME", "LEGACY_FILES", "MODEL_LIMITS", "read_json_object", "validate_trunk_config", "trunk_shapes",
           "read_weights", "read_state", "validate_model_meta"]

#: Bounds on model metadata (generous for training, small enough to allocate on a laptop).
MODEL_LIMITS: dict[str, Any] = {
    "json_bytes": 1 << 20,
    "in_channels": (1, 64),
    "out_features": (1, 4096),
    "base_channels": (1, 256),
    "input_size": (16, 1024),  # a multiple of 16 (four stride-2 convolutions)
    "fc_features": (1, 8192),
    "max_params": 64_000_000,
    "n_segments": (1, 32),
    "n_edits": (1, 32),
    "image_size": (16, 1024),
    "ev_max": (0.0, 10.0),
}
_TRUNK_KEYS = ("in_channels", "out_features", "base_channels", "input_size", "fc_features", "leaky_slope",
               "init", "out_scale", "kind", "extra")  # "extra": role settings of first-format files (read, then dropped)
MODEL_FORMAT = "deepexposure-model"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
#: the first format's files: model.json, the network config (role settings in "extra"), the weights
LEGACY_FILES = ("model.json", "policy.config.json", "policy.safetensors")
_SEGMENT_KEYS = ("n_segments", "scale", "sigma", "min_size", "min_area")


class ModelFileError(ValueError):
    """A model file that is missing, malformed or out of range; ``str()`` is one line naming the file."""


def _short(v: Any) -> str:
    from .recipe import _short as short

    return short(v)


def _int(d: dict, key: str, bounds: tuple[int, int], where: str, required: bool = False) -> int | None:
    if key not in d:
        if required:
            raise ModelFileError(f"{where}: missing key {key!r}")
        return None
    v = d[key]
    lo, hi = bounds
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ModelFileError(f"{where}: {key} must be an integer in [{lo}, {hi}], got {_short(v)}")
    return v


def _num(d: dict, key: str, lo: float, hi: float, where: str, lo_open: bool = False) -> None:
    if key not in d:
        return
    v = d[key]
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and (isinstance(v, int) or math.isfinite(v))
    ok = ok and (lo < v if lo_open else lo <= v) and v <= hi
    if not ok:
        raise ModelFileError(f"{where}: {key} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {_short(v)}")


def read_json_object(path: Path) -> dict:
    """Read a small JSON file that must hold an object (size and nesting bounded)."""
    from .recipe import RecipeError, _check_nesting

    try:
        with open(path, "rb") as f:
            data = f.read(MODEL_LIMITS["json_bytes"] + 1)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > MODEL_LIMITS["json_bytes"]:
        raise ModelFileError(f"{path}: larger than {MODEL_LIMITS['json_bytes']} bytes")
    try:
        text = data.decode("utf-8")
        _check_nesting(text, str(path))
        d = json.loads(text)
    except RecipeError as e:
        raise ModelFileError(str(e)) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({' '.join(str(e).split())[:160]})") from None
    if not isinstance(d, dict):
        raise ModelFileError(f"{path}: expected a JSON object, got a {type(d).__name__}")
    return d


def validate_trunk_config(d: dict, where: str):
    """``policy.config.json`` contents -> :class:`~deepexposure.nets.TrunkConfig`, checked (keys, types,
    ranges, parameter count) without building the network."""
    from .nets import TrunkConfig

    unknown = [k for k in d if k not in _TRUNK_KEYS]
    if unknown:
        raise ModelFileError(f"{where}: unknown key {_short(unknown[0])} (known: {', '.join(_TRUNK_KEYS)})")
    for key in ("in_channels", "out_features", "base_channels", "input_size", "fc_features"):
        _int(d, key, MODEL_LIMITS[key], where)
    if d.get("input_size", 64) % 16:
        raise ModelFileError(f"{where}: input_size must be a multiple of 16, got {d['input_size']}")
    _num(d, "leaky_slope", 0.0, 1.0, where)
    _num(d, "out_scale", 0.0, 10.0, where)
    if "init" in d and d["init"] not in ("kaiming", "torch"):
        raise ModelFileError(f"{where}: init must be 'kaiming' or 'torch', got {_short(d['init'])}")
    if "kind" in d and not isinstance(d["kind"], str):
        raise ModelFileError(f"{where}: kind must be a string, got {_short(d['kind'])}")
    extra = d.get("extra", {})
    if not isinstance(extra, dict):
        raise ModelFileError(f"{where}: extra must be an object, got {_short(extra)}")
    ev_lo, ev_hi = MODEL_LIMITS["ev_max"]
    _num(extra, "ev_max", ev_lo, ev_hi, where, lo_open=True)
    _int(extra, "n_edits", MODEL_LIMITS["n_edits"], where)
    if "filters" in extra and not (isinstance(extra["filters"], list) and all(isinstance(x, str) for x in extra["filters"])):
        raise ModelFileError(f"{where}: extra.filters must be a list of filter names")
    cfg = TrunkConfig(**{k: v for k, v in d.items() if k != "extra"})
    n = sum(math.prod(s) for s in trunk_shapes(cfg).values())
    if n > MODEL_LIMITS["max_params"]:
        raise ModelFileError(f"{where}: this network would have {n} parameters; the limit is {MODEL_LIMITS['max_params']}")
    return cfg


def trunk_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """The state-dict names and shapes of ``Trunk(cfg)``, computed without allocating it."""
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = cfg.in_channels
    for i in range(4):
        c_out = cfg.base_channels * 2**i
        shapes[f"features.{2 * i}.weight"] = (c_out, c_in, 4, 4)
        shapes[f"features.{2 * i}.bias"] = (c_out,)
        c_in = c_out
    side = cfg.input_size // 16
    shapes["fc.1.weight"] = (cfg.fc_features, c_in * side * side)
    shapes["fc.1.bias"] = (cfg.fc_features,)
    shapes["fc.3.weight"] = (cfg.out_features, cfg.fc_features)
    shapes["fc.3.bias"] = (cfg.out_features,)
    return shapes


def read_weights(path: Path, cfg, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Check the safetensors header against ``trunk_shapes(cfg)`` (names, shapes, float32), then read
    the tensors and check they are finite. Returns the state dict."""
    return read_state(path, trunk_shapes(cfg), map_location)


def read_state(path: Path, expected: dict[str, tuple[int, ...]], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """:func:`read_weights` for any network: check the header against ``expected`` (state-dict names ->
    shapes, e.g. of the network built on the ``meta`` device), read, check finite."""
    from safetensors import safe_open

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    budget = 4 * sum(math.prod(s) for s in expected.values()) + (1 << 20)
    if size > budget:
        raise ModelFileError(f"{path}: {size} bytes, more than the {budget} its config allows")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            names = set(f.keys())
            missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
            if missing or unexpected:
                raise ModelFileError(f"{path}: weights do not match config (missing {missing[:3]}, unexpected {unexpected[:3]})")
            for k, shape in expected.items():
                sl = f.get_slice(k)
                got, dtype = tuple(sl.get_shape()), sl.get_dtype()
                if got != shape:
                    raise ModelFileError(f"{path}: weights do not match config ({k} has shape {list(got)}, expected {list(shape)})")
                if dtype != "F32":
                    raise ModelFileError(f"{path}: {k} is {dtype}; float32 (F32) weights are expected")
            state = {k: f.get_tensor(k) for k in expected}
    except ModelFileError:
        raise
    except Exception as e:  # safetensors raises SafetensorError, OSError, ValueError...
        raise ModelFileError(f"{path}: cannot read weights ({' '.join(str(e).split())[:200]})") from None
    bad = next((k for k, v in state.items() if not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise ModelFileError(f"{path}: {bad} contains NaN or infinite values")
    return {k: v.to(map_location) for k, v in state.items()}


def validate_model_meta(d: dict, method: str, where: str, trunk_cfg=None) -> dict:
    """Check ``model.json`` for ``method`` ('deepexposure' or 'exposure'): the keys inference reads,
    their types and ranges, and agreement with the policy's config. Returns ``d``."""
    from .recipe import RecipeError, validate_fusion

    if d.get("method") != method:
        raise ModelFileError(f"{where}: not a {method} model (method={_short(d.get('method'))})")
    size = _int(d, "image_size", MODEL_LIMITS["image_size"], where)
    if trunk_cfg is not None and size is not None and size != trunk_cfg.input_size:
        raise ModelFileError(f"{where}: image_size {size} differs from the policy's input_size {trunk_cfg.input_size}")
    for key in ("name", "algo"):
        if key in d and d[key] is not None and not isinstance(d[key], str):
            raise ModelFileError(f"{where}: {key} must be a string, got {_short(d[key])}")
    if method == "deepexposure":
        ev_lo, ev_hi = MODEL_LIMITS["ev_max"]
        _num(d, "ev_max", ev_lo, ev_hi, where, lo_open=True)
        _int(d, "n_segments", MODEL_LIMITS["n_segments"], where)
        seg = d.get("segment")
        if not isinstance(seg, dict):
            raise ModelFileError(f"{where}: 'segment' must be an object (the segmentation settings)")
        unknown = [k for k in seg if k not in _SEGMENT_KEYS]
        if unknown:
            raise ModelFileError(f"{where}: unknown key {_short(unknown[0])} in 'segment' (known: {', '.join(_SEGMENT_KEYS)})")
        _int(seg, "n_segments", MODEL_LIMITS["n_segments"], f"{where}: segment")
        _num(seg, "scale", 0.0, 1e6, f"{where}: segment", lo_open=True)
        _num(seg, "sigma", 0.0, 100.0, f"{where}: segment")
        _int(seg, "min_size", (1, 1 << 20), f"{where}: segment")
        _num(seg, "min_area", 0.0, 1.0, f"{where}: segment")
        if "render" in d and d["render"] not in ("fused", "local"):
            raise ModelFileError(f"{where}: render must be 'fused' or 'local', got {_short(d['render'])}")
        if "fusion" not in d:
            raise ModelFileError(f"{where}: missing key 'fusion'")
        try:
            validate_fusion(d["fusion"], f"{where}: fusion")
        except RecipeError as e:
            raise ModelFileError(str(e)) from None
    else:
        _int(d, "n_edits", MODEL_LIMITS["n_edits"], where)
        filters = d.get("filters")
        if filters is not None and not (isinstance(filters, list) and all(isinstance(x, str) for x in filters)):
            raise ModelFileError(f"{where}: 'filters' must be a list of filter names")
    return d


def read_model_config(directory: Path, method: str) -> tuple[dict, Any, Path]:
    """Read and check the model folder ``directory`` for ``method`` ('deepexposure' or 'exposure')
    before anything is allocated.

    Returns ``(config, trunk_config, weights_path)``: ``config`` is the ``config.json`` object (for a
    first-format folder, ``model.json`` with the role settings of ``policy.config.json``'s ``extra``
    and its network moved in, so both formats give the same dict); the weights are checked later by
    :func:`read_weights`. :class:`ModelFileError` (one line) for a bad file, ``FileNotFoundError``
    for a folder with neither format."""
    directory = Path(directory)
    cfg_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if weights.exists():
        d = read_json_object(cfg_path)
        where = str(cfg_path)
        if d.get("format") != MODEL_FORMAT:
            raise ModelFileError(f"{where}: not a deepexposure model config (format={_short(d.get('format'))}, expected {MODEL_FORMAT!r})")
        network = d.get("network")
        if not isinstance(network, dict):
            raise ModelFileError(f"{where}: 'network' must be an object (the network's shape)")
        if "extra" in network:
            raise ModelFileError(f"{where}: unknown key 'extra' in 'network' (role settings are top-level keys)")
        trunk_cfg = validate_trunk_config(network, f"{where}: network")
        return validate_model_meta(d, method, where, trunk_cfg), trunk_cfg, weights
    meta_path, net_path, legacy_weights = (directory / n for n in LEGACY_FILES)
    if not legacy_weights.exists():
        raise FileNotFoundError(f"{directory}: no {method} model here ({WEIGHTS_NAME} missing)")
    meta = read_json_object(meta_path)
    net = read_json_object(net_path)
    trunk_cfg = validate_trunk_config(net, str(net_path))
    validate_model_meta(meta, method, str(meta_path), trunk_cfg)
    from dataclasses import asdict

    d = {"format": MODEL_FORMAT, **meta, **net.get("extra", {}), "network": asdict(trunk_cfg)}
    return d, trunk_cfg, legacy_weights


def check_model_dir(directory: Path, method: str) -> dict:
    """:func:`read_model_config`, returning only the config (the weights are checked by the loader)."""
    return read_model_config(directory, method)[0]
