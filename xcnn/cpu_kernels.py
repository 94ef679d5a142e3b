"""Compiled CPU kernels (Numba): direct convolution, pooling, ReLU and the SGD update, each one
pass over memory per sample, with the whole working set of a sample in the L1/L2 cache.

Optional: ``pip install numba`` (the ``fast`` extra). Without Numba -- or with
``XCNN_CPU_KERNELS=numpy`` -- every op runs on the pure-NumPy path of :mod:`xcnn.functional`,
which stays the reference: the test suite runs each CPU test on both paths.

Why this beats im2col + GEMM on the CPU for small convolutions: the seed CNN's GEMMs have 4 or
8 output rows, so they are memory-bound, and the NumPy path makes ~40 separate passes over
the batch per step. Here a convolution works on one sample at a time: its zero-padded planes
(a few KB) are copied once, and every kernel tap is a contiguous multiply-add over a whole
"wide" output plane (``OH`` rows of ``Wp = W + 2*PW`` values; the last ``Wp - OW`` per row are
junk and dropped), which the compiler turns into SIMD without gathers. Threads take contiguous
ranges of samples (one range per thread, fixed by the thread count), and each keeps its own
partial weight gradient, summed in range order: results do not depend on thread timing.

Only stride-1 convolutions come here; strided ones keep the NumPy path. Floating-point
contraction (FMA) and re-association of the dot products are allowed in the convolution
kernels only, so their sums may differ from NumPy's in the last bits; pooling keeps the exact
order of the NumPy/CUDA paths.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time

import numpy as np

__all__ = ["available", "active", "use", "reason_unavailable",
           "conv2d_forward", "conv2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "max_pool2d_forward", "max_pool2d_backward", "relu_forward", "relu_backward", "sgd_update", "MACS_PER_ELEMENT"]

_CHOICES = ("auto", "numba", "numpy")
_lock = threading.Lock()
_state = {"choice": None, "nb": None, "error": None, "omp": None}


def _choice() -> str:
    if _state["choice"] is None:
        c = os.environ.get("XCNN_CPU_KERNELS", "auto").strip().lower() or "auto"
        if c not in _CHOICES:
            raise ValueError(f"XCNN_CPU_KERNELS={c!r}: use one of {', '.join(_CHOICES)}")
        _state["choice"] = c
    return _state["choice"]


def _load():
    """Import Numba and build the kernels once; returns the kernel namespace or None."""
    if _state["nb"] is not None or _state["error"] is not None:
        return _state["nb"]
    with _lock:
        if _state["nb"] is None and _state["error"] is None:
            try:
                from . import _numba_kernels as nbk  # noqa: PLC0415
            except ImportError as e:  # Numba missing, or too old/new for this NumPy
                _state["error"] = f"numba is not importable ({e}); install it with: pip install numba"
            else:
                _state["nb"] = nbk
    return _state["nb"]


def reason_unavailable():
    """Why the compiled kernels are off (None when they are on)."""
    if _choice() == "numpy":
        return "XCNN_CPU_KERNELS=numpy"
    _load()
    return _state["error"]


def available() -> bool:
    """Numba imports (whatever ``XCNN_CPU_KERNELS`` says)."""
    return _load() is not None


def active() -> bool:
    """The CPU ops use the compiled kernels now."""
    c = _choice()
    if c == "numpy":
        return False
    nbk = _load()
    if nbk is None and c == "numba":
        raise RuntimeError(f"XCNN_CPU_KERNELS=numba, but {_state['error']}")
    return nbk is not None


@contextlib.contextmanager
def use(name: str):
    """Select the CPU implementation inside a ``with`` block: ``"numba"`` or ``"numpy"`` (tests,
    benchmarks). Process-wide, like ``XCNN_CPU_KERNELS``; not meant for concurrent threads."""
    if name not in ("numba", "numpy"):
        raise ValueError(f"cpu_kernels.use: expected 'numba' or 'numpy', got {name!r}")
    if name == "numba" and not available():
        raise RuntimeError(_state["error"])
    before = _choice()
    _state["choice"] = name
    try:
        yield
    finally:
        _state["choice"] = before


#: multiply-adds of work worth one element of the threading threshold
#: (:data:`xcnn.functional.PARALLEL_MIN_ELEMENTS`): a convolution's output element costs many MACs
MACS_PER_ELEMENT = 32
#: work (in elements, as above) from which an op is split into ranges for Numba's pool (~2 us a launch)
POOL_MIN_WORK = 1 << 13
#: seconds after a GEMM ran on OpenBLAS's threads during which Numba's pool is not used (see _drive)
BLAS_QUIET_S = 0.05


def _ranges(N: int, work: int) -> int:
    """How many sample ranges an op of ``N`` samples and ``work`` is split into: a fixed function
    of shapes (not of timing), so the partial sums -- and the results -- are reproducible."""
    from . import functional as F  # noqa: PLC0415  (functional imports this module)

    return max(1, min(N, F.CPU_THREADS)) if work >= POOL_MIN_WORK else 1


def _omp_ready(nbk) -> bool:
    """Numba's thread pool is OpenMP or TBB (~2 us a launch; its "workqueue" fallback costs ~100 us)."""
    if _state.get("omp") is None:
        import numba  # noqa: PLC0415

        from . import functional as F  # noqa: PLC0415

        try:
            numba.set_num_threads(max(1, min(F.CPU_THREADS, numba.config.NUMBA_NUM_THREADS)))
            nbk.relu_fwd_par(np.zeros(2, np.float32), np.zeros(2, np.float32), 2)  # starts the pool
            _state["omp"] = numba.threading_layer() in ("omp", "tbb")
        except Exception:  # noqa: BLE001 - no usable pool: xcnn's own threads do the work
            _state["omp"] = False
    return _state["omp"]


