"""How well can a region's exposure correction be predicted from the photo at all?

The held-out benchmark's errors are ``x = y 2^f`` with a smooth field ``f`` (``deepexposure synth``),
so each segment's right correction is known: ``e*_t = -mean_t(f)``. This script measures how much of
it simple per-segment statistics predict, and how the renderers score with the predictions:

1. Training samples: every photo of ``--train`` (a folder or a list file), ``--variants`` synthetic
   exposure errors each (the benchmark's model, seed 1000), at 256 px; thumbnail 64x64, segmented as
   the DeepExposure agent does; per segment 14 statistics (segment and global log-luminance mean,
   10/50/90 % quantiles, clipped and black fractions; area, centroid, order) and the target ``e*_t``.
2. A small MLP (2x64) regresses ``e*_t`` on the statistics (3,000 Adam steps).
3. On the held-out pairs (``--heldout``, with their ``fields/``): correlation and RMSE of the
   predictions, and PSNR of the fused and local renders of the predicted and of the ideal exposures.

Run it once with the training photos (cross-photo generalisation) and once with the held-out
photos themselves as ``--train`` (other error draws of the same photos: what knowing the scenes
would give). Results: benchmarks/results/predictability.md.

    python benchmarks/predictability.py --train /work/dm/inputs.txt --heldout /work/dm/heldout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from deepexposure.agents.deepexposure import ExplicitExposuresMethod
from deepexposure.color import srgb_to_linear
from deepexposure.io import read_image
from deepexposure.metrics import psnr
from deepexposure.pipeline import retouch_tensor
from deepexposure.resize import make_thumbnail, resize_exact, resize_long_edge
from deepexposure.segment import SegmentConfig, segment_thumbnail
from deepexposure.synth import SynthConfig, _quantise, degrade

SEG = SegmentConfig(n_segments=5)


def _stats(ly: torch.Tensor, mx: torch.Tensor, w: torch.Tensor) -> list[float]:
    w = (w / w.sum()).flatten()
    flat = ly.flatten()
    order = torch.argsort(flat)
    cum = torch.cumsum(w[order], 0)
    q = [float(flat[order][torch.searchsorted(cum, torch.tensor(p)).clamp(max=len(flat) - 1)]) for p in (0.1, 0.5, 0.9)]
    hi = float((w * (mx.flatten() > 0.97).float()).sum())
    lo = float((w * (mx.flatten() < 0.03).float()).sum())
    return [float((w * flat).sum()), *q, hi, lo]


def segment_features(thumb: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """``(1,3,64,64), (T,1,64,64) -> (T, 16)`` statistics per segment (module docstring)."""
    lin = srgb_to_linear(thumb)[0]
    ly = torch.log2((0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]).clamp_min(1e-4))
    mx = thumb[0].max(0).values
    g = _stats(ly, mx, torch.ones_like(ly))
    s = thumb.shape[-1]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")
    t_steps = masks.shape[0]
    rows = []
    for t in range(t_steps):
        m = masks[t, 0]
        rows.append(_stats(ly, mx, m + 1e-6) + g + [float(m.mean()), float((m * yy).sum() / m.sum()),
                                                     float((m * xx).sum() / m.sum()), t / (t_steps - 1)])
    return np.array(rows, dtype=np.float32)


def sample(inp: torch.Tensor, field: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Features, ideal exposures ``-mean_t(f)`` and masks of one degraded photo."""
    th = make_thumbnail(inp, 64)
    masks = segment_thumbnail(th, SEG).masks
    f = resize_exact(field.float(), 64)[0, 0]
    target = np.array([-float((masks[t, 0] * f).sum() / masks[t, 0].sum()) for t in range(masks.shape[0])], dtype=np.float32)
    return segment_features(th, masks), target


def photo_list(spec: Path) -> list[Path]:
    return sorted(spec.iterdir()) if spec.is_dir() else [Path(line.strip()) for line in spec.read_text().splitlines() if line.strip()]


def training_set(paths: list[Path], variants: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        ref = _quantise(resize_long_edge(read_image(p).img_srgb, 256, upscale=False))
        for k in range(variants):
            inp, field, _ = degrade(ref, SynthConfig(seed=1000), f"{p.stem}_v{k}")
            x, y = sample(_quantise(inp), field)
            xs.append(x)
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def fit_mlp(x: np.ndarray, y: np.ndarray, steps: int = 3000):
    mu, sd = x.mean(0), x.std(0) + 1e-6
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    xt, yt = torch.tensor((x - mu) / sd), torch.tensor(y)
    for _ in range(steps):
        i = torch.randint(0, len(xt), (256,))
        loss = (net(xt[i]).squeeze(1) - yt[i]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lambda f: net(torch.tensor((f - mu) / sd)).squeeze(1).detach().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=Path, required=True, help="folder or list file of well-exposed photos")
    ap.add_argument("--heldout", type=Path, required=True, help="a deepexposure synth folder (with fields/)")
    ap.add_argument("--variants", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None, help="append a JSON line of the results here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    x, y = training_set(photo_list(a.train), a.variants)
    predict = fit_mlp(x, y)
    man = json.loads((a.heldout / "synth.json").read_text())
    scores: dict[str, list[float]] = {k: [] for k in ("identity", "ideal_fused", "ideal_local", "pred_fused", "pred_local")}
    pred, true = [], []
    for it in man["items"]:
        inp = read_image(a.heldout / it["input"]).img_srgb
        ref = read_image(a.heldout / it["reference"]).img_srgb
        field = torch.from_numpy(np.load(a.heldout / it["field"])).reshape(1, 1, *inp.shape[-2:])
        feats, target = sample(inp, field)
        p = predict(feats)
        pred.append(p)
        true.append(target)
        scores["identity"].append(float(psnr(inp, ref)))
        for name, evs in (("ideal", target), ("pred", p)):
            for render in ("fused", "local"):
                out, _ = retouch_tensor(ExplicitExposuresMethod([float(e) for e in evs], render=render), inp)
                scores[f"{name}_{render}"].append(float(psnr(out, ref)))
    pp, tt = np.concatenate(pred), np.concatenate(true)
    result = {"train": str(a.train), "photos": len(photo_list(a.train)), "variants": a.variants, "samples": int(len(y)),
              "corr": float(np.corrcoef(pp, tt)[0, 1]), "rmse_ev": float(np.sqrt(((pp - tt) ** 2).mean())), "target_std_ev": float(tt.std()),
              **{k: float(np.mean(v)) for k, v in scores.items()}}
    print(json.dumps(result, indent=1))
    if a.out:
        with a.out.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
