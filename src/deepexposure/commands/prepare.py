"""``deepexposure prepare``: get training/evaluation data ready.

``prepare fivek ROOT --out DIR``   the papers' MIT-Adobe FiveK protocol as folders at 500 px:
                                   DIR/train/inputs, DIR/train/targets (expert C), DIR/test/{input,reference}
``prepare cache PHOTOS... --cache DIR``  decode photos once into 64 px thumbnails and 500 px copies
"""

from __future__ import annotations

from pathlib import Path

from ._common import error


def _counts(text: str) -> tuple[int, int, int]:
    import argparse

    try:
        parts = tuple(int(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive counts like 2000,2000,1000, got {text!r}")
    return parts


def register(sub) -> None:
    p = sub.add_parser("prepare", help="prepare datasets (FiveK protocol, thumbnail cache)", description=__doc__)
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    f = what.add_parser("fivek", help="export the papers' FiveK split at 500 px")
    f.add_argument("root", type=Path, help="MIT-Adobe FiveK folder (raw_photos/ or input/, expertC/ or c/, ...)")
    f.add_argument("--out", type=Path, required=True, help="output folder")
    f.add_argument("--expert", default="C", choices=list("ABCDE"), help="target expert (default C, as in the papers)")
    f.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    f.add_argument("--partitions", type=Path, default=None, help="folder with FiveK_train1.txt, FiveK_train2.txt, FiveK_test.txt (overrides --seed)")
    f.add_argument("--counts", type=_counts, default=(2000, 2000, 1000), help="train inputs, train targets, test (default 2000,2000,1000)")
    f.add_argument("--long-edge", type=int, default=500, help="long edge in px (default 500)")
    f.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fivek)
    c = what.add_parser("cache", help="fill a thumbnail cache for training")
    c.add_argument("photos", nargs="+", type=Path, help="photos or folders")
    c.add_argument("--cache", type=Path, required=True, help="cache folder")
    c.add_argument("--sizes", default="64,500", help="sizes to store; 64 = square thumbnail, others = long edge (default 64,500)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_cache)


def run_fivek(args) -> int:
    from ..data import DatasetError, export_fivek

    try:
        info = export_fivek(
            args.root, args.out, expert=args.expert, seed=args.seed, counts=args.counts,
            partition_dir=args.partitions, long_edge=args.long_edge, overwrite=args.overwrite, progress=not args.quiet,
        )
    except (DatasetError, OSError) as e:
        error(e)
        return 2
    for s in info["skipped"]:
        error(s["reason"])
    if info["missing"]:
        error(f"{len(info['missing'])} photos named in the partition files are not in {args.root}")
    print(
        f"split ({info['source']}): {len(info['train_inputs'])} train inputs, {len(info['train_targets'])} expert-{info['expert']} "
        f"targets, {len(info['test'])} test pairs -> {args.out}"
    )
    return 0


def run_cache(args) -> int:
    from ..data import prepare_cache
    from ..io import ImageReadError, list_images
    from ..resize import THUMBNAIL_SIZE

    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        files = list_images(args.photos)
    except ValueError as e:
        error(e if isinstance(e, ImageReadError) else f"--sizes: {e}")
        return 2
    skipped = prepare_cache(files, args.cache, sizes, square_sizes=(THUMBNAIL_SIZE,), progress=not args.quiet)
    for p, why in skipped:
        error(why if why.startswith(str(p)) else f"{p}: {why}")
    print(f"cached {len(files) - len(skipped)} of {len(files)} photos in {args.cache}")
    return 0
