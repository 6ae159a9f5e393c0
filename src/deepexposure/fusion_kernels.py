"""Compiled kernels of the fast Mertens fusion (numba): one call per plane and pyramid level.

Each kernel is one loop over the rows of its output, parallel (``numba.prange``) when its
``par`` argument says so (the caller's choice by plane size: every parallel loop is two hand-overs
to the pool's sleeping workers, which on small planes cost more than the work); a row reads
the few input rows its stencil needs (reflect-101 at the borders, as ``cv2.pyrDown``/``pyrUp``),
keeps its temporaries in a buffer of one row, and writes its output row once. So every
plane is read and written about once per kernel, with no per-operation dispatch, no
full-size temporaries, and both cores busy. The arithmetic mirrors the batched torch path of
:mod:`deepexposure.mertens` operation by operation (the same sums in the same order; up- and
down-sampling are unscaled integer-weight sums followed by an exact power-of-two scale), so
the two agree to float rounding. Kernels are generic over float32/float64: constants are cast
to the array's dtype (``dtype.type(...)``), so float32 stays float32.

The driver, the exposure curves and the order of the calls are in :mod:`deepexposure.fusion`.
Compiled code is cached on disk (``cache=True``, numba's ``__pycache__``) after the first use.
"""

from __future__ import annotations

import os

import numba as nb
import numpy as np

# numba's own thread pool ("workqueue"): its idle workers sleep. The OpenMP layer numba picks by
# default on Linux spins between parallel regions (GNU libgomp), which on a busy machine (or beside
# torch's own OpenMP pool) costs more than the work of a small image: 0.5 MP fusion took 9x the
# CPU time of OpenCV with it, 1.2x with workqueue. Not thread-safe: deepexposure.fusion holds a
# lock around each fusion. NUMBA_THREADING_LAYER, when set, wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    setattr(nb.config, "THREADING_LAYER", "workqueue")  # noqa: B010 (numba.config has no stubs)

__all__ = ["expose_weigh", "expose_level0", "codes8", "table8", "down4", "laplacian_accumulate", "up_add", "weighted_add"]

#: rows per parallel task of :func:`expose_weigh` (two extra rows are looked up per block)
_BLOCK = 32
#: rows of the fused band per parallel task of :func:`expose_level0` (even; about 8 more level-0 rows
#: are computed per block, and the block's buffers are ``(4 x 1.2 x rows x W)`` samples)
_LEVEL0_BLOCK = 64


@nb.njit(cache=True)
def _refl(p: int, n: int) -> int:
    """OpenCV ``borderInterpolate(p, n, BORDER_REFLECT_101)``."""
    if n == 1:
        return 0
    while p < 0 or p >= n:
        p = -p if p < 0 else 2 * n - 2 - p
    return p


