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
  unmodified image when ``include_original``, fused with Mertens fusion (:func:`deepexposure.fusion.fuse_exposures`: compiled, one exposure at a time).
- ``filter``: one white-box filter of :data:`deepexposure.filters.FILTERS` with its parameters.
- ``clahe``: contrast-limited adaptive histogram equalisation on luminance (a baseline).

What the exposures are: the ``evs`` of an ``exposure_fusion`` op are the exposures of a fused bracket.
Each is applied to the whole frame and the bracket is fused with Mertens weights; a learned method
*chooses* exposure ``t`` while looking at segment ``t``, but no exposure is confined to its segment.

Validation (:meth:`Recipe.validate`, :func:`validate_recipe_dict`) checks types, ranges, counts and
nesting before any work; the same rules, as a JSON Schema, are :func:`recipe_schema` and
``docs/recipe.schema.json`` (a test keeps the file in sync).

- ``local_exposure`` / ``local_filters``: per-region exposures / white-box filters rendered through
  edge-aware masks rebuilt from ``segment_map`` (:mod:`deepexposure.local`, ``docs/local.md``).
- ``pixelrl_actions``: PixelRL's per-pixel action maps, one per step, zlib-compressed, and
  ``upsample`` (``nearest``, the default, or ``guided``): how a plan made on a working copy reaches
  the full photo (:mod:`deepexposure.pixelrl.recipe_op`, ``docs/pixelrl.md``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .filters import FILTERS, apply_filter, global_exposure
from .fusion import FusionConfig, fuse_exposures
from .ops import clahe

__all__ = ["Recipe", "RecipeError", "render", "RECIPE_FORMAT", "RECIPE_VERSION", "fusion_op", "validate_evs",
           "validate_fusion", "validate_recipe_dict", "recipe_schema", "LIMITS"]

RECIPE_FORMAT = "deepexposure-recipe"
RECIPE_VERSION = 1
_OPS = ("exposure_fusion", "filter", "clahe", "local_exposure", "local_filters", "pixelrl_actions")

#: Bounds of everything a recipe may hold; the validator and :func:`recipe_schema` both read them.
LIMITS: dict[str, Any] = {
    "max_bytes": 4 << 20,  # recipe file size
    "max_depth": 32,  # JSON nesting
    "max_ops": 64,
    "max_evs": 32,  # exposures per fusion op (and --ev / --exposures)
    "ev": (-10.0, 10.0),
    "fusion_weight": (0.0, 16.0),  # contrast, saturation, exposedness exponents
    "fusion_sigma": (0.01, 10.0),
    "fusion_levels": (0, 30),
    "clip_limit": (0.0, 1.0),  # (exclusive, inclusive]
    "kernel_size": (2, 4096),
    "param_tolerance": 1e-6,
    "max_segments": 1024,
    "max_map_rows": 4096,
    "max_string": 65536,
    "max_notes": 1024,
}
_FUSION_KEYS = ("contrast_weight", "saturation_weight", "exposedness_weight", "sigma", "levels")
_OP_KEYS = {
    "exposure_fusion": ("op", "evs", "include_original", "fusion"),
    "filter": ("op", "name", "params"),
    "clahe": ("op", "clip_limit", "kernel_size"),
    "local_exposure": ("op", "evs", "masks", "fuse_original", "fusion"),
    "local_filters": ("op", "masks", "regions"),
    "pixelrl_actions": ("op", "task", "actions", "shape", "maps", "counts", "upsample"),
}
_TOP_KEYS = ("format", "version", "image", "method", "segments", "segment_map", "ops", "notes")


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
    def from_dict(cls, d: dict, source: str = "recipe") -> Recipe:
        if not isinstance(d, dict):
            raise RecipeError(f"{source}: not a JSON object")
        if d.get("format") != RECIPE_FORMAT:
            raise RecipeError(f"{source}: not a deepexposure recipe (format={_short(d.get('format'))})")
        if d.get("version") != RECIPE_VERSION:
            raise RecipeError(f"{source}: unsupported recipe version {_short(d.get('version'))} (this build reads {RECIPE_VERSION})")
        validate_recipe_dict(d, source)
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
    def from_json(cls, text: str, source: str = "recipe") -> Recipe:
        if len(text) > LIMITS["max_bytes"]:
            raise RecipeError(f"{source}: recipe is {len(text)} characters; the limit is {LIMITS['max_bytes']}")
        _check_nesting(text, source)
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecipeError(f"{source}: invalid JSON ({e.msg} at line {e.lineno})") from None
        except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
            raise RecipeError(f"{source}: invalid JSON ({_one_line(e)[:200]})") from None
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        path = Path(path)
        try:
            with open(path, "rb") as f:
                data = f.read(LIMITS["max_bytes"] + 1)
            if len(data) > LIMITS["max_bytes"]:
                raise RecipeError(f"{path}: recipe file is larger than {LIMITS['max_bytes']} bytes")
            text = data.decode("utf-8")
        except OSError as e:
            raise RecipeError(f"{path}: cannot read recipe ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise RecipeError(f"{path}: not a text file") from None
        return cls.from_json(text, str(path))

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write atomically (temp file + rename); refuse to replace an existing file unless ``overwrite``."""
        from .atomic import atomic_write_bytes

        atomic_write_bytes(Path(path), (self.to_json() + "\n").encode("utf-8"), overwrite=overwrite)

    def validate(self, source: str = "recipe") -> None:
        """Check every field's type, range and count; raise :class:`RecipeError` (one line) naming the problem."""
        validate_recipe_dict(self.to_dict(), source)


def _one_line(e: object) -> str:
    return " ".join(str(e).split())


def _short(v: Any) -> str:
    """``repr`` cut to 60 characters, for messages about hostile values."""
    r = repr(v) if not isinstance(v, int) or abs(v) < 10**30 else f"<integer of {len(str(abs(v)))} digits>"
    return r if len(r) <= 60 else r[:57] + "..."


def _check_nesting(text: str, source: str) -> None:
    """Refuse JSON nested deeper than ``LIMITS['max_depth']`` before parsing (``json`` recurses)."""
    import re

    depth = peak = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > peak:
                peak = depth
                if peak > LIMITS["max_depth"]:
                    raise RecipeError(f"{source}: JSON nested deeper than {LIMITS['max_depth']} levels")
        elif c in "]}":
            depth -= 1


def _is_num(x: Any) -> bool:
    """A JSON number that is finite (big integers included, compared exactly)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return isinstance(x, int) or math.isfinite(x)


def _num_in(x: Any, lo: float, hi: float, *, lo_open: bool = False) -> bool:
    return _is_num(x) and (lo < x if lo_open else lo <= x) and x <= hi


def _int_in(x: Any, lo: int, hi: int) -> bool:
    """An integer in [lo, hi]; ``8.0`` counts (JSON Schema's "integer" includes it)."""
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        x = int(x)
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def _check_depth(v: Any, where: str, depth: int = 0) -> None:
    if depth > LIMITS["max_depth"]:
        raise RecipeError(f"{where}: nested deeper than {LIMITS['max_depth']} levels")
    if isinstance(v, dict):
        for x in v.values():
            _check_depth(x, where, depth + 1)
    elif isinstance(v, list):
        for x in v:
            _check_depth(x, where, depth + 1)


def validate_evs(evs: Any, where: str = "evs") -> list[float]:
    """Exposure values of a fused bracket: a list of at most ``LIMITS['max_evs']`` numbers in
    ``LIMITS['ev']``; returns them as floats. Used by recipes, ``--ev`` and ``--exposures`` alike."""
    lo, hi = LIMITS["ev"]
    if not isinstance(evs, (list, tuple)) or not all(_is_num(e) for e in evs):
        raise RecipeError(f"{where}: 'evs' must be a list of numbers")
    if len(evs) > LIMITS["max_evs"]:
        raise RecipeError(f"{where}: {len(evs)} exposures; at most {LIMITS['max_evs']} are allowed")
    bad = next((e for e in evs if not lo <= e <= hi), None)
    if bad is not None:
        raise RecipeError(f"{where}: exposure values must lie in [{lo:g}, {hi:g}] EV, got {_short(bad)}")
    return [float(e) for e in evs]


def validate_fusion(d: Any, where: str = "fusion") -> None:
    """Mertens settings: an object with only :data:`_FUSION_KEYS`, each within :data:`LIMITS`."""
    if not isinstance(d, dict):
        raise RecipeError(f"{where}: bad fusion settings (expected an object, got {type(d).__name__})")
    unknown = [k for k in d if k not in _FUSION_KEYS]
    if unknown:
        raise RecipeError(f"{where}: bad fusion settings (unknown key {_short(unknown[0])}; known: {', '.join(_FUSION_KEYS)})")
    wlo, whi = LIMITS["fusion_weight"]
    for k in _FUSION_KEYS[:3]:
        if k in d and not _num_in(d[k], wlo, whi):
            raise RecipeError(f"{where}: bad fusion settings ({k} must be a number in [{wlo:g}, {whi:g}], got {_short(d[k])})")
    slo, shi = LIMITS["fusion_sigma"]
    if "sigma" in d and not _num_in(d["sigma"], slo, shi):
        raise RecipeError(f"{where}: bad fusion settings (sigma must be a number in [{slo:g}, {shi:g}], got {_short(d['sigma'])})")
    llo, lhi = LIMITS["fusion_levels"]
    if d.get("levels") is not None and not _int_in(d["levels"], llo, lhi):
        raise RecipeError(f"{where}: bad fusion settings (levels must be null or an integer in [{llo}, {lhi}], got {_short(d['levels'])})")


def _validate_op(op: Any, where: str) -> None:
    kind = op.get("op") if isinstance(op, dict) else None
    if not isinstance(kind, str) or kind not in _OPS:
        shown = kind if isinstance(op, dict) else op
        raise RecipeError(f"{where}: unknown op {_short(shown)} (known: {', '.join(_OPS)})")
    unknown = [k for k in op if k not in _OP_KEYS[kind]]
    if unknown:
        raise RecipeError(f"{where}: unknown key {_short(unknown[0])} in a {kind} op (known: {', '.join(_OP_KEYS[kind])})")
    if kind == "exposure_fusion":
        evs = validate_evs(op.get("evs"), where)
        include = op.get("include_original", True)
        if not isinstance(include, bool):
            raise RecipeError(f"{where}: 'include_original' must be true or false")
        if not evs and not include:
            raise RecipeError(f"{where}: nothing to fuse (no evs and include_original is false)")
        validate_fusion(op.get("fusion", {}), where)
    elif kind == "filter":
        name = op.get("name")
        if not isinstance(name, str) or name not in FILTERS:
            raise RecipeError(f"{where}: unknown filter {_short(name)} (known: {', '.join(FILTERS)})")
        spec = FILTERS[name]
        params = op.get("params")
        if not isinstance(params, list) or len(params) != spec.n_params or not all(_is_num(p) for p in params):
            raise RecipeError(f"{where}: filter {name!r} takes {spec.n_params} numeric params")
        tol = LIMITS["param_tolerance"]
        for k, (p, lo, hi) in enumerate(zip(params, _as_list(spec.low, spec.n_params), _as_list(spec.high, spec.n_params))):
            if not lo - tol <= p <= hi + tol:
                raise RecipeError(f"{where}: {name} param {k} = {_short(p)} outside [{lo}, {hi}]")
    elif kind == "clahe":
        cl = op.get("clip_limit", 0.01)
        if not _num_in(cl, *LIMITS["clip_limit"], lo_open=True):
            raise RecipeError(f"{where}: clip_limit must be a number in (0, 1], got {_short(cl)}")
        ks = op.get("kernel_size")
        if ks is not None and not _int_in(ks, *LIMITS["kernel_size"]):
            lo, hi = LIMITS["kernel_size"]
            raise RecipeError(f"{where}: kernel_size must be null or an integer in [{lo}, {hi}], got {_short(ks)}")


def _check_list(d: dict, key: str, limit: int, item: type, source: str) -> None:
    v = d.get(key)
    if v is None and key != "ops":
        return
    if not isinstance(v, list):
        raise RecipeError(f"{source}: '{key}' must be a list")
    if len(v) > limit:
        raise RecipeError(f"{source}: '{key}' has {len(v)} entries; at most {limit} are allowed")
    bad = next((i for i, x in enumerate(v) if not isinstance(x, item)), None)
    if bad is not None:
        raise RecipeError(f"{source}: {key}[{bad}] must be a {'string' if item is str else 'JSON object'}")
    if item is str and any(len(x) > LIMITS["max_string"] for x in v):
        raise RecipeError(f"{source}: an entry of '{key}' is longer than {LIMITS['max_string']} characters")


def validate_recipe_dict(d: Any, source: str = "recipe") -> None:
    """Validate a parsed recipe (see :data:`LIMITS` and :func:`recipe_schema`); :class:`RecipeError` if not.

    Checks, before any work: the object and its keys, nesting depth, the number of ops, exposures,
    segments, map rows and notes, and every op's types and ranges.
    """
    if not isinstance(d, dict):
        raise RecipeError(f"{source}: not a JSON object")
    _check_depth(d, source)
    unknown = [k for k in d if k not in _TOP_KEYS]
    if unknown:
        raise RecipeError(f"{source}: unknown key {_short(unknown[0])} (known: {', '.join(_TOP_KEYS)})")
    for key in ("image", "method"):
        if not isinstance(d.get(key, {}), dict):
            raise RecipeError(f"{source}: '{key}' must be a JSON object")
    ops = d.get("ops")
    if not isinstance(ops, list) or not ops:
        raise RecipeError(f"{source}: 'ops' must be a non-empty list")
    if len(ops) > LIMITS["max_ops"]:
        raise RecipeError(f"{source}: 'ops' has {len(ops)} entries; at most {LIMITS['max_ops']} are allowed")
    _check_list(d, "segments", LIMITS["max_segments"], dict, source)
    _check_list(d, "segment_map", LIMITS["max_map_rows"], str, source)
    _check_list(d, "notes", LIMITS["max_notes"], str, source)
    for i, op in enumerate(ops):
        _validate_op(op, f"{source}: ops[{i}]")
        if op["op"] in ("local_exposure", "local_filters"):  # per-region ops need the segment map: deepexposure.local
            from types import SimpleNamespace

            validate_local_op(op, SimpleNamespace(segment_map=d.get("segment_map")), f"{source}: ops[{i}]")
        elif op["op"] == "pixelrl_actions":  # per-pixel action maps: deepexposure.pixelrl.recipe_op
            from .pixelrl.recipe_op import OpError, validate_actions_op

            try:
                validate_actions_op(op, f"{source}: ops[{i}]", LIMITS["max_bytes"])
            except OpError as e:
                raise RecipeError(str(e)) from None


def recipe_schema() -> dict:
    """The recipe format as a JSON Schema (draft 2020-12), built from :data:`LIMITS` and the filter
    registry, so it states the rules :func:`validate_recipe_dict` applies (except the byte size and
    nesting depth, which JSON Schema cannot express). ``docs/recipe.schema.json`` is this, dumped."""
    tol = LIMITS["param_tolerance"]
    ev_lo, ev_hi = LIMITS["ev"]
    w_lo, w_hi = LIMITS["fusion_weight"]
    number = {"type": "number"}
    fusion = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{k: {**number, "minimum": w_lo, "maximum": w_hi} for k in _FUSION_KEYS[:3]},
            "sigma": {**number, "minimum": LIMITS["fusion_sigma"][0], "maximum": LIMITS["fusion_sigma"][1]},
            "levels": {"type": ["integer", "null"], "minimum": LIMITS["fusion_levels"][0], "maximum": LIMITS["fusion_levels"][1]},
        },
    }
    fusion_op_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["op", "evs"],
        "properties": {
            "op": {"const": "exposure_fusion"},
            "evs": {"type": "array", "maxItems": LIMITS["max_evs"], "items": {**number, "minimum": ev_lo, "maximum": ev_hi}},
            "include_original": {"type": "boolean"},
            "fusion": fusion,
        },
        "if": {"properties": {"include_original": {"const": False}}, "required": ["include_original"]},
        "then": {"properties": {"evs": {"minItems": 1}}},
    }
    filter_ops = []
    for name, spec in FILTERS.items():
        lo, hi = _as_list(spec.low, spec.n_params), _as_list(spec.high, spec.n_params)
        filter_ops.append({
            "type": "object",
            "additionalProperties": False,
            "required": ["op", "name", "params"],
            "properties": {
                "op": {"const": "filter"},
                "name": {"const": name},
                "params": {
                    "type": "array", "minItems": spec.n_params, "maxItems": spec.n_params,
                    "prefixItems": [{**number, "minimum": a - tol, "maximum": b + tol} for a, b in zip(lo, hi)],
                },
            },
        })
    clahe_op = {
        "type": "object",
        "additionalProperties": False,
        "required": ["op"],
        "properties": {
            "op": {"const": "clahe"},
            "clip_limit": {**number, "exclusiveMinimum": LIMITS["clip_limit"][0], "maximum": LIMITS["clip_limit"][1]},
            "kernel_size": {"type": ["integer", "null"], "minimum": LIMITS["kernel_size"][0], "maximum": LIMITS["kernel_size"][1]},
        },
    }
    local_ops = [{  # the region count and mask settings are checked against segment_map by deepexposure.local
        "type": "object",
        "additionalProperties": False,
        "required": ["op", *(["evs"] if kind == "local_exposure" else ["regions"])],
        "properties": {"op": {"const": kind}, **{k: {} for k in _OP_KEYS[kind] if k != "op"}},
    } for kind in ("local_exposure", "local_filters")]
    from .pixelrl.recipe_op import UPSAMPLE

    pixelrl_op = {  # the maps are checked against shape and actions by deepexposure.pixelrl.method
        "type": "object",
        "additionalProperties": False,
        "required": ["op", "task", "actions", "shape", "maps"],
        "properties": {"op": {"const": "pixelrl_actions"}, **{k: {} for k in _OP_KEYS["pixelrl_actions"] if k != "op"},
                       "upsample": {"enum": list(UPSAMPLE)}},
    }
    string = {"type": "string", "maxLength": LIMITS["max_string"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:deepexposure:recipe:1",
        "title": "deepexposure recipe",
        "description": "A retouch as data (deepexposure.recipe). Exposures of an exposure_fusion op are those of a "
                       "fused bracket, each applied to the whole frame; a learned method chooses exposure t for segment t.",
        "type": "object",
        "additionalProperties": False,
        "required": ["format", "version", "ops"],
        "properties": {
            "format": {"const": RECIPE_FORMAT},
            "version": {"const": RECIPE_VERSION},
            "image": {"type": "object"},
            "method": {"type": "object"},
            "segments": {"type": "array", "maxItems": LIMITS["max_segments"], "items": {"type": "object"}},
            "segment_map": {"type": "array", "maxItems": LIMITS["max_map_rows"], "items": string},
            "ops": {"type": "array", "minItems": 1, "maxItems": LIMITS["max_ops"],
                    "items": {"oneOf": [fusion_op_schema, *filter_ops, clahe_op, *local_ops, pixelrl_op]}},
            "notes": {"type": "array", "maxItems": LIMITS["max_notes"], "items": string},
        },
    }


def _as_list(v: Any, n: int) -> list[float]:
    if isinstance(v, (int, float)):
        return [float(v)] * n
    return [float(x) for x in v]


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _fusion_config(d: dict, where: str) -> FusionConfig:
    validate_fusion(d, where)
    try:
        return FusionConfig(**d)
    except TypeError as e:
        raise RecipeError(f"{where}: bad fusion settings ({e})") from None


def fusion_op(evs: list[float], fusion_cfg=None, include_original: bool = True) -> dict:
    """Build an ``exposure_fusion`` op from exposure values and a :class:`~deepexposure.fusion.FusionConfig`."""
    from dataclasses import asdict

    cfg = fusion_cfg or FusionConfig()
    return {
        "op": "exposure_fusion",
        "evs": [round(float(e), 4) for e in evs],
        "include_original": include_original,
        "fusion": asdict(cfg),
    }


def _fusion_sources(op: dict) -> list[float | None]:
    """The frames an ``exposure_fusion`` op fuses: None for the original, then its exposures."""
    return ([None] if bool(op.get("include_original", True)) else []) + [float(e) for e in op["evs"]]


def _no_tick() -> None:
    pass


def _render_fusion(op: dict, img_srgb: torch.Tensor, recipe: Recipe, tick: Callable[[], None] = _no_tick) -> torch.Tensor:
    cfg = _fusion_config(op.get("fusion", {}), "recipe")
    sources = _fusion_sources(op)
    if sources == [None]:
        return img_srgb
    if len(sources) == 1:
        tick()
        return global_exposure(img_srgb, torch.tensor([[sources[0]]], dtype=img_srgb.dtype, device=img_srgb.device))
    steps, done = render_steps(op), [0]

    def built(i: int) -> None:  # one step of the render's progress per frame built
        done[0] += 1
        if done[0] <= steps:
            tick()

    out = fuse_exposures(img_srgb, sources, cfg, on_source=built).clamp_(0.0, 1.0)
    for _ in range(steps - done[0]):  # small photos build each frame once, not twice
        tick()
    return out


def _render_filter(op: dict, img_srgb: torch.Tensor, recipe: Recipe, tick: Callable[[], None] = _no_tick) -> torch.Tensor:
    params = torch.tensor([op["params"]], dtype=img_srgb.dtype, device=img_srgb.device)
    return apply_filter(op["name"], img_srgb, params).clamp(0.0, 1.0)


def _render_clahe(op: dict, img_srgb: torch.Tensor, recipe: Recipe, tick: Callable[[], None] = _no_tick) -> torch.Tensor:
    return clahe(img_srgb, clip_limit=float(op.get("clip_limit", 0.01)), kernel_size=_opt_int(op.get("kernel_size")))


def _render_local(op: dict, img_srgb: torch.Tensor, recipe: Recipe, tick: Callable[[], None] = _no_tick) -> torch.Tensor:
    from .local import render_local_op  # local ops need the recipe's segment map

    return render_local_op(recipe, op, img_srgb)


def _render_pixelrl(op: dict, img_srgb: torch.Tensor, recipe: Recipe, tick: Callable[[], None] = _no_tick) -> torch.Tensor:
    from .pixelrl.recipe_op import render_actions_op

    return render_actions_op(op, img_srgb)


#: op name -> ``renderer(op, img_srgb (1, 3, H, W), recipe, tick) -> (1, 3, H, W)``, both sRGB in [0, 1]
#: (``recipe`` gives an op the recipe's segment map; ``tick()`` reports one of the op's
#: :func:`render_steps`, for progress); one entry per op of the format.
OP_RENDERERS: dict[str, Callable[[dict, torch.Tensor, Recipe, Callable[[], None]], torch.Tensor]] = {
    "exposure_fusion": _render_fusion,
    "filter": _render_filter,
    "clahe": _render_clahe,
    "local_exposure": _render_local,
    "local_filters": _render_local,
    "pixelrl_actions": _render_pixelrl,
}


def render_steps(op: dict) -> int:
    """Progress steps of one op in :func:`render`: one per frame built for an ``exposure_fusion`` of
    ``K > 1`` frames (``2 K``: :func:`~deepexposure.fusion.fuse_exposures` builds each frame
    once per pass), one for any other op."""
    k = len(_fusion_sources(op)) if op.get("op") == "exposure_fusion" else 1
    return 2 * k if k > 1 else 1


@torch.no_grad()
def render(recipe: Recipe, img_srgb: torch.Tensor, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Apply a recipe's ops in order.

    Args:
        recipe: the recipe.
        img_srgb: ``(1, 3, H, W)`` sRGB in [0, 1], any resolution (filters are resolution-independent).
        progress: called as ``progress(done, total)``, ``done`` rising from 0 to ``total`` (the sum of
            the ops' :func:`render_steps`): at the start, per fused frame built and after each op. It
            only observes; the result does not depend on it.
    Returns:
        ``(1, 3, H, W)`` sRGB in [0, 1].
    """
    recipe.validate()  # cheap; programmatic recipes get the same checks as files
    total = sum(render_steps(op) for op in recipe.ops)
    done = 0

    def tick() -> None:
        nonlocal done
        done = min(done + 1, total)
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    out = img_srgb
    for op in recipe.ops:
        renderer = OP_RENDERERS.get(op["op"])
        if renderer is None:  # validate() rejects these; kept for programmatic recipes
            raise RecipeError(f"recipe: unknown op {op['op']!r}")
        start = done
        out = renderer(op, out, recipe, tick)
        done = start + render_steps(op)  # an op that ticks less (or more) still ends at its share
        if progress is not None:
            progress(done, total)
    return out


def validate_local_op(op: dict, recipe, where: str) -> None:
    """Check a per-region op (:mod:`deepexposure.local`) against its recipe's segment map; raise :class:`RecipeError` naming the problem."""
    from .filters import FILTERS
    from .local import _labels
    from .masks import MaskConfig

    _finite = _is_num

    rows = recipe.segment_map
    digits = set("0123456789abcdefghijklmnopqrstuvwxyz")
    if (not isinstance(rows, list) or not rows or not all(isinstance(r, str) and r for r in rows)
            or len({len(r) for r in rows}) != 1 or not all(set(r.lower()) <= digits for r in rows)):
        raise RecipeError(f"{where}: {op['op']} needs the recipe's 'segment_map' (equal-length rows of base-36 labels)")
    labels = _labels(rows)
    t = int(labels.max()) + 1
    missing = sorted(set(range(t)) - set(labels.unique().tolist()))
    if missing:
        raise RecipeError(f"{where}: segment_map has no pixels of region(s) {missing}")
    try:
        MaskConfig.from_dict(op.get("masks"))
    except (TypeError, ValueError) as e:
        raise RecipeError(f"{where}: bad mask settings ({e})") from None
    if (op.get("masks") or {}).get("method", "guided") != "guided":
        raise RecipeError(f"{where}: masks.method must be 'guided'")
    if op["op"] == "local_exposure":
        evs = op.get("evs")
        if not isinstance(evs, list) or not all(_finite(e) for e in evs):
            raise RecipeError(f"{where}: 'evs' must be a list of numbers")
        if len(evs) != t:
            raise RecipeError(f"{where}: {len(evs)} exposures for {t} regions in segment_map")
        if any(abs(e) > 10 for e in evs):
            raise RecipeError(f"{where}: exposure values must lie in [-10, 10] EV")
        if op.get("fuse_original"):
            _fusion_config(op.get("fusion", {}), where)
        return
    regions = op.get("regions")
    if not isinstance(regions, list) or len(regions) != t:
        raise RecipeError(f"{where}: 'regions' must be a list of {t} filter lists (one per region)")
    for k, chain in enumerate(regions):
        if not isinstance(chain, list):
            raise RecipeError(f"{where}: regions[{k}] must be a list of filters")
        for j, f in enumerate(chain):
            w = f"{where}: regions[{k}][{j}]"
            if not isinstance(f, dict) or f.get("name") not in FILTERS:
                raise RecipeError(f"{w}: unknown filter (known: {', '.join(FILTERS)})")
            spec = FILTERS[f["name"]]
            params = f.get("params")
            if not isinstance(params, list) or len(params) != spec.n_params or not all(_finite(p) for p in params):
                raise RecipeError(f"{w}: {f['name']} takes {spec.n_params} numbers")
            lo, hi = _as_list(spec.low, spec.n_params), _as_list(spec.high, spec.n_params)
            for i, p in enumerate(params):
                if not lo[i] - 1e-6 <= p <= hi[i] + 1e-6:
                    raise RecipeError(f"{w}: {f['name']} param {i} = {p} outside [{lo[i]}, {hi[i]}]")
