"""``deepexposure denoise PHOTOS -o OUT``: remove noise with the PixelRL agents (docs/pixelrl.md).

Every pixel's agent picks one of nine classical filters (Table I of the PixelRL paper) at each of
the model's ``t_max`` steps. Grey photos are processed as one channel, colour photos channel by
channel. Folders are mirrored under OUT as by ``retouch``; ``--explain`` writes each step's action
map with its counts (``<name>.explain.jpg``); ``--recipe`` writes the action maps as a recipe for
``deepexposure apply`` (large photos give recipes beyond apply's size limit).
"""

from __future__ import annotations

from pathlib import Path

from ._common import UsageError, error

TASK = "denoise"


def register(sub) -> None:
    p = sub.add_parser(TASK, help="remove noise with PixelRL agents (files and folders)", description=__doc__)
    add_restore_options(p)
    p.add_argument("--noise", choices=["gaussian", "poisson", "saltpepper"], default="gaussian",
                   help="noise the shipped model was trained for (default gaussian; the others need --model)")
    p.set_defaults(func=run, task=TASK)


def add_restore_options(p) -> None:
    from .retouch import add_output_options

    p.add_argument("inputs", nargs="+", type=Path, help="photos or folders")
    p.add_argument("-o", "--out-dir", type=Path, required=True, help="output folder (created if needed)")
    p.add_argument("--model", default=None, help="PixelRL model folder or training run (default: the shipped model)")
    p.add_argument("--device", default="cpu", help="where the agents run (cpu, cuda, cuda:N)")
    p.add_argument("--recipe", action="store_true", help="also write <output>.recipe.json (the action maps)")
    add_output_options(p)


def _model(args) -> str | None:
    from ..pixelrl.model import WEIGHTS_DIR

    noise = getattr(args, "noise", "gaussian")
    if args.model is None and noise != "gaussian":
        shipped = WEIGHTS_DIR / f"pixelrl-denoise-{noise}"
        if not shipped.is_dir():
            raise UsageError(f"no shipped model for {noise} noise; train one (deepexposure train --algo pixelrl --task denoise "
                             f"--noise {noise}:LEVEL --out RUN) and pass --model RUN")
        return str(shipped)
    return args.model


def run(args) -> int:
    from ..io import ImageReadError, list_images
    from ..modelfiles import ModelFileError
    from ..pixelrl.method import PixelRLRestorer
    from .retouch import retouch_many

    try:
        method = PixelRLRestorer(args.task, _model(args), device=args.device)
    except (ModelFileError, FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    args.no_recipe = not args.recipe
    files: list[Path] = []
    rels: list[Path | None] = []
    missing = 0
    for p in args.inputs:
        try:
            found = list_images([p]) if p.exists() else []
        except ImageReadError as e:
            error(e)
            missing += 1
            continue
        if not found:
            error(f"{p}: no such file or folder" if not p.exists() else f"{p}: no photos found")
            missing += 1
        files += found
        rels += [f.relative_to(p) if p.is_dir() else None for f in found]
    ok, failed = retouch_many(method, files, args.out_dir, args, protect=files, rels=rels)
    failed += missing
    if not args.quiet:
        print(f"{ok} {args.task}d, {failed} failed")
    return 1 if failed else 0
