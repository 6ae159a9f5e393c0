"""``deepexposure apply RECIPE IN -o OUT``: re-render a (possibly edited) recipe on a photo."""

from __future__ import annotations

from pathlib import Path

from ._common import error


def register(sub) -> None:
    p = sub.add_parser("apply", help="re-apply a recipe JSON to a photo", description=__doc__)
    p.add_argument("recipe", type=Path, help="recipe JSON written by `retouch`")
    p.add_argument("input", type=Path, help="the photo to apply it to")
    p.add_argument("-o", "--output", type=Path, required=True, help="output file (.jpg, .png, .tif, .webp)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io import check_output_path, read_image, write_image
    from ..recipe import Recipe, render

    try:
        recipe = Recipe.load(args.recipe)
        check_output_path(args.output, [args.input, args.recipe], overwrite=args.overwrite)
        loaded = read_image(args.input)
        out = render(recipe, loaded.img_srgb)
        write_image(args.output, out, alpha=loaded.alpha, exif=loaded.exif, quality=args.quality, overwrite=args.overwrite)
    except (ValueError, OSError) as e:
        error(e)
        return 1
    print(f"{args.input} -> {args.output}")
    return 0
