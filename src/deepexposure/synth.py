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
from collections.abc import Sequence
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
    "cosine_field",
    "KINDS",
    "DEFAULT_KINDS",
    "parse_kinds",
    "KindRanges",
    "Degradation",
    "sample_degradation",
    "apply_degradation",
    "expose_lin",
    "backlit_field",
    "crush_shadows",
    "clip_highlights",
    "contrast_lin",
    "wb_gains",
    "white_balance_lin",
    "exposure_field_lin",
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
    local = cosine_field(err.components, err.amplitude, h, w)
    y = luminance(srgb_to_linear(ref_srgb.detach().cpu().double()), LUM_WEIGHTS_REC709)[0, 0]
    tone = err.beta * torch.tanh((torch.log2(y + _EPS) - math.log2(_MID_GREY)) / 2)
    e = err.global_ev + local + tone
    return e.float().view(1, 1, h, w).to(ref_srgb.device)


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in units of the long edge: ``u (1, w)``, ``v (h, 1)``, float64."""
    L = max(h, w)
    v = ((torch.arange(h, dtype=torch.float64) + 0.5) / L).view(h, 1)
    u = ((torch.arange(w, dtype=torch.float64) + 0.5) / L).view(1, w)
    return u, v


def cosine_field(components: list[dict], amplitude: float, h: int, w: int) -> torch.Tensor:
    """The smooth local field ``l(x) = A sum_k c_k cos(2 pi (f_k . (u, v)) + phi_k) / sum_k |c_k|``.

    Args:
        components: ``[{"c", "fx", "fy", "phase"}, ...]`` (frequencies in cycles per long edge).
        amplitude: ``A``; ``|l| <= A``.
        h, w: the size in px; ``(u, v)`` are pixel centres in units of the long edge.
    Returns:
        ``(h, w)`` float64, stops (zeros when there are no components).
    """
    u, v = _grid(h, w)
    local = torch.zeros(h, w, dtype=torch.float64)
    norm = sum(abs(c["c"]) for c in components)
    for c in components:
        local = local + c["c"] * torch.cos(2 * math.pi * (c["fx"] * u + c["fy"] * v) + c["phase"])
    if norm > 0:
        local = amplitude * local / norm
    return local


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
            except ImageReadError as exc:
                skipped.append({"path": str(src), "reason": str(exc)})
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


# ----------------------------------------------------------------------------------------------
# A wider family of degradations (training data; the benchmark above keeps the "exposure" model)
#
# Every kind is a pure function of a linear-light image ``X`` (``(B, 3, H, W)``, >= 0; a photo's
# ``srgb_to_linear`` in [0, 1], or scene radiance from an HDR map that may exceed 1) and a few
# numbers. The numbers are drawn by :func:`sample_degradation` and recorded in a
# :class:`Degradation`, so ``apply_degradation(X, d)`` reproduces a pair exactly. Clipping to the
# displayable range (the camera response) happens afterwards, in the caller: ``min(1, .)`` for
# photos, :func:`deepexposure.hdr.shoulder` for HDR renders.

#: The kinds of :func:`sample_degradation`, in a fixed order (the draw picks one by index).
KINDS = ("exposure", "global", "local", "backlit", "crush", "clip", "contrast", "white_balance")
#: The default family: the benchmark's model only.
DEFAULT_KINDS = ("exposure",)


def parse_kinds(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"all"`` -> :data:`KINDS`; ``"default"``/None -> :data:`DEFAULT_KINDS`; ``"global,clip"`` -> a tuple.

    Raises:
        ValueError: an unknown kind (the message lists the known ones).
    """
    if text is None:
        return DEFAULT_KINDS
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    items = [t for t in items if t]
    out: list[str] = []
    for t in items:
        expand = KINDS if t == "all" else DEFAULT_KINDS if t == "default" else (t,)
        for k in expand:
            if k not in KINDS:
                raise ValueError(f"unknown degradation kind {k!r} (known: {', '.join(KINDS)}, all, default)")
            if k not in out:
                out.append(k)
    if not out:
        raise ValueError("no degradation kinds given")
    return tuple(out)


