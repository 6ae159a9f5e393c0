"""Felzenszwalb segmentation of the thumbnail into ``T`` ordered segment masks.

DeepExposure (Yu et al. 2018, sections 2.1 and 5.1) segments the 64x64 thumbnail ``S0`` with the
graph-based method of Felzenszwalb & Huttenlocher and lets the policy choose one exposure per
segment, in turn. This module wraps :func:`skimage.segmentation.felzenszwalb` (a numpy step, not
differentiable) and turns its label map into exactly ``T`` non-empty masks (``T`` configurable):

1. Felzenszwalb on the sRGB thumbnail as float64 in [0, 1], channel axis last. Note skimage's
   hidden unit: its ``scale`` is divided by 255 internally for float input, so ``scale`` here is in
   the same units as for 8-bit images.
2. **Merging** (while there are more than ``T`` segments, or a segment is smaller than
   ``min_area`` of the image): the smallest segment is merged into the *adjacent* segment whose mean
   colour is closest (Euclidean in sRGB); ties go to the lower label.
3. **Splitting** (while there are fewer than ``T`` segments, e.g. a flat image): the largest segment
   is split in two at its median luminance; if its luminance is constant, it is split at the median
   of its raster index (top/bottom half).
4. **Ordering** (deterministic): by mean luminance ascending (darkest region first, as a
   photographer works through luminosity masks), ties by larger area, then by smallest raster index.

Everything is deterministic for a given thumbnail.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["SegmentConfig", "Segmentation", "segment_thumbnail"]

_LUM = np.array([0.27, 0.67, 0.06])


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of the thumbnail segmentation."""

    n_segments: int = 5
    """T: number of segments (and so of exposure steps) per image."""
    scale: float = 100.0
    """Felzenszwalb ``scale`` (8-bit units; larger = larger segments)."""
    sigma: float = 0.5
    """Felzenszwalb Gaussian pre-smoothing width in pixels."""
    min_size: int = 20
    """Felzenszwalb minimum component size in pixels."""
    min_area: float = 0.02
    """Segments smaller than this fraction of the thumbnail are merged into a neighbour."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Segmentation:
    """Result of :func:`segment_thumbnail`.

    Attributes:
        masks: ``(T, 1, h, w)`` float32 in {0, 1}, disjoint, covering the thumbnail, ordered.
        labels: ``(h, w)`` int64 label map with values ``0..T-1`` in the same order.
        mean_luma: ``(T,)`` mean luminance (0.27 R + 0.67 G + 0.06 B, sRGB values) per segment.
        area: ``(T,)`` area fraction per segment.
    """

    masks: torch.Tensor
    labels: torch.Tensor
    mean_luma: list[float]
    area: list[float]

    def label_rows(self) -> list[str]:
        """The label map as ``h`` strings of ``w`` base-36 digits (recipes store it so ``--explain`` and users see the regions)."""
        digits = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
        return [row.tobytes().decode("ascii") for row in digits[self.labels.numpy()]]

    @staticmethod
    def labels_from_rows(rows: list[str]) -> torch.Tensor:
        """Inverse of :meth:`label_rows`: ``(h, w)`` int64 label map."""
        return torch.tensor([[int(c, 36) for c in row] for row in rows], dtype=torch.int64)

    def summary(self) -> list[dict]:
        """Per-segment description for recipes: index, area fraction, mean luminance, bbox (x0, y0, x1, y1 in [0, 1])."""
        out = []
        h, w = self.labels.shape
        lab = self.labels.numpy()
        for t in range(len(self.area)):
            ys, xs = np.nonzero(lab == t)
            out.append(
                {
                    "index": t,
                    "area": round(float(self.area[t]), 4),
                    "mean_luma": round(float(self.mean_luma[t]), 4),
                    "bbox": [
                        round(xs.min() / w, 4),
                        round(ys.min() / h, 4),
                        round((xs.max() + 1) / w, 4),
                        round((ys.max() + 1) / h, 4),
                    ],
                }
            )
        return out


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels ``>= 0`` -> ``0 .. n-1`` in the order of their values (scikit-image's
    ``relabel_sequential``, shifted by one because it keeps 0 as background)."""
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels + 1)[0] - 1


