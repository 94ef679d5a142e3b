"""Run in a subprocess by tests/cuda/test_sanitizers.py under AddressSanitizer + UBSan
(``LD_PRELOAD=libasan.so``): the GPU ops (xcnn/cuda/ops.py) on the CuPy double, whose kernels are
built with ``-fsanitize=address,undefined``, on a fixed set of shapes and launch shapes, compared
with the NumPy implementations. Any out-of-bounds access or signed overflow aborts the process.
``oob`` and ``overflow`` run deliberately broken kernels to prove the harness bites.

Usage: python tests/doubles/emu_asan_cases.py cases|oob|overflow
"""
from __future__ import annotations

import itertools
import sys

import numpy as np

from doubles import emu as _emu
from doubles import fakecupy
from xcnn.backend import get_device, to_host
from xcnn.cpu import numpy_conv, numpy_ops
from xcnn.cuda import gemm
from xcnn.cuda import ops as O
from xcnn.ops import conv_geometry, pool_geometry

BROKEN = r'''
extern "C" __global__ void write_past_end(float* out, long long total)
{
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step)
        out[i + 1] = 1.0f;  /* off by one: the last thread writes out[total] */
}
extern "C" __global__ void int_overflow(int* out, int a, int b)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) out[0] = a * b;  /* 65536 * 65536 overflows int */
}
'''


def cases() -> int:
    rng = np.random.default_rng(0)
    dev = get_device("cuda")
    put = dev.asarray
    n = 0
    shapes = [(1, 1, 1, 1), (1, 2, 5, 7), (2, 3, 8, 6), (3, 1, 4, 9)]
    windows = [(1, 1), (2, 3), (3, 3), (7, 2)]
    steps = [(1, 1), (2, 3), (3, 2)]
    pads = [(0, 0), (1, 0), (0, 1), (3, 3)]
    launches = [None, (1, 32), (2, 5)]

    def launch():
        fakecupy.world().launch = launches[n % len(launches)]

    def same(a, b):
        np.testing.assert_array_equal(to_host(a), b)

    for shape, k, s, p, dtype in itertools.product(shapes, windows, steps, pads, (np.float32, np.float64)):
        N, C, H, W = shape
        try:
            g = conv_geometry(H, W, k, s, p)
        except ValueError:
            continue
        launch()
        x = rng.standard_normal(shape).astype(dtype)
        col = O.im2col(put(x), g)
        same(col, numpy_conv.im2col(x, g))
        same(O.col2im(col, shape, g), numpy_conv.col2im(to_host(col), shape, g))
        n += 2
        try:
            pg = pool_geometry(H, W, k, s, p)
        except ValueError:
            continue
        y = O.avg_pool2d_forward(put(x), pg)
        same(y, numpy_ops.avg_pool2d_forward(x, pg))
        same(O.avg_pool2d_backward(y, shape, pg), numpy_ops.avg_pool2d_backward(to_host(y), shape, pg))
        y, a = O.max_pool2d_forward(put(x), pg)
        ry, ra = numpy_ops.max_pool2d_forward(x, pg)
        same(y, ry)
        same(a, ra)
        same(O.max_pool2d_backward(y, a, shape, pg), numpy_ops.max_pool2d_backward(ry, ra, shape, pg))
        n += 4
    for sizes, dtype in itertools.product(((1,), (5, 1, 33), (300, 2, 2, 17)), (np.float32, np.float64)):
        launch()
        ts = [[rng.standard_normal(k).astype(dtype) for _ in range(3)] for k in sizes]
        refs = [[a.copy() for a in t] for t in ts]
        numpy_ops.sgd_update(*zip(*refs), 0.1, 0.9, 1e-3, {})
        dts = [[put(a) for a in t] for t in ts]
        O.sgd_update(*zip(*dts), 0.1, 0.9, 1e-3, {})
        for t, r in zip(dts, refs):
            same(t[0], r[0])
            same(t[2], r[2])
        n += 1
    for (N, C, P), dtype in itertools.product(((1, 1, 1), (3, 4, 7), (2, 9, 25)), (np.float32, np.float64)):
        launch()
        y2, b = rng.standard_normal((C, N * P)).astype(dtype), rng.standard_normal(C).astype(dtype)
        same(O._conv_output(put(y2), put(b), N, P, 1)[..., 0], (y2 + b[:, None]).reshape(C, N, P).transpose(1, 0, 2))
        r = np.maximum(y2, 0)
        same(O.relu_backward(put(y2), put(r)), numpy_ops.relu_backward(y2, r))
        n += 2
    for (M, N_, K), (ta, tb), dtype in itertools.product(((1, 1, 1), (5, 3, 70), (4, 25, 700), (70, 65, 9)),
                                                         ((False, False), (False, True), (True, False)),
                                                         (np.float32, np.float64)):
        fakecupy.world().launch = None  # gemm.cu needs its 256-thread blocks (its own grid tests: test_gemm.py)
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
        b = rng.standard_normal((N_, K) if tb else (K, N_)).astype(dtype)
        with gemm.using("kernels"):
            c = to_host(gemm.matmul(put(a), put(b), trans_a=ta, trans_b=tb))
        ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4 * np.sqrt(K))
        n += 1
    for (N, K), dtype in itertools.product(((1, 1), (3, 10), (40, 7)), (np.float32, np.float64)):
        launch()
        z = rng.standard_normal((N, K)).astype(dtype)
        y = rng.integers(0, K, N)
        y[0] = K  # an out-of-range label must not read past the row
        rows, grad = (to_host(a) for a in O.softmax_xent(put(z), put(y)))
        assert np.isnan(rows[0]) and np.isfinite(rows[1:]).all() and np.isfinite(grad[1:]).all()
        n += 1
    return n


def main(argv) -> int:
    mode = argv[1] if len(argv) > 1 else "cases"
    if mode == "cases":
        with fakecupy.installed(sanitize=True):
            print(f"sanitized emulation OK: {cases()} kernel launches checked")
        return 0
    mod = _emu.build("broken.cu", source=BROKEN, sanitize=True)
    if mode == "oob":
        out = np.zeros(100, np.float32)
        mod.launch("write_past_end", 1, 32, (out, np.int64(out.size)))
    elif mode == "overflow":
        mod.launch("int_overflow", 1, 1, (np.zeros(1, np.int32), np.int32(65536), np.int32(65536)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("broken kernel ran without a sanitizer report")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
