#!/usr/bin/env python3
"""PixelRL throughput: training crops per second and inference seconds per image, against BM3D measured
in the same run (the issue's speed target: PixelRL at >= 10x BM3D's speed).

    python benchmarks/bench_pixelrl.py [--channels 64,16] [--sizes 481x321,4000x3000] [--episodes 2] [--bm3d]

Training: ``PixelRLTrainer.train_one`` (one episode of ``t_max`` = 5 steps, batch B of S x S crops,
forward + backward + Adam) after one warm-up episode; crops/s = B * episodes / wall time, also per
CPU-second (the process's CPU time; steadier on a shared machine). Inference: ``run_agent`` (greedy,
5 steps, grey, tiled at 1024 px) on a random grey image of each size; seconds per image. BM3D
(``bm3d.bm3d``, the reference) runs on the first size only (it takes minutes per megapixel).
Writes ``benchmarks/results/pixelrl_throughput.json`` and ``.md`` (``--name`` another stem).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def _time(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    from deepexposure.pixelrl.model import run_agent
    from deepexposure.pixelrl.net import PixelRLNet, PixelRLNetConfig
    from deepexposure.pixelrl.tasks import Task
    from deepexposure.pixelrl.train import PixelRLConfig, PixelRLTrainer

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--channels", default="64,16")
    ap.add_argument("--train", default="64x70,8x40", help="training settings BATCHxCROP (the paper: 64x70)")
    ap.add_argument("--sizes", default="481x321,1000x1000", help="inference image sizes WxH")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bm3d", action="store_true", help="also time BM3D on the first size (the reference)")
    ap.add_argument("--md-only", action="store_true", help="rewrite the .md from the existing .json")
    ap.add_argument("--name", default="pixelrl_throughput", help="results file stem in benchmarks/results (default pixelrl_throughput)")
    args = ap.parse_args()
    if args.md_only:
        write_md(json.loads((RESULTS / f"{args.name}.json").read_text()), args.name)
        return 0
    torch.set_num_threads(args.threads)
    task = Task.make("denoise")
    chans = [int(c) for c in args.channels.split(",")]
    rows_train, rows_inf = [], []
    for ch in chans:
        for spec in args.train.split(","):
            b, s = (int(v) for v in spec.split("x"))
            torch.manual_seed(0)
            tr = PixelRLTrainer(PixelRLConfig(steps=1000, batch_size=b, image_size=s, channels=ch, rmc_start=0.0), None, Path("/nonexistent"))
            g = torch.Generator().manual_seed(0)
            tr.batch = lambda b=b, s=s, g=g: (torch.rand(b, 1, s, s, generator=g), torch.rand(b, 1, s, s, generator=g))
            tr.train_one()
            wall, cpu = _time(lambda tr=tr: [tr.train_one() for _ in range(args.episodes)])
            rows_train.append({"channels": ch, "batch": b, "crop": s, "crops_per_s": b * args.episodes / wall,
                               "crops_per_cpu_s": b * args.episodes / cpu, "s_per_episode": wall / args.episodes})
            print(rows_train[-1], flush=True)
        net = PixelRLNet(PixelRLNetConfig(1, 9, ch)).eval()
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            x = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(1))
            wall, cpu = _time(lambda net=net, x=x: run_agent(net, task, x, tile=1024))
            rows_inf.append({"channels": ch, "size": size, "megapixels": w * h / 1e6, "s_per_image": wall, "cpu_s": cpu})
            print(rows_inf[-1], flush=True)
    ref = None
    if args.bm3d:
        import bm3d

        w, h = (int(v) for v in args.sizes.split(",")[0].split("x"))
        x = torch.rand(h, w, generator=torch.Generator().manual_seed(1)).double().numpy()
        wall, cpu = _time(lambda: bm3d.bm3d(x, sigma_psd=25 / 255))
        ref = {"size": f"{w}x{h}", "s_per_image": wall, "cpu_s": cpu}
        print("bm3d", ref, flush=True)
    out = {"command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "threads": args.threads,
           "cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__, "train": rows_train,
           "inference": rows_inf, "bm3d": ref}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2) + "\n")
    write_md(out, args.name)
    return 0


def write_md(out: dict, name: str = "pixelrl_throughput") -> None:
    """``NAME.md`` from the JSON written by :func:`main` (``--md-only`` rewrites it)."""
    rows_train, rows_inf, ref = out["train"], out["inference"], out["bm3d"]
    lines = ["# PixelRL throughput", "", f"`{out['command']}` — {out['threads']} torch thread(s), {out['cpus']} CPUs shared with other jobs "
             "(a background training ran at the same time), torch " + out["torch"] + ".", "",
             "## Training (one episode: t_max = 5 steps, forward + backward + Adam)", "",
             "| channels | batch x crop | crops / s (wall) | crops / CPU-s | s / episode |", "|---|---|---|---|---|"]
    lines += [f"| {r['channels']} | {r['batch']} x {r['crop']} | {r['crops_per_s']:.2f} | {r['crops_per_cpu_s']:.2f} | {r['s_per_episode']:.2f} |"
              for r in rows_train]
    lines += ["", "## Inference (greedy, 5 steps, grey)", "",
              "| channels | size | MP | s / image (wall) | CPU-s / image | BM3D CPU-s / PixelRL CPU-s (same size) |", "|---|---|---|---|---|---|"]
    for r in rows_inf:
        vs = f"{ref['cpu_s'] / r['cpu_s']:.1f}x" if ref and ref["size"] == r["size"] else "-"
        lines.append(f"| {r['channels']} | {r['size']} | {r['megapixels']:.2f} | {r['s_per_image']:.2f} | {r['cpu_s']:.2f} | {vs} |")
    if ref:
        lines += ["", f"BM3D (reference, `bm3d.bm3d`, sigma 25) on {ref['size']}: {ref['s_per_image']:.1f} s wall, "
                  f"{ref['cpu_s']:.1f} CPU-s per image. The machine was shared with other jobs during the run, so "
                  "CPU-seconds are the measure to compare."]
    walls = [r["s_per_image"] / r["cpu_s"] for r in rows_inf if r["cpu_s"] > 0]
    if walls:
        lines += [f"Wall time was up to {max(walls):.1f}x the process's CPU time in this run."]
    if not any(r["megapixels"] >= 10 for r in rows_inf):
        lines += ["12 MP inference was not run: at these rates it would take about 80 x the 0.15 MP time."]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
