"""``deepexposure retouch IN... -o OUTDIR``: retouch files and folders, one recipe per photo.

Folders are mirrored under OUTDIR (``in/a/x.jpg`` -> ``OUTDIR/a/x.jpg``), so outputs never collide;
photos whose outputs would still coincide (``x.jpg`` and ``x.png`` with ``--format png``, or files named
on the command line with the same name) are refused before any work.

--jobs N retouches N photos at a time in worker processes; --engine ray spreads them over a Ray
cluster (--address, or a local one). Outputs, recipes and the order of the report are those of a
one-at-a-time run (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from ..batch import Engine
from ._common import add_engine_options, add_method_options, engine_from_args, error, method_from_args, photo_progress, say


def register(sub) -> None:
    p = sub.add_parser("retouch", help="retouch photos (files and folders)", description=__doc__)
    p.add_argument("inputs", nargs="+", type=Path, help="photos or folders (JPEG, PNG, WebP, TIFF, camera RAW)")
    p.add_argument("-o", "--out-dir", type=Path, required=True, help="output folder (created if needed)")
    add_method_options(p)
    add_output_options(p)
    add_engine_options(p)
    p.set_defaults(func=run)


def add_output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--format", choices=["jpg", "png", "tif", "webp"], default=None, help="output format (default: as the input; RAW -> 16-bit TIFF)")
    g.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    g.add_argument("--skip-existing", action="store_true", help="skip photos whose output image already exists (for re-runs)")
    g.add_argument("--explain", action="store_true", help="also write <name>.explain.jpg: segments, each step, the result")
    g.add_argument("--no-recipe", action="store_true", help="do not write <output>.recipe.json")
    g.add_argument("--max-pixels", type=int, default=None, help="refuse images larger than this many pixels")
    g.add_argument("--quiet", action="store_true", help="no progress bars (the batch, one photo's stages), per-file lines or summary")


def make_out_dir(out_dir: Path) -> bool:
    """Create ``out_dir`` (and parents); print one line and return False if impossible."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        error(f"{out_dir}: exists and is not a folder; give a folder to -o")
        return False
    except OSError as e:
        error(f"{out_dir}: cannot create the output folder ({e.strerror or e})")
        return False
    return True


def _key(p: Path) -> str:
    return os.path.normcase(os.path.abspath(p))


@dataclass(frozen=True)
class RetouchJob:
    """One photo of a batch: where it goes and how (what :func:`retouch_job` needs besides the method)."""

    src: Path
    dst: Path
    overwrite: bool = False
    quality: int = 95
    write_recipe: bool = True
    explain: bool = False
    max_pixels: int | None = None
    skip_existing: bool = False
    fresh: bool = True
    """none of the photo's outputs existed when the batch was planned: a retry may replace what a crashed attempt wrote"""
    stages: bool = False
    """show the photo's stages on a terminal (runs in this process only; workers have no terminal of their own)"""


@dataclass(frozen=True)
class Outcome:
    """What became of one photo: ``status`` 'ok', 'skipped' or 'failed', and its report line."""

    status: str
    line: str


def retouch_job(payload: tuple, job: RetouchJob, retry: bool = False) -> Outcome:
    """Retouch one photo of a batch; ``payload`` is ``(method, protect)``. Expected errors come back as a 'failed' line.

    The per-item function of :func:`deepexposure.batch.ordered_map`, the same in this process, in worker
    processes and on Ray. ``retry``: an earlier attempt's worker died; outputs it may have written are
    replaced when the photo had none before the batch (``job.fresh``), and never otherwise.
    """
    from ..pipeline import retouch_file

    method, protect = payload
    src, dst = job.src, job.dst
    redo = retry and job.fresh
    if job.skip_existing and not redo and (dst.exists() or dst.is_symlink()):
        return Outcome("skipped", f"{src}: skipped, {dst} exists")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with photo_progress(src.name, not job.stages) as progress:  # the stages of one photo, on a terminal
            res = retouch_file(
                method, src, dst,
                overwrite=job.overwrite or redo, quality=job.quality, write_recipe=job.write_recipe,
                explain=job.explain, max_pixels=job.max_pixels, protect=protect, progress=progress,
            )
    except (ValueError, OSError, RuntimeError, MemoryError) as e:
        msg = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
        return Outcome("failed", msg if msg.startswith(str(src)) else f"{src}: {msg}")
    return Outcome("ok", f"{src} -> {res.output}" + (f"  (recipe {res.recipe_path.name})" if res.recipe_path else ""))


