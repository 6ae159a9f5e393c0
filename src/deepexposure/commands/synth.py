"""``deepexposure synth SRC --out DIR``: a paired benchmark with known exposure errors.

Every photo in SRC (assumed well exposed) becomes ``DIR/reference/<name>.png``; a copy with a
spatially varying exposure error applied in linear light becomes ``DIR/input/<name>.png``; the
applied EV field and its parameters go to ``DIR/fields/``. Same seed, same bytes. The model is
documented in ``deepexposure.synth`` and docs/evaluation.md.

More training data (docs/data.md, "Growing the training data"): ``--kinds`` picks other
degradations (backlit, crushed shadows, clipped highlights, contrast, white balance, ...),
``--augment N`` writes N random crops/flips per photo, ``--hdr DIR --views N`` renders N perspective
views of each HDR map. These write ``input/``, ``reference/``, ``params/`` and ``pairs.json``
(:func:`deepexposure.pairs.write_pairs`).
"""

from __future__ import annotations

from pathlib import Path

from ._common import error


def register(sub) -> None:
    from ..synth import SynthConfig

    d = SynthConfig()
    p = sub.add_parser("synth", help="build a synthetic paired benchmark from well-exposed photos", description=__doc__)
    p.add_argument("sources", nargs="*", type=Path, help="well-exposed photos or folders")
    p.add_argument("--skimage-photos", action="store_true", help="also use the colour photos shipped with scikit-image (astronaut, chelsea, coffee, motorcycle, rocket)")
    p.add_argument("--out", type=Path, required=True, help="output folder (input/, reference/, fields/, synth.json)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--size", type=int, default=d.size, help=f"long edge of the written images, 0 = keep (default {d.size})")
    p.add_argument("--variants", type=int, default=d.variants, help="degraded versions per photo (default 1)")
    p.add_argument("--global-ev", type=float, nargs=2, default=d.global_ev, metavar=("LO", "HI"), help=f"range of the global EV offset (default {d.global_ev[0]} {d.global_ev[1]})")
    p.add_argument("--local-ev", type=float, default=d.local_ev, help=f"max amplitude of the smooth local EV field (default {d.local_ev})")
    p.add_argument("--tone-ev", type=float, default=d.tone_ev, help=f"max strength of the shadow/highlight term (default {d.tone_ev})")
    g = p.add_argument_group("more training data (docs/data.md)")
    g.add_argument("--kinds", default=None, metavar="K1,K2", help="degradation kinds: exposure (default), global, local, backlit, crush, clip, contrast, white_balance, or all")
    g.add_argument("--augment", type=int, default=0, metavar="N", help="N random crops (0.35-1 of the short side, aspect within 15%%) with random flips per photo, long edge --size")
    g.add_argument("--hdr", type=Path, default=None, metavar="DIR", help="folder of equirectangular *.exr maps (needs OpenEXR): render perspective views")
    g.add_argument("--views", type=int, default=8, metavar="N", help="views per HDR map with --hdr (default 8)")
    g.add_argument("--cache", type=Path, default=None, metavar="DIR", help="cache folder for the decoded working copies")
    p.add_argument("--overwrite", action="store_true", help="replace an existing benchmark in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io import ImageReadError, list_images
    from ..synth import SynthConfig, make_benchmark, skimage_photo_paths

    try:
        files = list_images(args.sources) if args.sources else []
    except ImageReadError as e:
        error(e)
        return 2
    if args.skimage_photos:
        files += skimage_photo_paths()
    if not files and args.hdr is None:
        error("no source photos (give folders/files or --skimage-photos)")
        return 2
    if args.variants < 1:
        error("--variants must be at least 1")
        return 2
    cfg = SynthConfig(
        seed=args.seed, size=args.size or None, variants=args.variants,
        global_ev=tuple(args.global_ev), local_ev=args.local_ev, tone_ev=args.tone_ev,
    )
    if args.kinds is not None or args.augment or args.hdr is not None:
        return _run_pairs(args, files, cfg)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        man = make_benchmark(files, args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    except (ValueError, OSError) as e:
        error(e)
        return 2
    return _report(man, args, f"seed {cfg.seed}")


def _report(man: dict, args, what: str) -> int:
    """Name every skipped photo, then say what was written."""
    for s in man["skipped"]:
        error(s["reason"])
    if not args.quiet:
        print(f"wrote {len(man['items'])} pairs to {args.out} ({what})")
    return 0


def _run_pairs(args, files, cfg) -> int:
    from ..pairs import SyntheticPairs, write_pairs
    from ..synth import parse_kinds

    if args.augment < 0:
        error("--augment must be at least 0")
        return 2
    if args.views < 1:
        error("--views must be at least 1")
        return 2
    if not args.size:
        error("--size 0 (keep the source size) is not supported with --kinds/--augment/--hdr")
        return 2
    try:
        kinds = parse_kinds(args.kinds)
        ds = SyntheticPairs(files, args.hdr, size=args.size, seed=args.seed, kinds=kinds, cache_dir=args.cache, exposure=cfg)
        args.out.mkdir(parents=True, exist_ok=True)
        man = write_pairs(
            ds, args.out, per_photo=args.augment or args.variants, views=args.views,
            shape="crop" if args.augment else "full", overwrite=args.overwrite, progress=not args.quiet,
        )
    except (ValueError, OSError) as e:
        error(e)
        return 2
    return _report(man, args, f"seed {args.seed}, kinds {','.join(kinds)}")
