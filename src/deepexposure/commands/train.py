"""``deepexposure train --algo de1|de2|exposure --inputs DIR --targets DIR --out RUN_DIR``
(PixelRL, paired and supervised by clean photos: ``--algo pixelrl --task denoise|restore|enhance [--inputs DIR]``).

Learns a retouching style from unpaired photo folders: ``--inputs`` are photos like the ones you
want retouched, ``--targets`` photos in the style you like. ``--seed`` fixes every random draw,
the networks' initial weights included. ``--resume`` continues an interrupted run from its newest
usable checkpoint with the run's saved settings; options that would change the run's maths are
refused unless ``--allow-changes`` is given (see docs/training.md, "Reproducibility and resume").
``torchrun --nproc-per-node N -m deepexposure train ...`` trains on N processes (gloo on CPU, NCCL on
GPUs): --batch-size stays the global batch, split over them (deepexposure.distributed, docs/scaling.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..config import ConfigError, add_dataclass_options, dataclass_from_args
from ..train import FIXED_SETTINGS, OPERATIONAL_SETTINGS, Agent, TrainConfig
from ._common import UsageError, error, warn

ALGOS = ("de1", "de2", "exposure", "pixelrl")


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
    try:
        return dataclass_from_args(_agent_config_cls(algo), args, base)
    except ConfigError:
        raise
    except ValueError as e:  # the agent config's own checks (e.g. the white-box image size)
        raise UsageError(str(e)) from None


def _make_agent(algo: str, agent_cfg, batch_size: int) -> Agent:
    """The agent for ``--algo`` (the return type makes the type checker verify both against :class:`~deepexposure.train.Agent`)."""
    if algo in ("de1", "de2"):
        from ..agents.deepexposure import DeepExposureAgent

        return DeepExposureAgent(agent_cfg, batch_size)
    from ..agents.whitebox import WhiteBoxAgent

    return WhiteBoxAgent(agent_cfg, batch_size)


def _build_and_fit(make_trainer, resume: bool):
    """``trainer = make_trainer(); trainer.fit(resume=resume)``, each failure a one-line error:
    returns ``(trainer, model_dir)``, ``model_dir`` None when it failed (the command exits 2)."""
    from ..train import CheckpointError

    try:
        trainer = make_trainer()
    except ValueError as e:
        error(e)
        return None, None
    try:
        return trainer, trainer.fit(resume=resume)
    except (FileExistsError, FileNotFoundError, CheckpointError) as e:
        error(e)
        return trainer, None


def register(sub) -> None:
    from ..agents.deepexposure import DeepExposureConfig

    p = sub.add_parser("train", help="train an agent on unpaired photo folders", description=__doc__)
    p.add_argument("--algo", choices=ALGOS, default=None,
                   help="de1: DeepExposure I, de2: DeepExposure II, exposure: white-box filter agent, pixelrl: PixelRL "
                        "(docs/pixelrl.md) (default: de2, or the run's on --resume)")
    p.add_argument("--inputs", type=Path, help="folder of photos to learn to retouch")
    p.add_argument("--targets", type=Path, help="folder of photos in the wanted style (unpaired)")
    p.add_argument("--references", type=Path, default=None,
                   help="optional folder with a well-exposed version of each input, same file names (e.g. a synth "
                        "folder's reference/): adds the paired term -w*MSE to every score the agent maximises "
                        "(--fidelity-weight); the discriminator stays unpaired")
    p.add_argument("--pairs-from", type=Path, default=None, metavar="DIR",
                   help="instead of --inputs/--references: draw paired training data without end from the well-exposed "
                        "photos in DIR (random crops and flips, synthetic exposure errors of --pairs-kinds; "
                        "deepexposure.pairs.SyntheticPairs), held in a pool of --pairs-pool renewed by --pairs-refresh per step")
    p.add_argument("--hdr", type=Path, default=None, metavar="DIR",
                   help="with --pairs-from: also render pairs from the HDR environment maps (*.exr) in DIR (needs the hdr extra)")
    p.add_argument("--out", type=Path, required=True, help="run directory (logs, samples, checkpoints, model)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest usable checkpoint, with its saved settings; "
                        "operational options (--steps, --ckpt-every, --keep-checkpoints, --sample-every, --log-every, "
                        "--threads, --quiet) may change, others need --allow-changes")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: apply options that change the run's maths (learning rates, d-steps, data "
                        "folders, ...); they are printed and recorded in RUN/config.json")
    p.add_argument("--export-step", type=int, default=None, metavar="N",
                   help="do not train: write the model of the run's checkpoint step_N (see --keep-checkpoints) to --export-to")
    p.add_argument("--export-to", type=Path, default=None, metavar="DIR", help="folder for --export-step (default: RUN/model-step_N)")
    p.add_argument("--cache-dir", type=Path, default=None, help="prepared-thumbnail cache (default: RUN/cache)")
    p.add_argument("--min-images", type=int, default=2, help="refuse to train with fewer readable photos per folder")
    p.add_argument("--allow-grayscale", action="store_true", default=None,
                   help="keep grayscale photos (skipped by default: they would teach desaturation; recorded with the run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_options(p, TrainConfig, "training loop")
    add_dataclass_options(p, DeepExposureConfig, "DeepExposure agent (--algo de1/de2)", skip=("algo", "image_size"))
    from ..agents.whitebox import WhiteBoxConfig

    add_dataclass_options(p, WhiteBoxConfig, "white-box agent (--algo exposure)", skip=("image_size",))
    from ..pixelrl.train import PixelRLConfig

    add_dataclass_options(p, PixelRLConfig, "PixelRL (--algo pixelrl)")
    p.set_defaults(func=run)


def _is_gray(thumbs):
    """``(N,3,h,w) -> (N,)`` bool: all three channels (nearly) equal."""
    return (thumbs.amax(1) - thumbs.amin(1)).flatten(1).amax(1) < 2.0 / 255


def _fill_cache(folders, size: int, cache_dir: Path) -> None:
    """Write the thumbnail of every photo in ``folders`` to the cache, so training reads them all from it.

    The cache holds 16-bit PNGs, and a freshly computed thumbnail is not quantised. Reading every
    thumbnail from the cache, in a first run as in a resumed one, keeps ``--resume`` bit-exact.
    Unreadable photos are left for the loader to report.
    """
    from ..data import prepare_cache
    from ..io import list_images

    for folder in folders:
        if folder is not None and Path(folder).is_dir():
            prepare_cache(list_images([folder]), cache_dir, sizes=(size,), square_sizes=(size,))


def _load_data(inputs: Path, targets: Path, size: int, cache_dir: Path, min_images: int, allow_gray: bool):
    """Load both folders as thumbnails; report unreadable files, skip grayscale ones, refuse too few."""
    from ..data import DatasetError, UnpairedFolders

    _fill_cache([inputs, targets], size, cache_dir)
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
    out = args.export_to or run_dir / f"model-step_{args.export_step}"
    if saved.get("algo") == "pixelrl":
        from ..pixelrl.train import export_checkpoint as export_pixelrl

        export_pixelrl(run_dir, ckpt, out)
        print(f"model of {ckpt} written to {out}")
        return 0
    agent_cfg = _agent_config(saved["algo"], argparse.Namespace(), saved["agent"], saved["train"]["image_size"])
    agent = _make_agent(saved["algo"], agent_cfg, saved["train"]["batch_size"])
    export_checkpoint(agent, ckpt, out, {"name": f"{run_dir.name}-step_{args.export_step}", "seed": saved["train"]["seed"]})
    print(f"model of {ckpt} written to {out}")
    return 0


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


def _show(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) or v is None else str(v)


def _resume_changes(saved: dict, now: dict) -> dict[str, tuple]:
    """Settings that differ between a run's ``config.json`` (``saved``) and this invocation (``now``).

    Compares the loop's and the agent's scalar settings plus ``algo``, the data folders and
    ``allow_grayscale``; returns ``{name: (old, new)}`` in a stable order.
    """
    changes: dict[str, tuple] = {}
    for section in ("train", "agent"):
        old, new = saved.get(section, {}), now[section]
        for k, v in new.items():
            if k in old and not isinstance(v, dict) and _jsonable(old[k]) != _jsonable(v) and k not in changes:
                changes[k] = (old[k], v)
    for k in ("algo", "inputs", "targets", "references", "pairs_from", "hdr", "allow_grayscale"):
        if saved.get(k) != now.get(k) and not (k == "allow_grayscale" and not saved.get(k) and not now.get(k)):
            changes[k] = (saved.get(k), now.get(k))
    return changes


def _format_changes(changes: dict[str, tuple]) -> str:
    return ", ".join(f"--{k.replace('_', '-')} {_show(a)} -> {_show(b)}" for k, (a, b) in changes.items())


def _check_resume_changes(changes: dict[str, tuple], allow: bool) -> str | None:
    """The one-line refusal for ``changes`` on ``--resume``, or None if they may be applied.

    The rule: settings in :data:`~deepexposure.train.FIXED_SETTINGS` (they size the networks or
    the saved state) never change; :data:`~deepexposure.train.OPERATIONAL_SETTINGS` always may;
    every other setting changes the run's maths and needs ``--allow-changes``.
    """
    fixed = {k: v for k, v in changes.items() if k in FIXED_SETTINGS}
    if fixed:
        return f"--resume cannot change {_format_changes(fixed)}: the checkpoint's networks and state are sized by it; start a new run (another --out)"
    maths = {k: v for k, v in changes.items() if k not in OPERATIONAL_SETTINGS}
    if maths and not allow:
        return f"--resume would change the run's maths: {_format_changes(maths)}; pass --allow-changes to apply, or drop these options"
    return None


def _is_pixelrl(args) -> bool:
    if args.algo is not None or not args.resume:
        return args.algo == "pixelrl"
    cfg_path = args.out / "config.json"
    return cfg_path.exists() and json.loads(cfg_path.read_text()).get("algo") == "pixelrl"


def run(args) -> int:
    if args.export_step is not None:
        return _export(args)
    try:
        if _is_pixelrl(args):
            return _run_pixelrl(args)
        return _run(args)
    except ConfigError as e:
        error(e.option_message)
        return 2


def _run(args) -> int:
    from ..train import seed_everything

    run_dir: Path = args.out
    if args.min_images < 1:
        raise ConfigError("min_images", ">= 1", args.min_images)
    if args.allow_changes and not args.resume:
        error("--allow-changes only applies with --resume")
        return 2
    saved = None
    if args.resume:
        cfg_path = run_dir / "config.json"
        if not cfg_path.exists():
            error(f"{run_dir}: nothing to resume (no config.json)")
            return 2
        saved = json.loads(cfg_path.read_text())
        algo = args.algo or saved["algo"]
        inputs = args.inputs or Path(saved["inputs"])
        targets = args.targets or Path(saved["targets"])
        pairs_from = args.pairs_from or (Path(saved["pairs_from"]) if saved.get("pairs_from") else None)
        hdr = args.hdr or (Path(saved["hdr"]) if saved.get("hdr") else None)
        references = args.references or (Path(saved["references"]) if saved.get("references") else None)
        allow_gray = bool(saved.get("allow_grayscale", False)) if args.allow_grayscale is None else True
    else:
        algo = args.algo or "de2"
        pairs_from, hdr = args.pairs_from, args.hdr
        if pairs_from is not None and (args.inputs is not None or args.references is not None):
            error("--pairs-from replaces --inputs and --references: give one or the other")
            return 2
        if hdr is not None and pairs_from is None:
            error("--hdr needs --pairs-from")
            return 2
        if (args.inputs is None and pairs_from is None) or args.targets is None:
            error("train needs --inputs DIR (or --pairs-from DIR) and --targets DIR (or --resume)")
            return 2
        inputs, targets, references = args.inputs or pairs_from, args.targets, args.references
        allow_gray = bool(args.allow_grayscale)
    train_cfg = dataclass_from_args(TrainConfig, args, saved["train"] if saved else None)
    if saved is not None and algo != saved.get("algo", algo):  # the saved agent settings belong to another agent
        error(f"--resume cannot change --algo {saved['algo']} -> {algo}: start a new run (another --out)")
        return 2
    agent_cfg = _agent_config(algo, args, saved["agent"] if saved else None, train_cfg.image_size)
    from ..distributed import close, init_from_env, main_first

    dist = init_from_env(train_cfg.device)  # torchrun --nproc-per-node N: one of N processes
    if dist is not None and algo == "exposure":
        error("--algo exposure cannot train on several processes (its trajectory buffer is not split by rows); run it in one")
        return 2
    for label, d in (("--inputs", inputs), ("--targets", targets), ("--references", references), ("--hdr", hdr)):
        if d is None:
            continue
        if not d.is_dir():
            error(f"{d}: {label} must be a folder of photos")
            return 2
    extra = {
        "algo": algo,
        "inputs": str(inputs.resolve()),
        "targets": str(targets.resolve()),
        "references": str(references.resolve()) if references is not None else None,
        "pairs_from": str(pairs_from.resolve()) if pairs_from is not None else None,
        "hdr": str(hdr.resolve()) if hdr is not None else None,
        "allow_grayscale": allow_gray,
        "command": " ".join(["deepexposure", *getattr(args, "argv", sys.argv[1:])]),
    }
    if saved is not None:
        now = {"train": dataclasses.asdict(train_cfg), "agent": agent_cfg.to_dict(), **extra}
        changes = _resume_changes(saved, now)
        refusal = _check_resume_changes(changes, args.allow_changes)
        if refusal:
            error(refusal)
            return 2
        operational = {k: v for k, v in changes.items() if k in OPERATIONAL_SETTINGS}
        maths = {k: v for k, v in changes.items() if k not in OPERATIONAL_SETTINGS}
        if operational:
            print(f"resume: {_format_changes(operational)}")
        if maths:
            warn(f"resume with changed maths (--allow-changes): {_format_changes(maths)}")
        record = {"command": extra["command"], "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "changes": {k: [a, b] for k, (a, b) in _jsonable(changes).items()}}
        extra["command"] = saved.get("command", extra["command"])  # the first invocation stays on record
        extra["resumes"] = [*saved.get("resumes", []), record]
    try:
        with main_first(dist):  # rank 0 fills the thumbnail cache, the others read it
            cache = args.cache_dir or run_dir / "cache"
            data = _load_data(inputs, targets, train_cfg.image_size, cache, args.min_images, allow_gray)
            refs = None
            if references is not None:
                from ..data import load_references

                _fill_cache([references], train_cfg.image_size, cache)
                refs = load_references(data.input_paths, references, train_cfg.image_size, cache)
            pool = None
            if pairs_from is not None:
                from ..io import list_images
                from ..pairs import SyntheticPairs
                from ..pretrain import PairPool

                stream = SyntheticPairs(list_images([pairs_from]), hdr_dir=hdr, size=train_cfg.image_size, seed=train_cfg.seed,
                                        kinds=train_cfg.pairs_kinds, cache_dir=cache)
                for path, reason in stream.skipped:
                    warn(f"{path}: skipped ({reason})")
                pool = PairPool(stream, train_cfg.pairs_pool, train_cfg.pairs_refresh)
    except ValueError as e:
        error(e)
        return 2
    from ..train import Trainer

    seed_everything(train_cfg.seed)  # seed first, then build: the initial weights depend on --seed alone
    agent = _make_agent(algo, agent_cfg, train_cfg.batch_size)
    extra.update(n_inputs=int(data.inputs.shape[0]) if pool is None else pool.size, n_targets=int(data.targets.shape[0]))
    if train_cfg.threads:  # process-wide, so set by the command, not the library
        torch.set_num_threads(train_cfg.threads)
    t0 = time.time()
    trainer, model_dir = _build_and_fit(lambda: Trainer(agent, train_cfg, data.inputs, data.targets, run_dir, extra, progress=not args.quiet,
                                                        references=refs, warn=warn, pairs=pool, dist=dist), args.resume)
    if model_dir is None:
        return 2
    close(dist)
    if dist is not None and not dist.is_main:
        return 0
    c = train_cfg
    phases = [(c.pretrain_steps, "supervised pre-training"), (c.p_steps, "discriminator pre-training"), (c.steps, "training (--steps)")]
    split = " + ".join(f"{n} {what}" for n, what in phases if n)
    procs = f" on {dist.world} processes" if dist is not None else ""
    print(f"trained {trainer.step} steps ({split}; the log's 'step' counts all of them){procs} in {time.time() - t0:.0f} s; model: {model_dir}")
    print(f"use it: deepexposure retouch --method {'exposure' if algo == 'exposure' else 'deepexposure'} --model {run_dir} PHOTO -o OUT")
    return 0


def _run_pixelrl(args) -> int:
    """``deepexposure train --algo pixelrl``: the command's options -> a run (see commands/train.py).

    ``--inputs DIR``: the clean (denoise, restore) or well-exposed (enhance) training photos; default
    the scikit-image sample photos. ``--resume`` takes the run's saved settings; changed options follow
    the same rules as the other agents (operational ones apply, maths needs ``--allow-changes``).
    """
    from typing import Any

    from ..config import dataclass_from_args
    from ..io import list_images
    from ..pixelrl.train import PAIRED_KINDS, PhotoCrops, PixelRLConfig, PixelRLTrainer
    from ..synth import skimage_photo_paths
    from ..train import seed_everything

    run_dir: Path = args.out
    saved = None
    if args.resume:
        cfg_path = run_dir / "config.json"
        if not cfg_path.exists():
            error(f"{run_dir}: nothing to resume (no config.json)")
            return 2
        saved = json.loads(cfg_path.read_text())
    cfg = dataclass_from_args(PixelRLConfig, args, saved["train"] if saved else None)
    inputs = args.inputs or (Path(saved["inputs"]) if saved and saved.get("inputs") else None)
    if inputs is not None and not inputs.is_dir():
        error(f"{inputs}: --inputs must be a folder of photos")
        return 2
    extra: dict[str, Any] = {"algo": "pixelrl", "inputs": str(inputs.resolve()) if inputs else None,
                             "command": " ".join(["deepexposure", *getattr(args, "argv", sys.argv[1:])])}
    if saved is not None:
        changes = _resume_changes(saved, {"train": dataclasses.asdict(cfg), "agent": {}, **extra})
        changes.pop("targets", None)
        refusal = _check_resume_changes(changes, args.allow_changes)
        if refusal:
            error(refusal)
            return 2
        if changes:
            print(f"resume: {_format_changes(changes)}")
        extra["command"] = saved.get("command", extra["command"])
        extra["resumes"] = [*saved.get("resumes", []), {"command": " ".join(["deepexposure", *getattr(args, "argv", [])]),
                            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "changes": {k: list(v) for k, v in _jsonable(changes).items()}}]
    photos = list_images([inputs]) if inputs is not None else skimage_photo_paths()
    cache = args.cache_dir or run_dir / "cache"
    try:
        if cfg.task == "enhance":
            from ..pairs import SyntheticPairs

            data: Any = SyntheticPairs(photos, size=cfg.image_size, seed=cfg.seed, kinds=PAIRED_KINDS, cache_dir=cache)
            for p, why in data.skipped:
                warn(f"{p}: skipped ({why})")
        else:
            data = PhotoCrops(photos, cfg.photo_size, gray=True, cache_dir=cache, warn=warn)
    except ValueError as e:
        error(f"{inputs or 'scikit-image photos'}: {e}")
        return 2
    extra["n_photos"] = len(photos)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)  # seed first, then build
    t0 = time.time()
    trainer, model = _build_and_fit(lambda: PixelRLTrainer(cfg, data, run_dir, extra, progress=not args.quiet, warn=warn), args.resume)
    if model is None:
        return 2
    print(f"trained {trainer.step} episodes in {time.time() - t0:.0f} s; model: {model}")
    use = {"denoise": "deepexposure denoise", "restore": "deepexposure restore", "enhance": "deepexposure retouch --method pixelrl"}[cfg.task]
    print(f"use it: {use} --model {run_dir} PHOTO -o OUT")
    return 0
