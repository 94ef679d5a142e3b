"""Launching kernels/gemm.cu on the emulation with knobs production does not have (a forced split,
grid, output stride, OS threads, a sanitizer build, another source text), and the independent
reference its bits are held to. The launch rules themselves are production's (xcnn/cuda/gemm.py)."""
from __future__ import annotations

import numpy as np

from doubles.emu import build
from xcnn.cuda.gemm import THREADS, grids, plan
from xcnn.cuda.launch import launch_config


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def gemm(A, B, M, N, K, sa0, sa1, sb0, sb1, bias=None, *, split=None, grid=None, out=None, ldc=None,
         sanitize=False, os_threads=False, source=None, xp=np, launch=None):
    """``C[i, j] = sum_k A[i*sa0 + k*sa1] * B[k*sb0 + j*sb1] (+ bias[j])`` through kernels/gemm.cu.

    ``A`` and ``B`` are C-contiguous arrays read as flat buffers. ``split``: None follows
    :func:`xcnn.cuda.gemm.plan`; 0 forces the single pass; an int L forces the two split-K passes with chunks
    of L (S = ceil(K / L), S == 1 included). ``grid``: None gives each launch its rule's grid; an int
    is used for every launch; a callable ``grid(kernel, default)`` picks per launch. ``out``: a flat
    buffer written with leading dimension ``ldc`` (default N); returns C as an (M, N) array (a view
    of ``out`` when given). ``source``: kernel text to build instead of kernels/gemm.cu;
    ``sanitize``, ``os_threads``: see :func:`build`. ``xp`` and ``launch(name, grid, block, args)``
    run it elsewhere (CuPy and its RawKernels); by default on the emulation.
    Returns ``(C, part)`` where ``part`` is the (S, M, N) partials of split-K, or None."""
    dt = np.dtype(A.dtype)
    sfx = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[dt]
    if B.dtype != dt or (bias is not None and bias.dtype != dt):
        raise TypeError("gemm: A, B and bias must share a dtype")
    for name, v in (("M", M), ("N", N), ("K", K)):
        if not 0 <= v < 2**31:
            raise ValueError(f"gemm: {name}={v} does not fit the kernels' int")
    if M and K and (M - 1) * sa0 + (K - 1) * sa1 >= A.size:
        raise ValueError("gemm: A is too small for its strides")
    if N and K and (K - 1) * sb0 + (N - 1) * sb1 >= B.size:
        raise ValueError("gemm: B is too small for its strides")
    if bias is not None and bias.shape != (N,):
        raise ValueError(f"gemm: bias must be ({N},)")
    ldc = N if ldc is None else ldc
    if out is None:
        out = xp.full(M * ldc, np.nan, dtype=dt)
    if out.dtype != dt or out.ndim != 1 or (M and out.size < (M - 1) * ldc + N):
        raise ValueError("gemm: out must be a flat buffer of A's dtype holding (M-1)*ldc + N elements")
    if M * N == 0:
        return out[:0].reshape(M, N), None
    C = out[:M * N].reshape(M, N) if ldc == N else \
        xp.lib.stride_tricks.as_strided(out, (M, N), (ldc * dt.itemsize, dt.itemsize))
    if split is None:
        S, L = plan(M, N, K)
        two_pass = S > 1
    elif split == 0:
        S, L, two_pass = 1, K, False
    else:
        L, two_pass = int(split), True
        S = max(1, cdiv(K, L))
    if launch is None:
        mod = build("gemm.cu", source=source, sanitize=sanitize, os_threads=os_threads)
        launch = mod.launch
    per_kernel = grids(M, N, S)
    has_bias = np.int32(bias is not None)
    b = bias if bias is not None else xp.zeros(1, dt)
    i32, i64 = np.int32, np.int64

    def run(kernel, args, block):
        g = per_kernel[kernel]
        if grid is not None:
            g = grid(kernel, g) if callable(grid) else int(grid)
        launch(f"{kernel}_{sfx}", g, block, args)

    if not two_pass:
        run("gemm", (A, B, b, out, i32(M), i32(N), i32(K), i64(sa0), i64(sa1), i64(sb0), i64(sb1), i64(ldc),
                     has_bias), THREADS)
        return C, None
    part = xp.full(S * M * N, np.nan, dtype=dt)
    run("gemm_splitk_partial", (A, B, part, i32(M), i32(N), i32(K), i64(sa0), i64(sa1), i64(sb0), i64(sb1),
                                i32(L), i32(S)), THREADS)
    run("gemm_splitk_reduce", (part, b, out, i32(M), i32(N), i32(S), i64(ldc), has_bias), launch_config(M * N)[1])
    return C, part.reshape(S, M, N)


