"""``deepexposure demo [-o DIR]``: retouch the bundled sample photos with the default model, with explanations."""

from __future__ import annotations

from pathlib import Path

from ._common import add_method_options, method_from_args
from .retouch import retouch_many


def register(sub) -> None:
    p = sub.add_parser("demo", help="retouch the bundled sample photos (default model)", description=__doc__)
    p.add_argument("-o", "--out-dir", type=Path, default=Path("deepexposure-demo"), help="output folder (default ./deepexposure-demo)")
    add_method_options(p)
    p.set_defaults(func=run, format=None, quality=92, overwrite=True, explain=True, no_recipe=False, max_pixels=None, quiet=False)


def run(args) -> int:
    from ..samples import sample_paths

    method = method_from_args(args)
    files = sample_paths()
    ok, failed = retouch_many(method, files, args.out_dir, args, protect=files)
    print(f"{ok} sample photos retouched into {args.out_dir}/ (open the *.explain.jpg files to see what was done)")
    return 1 if failed else 0
