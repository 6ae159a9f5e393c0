"""Throughput of the training-pair stream ``SyntheticPairs.batch`` (pairs per second), one thread.

Run (not part of pytest)::

    PYTHONPATH=src python benchmarks/bench_pairs.py [--photos /work/photos] [--hdr /work/photos/hdr] [--sizes 64,128]

For each size: ``SyntheticPairs(photos, hdr, size, kinds=...)`` (working copies decoded beforehand,
not timed), then ``--steps`` batches of ``--batch`` pairs timed with ``time.perf_counter``. Rows:
photos only with the default kind, photos only with all kinds, photos + HDR maps (25 % of the pairs)
with all kinds, HDR only. The reference, measured in the same run, is the cost of what a training
step already does with a batch: ``ThumbnailDataset.sample`` (indexing a preloaded tensor) plus one
``make_thumbnail`` of the same batch, reported as a ratio. Results go to
``benchmarks/results/pairs.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _rate(ds, steps: int, batch: int) -> float:
    ds.batch(10_000, batch)  # warm-up
    t = time.perf_counter()
    for s in range(steps):
        ds.batch(s, batch)
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    from deepexposure.io import list_images
    from deepexposure.pairs import SyntheticPairs
    from deepexposure.resize import make_thumbnail

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=Path("/work/photos"))
    ap.add_argument("--hdr", type=Path, default=Path("/work/photos/hdr"))
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    photos = [p for p in list_images([args.photos], recursive=False)]
    hdr = args.hdr if args.hdr.is_dir() else None
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        # reference: what the unpaired loader does per batch (index a preloaded set) + one resize
        pool = torch.rand(len(photos), 3, 4 * size, 4 * size)
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        for _ in range(args.steps):
            make_thumbnail(pool[torch.randint(len(pool), (args.batch,), generator=g)], size)
        ref_rate = args.steps * args.batch / (time.perf_counter() - t)
        configs = [("photos, exposure", dict(kinds=None)), ("photos, all kinds", dict(kinds="all"))]
        if hdr is not None:
            configs += [("photos + HDR 25 %, all kinds", dict(kinds="all", hdr=True)), ("HDR only, all kinds", dict(kinds="all", hdr=True, only=True))]
        for label, c in configs:
            t0 = time.perf_counter()
            ds = SyntheticPairs([] if c.get("only") else photos, hdr if c.get("hdr") else None, size=size, kinds=c["kinds"], cache_dir=args.cache)
            setup = time.perf_counter() - t0
            rate = _rate(ds, args.steps, args.batch)
            rows.append({"size": size, "config": label, "pairs_per_s": rate, "setup_s": setup, "work_size": ds.work_size,
                         "reference_pairs_per_s": ref_rate, "ratio_to_reference": rate / ref_rate})
            print(f"size {size:4d}  {label:30s}  {rate:8.1f} pairs/s  (setup {setup:.1f} s, reference {ref_rate:.0f}/s, ratio {rate / ref_rate:.3f})", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"photos": len(photos), "hdr": str(hdr), "steps": args.steps, "batch": args.batch, "threads": 1, "torch": torch.__version__}
    (args.out / "pairs.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["| size | stream | pairs/s | ratio to reference | setup s |", "|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['config']} | {r['pairs_per_s']:.0f} | {r['ratio_to_reference']:.3f} | {r['setup_s']:.1f} |" for r in rows]
    (args.out / "pairs.md").write_text(f"SyntheticPairs.batch, {meta['photos']} photos, batch {args.batch}, one thread\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
