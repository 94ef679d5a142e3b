"""xcnn's CPU thread pool: an op split into contiguous sample ranges, one per thread, and the
clock of OpenBLAS's threaded GEMMs (two spinning thread pools on the same cores stall each other,
so the compiled kernels avoid Numba's pool right after a threaded GEMM; see :mod:`.numba_ops`).

A range split is a fixed function of the shapes and the thread count -- never of timing -- so
partial sums added in range order give the same bits however the ranges are run.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import config

__all__ = ["split_work", "parallel", "run_bounds", "note_threaded_gemm", "blas_quiet"]

_POOL: dict = {}
_POOL_LOCK = threading.Lock()
#: when a GEMM last went to OpenBLAS's thread pool (``time.perf_counter()``)
_LAST_THREADED_GEMM = [float("-inf")]


def _executor(n: int) -> ThreadPoolExecutor:
    with _POOL_LOCK:
        ex = _POOL.get(n)
        if ex is None:
            ex = _POOL[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="xcnn-cpu")
        return ex


def split_work(n_chunks: int, elements: int) -> int:
    """How many threads to use for ``n_chunks`` independent chunks touching ``elements`` in all."""
    cfg = config.get()
    return max(1, min(cfg.threads, n_chunks if elements >= cfg.parallel_min_elements else 1))


def run_bounds(fn, bounds):
    """``fn(t, n0, n1)`` for each ``(t, n0, n1)`` of ``bounds``: the first on the calling thread, the
    rest on xcnn's thread pool. Returns the results in ``bounds`` order."""
    futs = [_executor(config.get().threads).submit(fn, *b) for b in bounds[1:]]
    first = fn(*bounds[0])
    return [first] + [f.result() for f in futs]


def parallel(fn, N: int, step: int, elements: int):
    """Run ``fn(t, n0, n1)`` over contiguous ranges (multiples of ``step``) of ``range(N)``, one range
    per thread ``t``; the caller runs range 0. Returns the results in range order."""
    n_chunks = -(-N // step)
    T = split_work(n_chunks, elements)
    if T == 1:
        return [fn(0, 0, N)]
    per = -(-n_chunks // T)
    bounds = [(t, t * per * step, min(N, (t + 1) * per * step)) for t in range(T)]
    return run_bounds(fn, [b for b in bounds if b[1] < b[2]])


def note_threaded_gemm() -> None:
    """Record that a GEMM big enough for OpenBLAS's thread pool is running now."""
    _LAST_THREADED_GEMM[0] = time.perf_counter()


def blas_quiet() -> bool:
    """OpenBLAS has run no threaded GEMM for ``config.blas_quiet_s`` seconds (its workers stopped spinning)."""
    return time.perf_counter() - _LAST_THREADED_GEMM[0] > config.get().blas_quiet_s
