"""Numba kernels of average and max pooling, window offsets visited in row-major order (the NumPy
and CUDA paths' order, so average pooling agrees bit for bit). Max pooling: strict ``>``, so ties
keep the first maximum; a NaN beats any number and the first NaN wins (NumPy's rule); padding
never wins. Serial kernels over sample ranges ``[n0, n1)``; ``*_par`` drivers as in :mod:`._nb_conv`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)
_PAR = dict(_OPTS, parallel=True)

__all__ = ["avg_fwd", "avg_bwd", "max_fwd", "max_bwd", "avg_fwd_par", "avg_bwd_par", "max_fwd_par", "max_bwd_par"]


@njit(**_OPTS)
def _beats(v, m):
    """``v`` replaces the running maximum ``m``: it is larger, or it is the first NaN."""
    return v > m or (v != v and m == m)


@njit(**_OPTS)
def _span(O, S, P, k, L):
    """Outputs ``o`` in ``[lo, hi)`` whose tap ``k`` reads inside ``[0, L)``: ``0 <= o*S - P + k < L``."""
    lo = 0
    while lo < O and lo * S - P + k < 0:
        lo += 1
    hi = O
    while hi > lo and (hi - 1) * S - P + k >= L:
        hi -= 1
    return lo, hi


# The presets' pooling -- 2x2 windows, stride 2, no padding -- on whole output rows: four strided
# views per row instead of a view per window tap (~4x faster on these small planes), with the same
# operations in the same order, so the same bits as the general loops below. The four views are
# written out in each kernel on purpose: a helper returning them costs ~7x (measured).
def _is_2x2(KH, KW, SH, SW, PH, PW):
    return KH == 2 and KW == 2 and SH == 2 and SW == 2 and PH == 0 and PW == 0


_is_2x2 = njit(**_OPTS)(_is_2x2)


@njit(**_OPTS)
def _avg_fwd_2x2(x, y, scale, n0, n1):
    C, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    for n in range(n0, n1):
        for c in range(C):
            for oh in range(OH):
                r0, r1, yr = x[n, c, 2 * oh], x[n, c, 2 * oh + 1], y[n, c, oh]
                a, b, q, d = r0[0:2 * OW:2], r0[1:2 * OW:2], r1[0:2 * OW:2], r1[1:2 * OW:2]
                for j in range(OW):
                    yr[j] = (((a[j] + b[j]) + q[j]) + d[j]) * scale


@njit(**_OPTS)
def _avg_bwd_2x2(dy, dx, scale, n0, n1):
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    for n in range(n0, n1):
        for c in range(C):
            if H > 2 * OH or W > 2 * OW:
                dx[n, c] = 0  # rows/columns no window covers
            for oh in range(OH):
                g, r0, r1 = dy[n, c, oh], dx[n, c, 2 * oh], dx[n, c, 2 * oh + 1]
                a, b, q, d = r0[0:2 * OW:2], r0[1:2 * OW:2], r1[0:2 * OW:2], r1[1:2 * OW:2]
                for j in range(OW):
                    v = g[j] * scale
                    a[j] = v
                    b[j] = v
                    q[j] = v
                    d[j] = v


@njit(**_OPTS)
def _max_fwd_2x2(x, y, arg, n0, n1):
    C, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    for n in range(n0, n1):
        for c in range(C):
            for oh in range(OH):
                r0, r1, yr, ar = x[n, c, 2 * oh], x[n, c, 2 * oh + 1], y[n, c, oh], arg[n, c, oh]
                a, b, q, d = r0[0:2 * OW:2], r0[1:2 * OW:2], r1[0:2 * OW:2], r1[1:2 * OW:2]
                for j in range(OW):
                    # as in max_fwd: strict >, so ties keep the first maximum; the first NaN wins
                    m = a[j]
                    k = 0
                    if _beats(b[j], m):
                        m = b[j]
                        k = 1
                    if _beats(q[j], m):
                        m = q[j]
                        k = 2
                    if _beats(d[j], m):
                        m = d[j]
                        k = 3
                    yr[j] = m
                    ar[j] = k


@njit(**_OPTS)
def _max_bwd_2x2(dy, arg, dx, n0, n1):
    C, W = dx.shape[1], dx.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    for n in range(n0, n1):
        for c in range(C):
            plane = dx[n, c].ravel()  # contiguous: a view
            plane[:] = 0
            for oh in range(OH):
                g, ka = dy[n, c, oh], arg[n, c, oh]
                for j in range(OW):
                    k = ka[j]  # the winner's address from its offset: no branch on random data
                    if k >= 0 and k < 4:
                        plane[(2 * oh + (k >> 1)) * W + 2 * j + (k & 1)] = g[j]


@njit(**_OPTS)
def avg_fwd(x, y, KH, KW, SH, SW, PH, PW, scale, n0, n1):
    if _is_2x2(KH, KW, SH, SW, PH, PW):
        _avg_fwd_2x2(x, y, scale, n0, n1)
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    for n in range(n0, n1):
        for c in range(C):
            for oh in range(OH):
                yr = y[n, c, oh]
                yr[:] = 0
                for kh in range(KH):
                    ih = oh * SH - PH + kh
                    if ih < 0 or ih >= H:
                        continue
                    xr = x[n, c, ih]
                    for kw in range(KW):
                        lo, hi = _span(OW, SW, PW, kw, W)
                        if lo >= hi:
                            continue
                        start = lo * SW - PW + kw
                        xs = xr[start:start + (hi - lo - 1) * SW + 1:SW]
                        ys = yr[lo:hi]
                        for j in range(hi - lo):
                            ys[j] += xs[j]
                for ow in range(OW):
                    yr[ow] *= scale


@njit(**_OPTS)
def avg_bwd(dy, dx, KH, KW, SH, SW, PH, PW, scale, n0, n1):
    if _is_2x2(KH, KW, SH, SW, PH, PW):
        _avg_bwd_2x2(dy, dx, scale, n0, n1)
        return
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    g = np.empty(OW, dtype=dy.dtype)
    for n in range(n0, n1):
        for c in range(C):
            dx[n, c] = 0
            for oh in range(OH):
                src = dy[n, c, oh]
                for ow in range(OW):
                    g[ow] = src[ow] * scale
                for kh in range(KH):
                    ih = oh * SH - PH + kh
                    if ih < 0 or ih >= H:
                        continue
                    xr = dx[n, c, ih]
                    for kw in range(KW):
                        lo, hi = _span(OW, SW, PW, kw, W)
                        if lo >= hi:
                            continue
                        start = lo * SW - PW + kw
                        xs = xr[start:start + (hi - lo - 1) * SW + 1:SW]
                        gs = g[lo:hi]
                        for j in range(hi - lo):
                            xs[j] += gs[j]


@njit(**_OPTS)
def max_fwd(x, y, arg, KH, KW, SH, SW, PH, PW, n0, n1):
    if _is_2x2(KH, KW, SH, SW, PH, PW):
        _max_fwd_2x2(x, y, arg, n0, n1)
        return
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    for n in range(n0, n1):
        for c in range(C):
            for oh in range(OH):
                yr = y[n, c, oh]
                ar = arg[n, c, oh]
                yr[:] = -np.inf  # padding: never wins, so the first real maximum does
                ar[:] = 0
                for kh in range(KH):
                    ih = oh * SH - PH + kh
                    if ih < 0 or ih >= H:
                        continue
                    xr = x[n, c, ih]
                    for kw in range(KW):
                        lo, hi = _span(OW, SW, PW, kw, W)
                        if lo >= hi:
                            continue
                        start = lo * SW - PW + kw
                        xs = xr[start:start + (hi - lo - 1) * SW + 1:SW]
                        ys = yr[lo:hi]
                        as_ = ar[lo:hi]
                        k = kh * KW + kw
                        for j in range(hi - lo):
                            if _beats(xs[j], ys[j]):  # strict: ties keep the first maximum
                                ys[j] = xs[j]
                                as_[j] = k


@njit(**_OPTS)
def max_bwd(dy, arg, dx, KH, KW, SH, SW, PH, PW, n0, n1):
    if _is_2x2(KH, KW, SH, SW, PH, PW):
        _max_bwd_2x2(dy, arg, dx, n0, n1)
        return
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    for n in range(n0, n1):
        for c in range(C):
            dx[n, c] = 0
            for oh in range(OH):
                for ow in range(OW):
                    k = arg[n, c, oh, ow]
                    ih = oh * SH - PH + k // KW
                    iw = ow * SW - PW + k % KW
                    if ih >= 0 and ih < H and iw >= 0 and iw < W:
                        dx[n, c, ih, iw] += dy[n, c, oh, ow]


@njit(**_PAR)
def avg_fwd_par(x, y, KH, KW, SH, SW, PH, PW, scale, T):
    N = x.shape[0]
    for t in prange(T):
        avg_fwd(x, y, KH, KW, SH, SW, PH, PW, scale, N * t // T, N * (t + 1) // T)


@njit(**_PAR)
def avg_bwd_par(dy, dx, KH, KW, SH, SW, PH, PW, scale, T):
    N = dx.shape[0]
    for t in prange(T):
        avg_bwd(dy, dx, KH, KW, SH, SW, PH, PW, scale, N * t // T, N * (t + 1) // T)


@njit(**_PAR)
def max_fwd_par(x, y, arg, KH, KW, SH, SW, PH, PW, T):
    N = x.shape[0]
    for t in prange(T):
        max_fwd(x, y, arg, KH, KW, SH, SW, PH, PW, N * t // T, N * (t + 1) // T)


@njit(**_PAR)
def max_bwd_par(dy, arg, dx, KH, KW, SH, SW, PH, PW, T):
    N = dx.shape[0]
    for t in prange(T):
        max_bwd(dy, arg, dx, KH, KW, SH, SW, PH, PW, N * t // T, N * (t + 1) // T)
