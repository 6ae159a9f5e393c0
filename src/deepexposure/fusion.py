"""Mertens exposure fusion: the fast full-resolution engine, and the one import for fusion.

The maths (Eqs. (30)-(31) of the DeepExposure supplement: weights, pyramids, the batched
autograd fusion of training stacks) is in :mod:`deepexposure.mertens` and re-exported here.
This module adds the same fusion of one full-resolution photo, without autograd and with
bounded memory, computed by the compiled kernels of :mod:`deepexposure.fusion_kernels`:

* :func:`fuse_exposures` -- the render of an ``exposure_fusion`` recipe op: the photo and its
  global re-exposures ``S * 2^ev`` (linear light). A re-exposure is a function of one sample
  whose two transfer functions' powers cancel wherever both take their power branch, so it is
  computed as a linear function of the sample except across the sRGB knee
  (:func:`exposure_curve`), instead of two transfer functions (``pow``) per sample and exposure;
* :func:`exposure_fusion_streaming` -- the same for any images given by a callable.

Design (docs/performance.md): one exposure at full resolution at a time, never all ``K``.
Pass 1 adds the ``K`` raw weights into one plane. Pass 2, per exposure: one kernel computes the
exposure and its normalised weight in blocks of rows, builds their level 1 (``pyrDown``) and adds
the weighted Laplacian band ``G(W)_0 * (G_0 - up(G_1))`` into the fused pyramid, without a
full-size level 0; then per level ``l >= 1`` one kernel builds level ``l + 1`` and one adds band
``l``; level buffers are reused by every exposure. Then the fused pyramid is collapsed in place.
Each kernel is one parallel pass over its rows (all cores). A photo decoded from 8 bits
(every sample ``v / 255``) is re-exposed from its 8-bit codes through 256-entry tables.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import numpy as np
import torch

from . import mertens
from .mertens import (  # re-exported: this module is the one import for fusion
    MERTENS_EPS as MERTENS_EPS,
    FusionConfig as FusionConfig,
    _resolve_levels,
    collapse_laplacian as collapse_laplacian,
    default_levels as default_levels,
    exposure_fusion as exposure_fusion,
    gaussian_pyramid as gaussian_pyramid,
    laplacian_pyramid as laplacian_pyramid,
    mertens_weights as mertens_weights,
    pyr_down as pyr_down,
    pyr_up as pyr_up,
)

__all__ = [*mertens.__all__, "exposure_fusion_streaming", "fuse_exposures", "exposure_curve"]

#: kernels on planes of fewer pixels run on the calling thread: a parallel loop hands work to the
#: pool's sleeping workers twice, and on a busy machine each hand-over can cost a scheduler slice
#: (0.5 MP fusion on the shared 2-core machine: 0.23 s serial, 0.36 s with 2^18 here)
PARALLEL_MIN_PIXELS = 1 << 20

#: :func:`fuse_exposures` keeps the raw weights between its passes up to this many samples
#: (``K x H x W``; 2^25 float32 = 128 MiB)
KEEP_WEIGHTS_SAMPLES = 1 << 25

#: numba's portable thread pool (``workqueue``) must not be entered by two threads at once;
#: the other layers (OpenMP, TBB) may. Held around a fusion only when that pool is in use.
_WORKQUEUE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _curve_cached(ev: float, dtype: torch.dtype) -> np.ndarray:
    g, h = 2.0**ev, 2.0 ** (ev / 2.4)
    if g >= 1.0:  # brightened darks cross the knee: f = 1.055 (s g / 12.92)^(1 / 2.4) - 0.055
        y, power = (g / 12.92, 0.0), (1.0 / 2.4, 1.055, -0.055)
    else:  # darkened lights cross it: f = 12.92 g ((s + 0.055) / 1.055)^2.4
        y, power = (1.0 / 1.055, 0.055 / 1.055), (2.4, 12.92 * g, 0.0)
    out = np.array([g, h, *y, *power], dtype=np.float32 if dtype == torch.float32 else np.float64)
    out.setflags(write=False)
    return out


def exposure_curve(ev: float, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Parameters of the global re-exposure ``f(s) = linear_to_srgb(clip(srgb_to_linear(s) * 2^ev, 0, 1))``
    (:func:`deepexposure.filters.global_exposure`) as the fusion kernels compute it.

    With ``g = 2^ev`` and ``h = 2^(ev / 2.4)``: ``f(s) = s g`` where ``s`` and ``f(s)`` are both at
    most the sRGB knee 0.04045 (both linear branches), ``f(s) = min((s + 0.055) h - 0.055, 1)``
    where both are above it (the two powers cancel), and across the knee (one direction per sign
    of ``ev``) ``f(s) = min(amp y^p + add, 1)`` with ``y = min(s ya + yb, 1)``.

    Args:
        ev: exposure value in stops.
        dtype: float32 or float64.
    Returns:
        read-only ``(7,)`` array ``(g, h, ya, yb, p, amp, add)``.
    """
    return _curve_cached(float(ev), _work_dtype(dtype))


