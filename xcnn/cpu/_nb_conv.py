"""Numba kernels of the stride-1 convolution, direct, on "wide" planes of ``Wp = W + 2*PW`` columns.

A convolution works on one sample at a time: its zero-padded planes (a few KB) are copied once, and
every kernel tap is a contiguous multiply-add over a whole wide output plane (``OH`` rows of ``Wp``
values; the last ``Wp - OW`` per row are junk and dropped), which the compiler turns into SIMD
without gathers. Floating-point contraction (FMA) and re-association of the dot products are
allowed here only, so sums may differ from NumPy's in the last bits.

Each kernel is serial over a range of samples ``[n0, n1)`` and releases the GIL; the ``*_par``
drivers run range t of T, ``[N*t//T, N*(t+1)//T)``, on Numba's thread pool. Arrays are C-contiguous
NCHW. Inner loops index slices with a ``range`` index, never ``i + offset``: Numba treats a possibly
negative index as counted from the end, and that check would turn every load into a gather.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)
_PAR = dict(_OPTS, parallel=True)
#: the convolutions may contract a*b+c into one FMA and re-associate their dot products
_CONV = dict(_OPTS, fastmath={"contract", "reassoc"})

__all__ = ["conv_fwd", "conv_bwd", "conv_fwd_par", "conv_bwd_par"]


@njit(**_OPTS)
def _pad_sample(x, n, xp, PH, PW, Wp):
    """Sample ``n`` of ``x (N, C, H, W)`` into ``xp (C, S)``: zero-padded rows of ``Wp``, zero tail."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for c in range(C):
        row = xp[c]
        row[:] = 0
        for h in range(H):
            dst = row[(h + PH) * Wp + PW:(h + PH) * Wp + PW + W]
            src = x[n, c, h]
            for w in range(W):
                dst[w] = src[w]


@njit(**_CONV)
def conv_fwd(x, w, b, y, PH, PW, n0, n1):
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH, OW = y.shape[2], y.shape[3]
    Wp = W + 2 * PW
    L = OH * Wp  # one wide output plane
    S = (H + 2 * PH) * Wp + KW  # a padded plane plus slack read only by junk outputs
    xp = np.empty((C, S), dtype=x.dtype)
    acc = np.empty(L, dtype=x.dtype)
    for n in range(n0, n1):
        _pad_sample(x, n, xp, PH, PW, Wp)
        for o in range(O):
            bo = b[o]
            for i in range(L):
                acc[i] = bo
            for c in range(C):
                xc = xp[c]
                for kh in range(KH):
                    for kw in range(KW):
                        wv = w[o, c, kh, kw]
                        xs = xc[kh * Wp + kw:kh * Wp + kw + L]
                        for i in range(L):
                            acc[i] += wv * xs[i]
            for oh in range(OH):
                src = acc[oh * Wp:oh * Wp + OW]
                dst = y[n, o, oh]
                for ow in range(OW):
                    dst[ow] = src[ow]


@njit(**_CONV)
def conv_bwd(x, dy, w, dx, dw, db, PH, PW, need_dx, zero, n0, n1):
    """dw (O, C, KH, KW) and db (O,) are *set* to this range's sums; dx[n0:n1] written if need_dx."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    Wp = W + 2 * PW
    L = OH * Wp
    S = (H + 2 * PH) * Wp + KW
    xp = np.empty((C, S), dtype=x.dtype)
    gp = np.empty((C, S), dtype=x.dtype)
    dyw = np.zeros((O, L), dtype=x.dtype)  # dy on wide planes: junk columns stay zero
    dw[:] = zero
    db[:] = zero
    for n in range(n0, n1):
        _pad_sample(x, n, xp, PH, PW, Wp)
        for o in range(O):
            s = zero
            for oh in range(OH):
                src = dy[n, o, oh]
                dst = dyw[o, oh * Wp:oh * Wp + OW]
                for ow in range(OW):
                    v = src[ow]
                    dst[ow] = v
                    s += v
            db[o] += s
        for o in range(O):
            d = dyw[o]
            for c in range(C):
                xc = xp[c]
                for kh in range(KH):
                    for kw in range(KW):
                        xs = xc[kh * Wp + kw:kh * Wp + kw + L]
                        a = zero
                        for i in range(L):
                            a += d[i] * xs[i]
                        dw[o, c, kh, kw] += a
        if need_dx:
            gp[:] = zero
            for c in range(C):
                g = gp[c]
                for o in range(O):
                    d = dyw[o]
                    for kh in range(KH):
                        for kw in range(KW):
                            wv = w[o, c, kh, kw]
                            gs = g[kh * Wp + kw:kh * Wp + kw + L]
                            for i in range(L):
                                gs[i] += wv * d[i]
                for h in range(H):
                    src = g[(h + PH) * Wp + PW:(h + PH) * Wp + PW + W]
                    dst = dx[n, c, h]
                    for ww in range(W):
                        dst[ww] = src[ww]


@njit(**_PAR)
def conv_fwd_par(x, w, b, y, PH, PW, T):
    N = x.shape[0]
    for t in prange(T):
        conv_fwd(x, w, b, y, PH, PW, N * t // T, N * (t + 1) // T)


@njit(**_PAR)
def conv_bwd_par(x, dy, w, dx, dw_parts, db_parts, PH, PW, need_dx, zero, T):
    N = x.shape[0]
    for t in prange(T):
        conv_bwd(x, dy, w, dx, dw_parts[t], db_parts[t], PH, PW, need_dx, zero, N * t // T, N * (t + 1) // T)