@nb.njit(cache=True)
def _curve_row(x, curve, out, tmp, bits, fbits, shift, bias, fast):  # pragma: no cover - compiled
    """``out[j] = f(x[j])``: the global re-exposure ``f(s) = linear_to_srgb(clip(srgb_to_linear(s) 2^ev, 0, 1))``
    of :func:`deepexposure.fusion.exposure_curve` ``curve = (g, h, ya, yb, p, amp, add)``, for ``x``
    clipped to [0, 1]; ``tmp`` a row, ``bits``/``fbits`` as :func:`_exp_row`.

    Where both transfer functions take their power branch the powers cancel and ``f`` is linear:
    ``f(s) = min((s + 0.055) h - 0.055, 1)`` with ``h = 2^(ev / 2.4)``; where both take the linear
    branch, ``f(s) = s g`` with ``g = 2^ev``. Only samples that cross the knee ``0.04045``
    (brightened darks when ``ev > 0``, darkened lights when ``ev < 0``; never both) need a power:
    ``f(s) = min(amp y^p + add, 1)``, ``y = min(s ya + yb, 1)`` (``fast``: :func:`_pow_row`, else ``**``),
    computed for the rows that have any. Every loop vectorises (no table gather).
    """
    c = out.dtype.type
    g, h, ya, yb, p, amp, add = curve[0], curve[1], curve[2], curve[3], curve[4], curve[5], curve[6]
    zero, one, knee, off = c(0.0), c(1.0), c(0.04045), c(0.055)
    n = x.shape[0]
    cross = 0
    for j in range(n):
        s = min(max(x[j], zero), one)
        low = s * g
        high = min((s + off) * h - off, one)
        dark = s <= knee
        out[j] = low if dark else high
        cross += np.intp((low > knee) if dark else (high <= knee))
    if cross == 0:
        return
    for j in range(n):
        tmp[j] = min(min(max(x[j], zero), one) * ya + yb, one)
    if fast:
        _pow_row(tmp, p, bits, fbits, shift, bias)
    else:
        for j in range(n):
            tmp[j] = tmp[j] ** p
    for j in range(n):
        s = min(max(x[j], zero), one)
        low = s * g
        high = min((s + off) * h - off, one)
        dark = s <= knee
        v = min(amp * tmp[j] + add, one)
        out[j] = v if ((low > knee) if dark else (high <= knee)) else out[j]


@nb.njit(cache=True)
def _pow_row(x, p, bits, fbits, shift, bias):  # pragma: no cover - compiled
    """``x = x^p`` in place for ``0 < x <= 1`` and ``p > 0``: ``exp(p ln x)`` by :func:`_log_row` and
    :func:`_exp_row` (vectorisable; relative error ~1e-6 in float32)."""
    _log_row(x, bits, fbits, shift, bias)
    for j in range(x.shape[0]):
        x[j] = x[j] * p
    _exp_row(x, bits, fbits, shift, bias)


@nb.njit(cache=True, error_model="numpy")  # no zero-division check: the division loops vectorise
def _log_row(x, bits, fbits, shift, bias):  # pragma: no cover - compiled
    """``x = ln(x)`` in place for positive normal ``x`` (C-contiguous), vectorisable.

    ``x = m 2^e`` read from the float's fields (``bits`` viewed as ``fbits``; ``shift``/``bias`` as
    :func:`_exp_row`; ``e`` becomes a float as the low bits of ``2^shift + e + bias``, without an
    integer-to-float conversion), ``m`` moved into [sqrt(1/2), sqrt(2)); ``ln m = 2 atanh(t)``,
    ``t = (m - 1) / (m + 1)`` (``|t| < 0.172``) by its series to ``t^9`` (relative error < 1e-9);
    ``e ln 2`` with the two-part ``ln 2`` of :func:`_exp_row`.
    """
    c = x.dtype.type
    it = bits.dtype.type
    mant, ones, magic = it((1 << shift) - 1), it(bias << shift), it((shift + bias) << shift)
    one, two, half, sqrt2, emagic = c(1.0), c(2.0), c(0.5), c(1.4142135623730951), c((1 << shift) + bias)
    ln2_hi, ln2_lo = c(0.693359375), c(-2.12194440e-4)
    k3, k5, k7, k9 = c(1.0 / 3), c(1.0 / 5), c(1.0 / 7), c(1.0 / 9)
    n = x.shape[0]
    xbits = x.view(bits.dtype)
    for j in range(n):
        fbits[j] = x[j]
    for j in range(n):
        b = bits[j]
        xbits[j] = (b >> shift) | magic
        bits[j] = (b & mant) | ones
    for j in range(n):
        m = fbits[j]
        e = x[j] - emagic
        big = m > sqrt2
        m = m * half if big else m
        e = e + one if big else e
        t = (m - one) / (m + one)
        t2 = t * t
        x[j] = e * ln2_hi + (e * ln2_lo + two * t * (one + t2 * (k3 + t2 * (k5 + t2 * (k7 + t2 * k9)))))


