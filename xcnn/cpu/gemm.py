"""Matrix products on the CPU, kept off OpenBLAS's thread pool when that pool would cost more than
it gains: skinny products (one side at most 32 wide) are memory-bound, so a second BLAS thread
gains them nothing, while the hand-off costs ~10x on a machine whose other core is busy."""
from __future__ import annotations

import numpy as np

from . import config
from .threads import note_threaded_gemm

__all__ = ["matmul", "gemm", "linear_forward", "linear_backward"]


def gemm(a, b, out) -> None:
    """``out[...] = a @ b`` (one BLAS call)."""
    np.matmul(a, b, out=out)


def _skinny(M: int, N: int, K: int, limit: int) -> bool:
    return min(M, N, K) <= 32 and M * N * K >= limit


def matmul(a, b, out=None):
    """``a (M, K) @ b (K, N)``; a skinny product is cut into pieces under ``serial_gemm_mnk`` (along M,
    else along K with the partial products summed in order) so it runs on the calling thread.
    ``out`` (M, N), when given, receives the result."""
    M, K = a.shape
    N = b.shape[1]
    limit = config.get().serial_gemm_mnk
    if out is None:
        out = np.empty((M, N), dtype=np.result_type(a.dtype, b.dtype))
    if not _skinny(M, N, K, limit):
        if M * N * K >= limit:
            note_threaded_gemm()
        np.matmul(a, b, out=out)
        return out
    if M >= K:  # rows are independent: split M
        step = max(1, (limit - 1) // max(1, N * K))
        for m0 in range(0, M, step):
            np.matmul(a[m0:m0 + step], b, out=out[m0:m0 + step])
        return out
    step = max(1, (limit - 1) // max(1, M * N))  # split the inner dimension, sum the parts in order
    part = np.empty_like(out)
    np.matmul(a[:, :step], b[:step], out=out)
    for k0 in range(step, K, step):
        np.matmul(a[:, k0:k0 + step], b[k0:k0 + step], out=part)
        out += part
    return out


def linear_forward(x, weight, bias):
    """``x (N, I) @ weight (O, I).T + bias (O,)``."""
    y = matmul(x, weight.T)
    if bias is not None:
        y += bias
    return y


def linear_backward(dy, x, weight, dw_out, db_out, need_dx):
    """Writes ``dy.T @ x`` into ``dw_out`` and ``dy.sum(0)`` into ``db_out``; returns ``dy @ weight`` or None."""
    matmul(dy.T, x, out=dw_out)
    if db_out is not None:
        dy.sum(axis=0, out=db_out)
    return matmul(dy, weight) if need_dx else None
