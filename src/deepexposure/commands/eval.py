"""``deepexposure eval --paired DIR --out OUT``: score methods against references.

DIR holds ``input/`` and ``reference/`` with matching file names (e.g. made by ``deepexposure
synth``). Every method retouches every input through the same code path as ``deepexposure
retouch``; the outputs are scored with MSE/PSNR (8-bit scale), SSIM, CIEDE2000 and Exposure's
histogram intersection. Writes OUT/eval.md (table), OUT/eval.json (all numbers, per image) and
OUT/eval_sheet.png (input | each method | reference for --sheet images); --name changes "eval".
--jobs N scores N pairs at a time in worker processes, --engine ray on a Ray cluster: the same report.

``--task denoise|restore --clean DIR``: PixelRL's benchmark instead (deepexposure.pixelrl.evaluate):
the clean photos of DIR, degraded from a fixed seed (``--noise gaussian:15,gaussian:25,...``, or text
overlays), scored for noisy, random agents, Gaussian, NL-means, BM3D and PixelRL (PSNR, SSIM,
seconds per image); writes OUT/NAME.md and OUT/NAME.json.
"""

from __future__ import annotations

from pathlib import Path

from ._common import add_engine_options, engine_from_args, error, float_list

DEFAULT_METHODS = "identity,auto,clahe,fusion,deepexposure"


def register(sub) -> None:
    from ..evaluate import EvalConfig

    d = EvalConfig()
    p = sub.add_parser("eval", help="score methods on a paired folder (input/ + reference/)", description=__doc__)
    p.add_argument("--paired", type=Path, default=None, help="folder with input/ and reference/ subfolders (--task retouch)")
    p.add_argument("--task", choices=["retouch", "denoise", "restore"], default="retouch",
                   help="retouch: methods against references (default); denoise/restore: PixelRL's benchmark on --clean photos")
    p.add_argument("--clean", type=Path, default=None, help="with --task denoise/restore: folder of clean photos")
    p.add_argument("--noise", default="gaussian:15,gaussian:25,gaussian:50", help="with --task denoise: noise levels (comma list)")
    p.add_argument("--color", action="store_true", help="with --task denoise/restore: colour photos (default: grey, as the paper)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated method names (default: {DEFAULT_METHODS})")
    p.add_argument("--out", type=Path, required=True, help="output folder for eval.md, eval.json, eval_sheet.png")
    p.add_argument("--sheet", type=int, default=d.sheet, metavar="N", help=f"images on the contact sheet, 0 = none (default {d.sheet})")
    p.add_argument("--long-edge", type=int, default=d.long_edge, help=f"evaluation resolution: long edge in px, 0 = full size (default {d.long_edge}, as in the papers)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the histogram-intersection patches (default 0)")
    p.add_argument("--contrast", choices=["variance", "std"], default=d.contrast, help="histogram-intersection contrast: 2x variance (paper text, default) or 2x std (authors' script)")
    p.add_argument("--model", action="append", default=[], metavar="[METHOD=]PATH",
                   help="model for the learned methods: PATH for all, or METHOD=PATH per method (repeatable), "
                        "e.g. --model deepexposure=runs/de2 --model exposure=runs/wb")
    p.add_argument("--ev", type=float_list, default=None, metavar="E1,E2,..", help="exposure bracket of the fusion baseline (default -1,0,1,2)")
    p.add_argument("--device", default=d.device, help="device the methods run on (default cpu)")
    p.add_argument("--name", default="eval", help="file name stem of the outputs: NAME.md, NAME.json, NAME_sheet.png (default eval)")
    p.add_argument("--overwrite", action="store_true", help="replace existing NAME.* files in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_options(p)
    p.set_defaults(func=run)


#: the methods a plain ``--model PATH`` (no ``METHOD=``) applies to: every renderer of the DeepExposure
#: policy, the white-box agent and PixelRL (one path serves one kind of model; name them apart with METHOD=PATH)
PLAIN_MODEL_METHODS = ("deepexposure", "deepexposure-local", "deepexposure-local-fusion", "exposure", "pixelrl")


def _build_methods(names: list[str], args) -> tuple[dict, dict[str, str]]:
    from ..methods import get_method

    models: dict[str, str] = {}
    plain: str | None = None
    for entry in args.model:
        method, sep, path = entry.partition("=")
        if sep and method and "/" not in method and "\\" not in method:
            models[method] = path
        elif plain is None:
            plain = entry
    methods, failed = {}, {}
    for name in names:
        opts: dict = {}
        if name in models:
            opts["model"] = models[name]
        elif plain is not None and name in PLAIN_MODEL_METHODS:
            opts["model"] = plain
        if name == "fusion" and args.ev is not None:
            opts["ev"] = args.ev
        try:
            methods[name] = get_method(name, **opts)
        except (ValueError, FileNotFoundError, OSError, ImportError) as e:
            error(f"method {name}: {e}")
            failed[name] = " ".join(str(e).split())
    return methods, failed


def _run_restore(args) -> int:
    import json

    from ..atomic import atomic_write_bytes
    from ..io import list_images
    from ..pixelrl.evaluate import RESTORE_METHODS, evaluate_restoration, format_restore_markdown
    from ..pixelrl.model import load_models
    from ._common import say

    if args.clean is None or not args.clean.is_dir():
        error(f"--task {args.task} needs --clean DIR, a folder of clean photos")
        return 2
    names = [m.strip() for m in (args.methods if args.methods != DEFAULT_METHODS else ",".join(RESTORE_METHODS)).split(",") if m.strip()]
    bad = [m for m in names if m not in RESTORE_METHODS]
    if bad:
        error(f"unknown method {bad[0]!r} for --task {args.task} (known: {', '.join(RESTORE_METHODS)})")
        return 2
    out, stem = args.out, args.name
    if not args.overwrite and any((out / f"{stem}.{e}").exists() for e in ("md", "json")):
        error(f"{out}: holds an earlier evaluation (use --overwrite)")
        return 2
    model = None
    if "pixelrl" in names or "random" in names:
        try:
            model = load_models(args.model[0] if args.model else None, args.task, args.device)
        except (ValueError, FileNotFoundError) as e:
            error(e)
            return 2
    levels = [x.strip() for x in args.noise.split(",") if x.strip()]
    try:
        rep = evaluate_restoration(list_images([args.clean]), args.task, levels, names, model, args.long_edge or 500,
                                   args.color, args.seed, progress=None if args.quiet else say)
    except ValueError as e:
        error(e)
        return 2
    md = format_restore_markdown(rep)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / f"{stem}.md", md.encode(), overwrite=args.overwrite)
    data = {"task": rep.task, "images": rep.images, "rows": rep.rows, "per_image_psnr": rep.per_image, "errors": rep.errors,
            "model": [str(m.path) for m in model] if model else None, "long_edge": args.long_edge or 500, "color": args.color, "seed": args.seed}
    atomic_write_bytes(out / f"{stem}.json", json.dumps(data, indent=2).encode(), overwrite=args.overwrite)
    print(md, end="")
    return 1 if rep.errors else 0


