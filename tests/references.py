"""Independent references, written plainly with loops in float64 (no code shared with xcnn's
vectorised ops): convolution, im2col/col2im, pooling, and central finite differences."""
from __future__ import annotations

import numpy as np


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def naive_conv(x, w, b, s, p):
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH, OW = out_size(H, KH, s, p), out_size(W, KW, s, p)
    y = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    acc = b[o] if b is not None else 0.0
                    for c in range(C):
                        for kh in range(KH):
                            for kw in range(KW):
                                h, ww = i * s + kh - p, j * s + kw - p
                                if 0 <= h < H and 0 <= ww < W:
                                    acc += x[n, c, h, ww] * w[o, c, kh, kw]
                    y[n, o, i, j] = acc
    return y


def naive_conv_backward(x, w, dy, s, p):
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    _, _, OH, OW = dy.shape
    dx, dw, db = np.zeros(x.shape), np.zeros(w.shape), dy.sum(axis=(0, 2, 3))
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    g = dy[n, o, i, j]
                    for c in range(C):
                        for kh in range(KH):
                            for kw in range(KW):
                                h, ww = i * s + kh - p, j * s + kw - p
                                if 0 <= h < H and 0 <= ww < W:
                                    dx[n, c, h, ww] += g * w[o, c, kh, kw]
                                    dw[o, c, kh, kw] += g * x[n, c, h, ww]
    return dx, dw, db


def naive_im2col(x, k, s, p):
    N, C, H, W = x.shape
    OH, OW = out_size(H, k, s, p), out_size(W, k, s, p)
    ref = np.zeros((C * k * k, N * OH * OW))
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    for c in range(C):
        for kh in range(k):
            for kw in range(k):
                for n in range(N):
                    for i in range(OH):
                        for j in range(OW):
                            ref[(c * k + kh) * k + kw, (n * OH + i) * OW + j] = xp[n, c, i * s + kh, j * s + kw]
    return ref


def naive_col2im(col, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    """Loop over every column entry and add it where im2col read it."""
    dx = np.zeros((N, C, H, W), dtype=np.float64)
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                for n in range(N):
                    for oh in range(OH):
                        h = oh * SH + kh - PH
                        if not 0 <= h < H:
                            continue
                        for ow in range(OW):
                            w = ow * SW + kw - PW
                            if 0 <= w < W:
                                dx[n, c, h, w] += col[row, (n * OH + oh) * OW + ow]
    return dx


def naive_pool(x, k, s, p, mode):
    """``(y, argmax)``; max pooling: ties to the first maximum, the first NaN beats any number,
    padding (-inf) never wins; average pooling counts padding as zeros."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, k, s, p), out_size(W, k, s, p)
    y = np.zeros((N, C, OH, OW))
    arg = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, besti, total = None, -1, 0.0
                    for kh in range(k):
                        for kw in range(k):
                            h, ww = i * s + kh - p, j * s + kw - p
                            inside = 0 <= h < H and 0 <= ww < W
                            v = x[n, c, h, ww] if inside else (0.0 if mode == "avg" else -np.inf)
                            total += v if inside else 0.0
                            if best is None or v > best or (np.isnan(v) and not np.isnan(best)):
                                best, besti = v, kh * k + kw
                    y[n, c, i, j] = total / (k * k) if mode == "avg" else best
                    arg[n, c, i, j] = besti
    return y, arg


def naive_pool_backward(dy, arg, x_shape, k, s, p, mode):
    N, C, H, W = x_shape
    _, _, OH, OW = dy.shape
    dx = np.zeros(x_shape)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    for kh in range(k):
                        for kw in range(k):
                            h, ww = i * s + kh - p, j * s + kw - p
                            if not (0 <= h < H and 0 <= ww < W):
                                continue
                            if mode == "avg":
                                dx[n, c, h, ww] += dy[n, c, i, j] / (k * k)
                            elif arg[n, c, i, j] == kh * k + kw:
                                dx[n, c, h, ww] += dy[n, c, i, j]
    return dx


def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar ``f()`` w.r.t. every element of host array ``x`` (perturbed in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g