@nb.njit(cache=True)
def _index_row(x, table, out):  # pragma: no cover - compiled
    """``out[j] = table[x[j]]`` for 8-bit codes ``x`` (uint8)."""
    for j in range(x.shape[0]):
        out[j] = table[np.intp(x[j])]


@nb.njit(parallel=True, cache=True, nogil=True)
def codes8(src, codes, par):  # pragma: no cover - compiled
    """Whether every sample of ``src (3, H, W)`` float32 is an 8-bit value ``v / 255`` exactly (the
    decoder's ``float32(v) / 255``); if so ``codes (3, H, W)`` uint8 holds the ``v``."""
    bad = 0
    if par:
        for r in nb.prange(src.shape[1]):
            bad += _codes8_row(src, codes, r)
    else:
        for r in range(src.shape[1]):
            bad += _codes8_row(src, codes, r)
    return bad == 0


@nb.njit(cache=True, error_model="numpy")  # no zero-division check: the division loops vectorise
def _codes8_row(src, codes, r):  # pragma: no cover - compiled
    c = src.dtype.type
    s, half, zero, one = c(255.0), c(0.5), c(0.0), c(1.0)
    miss = 0
    for ch in range(src.shape[0]):
        x, o = src[ch, r], codes[ch, r]
        for j in range(x.shape[0]):
            v = x[j]
            ok = v >= zero and v <= one  # False for NaN
            q = np.uint8(v * s + half) if ok else np.uint8(0)
            o[j] = q
            if not ok or c(q) / s != v:
                miss += 1
    return miss


@nb.njit(cache=True)
def table8(curve, out, fast, bits_proto):  # pragma: no cover - compiled
    """``out[v] = f(v / 255)`` for ``v = 0 .. 255``: :func:`_curve_row` of the 8-bit values (the same
    arithmetic, so an 8-bit image looked up by :func:`_index_row` gets the same samples as its float
    image); an empty ``curve``: the values ``v / 255`` themselves. ``fast``, ``bits_proto``: as
    :func:`expose_weigh`."""
    c = out.dtype.type
    x = np.empty(256, dtype=out.dtype)
    for v in range(256):
        x[v] = c(v) / c(255.0)
    if curve.shape[0] == 0:
        _copy_row(x, out)
    else:
        bits = np.empty(256, dtype=bits_proto.dtype)
        shift, bias = (23, 127) if bits_proto.itemsize == 4 else (52, 1023)
        _curve_row(x, curve, out, np.empty(256, dtype=out.dtype), bits, bits.view(out.dtype), shift, bias, fast)


@nb.njit(cache=True)
def _exp_row(x, bits, fbits, shift, bias):  # pragma: no cover - compiled
    """``x = exp(x)`` in place for ``x <= 0``, vectorisable (float32; ``np.exp`` is a scalar call).

    ``exp(x) = 2^n e^r`` with ``n = round(x / ln 2)``, ``r = x - n ln 2`` (Cody-Waite, two-part
    ``ln 2``) in [-0.35, 0.35], ``e^r`` by its degree-7 Taylor polynomial (relative error < 1e-8),
    ``2^n`` built as the float with exponent field ``n + bias`` (``bits`` viewed as ``fbits``):
    the float ``n + 2^shift + bias`` holds ``n + bias`` in its low bits, shifted into the exponent
    field (no float-to-integer conversion, which AVX2 lacks for 64-bit integers, so the loops vectorise).
    Inputs below -87 give ``exp(-87)`` (~1.6e-38, i.e. 0 next to ``eps`` = 1e-12).
    """
    c = x.dtype.type
    lo, l2e, half = c(-87.0), c(1.4426950408889634), c(0.5)
    ln2_hi, ln2_lo = c(0.693359375), c(-2.12194440e-4)
    k2, k3, k4, k5, k6, k7 = c(1.0 / 2), c(1.0 / 6), c(1.0 / 24), c(1.0 / 120), c(1.0 / 720), c(1.0 / 5040)
    one, magic = c(1.0), c((1 << shift) + bias)
    for j in range(x.shape[0]):
        y = max(x[j], lo)
        n = np.floor(y * l2e + half)
        r = (y - n * ln2_hi) - n * ln2_lo
        x[j] = one + r * (one + r * (k2 + r * (k3 + r * (k4 + r * (k5 + r * (k6 + r * k7))))))
        fbits[j] = n + magic
    for j in range(x.shape[0]):
        bits[j] = bits[j] << shift
    for j in range(x.shape[0]):
        x[j] = x[j] * fbits[j]


