"""Run in a subprocess by tests/test_kernels_emulated.py under AddressSanitizer + UBSan
(``LD_PRELOAD=libasan.so``): the kernels built with ``-fsanitize=address,undefined`` on a fixed
set of shapes, compared with the NumPy path. Any out-of-bounds access or signed overflow aborts
the process. ``oob`` and ``overflow`` run deliberately broken kernels to prove the harness bites.

Usage: python tests/_emu_asan_cases.py cases|oob|overflow
"""
from __future__ import annotations

import itertools
import sys

import numpy as np

import _emu
from xcnn import cuda_ops as O
from xcnn import functional as F

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
    n = 0
    shapes = [(1, 1, 1, 1), (1, 2, 5, 7), (2, 3, 8, 6), (3, 1, 4, 9)]
    windows = [(1, 1), (2, 3), (3, 3), (7, 2)]
    steps = [(1, 1), (2, 3), (3, 2)]
    pads = [(0, 0), (1, 0), (0, 1), (3, 3)]
    launches = [(None, None), (1, 32), (2, 5)]
    for (N, C, H, W), k, s, p, dtype in itertools.product(shapes, windows, steps, pads, (np.float32, np.float64)):
        L = _emu.Launcher(*launches[n % len(launches)], sanitize=True)
        try:
            g = F.conv_geometry(H, W, k, s, p)
        except ValueError:
            continue
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        col = O._im2col(np, L, x, *g)
        np.testing.assert_array_equal(col, F.im2col(x, k, s, p))
        np.testing.assert_array_equal(O._col2im(np, L, col, N, C, H, W, *g), F.col2im(col, x.shape, k, s, p))
        n += 2
        try:
            pg = F.pool_geometry(H, W, k, s, p)
        except ValueError:
            continue
        y = O._avg_pool_forward(np, L, x, *pg)
        np.testing.assert_array_equal(y, F.avg_pool2d_forward(x, k, s, p))
        np.testing.assert_array_equal(O._avg_pool_backward(np, L, y, N, C, H, W, *pg),
                                      F.avg_pool2d_backward(y, x.shape, k, s, p))
        y, a = O._max_pool_forward(np, L, x, *pg)
        ry, ra = F.max_pool2d_forward(x, k, s, p)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(a, ra)
        np.testing.assert_array_equal(O._max_pool_backward(np, L, y, a, N, C, H, W, *pg),
                                      F.max_pool2d_backward(y, a, x.shape, k, s, p))
        n += 4
    from xcnn.layers import Parameter  # noqa: PLC0415
    from xcnn.optim import SGD  # noqa: PLC0415

    for size, dtype, wd in itertools.product((1, 7, 300), (np.float32, np.float64), (0.0, 1e-3)):
        L = _emu.Launcher(*launches[n % len(launches)], sanitize=True)
        w, dw, v = (rng.standard_normal(size).astype(dtype) for _ in range(3))
        par = Parameter(w.copy(), "w")
        par.grad[...] = dw
        opt = SGD([par], lr=0.1, momentum=0.9, weight_decay=wd)
        opt.state["velocity"] = {"w": v.copy()}
        opt.step()
        O._sgd_update(np, L, w, dw, v, np.array([0.1, 0.9, wd], dtype))
        np.testing.assert_array_equal(w, par.data)
        np.testing.assert_array_equal(v, opt.state["velocity"]["w"])
        n += 1
    for sizes, dtype in itertools.product(((1,), (5, 1, 33), (300, 2, 2, 17)), (np.float32, np.float64)):
        L = _emu.Launcher(*launches[n % len(launches)], sanitize=True)
        ts = [[rng.standard_normal(k).astype(dtype) for _ in range(3)] for k in sizes]
        refs = [[a.copy() for a in t] for t in ts]
        for p, g, v in refs:
            O._sgd_update(np, _emu.Launcher(sanitize=True), p, g, v, np.array([0.1, 0.9, 1e-3], dtype))
        tab, off, total = O._sgd_table(np, O.sgd_table_key(*zip(*ts)))
        O._sgd_update_multi(np, L, tab, off, total, np.array([0.1, 0.9, 1e-3], dtype))
        for t, r in zip(ts, refs):
            np.testing.assert_array_equal(t[0], r[0])
            np.testing.assert_array_equal(t[2], r[2])
        n += 1
    for (N, C, P), dtype in itertools.product(((1, 1, 1), (3, 4, 7), (2, 9, 25)), (np.float32, np.float64)):
        L = _emu.Launcher(*launches[n % len(launches)], sanitize=True)
        y2, b = rng.standard_normal((C, N * P)).astype(dtype), rng.standard_normal(C).astype(dtype)
        np.testing.assert_array_equal(O._conv_output(np, L, y2, b, N, P, 1)[..., 0],
                                      (y2 + b[:, None]).reshape(C, N, P).transpose(1, 0, 2))
        r = np.maximum(y2, 0)
        np.testing.assert_array_equal(O._relu_backward(np, L, y2, r), F.relu_backward(y2, r))
        n += 2
    for (N, K), dtype in itertools.product(((1, 1), (3, 10), (40, 7)), (np.float32, np.float64)):
        L = _emu.Launcher(*launches[n % len(launches)], sanitize=True)
        z = rng.standard_normal((N, K)).astype(dtype)
        y = rng.integers(0, K, N)
        y[0] = K  # an out-of-range label must not read past the row
        rows, grad = O._softmax_xent(np, L, z, y)
        assert np.isnan(rows[0]) and np.isfinite(rows[1:]).all()
        if N > 1:
            np.testing.assert_allclose(grad[1:], F.softmax_cross_entropy(z[1:], y[1:])[1] * (N - 1) / N,
                                       rtol=1e-5, atol=1e-6)
        n += 1
    return n


def main(argv) -> int:
    mode = argv[1] if len(argv) > 1 else "cases"
    if mode == "cases":
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