def _per_batch(p, x: torch.Tensor) -> torch.Tensor:
    """A float or a ``(B,)`` tensor as ``(B or 1, 1, 1, 1)`` in ``x``'s dtype/device."""
    return torch.as_tensor(p, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)


def _lum_lin(x: torch.Tensor) -> torch.Tensor:
    return luminance(x, LUM_WEIGHTS_REC709)


def expose_lin(img_lin: torch.Tensor, ev) -> torch.Tensor:
    """``X * 2^E``, same factor for R, G, B; ``E`` a float, ``(B,)``, or a field ``(B or 1, 1, H, W)`` (stops).

    No clipping (the caller's camera response clips). Kinds ``global``, ``local``, ``backlit`` and
    ``exposure`` are this with different ``E``.
    """
    e = torch.as_tensor(ev, dtype=img_lin.dtype, device=img_lin.device)
    if e.dim() < 4:
        e = e.reshape(-1, 1, 1, 1)
    return img_lin * torch.exp2(e)


def backlit_field(h: int, w: int, cx: float, cy: float, sigma: float, subject_ev: float, background_ev: float) -> torch.Tensor:
    """A backlit scene's EV field: bright background, dark subject in a soft blob.

    ``m(x) = exp(-((u - cx)^2 + (v - cy)^2) / (2 sigma^2))`` with ``(u, v)`` pixel centres in units
    of the long edge (as :func:`cosine_field`) and ``(cx, cy)`` the subject's centre in the same
    units; ``E(x) = background_ev (1 - m) + subject_ev m``.

    Returns:
        ``(h, w)`` float64, stops.
    """
    u, v = _grid(h, w)
    m = torch.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2.0 * sigma**2))
    return background_ev * (1.0 - m) + subject_ev * m


def crush_shadows(img_lin: torch.Tensor, black) -> torch.Tensor:
    """Crushed shadows: ``max(0, X - t) / (1 - t)`` per channel, ``t`` = the black point (linear).

    Everything at or below ``t`` becomes 0 (detail lost); 1 stays 1. ``t`` a float or ``(B,)``, in [0, 1).
    """
    t = _per_batch(black, img_lin)
    return (img_lin - t).clamp(min=0.0) / (1.0 - t)


def clip_highlights(img_lin: torch.Tensor, gain) -> torch.Tensor:
    """Clipped highlights: ``min(1, k X)`` per channel, ``k`` = gain (>= 0; float or ``(B,)``).

    :func:`sample_degradation` picks ``k = 1 / quantile(max_c X, 1 - q)`` so a fraction ``q`` of
    the pixels has at least one clipped channel (hue shifts where only some channels clip).
    """
    return (img_lin * _per_batch(gain, img_lin)).clamp(max=1.0)


def contrast_lin(img_lin: torch.Tensor, c, pivot: float = _MID_GREY) -> torch.Tensor:
    """Contrast in log luminance about ``pivot``: ``X (( Y + eps) / pivot)^(c - 1)``, ``eps = 1e-3``.

    ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` (linear). The new luminance is about
    ``pivot (Y / pivot)^c``: ``c > 1`` steeper (darker shadows, brighter highlights), ``c < 1``
    flatter; chromaticity is kept (same factor for R, G, B); ``pivot`` is a fixed point (up to eps).
    ``c`` a float or ``(B,)``.
    """
    y = _lum_lin(img_lin)
    return img_lin * ((y + _EPS) / pivot) ** (_per_batch(c, img_lin) - 1.0)


