"""An endless, seeded stream of training pairs from photos and HDR maps: :class:`SyntheticPairs`.

Each pair is drawn from one source:

- **a photo** (assumed well exposed): a random crop (:func:`deepexposure.augment.augment`: side
  ``scale`` x the short side, square for training batches, aspect near the photo's for written
  folders) and a horizontal flip with probability ``flip_p``, cut from a copy decoded once at
  ``work_size`` px on the long edge (the :mod:`deepexposure.data` cache when ``cache_dir`` is
  given), in linear light ``X``. Reference ``linear_to_srgb(X)``, input
  ``linear_to_srgb(min(1, D(X)))`` with ``D`` a degradation of :mod:`deepexposure.synth`
  (one of ``kinds``, drawn per pair);
- **an HDR environment map** (:mod:`deepexposure.hdr`): a random perspective view (yaw, pitch,
  field of view), rendered at twice the size and box-averaged, scaled to the key exposure
  ``X = k V``; reference ``linear_to_srgb(T(X))``, input ``linear_to_srgb(T(D(X)))`` with ``T``
  the camera response :func:`deepexposure.hdr.shoulder`.

``batch(step, n)`` is a pure function of ``(seed, step, n)`` (and the sources, kinds and options):
a ``torch.Generator`` seeded from ``sha256("pairs/seed/step")`` draws, per pair, the source, the
crop or view, the flip, the kind and its parameters. A resumed run that asks for the same steps
gets the same batches; different steps give fresh crops and parameters (continuous ranges, so in
practice no pair repeats). :meth:`SyntheticPairs.records` returns what was drawn, and
:meth:`SyntheticPairs.render` rebuilds a pair from such a record.

:func:`write_pairs` writes a finite sample as a paired folder (``input/``, ``reference/``,
``params/<name>.json``, ``pairs.json``) for ``deepexposure synth --augment/--hdr/--kinds``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from .augment import CropBox, crop, random_crop_box
from .color import linear_to_srgb, srgb_to_linear
from .resize import long_edge_shape
from .synth import Degradation, KindRanges, SynthConfig, apply_degradation, parse_kinds, sample_degradation

__all__ = ["SyntheticPairs", "write_pairs", "PAIRS_FORMAT", "seeded_generator"]

PAIRS_FORMAT = "deepexposure-synth-pairs"


def seeded_generator(*parts) -> torch.Generator:
    """A CPU generator seeded from ``sha256("/".join(parts))`` (63 bits)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def _to_srgb(x_lin: torch.Tensor) -> torch.Tensor:
    return linear_to_srgb(x_lin.clamp(0.0, 1.0)).clamp(0.0, 1.0)


