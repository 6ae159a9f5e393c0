"""Synthetic paired benchmark: well-exposed photos + known, spatially varying exposure errors.

``deepexposure synth SRC --out DIR`` turns any folder of well-exposed photos into a paired
benchmark with a known answer for every pixel::

    DIR/reference/<name>.png   the photo, scaled to ``size`` px on the long edge, 8-bit sRGB
    DIR/input/<name>.png       the same photo with an exposure error, 8-bit sRGB
    DIR/fields/<name>.npy      the EV field E (float32, H x W, stops) that was applied
    DIR/fields/<name>.json     its parameters (and summary: EV range, clipped fraction)
    DIR/synth.json             the configuration and the list of items

Degradation model (all in linear light; ``R`` = the *quantised* 8-bit reference decoded to linear
sRGB, ``Y = 0.2126 R_r + 0.7152 R_g + 0.0722 R_b`` its relative luminance; pixel centres at
``u = (x + 0.5) / L``, ``v = (y + 0.5) / L`` with ``L`` the long edge, so the field does not
depend on the resolution):

    E(x)   = g + l(x) + s(x)                                          [stops]
    g      ~ U(global_ev)                                              global exposure offset
    l(x)   = A sum_k c_k cos(2 pi (f_k . (u, v)) + phi_k) / sum_k |c_k|  smooth local field, |l| <= A
             A ~ U(0, local_ev), c_k ~ N(0, 1), |f_k| ~ U(freq) cycles per long edge,
             direction and phase phi_k uniform, k = 1..components
    s(x)   = beta tanh((log2(Y(x) + 1e-3) - log2(0.18)) / 2)             shadow/highlight term
             beta ~ U(-tone_ev, tone_ev): beta < 0 lifts shadows and dims highlights (flat,
             hazy), beta > 0 crushes shadows and pushes highlights (harsh)
    I_lin  = min(1, R_lin * 2^E(x))          same factor for R, G, B; clipping = lost highlights
    input  = quantise_8bit(linear_to_srgb(I_lin))

``s`` is a monotone tone curve in log luminance for ``|beta| < 2``. The only information lost
(besides 8-bit rounding) is the clipping; ``clipped_fraction`` in the JSON says how much. Applying
the recorded field to the written reference (:func:`apply_ev_field`) reproduces the written input
up to 8-bit quantisation. Everything is drawn from one ``torch.Generator`` per item, seeded from
``(seed, name)``, so adding photos does not change the others, and the same seed gives the same
bytes (PNG written by :mod:`deepexposure.io` without time stamps; JSON with sorted keys).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .color import LUM_WEIGHTS_REC709, linear_to_srgb, luminance, srgb_to_linear
from .resize import resize_long_edge

__all__ = [
    "SynthConfig",
    "ExposureError",
    "sample_exposure_error",
    "ev_field",
    "apply_ev_field",
    "degrade",
    "make_benchmark",
    "skimage_photo_paths",
    "SKIMAGE_PHOTOS",
    "SYNTH_FORMAT",
]

SYNTH_FORMAT = "deepexposure-synth"
#: Colour photographs shipped inside the scikit-image wheel (no download needed).
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
_MID_GREY = 0.18
_EPS = 1e-3


@dataclass
class SynthConfig:
    """Parameters of the degradation model (see the module docstring)."""

    seed: int = 0
    """seed of the whole benchmark; each item uses a generator seeded from (seed, name)"""
    size: int | None = 500
    """long edge of the written images in px (500 as in the papers); None keeps the source size"""
    variants: int = 1
    """degraded versions per source photo (named <stem>_v<k> when > 1)"""
    global_ev: tuple[float, float] = (-2.0, 1.5)
    """range of the global EV offset g"""
    local_ev: float = 1.5
    """upper bound of the amplitude A of the smooth local EV field"""
    components: int = 4
    """number of cosine components of the local field"""
    freq: tuple[float, float] = (0.25, 1.0)
    """range of the local field's spatial frequency, cycles per long edge"""
    tone_ev: float = 0.75
    """bound of the shadow/highlight strength beta (stops)"""