def _merge(labels: np.ndarray, img: np.ndarray, t: int, min_px: int) -> np.ndarray:
    """Step 2 of the module docstring on the label map ``labels`` of ``img (h, w, 3)``: the labels
    ``0 .. n-1`` of the merged segments, in the order of their original values.

    Each segment is known by a key, its label in :func:`_relabel`'s map (keys order segments as
    the labels of the merged map would), and has a size, a colour sum (``np.bincount``'s, over the
    map of keys) and a set of neighbours (the neighbours of a union are those of its parts). The
    distances are computed as ``np.linalg.norm``'s: the same choices, to the last bit, as
    recomputing everything from the merged map at each step. A few dozen segments: Python
    scalars cost less here than numpy calls on arrays of that size.
    """
    owner = _relabel(labels).ravel()  # pixel -> key of its segment
    n = int(owner.max()) + 1
    channels = [np.ascontiguousarray(img[..., c]).ravel() for c in range(3)]
    counts = np.bincount(owner, minlength=n).tolist()
    sums = np.stack([np.bincount(owner, weights=ch, minlength=n) for ch in channels], 1).tolist()
    keys = owner.reshape(labels.shape)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in ((keys[:, :-1], keys[:, 1:]), (keys[:-1, :], keys[1:, :])):
        edge = a != b
        for code in np.unique(a[edge] * n + b[edge]).tolist():
            i, j = divmod(code, n)
            neighbours[i].add(j)
            neighbours[j].add(i)
    alive = list(range(n))  # sorted
    while len(alive) > 1:
        smallest = min(alive, key=counts.__getitem__)  # the first minimum: the lowest label among ties
        if len(alive) <= t and counts[smallest] >= min_px:
            break
        cands = sorted(neighbours[smallest]) or [k for k in alive if k != smallest]  # (none: cannot happen)
        ms = [v / counts[smallest] for v in sums[smallest]]
        best, target = math.inf, -1
        for k in cands:  # the first nearest mean, as np.argmin of np.linalg.norm(axis=1)
            d0, d1, d2 = (v / counts[k] - m for v, m in zip(sums[k], ms))
            dist = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            if dist < best:
                best, target = dist, k
        owner[owner == smallest] = target
        counts[target] += counts[smallest]
        sums[target] = [float(np.bincount(owner, weights=ch, minlength=n)[target]) for ch in channels]
        for k in neighbours[smallest]:
            neighbours[k].discard(smallest)
            if k != target:
                neighbours[k].add(target)
                neighbours[target].add(k)
        alive.remove(smallest)
    final = np.empty(n, dtype=np.int64)  # key -> label among the segments left, in key order
    final[alive] = np.arange(len(alive))
    return final[keys]


def _split(labels: np.ndarray, luma: np.ndarray, t: int) -> np.ndarray:
    labels = labels.copy()
    while int(labels.max()) + 1 < t:
        n = int(labels.max()) + 1
        counts = np.bincount(labels.ravel(), minlength=n)
        big = int(np.argmax(counts))
        if counts[big] < 2:
            break
        idx = np.flatnonzero(labels.ravel() == big)
        values = luma.ravel()[idx]
        if values.max() - values.min() > 1e-6:
            # upper half of the sorted luminances becomes the new segment (stable, deterministic)
            order = np.argsort(values, kind="stable")
        else:
            order = np.arange(idx.size)
        upper = idx[order[idx.size // 2 :]]
        flat = labels.ravel()
        flat[upper] = n
        labels = flat.reshape(labels.shape)
    return labels


def segment_thumbnail(thumb_srgb: torch.Tensor, cfg: SegmentConfig | None = None) -> Segmentation:
    """Segment one thumbnail into exactly ``cfg.n_segments`` ordered masks.

    Args:
        thumb_srgb: ``(1, 3, h, w)`` or ``(3, h, w)`` sRGB in [0, 1] (typically 64x64).
        cfg: segmentation settings.
    Returns:
        :class:`Segmentation` with ``T = min(cfg.n_segments, h*w)`` masks.
    """
    from skimage.segmentation import felzenszwalb

    cfg = cfg or SegmentConfig()
    if thumb_srgb.dim() == 4:
        if thumb_srgb.shape[0] != 1:
            raise ValueError(f"segment_thumbnail takes one image, got batch of {thumb_srgb.shape[0]}")
        thumb_srgb = thumb_srgb[0]
    if thumb_srgb.dim() != 3 or thumb_srgb.shape[0] != 3:
        raise ValueError(f"expected (3, h, w) sRGB thumbnail, got {tuple(thumb_srgb.shape)}")
    img = thumb_srgb.detach().to("cpu", torch.float64).clamp(0, 1).permute(1, 2, 0).numpy()
    h, w, _ = img.shape
    t = max(1, min(cfg.n_segments, h * w))
    luma = img @ _LUM
    labels = felzenszwalb(img, scale=cfg.scale, sigma=cfg.sigma, min_size=cfg.min_size, channel_axis=-1)
    labels = _merge(labels, img, t, int(np.ceil(cfg.min_area * h * w)))
    labels = _split(labels, luma, t)
    n = int(labels.max()) + 1
    counts = np.bincount(labels.ravel(), minlength=n)
    mean_l = np.bincount(labels.ravel(), weights=luma.ravel(), minlength=n) / counts
    first = np.full(n, h * w)
    np.minimum.at(first, labels.ravel(), np.arange(h * w))
    order = sorted(range(n), key=lambda k: (round(float(mean_l[k]), 9), -counts[k], first[k]))
    remap = np.empty(n, dtype=np.int64)
    remap[order] = np.arange(n)
    labels = remap[labels]
    lab_t = torch.from_numpy(labels.astype(np.int64))
    masks = torch.stack([(lab_t == k) for k in range(n)]).unsqueeze(1).to(thumb_srgb.dtype if thumb_srgb.is_floating_point() else torch.float32)
    return Segmentation(
        masks=masks.float(),
        labels=lab_t,
        mean_luma=[float(mean_l[k]) for k in order],
        area=[float(counts[k]) / (h * w) for k in order],
    )
