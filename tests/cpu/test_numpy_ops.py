"""The NumPy pooling, ReLU and SGD update split over xcnn's threads (xcnn/cpu/numpy_ops.py): the
sample-split paths against naive loops, odd sizes included, and pooling keeping a CNHW input's
memory order. Threads and thresholds are :class:`xcnn.cpu.config.CpuConfig` fields."""
from __future__ import annotations

import numpy as np
import pytest
from references import naive_pool, naive_pool_backward

from xcnn import ops
from xcnn.cpu import config, numpy_ops
from xcnn.nn.layers import AvgPool2D


@pytest.fixture(params=[1, 2, 3], ids=["1thread", "2threads", "3threads"])
def tiny_chunks(request):
    """Every op split over 1-3 threads even for tiny arrays (on the pure-NumPy path these knobs govern)."""
    with config.using(kernels="numpy", chunk_bytes=1, threads=request.param, parallel_min_elements=1) as cfg:
        yield cfg


@pytest.mark.parametrize("shape", [(5, 3, 7, 6), (5, 3, 8, 6)], ids=["odd", "tiled"])
@pytest.mark.parametrize("geom", [(2, 2, 0), (3, 2, 1), (3, 3, 0), (2, 1, 0), (1, 1, 0), (3, 1, 1)])
def test_threaded_avg_pool_and_relu_match_naive(tiny_chunks, geom, shape):
    """The sample-split (threaded) pooling and ReLU paths against naive loops, odd sizes included
    (2x2 windows tiling an 8x6 input take the non-overlapping backward)."""
    k, s, p = geom
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape)
    y = ops.avg_pool2d_forward(x, k, s, p)
    ref, arg = naive_pool(x, k, s, p, "avg")
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = ops.avg_pool2d_backward(dy, x.shape, k, s, p)
    np.testing.assert_allclose(dx, naive_pool_backward(dy, arg, x.shape, k, s, p, "avg"), rtol=1e-12, atol=1e-12)
    # adjoint check: <avgpool(x), dy> == <x, avgpool^T(dy)>
    np.testing.assert_allclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12)
    r = ops.relu_forward(x)
    np.testing.assert_array_equal(r, np.where(x > 0, x, 0))
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(ops.relu_backward(g, r), np.where(r > 0, g, 0))


@pytest.mark.parametrize("order", ["nchw", "cnhw"])
def test_avg_pool_keeps_memory_order_and_values(order):
    """The NumPy path's pooling keeps a CNHW-ordered input's order (what its conv hands it) and still
    computes the same."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 8, 6))
    if order == "cnhw":
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    with config.using(kernels="numpy"):
        pool = AvgPool2D(2)
        y = pool.forward(x)
        np.testing.assert_allclose(y, naive_pool(x, 2, 2, 0, "avg")[0], rtol=1e-12, atol=1e-12)
        if order == "cnhw":
            assert y.transpose(1, 0, 2, 3).flags.c_contiguous
        dy = rng.standard_normal(y.shape)
        if order == "cnhw":
            dy = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        dx = pool.backward(dy)
    np.testing.assert_allclose(dx, np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4, rtol=1e-12, atol=1e-12)
    if order == "cnhw":
        assert dx.transpose(1, 0, 2, 3).flags.c_contiguous  # conv backward reads it without a copy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_sgd_update_is_the_reports_rule_bit_for_bit(tiny_chunks, dtype):
    """``v = m*v + g + wd*p; p -= lr*v`` on contiguous tensors split over threads, and on a
    non-contiguous one (serial): the same bits as the rule written out, whatever the thread count."""
    rng = np.random.default_rng(8)
    shapes = [(7, 5), (13,), (3, 4, 5)]
    ps = [rng.standard_normal(s).astype(dtype) for s in shapes]
    gs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    vs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ps[2] = np.asfortranarray(ps[2])  # not C-contiguous: the serial path
    lr, m, wd = 0.1, 0.9, 1e-3
    t = np.dtype(dtype).type
    want_v = [v * t(m) + g + p * t(wd) for p, g, v in zip(ps, gs, vs)]
    want_p = [p - v * t(lr) for p, v in zip(ps, want_v)]
    state = {}
    numpy_ops.sgd_update(ps, gs, vs, lr, m, wd, state)
    for p, v, wp, wv in zip(ps, vs, want_p, want_v):
        np.testing.assert_array_equal(v, wv)
        np.testing.assert_array_equal(p, wp)
    assert len(state["scratch"]) == 3  # a temporary per tensor, kept for the next step