@nb.njit(cache=True)
def _copy_row(x, out):  # pragma: no cover - compiled
    for j in range(x.shape[0]):
        out[j] = x[j]


@nb.njit(parallel=True, cache=True, nogil=True)
def expose_weigh(src, curve, how, prm, mode, wsum, img_out, w_out, fast_exp, bits_proto, par):  # pragma: no cover - compiled
    """Exposure ``x = f(src)`` (or ``src`` itself) and its Mertens weight (Eq. 30), row by row.

    ``src (3, H, W)``; ``how`` 0: ``x = src``; 1: ``curve`` holds the parameters of
    :func:`deepexposure.fusion.exposure_curve` (:func:`_curve_row`); 2: ``src`` holds 8-bit codes and
    ``curve`` their 256 exposed values (:func:`table8`); ``prm = (c1, c2, c3, -c3 / (2 sigma^2), eps)``
    in the images' dtype.
    ``mode`` 0: ``img_out = x`` only; 1: ``wsum += W`` (nothing else written); 2: ``img_out = x``, ``w_out = W / wsum``;
    3: ``w_out = W``, ``wsum += W``. ``W = C^c1 S^c2 E^c3 + eps`` with contrast
    ``C = |(up + down - 2 c) + (left + right - 2 c)|`` of the grey ``0.299 r + 0.587 g + 0.114 b``
    (this order: exactly 0 on flat areas, as the batched path), saturation
    ``S = sqrt(((r-g)^2 + (g-b)^2 + (b-r)^2) / 3)``, exposedness ``E = exp(-c3 sum_c (x_c - 0.5)^2
    / (2 sigma^2))`` (``fast_exp``: by :func:`_exp_row`, whose float-building needs ``bits_proto``, an
    empty array of the signed integer type as wide as the images' dtype). Each parallel task takes a block of rows and keeps the exposed rows and their
    grey in a ring of three rows, so every sample is looked up about once.
    """
    h = src.shape[1]
    nblk = (h + _BLOCK - 1) // _BLOCK
    if par:
        for blk in nb.prange(nblk):
            a = blk * _BLOCK
            _expose_weigh_block(src, curve, how, prm, mode, wsum, img_out, w_out, fast_exp, bits_proto, a, min(a + _BLOCK, h), 0)
    else:
        for blk in range(nblk):
            a = blk * _BLOCK
            _expose_weigh_block(src, curve, how, prm, mode, wsum, img_out, w_out, fast_exp, bits_proto, a, min(a + _BLOCK, h), 0)


