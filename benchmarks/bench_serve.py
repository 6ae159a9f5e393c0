#!/usr/bin/env python3
"""``deepexposure serve``: latency of a region-slider move on a 24 MP photo, on this machine.

    python benchmarks/bench_serve.py [--megapixels 24] [--moves 8] [--threads 1] [--previews 1024]

A real server (uvicorn on 127.0.0.1, in this process) and a real HTTP client (httpx) over the
loopback: upload a 24 MP JPEG (decode at full resolution, keep the preview), retouch it with the
default DeepExposure model, then move region 0's slider ``--moves`` times; each move is one
``POST /render`` round trip (recipe in, preview JPEG out), timed from request to last byte.
The reference, measured in the same run, is what a move would cost without the preview: the same
recipe rendered at full resolution with :func:`deepexposure.recipe.render` (as ``export`` does).
Also timed: the upload, the retouch, and the full-resolution export job (render + PNG/JPEG write).

Writes ``benchmarks/results/serve.json`` and ``serve.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _jpeg_24mp(megapixels: float) -> bytes:
    """A dark, textured synthetic photo of ``megapixels`` (3:2), as a JPEG."""
    from PIL import Image

    w = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    h = int(round(w / 1.5))
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h:8, 0:w:8]
    base = np.stack([x / w, y / h, 0.5 * (x / w + y / h)], -1) * 90
    small = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _server(work: Path, preview: int):
    import uvicorn

    from deepexposure.serve import ServeConfig, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(work_dir=work, preview_size=preview)),
                                        host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.02)
    return srv, f"http://127.0.0.1:{port}"


def bench(preview: int, data: bytes, moves: int, export: bool) -> dict:
    import httpx

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as work:
        srv, base = _server(Path(work), preview)
        try:
            c = httpx.Client(base_url=base, timeout=600)
            sid = c.post("/api/session").json()["session"]
            t0 = time.perf_counter()
            r = c.post(f"/api/s/{sid}/photos", files=[("files", ("big.jpg", data, "image/jpeg"))])
            t_upload = time.perf_counter() - t0
            p = r.json()["photos"][0]
            url = f"/api/s/{sid}/photos/{p['id']}"
            t0 = time.perf_counter()
            rec = c.post(url + "/retouch", json={"method": "deepexposure"}).json()["recipe"]
            t_retouch = time.perf_counter() - t0
            out = {"preview_size": preview, "width": p["width"], "height": p["height"], "n_exposures": len(rec["ops"][0]["evs"]),
                   "upload_s": t_upload, "retouch_s": t_retouch, "recipe": rec}
            ev0 = rec["ops"][0]["evs"][0]
            for mode, draft in (("draft", True), ("preview", False)):
                c.post(url + "/render", json={"recipe": rec, "draft": draft})  # warm-up (first use builds the draft copy)
                trips, server_ms = [], []
                for k in range(moves):
                    rec["ops"][0]["evs"][0] = round(ev0 + 0.25 * (k + 1), 3)
                    t0 = time.perf_counter()
                    r = c.post(url + "/render", json={"recipe": rec, "draft": draft})
                    trips.append(time.perf_counter() - t0)
                    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
                    server_ms.append(float(r.headers["x-render-ms"]))
                out[mode] = {"move_ms_median": 1000 * statistics.median(trips), "move_ms_min": 1000 * min(trips),
                             "move_ms_max": 1000 * max(trips), "server_render_ms_median": statistics.median(server_ms)}
            if export:
                t0 = time.perf_counter()
                jid = c.post(f"/api/s/{sid}/jobs", json={"kind": "export", "photos": [p["id"]], "format": "jpg"}).json()["id"]
                while (j := c.get(f"/api/s/{sid}/jobs/{jid}").json())["state"] not in ("done", "cancelled"):
                    time.sleep(0.1)
                out["export_s"] = time.perf_counter() - t0
                assert j["items"][0]["status"] == "done", j
            return out
        finally:
            srv.should_exit = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=24.0)
    ap.add_argument("--moves", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--previews", default="1024", help="preview sizes (long edge) to measure, comma-separated")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from deepexposure.io import read_image
    from deepexposure.recipe import Recipe, render

    data = _jpeg_24mp(a.megapixels)
    runs = [bench(int(s), data, a.moves, export=(k == 0)) for k, s in enumerate(a.previews.split(","))]

    # reference: the same recipe rendered at full resolution (what a move would cost without the preview)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "big.jpg"
        src.write_bytes(data)
        full = read_image(src).img_srgb
    recipe = Recipe.from_dict(runs[0]["recipe"])
    t0 = time.perf_counter()
    render(recipe, full)
    t_full = time.perf_counter() - t0
    del full

    res = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": a.threads,
           "full_res_render_s": t_full, "runs": [{k: v for k, v in r.items() if k != "recipe"} for r in runs]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(res, indent=2) + "\n")
    r0 = runs[0]
    lines = [
        "# `deepexposure serve`: slider-move latency on a 24 MP photo",
        "",
        f"`python benchmarks/bench_serve.py --threads {a.threads}` on {res['machine']}, torch {res['torch']}, "
        f"{a.threads} CPU thread(s) (a shared machine: other jobs were running). Photo: synthetic "
        f"{r0['width']}x{r0['height']} JPEG ({r0['width'] * r0['height'] / 1e6:.1f} MP); recipe: the default DeepExposure "
        f"model's, {r0['n_exposures']} exposures + the original, fused. Real uvicorn server and httpx client over 127.0.0.1.",
        "",
        "A slider move is one `POST /api/s/S/photos/P/render` round trip: recipe JSON in, preview JPEG out "
        "(render on the cached preview + JPEG encode + HTTP). Reference, same run: the same recipe rendered "
        "at full resolution (what `export` does, and what every move would cost without the preview).",
        "",
        "While a slider is dragged the page asks for *draft* renders (half the preview's long edge); when it "
        "is let go, one render at the full preview size follows.",
        "",
        "| render | long edge | move round trip, median (min-max) | of which server render+encode | vs full-res render |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        for mode, edge in (("draft", r["preview_size"] // 2), ("preview", r["preview_size"])):
            m = r[mode]
            lines.append(f"| {mode} (drag) |".replace(" (drag)", " (while dragging)" if mode == "draft" else " (slider let go)")
                         + f" {edge} px | {m['move_ms_median']:.0f} ms ({m['move_ms_min']:.0f}-{m['move_ms_max']:.0f}) | "
                         f"{m['server_render_ms_median']:.0f} ms | {1000 * t_full / m['move_ms_median']:.0f}x faster |")
    lines += [
        "",
        f"Full-resolution render of the recipe (reference): {t_full:.1f} s.",
        "",
        "Other steps at the default 1024 px preview:",
        "",
        "| step | time |",
        "|---|---|",
        f"| upload (HTTP + full decode + preview) | {r0['upload_s']:.1f} s |",
        f"| retouch (plan on the preview + render it) | {r0['retouch_s']:.1f} s |",
        f"| export job (full-res read + render + JPEG write + recipe) | {r0.get('export_s', float('nan')):.1f} s |",
        "",
        "The page folds slider moves made while a render is on its way into one request, so a drag costs "
        "one round trip at a time, never a queue.",
    ]
    (RESULTS / "serve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
