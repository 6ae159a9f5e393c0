"""Score retouching methods on a paired folder: a methods x metrics table, JSON, a contact sheet.

``deepexposure eval --paired DIR --methods identity,auto,clahe,fusion,deepexposure --out OUT``

Protocol (what :func:`evaluate_paired` does for every pair, in name order):

1. read the input and the reference with :mod:`deepexposure.io`; scale the input down to
   ``long_edge`` px on the long edge (500, as in both papers; ``None`` = full size) and the
   reference to exactly the input's size;
2. for every method, ``deepexposure.pipeline.retouch_tensor(method, input)`` -- the same code path
   as ``deepexposure retouch`` -- and round the result to 8 bits (what a PNG/JPEG file holds);
3. paired metrics against the reference (:mod:`deepexposure.metrics`): MSE on the 8-bit scale,
   PSNR, SSIM (Gaussian window, per channel averaged), mean CIEDE2000; and the patch statistics of
   Exposure's histogram intersection (16 patches per image, drawn from ``seed``; the same patches
   positions for every method and for the references).

Per-method results are averages over images (PSNR: the mean of per-image PSNR, as scikit-image
and the papers' tables). Histogram intersection compares each method's outputs with the set of
references (1 = same distribution of luminance / contrast / saturation).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batch import Engine
from .data import PairedFolder
from .metrics import HIST_QUANTITIES, collect_statistics, histogram_intersection_from_stats, paired_metrics
from .resize import PAPER_LONG_EDGE, resize_long_edge

__all__ = ["EvalConfig", "EvalReport", "PairScores", "score_pair", "evaluate_paired", "write_report", "format_markdown", "contact_sheet", "METRICS"]

#: paired metrics: name -> (column title, higher is better)
METRICS = {
    "mse": ("MSE (8-bit) ↓", False),
    "psnr": ("PSNR dB ↑", True),
    "ssim": ("SSIM ↑", True),
    "ciede2000": ("ΔE00 ↓", False),
}


@dataclass
class EvalConfig:
    """Options of an evaluation run (all recorded in the JSON)."""

    long_edge: int | None = PAPER_LONG_EDGE
    """evaluation resolution: inputs scaled down to this long edge (None = full size)"""
    sheet: int = 4
    """number of images on the contact sheet (0 = none)"""
    sheet_tile: int = 200
    """long edge of each contact-sheet tile in px"""
    seed: int = 0
    """seed of the histogram-intersection patch sampler"""
    contrast: str = "variance"
    """histogram-intersection contrast: 'variance' (paper text) or 'std' (authors' script)"""
    device: str = "cpu"
    """device the methods run on"""
    quantize: bool = True
    """round outputs to 8 bits before scoring"""


@dataclass
class EvalReport:
    """Results: ``summary[method][metric]`` means, per-image rows, histogram intersections, errors."""

    dataset: str
    methods: list[str]
    config: dict
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    histogram: dict[str, dict[str, float]] = field(default_factory=dict)
    per_image: dict[str, list[dict]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    n_images: int = 0
    skipped: list[dict] = field(default_factory=list)
    sheet_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": "deepexposure-eval", "version": 1, **asdict(self)}


def _quantize(img: torch.Tensor) -> torch.Tensor:
    from .io import tensor_to_uint8, uint8_to_tensor

    return uint8_to_tensor(tensor_to_uint8(img))


def _sheet_indices(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (deterministic)."""
    if k <= 0 or n == 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)} if k > 1 else {0})


def _tile(img: torch.Tensor, size: int) -> np.ndarray:
    from .io import tensor_to_uint8

    return tensor_to_uint8(resize_long_edge(img.float().cpu(), size).clamp(0, 1))


@dataclass
class PairScores:
    """One pair's part of an evaluation (what :func:`score_pair` returns; small enough to send between processes)."""

    index: int
    name: str
    skipped: str | None = None
    """why the pair could not be read (then nothing else is set)"""
    ref_stats: torch.Tensor | None = None
    rows: dict[str, dict] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    tiles: dict[str, np.ndarray] | None = None


def score_pair(payload: tuple, i: int, retry: bool = False) -> PairScores:
    """Read pair ``i`` of ``ds``, run every method on it and score it (step 1-3 of the module docstring).

    ``payload`` is ``(ds, methods, cfg, sheet_indices)``; the per-item function of
    :func:`deepexposure.batch.ordered_map` (``retry`` changes nothing: scoring writes no file).
    """
    from .io import ImageReadError
    from .pipeline import retouch_tensor

    ds, methods, cfg, sheet_idx = payload
    pair = ds.pairs[i]
    res = PairScores(i, pair.name)
    try:
        inp, ref = ds.load(i, cfg.long_edge)
    except (ImageReadError, OSError) as e:
        res.skipped = str(e)
        return res
    if cfg.quantize:
        inp, ref = _quantize(inp), _quantize(ref)
    # the same patch positions for every method and the reference: one seed per image
    img_seed = cfg.seed * 1_000_003 + i
    ref = ref.float()
    device = torch.device(cfg.device)
    res.ref_stats = collect_statistics([ref], seed=img_seed, contrast=cfg.contrast)
    on_sheet = i in sheet_idx
    if on_sheet:
        res.tiles = {"input": _tile(inp, cfg.sheet_tile), "reference": _tile(ref, cfg.sheet_tile)}
    for m, method in methods.items():
        t0 = time.perf_counter()
        try:
            out, _ = retouch_tensor(method, inp.to(device), reference=ref.to(device))
        except Exception as e:  # a failing method must not stop the others
            res.errors[m] = f"{pair.name}: {type(e).__name__}: {e}"
            if res.tiles is not None:
                res.tiles[m] = np.zeros_like(res.tiles["input"])
            continue
        seconds = time.perf_counter() - t0
        out = out.detach().float().cpu().clamp(0, 1)
        if cfg.quantize:
            out = _quantize(out)
        vals = paired_metrics(out, ref)
        res.rows[m] = {"name": pair.name, **{k: float(v[0]) for k, v in vals.items()}, "seconds": seconds}
        res.stats[m] = collect_statistics([out], seed=img_seed, contrast=cfg.contrast)
        if res.tiles is not None:
            res.tiles[m] = _tile(out, cfg.sheet_tile)
    return res


def evaluate_paired(
    dataset: PairedFolder | Path,
    methods: dict[str, Any],
    cfg: EvalConfig = EvalConfig(),
    *,
    progress: bool = True,
    engine: Engine | None = None,
) -> tuple[EvalReport, dict[str, list[np.ndarray]]]:
    """Run every method on every pair and score it.

    Args:
        dataset: a :class:`~deepexposure.data.PairedFolder` or its root folder.
        methods: ``{display name: Method}`` (see :func:`deepexposure.methods.get_method`).
        cfg: options.
        progress: show a tqdm bar.
        engine: where the pairs are scored (:mod:`deepexposure.batch`; default this process). Every
            engine gives the same report, apart from the timings.
    Returns:
        ``(report, tiles)`` where ``tiles[name]`` are uint8 ``(h, w, 3)`` contact-sheet tiles per
        sheet row: ``"input"``, each method, ``"reference"`` (pass them to :func:`contact_sheet`).
    """
    from tqdm import tqdm

    from .batch import Engine, ItemFailed, ordered_map

    ds = dataset if isinstance(dataset, PairedFolder) else PairedFolder(Path(dataset))
    names = list(methods)
    report = EvalReport(dataset=str(ds.root), methods=names, config=asdict(cfg))
    report.skipped = [{"path": str(p), "reason": r} for p, r in ds.unmatched]
    rows: dict[str, list[dict]] = {m: [] for m in names}
    stats: dict[str, list[torch.Tensor]] = {m: [] for m in names + ["reference"]}
    errors: dict[str, list[str]] = {m: [] for m in names}
    sheet_idx = set(_sheet_indices(len(ds), cfg.sheet))
    tiles: dict[str, list[np.ndarray]] = {k: [] for k in ["input", *names, "reference"]}
    n_ok = 0
    bar = tqdm(total=len(ds), desc="eval", unit="img", disable=not progress)
    try:
        for i, res in ordered_map(score_pair, (ds, methods, cfg, sheet_idx), range(len(ds)), engine or Engine(),
                                  on_result=lambda: bar.update(1)):
            if isinstance(res, ItemFailed):
                res = PairScores(i, ds.pairs[i].name, skipped=res.reason)
            if res.skipped is not None:
                report.skipped.append({"path": str(ds.pairs[i].input), "reason": res.skipped})
                continue
            n_ok += 1
            assert res.ref_stats is not None  # set for every pair that was read
            stats["reference"].append(res.ref_stats)
            if res.tiles is not None:
                report.sheet_names.append(res.name)
                for k, t in res.tiles.items():
                    tiles[k].append(t)
            for m in names:
                if m in res.errors:
                    errors[m].append(res.errors[m])
                else:
                    rows[m].append(res.rows[m])
                    stats[m].append(res.stats[m])
    finally:
        bar.close()
    report.n_images = n_ok
    report.per_image = rows
    report.errors = {m: e for m, e in errors.items() if e}
    for m in names:
        if not rows[m]:
            continue
        report.summary[m] = {k: float(np.mean([r[k] for r in rows[m]])) for k in (*METRICS, "seconds")}
        report.summary[m]["n"] = len(rows[m])
        report.histogram[m] = histogram_intersection_from_stats(torch.cat(stats[m]), torch.cat(stats["reference"]))
    return report, tiles


def format_markdown(report: EvalReport) -> str:
    """The methods x metrics table (best value per column in bold) with a one-line caption."""
    ms = [m for m in report.methods if m in report.summary]
    cols = [(k, *METRICS[k]) for k in METRICS] + [(f"hi_{q}", f"HI {q[:3]} ↑", True) for q in HIST_QUANTITIES]

    def value(m: str, key: str) -> float:
        return report.histogram[m][key[3:]] if key.startswith("hi_") else report.summary[m][key]

    best: dict[str, float | None] = {}

    def _is_best(v: float, b: float | None) -> bool:
        return b is not None and math.isclose(v, b, rel_tol=0, abs_tol=1e-12)

    for key, _, higher in cols:
        vals = [value(m, key) for m in ms]
        best[key] = (max if higher else min)(vals) if vals else None
    fmt = {"mse": "{:.2f}", "psnr": "{:.2f}", "ssim": "{:.4f}", "ciede2000": "{:.2f}"}
    head = "| method | " + " | ".join(t for _, t, _ in cols) + " | s/img | n |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    for m in ms:
        cells = []
        for key, _, _ in cols:
            v = value(m, key)
            s = fmt.get(key, "{:.1%}").format(v)
            cells.append(f"**{s}**" if len(ms) > 1 and _is_best(v, best[key]) else s)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {report.summary[m]['seconds']:.3f} | {report.summary[m]['n']} |")
    c = report.config
    res = f"{c['long_edge']} px long edge" if c["long_edge"] else "full size"
    lines.append("")
    lines.append(
        f"{report.n_images} pairs from `{report.dataset}`, evaluated at {res}, outputs rounded to 8 bits; "
        f"SSIM: Gaussian σ=1.5, per channel; ΔE00: CIEDE2000 in CIELAB (D65); HI: histogram intersection "
        f"with the references (16 patches/image, seed {c['seed']}, contrast = 2×{c['contrast']} of luminance)."
    )
    for m, errs in report.errors.items():
        if m not in report.summary and errs and errs[0].startswith("not built:"):
            lines.append(f"- {m}: {errs[0]}")
        else:
            lines.append(f"- {m}: failed on {len(errs)} image(s), e.g. {errs[0]}")
    return "\n".join(lines) + "\n"


def contact_sheet(tiles: dict[str, list[np.ndarray]], row_names: list[str], tile: int = 200) -> np.ndarray:
    """Draw a grid (rows = images; columns = input | methods | reference) with labels.

    Args:
        tiles: ``{column title: [uint8 (h, w, 3) per row]}`` in column order.
        row_names: one label per row.
        tile: cell size in px (tiles are centred in ``tile x tile`` cells).
    Returns:
        ``(H, W, 3)`` uint8 array.
    """
    from PIL import Image, ImageDraw, ImageFont

    cols = list(tiles)
    n = len(row_names)
    head, gap = 18, 4
    W = len(cols) * (tile + gap) + gap
    H = head + n * (tile + head + gap) + gap
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, name in enumerate(cols):
        x0 = gap + c * (tile + gap)
        draw.text((x0 + 2, 3), name[: tile // 6], fill=(0, 0, 0), font=font)
        for r in range(n):
            y0 = head + r * (tile + head + gap)
            if c == 0:
                draw.text((x0 + 2, y0 + 3), row_names[r][: tile // 6], fill=(90, 90, 90), font=font)
            arr = tiles[name][r]
            im = Image.fromarray(arr)
            sheet.paste(im, (x0 + (tile - arr.shape[1]) // 2, y0 + head + (tile - arr.shape[0]) // 2))
    return np.asarray(sheet)


def write_report(report: EvalReport, tiles: dict[str, list[np.ndarray]] | None, out_dir: Path, *, overwrite: bool = False, stem: str = "eval") -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.json`` and (with tiles) ``<stem>_sheet.png`` into ``out_dir``.

    Raises:
        deepexposure.io.WriteError / FileExistsError: an output exists and not ``overwrite``.
    """
    from .io import atomic_write_bytes, uint8_to_tensor, write_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    targets = [md, js] + ([out_dir / f"{stem}_sheet.png"] if tiles and report.sheet_names else [])
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: already exists (use --overwrite)")
    atomic_write_bytes(md, format_markdown(report).encode("utf-8"), overwrite=True)
    atomic_write_bytes(js, (json.dumps(report.to_dict(), indent=1) + "\n").encode("utf-8"), overwrite=True)
    written = [md, js]
    if tiles and report.sheet_names:
        arr = contact_sheet(tiles, report.sheet_names, report.config["sheet_tile"])
        sheet = out_dir / f"{stem}_sheet.png"
        write_image(sheet, uint8_to_tensor(arr), overwrite=overwrite)
        written.append(sheet)
    return written