def _kernels():
    from . import fusion_kernels

    return fusion_kernels


def _weight_params(cfg: FusionConfig, dtype: torch.dtype) -> np.ndarray:
    escale = -cfg.exposedness_weight / (2.0 * cfg.sigma**2)
    prm = (cfg.contrast_weight, cfg.saturation_weight, cfg.exposedness_weight, escale, MERTENS_EPS)
    return np.array(prm, dtype=np.float32 if dtype == torch.float32 else np.float64)


def _level_shapes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    shapes = [(h, w)]
    for _ in range(levels):
        h, w = (h + 1) // 2, (w + 1) // 2
        shapes.append((h, w))
    return shapes


def _set_threads() -> int:
    import numba

    most = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
    threads = max(1, min(torch.get_num_threads(), most))
    numba.set_num_threads(threads)
    return threads


def _pool_lock() -> threading.Lock | None:
    import numba

    try:
        return _WORKQUEUE_LOCK if numba.threading_layer() == "workqueue" else None
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        return _WORKQUEUE_LOCK


#: ``source(i) -> (src (3, H, W), curve or None)``: exposure ``i`` is ``src`` re-exposed by the
#: :func:`exposure_curve` ``curve`` (``src`` uint8 codes: ``curve[src]``, a :func:`_table8`), or ``src`` itself
_Source = Callable[[int], tuple[np.ndarray, np.ndarray | None]]


def _fuse(source: _Source, k: int, h: int, w: int, dtype: torch.dtype, cfg: FusionConfig,
          keep_weights: bool) -> torch.Tensor:
    """The fusion engine (see the module docstring); returns the ``(1, 3, H, W)`` tensor."""
    kern = _kernels()
    levels = _resolve_levels(h, w, cfg.levels)
    shapes = _level_shapes(h, w, levels)
    prm = _weight_params(cfg, dtype)
    # Gaussian image + weight per level; level 0 only without levels (else expose_level0 works in row blocks)
    # numpy, not torch, allocates: a torch fill of more than 32768 samples is an OpenMP parallel region,
    # which on a busy machine waits a scheduler slice for its second thread (8 ms for a 0.5 MP plane)
    npdt = np.float32 if dtype == torch.float32 else np.float64
    g = [np.empty((4, hl, wl) if lvl > 0 or levels == 0 else (4, 0, 0), dtype=npdt)
         for lvl, (hl, wl) in enumerate(shapes)]
    img0, w0 = g[0][0:3], g[0][3]
    keep = keep_weights and k > 1
    threads = _set_threads()
    par = [threads > 1 and hl * wl >= PARALLEL_MIN_PIXELS for hl, wl in shapes]  # per level
    identity = np.zeros(0, dtype=w0.dtype)
    fast_exp = dtype == torch.float32  # float64 keeps np.exp (agreement with the batched path to 1e-10)
    bits_proto = np.zeros(0, dtype=np.int32 if dtype == torch.float32 else np.int64)

    def lookup(i: int) -> tuple[np.ndarray, np.ndarray, int]:
        src, curve = source(i)  # 8-bit codes come with their 256-entry table: looked up directly
        return src, identity if curve is None else curve, 0 if curve is None else 2 if src.dtype == np.uint8 else 1

    def expose_weigh(i: int, mode: int, wsum: np.ndarray, img_out: np.ndarray, w_out: np.ndarray) -> None:
        src, curve, how = lookup(i)
        kern.expose_weigh(src, curve, how, prm, mode, wsum, img_out, w_out, fast_exp, bits_proto, par[0])

    def expose_level0(i: int, wsum: np.ndarray, wkept: np.ndarray, g1: np.ndarray, out0: np.ndarray) -> None:
        src, curve, how = lookup(i)
        kern.expose_level0(src, curve, how, prm, keep, wsum, wkept, g1, out0, fast_exp, bits_proto, par[0])

    # pass 1: the weight sum (and, with keep_weights, every raw weight)
    wsum = np.zeros((h, w), dtype=npdt)
    kept: list[np.ndarray] = []
    for i in range(k):
        if keep:
            kept.append(np.empty((h, w), dtype=npdt))
            expose_weigh(i, 3, wsum, img0, kept[-1])  # img0, w0: not written in modes 1 and 3
        else:
            expose_weigh(i, 1, wsum, img0, w0)

    # pass 2: per exposure, its pyramids level by level into the fused Laplacian pyramid
    out = [np.zeros((3, hl, wl), dtype=npdt) for hl, wl in shapes]
    for i in range(k):
        if levels == 0:
            expose_weigh(i, 2 if not keep else 0, wsum, img0, w0)
            if keep:
                np.divide(kept[i], wsum, out=w0)
        else:  # level 0 in row blocks: exposure, weight, level 1 and band 0 in one pass
            expose_level0(i, wsum, kept[i] if keep else wsum, g[1], out[0])
        if keep:
            kept[i] = wsum[:0, :0]  # release the plane
        for lvl in range(1, levels):
            kern.down4(g[lvl], g[lvl + 1], par[lvl + 1])
            kern.laplacian_accumulate(g[lvl], g[lvl + 1], out[lvl], par[lvl])
        kern.weighted_add(g[levels], out[levels], par[levels])
    del g, img0, w0, wsum, kept

    # collapse in place: out_{l-1} += up(out_l)
    for lvl in range(levels, 0, -1):
        kern.up_add(out[lvl], out[lvl - 1], par[lvl - 1])
        out[lvl] = out[lvl][:, :0]
    return torch.from_numpy(out[0]).unsqueeze(0)


