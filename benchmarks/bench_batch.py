#!/usr/bin/env python3
"""Batch throughput of ``deepexposure retouch`` on a folder of 12 MP photos, and DDP training step time.

    python benchmarks/bench_batch.py [--photos 200] [--megapixels 12] [--small 2] [--ddp-steps 6]

1. Writes ``--photos`` JPEGs of ``--megapixels`` into a temporary folder: the photos shipped in
   ``deepexposure/samples``, cropped differently and flipped, upscaled (bicubic) to 4:3.
2. Runs ``deepexposure retouch FOLDER -o OUT --quiet`` in a fresh process with ``--jobs 1``,
   ``--jobs 2`` and ``--engine ray --jobs 2`` (a local 2-CPU Ray cluster started by the command),
   configurations alternating, on the whole folder and on its first ``--small`` photos. End to end
   photos per minute is ``photos / wall time``; the two sizes split the wall time into a fixed start
   (process start, model load, worker or cluster start) and a steady per-photo rate,
   ``t(n) = start + n / rate``. One untimed run per configuration on one photo comes first, so
   that one-time costs (numba compiling its on-disk cache on a fresh install) are not counted.
3. Trains DeepExposure II at the paper's settings (N = 8, T = 5, 64 x 64, d_steps = 5, 32 base
   channels) with ``deepexposure train`` in one process and with ``torchrun --nproc-per-node 2``
   (gloo, 1 thread per process), and reads the step times from ``log.csv``.

Writes ``benchmarks/results/batch.json`` and ``.md``; docs/scaling.md builds on them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {"jobs 1": ["--jobs", "1"], "jobs 2": ["--jobs", "2"], "ray (local, 2 CPUs)": ["--engine", "ray", "--jobs", "2"]}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("OMP_NUM_THREADS", None)  # the command sets threads per worker itself
    return env


def make_photos(folder: Path, n: int, megapixels: float) -> list[Path]:
    """``n`` distinct 4:3 JPEGs of about ``megapixels`` from the shipped samples (crop, flip, bicubic upscale)."""
    from PIL import Image

    from deepexposure.samples import sample_paths

    folder.mkdir(parents=True)
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = w * 3 // 4
    sources = [Image.open(p).convert("RGB") for p in sample_paths()]
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        k = i // len(sources)
        sw, sh = src.size
        cw, ch = int(sw * 0.8), int(sh * 0.8)
        x0, y0 = (k * 7) % (sw - cw + 1), (k * 5) % (sh - ch + 1)
        img = src.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BICUBIC)
        if k % 2:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        p = folder / f"p{i:04d}.jpg"
        img.save(p, quality=92)
        out.append(p)
    return out


def run_retouch(folder: Path, out: Path, opts: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "deepexposure", "retouch", str(folder), "-o", str(out), "--quiet", *opts],
                       env=_env(), capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"retouch {' '.join(opts)} failed: {r.stderr[-2000:]}")
    return dt


def bench_retouch(args, tmp: Path) -> dict:
    from PIL import Image

    t0 = time.perf_counter()
    photos = make_photos(tmp / "big", args.photos, args.megapixels)
    made = time.perf_counter() - t0
    small = tmp / "small"
    small.mkdir()
    for p in photos[: args.small]:
        os.link(p, small / p.name)
    res: dict = {"photos": args.photos, "small": args.small, "megapixels": args.megapixels,
                 "size": list(Image.open(photos[0]).size), "make_s": made, "configs": {}}
    times: dict[str, dict[str, float]] = {k: {} for k in CONFIGS}
    load: dict[str, dict[str, list[float]]] = {k: {} for k in CONFIGS}
    order = list(CONFIGS.items())
    warm = tmp / "warm"  # one untimed photo per configuration first: numba's on-disk cache, Ray's first start
    warm.mkdir()
    os.link(photos[0], warm / photos[0].name)
    for name, opts in order:
        print(f"{name:22s} warm-up {run_retouch(warm, tmp / 'out', opts):8.1f} s (not counted)", flush=True)
    for size, folder in (("small", small), ("big", tmp / "big")):  # configurations alternate: A B C, then C B A
        for name, opts in order:
            before = os.getloadavg()[0]
            times[name][size] = run_retouch(folder, tmp / "out", opts)
            load[name][size] = [before, os.getloadavg()[0]]
            print(f"{name:22s} {size:5s} {times[name][size]:8.1f} s  load {load[name][size]}", flush=True)
        order.reverse()
    for name, t in times.items():
        n, m = args.photos, args.small
        rate = (n - m) / (t["big"] - t["small"]) if t["big"] > t["small"] else float("nan")
        res["configs"][name] = {"wall_s": t["big"], "wall_small_s": t["small"], "photos_per_min": 60 * n / t["big"],
                                "steady_photos_per_min": 60 * rate, "start_s": t["small"] - m / rate, "load_avg_before_after": load[name]}
    return res


def _toy_training_folders(root: Path, n: int) -> tuple[Path, Path]:
    import torch

    from deepexposure.io import write_image

    ins, tgs = root / "ins", root / "tgs"
    ins.mkdir()
    tgs.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        base = torch.rand(1, 3, 6, 6, generator=g)
        img = torch.nn.functional.interpolate(base, size=(96, 128), mode="bilinear", align_corners=False)
        write_image(ins / f"i{i}.png", img * 0.5)
        write_image(tgs / f"t{i}.png", img)
    return ins, tgs


def _step_times(run: Path) -> list[float]:
    with (run / "log.csv").open() as f:
        t = [float(r["time_s"]) for r in csv.DictReader(f)]
    return [b - a for a, b in zip(t, t[1:])]  # the first step (warm-up) is left out


def bench_ddp(args, tmp: Path) -> dict:
    ins, tgs = _toy_training_folders(tmp, 16)
    opts = ["--inputs", str(ins), "--targets", str(tgs), "--algo", "de2", "--steps", str(args.ddp_steps), "--p-steps", "0",
            "--batch-size", "8", "--n-segments", "5", "--image-size", "64", "--d-steps", "5", "--base-channels", "32",
            "--threads", "1", "--sample-every", "0", "--ckpt-every", "1000", "--quiet"]
    env = dict(_env(), OMP_NUM_THREADS="1")
    launch = {"1 process": [sys.executable, "-m", "deepexposure", "train"],
              "2 processes (torchrun, gloo)": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                                               "-m", "deepexposure", "train"]}
    res: dict = {"settings": "de2, N=8 (global), T=5, 64x64, d_steps=5, 32 base channels, 1 thread per process", "runs": {}}
    for rep in range(args.repeats):
        for name, cmd in launch.items():
            out = tmp / f"run_{rep}_{name.split()[0]}"
            r = subprocess.run([*cmd, *opts, "--out", str(out)], env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"train ({name}) failed: {r.stderr[-2000:]}")
            res["runs"].setdefault(name, []).extend(_step_times(out))
            print(f"{name:30s} steps {statistics.median(_step_times(out)):.3f} s", flush=True)
    res["median_step_s"] = {k: statistics.median(v) for k, v in res["runs"].items()}
    return res


def write(res: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(res, indent=1) + "\n")
    r = res["retouch"]
    w, h = r["size"]
    lines = [
        "# Batch retouching throughput and DDP step time",
        "",
        f"`python benchmarks/bench_batch.py {res['argv']}` on {res['machine']}. "
        f"{r['photos']} JPEGs of {w}x{h} ({w * h / 1e6:.1f} MP; the shipped samples, cropped, flipped, upscaled), "
        f"default model, `deepexposure retouch FOLDER -o OUT --quiet`, each run a fresh process; the same runs on the first "
        f"{r['small']} photos split the wall time into a fixed start and a steady rate.",
        "",
        "| engine | photos/min end to end | wall s | steady photos/min | fixed start s | vs jobs 1 (steady) |",
        "|---|---|---|---|---|---|",
    ]
    base = r["configs"]["jobs 1"]["steady_photos_per_min"]
    for name, c in r["configs"].items():
        lines.append(f"| {name} | {c['photos_per_min']:.2f} | {c['wall_s']:.1f} | {c['steady_photos_per_min']:.2f} | "
                     f"{c['start_s']:.1f} | {c['steady_photos_per_min'] / base:.2f}x |")
    d = res["ddp"]
    lines += ["", f"## DDP training step time ({d['settings']})", "",
              "| launch | median s/step | steps timed | speed-up vs 1 process |", "|---|---|---|---|"]
    one = d["median_step_s"]["1 process"]
    for name, s in d["median_step_s"].items():
        lines.append(f"| {name} | {s:.3f} | {len(d['runs'][name])} | {one / s:.2f}x |")
    if res.get("note"):
        lines += ["", res["note"]]
    (RESULTS / "batch.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--small", type=int, default=2, help="photos of the short runs that measure the fixed start")
    ap.add_argument("--ddp-steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=1, help="DDP runs per launch")
    ap.add_argument("--note", default="", help="a sentence added to the markdown (e.g. why fewer photos)")
    ap.add_argument("--render", action="store_true", help="only rewrite the markdown from results/batch.json (with --note)")
    args = ap.parse_args()
    if args.render:
        res = json.loads((RESULTS / "batch.json").read_text())
        res["note"] = args.note or res.get("note", "")
        write(res)
        return
    sys.path.insert(0, str(ROOT / "src"))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    res: dict = {"argv": " ".join(sys.argv[1:]), "machine": f"{cpus} CPUs ({platform.processor() or platform.machine()}), shared with other jobs",
                 "note": args.note}
    with tempfile.TemporaryDirectory() as tmp:
        res["retouch"] = bench_retouch(args, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        res["ddp"] = bench_ddp(args, Path(tmp))
    write(res)
    print((RESULTS / "batch.md").read_text())


if __name__ == "__main__":
    main()
