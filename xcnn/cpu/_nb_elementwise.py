"""Numba kernels on flat arrays: ReLU forward and backward, and the SGD update in the report's form.
Serial over element ranges ``[i0, i1)``; ``*_par`` drivers as in :mod:`._nb_conv`."""
from __future__ import annotations

from numba import njit, prange

_OPTS = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)
_PAR = dict(_OPTS, parallel=True)

__all__ = ["relu_fwd", "relu_bwd", "sgd", "relu_fwd_par", "relu_bwd_par", "sgd_par"]


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