def retouch_many(method, files: list[Path], out_dir: Path, args, protect: list[Path],
                 rels: list[Path | None] | None = None, engine: Engine | None = None) -> tuple[int, int]:
    """Retouch each file; per-file errors are printed as one line and do not stop the batch.

    ``rels[i]`` is ``files[i]`` relative to its input folder (mirrored under ``out_dir``), or None for a
    file named directly. ``engine`` (default: in this process) runs the photos in parallel
    (:mod:`deepexposure.batch`); the lines are printed in input order whatever the engine.
    Returns ``(ok, failed)``; skipped photos (``--skip-existing``) count in neither.
    """
    from tqdm import tqdm

    from ..batch import ItemFailed, ordered_map
    from ..pipeline import output_path_for, output_paths

    if not 1 <= args.quality <= 100:
        error(f"--quality must be in 1..100, got {args.quality}")
        return 0, len(files)
    if args.max_pixels is not None and args.max_pixels < 1:
        error(f"--max-pixels must be a positive number of pixels, got {args.max_pixels}")
        return 0, len(files)
    skip_existing = getattr(args, "skip_existing", False)
    if skip_existing and args.overwrite:
        error("--skip-existing and --overwrite contradict each other; give one")
        return 0, len(files)
    if not make_out_dir(out_dir):
        return 0, len(files)
    rels = rels or [None] * len(files)
    quiet = args.quiet
    ok = failed = skipped = 0
    claimed: dict[str, Path] = {}  # every output path of the batch -> the photo that writes it
    jobs: list[RetouchJob] = []
    parallel = engine is not None and (engine.kind == "ray" or engine.workers > 1)
    for src, rel in zip(files, rels):
        dst = output_path_for(src, out_dir, args.format, rel)
        paths = output_paths(dst, write_recipe=not args.no_recipe, explain=args.explain)
        clash = next((claimed[_key(p)] for p in paths if _key(p) in claimed), None)
        if clash is not None:
            error(f"{src}: its outputs would collide with those of {clash}; retouch one of them into another -o folder")
            failed += 1
            continue
        claimed.update({_key(p): src for p in paths})
        fresh = parallel and not any(p.exists() or p.is_symlink() for p in paths)  # only retries (parallel engines) read it
        jobs.append(RetouchJob(src, dst, overwrite=args.overwrite, quality=args.quality, write_recipe=not args.no_recipe,
                               explain=args.explain, max_pixels=args.max_pixels, skip_existing=skip_existing, fresh=fresh,
                               stages=not (quiet or parallel)))
    bar = tqdm(total=len(jobs), desc="retouch", unit="photo", disable=quiet or len(jobs) < 2)
    try:
        for job, res in ordered_map(retouch_job, (method, protect), jobs, engine or Engine(), on_result=lambda: bar.update(1)):
            if isinstance(res, ItemFailed):
                error(f"{job.src}: {res.reason}")
                failed += 1
            elif res.status == "failed":
                error(res.line)
                failed += 1
            elif res.status == "skipped":
                skipped += 1
                if not quiet:
                    say(res.line)
            else:
                ok += 1
                if not quiet:
                    say(res.line)
    finally:
        bar.close()
    if skipped and not quiet:
        say(f"{skipped} skipped (output exists)")
    return ok, failed


def run(args) -> int:
    from ..io import ImageReadError, list_images

    method = method_from_args(args)
    engine = engine_from_args(args)
    files: list[Path] = []
    rels: list[Path | None] = []
    missing = 0
    for p in args.inputs:
        if not p.exists():
            error(f"{p}: no such file or folder")
            missing += 1
            continue
        try:
            found = list_images([p])
        except ImageReadError as e:
            error(e)
            missing += 1
            continue
        if not found:
            error(f"{p}: no photos found")
            missing += 1
        files += found
        rels += [f.relative_to(p) if p.is_dir() else None for f in found]
    ok, failed = retouch_many(method, files, args.out_dir, args, protect=files, rels=rels, engine=engine)
    failed += missing
    if not args.quiet:
        print(f"{ok} retouched, {failed} failed")
    return 1 if failed else 0
