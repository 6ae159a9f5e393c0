"""``deepexposure retouch IN... -o OUTDIR``: retouch files and folders, one recipe per photo."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_method_options, error, method_from_args


def register(sub) -> None:
    p = sub.add_parser("retouch", help="retouch photos (files and folders)", description=__doc__)
    p.add_argument("inputs", nargs="+", type=Path, help="photos or folders (JPEG, PNG, WebP, TIFF, camera RAW)")
    p.add_argument("-o", "--out-dir", type=Path, required=True, help="output folder (created if needed)")
    add_method_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def add_output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--format", choices=["jpg", "png", "tif", "webp"], default=None, help="output format (default: as the input; RAW -> 16-bit TIFF)")
    g.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    g.add_argument("--explain", action="store_true", help="also write <name>.explain.jpg: segments, each step, the result")
    g.add_argument("--no-recipe", action="store_true", help="do not write <output>.recipe.json")
    g.add_argument("--max-pixels", type=int, default=None, help="refuse images larger than this many pixels")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def retouch_many(method, files: list[Path], out_dir: Path, args, protect: list[Path]) -> tuple[int, int]:
    """Retouch each file; per-file errors are printed as one line and do not stop the batch."""
    from tqdm import tqdm

    from ..pipeline import output_path_for, retouch_file

    ok = failed = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in tqdm(files, desc="retouch", unit="photo", disable=args.quiet or len(files) < 2):
        dst = output_path_for(src, out_dir, args.format)
        try:
            res = retouch_file(
                method, src, dst,
                overwrite=args.overwrite, quality=args.quality, write_recipe=not args.no_recipe,
                explain=args.explain, max_pixels=args.max_pixels, protect=protect,
            )
        except (ValueError, OSError, RuntimeError) as e:
            error(e if str(e).startswith(str(src)) else f"{src}: {e}")
            failed += 1
            continue
        ok += 1
        if args.quiet:
            continue
        print(f"{src} -> {res.output}" + (f"  (recipe {res.recipe_path.name})" if res.recipe_path else ""))
    return ok, failed


def run(args) -> int:
    from ..io import ImageReadError, list_images

    method = method_from_args(args)
    files: list[Path] = []
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
    ok, failed = retouch_many(method, files, args.out_dir, args, protect=files)
    failed += missing
    if not args.quiet:
        print(f"{ok} retouched, {failed} failed")
    return 1 if failed else 0
