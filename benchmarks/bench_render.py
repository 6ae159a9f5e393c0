"""Full-resolution render and ``retouch`` end to end vs OpenCV ``MergeMertens`` (issue #17, part 1).

Run (not part of pytest)::

    PYTHONPATH=src python benchmarks/bench_render.py [--repeat 2] [--baseline-src /path/to/old/src]

Input: ``skimage.data.astronaut()`` upscaled (bicubic) to 6000 x 4000 (24 MP) and downscaled to
500 x 333, written as JPEG (quality 92). Every measurement runs in a fresh worker process
(``--worker``); time is ``time.perf_counter``, peak extra memory is ``VmHWM - VmRSS`` after
``/proc/self/clear_refs <- 5`` taken just before the measured call (the inputs the call is given are
not counted; for ``retouch`` that is only the loaded model, the photo is decoded inside).

Rows (the reference is measured in the same run, interleaved with ours, ``--repeat`` times; the
minimum time and the maximum peak are kept):

* ``retouch_24mp``: ``pipeline.retouch_file`` (what ``deepexposure retouch`` runs per photo: decode,
  decide with the shipped model, render, encode JPEG q95, write the recipe), with the time of each
  phase; ratio against ``opencv_24mp``: ``cv2.createMergeMertens(1, 1, 1).process`` of the same
  number of exposures as the model's recipe, float32 [0, 255], precomputed (not counted).
* ``cli_24mp``: the command ``python -m deepexposure retouch IN -o OUT`` as a subprocess, wall time
  including interpreter start, imports and model load (ratio against ``opencv_24mp`` too).
* ``fusion_05mp``: ``fusion.fuse_exposures`` of the photo and 5 re-exposures at 866 x 577 (0.5 MP)
  vs ``opencv_05mp`` on the 6 precomputed exposures; warm (after one call), best of 5 per worker.
* ``retouch_500px``: ``retouch_file`` of the 500 px JPEG, per photo, in a warm process (after one
  photo): the best and the median of 10.
* with ``--baseline-src``: ``retouch_24mp`` and ``fusion_05mp`` again with that source tree on
  ``PYTHONPATH`` (e.g. the main branch before this change), labelled ``baseline``.

Results go to ``benchmarks/results/render.json`` and ``render.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_fusion import _loadavg, _proc_status as _status  # same folder: run as python benchmarks/bench_render.py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EVS_05 = [None, -1.0, -0.3, 0.4, 1.1, 1.8]


def _reset_peak() -> int:
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status()["VmRSS"]


def _photos(folder: Path) -> tuple[Path, Path]:
    import cv2
    from skimage import data

    big, small = folder / "photo24.jpg", folder / "photo500.jpg"
    if not big.exists():
        rgb = data.astronaut()
        cv2.imwrite(str(big), cv2.resize(rgb, (6000, 4000), interpolation=cv2.INTER_CUBIC)[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        cv2.imwrite(str(small), cv2.resize(rgb, (500, 333), interpolation=cv2.INTER_AREA)[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    return big, small


def _exposures(img, evs) -> list[np.ndarray]:
    import torch

    from deepexposure.filters import global_exposure

    outs = []
    for ev in evs:
        x = img if ev is None else global_exposure(img, torch.tensor([[float(ev)]]))
        outs.append(np.ascontiguousarray(x[0].permute(1, 2, 0).numpy() * 255.0, dtype=np.float32))
    return outs


def _timed_retouch(method, src: Path, out_dir: Path, name: str) -> dict:
    """retouch_file with its phases timed (the same calls, in the same order)."""
    import torch

    from deepexposure import pipeline
    from deepexposure.io import read_image
    from deepexposure.recipe import render

    phases: dict[str, float] = {}
    orig = {"read_image": read_image, "plan": method.plan, "render": render, "to_json": pipeline.Recipe.to_json}

    def wrap(key, fn):
        def inner(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[key] = phases.get(key, 0.0) + time.perf_counter() - t
        return inner

    import deepexposure.io as io_mod

    io_mod.read_image = wrap("decode", orig["read_image"])
    method.plan = wrap("decide", orig["plan"])
    pipeline.render = wrap("render", orig["render"])
    pipeline.Recipe.to_json = wrap("recipe", orig["to_json"])
    try:
        dst = out_dir / name
        t0 = time.perf_counter()
        with torch.no_grad():
            res = pipeline.retouch_file(method, src, dst, overwrite=True)
        total = time.perf_counter() - t0
    finally:
        io_mod.read_image = orig["read_image"]
        method.plan = orig["plan"]
        pipeline.render = orig["render"]
        pipeline.Recipe.to_json = orig["to_json"]
    phases["encode+write"] = total - sum(phases.values())
    op = next(o for o in res.recipe.ops if o.get("op") == "exposure_fusion")
    k = len(op["evs"]) + (1 if op.get("include_original", True) else 0)
    return {"seconds": total, "phases": {p: round(v, 3) for p, v in phases.items()}, "k": k, "evs": op["evs"],
            "include_original": op.get("include_original", True)}


def _worker(kind: str, folder: Path, k: int, evs: list | None) -> dict:
    import torch

    big, small = _photos(folder)
    out_dir = folder / "out"
    out_dir.mkdir(exist_ok=True)
    if kind == "opencv_24mp" or kind == "opencv_05mp":
        import cv2

        from deepexposure.io import read_image

        img = read_image(big).img_srgb
        if kind == "opencv_05mp":
            img = torch.nn.functional.interpolate(img, size=(577, 866), mode="area")
        ins = _exposures(img, (evs or EVS_05)[:k])
        del img
        merge = cv2.createMergeMertens(1.0, 1.0, 1.0)
        reps = 1 if kind == "opencv_24mp" else 5
        if reps > 1:
            merge.process(ins)
        best, peak = 1e9, 0
        for _ in range(reps):
            base = _reset_peak()
            t = time.perf_counter()
            merge.process(ins)
            best = min(best, time.perf_counter() - t)
            peak = max(peak, _status()["VmHWM"] - base)
        return {"seconds": best, "peak_extra_bytes": peak, "k": len(ins)}
    if kind == "fusion_05mp":
        from deepexposure import fusion
        from deepexposure.io import read_image

        img = torch.nn.functional.interpolate(read_image(big).img_srgb, size=(577, 866), mode="area")
        run = getattr(fusion, "fuse_exposures", None)
        if run is None:  # a tree before fuse_exposures: the recipe's render of the same op
            from deepexposure.recipe import Recipe, fusion_op, render

            recipe = Recipe(ops=[fusion_op([e for e in EVS_05 if e is not None])])
            run = lambda x, evs: render(recipe, x)  # noqa: E731
        run(img, EVS_05)
        best, peak = 1e9, 0
        for _ in range(5):
            base = _reset_peak()
            t = time.perf_counter()
            run(img, EVS_05)
            best = min(best, time.perf_counter() - t)
            peak = max(peak, _status()["VmHWM"] - base)
        return {"seconds": best, "peak_extra_bytes": peak, "k": len(EVS_05)}
    from deepexposure.methods import get_method

    method = get_method("deepexposure")
    if kind == "retouch_24mp":
        base = _reset_peak()
        r = _timed_retouch(method, big, out_dir, "r24.jpg")
        r["peak_extra_bytes"] = _status()["VmHWM"] - base
        return r
    if kind == "retouch_500px":
        _timed_retouch(method, small, out_dir, "warm.jpg")
        runs = [_timed_retouch(method, small, out_dir, f"s{i}.jpg") for i in range(10)]
        secs = [r["seconds"] for r in runs]
        best = min(runs, key=lambda r: r["seconds"])
        return {"seconds": min(secs), "median_seconds": statistics.median(secs), "phases": best["phases"], "k": best["k"]}
    raise ValueError(kind)


def _run_worker(kind: str, folder: Path, src: Path, k: int = 6, evs: list | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--folder", str(folder), "--k", str(k)]
    if evs is not None:
        cmd += ["--evs", json.dumps(evs)]
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_cli(folder: Path, src: Path) -> dict:
    big, _ = _photos(folder)
    out = folder / "cli_out"
    env = dict(os.environ, PYTHONPATH=str(src))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deepexposure", "retouch", str(big), "-o", str(out), "--overwrite", "--quiet"],
                          capture_output=True, text=True, env=env, check=False)
    secs = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"retouch failed:\n{proc.stderr[-3000:]}")
    return {"seconds": secs}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=2, help="interleaved runs of each row (min time, max memory kept)")
    p.add_argument("--baseline-src", type=Path, default=None, help="an older source tree to measure as 'baseline'")
    p.add_argument("--no-write", action="store_true", help="print only, do not write benchmarks/results")
    p.add_argument("--rows", default="24mp,cli,05mp,500px",
                   help="comma-separated groups to run: 24mp (retouch + OpenCV), cli, 05mp (fusion + OpenCV), 500px; "
                        "results are written only when all four run")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, default=6, help=argparse.SUPPRESS)
    p.add_argument("--evs", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.folder, args.k, json.loads(args.evs) if args.evs else None)))
        return

    ours = ROOT / "src"
    rows = set(args.rows.split(","))
    if not rows <= {"24mp", "cli", "05mp", "500px"}:
        p.error(f"--rows: unknown group in {args.rows!r}")
    if rows != {"24mp", "cli", "05mp", "500px"}:
        args.no_write = True
    runs: dict[str, list[dict]] = {}

    def add(name: str, r: dict) -> None:
        r["loadavg_after"] = _loadavg()
        runs.setdefault(name, []).append(r)
        mem = f"{r['peak_extra_bytes'] / 2**30:6.2f} GiB" if "peak_extra_bytes" in r else ""
        print(f"{name:24s} {r['seconds']:8.3f} s {mem} {r.get('phases', '')}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _photos(folder)
        _run_worker("fusion_05mp", folder, ours)  # compile / load the kernels once (numba's cache)
        for _ in range(args.repeat):
            if "24mp" in rows:
                r = _run_worker("retouch_24mp", folder, ours)
                add("retouch_24mp", r)
                add("opencv_24mp", _run_worker("opencv_24mp", folder, ours, k=r["k"],
                                               evs=([None] if r["include_original"] else []) + r["evs"]))
            if "cli" in rows:
                add("cli_24mp", _run_cli(folder, ours))
            if "05mp" in rows:
                add("fusion_05mp", _run_worker("fusion_05mp", folder, ours))
                add("opencv_05mp", _run_worker("opencv_05mp", folder, ours, k=len(EVS_05)))
            if "500px" in rows:
                add("retouch_500px", _run_worker("retouch_500px", folder, ours))
            if args.baseline_src:
                add("baseline_retouch_24mp", _run_worker("retouch_24mp", folder, args.baseline_src))
                add("baseline_fusion_05mp", _run_worker("fusion_05mp", folder, args.baseline_src))

    best = {}
    for name, rs in runs.items():
        b = dict(min(rs, key=lambda r: r["seconds"]))
        b["all_seconds"] = [round(r["seconds"], 3) for r in rs]
        if any("peak_extra_bytes" in r for r in rs):
            b["peak_extra_bytes"] = max(r.get("peak_extra_bytes", 0) for r in rs)
        best[name] = b
    ref24, ref05 = best.get("opencv_24mp"), best.get("opencv_05mp")
    for name, b in best.items():
        ref = ref24 if "24mp" in name else ref05 if "05mp" in name else None
        if ref is not None and not name.startswith("opencv"):
            b["time_ratio_vs_opencv"] = round(b["seconds"] / ref["seconds"], 3)
            if "peak_extra_bytes" in b:
                b["mem_ratio_vs_opencv"] = round(b["peak_extra_bytes"] / ref["peak_extra_bytes"], 3)
    targets = {
        "retouch_24mp": ("time_ratio_vs_opencv", 0.5), "cli_24mp": ("time_ratio_vs_opencv", 0.5),
        "fusion_05mp": ("time_ratio_vs_opencv", 1.0), "retouch_500px": ("seconds", 0.1),
    }
    for name, (key, limit) in targets.items():
        if key in best.get(name, {}):
            best[name]["target"] = f"{key} <= {limit}"
            best[name]["target_met"] = bool(best[name][key] <= limit)
    if "mem_ratio_vs_opencv" in best.get("retouch_24mp", {}):
        best["retouch_24mp"]["mem_target_met"] = bool(best["retouch_24mp"]["mem_ratio_vs_opencv"] <= 0.5)

    import cv2
    import torch

    meta = {
        "command": "PYTHONPATH=src python " + " ".join(["benchmarks/bench_render.py"] + (argv if argv is not None else sys.argv[1:])),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "torch": torch.__version__, "opencv": cv2.__version__, "numba": __import__("numba").__version__,
        "torch_threads_default": torch.get_num_threads(),
    }
    print(json.dumps(meta, indent=1))
    print(json.dumps({n: {k: b[k] for k in ("time_ratio_vs_opencv", "mem_ratio_vs_opencv", "target_met") if k in b}
                      for n, b in best.items()}))
    if args.no_write:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "render.json").write_text(json.dumps({"meta": meta, "results": best}, indent=1, default=str) + "\n")
    gib = lambda b: f"{b['peak_extra_bytes'] / 2**30:.2f}" if "peak_extra_bytes" in b else ""  # noqa: E731
    lines = [
        "# Full-resolution render and retouch end to end vs OpenCV MergeMertens (issue #17 part 1)",
        "",
        f"Command: `{meta['command']}`; torch {meta['torch']}, OpenCV {meta['opencv']}, numba {meta['numba']}, "
        f"{os.cpu_count()} CPU cores shared with other jobs (load average after each run in render.json). "
        "Each row: fresh worker process; minimum time, maximum peak extra memory over the runs.",
        "",
        "| row | K | time (s) | peak extra (GiB) | time / OpenCV | memory / OpenCV | target | met |",
        "|---|--:|---:|---:|---:|---:|---|---|",
    ]
    for name, b in best.items():
        lines.append(f"| {name} | {b.get('k', '')} | {b['seconds']:.3f} | {gib(b)} | {b.get('time_ratio_vs_opencv', '')} | "
                     f"{b.get('mem_ratio_vs_opencv', '')} | {b.get('target', '')} | {b.get('target_met', '')} |")
    lines += ["", "Phases of the fastest run (s):", ""]
    lines += [f"- {name}: {b['phases']}" for name, b in best.items() if "phases" in b]
    lines += ["", "Every run's time (s) and the load average after the last one:", ""]
    lines += [f"- {name}: {b['all_seconds']} (load {runs[name][-1]['loadavg_after']})" for name, b in best.items()]
    if "median_seconds" in best["retouch_500px"]:
        lines += ["", f"retouch_500px median of 10 photos in the fastest worker: {best['retouch_500px']['median_seconds']:.3f} s."]
    (RESULTS / "render.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