@nb.njit(cache=True, error_model="numpy")  # no zero-division check: the division loops vectorise
def _expose_weigh_block(src, curve, how, prm, mode, wsum, img_out, w_out, fast_exp, bits_proto, a, e, off):  # pragma: no cover - compiled
    """Rows ``a .. e - 1`` of :func:`expose_weigh` (serial: the parallel loops only call this), written
    to row ``r - off`` of ``img_out`` and ``w_out`` (``wsum`` is indexed by ``r``)."""
    c = wsum.dtype.type
    _, h, w = src.shape
    c1, c2, c3, escale, eps = prm[0], prm[1], prm[2], prm[3], prm[4]
    zero, one, third, half, m2 = c(0.0), c(1.0), c(1.0 / 3.0), c(0.5), c(-2.0)
    kr, kg, kb = c(0.299), c(0.587), c(0.114)
    jl, jr = _refl(-1, w), _refl(w, w)
    ring = np.empty((3, 3, w), dtype=wsum.dtype)  # exposed rows r - 1, r, r + 1 (slot = row % 3)
    grey = np.empty((3, w + 2), dtype=wsum.dtype)  # their grey, one reflected column each side
    wrow = np.empty(w, dtype=wsum.dtype)
    erow = np.empty(w, dtype=wsum.dtype)
    bits = np.empty(w, dtype=bits_proto.dtype)
    fbits = bits.view(wsum.dtype)
    shift, bias = (23, 127) if bits_proto.itemsize == 4 else (52, 1023)
    for q in range(a - 1, e + 1):  # fill row q, then weigh row q - 1
        slot = q % 3
        rq = _refl(q, h)
        for ch in range(3):
            if how == 1:
                _curve_row(src[ch, rq], curve, ring[slot, ch], erow, bits, fbits, shift, bias, fast_exp)
            elif how == 2:
                _index_row(src[ch, rq], curve, ring[slot, ch])
            else:
                _copy_row(src[ch, rq], ring[slot, ch])
        n0, n1, n2, gr = ring[slot, 0], ring[slot, 1], ring[slot, 2], grey[slot]
        for j in range(w):
            gr[j + 1] = n0[j] * kr + n1[j] * kg + n2[j] * kb
        gr[0] = gr[1 + jl]
        gr[w + 1] = gr[1 + jr]
        r = q - 1
        if r < a:
            continue
        cur = r % 3
        if mode == 0:
            for ch in range(3):
                _copy_row(ring[cur, ch], img_out[ch, r - off])
            continue
        gu, gc, gd = grey[(r - 1) % 3], grey[cur], grey[(r + 1) % 3]
        if c1 != zero:
            for j in range(w):
                v = gu[j + 1] + gd[j + 1]
                v = v + m2 * gc[j + 1]
                v = v + gc[j]
                v = v + gc[j + 2]
                v = v + m2 * gc[j + 1]
                wrow[j] = abs(v)
            if c1 != one:
                for j in range(w):
                    wrow[j] = wrow[j] ** c1
        else:
            for j in range(w):
                wrow[j] = one
        x0, x1, x2 = ring[cur, 0], ring[cur, 1], ring[cur, 2]
        if c2 != zero:
            for j in range(w):
                p, q2, d = x0[j] - x1[j], x1[j] - x2[j], x2[j] - x0[j]
                erow[j] = p * p * third + q2 * q2 * third + d * d * third
            if c2 == one:
                for j in range(w):
                    wrow[j] = wrow[j] * np.sqrt(erow[j])
            else:
                for j in range(w):
                    wrow[j] = wrow[j] * erow[j] ** (half * c2)
        if c3 != zero:
            for j in range(w):
                p, q2, d = x0[j] - half, x1[j] - half, x2[j] - half
                erow[j] = p * p * escale + q2 * q2 * escale + d * d * escale
            if fast_exp:
                _exp_row(erow, bits, fbits, shift, bias)
            else:
                for j in range(w):
                    erow[j] = np.exp(erow[j])
            for j in range(w):
                wrow[j] = wrow[j] * erow[j]
        if mode == 1:
            for j in range(w):
                wsum[r, j] += wrow[j] + eps
        elif mode == 2:
            wo = w_out[r - off]
            for j in range(w):
                wo[j] = (wrow[j] + eps) / wsum[r, j]
            for ch in range(3):
                _copy_row(ring[cur, ch], img_out[ch, r - off])
        else:
            wo = w_out[r - off]
            for j in range(w):
                v = wrow[j] + eps
                wo[j] = v
                wsum[r, j] += v