@dataclass
class ExposureError:
    """One sampled exposure error (resolution-independent parameters)."""

    global_ev: float
    amplitude: float
    components: list[dict] = field(default_factory=list)  # {"c", "fx", "fy", "phase"}
    beta: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=g, dtype=torch.float64))


def sample_exposure_error(cfg: SynthConfig, generator: torch.Generator) -> ExposureError:
    """Draw ``g``, ``A``, the cosine components and ``beta`` from ``generator`` (CPU)."""
    g = _uniform(generator, *cfg.global_ev)
    amp = _uniform(generator, 0.0, cfg.local_ev)
    comps = []
    for _ in range(cfg.components):
        c = float(torch.randn((), generator=generator, dtype=torch.float64))
        f = _uniform(generator, *cfg.freq)
        theta = _uniform(generator, 0.0, 2 * math.pi)
        phase = _uniform(generator, 0.0, 2 * math.pi)
        comps.append({"c": c, "fx": f * math.cos(theta), "fy": f * math.sin(theta), "phase": phase})
    beta = _uniform(generator, -cfg.tone_ev, cfg.tone_ev)
    return ExposureError(global_ev=g, amplitude=amp, components=comps, beta=beta)


def ev_field(err: ExposureError, ref_srgb: torch.Tensor) -> torch.Tensor:
    """The EV field ``E = g + l + s`` for a reference image.

    Args:
        err: the sampled parameters.
        ref_srgb: ``(1, 3, H, W)`` sRGB in [0, 1] (the quantised reference).
    Returns:
        ``(1, 1, H, W)`` float32 field in stops (computed in float64).
    """
    _, _, h, w = ref_srgb.shape
    L = max(h, w)
    v = ((torch.arange(h, dtype=torch.float64) + 0.5) / L).view(h, 1)
    u = ((torch.arange(w, dtype=torch.float64) + 0.5) / L).view(1, w)
    local = torch.zeros(h, w, dtype=torch.float64)
    norm = sum(abs(c["c"]) for c in err.components)
    for c in err.components:
        local = local + c["c"] * torch.cos(2 * math.pi * (c["fx"] * u + c["fy"] * v) + c["phase"])
    if norm > 0:
        local = err.amplitude * local / norm
    y = luminance(srgb_to_linear(ref_srgb.detach().cpu().double()), LUM_WEIGHTS_REC709)[0, 0]
    tone = err.beta * torch.tanh((torch.log2(y + _EPS) - math.log2(_MID_GREY)) / 2)
    e = err.global_ev + local + tone
    return e.float().view(1, 1, h, w).to(ref_srgb.device)


def apply_ev_field(img_srgb: torch.Tensor, field_ev: torch.Tensor) -> torch.Tensor:
    """Re-expose per pixel: ``linear_to_srgb(min(1, srgb_to_linear(img) * 2^E))``.

    Args:
        img_srgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        field_ev: ``(B or 1, 1, H, W)`` or ``(H, W)`` EV field in stops.
    Returns:
        ``(B, 3, H, W)`` sRGB in [0, 1].
    """
    if field_ev.dim() == 2:
        field_ev = field_ev[None, None]
    if field_ev.shape[-2:] != img_srgb.shape[-2:]:
        raise ValueError(f"field {tuple(field_ev.shape)} does not match image {tuple(img_srgb.shape)}")
    lin = srgb_to_linear(img_srgb.double()) * torch.exp2(field_ev.to(img_srgb.device).double())
    return linear_to_srgb(lin.clamp(0.0, 1.0)).to(img_srgb.dtype)


def _item_generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def degrade(ref_srgb: torch.Tensor, cfg: SynthConfig, name: str) -> tuple[torch.Tensor, torch.Tensor, ExposureError]:
    """Degrade one (already quantised) reference deterministically from ``(cfg.seed, name)``.

    Returns:
        ``(input_srgb (1, 3, H, W) not yet quantised, field (1, 1, H, W), parameters)``.
    """
    err = sample_exposure_error(cfg, _item_generator(cfg.seed, name))
    e = ev_field(err, ref_srgb)
    return apply_ev_field(ref_srgb, e), e, err


