"""The compiled CPU kernels (xcnn.cpu_kernels, Numba): every way of running them gives the same
bits, they agree with the pure-NumPy path and with naive references, and the switch is explicit."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import TOL

from xcnn import cpu_kernels as CK
from xcnn import functional as F
from xcnn.losses import SoftmaxCrossEntropy
from xcnn.models import build_model
from xcnn.optim import SGD

pytestmark = pytest.mark.skipif(not CK.available(), reason=f"compiled CPU kernels off: {CK.reason_unavailable()}")


def _ops(rng, dtype):
    """Every compiled op on odd shapes (N=5 over 2-3 ranges), as one dict of results."""
    x = rng.standard_normal((5, 3, 9, 7)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y, cache = F.conv2d_forward(x, w, b, 1, (1, 2))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = F.conv2d_backward(dy, cache, x.shape, w, 1, (1, 2))
    a = F.avg_pool2d_forward(x, 3, 2, 1)
    da = F.avg_pool2d_backward(np.ones_like(a), x.shape, 3, 2, 1)
    m, arg = F.max_pool2d_forward(x, 3, 1, 1)
    dm = F.max_pool2d_backward(np.ones_like(m), arg, x.shape, 3, 1, 1)
    r = F.relu_forward(x)
    dr = F.relu_backward(dy[:, :3, :, :7], r)
    # the presets' 2x2/stride-2 pooling has a fast path of its own; odd H, W leave a border no window
    # covers, and small integers make ties (the first maximum must win)
    t = np.round(x * 1.5).astype(dtype)
    a2 = F.avg_pool2d_forward(x, 2)
    da2 = F.avg_pool2d_backward(rng.standard_normal(a2.shape).astype(dtype), x.shape, 2)
    m2, arg2 = F.max_pool2d_forward(t, 2)
    dm2 = F.max_pool2d_backward(rng.standard_normal(m2.shape).astype(dtype), arg2, t.shape, 2)
    return {"y": y, "dx": dx, "dw": dw, "db": db, "avg": a, "davg": da, "max": m, "arg": arg, "dmax": dm,
            "relu": r, "drelu": dr, "avg2": a2, "davg2": da2, "max2": m2, "arg2": arg2, "dmax2": dm2}


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_pool_python_pool_and_serial_give_the_same_bits(monkeypatch, threads, dtype):
    monkeypatch.setattr(F, "CPU_THREADS", threads)
    monkeypatch.setattr(CK, "POOL_MIN_WORK", 1)  # split even these tiny ops into ranges
    results = {}
    with CK.use("numba"):
        for how in ("numba-pool", "python-pool", "serial"):
            # the Numba pool is used while OpenBLAS has been quiet; else xcnn's threads, or one thread
            monkeypatch.setattr(F, "LAST_THREADED_GEMM", [float("-inf") if how == "numba-pool" else time.perf_counter()])
            monkeypatch.setattr(CK, "BLAS_QUIET_S", 0.0 if how == "numba-pool" else 1e9)
            monkeypatch.setattr(F, "PARALLEL_MIN_ELEMENTS", 1 if how == "python-pool" else 1 << 40)
            results[how] = _ops(np.random.default_rng(7), dtype)
    for how in ("python-pool", "serial"):
        for k, v in results["numba-pool"].items():
            np.testing.assert_array_equal(results[how][k], v, err_msg=f"{how}: {k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_ops_agree_with_the_numpy_path(dtype):
    with CK.use("numba"):
        got = _ops(np.random.default_rng(3), dtype)
    with CK.use("numpy"):
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
        with CK.use(impl):
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
        with CK.use(impl):
            net = build_model("seed-cnn", seed=2, dtype=np.float64)
            loss = SoftmaxCrossEntropy()
            val = loss.forward(net.forward(x), t)
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
    with CK.use("numba"):
        r1 = F.relu_forward(view)
        a1 = F.avg_pool2d_forward(view, 2)
    with CK.use("numpy"):
        r2 = F.relu_forward(np.ascontiguousarray(view))
        a2 = F.avg_pool2d_forward(np.ascontiguousarray(view), 2)
    np.testing.assert_array_equal(r1, r2)  # NaN in the same places
    np.testing.assert_array_equal(a1, a2)
    assert np.isnan(r1[0, 0, 0, 0]) and np.isnan(a1[0, 0, 0, 0])


def test_selection_errors_are_clear():
    with pytest.raises(ValueError, match="'numba' or 'numpy'"):
        with CK.use("fortran"):
            pass
    code = ("import sys; sys.modules['numba'] = None\n"
            "from xcnn import cpu_kernels as CK\n"
            "assert not CK.active() and 'pip install numba' in CK.reason_unavailable()\n"
            "import numpy as np; from xcnn import functional as F\n"
            "print(float(F.relu_forward(np.array([[-1.0, 2.0]], np.float32)).sum()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "2.0", out.stderr  # falls back to NumPy
    forced = subprocess.run([sys.executable, "-c", code.replace("assert not CK.active() and", "CK.active(); assert")],
                            capture_output=True, text=True, timeout=120, env={"XCNN_CPU_KERNELS": "numba",
                                                                              "PATH": "/usr/bin:/bin"})
    assert forced.returncode != 0 and "XCNN_CPU_KERNELS=numba, but numba is not importable" in forced.stderr
    bad = subprocess.run([sys.executable, "-c", "from xcnn import cpu_kernels as CK; CK.active()"],
                         capture_output=True, text=True, timeout=120, env={"XCNN_CPU_KERNELS": "gpu"})
    assert bad.returncode != 0 and "use one of auto, numba, numpy" in bad.stderr
