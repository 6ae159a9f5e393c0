"""Compiled conversions between decoded pixel arrays and the library's planar float images (numba).

Large photos only (:data:`deepexposure.decode.COMPILED_MIN_PIXELS`; smaller images use the torch/numpy forms in
:mod:`deepexposure.decode` and :mod:`deepexposure.encode`, which give the same values): one
parallel pass over the rows instead of a strided ``astype`` copy, a ``div``, and for writing a
``clamp``, ``round``, ``isfinite`` and a transposing copy, each a full pass over a 24 MP image.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["interleaved_to_planar", "planar_to_interleaved"]


@nb.njit(parallel=True, cache=True, nogil=True)
def interleaved_to_planar(arr, scale, out):  # pragma: no cover - compiled
    """``out[c, r, j] = arr[r, j, c] / scale``: ``(H, W, C)`` uint8/uint16 -> ``(C, H, W)`` float."""
    for r in nb.prange(arr.shape[0]):
        _to_planar_row(arr, scale, out, r)


@nb.njit(cache=True)
def _to_planar_row(arr, scale, out, r):  # pragma: no cover - compiled
    c = out.dtype.type
    s = c(scale)
    _, w, n_ch = arr.shape
    for ch in range(n_ch):
        o = out[ch, r]
        for j in range(w):
            o[j] = c(arr[r, j, ch]) / s


@nb.njit(parallel=True, cache=True, nogil=True)
def planar_to_interleaved(src, maxv, out):  # pragma: no cover - compiled
    """``out[r, j, c] = round(clip(src[c, r, j], 0, 1) * maxv)`` (half to even); returns the number of
    non-finite samples (written as 0). ``(C, H, W)`` float -> ``(H, W, C)`` uint8/uint16."""
    bad = 0
    for r in nb.prange(src.shape[1]):
        bad += _to_interleaved_row(src, maxv, out, r)
    return bad


@nb.njit(cache=True)
def _to_interleaved_row(src, maxv, out, r):  # pragma: no cover - compiled
    c = src.dtype.type
    m, zero, one = c(maxv), c(0.0), c(1.0)
    n_ch, _, w = src.shape
    bad = 0
    for j in range(w):
        for ch in range(n_ch):
            v = src[ch, r, j]
            if not np.isfinite(v):
                bad += 1
                v = zero
            out[r, j, ch] = np.rint(min(max(v, zero), one) * m)
    return bad