@nb.njit(parallel=True, cache=True, nogil=True)
def down4(src, dst, par):  # pragma: no cover - compiled
    """``dst = pyr_down(src)``: ``src (C, h, w) -> dst (C, ceil(h/2), ceil(w/2))`` (``cv2.pyrDown``).

    Separable unscaled ``[1, 4, 6, 4, 1]`` sums (``(t0 + t4) + 4 t1 + 4 t3 + 6 t2``), reflect-101,
    even samples kept, then ``/ 256``.
    """
    h = src.shape[1]
    if par:
        for i in nb.prange(dst.shape[1]):
            _down_row(src, dst, i, h, 0, 0)
    else:
        for i in range(dst.shape[1]):
            _down_row(src, dst, i, h, 0, 0)


@nb.njit(cache=True)
def _down_row(src, dst, i, h, src_off, dst_off):  # pragma: no cover - compiled
    """Row ``i`` of ``pyr_down`` of a plane of ``h`` rows into ``dst[:, i - dst_off]``; its row ``r`` is
    ``src[:, r - src_off]`` (``src`` may hold only the rows this output row needs)."""
    c = src.dtype.type
    n_ch, _, w = src.shape
    n = dst.shape[2]
    four, six, scale = c(4.0), c(6.0), c(1.0 / 256.0)
    tmp = np.empty(w + 4, dtype=src.dtype)
    r0, r1, r2 = _refl(2 * i - 2, h) - src_off, _refl(2 * i - 1, h) - src_off, _refl(2 * i, h) - src_off
    r3, r4 = _refl(2 * i + 1, h) - src_off, _refl(2 * i + 2, h) - src_off
    for ch in range(n_ch):
        s0, s1, s2, s3, s4 = src[ch, r0], src[ch, r1], src[ch, r2], src[ch, r3], src[ch, r4]
        for x in range(w):
            v = s0[x] + s4[x]
            v = v + four * s1[x]
            v = v + four * s3[x]
            tmp[x + 2] = v + six * s2[x]
        for p in (0, 1, w + 2, w + 3):
            tmp[p] = tmp[_refl(p - 2, w) + 2]
        out = dst[ch, i - dst_off]
        for j in range(n):
            q = 2 * j
            v = tmp[q] + tmp[q + 4]
            v = v + four * tmp[q + 1]
            v = v + four * tmp[q + 3]
            v = v + six * tmp[q + 2]
            out[j] = v * scale


@nb.njit(cache=True)
def _up_row(src, r, tmp, row, hs, off):  # pragma: no cover - compiled
    """Row ``r`` of ``64 * pyr_up(s)`` (unscaled) for channels 0-2 of a plane ``s (C, hs, ws)``
    into ``row (3, 2 ws)``; ``tmp (ws + 2,)``. Row ``i`` of ``s`` is ``src[:, i - off]`` (``src`` may
    hold only the rows this output row needs).

    ``up[2i] = s[i-1] + 6 s[i] + s[i+1]``, ``up[2i+1] = 4 s[i] + 4 s[i+1]`` along each axis, with
    ``s[-1] = s[lo]``, ``s[n] = s[hi]`` (reflect-101 of the zero-inserted signal).
    """
    c = src.dtype.type
    ws = src.shape[2]
    four, six = c(4.0), c(6.0)
    i = r // 2
    lo_r, hi_r = _refl(-2, 2 * hs) // 2, _refl(2 * hs, 2 * hs) // 2
    lo_c, hi_c = _refl(-2, 2 * ws) // 2, _refl(2 * ws, 2 * ws) // 2
    rb = i + 1 if i + 1 < hs else hi_r
    for ch in range(3):
        sb, sc = src[ch, rb - off], src[ch, i - off]
        if r % 2 == 0:
            sa = src[ch, (i - 1 if i >= 1 else lo_r) - off]
            for x in range(ws):
                v = sa[x] + sb[x]
                tmp[x + 1] = v + six * sc[x]
        else:
            for x in range(ws):
                v = four * sc[x]
                tmp[x + 1] = v + four * sb[x]
        tmp[0] = tmp[1 + lo_c]
        tmp[ws + 1] = tmp[1 + hi_c]
        out = row[ch]
        for k in range(ws):
            v = tmp[k] + tmp[k + 2]
            out[2 * k] = v + six * tmp[k + 1]
            v = four * tmp[k + 1]
            out[2 * k + 1] = v + four * tmp[k + 2]


