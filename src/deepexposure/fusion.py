"""Mertens exposure fusion: the streaming full-resolution engine, and the one import for fusion.

The maths (Eqs. (30)-(31) of the DeepExposure supplement: weights, pyramids, the batched
autograd fusion of training stacks) is in :mod:`deepexposure.mertens` and re-exported here;
this module adds :func:`exposure_fusion_streaming`, the same fusion of one full-resolution
image with bounded memory and no autograd, computed strip by strip (it reproduces the batched
path to 1e-10 in float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import mertens
from .mertens import (  # re-exported: this module is the one import for fusion
    MERTENS_EPS as MERTENS_EPS,
    FusionConfig as FusionConfig,
    _reflect101,
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

__all__ = [*mertens.__all__, "exposure_fusion_streaming"]

# --------------------------------------------------------------------------------------------
# Streaming full-resolution path (no autograd).
#
# Every full-resolution quantity is produced in horizontal strips of rows into small reused
# buffers: the arithmetic runs on cache-resident data, no full-size temporary is allocated
# (fresh 100+ MB tensors cost more in page faults than the arithmetic), and the number of
# torch calls stays small (each costs microseconds of dispatch and a thread-pool barrier).
# From level 1 up, an exposure's image and weight share one (4, h, w) buffer so that a single
# set of calls reduces both. The kernels compute the same sums as pyr_down / pyr_up /
# _raw_weights; up-sampled strips are left unscaled (x64) and the consumer folds 1/64 into
# its ``alpha``.
# --------------------------------------------------------------------------------------------

_UP_SCALE = 1.0 / 64.0
#: pixels per strip (rows = _STRIP_PIXELS // width, even): 32 MB per channel, three strips of
#: a 24 MP frame. Smaller strips are kinder to the cache but cost more torch calls; each call
#: on more than 32k elements is an OpenMP parallel region, and on an oversubscribed machine
#: (libgomp's default spin-waiting) the number of regions, not the arithmetic, sets the time.
_STRIP_PIXELS = 1 << 23


class _Workspace:
    """Named flat buffers, grown on demand and handed out as views of the requested shape."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        self._dtype = dtype
        self._device = device
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n:
            self._bufs.pop(name, None)
            buf = torch.empty(n, dtype=self._dtype, device=self._device)
            self._bufs[name] = buf
        return buf[:n].view(shape)