def _run(source: _Source, k: int, h: int, w: int, dtype: torch.dtype, cfg: FusionConfig, keep_weights: bool) -> torch.Tensor:
    lock = _pool_lock()
    if lock is None:
        return _fuse(source, k, h, w, dtype, cfg, keep_weights)
    with lock:
        return _fuse(source, k, h, w, dtype, cfg, keep_weights)


def _check_image(img: torch.Tensor, i: int, shape: tuple[int, ...] | None) -> torch.Tensor:
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[0] != 1 or img.shape[1] != 3:
        got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"make_image({i}) must return a (1, 3, H, W) tensor, got {got}")
    if shape is not None and tuple(img.shape) != shape:
        raise ValueError(f"make_image({i}) returned {tuple(img.shape)}, expected {shape}")
    return img[0]


def _codes8(src: np.ndarray) -> np.ndarray | None:
    """The 8-bit codes ``v`` of a float32 photo whose every sample is ``v / 255`` (a decoded 8-bit
    file), else None. Such a photo's exposures are looked up in 256-entry tables (:func:`_table8`)
    instead of computed per sample: the same values, a quarter of the bytes read."""
    if src.dtype != np.float32:
        return None
    codes = np.empty(src.shape, dtype=np.uint8)
    par = torch.get_num_threads() > 1 and src.shape[1] * src.shape[2] >= PARALLEL_MIN_PIXELS
    return codes if _kernels().codes8(src, codes, par) else None


