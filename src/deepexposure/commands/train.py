"""``deepexposure train --algo de1|de2|exposure --inputs DIR --targets DIR --out RUN_DIR``.

Learns a retouching style from unpaired photo folders: ``--inputs`` are photos like the ones you
want retouched, ``--targets`` photos in the style you like. ``--resume`` continues an interrupted
run from its newest checkpoint with the run's saved settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..config import add_dataclass_options, dataclass_from_args
from ..train import TrainConfig
from ._common import error, warn

ALGOS = ("de1", "de2", "exposure")


def _agent_config_cls(algo: str):
    if algo in ("de1", "de2"):
        from ..agents.deepexposure import DeepExposureConfig

        return DeepExposureConfig
    from ..agents.whitebox import WhiteBoxConfig

    return WhiteBoxConfig


def _agent_config(algo: str, args: argparse.Namespace, saved_agent: dict | None, image_size: int):
    """The agent's config: a run's saved settings (or the defaults), overridden by the options given."""
    base = dict(saved_agent or {})
    if algo in ("de1", "de2"):
        base["algo"] = algo
    base["image_size"] = image_size
    return dataclass_from_args(_agent_config_cls(algo), args, base)


def _make_agent(algo: str, agent_cfg, batch_size: int):
    if algo in ("de1", "de2"):
        from ..agents.deepexposure import DeepExposureAgent

        return DeepExposureAgent(agent_cfg, batch_size)
    from ..agents.whitebox import WhiteBoxAgent

    return WhiteBoxAgent(agent_cfg, batch_size)


def register(sub) -> None:
    from ..agents.deepexposure import DeepExposureConfig

    p = sub.add_parser("train", help="train an agent on unpaired photo folders", description=__doc__)
    p.add_argument("--algo", choices=ALGOS, default="de2", help="de1: DeepExposure I, de2: DeepExposure II, exposure: white-box filter agent")
    p.add_argument("--inputs", type=Path, help="folder of photos to learn to retouch")
    p.add_argument("--targets", type=Path, help="folder of photos in the wanted style (unpaired)")
    p.add_argument("--references", type=Path, default=None,
                   help="optional folder with a well-exposed version of each input, same file names (e.g. a synth "
                        "folder's reference/): adds the paired term -w*MSE to every score the agent maximises "
                        "(--fidelity-weight); the discriminator stays unpaired")
    p.add_argument("--out", type=Path, required=True, help="run directory (logs, samples, checkpoints, model)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--export-step", type=int, default=None, metavar="N",
                   help="do not train: write the model of the run's checkpoint step_N (see --keep-checkpoints) to --export-to")
    p.add_argument("--export-to", type=Path, default=None, metavar="DIR", help="folder for --export-step (default: RUN/model-step_N)")
    p.add_argument("--cache-dir", type=Path, default=None, help="prepared-thumbnail cache (default: RUN/cache)")
    p.add_argument("--min-images", type=int, default=2, help="refuse to train with fewer readable photos per folder")
    p.add_argument("--allow-grayscale", action="store_true", help="keep grayscale photos (skipped by default: they would teach desaturation)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_options(p, TrainConfig, "training loop")
    add_dataclass_options(p, DeepExposureConfig, "DeepExposure agent (--algo de1/de2)", skip=("algo", "image_size"))
    try:
        from ..agents.whitebox import WhiteBoxConfig
    except ImportError:
        pass
    else:
        add_dataclass_options(p, WhiteBoxConfig, "white-box agent (--algo exposure)", skip=("image_size",))
    p.set_defaults(func=run)


def _is_gray(thumbs):
    """``(N,3,h,w) -> (N,)`` bool: all three channels (nearly) equal."""
    return (thumbs.amax(1) - thumbs.amin(1)).flatten(1).amax(1) < 2.0 / 255


def _load_data(inputs: Path, targets: Path, size: int, cache_dir: Path, min_images: int, allow_gray: bool):
    """Load both folders as thumbnails; report unreadable files, skip grayscale ones, refuse too few."""
    from ..data import DatasetError, UnpairedFolders

    data = UnpairedFolders(inputs, targets, size=size, cache_dir=cache_dir, min_images=min_images)
    for path, reason in data.skipped:
        warn(f"{path}: skipped ({reason})")
    if not allow_gray:
        for what in ("inputs", "targets"):
            imgs, paths = getattr(data, what), getattr(data, what[:-1] + "_paths")
            gray = _is_gray(imgs)
            for p in [p for p, g in zip(paths, gray.tolist()) if g]:
                warn(f"{p}: skipped (grayscale photo; use --allow-grayscale to keep it)")
            keep = ~gray
            if int(keep.sum()) < min_images:
                raise DatasetError(f"{inputs if what == 'inputs' else targets}: only {int(keep.sum())} colour photos, need at least {min_images}")
            setattr(data, what, imgs[keep])
            setattr(data, what[:-1] + "_paths", [p for p, k in zip(paths, keep.tolist()) if k])
    return data


def _export(args) -> int:
    """``--export-step N``: the inference model of one checkpoint of the run in ``--out``."""
    from ..train import export_checkpoint

    run_dir: Path = args.out
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        error(f"{run_dir}: not a training run (no config.json)")
        return 2
    saved = json.loads(cfg_path.read_text())
    ckpt = run_dir / "checkpoints" / f"step_{args.export_step:07d}"
    if not (ckpt / "state.json").exists():
        have = sorted(int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step_*") if (p / "state.json").exists())
        error(f"{ckpt}: no such checkpoint (the run has steps {', '.join(map(str, have)) or 'none'})")
        return 2
    agent_cfg = _agent_config(saved["algo"], argparse.Namespace(), saved["agent"], saved["train"]["image_size"])
    agent = _make_agent(saved["algo"], agent_cfg, saved["train"]["batch_size"])
    out = args.export_to or run_dir / f"model-step_{args.export_step}"
    export_checkpoint(agent, ckpt, out, {"name": f"{run_dir.name}-step_{args.export_step}", "seed": saved["train"]["seed"]})
    print(f"model of {ckpt} written to {out}")
    return 0


def run(args) -> int:
    if args.export_step is not None:
        return _export(args)
    run_dir: Path = args.out
    saved = None
    if args.resume:
        cfg_path = run_dir / "config.json"
        if not cfg_path.exists():
            error(f"{run_dir}: nothing to resume (no config.json)")
            return 2
        saved = json.loads(cfg_path.read_text())
        algo = saved["algo"]
        inputs, targets = Path(saved["inputs"]), Path(saved["targets"])
        references = Path(saved["references"]) if saved.get("references") else None
    else:
        algo = args.algo
        if args.inputs is None or args.targets is None:
            error("train needs --inputs DIR and --targets DIR (or --resume)")
            return 2
        inputs, targets, references = args.inputs, args.targets, args.references
    train_cfg = dataclass_from_args(TrainConfig, args, saved["train"] if saved else None)
    agent_cfg = _agent_config(algo, args, saved["agent"] if saved else None, train_cfg.image_size)
    for label, d in (("--inputs", inputs), ("--targets", targets), ("--references", references)):
        if d is None:
            continue
        if not d.is_dir():
            error(f"{d}: {label} must be a folder of photos")
            return 2
    try:
        cache = args.cache_dir or run_dir / "cache"
        data = _load_data(inputs, targets, train_cfg.image_size, cache, args.min_images, args.allow_grayscale)
        refs = None
        if references is not None:
            from ..data import load_references

            refs = load_references(data.input_paths, references, train_cfg.image_size, cache)
    except ValueError as e:
        error(e)
        return 2
    from ..train import Trainer

    agent = _make_agent(algo, agent_cfg, train_cfg.batch_size)
    extra = {
        "algo": algo,
        "inputs": str(inputs.resolve()),
        "targets": str(targets.resolve()),
        "references": str(references.resolve()) if references is not None else None,
        "n_inputs": int(data.inputs.shape[0]),
        "n_targets": int(data.targets.shape[0]),
        "command": " ".join(["deepexposure"] + sys.argv[1:]),
    }
    trainer = Trainer(agent, train_cfg, data.inputs, data.targets, run_dir, extra, progress=not args.quiet, references=refs)
    t0 = time.time()
    try:
        model_dir = trainer.fit(resume=args.resume)
    except (FileExistsError, FileNotFoundError) as e:
        error(e)
        return 2
    print(f"trained {trainer.step} steps in {time.time() - t0:.0f} s; model: {model_dir}")
    print(f"use it: deepexposure retouch --method {'exposure' if algo == 'exposure' else 'deepexposure'} --model {run_dir} PHOTO -o OUT")
    return 0
