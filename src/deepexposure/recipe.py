"""White-box recipes: the JSON description of a retouch, and the renderer that re-applies it.

A recipe says everything that was done to a photo, so a user can read it, edit one value and
re-render (``deepexposure apply RECIPE IN -o OUT``). Format (``version`` 1)::

    {
      "format": "deepexposure-recipe",
      "version": 1,
      "image": {"width": 6000, "height": 4000, "source": "IMG_0001.CR2"},
      "method": {"name": "deepexposure", "model": "deepexposure-de2-default", ...},
      "segments": [{"index": 0, "area": 0.31, "mean_luma": 0.12, "bbox": [x0, y0, x1, y1]}, ...],
      "segment_map": ["0011..", ...],   # thumbnail label map, one base-36 digit per pixel
      "ops": [ {"op": "exposure_fusion", "evs": [1.4, 0.6, ...], "include_original": true,
                "fusion": {"contrast_weight": 1.0, ...}} ],
      "notes": ["..."]
    }

Operations (applied in order to the full-resolution sRGB image):

- ``exposure_fusion``: global exposures ``S * 2^ev`` (linear light) of the current image, one per
  entry of ``evs`` (step ``t`` was chosen for segment ``t`` when ``segments`` is present), plus the
  unmodified image when ``include_original``, fused with Mertens fusion (memory-frugal streaming path).
- ``filter``: one white-box filter of :data:`deepexposure.filters.FILTERS` with its parameters.
- ``clahe``: contrast-limited adaptive histogram equalisation on luminance (a baseline).
- ``local_exposure`` / ``local_filters``: per-region exposures / white-box filters rendered through
  edge-aware masks rebuilt from ``segment_map`` (:mod:`deepexposure.local`, ``docs/local.md``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["Recipe", "RecipeError", "render", "RECIPE_FORMAT", "RECIPE_VERSION", "fusion_op"]

RECIPE_FORMAT = "deepexposure-recipe"
RECIPE_VERSION = 1
_OPS = ("exposure_fusion", "filter", "clahe", "local_exposure", "local_filters")


class RecipeError(ValueError):
    """A recipe that cannot be read or applied; ``str()`` is one line naming the file when known."""


@dataclass
class Recipe:
    """A retouch as data. See the module docstring for the JSON layout."""

    ops: list[dict]
    method: dict = field(default_factory=dict)
    image: dict = field(default_factory=dict)
    segments: list[dict] | None = None
    segment_map: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "format": RECIPE_FORMAT,
            "version": RECIPE_VERSION,
            "image": self.image,
            "method": self.method,
        }
        if self.segments is not None:
            d["segments"] = self.segments
        if self.segment_map is not None:
            d["segment_map"] = self.segment_map
        d["ops"] = self.ops
        if self.notes:
            d["notes"] = self.notes
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict, source: str = "recipe") -> "Recipe":
        if not isinstance(d, dict):
            raise RecipeError(f"{source}: not a JSON object")
        if d.get("format") != RECIPE_FORMAT:
            raise RecipeError(f"{source}: not a deepexposure recipe (format={d.get('format')!r})")
        if d.get("version") != RECIPE_VERSION:
            raise RecipeError(f"{source}: unsupported recipe version {d.get('version')!r} (this build reads {RECIPE_VERSION})")
        r = cls(
            ops=d.get("ops", []),
            method=d.get("method", {}),
            image=d.get("image", {}),
            segments=d.get("segments"),
            segment_map=d.get("segment_map"),
            notes=d.get("notes", []),
        )
        r.validate(source)
        return r

    @classmethod
    def from_json(cls, text: str, source: str = "recipe") -> "Recipe":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecipeError(f"{source}: invalid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise RecipeError(f"{path}: cannot read recipe ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise RecipeError(f"{path}: not a text file") from None
        return cls.from_json(text, str(path))

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write atomically (temp file + rename); refuse to replace an existing file unless ``overwrite``."""
        from .io import atomic_write_bytes

        atomic_write_bytes(Path(path), (self.to_json() + "\n").encode("utf-8"), overwrite=overwrite)

    def validate(self, source: str = "recipe") -> None:
        """Check every op's fields and value ranges; raise :class:`RecipeError` naming the problem."""
        from .filters import FILTERS

        if not isinstance(self.ops, list) or not self.ops:
            raise RecipeError(f"{source}: 'ops' must be a non-empty list")
        for i, op in enumerate(self.ops):
            where = f"{source}: ops[{i}]"
            if not isinstance(op, dict) or op.get("op") not in _OPS:
                raise RecipeError(f"{where}: unknown op {op.get('op') if isinstance(op, dict) else op!r} (known: {', '.join(_OPS)})")
            kind = op["op"]
            if kind in ("local_exposure", "local_filters"):  # per-region ops: deepexposure.local
                from .local import validate_local_op

                validate_local_op(op, self, where)
            elif kind == "exposure_fusion":
                evs = op.get("evs")
                if not isinstance(evs, list) or not all(_finite(e) for e in evs):
                    raise RecipeError(f"{where}: 'evs' must be a list of numbers")
                if not evs and not op.get("include_original", True):
                    raise RecipeError(f"{where}: nothing to fuse (no evs and include_original is false)")
                if any(abs(e) > 10 for e in evs):
                    raise RecipeError(f"{where}: exposure values must lie in [-10, 10] EV")
                _fusion_config(op.get("fusion", {}), where)
            elif kind == "filter":
                name = op.get("name")
                if name not in FILTERS:
                    raise RecipeError(f"{where}: unknown filter {name!r} (known: {', '.join(FILTERS)})")
                spec = FILTERS[name]
                params = op.get("params")
                if not isinstance(params, list) or len(params) != spec.n_params or not all(_finite(p) for p in params):
                    raise RecipeError(f"{where}: filter {name!r} takes {spec.n_params} numeric params")
                lo = _as_list(spec.low, spec.n_params)
                hi = _as_list(spec.high, spec.n_params)
                for k, p in enumerate(params):
                    if not lo[k] - 1e-6 <= p <= hi[k] + 1e-6:
                        raise RecipeError(f"{where}: {name} param {k} = {p} outside [{lo[k]}, {hi[k]}]")
            elif kind == "clahe":
                cl = op.get("clip_limit", 0.01)
                if not _finite(cl) or not 0 < cl <= 1:
                    raise RecipeError(f"{where}: clip_limit must be in (0, 1]")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _as_list(v: Any, n: int) -> list[float]:
    if isinstance(v, (int, float)):
        return [float(v)] * n
    return [float(x) for x in v]


