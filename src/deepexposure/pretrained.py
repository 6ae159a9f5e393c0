"""Files of the networks, safetensors and JSON only (never pickle).

- Model folders (the diffusers pattern): :func:`save_pretrained` writes ``config.json`` (everything
  inference needs: method, network, role settings, thumbnail size, segmentation, fusion, training
  information) and ``model.safetensors``; :func:`from_pretrained` is the one loader every learned
  method uses. It also reads the first format (``model.json`` + ``policy.config.json`` +
  ``policy.safetensors``), so older folders and runs keep working. The model card
  (``MODEL_CARD.md``) lives beside the two files.
- Checkpoint networks: one trunk as ``<name>.safetensors`` + ``<name>.config.json``
  (:func:`save_trunk`, :func:`load_trunk`).

Layering: :mod:`deepexposure.nets` (architecture) <- :mod:`deepexposure.modelfiles` (validation of
untrusted files) <- this module (reading and writing them).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_bytes
from .modelfiles import (
    CONFIG_NAME,
    LEGACY_FILES,
    MODEL_FORMAT,
    WEIGHTS_NAME,
    read_json_object,
    read_model_config,
    read_weights,
    validate_trunk_config,
)
from .nets import Trunk

__all__ = ["save_trunk", "load_trunk", "save_pretrained", "from_pretrained", "resolve_model_dir", "PretrainedModel",
           "MODEL_FORMAT_VERSION"]

#: version of the ``config.json`` model format (1 was the three-file folder)
MODEL_FORMAT_VERSION = 2


def resolve_model_dir(model: str | Path | None, default: Path) -> Path:
    """``None``/``"default"`` -> ``default``; a training run (``RUN/model/`` holds a model) -> that
    folder; anything else is taken as a model folder."""
    if model is None or str(model) == "default":
        return default
    p = Path(model)
    if (p / "model" / WEIGHTS_NAME).exists() or (p / "model" / LEGACY_FILES[2]).exists():  # a training run directory
        return p / "model"
    return p


def save_pretrained(directory: str | Path, trunk: Trunk | torch.nn.Module, config: dict[str, Any]) -> Path:
    """Write a model folder: ``config.json`` (``config`` plus the format tag and ``"network"``, the
    trunk's :class:`~deepexposure.nets.TrunkConfig`, or the ``config`` dataclass of another network such as
    :class:`~deepexposure.pixelrl.net.PixelRLNet`) and ``model.safetensors``, each atomically.
    First-format files left in the folder by an older version are removed, so it holds one model."""
    from safetensors.torch import save as st_save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    net_cfg: Any = trunk.config
    full = {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, **config, "network": asdict(net_cfg)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in trunk.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_NAME, st_save(tensors), overwrite=True)
    atomic_write_bytes(directory / CONFIG_NAME, json.dumps(full, indent=2).encode(), overwrite=True)
    for name in LEGACY_FILES:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    return directory


@dataclass
class PretrainedModel:
    """A loaded model folder: ``path``, the checked ``config`` (``config.json``'s object) and the
    policy ``trunk`` (in eval mode, on ``map_location``)."""

    path: Path
    config: dict[str, Any]
    trunk: Trunk


def from_pretrained(model: str | Path | None, method: str, default: Path, map_location: str | torch.device = "cpu") -> PretrainedModel:
    """Load the model folder ``model`` (or a training run's, or ``default``) for ``method``
    ('deepexposure' or 'exposure'). Every file is checked (:mod:`deepexposure.modelfiles`: keys,
    types, ranges, tensor names, shapes, float32, finite values) before the network is allocated;
    a bad file is a one-line :class:`~deepexposure.modelfiles.ModelFileError`, a folder without a
    model a ``FileNotFoundError``."""
    directory = resolve_model_dir(model, default)
    config, trunk_cfg, weights = read_model_config(directory, method)
    state = read_weights(weights, trunk_cfg, map_location)
    trunk = Trunk(trunk_cfg)
    trunk.load_state_dict(state, strict=True)
    return PretrainedModel(directory, config, trunk.to(map_location).eval())


def save_trunk(model: Trunk, directory: str | Path, name: str = "model") -> None:
    """Write ``<name>.safetensors`` and ``<name>.config.json`` into ``directory`` atomically."""
    from safetensors.torch import save as st_save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / f"{name}.safetensors", st_save(tensors), overwrite=True)
    cfg = json.dumps(asdict(model.config), indent=2).encode()
    atomic_write_bytes(directory / f"{name}.config.json", cfg, overwrite=True)


def load_trunk(directory: str | Path, name: str = "model", map_location: str | torch.device = "cpu") -> Trunk:
    """Load a :class:`Trunk` written by :func:`save_trunk` (safetensors, never pickle).

    The config and the safetensors header are validated (:mod:`deepexposure.modelfiles`: keys, types,
    ranges, names, shapes, float32, finite values) before the network is allocated; any problem is a
    one-line ``ValueError`` naming the file.
    """
    directory = Path(directory)
    cfg_path = directory / f"{name}.config.json"
    cfg = validate_trunk_config(read_json_object(cfg_path), str(cfg_path))
    state = read_weights(directory / f"{name}.safetensors", cfg, map_location)
    model = Trunk(cfg)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model
