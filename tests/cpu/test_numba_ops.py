"""The compiled CPU kernels (xcnn/cpu/numba_ops.py and the _nb_* kernels): every way of running them
gives the same bits, and they agree with the pure-NumPy path."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import TOL

from xcnn import ops
from xcnn.cpu import config, threads
from xcnn.nn import SGD, SoftmaxCrossEntropy, build_model

pytestmark = pytest.mark.skipif(not config.numba_available(), reason=f"compiled CPU kernels off: "
                                                                     f"{config.numba_reason()}")


def _ops(rng, dtype):
    """Every compiled op on odd shapes (N=5 over 2-3 ranges), as one dict of results."""
    x = rng.standard_normal((5, 3, 9, 7)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y, cache = ops.conv2d_forward(x, w, b, 1, (1, 2))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = ops.conv2d_backward(dy, cache, w)
    a = ops.avg_pool2d_forward(x, 3, 2, 1)
    da = ops.avg_pool2d_backward(np.ones_like(a), x.shape, 3, 2, 1)
    m, arg = ops.max_pool2d_forward(x, 3, 1, 1)
    dm = ops.max_pool2d_backward(np.ones_like(m), arg, x.shape, 3, 1, 1)
    r = ops.relu_forward(x)
    dr = ops.relu_backward(dy[:, :3, :, :7], r)
    # the presets' 2x2/stride-2 pooling has a fast path of its own; odd H, W leave a border no window
    # covers, and small integers make ties (the first maximum must win)
    t = np.round(x * 1.5).astype(dtype)
    a2 = ops.avg_pool2d_forward(x, 2)
    da2 = ops.avg_pool2d_backward(rng.standard_normal(a2.shape).astype(dtype), x.shape, 2)
    m2, arg2 = ops.max_pool2d_forward(t, 2)
    dm2 = ops.max_pool2d_backward(rng.standard_normal(m2.shape).astype(dtype), arg2, t.shape, 2)
    return {"y": y, "dx": dx, "dw": dw, "db": db, "avg": a, "davg": da, "max": m, "arg": arg, "dmax": dm,
            "relu": r, "drelu": dr, "avg2": a2, "davg2": da2, "max2": m2, "arg2": arg2, "dmax2": dm2}


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_pool_python_pool_and_serial_give_the_same_bits(monkeypatch, n_threads, dtype):
    results = {}
    ways = {  # the Numba pool runs while OpenBLAS has been quiet; else xcnn's threads, or one thread
        "numba-pool": dict(blas_quiet_s=0.0, parallel_min_elements=1 << 40),
        "python-pool": dict(blas_quiet_s=1e9, parallel_min_elements=1),
        "serial": dict(blas_quiet_s=1e9, parallel_min_elements=1 << 40),
    }
    for how, knobs in ways.items():
        monkeypatch.setattr(threads, "_LAST_THREADED_GEMM", [float("-inf") if how == "numba-pool" else 0.0])
        with config.using(kernels="numba", threads=n_threads, pool_min_work=1, **knobs):
            results[how] = _ops(np.random.default_rng(7), dtype)
    for how in ("python-pool", "serial"):
        for k, v in results["numba-pool"].items():
            np.testing.assert_array_equal(results[how][k], v, err_msg=f"{how}: {k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_ops_agree_with_the_numpy_path(dtype):
    with config.using(kernels="numba"):
        got = _ops(np.random.default_rng(3), dtype)
    with config.using(kernels="numpy"):
        ref = _ops(np.random.default_rng(3), dtype)
    rtol, atol = TOL[np.dtype(dtype)]
    for k in ref:
        if k.startswith(("arg", "max", "dmax", "relu", "drelu", "avg", "davg")):
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)  # no re-association there
        else:
            np.testing.assert_allclose(got[k], ref[k], rtol=rtol * 10, atol=atol * 10, err_msg=k)


def test_sgd_update_is_bit_identical_to_the_numpy_path():
    def run(impl):
        rng = np.random.default_rng(0)
        with config.using(kernels=impl):
            net = build_model("seed-cnn", seed=1)
            opt = SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
            for p in net.parameters():
                p.grad[...] = rng.standard_normal(p.shape).astype(p.grad.dtype)
            for _ in range(3):
                opt.step()
        return [p.data.copy() for p in net.parameters()]

    for a, b in zip(run("numba"), run("numpy")):
        np.testing.assert_array_equal(a, b)


def test_seed_cnn_step_agrees_between_paths_in_float64():
    def step(impl):
        rng = np.random.default_rng(5)
        x = rng.standard_normal((6, 1, 28, 28))
        t = rng.integers(0, 10, 6)
        with config.using(kernels=impl):
            net = build_model("seed-cnn", seed=2, dtype=np.float64)
            loss = SoftmaxCrossEntropy()
            val = float(loss.forward(net.forward(x), t))
            net.backward(loss.backward())
        return val, [p.grad.copy() for p in net.parameters()]

    (l1, g1), (l2, g2) = step("numba"), step("numpy")
    assert abs(l1 - l2) <= 1e-12 * abs(l2)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_non_contiguous_inputs_and_nan_propagation():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    view = base.transpose(1, 0, 2, 3)  # (2, 3, 8, 8), not C-contiguous
    view[0, 0, 0, 0] = np.nan
    with config.using(kernels="numba"):
        r1 = ops.relu_forward(view)
        a1 = ops.avg_pool2d_forward(view, 2)
        m1, k1 = ops.max_pool2d_forward(view, 2)
    with config.using(kernels="numpy"):
        r2 = ops.relu_forward(np.ascontiguousarray(view))
        a2 = ops.avg_pool2d_forward(np.ascontiguousarray(view), 2)
        m2, k2 = ops.max_pool2d_forward(np.ascontiguousarray(view), 2)
    np.testing.assert_array_equal(r1, r2)  # NaN in the same places
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(k1, k2)
    assert np.isnan(r1[0, 0, 0, 0]) and np.isnan(a1[0, 0, 0, 0]) and np.isnan(m1[0, 0, 0, 0])