def run(args) -> int:
    from ..data import DatasetError, PairedFolder

    if args.task != "retouch":
        return _run_restore(args)
    if args.paired is None:
        error("eval needs --paired DIR (or --task denoise/restore --clean DIR)")
        return 2
    from ..evaluate import EvalConfig, evaluate_paired, format_markdown, write_report

    engine = engine_from_args(args)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not names:
        error("--methods is empty")
        return 2
    try:
        ds = PairedFolder(args.paired)
    except DatasetError as e:
        error(e)
        return 2
    out = args.out
    stem = args.name
    if not stem or "/" in stem or "\\" in stem:
        error(f"--name must be a plain file name stem, got {stem!r}")
        return 2
    if not args.overwrite and any((out / f).exists() for f in (f"{stem}.md", f"{stem}.json", f"{stem}_sheet.png")):
        error(f"{out}: holds an earlier evaluation (use --overwrite)")
        return 2
    methods, failed = _build_methods(names, args)
    if not methods:
        error("no method could be built")
        return 2
    cfg = EvalConfig(long_edge=args.long_edge or None, sheet=max(0, args.sheet), seed=args.seed, contrast=args.contrast, device=args.device)
    for p, why in ds.unmatched:
        error(f"{p}: {why} (ignored)")
    report, tiles = evaluate_paired(ds, methods, cfg, progress=not args.quiet, engine=engine)
    for m, why in failed.items():
        report.errors[m] = [f"not built: {why}"]
    try:
        written = write_report(report, tiles, out, overwrite=args.overwrite, stem=stem)
    except (ValueError, OSError) as e:
        error(e)
        return 2
    print(format_markdown(report), end="")
    print("wrote " + ", ".join(str(p) for p in written))
    if failed:  # the others were scored and reported, but the run did not do what was asked
        error(f"{len(failed)} method(s) could not be built: {', '.join(failed)}")
        return 1
    return 0 if report.summary else 1
