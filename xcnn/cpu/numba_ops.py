"""The compiled CPU kernels (Numba, the ``fast`` extra) behind the ops: direct stride-1 convolution,
pooling, ReLU and the SGD update, each one pass over memory per sample with a sample's working set
in cache. Inputs are validated by :mod:`xcnn.ops` first; here they are only made contiguous.

Why this beats im2col + GEMM for small convolutions: the seed CNN's GEMMs have 4 or 8 output rows,
so they are memory-bound, and the NumPy path makes ~40 passes over the batch per step.

Threads take contiguous ranges of samples, a fixed function of the shapes and the thread count;
each keeps its own partial weight gradient, summed in range order: results do not depend on
thread timing, nor on which pool runs the ranges (:func:`_drive`).
"""
from __future__ import annotations

import numpy as np

from . import config
from .threads import blas_quiet, run_bounds, split_work

__all__ = ["DirectCache", "conv2d_forward", "conv2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "max_pool2d_forward", "max_pool2d_backward", "relu_forward", "relu_backward", "sgd_update"]

_OMP: dict = {}


def _nb():
    return config.numba_kernels()


def _ranges(N: int, work: int) -> int:
    """How many sample ranges an op of ``N`` samples and ``work`` is split into: a fixed function of
    shapes (not of timing), so the partial sums -- and the results -- are reproducible."""
    cfg = config.get()
    return max(1, min(N, cfg.threads)) if work >= cfg.pool_min_work else 1


def _omp_ready() -> bool:
    """Numba's thread pool is OpenMP or TBB (~2 us a launch; its "workqueue" fallback costs ~100 us)."""
    if "ok" not in _OMP:
        import numba  # noqa: PLC0415

        try:
            numba.set_num_threads(max(1, min(config.get().threads, numba.config.NUMBA_NUM_THREADS)))
            _nb().relu_fwd_par(np.zeros(2, np.float32), np.zeros(2, np.float32), 2)  # starts the pool
            _OMP["ok"] = numba.threading_layer() in ("omp", "tbb")
        except Exception:  # noqa: BLE001 - no usable pool: xcnn's own threads do the work
            _OMP["ok"] = False
    return _OMP["ok"]


def _numba_pool_usable() -> bool:
    return blas_quiet() and _omp_ready()


def _drive(T, serial, par, n, work):
    """Run an op split into ``T`` ranges ``[n*t//T, n*(t+1)//T)``: ``serial(t, lo, hi)`` runs one
    range, ``par(T)`` runs all of them on Numba's pool. Every way of running gives the same bits.

    Numba's OpenMP pool starts a parallel region in ~2 us (xcnn's Python thread pool needs ~80 us),
    but its idle workers spin, and so do OpenBLAS's after a threaded GEMM: two spinning pools on the
    same cores stall each other (measured: an MLP or LeNet step 5-20x slower). So the Numba pool is
    used only while OpenBLAS has been quiet -- always in the seed CNN, whose GEMMs are kept
    single-threaded -- and xcnn's own (sleeping) thread pool otherwise."""
    bounds = [(t, n * t // T, n * (t + 1) // T) for t in range(T)]
    if T > 1 and _numba_pool_usable():
        par(T)
    elif T > 1 and work >= config.get().parallel_min_elements:
        run_bounds(serial, bounds)
    else:  # one range, or too small for a ~80 us hand-off: the ranges one after another
        for b in bounds:
            serial(*b)


def _drive_elementwise(serial, par, n):
    """Elementwise ops: threads only on Numba's pool while OpenBLAS is quiet (a hand-off to xcnn's
    Python pool costs more than it saves on one pass over memory); the split never changes results."""
    T = split_work(n, n)
    if T > 1 and _numba_pool_usable():
        par(T)
    else:
        serial(0, n)


def _c(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


class DirectCache:
    """What :func:`conv2d_backward` needs from :func:`conv2d_forward`: the forward's input (no columns)."""

    __slots__ = ("x",)

    def __init__(self, x):
        self.x = x


def conv2d_forward(x, weight, bias, g, ws=None):
    """Stride 1 only (the dispatcher sends other strides to NumPy): ``(y, DirectCache)``."""
    nb = _nb()
    _, _, _, _, PH, PW, OH, OW = g
    x, weight = _c(x), _c(weight)
    N = x.shape[0]
    O, C, KH, KW = weight.shape
    b = np.zeros(O, x.dtype) if bias is None else _c(bias)
    y = np.empty((N, O, OH, OW), dtype=x.dtype)
    work = N * O * C * KH * KW * OH * (x.shape[3] + 2 * PW) // config.get().macs_per_element
    _drive(_ranges(N, work), lambda t, n0, n1: nb.conv_fwd(x, weight, b, y, PH, PW, n0, n1),
           lambda T: nb.conv_fwd_par(x, weight, b, y, PH, PW, T), N, work)
    return y, DirectCache(x)


def conv2d_backward(dy, cache, x_shape, weight, g, need_dx, need_bias, ws=None):
    nb = _nb()
    _, _, _, _, PH, PW, _, _ = g
    x = cache.x
    N, C, H, W = x.shape
    O, _, KH, KW = weight.shape
    dy, weight = _c(dy), _c(weight)
    dx = np.empty_like(x) if need_dx else np.empty((1, 1, 1, 1), x.dtype)
    zero = x.dtype.type(0)
    work = (2 if need_dx else 1) * N * O * C * KH * KW * dy.shape[2] * (W + 2 * PW) // config.get().macs_per_element
    T = _ranges(N, work)
    dw_parts = np.empty((T,) + tuple(weight.shape), dtype=x.dtype)
    db_parts = np.empty((T, O), dtype=x.dtype)
    _drive(T, lambda t, n0, n1: nb.conv_bwd(x, dy, weight, dx, dw_parts[t], db_parts[t], PH, PW, need_dx, zero,
                                            n0, n1),
           lambda T: nb.conv_bwd_par(x, dy, weight, dx, dw_parts, db_parts, PH, PW, need_dx, zero, T), N, work)
    dw, db = dw_parts[0], db_parts[0]
    for t in range(1, T):  # in range order: independent of thread timing
        dw += dw_parts[t]
        db += db_parts[t]
    return (dx if need_dx else None), dw, (db if need_bias else None)


def avg_pool2d_forward(x, g, ws=None):
    nb = _nb()
    KH, KW, SH, SW, PH, PW, OH, OW = g
    x = _c(x)
    y = np.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)
    scale = x.dtype.type(1.0 / (KH * KW))
    _drive(_ranges(x.shape[0], x.size),
           lambda t, n0, n1: nb.avg_fwd(x, y, KH, KW, SH, SW, PH, PW, scale, n0, n1),
           lambda T: nb.avg_fwd_par(x, y, KH, KW, SH, SW, PH, PW, scale, T), x.shape[0], x.size)
    return y


def avg_pool2d_backward(dy, x_shape, g, ws=None):
    nb = _nb()
    KH, KW, SH, SW, PH, PW, _, _ = g
    dy = _c(dy)
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    scale = dy.dtype.type(1.0 / (KH * KW))
    _drive(_ranges(dx.shape[0], dx.size),
           lambda t, n0, n1: nb.avg_bwd(dy, dx, KH, KW, SH, SW, PH, PW, scale, n0, n1),
           lambda T: nb.avg_bwd_par(dy, dx, KH, KW, SH, SW, PH, PW, scale, T), dx.shape[0], dx.size)
    return dx


def max_pool2d_forward(x, g, ws=None):
    nb = _nb()
    KH, KW, SH, SW, PH, PW, OH, OW = g
    x = _c(x)
    y = np.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    _drive(_ranges(x.shape[0], x.size),
           lambda t, n0, n1: nb.max_fwd(x, y, arg, KH, KW, SH, SW, PH, PW, n0, n1),
           lambda T: nb.max_fwd_par(x, y, arg, KH, KW, SH, SW, PH, PW, T), x.shape[0], x.size)
    return y, arg


def max_pool2d_backward(dy, argmax, x_shape, g, ws=None):
    nb = _nb()
    KH, KW, SH, SW, PH, PW, _, _ = g
    dy, argmax = _c(dy), _c(argmax)
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _drive(_ranges(dx.shape[0], dx.size),
           lambda t, n0, n1: nb.max_bwd(dy, argmax, dx, KH, KW, SH, SW, PH, PW, n0, n1),
           lambda T: nb.max_bwd_par(dy, argmax, dx, KH, KW, SH, SW, PH, PW, T), dx.shape[0], dx.size)
    return dx


def relu_forward(x):
    nb = _nb()
    x = _c(x)
    y = np.empty_like(x)
    xf, yf = x.reshape(-1), y.reshape(-1)
    _drive_elementwise(lambda i0, i1: nb.relu_fwd(xf, yf, i0, i1), lambda T: nb.relu_fwd_par(xf, yf, T), xf.size)
    return y


def relu_backward(dy, y):
    nb = _nb()
    y, dy = _c(y), _c(dy)
    dx = np.empty_like(y)
    df, yf, xf = dy.reshape(-1), y.reshape(-1), dx.reshape(-1)
    _drive_elementwise(lambda i0, i1: nb.relu_bwd(df, yf, xf, i0, i1), lambda T: nb.relu_bwd_par(df, yf, xf, T),
                       yf.size)
    return dx


def sgd_update(params, grads, velocities, lr, momentum, weight_decay, state):
    """In place, one compiled pass per tensor: ``v = momentum*v + (g + weight_decay*p); p -= lr*v``
    (the NumPy path's operations and rounding). The optimizer's arrays are C-contiguous."""
    nb = _nb()
    for p, g, v in zip(params, grads, velocities):
        dt = p.dtype.type
        pf, gf, vf = p.reshape(-1), _c(g).reshape(-1), v.reshape(-1)
        a, m, w = dt(lr), dt(momentum), dt(weight_decay)
        _drive_elementwise(lambda i0, i1: nb.sgd(pf, gf, vf, a, m, w, i0, i1),
                           lambda T: nb.sgd_par(pf, gf, vf, a, m, w, T), pf.size)
