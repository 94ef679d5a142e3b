"""Matrix products on the GPU: cuBLAS (through CuPy's ``@``), or our own kernels (kernels/gemm.cu),
which a captured CUDA graph needs -- CuPy refuses every cuBLAS call while a stream is capturing
(``setStream`` in cupy_backends/cuda/libs/cublas.pyx). Our kernels sum every output in a fixed
order that depends on the shapes only (see the header of kernels/gemm.cu), so a graph's replays,
its eager warm-up and the emulation on the host give the same bits.

Which one runs is a per-thread setting: ``with using("kernels"):`` (the graph step uses it for
all its steps) or ``$XCNN_GPU_GEMM`` (``cublas``, the default for eager steps until a GPU
measurement says otherwise, or ``kernels``).
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from .launch import MAX_GRID, cupy, launch_config, launch_grid, suffix

__all__ = ["CHOICES", "using", "choice", "matmul", "plan", "grids"]

CHOICES = ("cublas", "kernels")

# The launch rules of kernels/gemm.cu's header comment (tests hold the two to each other).
THREADS = 256        # the block size both tiled kernels require
TILE = 64            # gemm_*: 64x64 outputs per work item
SK_TILE = 16         # gemm_splitk_partial_*: 16x16 outputs per (chunk, tile) work item
SPLIT_TILES = 32     # split K only when fewer 64x64 output tiles than this...
SPLIT_MIN_K = 512    # ...and K at least this long
KCHUNK = 256         # shortest chunk
SMAX = 256           # most chunks
KALIGN = 64          # chunk lengths are multiples of this (pass 1's k step)
PART_MAX = 1 << 22   # most elements of the (S, M, N) partials

_LOCAL = threading.local()


def _default() -> str:
    value = os.environ.get("XCNN_GPU_GEMM", "cublas").strip().lower() or "cublas"
    if value not in CHOICES:
        raise ValueError(f"XCNN_GPU_GEMM={value!r} is not a choice — use one of {', '.join(CHOICES)}")
    return value


def choice() -> str:
    """``cublas`` or ``kernels``: what :func:`matmul` uses on this thread now."""
    c = getattr(_LOCAL, "choice", None)
    if c is None:
        c = _LOCAL.choice = _default()
    return c


@contextlib.contextmanager
def using(kind: str):
    """Use ``kind`` (``cublas`` or ``kernels``) for the GPU's matrix products inside the block."""
    if kind not in CHOICES:
        raise ValueError(f"GEMM {kind!r} is not a choice — use one of {', '.join(CHOICES)}")
    before = choice()
    _LOCAL.choice = kind
    try:
        yield
    finally:
        _LOCAL.choice = before


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def plan(M: int, N: int, K: int) -> tuple[int, int]:
    """``(S, L)`` for a product of (M, K) and (K, N): ``S == 1`` (``L == K``) is the single pass;
    otherwise split-K in S chunks of L (the last one shorter). A pure function of the shape."""
    tiles = _cdiv(M, TILE) * _cdiv(N, TILE)
    if M * N == 0 or tiles >= SPLIT_TILES or K < SPLIT_MIN_K:
        return 1, K
    smax = min(SMAX, max(1, PART_MAX // (M * N)))
    L = _cdiv(max(KCHUNK, _cdiv(K, smax)), KALIGN) * KALIGN
    S = _cdiv(K, L)
    return (1, K) if S == 1 else (S, L)


def grids(M: int, N: int, S: int) -> dict:
    """The grid of each kernel for an (M, N) output in S chunks (capped; grid-stride loops cover the rest)."""
    return {"gemm": min(_cdiv(M, TILE) * _cdiv(N, TILE), MAX_GRID),
            "gemm_splitk_partial": min(S * _cdiv(M, SK_TILE) * _cdiv(N, SK_TILE), MAX_GRID),
            "gemm_splitk_reduce": launch_config(M * N)[0]}


def _kernels(a, b, trans_a, trans_b, bias, out):
    cp = cupy()
    a, b = cp.ascontiguousarray(a), cp.ascontiguousarray(b)
    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    N = b.shape[0] if trans_b else b.shape[1]
    if (b.shape[1] if trans_b else b.shape[0]) != K:
        raise ValueError(f"gemm: inner dimensions differ ({K} and {b.shape})")
    for name, v in (("M", M), ("N", N), ("K", K)):
        if v >= 2**31:
            raise ValueError(f"gemm: {name}={v} does not fit the kernels' 32-bit int")
    sa0, sa1 = (1, M) if trans_a else (K, 1)
    sb0, sb1 = (1, K) if trans_b else (N, 1)
    dt = a.dtype
    if out is None:
        out = cp.empty((M, N), dtype=dt)
    if M * N == 0:
        return out
    if K == 0:
        out.fill(0)
        if bias is not None:
            out += bias
        return out
    sfx = suffix("gemm", a)
    i32, i64 = np.int32, np.int64
    has_bias = i32(bias is not None)
    bvec = bias if bias is not None else out.reshape(-1)[:1]  # any 1-element array when there is no bias
    S, L = plan(M, N, K)
    g = grids(M, N, S)
    strides = (i64(sa0), i64(sa1), i64(sb0), i64(sb1))
    if S == 1:
        launch_grid("gemm.cu", f"gemm_{sfx}", g["gemm"], THREADS,
                    (a, b, bvec, out, i32(M), i32(N), i32(K), *strides, i64(N), has_bias))
        return out
    part = cp.empty((S, M, N), dtype=dt)
    launch_grid("gemm.cu", f"gemm_splitk_partial_{sfx}", g["gemm_splitk_partial"], THREADS,
                (a, b, part, i32(M), i32(N), i32(K), *strides, i32(L), i32(S)))
    grid, block = launch_config(M * N)
    launch_grid("gemm.cu", f"gemm_splitk_reduce_{sfx}", grid, block,
                (part, bvec, out, i32(M), i32(N), i32(S), i64(N), has_bias))
    return out


def matmul(a, b, *, trans_a: bool = False, trans_b: bool = False, bias=None, out=None):
    """``op(a) @ op(b) (+ bias per column)`` for 2-D arrays, ``op`` a transpose when asked; ``out``
    (C-contiguous, the result's shape and dtype) receives it. cuBLAS or our kernels, per :func:`using`."""
    if choice() == "kernels":
        return _kernels(a, b, trans_a, trans_b, bias, out)
    cp = cupy()
    x = a.T if trans_a else a
    y = b.T if trans_b else b
    if out is None:
        out = x @ y
    else:
        cp.matmul(x, y, out=out)
    if bias is not None:
        out += bias
    return out