@nb.njit(parallel=True, cache=True, nogil=True)
def laplacian_accumulate(g, g_next, out, par):  # pragma: no cover - compiled
    """``out += g[3] * (g[:3] - pyr_up(g_next[:3]))``: one exposure's weighted Laplacian band (Eq. 31).

    ``g (4, h, w)`` is level l of the exposure's Gaussian image (channels 0-2) and weight (3),
    ``g_next (4, ceil(h/2), ceil(w/2))`` level l + 1, ``out (3, h, w)`` the fused band l.
    """
    hs = g_next.shape[1]
    if par:
        for r in nb.prange(g.shape[1]):
            _laplacian_row(g, 0, g_next, hs, 0, out, r)
    else:
        for r in range(g.shape[1]):
            _laplacian_row(g, 0, g_next, hs, 0, out, r)


@nb.njit(cache=True)
def _laplacian_row(g, g_off, g_next, hs, next_off, out, r):  # pragma: no cover - compiled
    """Row ``r`` of :func:`laplacian_accumulate`; row ``r`` of level l is ``g[:, r - g_off]``, row ``i`` of
    level l + 1 (``hs`` rows) is ``g_next[:, i - next_off]``."""
    c = g.dtype.type
    w = g.shape[2]
    ws = g_next.shape[2]
    scale = c(1.0 / 64.0)
    tmp = np.empty(ws + 2, dtype=g.dtype)
    row = np.empty((3, 2 * ws), dtype=g.dtype)
    _up_row(g_next, r, tmp, row, hs, next_off)
    wt = g[3, r - g_off]
    for ch in range(3):
        gi, up, o = g[ch, r - g_off], row[ch], out[ch, r]
        for x in range(w):
            band = gi[x] - up[x] * scale
            o[x] += band * wt[x]


@nb.njit(parallel=True, cache=True, nogil=True)
def expose_level0(src, curve, how, prm, keep, wsum, wkept, g1, out, fast_exp, bits_proto, par):  # pragma: no cover - compiled
    """Level 0 of one exposure in one pass: ``expose_weigh`` (mode 2; with ``keep``: mode 0 and the
    weight ``wkept / wsum``), then ``down4`` into ``g1`` and ``laplacian_accumulate`` into ``out``.

    The same values as those three calls (the same arithmetic per sample), without the full-size
    ``(4, H, W)`` level 0: each task takes :data:`_LEVEL0_BLOCK` rows of ``out``, computes the level-0
    rows their band and their level-1 rows need into a block buffer (a few rows around the block are
    computed by both neighbours), writes its own rows of ``g1 (4, ceil(H/2), ceil(W/2))`` and adds its
    band rows to ``out (3, H, W)``. ``src``, ``curve``, ``how``, ``prm``, ``fast_exp``,
    ``bits_proto``: as :func:`expose_weigh`; ``wkept (H, W)`` the exposure's raw weight (read only
    with ``keep``).
    """
    h = src.shape[1]
    nblk = (h + _LEVEL0_BLOCK - 1) // _LEVEL0_BLOCK
    if par:
        for blk in nb.prange(nblk):
            _level0_block(src, curve, how, prm, keep, wsum, wkept, g1, out, fast_exp, bits_proto, blk)
    else:
        for blk in range(nblk):
            _level0_block(src, curve, how, prm, keep, wsum, wkept, g1, out, fast_exp, bits_proto, blk)