def wb_gains(temperature: float, tint: float) -> tuple[float, float, float]:
    """White-balance gains ``w = (2^T, 2^G, 2^-T) / n``, ``n = 0.2126 2^T + 0.7152 2^G + 0.0722 2^-T``.

    ``T`` (temperature, stops): > 0 warmer (red up, blue down); ``G`` (tint, stops): > 0 greener.
    The normalisation keeps the luminance of a grey.
    """
    r, g, b = 2.0**temperature, 2.0**tint, 2.0**-temperature
    n = LUM_WEIGHTS_REC709[0] * r + LUM_WEIGHTS_REC709[1] * g + LUM_WEIGHTS_REC709[2] * b
    return r / n, g / n, b / n


def white_balance_lin(img_lin: torch.Tensor, gains) -> torch.Tensor:
    """A white-balance shift: ``(w_r R, w_g G, w_b B)`` in linear light; ``gains`` ``(3,)`` or ``(B, 3)``."""
    g = torch.as_tensor(gains, dtype=img_lin.dtype, device=img_lin.device).reshape(-1, 3, 1, 1)
    return img_lin * g


@dataclass
class Degradation:
    """One sampled degradation: its ``kind`` (one of :data:`KINDS`) and its parameters."""

    kind: str
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "params": self.params}


@dataclass
class KindRanges:
    """Parameter ranges of the kinds (uniform unless said otherwise)."""

    global_ev: tuple[float, float] = (-3.0, 3.0)
    """global: EV offset g"""
    local_ev: tuple[float, float] = (0.5, 2.0)
    """local: amplitude A of the cosine field (4 components, 0.25-1 cycles per long edge)"""
    backlit_subject_ev: tuple[float, float] = (-3.0, -1.0)
    """backlit: EV of the subject blob"""
    backlit_background_ev: tuple[float, float] = (0.5, 2.0)
    """backlit: EV of the background"""
    backlit_sigma: tuple[float, float] = (0.12, 0.3)
    """backlit: blob radius sigma, units of the long edge (centre uniform in the middle 40 %)"""
    crush_black: tuple[float, float] = (0.01, 0.05)
    """crush: black point t, linear (sRGB 0.10-0.25)"""
    clip_fraction: tuple[float, float] = (0.05, 0.3)
    """clip: fraction q of pixels that clip (gain capped at 2^4)"""
    contrast_log2: tuple[float, float] = (-0.8, 0.6)
    """contrast: log2 of the exponent c (c in 0.57-1.52)"""
    wb_temperature: tuple[float, float] = (-0.6, 0.6)
    """white_balance: temperature T, stops"""
    wb_tint: tuple[float, float] = (-0.25, 0.25)
    """white_balance: tint G, stops"""


def _components(generator: torch.Generator, n: int, freq: tuple[float, float]) -> list[dict]:
    comps = []
    for _ in range(n):
        c = float(torch.randn((), generator=generator, dtype=torch.float64))
        f = _uniform(generator, *freq)
        theta = _uniform(generator, 0.0, 2 * math.pi)
        phase = _uniform(generator, 0.0, 2 * math.pi)
        comps.append({"c": c, "fx": f * math.cos(theta), "fy": f * math.sin(theta), "phase": phase})
    return comps


