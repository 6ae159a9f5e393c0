#!/usr/bin/env python3
"""DeepExposure training throughput and inference time, on this machine.

    python benchmarks/bench_agent.py [--steps 20] [--sizes 500,24] [--threads 2]

- Training: images per second of one full training step (N = 8 images x T = 5 segment steps,
  policy update, d_steps = 5 discriminator updates) for DE I and DE II at the default network size,
  and, as the reference measured in the same run, of the roll-out alone (forward, no update).
- Inference: ``deepexposure retouch`` end to end for a 500 px and a 24 MP JPEG (decode, plan on
  the thumbnail, expose and fuse at full resolution, JPEG encode, recipe), for the default DeepExposure
  model and, as the reference, the fixed-bracket fusion baseline (same number of exposures), which
  does the same full-resolution fusion without the policy.

Writes ``benchmarks/results/agent.json`` and ``agent.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _photo(long_edge: int) -> torch.Tensor:
    import numpy as np
    import skimage.data

    from deepexposure.io import uint8_to_tensor
    from deepexposure.resize import resize_long_edge

    img = uint8_to_tensor(np.ascontiguousarray(skimage.data.astronaut()))
    return resize_long_edge(img, long_edge).clamp(0, 1)


def bench_training(algo: str, steps: int) -> dict:
    from deepexposure.agents.deepexposure import DeepExposureAgent, DeepExposureConfig, rollout
    from deepexposure.train import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(32, 3, 64, 64, generator=g) * 0.6
    targets = torch.rand(32, 3, 64, 64, generator=g) * 0.6 + 0.2
    agent = DeepExposureAgent(DeepExposureConfig(algo=algo), 8)
    tr = Trainer(agent, TrainConfig(p_steps=0, steps=steps + 2), inputs, targets, "/nonexistent")
    agent.prepare(inputs)
    tr.train_one()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_one()
    dt = (time.perf_counter() - t0) / steps
    idx = torch.arange(8)
    with torch.no_grad():
        rollout(agent.policy, inputs[idx], agent.masks[idx], agent.cfg.fusion)
        t0 = time.perf_counter()
        for _ in range(steps):
            rollout(agent.policy, inputs[idx], agent.masks[idx], agent.cfg.fusion)
        dr = (time.perf_counter() - t0) / steps
    return {"algo": algo, "s_per_step": dt, "images_per_s": 8 / dt, "rollout_images_per_s": 8 / dr,
            "step_over_rollout": dt / dr}


def bench_inference(long_edge: int, repeats: int) -> dict:
    """End to end as `deepexposure retouch` does it: decode the JPEG, decide, expose, fuse, encode."""
    import tempfile

    from deepexposure.io import write_image
    from deepexposure.methods import get_method
    from deepexposure.pipeline import retouch_file

    img = _photo(long_edge)
    out = {"long_edge": long_edge, "megapixels": img.shape[-1] * img.shape[-2] / 1e6}
    de = get_method("deepexposure")
    n = len(de.exposures(img)[0])
    methods = {"deepexposure": de, "fusion_reference": get_method("fusion", ev=[-1.0, 0.0, 1.0, 2.0, 0.5, -0.5, 1.5, 3.0][: n + 1])}
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "photo.jpg"
        write_image(src, img, quality=92)
        for name, m in methods.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                retouch_file(m, src, Path(d) / f"out_{name}.jpg", overwrite=True, write_recipe=True)
                times.append(time.perf_counter() - t0)
            out[f"{name}_s"] = min(times)
    t0 = time.perf_counter()
    de.plan(img)
    out["deepexposure_plan_s"] = time.perf_counter() - t0
    out["ratio_deepexposure_over_fusion"] = out["deepexposure_s"] / out["fusion_reference_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sizes", default="500,4899", help="long edges of the (square) test photo for inference; 4899 px = 24 MP")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = {"machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "training": [], "inference": []}
    for algo in ("de1", "de2"):
        r = bench_training(algo, args.steps)
        print(r, flush=True)
        res["training"].append(r)
    for le in [int(s) for s in args.sizes.split(",")]:
        r = bench_inference(le, repeats=3 if le <= 1000 else 1)
        print(r, flush=True)
        res["inference"].append(r)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "agent.json").write_text(json.dumps(res, indent=2))
    lines = ["# DeepExposure agent benchmark", "", f"torch {res['torch']}, {res['torch_threads']} threads. Command: `python benchmarks/bench_agent.py`", "",
             "| algo | s / step (N=8, T=5, d_steps=5) | images / s | roll-out only, images / s | step / roll-out |", "|---|---|---|---|---|"]
    for r in res["training"]:
        lines.append(f"| {r['algo']} | {r['s_per_step']:.3f} | {r['images_per_s']:.1f} | {r['rollout_images_per_s']:.1f} | {r['step_over_rollout']:.1f}x |")
    lines += ["", "| photo | MP | deepexposure retouch, end to end (s) | of which planning (s) | fixed-bracket fusion, same #exposures (s) | ratio |", "|---|---|---|---|---|---|"]
    for r in res["inference"]:
        lines.append(f"| {r['long_edge']} px | {r['megapixels']:.1f} | {r['deepexposure_s']:.2f} | {r['deepexposure_plan_s']:.2f} | {r['fusion_reference_s']:.2f} | {r['ratio_deepexposure_over_fusion']:.2f}x |")
    (RESULTS / "agent.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
