"""The denoising / restoration benchmark (``deepexposure eval --task denoise|restore``).

Clean photos (a folder) are read at ``long_edge`` px, in grey (Rec. 601) unless ``color``; every
degradation is drawn from a fixed seed (the photo's index and the level), so every method sees the
same noisy pixels. Scores: PSNR and SSIM against the clean photo on the 0..255 scale, after rounding
to 8 bits, and seconds per image. Methods (the paper's baselines plus BM3D):

- ``noisy``: the degraded input; ``random``: random agents (uniform actions, the model's ``t_max``);
- ``gaussian``: ``skimage.filters.gaussian`` with sigma 1 px;
- ``nlmeans``: ``skimage.restoration.denoise_nl_means`` (5x5 patches, 13x13 search, ``h = 0.8 sigma``),
  told the true noise sigma (estimated with ``estimate_sigma`` for non-Gaussian noise);
- ``bm3d``: the ``bm3d`` package (optional extra ``[denoise]``), told the true sigma (estimated likewise);
- ``pixelrl``: the agents of the model (greedy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .model import PixelRLModel, choose_model, run_agent
from .tasks import NoiseModel, Task, add_noise, overlay_text, parse_noise, to_gray

__all__ = ["RESTORE_METHODS", "RestoreReport", "evaluate_restoration", "format_restore_markdown", "baseline"]

RESTORE_METHODS = ("noisy", "random", "gaussian", "nlmeans", "bm3d", "pixelrl")


def _sigma(noisy: np.ndarray, noise: NoiseModel | None) -> float:
    if noise is not None and noise.kind == "gaussian":
        return noise.lo / 255.0
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(noisy, channel_axis=0, average_sigmas=True))


def baseline(name: str, noisy: torch.Tensor, noise: NoiseModel | None) -> torch.Tensor:
    """A classical method on ``noisy (1, C, H, W)`` in [0, 1] (channels filtered independently)."""
    x = noisy[0].double().numpy()
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        if name == "gaussian":
            from skimage.filters import gaussian

            out[c] = gaussian(x[c], sigma=1.0, mode="reflect", preserve_range=True)
        elif name == "nlmeans":
            from skimage.restoration import denoise_nl_means

            s = _sigma(x[c][None], noise)
            out[c] = denoise_nl_means(x[c], h=0.8 * s, sigma=s, patch_size=5, patch_distance=6, fast_mode=True)
        elif name == "bm3d":
            try:
                import bm3d
            except ImportError:
                raise ImportError("BM3D needs the bm3d package: pip install 'deepexposure[denoise]'") from None
            out[c] = bm3d.bm3d(x[c], sigma_psd=_sigma(x[c][None], noise))
        else:
            raise ValueError(f"unknown baseline {name!r}")
    return torch.from_numpy(out).float().clamp(0, 1)[None]


@dataclass
class RestoreReport:
    """``rows[level][method] = {"psnr", "ssim", "s_per_image"}`` (means) and ``per_image`` scores."""

    task: str
    rows: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_image: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _q(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


def evaluate_restoration(clean_paths: list[Path], task: str, levels: list[str], methods: list[str],
                         model: PixelRLModel | list[PixelRLModel] | None, long_edge: int = 500, color: bool = False, seed: int = 0,
                         progress: Callable[[str], None] | None = None) -> RestoreReport:
    """Score ``methods`` on every clean photo at every level (``levels``: noise specs such as
    ``gaussian:25`` for ``denoise``; ignored for ``restore``, whose one level is the text overlay).
    ``model``: one model, or a set that each noisy image chooses from (:func:`~.model.choose_model`)."""
    from ..data import load_image_at
    from ..metrics import psnr, ssim

    rep = RestoreReport(task)
    cleans = []
    for p in clean_paths:
        img = load_image_at(Path(p), long_edge)
        cleans.append(_q(img if color else to_gray(img)))
        rep.images.append(Path(p).name)
    lv = levels if task == "denoise" else ["text"]
    models = [] if model is None else model if isinstance(model, list) else [model]
    t_task = Task.make(task, int(models[0].config["t_max"]) if models else 0)
    for li, level in enumerate(lv):
        noise = parse_noise(level) if task == "denoise" else None
        acc: dict[str, dict[str, list[float]]] = {m: {"psnr": [], "ssim": [], "s": []} for m in methods}
        for i, clean in enumerate(cleans):
            g = torch.Generator().manual_seed(seed * 1_000_003 + li * 10_007 + i)
            noisy = _q(add_noise(clean, noise, g) if noise is not None else overlay_text(clean, g))
            for m in methods:
                if m in rep.errors:
                    continue
                t0 = time.perf_counter()
                try:
                    if m == "noisy":
                        out = noisy
                    elif m == "random":
                        out = run_agent(None, t_task, noisy, generator=torch.Generator().manual_seed(seed + i)).out
                    elif m == "pixelrl":
                        if not models:
                            raise ValueError("no model")
                        chosen, _ = choose_model(models, noisy)
                        out = run_agent(chosen.net, chosen.task, noisy).out
                    else:
                        out = baseline(m, noisy, noise)
                except (ImportError, ValueError) as e:
                    rep.errors[m] = " ".join(str(e).split())
                    continue
                dt = time.perf_counter() - t0
                out = _q(out)
                rgb = lambda x: x.expand(-1, 3, -1, -1)
                acc[m]["psnr"].append(float(psnr(out, clean)) if clean.shape[1] == 3 else float(psnr(rgb(out), rgb(clean))))
                acc[m]["ssim"].append(float(ssim(rgb(out), rgb(clean))))
                acc[m]["s"].append(dt)
                if progress:
                    progress(f"{level} {rep.images[i]} {m}: {acc[m]['psnr'][-1]:.2f} dB, {dt:.2f} s")
        rep.rows[level] = {m: {"psnr": float(np.mean(v["psnr"])), "ssim": float(np.mean(v["ssim"])), "s_per_image": float(np.mean(v["s"]))}
                           for m, v in acc.items() if v["psnr"]}
        rep.per_image[level] = {m: v["psnr"] for m, v in acc.items() if v["psnr"]}
    return rep


def format_restore_markdown(rep: RestoreReport) -> str:
    """One table: a row per method, PSNR (dB) / SSIM per level, seconds per image."""
    levels = list(rep.rows)
    methods = [m for m in RESTORE_METHODS if any(m in r for r in rep.rows.values())]
    head = "| method | " + " | ".join(f"{lv} PSNR / SSIM" for lv in levels) + " | s / image |"
    lines = [head, "|" + "---|" * (len(levels) + 2)]
    for m in methods:
        cells = [f"{rep.rows[lv][m]['psnr']:.2f} / {rep.rows[lv][m]['ssim']:.3f}" if m in rep.rows[lv] else "-" for lv in levels]
        secs = np.mean([rep.rows[lv][m]["s_per_image"] for lv in levels if m in rep.rows[lv]])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {secs:.3f} |")
    for m, why in rep.errors.items():
        lines.append(f"\n{m}: not run ({why})")
    return "\n".join(lines) + "\n"