def sample_degradation(
    kinds: tuple[str, ...],
    generator: torch.Generator,
    img_lin: torch.Tensor | None = None,
    *,
    ranges: KindRanges = KindRanges(),
    exposure: SynthConfig = SynthConfig(),
) -> Degradation:
    """Pick a kind uniformly from ``kinds`` and draw its parameters from ``generator``.

    ``img_lin`` (``(1, 3, H, W)``) is needed by ``clip`` (its gain depends on the image's
    highlights) and, for the subject centre of ``backlit``, its aspect ratio. ``exposure`` uses
    :func:`sample_exposure_error` with ``exposure`` (the benchmark's model).
    """
    kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))] if len(kinds) > 1 else kinds[0]
    r = ranges
    if kind == "exposure":
        return Degradation(kind, sample_exposure_error(exposure, generator).to_dict())
    if kind == "global":
        return Degradation(kind, {"ev": _uniform(generator, *r.global_ev)})
    if kind == "local":
        amp = _uniform(generator, *r.local_ev)
        return Degradation(kind, {"amplitude": amp, "components": _components(generator, 4, (0.25, 1.0))})
    if kind == "backlit":
        h, w = (1, 1) if img_lin is None else img_lin.shape[-2:]
        L = max(h, w)
        cx = (0.3 + 0.4 * _uniform(generator, 0.0, 1.0)) * w / L
        cy = (0.3 + 0.4 * _uniform(generator, 0.0, 1.0)) * h / L
        return Degradation(kind, {
            "cx": cx, "cy": cy, "sigma": _uniform(generator, *r.backlit_sigma),
            "subject_ev": _uniform(generator, *r.backlit_subject_ev),
            "background_ev": _uniform(generator, *r.backlit_background_ev),
        })
    if kind == "crush":
        return Degradation(kind, {"black": _uniform(generator, *r.crush_black)})
    if kind == "clip":
        q = _uniform(generator, *r.clip_fraction)
        if img_lin is None:
            raise ValueError("kind 'clip' needs the image to choose its gain")
        peak = float(torch.quantile(img_lin.detach().amax(dim=1).flatten().double().cpu(), 1.0 - q))
        gain = min(16.0, 1.0 / peak) if peak > 0 else 16.0
        return Degradation(kind, {"fraction": q, "gain": gain})
    if kind == "contrast":
        return Degradation(kind, {"c": 2.0 ** _uniform(generator, *r.contrast_log2)})
    if kind == "white_balance":
        t, g = _uniform(generator, *r.wb_temperature), _uniform(generator, *r.wb_tint)
        return Degradation(kind, {"temperature": t, "tint": g, "gains": list(wb_gains(t, g))})
    raise ValueError(f"unknown degradation kind {kind!r} (known: {', '.join(KINDS)})")


def exposure_field_lin(err: ExposureError, img_lin: torch.Tensor) -> torch.Tensor:
    """The benchmark's field ``E = g + l + s`` computed from a linear image (``s`` from its ``Y``).

    Same formula as :func:`ev_field` (which takes the sRGB reference). Returns ``(1, 1, H, W)`` float64.
    """
    h, w = img_lin.shape[-2:]
    y = _lum_lin(img_lin.detach().double())[0, 0]
    tone = err.beta * torch.tanh((torch.log2(y + _EPS) - math.log2(_MID_GREY)) / 2)
    e = err.global_ev + cosine_field(err.components, err.amplitude, h, w).to(y.device) + tone
    return e.view(1, 1, h, w)


def apply_degradation(img_lin: torch.Tensor, d: Degradation) -> torch.Tensor:
    """Apply a recorded :class:`Degradation` to ``img_lin`` (``(1, 3, H, W)``, linear, >= 0).

    Returns the degraded linear image, not clipped (formulas in each kind's function). Spatial
    fields use pixel centres in units of the long edge, so they do not depend on the resolution.
    """
    p, k = d.params, d.kind
    h, w = img_lin.shape[-2:]
    if k == "exposure":
        err = ExposureError(**p)
        return expose_lin(img_lin, exposure_field_lin(err, img_lin).to(img_lin))
    if k == "global":
        return expose_lin(img_lin, p["ev"])
    if k == "local":
        return expose_lin(img_lin, cosine_field(p["components"], p["amplitude"], h, w).to(img_lin)[None, None])
    if k == "backlit":
        f = backlit_field(h, w, p["cx"], p["cy"], p["sigma"], p["subject_ev"], p["background_ev"])
        return expose_lin(img_lin, f.to(img_lin)[None, None])
    if k == "crush":
        return crush_shadows(img_lin, p["black"])
    if k == "clip":
        return clip_highlights(img_lin, p["gain"])
    if k == "contrast":
        return contrast_lin(img_lin, p["c"])
    if k == "white_balance":
        return white_balance_lin(img_lin, p["gains"])
    raise ValueError(f"unknown degradation kind {k!r} (known: {', '.join(KINDS)})")
