"""``deepexposure apply RECIPE IN... -o OUT``: re-render a (possibly edited) recipe on photos.

One input file and an ``-o`` with an image extension: that output file. Otherwise ``-o`` is a folder
(created if needed) and the inputs (files and folders, mirrored as by ``retouch``) are written there:
one recipe, used as a preset for many photos.
"""

from __future__ import annotations

from pathlib import Path

from ._common import error, photo_progress, say


def register(sub) -> None:
    p = sub.add_parser("apply", help="re-apply a recipe JSON to photos (files or folders)", description=__doc__)
    p.add_argument("recipe", type=Path, help="recipe JSON written by `retouch`")
    p.add_argument("inputs", nargs="+", type=Path, metavar="input", help="photos or folders to apply it to")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file (.jpg, .png, .tif, .webp) for one photo, else an output folder")
    p.add_argument("--format", choices=["jpg", "png", "tif", "webp"], default=None, help="output format in folder mode (default: as the input)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress (a photo's stages on a terminal), per-file lines or summary")
    p.set_defaults(func=run)


def _apply_one(recipe, src: Path, dst: Path, args, protect: list[Path]) -> None:
    from ..io import _WRITE_DEPTHS, _WRITE_FORMATS, check_output_path, read_image, write_image
    from ..recipe import render

    check_output_path(dst, protect, overwrite=args.overwrite)
    with photo_progress(src.name, args.quiet) as progress:  # decode, render, encode on a terminal
        report = progress or (lambda stage, done, total: None)
        report("decode", 0, 1)
        loaded = read_image(src)
        report("decode", 1, 1)
        out = render(recipe, loaded.img_srgb, None if progress is None else lambda done, total: report("render", done, total))
        fmt = _WRITE_FORMATS.get(dst.suffix.lower())
        depth = 16 if loaded.bit_depth == 16 and fmt is not None and 16 in _WRITE_DEPTHS[fmt] else None
        alpha = loaded.alpha if fmt != "JPEG" else None
        report("encode", 0, 1)
        write_image(dst, out, alpha=alpha, exif=loaded.exif, quality=args.quality, bit_depth=depth,
                    overwrite=args.overwrite, protect=protect)
        report("encode", 1, 1)


def run(args) -> int:
    from ..io import WRITE_EXTENSIONS, ImageReadError, list_images
    from ..pipeline import output_path_for
    from ..recipe import Recipe
    from .retouch import make_out_dir

    try:
        recipe = Recipe.load(args.recipe)
    except ValueError as e:
        error(e)
        return 1
    single = len(args.inputs) == 1 and not args.inputs[0].is_dir() and args.output.suffix.lower() in WRITE_EXTENSIONS
    jobs: list[tuple[Path, Path]] = []
    failed = 0
    if single:
        if not make_out_dir(args.output.parent):
            return 1
        jobs.append((args.inputs[0], args.output))
    else:
        if not make_out_dir(args.output):
            return 1
        seen: dict[Path, Path] = {}
        for p in args.inputs:
            try:
                found = list_images([p])
            except ImageReadError as e:
                error(e)
                failed += 1
                continue
            for f in found:
                dst = output_path_for(f, args.output, args.format, f.relative_to(p) if p.is_dir() else None)
                if dst in seen:
                    error(f"{f}: its output {dst} would collide with that of {seen[dst]}")
                    failed += 1
                    continue
                seen[dst] = f
                jobs.append((f, dst))
    protect = [args.recipe] + [src for src, _ in jobs]
    ok = 0
    for src, dst in jobs:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            _apply_one(recipe, src, dst, args, protect)
        except (ValueError, OSError, MemoryError) as e:
            msg = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
            error(msg if msg.startswith(str(src)) or msg.startswith(str(dst)) else f"{src}: {msg}")
            failed += 1
            continue
        ok += 1
        if not args.quiet:
            say(f"{src} -> {dst}")
    if not single and not args.quiet:
        print(f"{ok} rendered, {failed} failed")
    return 1 if failed else 0
