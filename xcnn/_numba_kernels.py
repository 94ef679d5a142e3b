"""The Numba kernels behind :mod:`xcnn.cpu_kernels` (import fails cleanly when Numba is missing).

Each op is a serial kernel over a range of samples ``[n0, n1)`` (elements, for the elementwise ones)
that releases the GIL: :mod:`xcnn.cpu_kernels` runs ranges on xcnn's own CPU threads. Numba's
thread pool is not used: its OpenMP workers spin after each parallel region, and so do OpenBLAS's
after each GEMM -- two spinning pools on two cores stalled each other (measured: a LeNet step 10x
slower). Arrays are C-contiguous NCHW.

Inner loops index slices with a ``range`` index, never ``i + offset``: Numba treats a possibly
negative index as counted from the end, and that check would turn every load into a gather.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)
#: the convolutions may contract a*b+c into one FMA and re-associate their dot products
_CONV = dict(_OPTS, fastmath={"contract", "reassoc"})


# ------------------------------------------------------------------------------------------------
# convolution (stride 1), direct, on "wide" planes of Wp = W + 2*PW columns
# ------------------------------------------------------------------------------------------------
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



# ------------------------------------------------------------------------------------------------
# pooling: window offsets visited in row-major order (the NumPy and CUDA paths' order)
# ------------------------------------------------------------------------------------------------
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
                    m = -np.inf  # as below: strict >, so ties keep the first maximum and NaN never wins
                    k = 0
                    if a[j] > m:
                        m = a[j]
                    if b[j] > m:
                        m = b[j]
                        k = 1
                    if q[j] > m:
                        m = q[j]
                        k = 2
                    if d[j] > m:
                        m = d[j]
                        k = 3
                    yr[j] = m
                    ar[j] = k


@njit(**_OPTS)
def _max_bwd_2x2(dy, arg, dx, n0, n1):
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
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
                            if xs[j] > ys[j]:  # strict: ties keep the first maximum
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



# ------------------------------------------------------------------------------------------------
# elementwise, on flat arrays: ReLU and the SGD update
# ------------------------------------------------------------------------------------------------
@njit(**_OPTS)
def relu_fwd(x, y, i0, i1):
    xs, ys = x[i0:i1], y[i0:i1]
    for i in range(i1 - i0):
        v = xs[i]
        ys[i] = 0 if v <= 0 else v  # NaN stays NaN, as with np.maximum



@njit(**_OPTS)
def relu_bwd(dy, y, dx, i0, i1):
    ds, ys, xs = dy[i0:i1], y[i0:i1], dx[i0:i1]
    for i in range(i1 - i0):
        xs[i] = ds[i] if ys[i] > 0 else ds[i] * 0  # dy * (y > 0): NaN/inf in dy still poison



@njit(**_OPTS)
def sgd(p, g, v, lr, m, wd, i0, i1):
    # the NumPy path's operations and rounding, in one pass: v = m*v + g; v += wd*p; p -= lr*v
    ps, gs, vs = p[i0:i1], g[i0:i1], v[i0:i1]
    for i in range(i1 - i0):
        t = m * vs[i] + gs[i]
        if wd != 0:
            t = t + wd * ps[i]
        vs[i] = t
        ps[i] = ps[i] - lr * t


# ------------------------------------------------------------------------------------------------
# parallel drivers: range t of T is [N*t//T, N*(t+1)//T), on Numba's thread pool
# ------------------------------------------------------------------------------------------------
_PAR = dict(_OPTS, parallel=True)


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


@njit(**_PAR)
def relu_fwd_par(x, y, T):
    n = x.size
    for t in prange(T):
        relu_fwd(x, y, n * t // T, n * (t + 1) // T)


@njit(**_PAR)
def relu_bwd_par(dy, y, dx, T):
    n = y.size
    for t in prange(T):
        relu_bwd(dy, y, dx, n * t // T, n * (t + 1) // T)


@njit(**_PAR)
def sgd_par(p, g, v, lr, m, wd, T):
    n = p.size
    for t in prange(T):
        sgd(p, g, v, lr, m, wd, n * t // T, n * (t + 1) // T)