def _strip_rows(width: int) -> int:
    return max(2, (_STRIP_PIXELS // max(width, 1)) & ~1)


_ALL = slice(None)


def _every2(t: torch.Tensor, dim: int, start: int, count: int) -> torch.Tensor:
    """``count`` samples of ``t`` along ``dim`` (0, 1 or 2) from ``start`` with step 2 (a view)."""
    return t[(_ALL,) * dim + (slice(start, start + 2 * count - 1 if count > 0 else start, 2),)]


def _down_axis_into(src: torch.Tensor, dst: torch.Tensor, dim: int, first: int = 0) -> None:
    """``dst[j] = sum_t k_t src[2 (first + j) + t - 2]``, ``k = (1, 4, 6, 4, 1)`` (unscaled), reflect-101.

    ``dst`` holds outputs ``first .. first + dst.shape[dim] - 1`` of the reduction of ``src``.
    """
    n = src.shape[dim]
    j0, j1 = first, first + dst.shape[dim]
    a, b = max(j0, 1), min(j1, (n - 3) // 2 + 1)  # outputs reading only in-range samples
    if b > a:
        inner = dst.narrow(dim, a - j0, b - a)
        torch.add(_every2(src, dim, 2 * a - 2, b - a), _every2(src, dim, 2 * a + 2, b - a), out=inner)
        inner.add_(_every2(src, dim, 2 * a - 1, b - a), alpha=4.0)
        inner.add_(_every2(src, dim, 2 * a + 1, b - a), alpha=4.0)
        inner.add_(_every2(src, dim, 2 * a, b - a), alpha=6.0)
    for j in range(j0, j1):
        if a <= j < b:
            continue
        row = dst.select(dim, j - j0)
        row.copy_(src.select(dim, _reflect101(2 * j - 2, n)))
        for t, k in ((1, 4.0), (2, 6.0), (3, 4.0), (4, 1.0)):
            row.add_(src.select(dim, _reflect101(2 * j + t - 2, n)), alpha=k)


def _up_axis_into(src: torch.Tensor, dst: torch.Tensor, dim: int, first: int, size: int) -> None:
    """Samples ``first ..`` (``first`` even) of ``8 * up(src)`` along ``dim`` (unscaled) into ``dst``.

    ``size`` is the full up-sampled length (``2n`` or ``2n - 1``).
    ``up[2i] = s[i-1] + 6 s[i] + s[i+1]``, ``up[2i+1] = 4 s[i] + 4 s[i+1]`` with the
    reflect-101 extension of the zero-inserted signal (``s[-1] = s[lo]``, ``s[n] = s[hi]``).
    """
    n = src.shape[dim]
    count = dst.shape[dim]
    if size not in (2 * n, 2 * n - 1) or first % 2 or first + count > size or n < 2:
        raise ValueError("internal error: bad up-sampling strip")
    lo = _reflect101(-2, 2 * n) // 2
    hi = _reflect101(2 * n, 2 * n) // 2
    i0 = first // 2
    n_even, n_odd = (count + 1) // 2, count // 2
    even = _every2(dst, dim, 0, n_even)
    odd = _every2(dst, dim, 1, n_odd)
    a, b = max(i0, 1), min(i0 + n_even, n - 1)
    if b > a:
        inner = even.narrow(dim, a - i0, b - a)
        torch.add(src.narrow(dim, a - 1, b - a), src.narrow(dim, a + 1, b - a), out=inner)
        inner.add_(src.narrow(dim, a, b - a), alpha=6.0)
    for i in range(i0, i0 + n_even):
        if a <= i < b:
            continue
        row = even.select(dim, i - i0)
        torch.add(src.select(dim, i - 1 if i >= 1 else lo), src.select(dim, i + 1 if i + 1 < n else hi), out=row)
        row.add_(src.select(dim, i), alpha=6.0)
    b = max(min(i0 + n_odd, n - 1), i0)
    if b > i0:
        inner = odd.narrow(dim, 0, b - i0)
        torch.mul(src.narrow(dim, i0, b - i0), 4.0, out=inner)
        inner.add_(src.narrow(dim, i0 + 1, b - i0), alpha=4.0)
    for i in range(b, i0 + n_odd):
        row = odd.select(dim, i - i0)
        torch.mul(src.select(dim, i), 4.0, out=row)
        row.add_(src.select(dim, hi), alpha=4.0)


def _down_rows(
    sources: list[tuple[torch.Tensor, slice]], dst: torch.Tensor, j0: int, j1: int, ws: _Workspace
) -> None:
    """``dst[:, j0:j1] = pyr_down(cat(sources))[:, j0:j1]``; ``sources`` are ``(C_s, H, W)`` planes and
    the channel slices of ``dst`` they go to."""
    c = dst.shape[0]
    h, w = sources[0][0].shape[-2:]
    if h < 3 or w < 3:  # tiny top levels: the generic path
        for src, ch in sources:
            dst[ch, j0:j1] = pyr_down(src.unsqueeze(0))[0, :, j0:j1]
        return
    n = j1 - j0
    tmp = ws.get("down_v", (c, n, w + 4))  # two reflect-101 columns each side
    for src, ch in sources:
        _down_axis_into(src, tmp[ch, :, 2 : w + 2], 1, first=j0)
    for p in (0, 1, w + 2, w + 3):  # padded column p is original column p - 2
        tmp[:, :, p].copy_(tmp[:, :, _reflect101(p - 2, w) + 2])
    m = dst.shape[-1]
    out = dst[:, j0:j1]
    torch.add(_every2(tmp, 2, 0, m), _every2(tmp, 2, 4, m), out=out)
    out.add_(_every2(tmp, 2, 1, m), alpha=4.0)
    out.add_(_every2(tmp, 2, 3, m), alpha=4.0)
    out.add_(_every2(tmp, 2, 2, m), alpha=6.0)
    out.mul_(1.0 / 256.0)


def _up_rows(src: torch.Tensor, r0: int, r1: int, size: tuple[int, int], ws: _Workspace) -> torch.Tensor:
    """Rows ``r0:r1`` (``r0`` even) of ``64 * pyr_up(src, size)`` as a workspace view ``(C, r1 - r0, W)``."""
    c, hs, wsrc = src.shape
    out = ws.get("up_h", (c, r1 - r0, size[1]))
    if hs < 2 or wsrc < 2:  # tiny top levels: the generic path
        torch.mul(pyr_up(src.unsqueeze(0), size)[0, :, r0:r1], 64.0, out=out)
        return out
    tmp = ws.get("up_v", (c, r1 - r0, wsrc + 2))  # one reflect-101 column each side
    _up_axis_into(src, tmp[:, :, 1 : wsrc + 1], 1, first=r0, size=size[0])
    tmp[:, :, 0].copy_(tmp[:, :, 1 + _reflect101(-2, 2 * wsrc) // 2])
    tmp[:, :, wsrc + 1].copy_(tmp[:, :, 1 + _reflect101(2 * wsrc, 2 * wsrc) // 2])
    n_even, n_odd = (size[1] + 1) // 2, size[1] // 2
    even, odd = _every2(out, 2, 0, n_even), _every2(out, 2, 1, n_odd)
    torch.add(tmp[:, :, 0:n_even], tmp[:, :, 2 : n_even + 2], out=even)
    even.add_(tmp[:, :, 1 : n_even + 1], alpha=6.0)
    torch.mul(tmp[:, :, 1 : n_odd + 1], 4.0, out=odd)
    odd.add_(tmp[:, :, 2 : n_odd + 2], alpha=4.0)
    return out


def _raw_weight_rows(img: torch.Tensor, out: torch.Tensor, r0: int, r1: int, cfg: FusionConfig, ws: _Workspace) -> None:
    """Rows ``r0:r1`` of the raw weight ``C^c1 S^c2 E^c3 + eps`` of ``img (3, H, W)`` into ``out (r1 - r0, W)``.

    The same arithmetic as :func:`_raw_weights`, on strip-sized reused buffers.
    """
    _, h, w = img.shape
    n = r1 - r0
    strip = img[:, r0:r1]
    if cfg.contrast_weight != 0:
        # grey of rows r0-1 .. r1 (reflect-101 at the image border), one padded column each side
        pad = ws.get("w_pad", (n + 2, w + 2))
        ga, gb = max(r0 - 1, 0), min(r1 + 1, h)
        grey = pad[ga - (r0 - 1) : gb - (r0 - 1), 1 : w + 1]
        src = img[:, ga:gb]
        torch.mul(src[0], 0.299, out=grey)
        grey.add_(src[1], alpha=0.587)
        grey.add_(src[2], alpha=0.114)
        for k in (0, n + 1):
            p = r0 - 1 + k
            if not ga <= p < gb:
                pad[k, 1 : w + 1].copy_(pad[_reflect101(p, h) - (r0 - 1), 1 : w + 1])
        pad[:, 0].copy_(pad[:, 1 + _reflect101(-1, w)])
        pad[:, w + 1].copy_(pad[:, 1 + _reflect101(w, w)])
        # (up + down - 2 c) + (left + right - 2 c), in this order: exactly 0 on flat areas
        # (clipped highlights), as the batched path; "+ 4 neighbours - 4 c" leaves rounding
        # noise there, which then decides the otherwise all-eps weights.
        centre = pad[1 : n + 1, 1 : w + 1]
        torch.add(pad[0:n, 1 : w + 1], pad[2 : n + 2, 1 : w + 1], out=out)
        out.add_(centre, alpha=-2.0)
        out.add_(pad[1 : n + 1, 0:w])
        out.add_(pad[1 : n + 1, 2 : w + 2])
        out.add_(centre, alpha=-2.0)
        out.abs_()
        if cfg.contrast_weight != 1:
            out.pow_(cfg.contrast_weight)
    else:
        out.fill_(1.0)
    zero = img.new_zeros(())
    t3 = ws.get("w_t3", (3, n, w))
    t1 = ws.get("w_t1", (n, w))
    if cfg.saturation_weight != 0:
        # sqrt(((r - g)^2 + (g - b)^2 + (b - r)^2) / 3) ** c2
        torch.sub(strip[0:2], strip[1:3], out=t3[0:2])
        torch.sub(strip[2], strip[0], out=t3[2])
        torch.addcmul(zero, t3[0], t3[0], value=1.0 / 3.0, out=t1)
        t1.addcmul_(t3[1], t3[1], value=1.0 / 3.0)
        t1.addcmul_(t3[2], t3[2], value=1.0 / 3.0)
        if cfg.saturation_weight == 1:
            t1.sqrt_()
        else:
            t1.pow_(0.5 * cfg.saturation_weight)
        out.mul_(t1)
    if cfg.exposedness_weight != 0:
        torch.sub(strip, 0.5, out=t3)
        scale = -cfg.exposedness_weight / (2.0 * cfg.sigma**2)
        torch.addcmul(zero, t3[0], t3[0], value=scale, out=t1)
        t1.addcmul_(t3[1], t3[1], value=scale)
        t1.addcmul_(t3[2], t3[2], value=scale)
        out.mul_(t1.exp_())
    out.add_(MERTENS_EPS)


def _raw_weight_plane(
    img: torch.Tensor, out: torch.Tensor, cfg: FusionConfig, ws: _Workspace, wsum: torch.Tensor | None = None
) -> None:
    """``out (1, H, W)`` = raw weight of ``img (3, H, W)``, strip by strip; also ``wsum += out`` if given."""
    h, w = img.shape[-2:]
    rows = _strip_rows(w)
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        _raw_weight_rows(img, out[0, r0:r1], r0, r1, cfg, ws)
        if wsum is not None:
            wsum[:, r0:r1].add_(out[:, r0:r1])


def _level_shapes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    shapes = [(h, w)]
    for _ in range(levels):
        h, w = (h + 1) // 2, (w + 1) // 2
        shapes.append((h, w))
    return shapes


def _check_image(img: torch.Tensor, i: int, shape: tuple[int, ...] | None) -> torch.Tensor:
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[0] != 1 or img.shape[1] != 3:
        got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"make_image({i}) must return a (1, 3, H, W) tensor, got {got}")
    if shape is not None and tuple(img.shape) != shape:
        raise ValueError(f"make_image({i}) returned {tuple(img.shape)}, expected {shape}")
    return img[0]


def _accumulate_levels(
    img: torch.Tensor,
    weight: torch.Tensor,
    out: list[torch.Tensor],
    shapes: list[tuple[int, int]],
    first: int,
    last: int,
    ws: _Workspace,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``out[l] += sum_g G(w_g)_l * L(img_g)_l`` for levels ``first <= l < last``, strip by strip.

    ``img (3G, h, w)`` holds ``G`` images and ``weight (G, h, w)`` their normalised weights, both
    at level ``first``. Level ``l + 1`` of both pyramids is produced just ahead of the strip of
    level ``l`` that needs it, so each strip is read from memory about once. Returns the
    level-``last`` Gaussian images and weights (workspace views).
    """
    g = weight.shape[0]
    sources = [(img, slice(0, 3 * g)), (weight, slice(3 * g, 4 * g))]
    cur_img, cur_w = img, weight
    for lvl in range(first, last):
        (hc, wc), (hn, wn) = shapes[lvl], shapes[lvl + 1]
        nxt = ws.get("lvl_" + "ab"[lvl % 2], (4 * g, hn, wn))
        rows = _strip_rows(wc * g)
        done = 0
        for r0 in range(0, hc, rows):
            r1 = min(r0 + rows, hc)
            need = min(hn, (r1 + 1) // 2 + 1)
            if need > done:
                _down_rows(sources, nxt, done, need, ws)
                done = need
            band = _up_rows(nxt[0 : 3 * g], r0, r1, (hc, wc), ws)
            torch.sub(cur_img[:, r0:r1], band, alpha=_UP_SCALE, out=band)
            for j in range(g):
                out[lvl][:, r0:r1].addcmul_(band[3 * j : 3 * j + 3], cur_w[j : j + 1, r0:r1])
        sources = [(nxt, slice(0, 4 * g))]
        cur_img, cur_w = nxt[0 : 3 * g], nxt[3 * g : 4 * g]
    return cur_img, cur_w


#: Pyramid levels of at most this many pixels are not streamed per exposure: the K exposures'
#: Gaussian images and weights at the first such level are kept (at most K x 4 x this many
#: floats) and the coarse levels are processed for all K at once, with K times fewer calls.
_COARSE_PIXELS = 1 << 19


def exposure_fusion_streaming(
    make_image: Callable[[int], torch.Tensor],
    k: int,
    cfg: FusionConfig = FusionConfig(),
    *,
    keep_weights: bool = True,
) -> torch.Tensor:
    """Memory-frugal full-resolution Mertens fusion (Eqs. 30-31); the result of :func:`exposure_fusion`.

    Computes the same function as :func:`exposure_fusion` (float64: equal to 1e-10; float32: see
    the module notes on rounding). Holds one exposure and one image pyramid at a time, never all
    ``k``:

    1. pass 1: for each ``i`` build ``make_image(i)``, compute its raw weight ``W^i`` (in strips of
       rows) and add it to the weight sum; then normalise the kept weights;
    2. pass 2: for each ``i`` rebuild ``make_image(i)`` and walk both pyramids level by level,
       ``out_l += G(W^i)_l * (G_l - up(G_{l+1}))``, in strips of rows, producing level ``l + 1``
       just ahead of the strip of level ``l`` that needs it, down to the first level of at most
       ``2^19`` pixels, whose Gaussian image and weight are kept;
    3. do the remaining coarse levels for all ``k`` exposures at once (fewer, larger calls);
    4. collapse the accumulated Laplacian pyramid in place.

    Memory beyond the caller's images (24 MP, k = 5: about 1.1-1.2 GiB): the output pyramid
    (4/3 of an image), the ``k`` weight planes (``keep_weights=True``; else the weight sum and one
    recomputed weight), one exposure's levels 1 and 2 (4 channels), strip buffers of at most
    ~2^23 pixels per channel, and the coarse Gaussians (``k x 4 x 2^19`` floats at most). Nothing
    of that size is allocated per call of an inner loop. Runs under ``torch.no_grad()`` in the
    images' dtype (float32 expected); threading is the caller's business
    (``torch.set_num_threads``; see ``benchmarks/bench_fusion.py`` for ``OMP_WAIT_POLICY`` on a
    shared machine).

    Args:
        make_image: ``i -> (1, 3, H, W)`` exposure ``i`` in [0, 1], ``0 <= i < k``. Called twice per
            index, so it must be deterministic (a global exposure of the original is cheap).
            Its result is only read, never modified.
        k: number of exposures, ``>= 1``.
        cfg: :class:`FusionConfig`.
        keep_weights: keep the weight planes between the passes (faster) instead of
            recomputing them in pass 2 (``k - 2`` fewer planes held).
    Returns:
        ``(1, 3, H, W)`` fused image, unclipped like :func:`exposure_fusion`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    with torch.no_grad():
        first: torch.Tensor | None = _check_image(make_image(0), 0, None)
        assert first is not None
        shape = (1, *first.shape)
        _, h, w = first.shape
        dtype, device = first.dtype, first.device
        levels = _resolve_levels(h, w, cfg.levels)
        shapes = _level_shapes(h, w, levels)
        coarse = next((i for i, (hl, wl) in enumerate(shapes) if hl * wl <= _COARSE_PIXELS), levels)

        # pass 1: raw weights and their sum (own workspace, released before the pyramids exist)
        ws1 = _Workspace(dtype, device)
        wsum = torch.zeros((1, h, w), dtype=dtype, device=device)
        raws: list[torch.Tensor | None] = []
        for i in range(k):
            img = first if first is not None else _check_image(make_image(i), i, shape)  # i == 0 <=> first held
            first = None  # hold one exposure at a time
            raw = torch.empty_like(wsum) if keep_weights else ws1.get("raw", (1, h, w))
            _raw_weight_plane(img, raw, cfg, ws1, wsum)
            raws.append(raw if keep_weights else None)
            del img, raw
        del ws1
        if keep_weights:  # normalise now and drop the sum: one plane less while the pyramids exist
            for kept in raws:
                assert kept is not None
                kept.div_(wsum)
            del kept, wsum

        # pass 2: out_l = sum_i G(W^i / sum W)_l * L(img_i)_l for the fine levels l < coarse
        ws = _Workspace(dtype, device)
        out = [torch.zeros((3, hl, wl), dtype=dtype, device=device) for hl, wl in shapes]
        hc, wc = shapes[coarse]
        coarse_img = torch.empty((3 * k, hc, wc), dtype=dtype, device=device)
        coarse_w = torch.empty((k, hc, wc), dtype=dtype, device=device)
        for i in range(k):
            img = _check_image(make_image(i), i, shape)
            weight = raws[i]
            raws[i] = None
            if weight is None:
                weight = ws.get("raw", (1, h, w))
                _raw_weight_plane(img, weight, cfg, ws)
                weight.div_(wsum)
            g_img, g_w = _accumulate_levels(img, weight, out, shapes, 0, coarse, ws)
            coarse_img[3 * i : 3 * i + 3].copy_(g_img)
            coarse_w[i : i + 1].copy_(g_w)
            del img, weight, g_img, g_w
        del raws
        if not keep_weights:
            del wsum

        # the coarse levels, all exposures at once
        top_img, top_w = _accumulate_levels(coarse_img, coarse_w, out, shapes, coarse, levels, ws)
        for j in range(k):
            out[levels].addcmul_(top_img[3 * j : 3 * j + 3], top_w[j : j + 1])
        del ws, coarse_img, coarse_w, top_img, top_w

        # collapse in place: out_{l-1} += up(out_l)
        ws = _Workspace(dtype, device)
        for lvl in range(levels, 0, -1):
            hc, wc = shapes[lvl - 1]
            rows_l = _strip_rows(wc)
            for r0 in range(0, hc, rows_l):
                r1 = min(r0 + rows_l, hc)
                out[lvl - 1][:, r0:r1].add_(_up_rows(out[lvl], r0, r1, (hc, wc), ws), alpha=_UP_SCALE)
            out[lvl] = None  # type: ignore[call-overload]
        return out[0].unsqueeze(0)