def _fusion_config(d: dict, where: str):
    from .fusion import FusionConfig

    try:
        return FusionConfig(**d)
    except TypeError as e:
        raise RecipeError(f"{where}: bad fusion settings ({e})") from None


def fusion_op(evs: list[float], fusion_cfg=None, include_original: bool = True) -> dict:
    """Build an ``exposure_fusion`` op from exposure values and a :class:`~deepexposure.fusion.FusionConfig`."""
    from dataclasses import asdict

    from .fusion import FusionConfig

    cfg = fusion_cfg or FusionConfig()
    return {
        "op": "exposure_fusion",
        "evs": [round(float(e), 4) for e in evs],
        "include_original": include_original,
        "fusion": asdict(cfg),
    }


def _render_fusion(op: dict, img_srgb: torch.Tensor) -> torch.Tensor:
    from .color import srgb_to_linear
    from .filters import exposed_from_linear
    from .fusion import exposure_fusion_streaming

    cfg = _fusion_config(op.get("fusion", {}), "recipe")
    evs = [float(e) for e in op["evs"]]
    include = bool(op.get("include_original", True))
    sources: list[float | None] = ([None] if include else []) + evs
    if sources == [None]:
        return img_srgb
    img_lin = srgb_to_linear(img_srgb)  # decoded once, re-exposed per source (twice: two passes)

    def make(i: int) -> torch.Tensor:
        ev = sources[i]
        if ev is None:
            return img_srgb
        return exposed_from_linear(img_lin, torch.tensor([[ev]], dtype=img_srgb.dtype, device=img_srgb.device))

    if len(sources) == 1:
        return make(0)
    return exposure_fusion_streaming(make, len(sources), cfg).clamp_(0.0, 1.0)


@torch.no_grad()
def render(recipe: Recipe, img_srgb: torch.Tensor) -> torch.Tensor:
    """Apply a recipe's ops in order.

    Args:
        recipe: the recipe.
        img_srgb: ``(1, 3, H, W)`` sRGB in [0, 1], any resolution (filters are resolution-independent).
    Returns:
        ``(1, 3, H, W)`` sRGB in [0, 1].
    """
    from .filters import apply_filter

    out = img_srgb
    for op in recipe.ops:
        kind = op["op"]
        if kind == "exposure_fusion":
            out = _render_fusion(op, out)
        elif kind == "filter":
            params = torch.tensor([op["params"]], dtype=out.dtype, device=out.device)
            out = apply_filter(op["name"], out, params).clamp(0.0, 1.0)
        elif kind == "clahe":
            from .baselines import clahe

            out = clahe(out, clip_limit=float(op.get("clip_limit", 0.01)), kernel_size=op.get("kernel_size"))
        elif kind in ("local_exposure", "local_filters"):
            from .local import render_local_op

            out = render_local_op(recipe, op, out)
        else:  # validate() rejects these; kept for programmatic recipes
            raise RecipeError(f"recipe: unknown op {kind!r}")
    return out
