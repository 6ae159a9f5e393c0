"""Files of the networks: one trunk as ``<name>.safetensors`` + ``<name>.config.json`` (training
checkpoints), never pickle.

Layering: :mod:`deepexposure.nets` (architecture) <- :mod:`deepexposure.modelfiles` (validation of
untrusted files) <- this module (reading and writing them).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from .io import atomic_write_bytes
from .modelfiles import read_json_object, read_weights, validate_trunk_config
from .nets import Trunk

__all__ = ["save_trunk", "load_trunk"]


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
