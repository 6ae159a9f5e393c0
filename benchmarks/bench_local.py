"""Local render (per-region exposure through edge-aware masks) vs the fused render, time and peak memory.

Run (not part of pytest)::

    PYTHONPATH=src python benchmarks/bench_local.py [--sizes 24] [--repeat 1] [--threads 1]

Input: ``skimage.data.astronaut()`` upscaled (bilinear, torch) to a 3:2 frame of about 24 MP; its
64x64 thumbnail segmented into T = 5 regions (:func:`deepexposure.segment.segment_thumbnail`), and
one recipe per renderer with the same exposures ``[1.0, 0.5, 0.0, -0.5, 0.8]``:

* ``fused``: the paper's ``exposure_fusion`` op (the 5 global exposures + the original, streaming
  Mertens fusion) -- the reference every ratio is taken against;
* ``local``: the ``local_exposure`` op (masks rebuilt from the segment map with the guide at 1024 px,
  then rendered strip by strip);
* ``local+fusion``: ``local`` fused with the original (Mertens, 2 images);
* ``local_filters``: a ``local_filters`` op, each region with a chain of 3 white-box filters
  (exposure, saturation, contrast);
* ``masks``: building the masks only (``RegionMasks.build`` + every strip of ``rows``), no render.

Every measurement runs in a fresh subprocess: after the inputs are built and ``gc.collect()``,
``/proc/self/clear_refs <- 5`` resets the resident-set high-water mark, ``VmRSS`` is the baseline,
``deepexposure.recipe.render(recipe, img)`` is timed, and ``VmHWM - baseline`` is the *peak extra
memory* of the call (the output image, 288 MB at 24 MP, included). Helpers are shared with
``bench_fusion.py``. Results go to ``benchmarks/results/local_render.json`` and ``local_render.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fusion import _frame, _loadavg, _proc_status

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("fused", "local", "local+fusion", "local_filters", "masks")
EVS = [1.0, 0.5, 0.0, -0.5, 0.8]


def _worker(method: str, mp: float, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    from skimage import data

    from deepexposure.local import local_exposure_op, local_filters_op, region_masks_for
    from deepexposure.masks import mask_strip_rows
    from deepexposure.recipe import Recipe, fusion_op, render
    from deepexposure.resize import make_thumbnail
    from deepexposure.segment import SegmentConfig, segment_thumbnail

    h, w = _frame(mp)
    small = torch.from_numpy(data.astronaut()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    img = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp_(0, 1)
    seg = segment_thumbnail(make_thumbnail(img), SegmentConfig(n_segments=len(EVS)))
    chain = [{"name": "exposure", "params": [0.5]}, {"name": "saturation", "params": [0.3]}, {"name": "contrast", "params": [0.2]}]
    ops = {
        "fused": fusion_op(EVS),
        "local": local_exposure_op(EVS),
        "local+fusion": local_exposure_op(EVS, fuse_original=True),
        "local_filters": local_filters_op([chain] * len(EVS)),
        "masks": local_exposure_op(EVS),
    }
    recipe = Recipe(ops=[ops[method]], segments=seg.summary(), segment_map=seg.label_rows())
    recipe.validate()

    def masks_only() -> torch.Tensor:
        rm = region_masks_for(recipe, recipe.ops[0], img)
        rows = mask_strip_rows(w, rm.n_regions)
        total = torch.zeros(())
        for r0 in range(0, h, rows):
            total += rm.rows(img[:, :, r0 : r0 + rows], r0, min(r0 + rows, h))[:, 0].sum()
        return total

    with torch.no_grad():
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _proc_status()["VmRSS"]
        t0, c0 = time.perf_counter(), time.process_time()
        out = masks_only() if method == "masks" else render(recipe, img)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        peak = _proc_status()["VmHWM"]
    del out
    return {
        "method": method,
        "megapixels": round(h * w / 1e6, 2),
        "height": h,
        "width": w,
        "regions": len(EVS),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "peak_extra_bytes": peak - base,
        "baseline_rss_bytes": base,
        "torch_threads": torch.get_num_threads(),
    }


def _run_worker(method: str, mp: float, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--mp", str(mp), "--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {method} {mp} MP failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _report(rows: list[dict], meta: dict) -> list[str]:
    lines = [
        "# Local render vs fused render at full resolution",
        "",
        (f"Command: `{meta['command']}`; torch {meta['torch']}, {meta['cpus']} CPU cores shared with other jobs, "
         f"{meta['threads']} torch thread(s), `OMP_WAIT_POLICY=PASSIVE`. T = {len(meta['evs'])} regions, exposures {meta['evs']}."),
        ("Peak extra memory: fresh subprocess, `clear_refs=5`, then `VmHWM - VmRSS` before `render(recipe, img)` "
         "(the input photo is not counted, the output is). On a loaded machine wall time is inflated; CPU time is the steadier ratio."),
        "",
        "| MP | renderer | time (s) | CPU (s) | peak extra (GiB) | time / fused | CPU / fused | memory / fused |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu_ratio = r.get("cpu_vs_fused", round(r["cpu_seconds"] / next(
            x["cpu_seconds"] for x in rows if x["megapixels"] == r["megapixels"] and x["method"] == "fused"), 3))
        lines.append(f"| {r['megapixels']} | {r['method']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                     f"{r['peak_extra_bytes'] / 2**30:.2f} | {r['time_vs_fused']} | {cpu_ratio} | {r['memory_vs_fused']} |")
    lines += ["", "Every run's time (s) with the 1/5/15-min load average after it:", ""]
    lines += [f"- {r['megapixels']} MP {r['method']}: {r['runs_seconds']} (load {r['load_after']})" for r in rows]
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="24", help="comma-separated megapixel counts")
    p.add_argument("--repeat", type=int, default=1, help="runs per method and size (minimum time, maximum memory reported)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--no-write", action="store_true", help="print only, do not write benchmarks/results")
    p.add_argument("--report-only", action="store_true", help="rewrite local_render.md from local_render.json, no measurement")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--mp", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.mp, args.threads)))
        return
    if args.report_only:
        saved = json.loads((RESULTS / "local_render.json").read_text())
        (RESULTS / "local_render.md").write_text("\n".join(_report(saved["rows"], saved["meta"])) + "\n")
        return
    import torch

    methods = [m for m in args.methods.split(",") if m]
    if "fused" not in methods:
        methods.insert(0, "fused")
    rows = []
    for mp in [float(s) for s in args.sizes.split(",")]:
        for method in methods:
            runs = []
            for _ in range(args.repeat):
                r = _run_worker(method, mp, args.threads)
                r["load_after"] = _loadavg()
                runs.append(r)
                print(f"{mp} MP {method}: {r['seconds']} s, peak extra {r['peak_extra_bytes'] / 2**30:.2f} GiB", flush=True)
            best = dict(min(runs, key=lambda r: r["seconds"]))
            best["peak_extra_bytes"] = max(r["peak_extra_bytes"] for r in runs)
            best["runs_seconds"] = [r["seconds"] for r in runs]
            best["load_after"] = [r["load_after"] for r in runs]
            rows.append(best)
    for r in rows:
        ref = next(x for x in rows if x["megapixels"] == r["megapixels"] and x["method"] == "fused")
        r["time_vs_fused"] = round(r["seconds"] / ref["seconds"], 3)
        r["cpu_vs_fused"] = round(r["cpu_seconds"] / ref["cpu_seconds"], 3)
        r["memory_vs_fused"] = round(r["peak_extra_bytes"] / ref["peak_extra_bytes"], 3)
    cmd = "PYTHONPATH=src python benchmarks/bench_local.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"command": cmd.strip(), "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
            "threads": args.threads, "evs": EVS}
    lines = _report(rows, meta)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "local_render.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        (RESULTS / "local_render.md").write_text(text)


if __name__ == "__main__":
    main()
