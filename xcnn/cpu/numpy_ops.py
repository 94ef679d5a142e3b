"""Pooling, ReLU and the SGD update with NumPy, split over xcnn's threads by samples (or elements).

Window offsets are summed in row-major order -- the order of the compiled and CUDA kernels -- so
average pooling agrees bit for bit across backends. Max pooling: ties go to the first maximum in
row-major window order; a NaN wins (the first NaN, as ``np.argmax`` picks it); padding is -inf and
never wins. ``g`` is the geometry ``(KH, KW, SH, SW, PH, PW, OH, OW)``.
"""
from __future__ import annotations

import numpy as np

from .threads import parallel
from .workspace import scratch

__all__ = ["avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward", "max_pool2d_backward",
           "relu_forward", "relu_backward", "sgd_update"]


def _pad_input(x, PH, PW, fill, ws, key):
    """Copy ``x`` into a padded buffer filled with ``fill`` (``x`` itself when there is no padding).
    The border keeps ``fill`` across reuses, so each fill value needs its own ``key``."""
    if PH == 0 and PW == 0:
        return x
    N, C, H, W = x.shape
    xpad = scratch(ws, key, (N, C, H + 2 * PH, W + 2 * PW), x.dtype)
    if fill != 0:
        xpad.fill(fill)
    xpad[:, :, PH:PH + H, PW:PW + W] = x
    return xpad


def _offsets(KH, KW, SH, SW, OH, OW):
    """For each window offset, the (rows, cols) slices of the padded input it reads."""
    for kh in range(KH):
        for kw in range(KW):
            yield kh * KW + kw, (slice(kh, kh + SH * (OH - 1) + 1, SH), slice(kw, kw + SW * (OW - 1) + 1, SW))


def avg_pool2d_forward(x, g, ws=None):
    KH, KW, SH, SW, PH, PW, OH, OW = g
    N, C = x.shape[:2]
    xpad = _pad_input(x, PH, PW, 0, ws, "pool_pad_zero")
    # y keeps the input's memory order (CNHW after a conv): no transpose.
    y = np.empty_like(x, shape=(N, C, OH, OW))
    scale = x.dtype.type(1.0 / (KH * KW))
    wins = [w for _, w in _offsets(KH, KW, SH, SW, OH, OW)]

    def run(t, lo, hi):
        out = y[lo:hi]
        xs = xpad[lo:hi]
        np.copyto(out, xs[:, :, wins[0][0], wins[0][1]])
        for hs, wsl in wins[1:]:
            out += xs[:, :, hs, wsl]
        out *= scale

    parallel(run, N, 1, x.size)
    return y


def avg_pool2d_backward(dy, x_shape, g, ws=None):
    KH, KW, SH, SW, PH, PW, OH, OW = g
    N, C, H, W = x_shape
    scale = dy.dtype.type(1.0 / (KH * KW))
    if SH == KH and SW == KW and PH == 0 and PW == 0 and OH * KH == H and OW * KW == W:
        # Non-overlapping windows tiling the input: every input pixel gets exactly one value.
        # dx keeps dy's memory order (CNHW when dy came from a conv's col2im), so the conv
        # below reads it as its (O, N*OH*OW) matrix without a transpose copy.
        dx = np.empty_like(dy, shape=tuple(x_shape))

        def run(t, lo, hi):
            for _, (hs, wsl) in _offsets(KH, KW, SH, SW, OH, OW):
                np.multiply(dy[lo:hi], scale, out=dx[lo:hi, :, hs, wsl])

        parallel(run, N, 1, dx.size)
        return dx
    gy = dy * scale
    dpad = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dy.dtype)
    for _, (hs, wsl) in _offsets(KH, KW, SH, SW, OH, OW):
        dpad[:, :, hs, wsl] += gy
    return dpad[:, :, PH:PH + H, PW:PW + W]


def max_pool2d_forward(x, g, ws=None):
    KH, KW, SH, SW, PH, PW, OH, OW = g
    N, C = x.shape[:2]
    xpad = _pad_input(x, PH, PW, -np.inf, ws, "pool_pad_ninf")
    y = None
    arg = np.zeros((N, C, OH, OW), dtype=np.int32)
    for k, (hs, wsl) in _offsets(KH, KW, SH, SW, OH, OW):
        win = xpad[:, :, hs, wsl]
        if y is None:
            y = win.copy()
            continue
        # strict: an equal later value never replaces the first maximum; a NaN replaces any number
        better = (win > y) | (np.isnan(win) & ~np.isnan(y))
        np.copyto(y, win, where=better)
        arg[better] = k
    return y, arg


def max_pool2d_backward(dy, argmax, x_shape, g, ws=None):
    KH, KW, SH, SW, PH, PW, OH, OW = g
    N, C, H, W = x_shape
    dpad = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dy.dtype)
    zero = dy.dtype.type(0)
    for k, (hs, wsl) in _offsets(KH, KW, SH, SW, OH, OW):
        dpad[:, :, hs, wsl] += np.where(argmax == k, dy, zero)
    return dpad[:, :, PH:PH + H, PW:PW + W]


def relu_forward(x):
    y = np.empty_like(x)
    parallel(lambda t, lo, hi: np.maximum(x[lo:hi], 0, out=y[lo:hi]), x.shape[0], 1, x.size)
    return y


def relu_backward(dy, y):
    dx = np.empty_like(y)

    def run(t, lo, hi):
        np.multiply(dy[lo:hi], y[lo:hi] > 0, out=dx[lo:hi])

    parallel(run, y.shape[0], 1, y.size)
    return dx


def _update(d, g, v, s, lr, momentum, weight_decay):
    # v = m*v + g + wd*p; p -= lr*v -- in place; the products go through a reused scratch buffer
    # (a fresh temporary of a big layer's size costs an mmap and page faults per step)
    t = d.dtype.type
    v *= t(momentum)
    v += g
    if weight_decay:
        np.multiply(d, t(weight_decay), out=s)
        v += s
    np.multiply(v, t(lr), out=s)
    d -= s


def sgd_update(params, grads, velocities, lr, momentum, weight_decay, state):
    """In place, tensor by tensor; ``state["scratch"]`` keeps a temporary per tensor."""
    bufs = state.setdefault("scratch", {})
    for i, (d, g, v) in enumerate(zip(params, grads, velocities)):
        s = bufs.get(i)
        if s is None or s.shape != d.shape or s.dtype != d.dtype:
            s = bufs[i] = np.empty_like(d)
        if d.flags.c_contiguous and g.flags.c_contiguous and v.flags.c_contiguous:
            # A big layer's update is memory-bound: halves on two threads run ~1.6x faster (NumPy
            # releases the GIL); elementwise, so the result is the same bit for bit.
            flat = [a.reshape(-1) for a in (d, g, v, s)]
            parallel(lambda _t, a, b: _update(*(x[a:b] for x in flat), lr, momentum, weight_decay),
                     d.size, 1, d.size)
        else:
            _update(d, g, v, s, lr, momentum, weight_decay)
