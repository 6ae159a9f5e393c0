#!/usr/bin/env python3
"""DeepExposure training throughput: this tree against a reference commit, measured in the same run.

    python benchmarks/bench_train.py [--ref e10b4f7] [--repeats 2] [--steps 3] [--threads 1]

The reference commit's ``src/`` is extracted (``git archive``) into a temporary folder; every
configuration runs in a fresh subprocess with ``PYTHONPATH`` pointing at one tree or the other, and
the trees alternate, repeat by repeat, so both see the same machine load. A worker builds the
same data and networks (same seed), runs one warm-up step and then ``--steps`` full training steps
(``Trainer.train_one``: one agent update of N images x T segments, then ``d_steps`` WGAN-GP
discriminator updates), timing phases with wrappers around the methods both trees share, then
profiles one more step with ``torch.profiler`` and splits its CPU time into the networks'
arithmetic (convolutions forward/backward/double-backward, matrix products) and everything else.

Paper settings: N = 8, T = 5, 64 x 64, d_steps = 5, 32 base channels; also N = 64.
Writes ``benchmarks/results/train_throughput.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

CONV_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution_double_backward",
            "aten::thnn_conv2d", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward")
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm")


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from deepexposure.agents.deepexposure import DeepExposureAgent, DeepExposureConfig
    from deepexposure.train import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    n_img = max(32, args.batch)
    inputs = torch.rand(n_img, 3, 64, 64, generator=g) * 0.6
    targets = torch.rand(n_img, 3, 64, 64, generator=g) * 0.6 + 0.2
    kw = {} if args.policy_gradient == "old" else {"policy_gradient": args.policy_gradient}
    torch.manual_seed(0)
    agent = DeepExposureAgent(DeepExposureConfig(algo=args.algo, n_segments=5, base_channels=32, **kw), args.batch)
    tr = Trainer(agent, TrainConfig(p_steps=0, steps=100, batch_size=args.batch, d_steps=5), inputs, targets, "/nonexistent")
    t0 = time.perf_counter()
    agent.prepare(inputs)
    seg_per_image = (time.perf_counter() - t0) / inputs.shape[0]

    timers: dict[str, float] = {}

    def wrap(obj, name, label):
        fn = getattr(obj, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[label] = timers.get(label, 0.0) + time.perf_counter() - t

        setattr(obj, name, timed)

    wrap(tr, "_disc_update", "discriminator updates (incl. gradient penalty)")
    wrap(agent, "train_step", "agent update (roll-out, fusion, scores, policy/value backward)")
    wrap(tr, "_sample_idx", "data: index sampling")
    wrap(agent, "_noise", "OU noise")
    tr.train_one()  # warm-up
    timers.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        tr.train_one()
    dt = (time.perf_counter() - t0) / args.steps
    cpu = (time.process_time() - c0) / args.steps
    phases = {k: v / args.steps for k, v in timers.items()}
    phases["rest of the step (lr schedule, bookkeeping)"] = dt - sum(phases.values())

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tr.train_one()
    conv = gemm = total = 0.0
    for e in prof.key_averages():
        total += e.self_cpu_time_total
        if e.key in CONV_OPS:
            conv += e.self_cpu_time_total
        elif e.key in GEMM_OPS:
            gemm += e.self_cpu_time_total
    return {
        "s_per_step": dt,
        "images_per_s": args.batch / dt,
        "images_per_cpu_s": args.batch / cpu,
        "phases_s": phases,
        "segmentation_s_per_image_once": seg_per_image,
        "profile_share": {"convolutions": conv / total, "matrix products": gemm / total,
                          "everything else": (total - conv - gemm) / total},
    }


def extract(ref: str, dest: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tf:
        tf.extractall(dest)
    return dest / "src"


def run_worker(src: Path, algo: str, pg: str, batch: int, steps: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--worker", "--algo", algo, "--policy-gradient", pg, "--batch", str(batch),
           "--steps", str(steps), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="e10b4f7", help="reference commit (the code before the optimisation)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="8,64")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--algo", default="de2")
    ap.add_argument("--policy-gradient", default="paper")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    new_src = ROOT / "src"
    # (label, tree, algo, policy_gradient); "old" = the reference tree, which has no such option
    configs = []
    for b in [int(x) for x in args.batches.split(",")]:
        for algo in (("de2", "de1") if b <= 8 else ("de2",)):
            configs += [(b, algo, "ref", "old"), (b, algo, "new", "direct"), (b, algo, "new", "paper")]
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref_src = extract(args.ref, Path(tmp))
        for rep in range(args.repeats):
            order = configs if rep % 2 == 0 else configs[::-1]
            for b, algo, tree, pg in order:
                key = f"N={b} {algo} {tree}:{pg}"
                r = run_worker(ref_src if tree == "ref" else new_src, algo, pg, b, args.steps, args.threads)
                results.setdefault(key, []).append(r)
                print(f"{key}: {r['images_per_s']:.2f} images/s, {r['images_per_cpu_s']:.2f} images per CPU-second", flush=True)
    summary = {}
    for key, rs in results.items():
        ips = [r["images_per_s"] for r in rs]
        ipc = [r["images_per_cpu_s"] for r in rs]
        summary[key] = {"images_per_s_median": statistics.median(ips), "images_per_s_all": ips,
                        "images_per_cpu_s_median": statistics.median(ipc), "images_per_cpu_s_all": ipc, "runs": rs}
    out = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
           "ref": args.ref, "steps_per_run": args.steps, "repeats": args.repeats, "results": summary}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(out, indent=2))
    (RESULTS / "train_throughput.md").write_text(render(out))
    print(render(out))


def render(out: dict) -> str:
    res = out["results"]
    lines = [
        "# Training throughput (DeepExposure, this tree vs the reference commit, same run)",
        "",
        f"`python benchmarks/bench_train.py` — reference `{out['ref']}` (before the optimisation and before "
        f"`policy_gradient`), {out['threads']} torch thread(s) on a {out['cpus']}-CPU machine shared with other jobs, "
        f"{out['steps_per_run']} timed steps per run after one warm-up, {out['repeats']} runs per row, trees alternating. "
        "Paper settings: T = 5 segments, 64x64, d_steps = 5, 32 base channels.",
        "",
        "Images per CPU-second (one thread: the process's CPU time) is the steadier measure on a machine",
        "shared with other jobs; wall-clock images/s is given too.",
        "",
        "| N | algo | tree: gradient path | images per CPU-s (median; runs) | vs reference | images/s wall (median; runs) | vs reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, s in res.items():
        n, algo, tp = key.split(" ")
        ref = res.get(f"{n} {algo} ref:old")
        cells = []
        for m in ("images_per_cpu_s", "images_per_s"):
            ratio = s[f"{m}_median"] / ref[f"{m}_median"] if ref else float("nan")
            runs = ", ".join(f"{v:.2f}" for v in s[f"{m}_all"])
            cells.append(f"{s[f'{m}_median']:.2f} ({runs}) | {ratio:.2f}x")
        lines.append(f"| {n[2:]} | {algo} | {tp} | " + " | ".join(cells) + " |")
    lines += ["", "## Where the time goes (seconds per training step, first run of each row)", ""]
    keys = list(res)
    phase_names = []
    for k in keys:
        for p in res[k]["runs"][0]["phases_s"]:
            if p not in phase_names:
                phase_names.append(p)
    lines.append("| phase | " + " | ".join(keys) + " |")
    lines.append("|---|" + "---|" * len(keys))
    for p in phase_names:
        lines.append(f"| {p} | " + " | ".join(f"{res[k]['runs'][0]['phases_s'].get(p, 0.0):.3f}" for k in keys) + " |")
    lines.append("| segmentation (once per run, per image, cached) | " + " | ".join(
        f"{res[k]['runs'][0]['segmentation_s_per_image_once']:.3f}" for k in keys) + " |")
    lines += ["", "Share of the profiled step's CPU time (torch.profiler, self time by operator):", ""]
    lines.append("| operators | " + " | ".join(keys) + " |")
    lines.append("|---|" + "---|" * len(keys))
    for cat in ("convolutions", "matrix products", "everything else"):
        lines.append(f"| {cat} | " + " | ".join(f"{res[k]['runs'][0]['profile_share'][cat]:.0%}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