@nb.njit(cache=True, error_model="numpy")  # no zero-division check: the division loops vectorise
def _level0_block(src, curve, how, prm, keep, wsum, wkept, g1, out, fast_exp, bits_proto, blk):  # pragma: no cover - compiled
    """Block ``blk`` of :func:`expose_level0`: rows ``a .. b - 1`` of ``out``."""
    _, h, w = src.shape
    hs = g1.shape[1]
    a = blk * _LEVEL0_BLOCK
    b = min(a + _LEVEL0_BLOCK, h)
    # level-1 rows the band rows read (pyr_up: i - 1, i, i + 1 and the reflected lo_r <= 1 at the top)
    lo1 = max(a // 2 - 1, 0)
    hi1 = min((b - 1) // 2 + 1, hs - 1)
    # level-0 rows those level-1 rows read (pyr_down: 2 i - 2 .. 2 i + 2, reflected into [0, h))
    lo0 = max(2 * lo1 - 2, 0)
    hi0 = min(2 * hi1 + 2, h - 1)
    g0 = np.empty((4, hi0 - lo0 + 1, w), dtype=wsum.dtype)
    if keep:
        _expose_weigh_block(src, curve, how, prm, 0, wsum, g0, g0[3], fast_exp, bits_proto, lo0, hi0 + 1, lo0)
        for r in range(lo0, hi0 + 1):
            wo, wk, ws = g0[3, r - lo0], wkept[r], wsum[r]
            for j in range(w):
                wo[j] = wk[j] / ws[j]
    else:
        _expose_weigh_block(src, curve, how, prm, 2, wsum, g0, g0[3], fast_exp, bits_proto, lo0, hi0 + 1, lo0)
    g1b = np.empty((4, hi1 - lo1 + 1, g1.shape[2]), dtype=wsum.dtype)
    for i in range(lo1, hi1 + 1):
        _down_row(g0, g1b, i, h, lo0, lo1)
    for i in range(a // 2, (b + 1) // 2):  # this block's own level-1 rows
        for ch in range(4):
            _copy_row(g1b[ch, i - lo1], g1[ch, i])
    for r in range(a, b):
        _laplacian_row(g0, lo0, g1b, hs, lo1, out, r)


@nb.njit(parallel=True, cache=True, nogil=True)
def weighted_add(g, out, par):  # pragma: no cover - compiled
    """``out += g[3] * g[:3]``: the coarsest band (the Gaussian top level is its own Laplacian band)."""
    if par:
        for r in nb.prange(g.shape[1]):
            _weighted_row(g, out, r)
    else:
        for r in range(g.shape[1]):
            _weighted_row(g, out, r)


@nb.njit(cache=True)
def _weighted_row(g, out, r):  # pragma: no cover - compiled
    wt = g[3, r]
    for ch in range(3):
        gi, o = g[ch, r], out[ch, r]
        for x in range(g.shape[2]):
            o[x] += gi[x] * wt[x]


@nb.njit(parallel=True, cache=True, nogil=True)
def up_add(coarse, fine, par):  # pragma: no cover - compiled
    """``fine += pyr_up(coarse)``: one step of collapsing the Laplacian pyramid. ``(3, h, w)``."""
    if par:
        for r in nb.prange(fine.shape[1]):
            _up_add_row(coarse, fine, r)
    else:
        for r in range(fine.shape[1]):
            _up_add_row(coarse, fine, r)


@nb.njit(cache=True)
def _up_add_row(coarse, fine, r):  # pragma: no cover - compiled
    c = fine.dtype.type
    w = fine.shape[2]
    ws = coarse.shape[2]
    scale = c(1.0 / 64.0)
    tmp = np.empty(ws + 2, dtype=fine.dtype)
    row = np.empty((3, 2 * ws), dtype=fine.dtype)
    _up_row(coarse, r, tmp, row, coarse.shape[1], 0)
    for ch in range(3):
        up, o = row[ch], fine[ch, r]
        for x in range(w):
            o[x] += up[x] * scale