class SyntheticPairs:
    """Seeded (input, reference) pairs from photos and optional HDR maps (module docstring).

    Args:
        photos: photo files (unreadable ones are skipped and listed in :attr:`skipped`).
        hdr_dir: folder of ``*.exr`` equirectangular maps (needs the ``OpenEXR`` package), or None.
        size: side of the square training pairs (px).
        seed: the stream's seed.
        kinds: degradation kinds (:data:`deepexposure.synth.KINDS`, a comma list, ``"all"``);
            default: the benchmark's exposure model.
        cache_dir: :mod:`deepexposure.data` cache folder for the working copies (16-bit PNG).
        work_size: long edge of the decoded working copies; default ``clip(4 size, 256, 1024)``.
        hdr_fraction: probability that a pair comes from an HDR map (default 0.25 when there are
            maps and photos; 1 with maps only).
        scale: range of the crop side as a fraction of the photo's short side.
        flip_p: probability of a horizontal flip.
        ranges, exposure: parameter ranges of the kinds and of the ``exposure`` model.
    Attributes:
        sources: ``[(name, "photo" | "hdr", path), ...]``, photos first.
        skipped: ``[(path, reason), ...]``.
    Raises:
        ValueError: no usable source, or a bad option (one line).
    """

    def __init__(
        self,
        photos: Sequence[Path] = (),
        hdr_dir: Path | None = None,
        size: int = 64,
        seed: int = 0,
        kinds: str | Sequence[str] | None = None,
        cache_dir: Path | None = None,
        *,
        work_size: int | None = None,
        hdr_fraction: float | None = None,
        hdr_paths: Sequence[Path] | None = None,
        scale: tuple[float, float] = (0.35, 1.0),
        flip_p: float = 0.5,
        ranges: KindRanges = KindRanges(),
        exposure: SynthConfig = SynthConfig(),
        progress: bool = False,
    ) -> None:
        from .data import load_image_at
        from .hdr import HDRReadError, list_hdr, read_exr, wrap_equirect
        from .io import ImageReadError

        if size < 8:
            raise ValueError(f"size must be at least 8 px, got {size}")
        self.size, self.seed = int(size), int(seed)
        self.kinds = parse_kinds(kinds)
        self.work_size = int(work_size or min(1024, max(256, 4 * self.size)))
        self.scale, self.flip_p, self.ranges, self.exposure = (float(scale[0]), float(scale[1])), float(flip_p), ranges, exposure
        self.sources: list[tuple[str, str, Path]] = []
        self.skipped: list[tuple[Path, str]] = []
        self._photos: list[torch.Tensor] = []  # (1, 3, h, w) linear float32
        self._envs: list[torch.Tensor] = []  # (1, 3, H, W + 2) linear float32, wrapped (hdr.wrap_equirect)
        it = list(photos)
        if progress and it:
            from tqdm import tqdm

            it = tqdm(it, desc="photos", unit="img")
        for p in it:
            try:
                img = load_image_at(Path(p), self.work_size, cache_dir)
            except (ImageReadError, OSError) as e:
                self.skipped.append((Path(p), str(e)))
                continue
            self._photos.append(srgb_to_linear(img.clamp(0.0, 1.0)).float().contiguous())
            self.sources.append((Path(p).stem, "photo", Path(p)))
        hdr_files = list(hdr_paths or [])
        if hdr_dir is not None:
            hdr_files += list_hdr(hdr_dir)
        for p in hdr_files:
            try:
                env = read_exr(p)
            except HDRReadError as e:
                if "OpenEXR package" in str(e):
                    raise ValueError(str(e)) from None
                self.skipped.append((Path(p), str(e)))
                continue
            self._envs.append(wrap_equirect(env.float()))
            self.sources.append((Path(p).stem, "hdr", Path(p)))
        if not self.sources:
            raise ValueError("no usable photos or HDR maps" + (f" ({len(self.skipped)} unreadable)" if self.skipped else ""))
        if hdr_fraction is None:
            hdr_fraction = 0.0 if not self._envs else 1.0 if not self._photos else 0.25
        if not (0.0 <= hdr_fraction <= 1.0):
            raise ValueError(f"hdr_fraction must be in [0, 1], got {hdr_fraction}")
        if (hdr_fraction > 0 and not self._envs) or (hdr_fraction < 1 and not self._photos):
            hdr_fraction = 1.0 if self._envs else 0.0
        self.hdr_fraction = float(hdr_fraction)

    # -- drawing ---------------------------------------------------------------------------------

    @property
    def n_photos(self) -> int:
        return len(self._photos)

    @property
    def n_hdr(self) -> int:
        return len(self._envs)

    def _pick_source(self, g: torch.Generator) -> int:
        u = float(torch.rand((), generator=g, dtype=torch.float64))
        if u < self.hdr_fraction:
            return self.n_photos + int(torch.randint(self.n_hdr, (1,), generator=g))
        return int(torch.randint(self.n_photos, (1,), generator=g))

    def draw(self, g: torch.Generator, source: int | None = None, *, shape: str = "square") -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Draw one pair from ``g`` (source drawn too when None).

        Args:
            shape: ``"square"`` (``size x size``, training), ``"crop"`` (crop with aspect within
                15 % of the photo's, long edge ``size``; HDR views 4:3), ``"full"`` (the whole
                photo at long edge ``size``, no flip; HDR views 4:3).
        Returns:
            ``(input_srgb, reference_srgb, record)``, each image ``(1, 3, h, w)`` in [0, 1];
            ``record`` is JSON-able and :meth:`render` rebuilds the pair from it.
        """
        if source is None:
            source = self._pick_source(g)
        name, typ, _ = self.sources[source]
        rec: dict = {"source": name, "type": typ, "index": source, "shape": shape}
        if typ == "photo":
            img = self._photos[source]
            h, w = img.shape[-2:]
            if shape == "full":
                box = CropBox(0, 0, h, w, False)
            else:
                r = w / h
                aspect = (1.0, 1.0) if shape == "square" else (r / 1.15, r * 1.15)
                box = self._box(g, h, w, aspect)
            rec["box"] = box.to_dict()  # in pixels of the working copy (long edge <= work_size)
            rec["work_size"] = self.work_size
            x = self._photo_crop(source, box, shape)
        else:
            from .hdr import sample_view

            view = sample_view(g)
            rec["view"] = view.to_dict()
            x, gain = self._hdr_view(source, view, shape)
            rec["exposure_gain"] = gain
        d = sample_degradation(self.kinds, g, x, ranges=self.ranges, exposure=self.exposure)
        rec["degradation"] = d.to_dict()
        inp, ref = self._finish(x, d, typ)
        return inp, ref, rec

    def _box(self, g: torch.Generator, h: int, w: int, aspect: tuple[float, float]) -> CropBox:
        box = random_crop_box(h, w, g, scale=self.scale, aspect=aspect)
        flip = bool(torch.rand((), generator=g, dtype=torch.float64) < self.flip_p)
        return CropBox(box.y, box.x, box.h, box.w, flip)

    def _out_size(self, h: int, w: int, shape: str) -> tuple[int, int]:
        if shape == "square":
            return self.size, self.size
        if shape == "full" and max(h, w) <= self.size:
            return h, w
        return long_edge_shape(h, w, self.size)

    def _photo_crop(self, source: int, box: CropBox, shape: str) -> torch.Tensor:
        return crop(self._photos[source], box, self._out_size(box.h, box.w, shape)).clamp(0.0, 1.0)

    def _hdr_view(self, source: int, view, shape: str) -> tuple[torch.Tensor, float]:
        from .hdr import equirect_to_perspective, key_exposure

        h, w = (self.size, self.size) if shape == "square" else (round(self.size * 3 / 4), self.size)
        v = equirect_to_perspective(self._envs[source - self.n_photos], view, (2 * h, 2 * w), wrapped=True)
        v = F.avg_pool2d(v, 2)
        gain = key_exposure(v)
        return v * gain, gain

    def _finish(self, x: torch.Tensor, d: Degradation, typ: str) -> tuple[torch.Tensor, torch.Tensor]:
        y = apply_degradation(x, d)
        if typ == "hdr":
            from .hdr import shoulder

            return _to_srgb(shoulder(y)), _to_srgb(shoulder(x))
        return _to_srgb(y), _to_srgb(x)

    def render(self, rec: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Rebuild ``(input_srgb, reference_srgb)`` from a record of :meth:`draw` / :meth:`records`."""
        from .hdr import View

        source, shape = int(rec["index"]), rec.get("shape", "square")
        typ = self.sources[source][1]
        if typ == "photo":
            x = self._photo_crop(source, CropBox(**rec["box"]), shape)
        else:
            v = View(**rec["view"])
            x, _ = self._hdr_view(source, v, shape)
        d = Degradation(rec["degradation"]["kind"], rec["degradation"]["params"])
        return self._finish(x, d, typ)

    # -- batches ---------------------------------------------------------------------------------

    def _batch(self, step: int, n: int):
        if n < 1:
            raise ValueError(f"batch size must be at least 1, got {n}")
        g = seeded_generator("pairs", self.seed, int(step))
        return [self.draw(g) for _ in range(n)]

    def batch(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` of ``n`` pairs: ``(inputs, references)``, each ``(n, 3, size, size)`` float32 sRGB in [0, 1].

        A pure function of ``(seed, step, n)``: the same arguments give the same tensors.
        """
        items = self._batch(step, n)
        return torch.cat([i for i, _, _ in items]), torch.cat([r for _, r, _ in items])

    def records(self, step: int, n: int) -> list[dict]:
        """What :meth:`batch` ``(step, n)`` drew, one JSON-able record per pair."""
        return [rec for _, _, rec in self._batch(step, n)]

    def __repr__(self) -> str:
        return (f"SyntheticPairs({self.n_photos} photos, {self.n_hdr} HDR maps, size={self.size}, seed={self.seed}, "
                f"kinds={','.join(self.kinds)}, hdr_fraction={self.hdr_fraction})")


def write_pairs(
    ds: SyntheticPairs,
    out_dir: Path,
    *,
    per_photo: int = 1,
    views: int = 1,
    shape: str = "crop",
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a finite, per-source sample of ``ds`` as a paired folder::

        out_dir/reference/<name>.png   8-bit sRGB
        out_dir/input/<name>.png       8-bit sRGB
        out_dir/params/<name>.json     the record (source, crop box or view, kind and parameters)
        out_dir/pairs.json             the configuration and the list of items

    Photos give ``per_photo`` pairs each (``<stem>_a<k>``; with ``shape="full"`` the whole frame,
    ``<stem>`` or ``<stem>_v<k>``), HDR maps ``views`` each (``<stem>_view<k>``). Pair ``name`` is
    drawn from a generator seeded with ``(seed, name)``, so adding sources does not change the
    others and the same seed gives the same bytes. Images go through :func:`deepexposure.io.write_image`.

    Returns:
        The manifest written to ``pairs.json``.
    Raises:
        ValueError: ``out_dir`` already holds pairs and not ``overwrite``; nothing to write.
    """
    from .io import atomic_write_bytes, write_image

    out_dir = Path(out_dir)
    if ((out_dir / "pairs.json").exists() or (out_dir / "synth.json").exists()) and not overwrite:
        raise ValueError(f"{out_dir}: already holds a synthetic benchmark (use --overwrite to replace it)")
    jobs: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for i, (stem, typ, _) in enumerate(ds.sources):
        seen[stem] = seen.get(stem, 0) + 1
        if seen[stem] > 1:
            stem = f"{stem}_{seen[stem]}"
        if typ == "photo":
            if shape == "full":
                jobs += [(stem if per_photo == 1 else f"{stem}_v{k}", i) for k in range(per_photo)]
            else:
                jobs += [(f"{stem}_a{k}", i) for k in range(per_photo)]
        else:
            jobs += [(f"{stem}_view{k}", i) for k in range(views)]
    if not jobs:
        raise ValueError("nothing to write (no photos or views asked for)")
    for sub in ("input", "reference", "params"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    it = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="pairs", unit="pair")
    items = []
    for name, src in it:
        inp, ref, rec = ds.draw(seeded_generator("pair", ds.seed, name), src, shape=shape)
        write_image(out_dir / "reference" / f"{name}.png", ref, overwrite=True)
        write_image(out_dir / "input" / f"{name}.png", inp, overwrite=True)
        rec = {"name": name, "seed": ds.seed, "height": int(ref.shape[-2]), "width": int(ref.shape[-1]), **rec}
        atomic_write_bytes(out_dir / "params" / f"{name}.json", _json(rec), overwrite=True)
        items.append({"name": name, "source": ds.sources[src][2].name, "kind": rec["degradation"]["kind"],
                      "input": f"input/{name}.png", "reference": f"reference/{name}.png", "params": f"params/{name}.json"})
    manifest = {
        "format": PAIRS_FORMAT, "version": 1, "seed": ds.seed, "size": ds.size, "work_size": ds.work_size,
        "kinds": list(ds.kinds), "shape": shape, "per_photo": per_photo, "views": views,
        "scale": list(ds.scale), "flip_p": ds.flip_p, "items": items,
        "skipped": [{"path": str(p), "reason": r} for p, r in ds.skipped],
    }
    atomic_write_bytes(out_dir / "pairs.json", _json(manifest), overwrite=True)
    return manifest