def _numba_pool_usable() -> bool:
    """OpenBLAS has had no threaded GEMM for :data:`BLAS_QUIET_S`, and Numba's pool is OpenMP/TBB."""
    from . import functional as F  # noqa: PLC0415

    return time.perf_counter() - F.LAST_THREADED_GEMM[0] > BLAS_QUIET_S and _omp_ready(_load())


def _drive(T, serial, par, n, work):
    """Run an op split into ``T`` ranges ``[n*t//T, n*(t+1)//T)``: ``serial(t, lo, hi)`` runs one
    range, ``par(T)`` runs all of them on Numba's pool. Every way of running gives the same bits.

    Numba's OpenMP pool starts a parallel region in ~2 us (xcnn's Python thread pool needs ~80 us),
    but its idle workers spin, and so do OpenBLAS's after a threaded GEMM: two spinning pools on the
    same cores stall each other (measured: an MLP or LeNet step 5-20x slower). So the Numba pool is
    used only while OpenBLAS has had no threaded GEMM for :data:`BLAS_QUIET_S` -- always in the seed
    CNN, whose GEMMs are kept single-threaded -- and xcnn's own (sleeping) thread pool otherwise."""
    from . import functional as F  # noqa: PLC0415

    bounds = [(t, n * t // T, n * (t + 1) // T) for t in range(T)]
    if T > 1 and _numba_pool_usable():
        par(T)
    elif T > 1 and work >= F.PARALLEL_MIN_ELEMENTS:
        F._run_bounds(serial, bounds)
    else:  # one range, or too small for a ~80 us hand-off: the ranges one after another
        for b in bounds:
            serial(*b)


def _drive_elementwise(serial, par, n):
    """Elementwise ops: threads only on Numba's pool while OpenBLAS is quiet (a hand-off to xcnn's
    Python pool costs more than it saves on one pass over memory); the split never changes results."""
    from . import functional as F  # noqa: PLC0415

    T = F._split_work(n, n)
    if T > 1 and _numba_pool_usable():
        par(T)
    else:
        serial(0, n)


def _c(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


# ------------------------------------------------------------------------------------------------
# Ops. Shapes and meaning as in :mod:`xcnn.functional`; inputs must share one float dtype.
# ------------------------------------------------------------------------------------------------
class DirectCache:
    """What :func:`conv2d_backward` needs from :func:`conv2d_forward`: the input itself (no columns)."""

    __slots__ = ("x", "PH", "PW")

    def __init__(self, x, PH, PW):
        self.x, self.PH, self.PW = x, PH, PW


def conv2d_forward(x, weight, bias, PH, PW, OH, OW):
    """Stride-1 ``y (N, O, OH, OW) = conv(x, weight) + bias``; returns ``(y, DirectCache)``."""
    nbk = _load()
    x, weight = _c(x), _c(weight)
    N = x.shape[0]
    O = weight.shape[0]
    b = np.zeros(O, x.dtype) if bias is None else _c(bias)
    y = np.empty((N, O, OH, OW), dtype=x.dtype)
    O, C, KH, KW = weight.shape
    work = N * O * C * KH * KW * OH * (x.shape[3] + 2 * PW) // MACS_PER_ELEMENT
    _drive(_ranges(N, work), lambda t, n0, n1: nbk.conv_fwd(x, weight, b, y, PH, PW, n0, n1),
           lambda T: nbk.conv_fwd_par(x, weight, b, y, PH, PW, T), N, work)
    return y, DirectCache(x, PH, PW)


def conv2d_backward(dy, cache, weight, need_dx, need_bias):
    """Gradients of :func:`conv2d_forward`: ``(dx or None, dweight, dbias or None)``."""
    nbk = _load()
    x = cache.x
    N, C, H, W = x.shape
    O = weight.shape[0]
    if tuple(dy.shape[:2]) != (N, O):
        raise ValueError(f"conv2d_backward: expected dy of shape (N={N}, O={O}, OH, OW), got {tuple(dy.shape)}")
    dy, weight = _c(dy).astype(x.dtype, copy=False), _c(weight)
    dx = np.empty_like(x) if need_dx else np.empty((1, 1, 1, 1), x.dtype)
    zero = x.dtype.type(0)
    _, C, KH, KW = weight.shape

    work = (2 if need_dx else 1) * N * O * C * KH * KW * dy.shape[2] * (W + 2 * cache.PW) // MACS_PER_ELEMENT
    T = _ranges(N, work)
    dw_parts = np.empty((T,) + tuple(weight.shape), dtype=x.dtype)
    db_parts = np.empty((T, O), dtype=x.dtype)
    _drive(T, lambda t, n0, n1: nbk.conv_bwd(x, dy, weight, dx, dw_parts[t], db_parts[t], cache.PH, cache.PW,
                                             need_dx, zero, n0, n1),
           lambda T: nbk.conv_bwd_par(x, dy, weight, dx, dw_parts, db_parts, cache.PH, cache.PW, need_dx, zero, T),
           N, work)
    dw, db = dw_parts[0], db_parts[0]
    for t in range(1, T):  # in range order: independent of thread timing
        dw += dw_parts[t]
        db += db_parts[t]
    return (dx if need_dx else None), dw, (db if need_bias else None)


def avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW, OH, OW):
    nbk = _load()
    x = _c(x)
    y = np.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)
    scale = x.dtype.type(1.0 / (KH * KW))
    _drive(_ranges(x.shape[0], x.size),
           lambda t, n0, n1: nbk.avg_fwd(x, y, KH, KW, SH, SW, PH, PW, scale, n0, n1),
           lambda T: nbk.avg_fwd_par(x, y, KH, KW, SH, SW, PH, PW, scale, T), x.shape[0], x.size)
    return y


def avg_pool2d_backward(dy, x_shape, KH, KW, SH, SW, PH, PW):
    nbk = _load()
    dy = _c(dy)
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    scale = dy.dtype.type(1.0 / (KH * KW))
    _drive(_ranges(dx.shape[0], dx.size),
           lambda t, n0, n1: nbk.avg_bwd(dy, dx, KH, KW, SH, SW, PH, PW, scale, n0, n1),
           lambda T: nbk.avg_bwd_par(dy, dx, KH, KW, SH, SW, PH, PW, scale, T), dx.shape[0], dx.size)
    return dx


def max_pool2d_forward(x, KH, KW, SH, SW, PH, PW, OH, OW):
    nbk = _load()
    x = _c(x)
    y = np.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    _drive(_ranges(x.shape[0], x.size),
           lambda t, n0, n1: nbk.max_fwd(x, y, arg, KH, KW, SH, SW, PH, PW, n0, n1),
           lambda T: nbk.max_fwd_par(x, y, arg, KH, KW, SH, SW, PH, PW, T), x.shape[0], x.size)
    return y, arg


def max_pool2d_backward(dy, argmax, x_shape, KH, KW, SH, SW, PH, PW):
    nbk = _load()
    dy, argmax = _c(dy), _c(argmax).astype(np.int32, copy=False)
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _drive(_ranges(dx.shape[0], dx.size),
           lambda t, n0, n1: nbk.max_bwd(dy, argmax, dx, KH, KW, SH, SW, PH, PW, n0, n1),
           lambda T: nbk.max_bwd_par(dy, argmax, dx, KH, KW, SH, SW, PH, PW, T), dx.shape[0], dx.size)
    return dx


def relu_forward(x):
    nbk = _load()
    x = _c(x)
    y = np.empty_like(x)
    xf, yf = x.reshape(-1), y.reshape(-1)
    _drive_elementwise(lambda i0, i1: nbk.relu_fwd(xf, yf, i0, i1), lambda T: nbk.relu_fwd_par(xf, yf, T), xf.size)
    return y


def relu_backward(dy, y):
    nbk = _load()
    y = _c(y)
    dy = _c(dy).astype(y.dtype, copy=False)
    dx = np.empty_like(y)
    df, yf, xf = dy.reshape(-1), y.reshape(-1), dx.reshape(-1)
    _drive_elementwise(lambda i0, i1: nbk.relu_bwd(df, yf, xf, i0, i1), lambda T: nbk.relu_bwd_par(df, yf, xf, T),
                       yf.size)
    return dx


def sgd_update(p, g, v, lr, momentum, weight_decay):
    """In place: ``v = momentum*v + (g + weight_decay*p); p -= lr*v`` in one pass (C-contiguous arrays)."""
    nbk = _load()
    dt = p.dtype.type
    pf, gf, vf = p.reshape(-1), g.reshape(-1), v.reshape(-1)
    lr, momentum, weight_decay = dt(lr), dt(momentum), dt(weight_decay)
    _drive_elementwise(lambda i0, i1: nbk.sgd(pf, gf, vf, lr, momentum, weight_decay, i0, i1),
                       lambda T: nbk.sgd_par(pf, gf, vf, lr, momentum, weight_decay, T), pf.size)