def skimage_photo_paths() -> list[Path]:
    """Paths of the colour photographs in the installed scikit-image wheel (:data:`SKIMAGE_PHOTOS`)."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    return [root / n for n in SKIMAGE_PHOTOS if (root / n).is_file()]


def _unique_names(paths: list[Path], variants: int) -> list[tuple[str, Path]]:
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = p.stem
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{stem}_{seen[stem]}"
        for k in range(variants):
            out.append((stem if variants == 1 else f"{stem}_v{k}", p))
    return out


def _quantise(img_srgb: torch.Tensor) -> torch.Tensor:
    from .io import tensor_to_uint8, uint8_to_tensor

    return uint8_to_tensor(tensor_to_uint8(img_srgb)).to(img_srgb.dtype)


def make_benchmark(
    sources: list[Path],
    out_dir: Path,
    cfg: SynthConfig = SynthConfig(),
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a synthetic paired benchmark (layout in the module docstring).

    Args:
        sources: photo files (anything :func:`deepexposure.io.read_image` reads); unreadable ones are
            skipped and listed under ``"skipped"`` in the manifest.
        out_dir: output folder; refused if it already holds a benchmark unless ``overwrite``.
        cfg: the degradation model's parameters.
    Returns:
        The manifest written to ``out_dir/synth.json``.
    Raises:
        ValueError: no sources, nothing readable, or an existing benchmark without ``overwrite``.
    """
    from .io import ImageReadError, read_image, write_image

    out_dir = Path(out_dir)
    if not sources:
        raise ValueError("no source photos given")
    if (out_dir / "synth.json").exists() and not overwrite:
        raise ValueError(f"{out_dir}: already holds a synthetic benchmark (use --overwrite to replace it)")
    for sub in ("input", "reference", "fields"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    items, skipped = [], []
    names = _unique_names(sorted(Path(p) for p in sources), cfg.variants)
    cache: dict[Path, torch.Tensor | None] = {}
    it = names
    if progress:
        from tqdm import tqdm

        it = tqdm(names, desc="synth", unit="img")
    for name, src in it:
        if src not in cache:
            try:
                img = read_image(src).img_srgb
            except ImageReadError as e:
                skipped.append({"path": str(src), "reason": str(e)})
                cache[src] = None
                continue
            if cfg.size:
                img = resize_long_edge(img, cfg.size, upscale=False)
            cache[src] = _quantise(img.clamp(0.0, 1.0))
        ref = cache[src]
        if ref is None:
            continue
        inp, e, err = degrade(ref, cfg, name)
        inp = _quantise(inp)
        write_image(out_dir / "reference" / f"{name}.png", ref, overwrite=True)
        write_image(out_dir / "input" / f"{name}.png", inp, overwrite=True)
        e_np = e[0, 0].cpu().numpy().astype(np.float32)
        np.save(out_dir / "fields" / f"{name}.npy", e_np, allow_pickle=False)
        clipped = float((srgb_to_linear(ref.double()) * torch.exp2(e.double()) > 1.0).any(dim=1).float().mean())
        meta = {
            "name": name,
            "source": src.name,
            "seed": cfg.seed,
            "height": int(ref.shape[-2]),
            "width": int(ref.shape[-1]),
            "parameters": err.to_dict(),
            "ev_min": float(e_np.min()),
            "ev_max": float(e_np.max()),
            "ev_mean": float(e_np.mean()),
            "clipped_fraction": clipped,
        }
        (out_dir / "fields" / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        items.append(
            {"name": name, "source": src.name, "input": f"input/{name}.png", "reference": f"reference/{name}.png", "field": f"fields/{name}.npy"}
        )
    if not items:
        raise ValueError(f"none of the {len(set(p for _, p in names))} source photos could be read")
    manifest = {"format": SYNTH_FORMAT, "version": 1, "config": asdict(cfg), "items": items, "skipped": skipped}
    (out_dir / "synth.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