def _table8(curve: np.ndarray | None) -> np.ndarray:
    """``table[v]``: the float32 exposure ``curve`` (:func:`exposure_curve`; None: the photo itself) at
    the 8-bit value ``v / 255``, as the kernels compute it for a float image."""
    out = np.empty(256, dtype=np.float32)
    _kernels().table8(np.zeros(0, np.float32) if curve is None else curve, out, True, np.zeros(0, np.int32))
    return out


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def exposure_fusion_streaming(
    make_image: Callable[[int], torch.Tensor],
    k: int,
    cfg: FusionConfig = FusionConfig(),
    *,
    keep_weights: bool = True,
) -> torch.Tensor:
    """Full-resolution Mertens fusion of ``k`` images given one at a time (Eqs. 30-31).

    Computes :func:`exposure_fusion` of the stack ``[make_image(0), ..., make_image(k - 1)]``
    (float64: equal to 1e-10; float32: see :mod:`deepexposure.mertens` on rounding) with the
    compiled engine of this module, holding one image at a time.

    Memory beyond the caller's images (``H x W`` pixels): one ``(4, H, W)`` working buffer and
    its 4/3-size pyramid, the fused pyramid (4/3 of an image), the weight sum, and with
    ``keep_weights`` the ``k`` raw weight planes (else each weight is computed twice).
    Runs without autograd on the CPU in float32 (float64 inputs: float64; other dtypes: float32)
    with ``torch.get_num_threads()`` threads; the result is on the images' device.

    Args:
        make_image: ``i -> (1, 3, H, W)`` image ``i`` in [0, 1], ``0 <= i < k``. Called twice per
            index, so it must be deterministic. Its result is only read, never modified.
        k: number of images, ``>= 1``.
        cfg: :class:`FusionConfig`.
        keep_weights: keep the raw weights between the two passes (``k`` planes) instead of
            computing them again.
    Returns:
        ``(1, 3, H, W)`` fused image, unclipped like :func:`exposure_fusion`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    with torch.no_grad():
        held = [_check_image(make_image(0), 0, None)]  # used for the first call of source(0)
        shape = (1, *held[0].shape)
        _, h, w = held[0].shape
        device = held[0].device
        dtype = _work_dtype(held[0].dtype)

        def source(i: int) -> tuple[np.ndarray, None]:
            img = held.pop() if i == 0 and held else _check_image(make_image(i), i, shape)
            return img.detach().to("cpu", dtype).contiguous().numpy(), None

        return _run(source, k, h, w, dtype, cfg, keep_weights).to(device)


def fuse_exposures(
    img_srgb: torch.Tensor,
    evs: list[float | None],
    cfg: FusionConfig = FusionConfig(),
    *,
    keep_weights: bool | None = None,
    on_source: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Mertens fusion of global re-exposures of one photo: the ``exposure_fusion`` recipe op.

    Exposure ``i`` is the photo itself where ``evs[i]`` is None, else
    ``linear_to_srgb(clip(srgb_to_linear(S) * 2^evs[i], 0, 1))``
    (:func:`deepexposure.filters.global_exposure`), computed per sample by :func:`exposure_curve`
    (8-bit photos: by 256-entry tables of it); no exposure is built twice at once, and none is kept.

    Args:
        img_srgb: ``(1, 3, H, W)`` sRGB in [0, 1].
        evs: one entry per exposure (``None``: the photo unchanged); at least one.
        cfg: :class:`FusionConfig`.
        keep_weights: as in :func:`exposure_fusion_streaming`; None: keep them when the ``K``
            planes hold at most :data:`KEEP_WEIGHTS_SAMPLES` samples (small photos: each weight
            computed once; large ones: two weight passes instead of ``K`` planes in memory).
        on_source: called as ``on_source(i)`` each time exposure ``i`` is built (once or twice per
            exposure, see ``keep_weights``), for progress; it only observes.
    Returns:
        ``(1, 3, H, W)`` fused image, unclipped (clip before display or saving).
    """
    if img_srgb.dim() != 4 or img_srgb.shape[:2] != (1, 3):
        raise ValueError(f"fuse_exposures: expected a (1, 3, H, W) image, got {tuple(img_srgb.shape)}")
    if not evs:
        raise ValueError("fuse_exposures: needs at least one exposure")
    with torch.no_grad():
        dtype = _work_dtype(img_srgb.dtype)
        src = img_srgb[0].detach().to("cpu", dtype).contiguous().numpy()
        h, w = src.shape[-2:]
        codes: list[np.ndarray | None] = []  # found by the first call, inside the engine (its threads, its lock)

        def source(i: int) -> tuple[np.ndarray, np.ndarray | None]:
            if on_source is not None:
                on_source(i)
            ev = evs[i]
            curve = None if ev is None else exposure_curve(float(ev), dtype)
            if not codes:
                codes.append(_codes8(src))
            if codes[0] is None:
                return src, curve
            return codes[0], _table8(curve)

        keep = len(evs) * h * w <= KEEP_WEIGHTS_SAMPLES if keep_weights is None else keep_weights
        return _run(source, len(evs), h, w, dtype, cfg, keep).to(img_srgb.device)