#: The independent reference for gemm.cu's bits: one thread per output, the naive loop over k in
#: [kb, ke) ascending from +0 with the C library's fma (no tiles, no shared memory, no bias).
GEMM_REF_SOURCE = r'''
__device__ inline float ref_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ inline double ref_fma(double a, double b, double c) { return fma(a, b, c); }

template <typename T>
__device__ void ref_chunk_impl(const T* A, const T* B, T* out, long long total, int N, long long kb, long long ke,
                               long long sa0, long long sa1, long long sb0, long long sb1)
{
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
        const long long i = e / N, j = e % N;
        T acc = (T)0;
        for (long long k = kb; k < ke; ++k) acc = ref_fma(A[i * sa0 + k * sa1], B[k * sb0 + j * sb1], acc);
        out[e] = acc;
    }
}

extern "C" __global__ void ref_chunk_f32(const float* A, const float* B, float* out, long long total, int N,
                                         long long kb, long long ke, long long sa0, long long sa1,
                                         long long sb0, long long sb1)
{
    ref_chunk_impl<float>(A, B, out, total, N, kb, ke, sa0, sa1, sb0, sb1);
}

extern "C" __global__ void ref_chunk_f64(const double* A, const double* B, double* out, long long total, int N,
                                         long long kb, long long ke, long long sa0, long long sa1,
                                         long long sb0, long long sb1)
{
    ref_chunk_impl<double>(A, B, out, total, N, kb, ke, sa0, sa1, sb0, sb1);
}
'''


def gemm_reference(A, B, M, N, K, sa0, sa1, sb0, sb1, bias=None, *, L=None, sanitize=False):
    """What gemm.cu must return bit for bit, computed the naive way: with ``L`` None the single pass
    (one fma chain over k, then + bias); else split-K's order (chunks of L, each an fma chain,
    summed in ascending chunk order with NumPy's correctly rounded adds, then + bias).
    Returns ``(C, parts)``; ``parts`` is the list of chunk sums (one entry for the single pass)."""
    dt = np.dtype(A.dtype)
    mod = build("gemm_ref.cu", source=GEMM_REF_SOURCE, sanitize=sanitize)
    sfx = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[dt]
    bounds = [(0, K)] if L is None else [(s * L, min(K, (s + 1) * L)) for s in range(max(1, cdiv(K, L)))]
    parts = []
    for kb, ke in bounds:
        out = np.empty(M * N, dt)
        if M * N:
            mod.launch(f"ref_chunk_{sfx}", *launch_config(M * N),
                       (A, B, out, np.int64(M * N), np.int32(N), np.int64(kb), np.int64(ke),
                        np.int64(sa0), np.int64(sa1), np.int64(sb0), np.int64(sb1)))
        parts.append(out.reshape(M, N))
    acc = parts[0].copy()
    for p in parts[1:]:
        acc = acc + p  # float32 + float32 stays float32 (one IEEE rounding), likewise float64
    if bias is not None:
        acc = acc + bias
    assert acc.dtype == dt
    return acc, parts


#: Two kernels that show the block emulation honours __syncthreads (or stops on a divergent one).
BARRIER_DEMO = r'''
// Each thread writes its slot, then reads its neighbour's: right only if the barrier holds every
// thread back until all have written (and shared memory is per block).
extern "C" __global__ void neighbour_f32(float* out, int n)
{
    __shared__ float s[64];
    const int t = threadIdx.x;
    s[t] = (float)(t + 1000 * blockIdx.x);
    __syncthreads();
    const float v = s[(t + 1) % blockDim.x];
    __syncthreads();
    s[t] = -1.0f;  // overwritten only after every thread has read
    if ((int)(blockIdx.x * blockDim.x) + t < n) out[blockIdx.x * blockDim.x + t] = v;
}
extern "C" __global__ void diverge_f32(float* out, int n)
{
    if (threadIdx.x == 3) return;  // skips the barrier: undefined on a GPU
    __syncthreads();
    out[threadIdx.x % n] = 1.0f;
}
'''
