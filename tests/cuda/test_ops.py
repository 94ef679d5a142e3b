"""The GPU implementations (xcnn/cuda/ops.py) on the CuPy double, whose kernels are kernels/*.cu
compiled for the host, against the NumPy implementations: the kernels are written to match them
bit for bit (same summation order). Sizes cover batch 1, non-square images, kernels 1..7, strides
1..3, padding 0..3, float32/float64, and launch shapes far too small for the data (the grid-stride
loops must cover the rest)."""
from __future__ import annotations

import numpy as np

from doubles import fakecupy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from references import naive_col2im, naive_pool

from xcnn.cpu import numpy_conv, numpy_ops
from xcnn.cuda import ops as O
from xcnn.ops import conv_geometry, pool_geometry

SETTINGS = settings(max_examples=100)
#: launch shapes: what the GPU path would use, one tiny block, an odd small grid, a single thread
LAUNCHES = [None, (1, 32), (3, 7), (1, 1)]
DTYPES = [np.float32, np.float64]


@st.composite
def geometries(draw, pool: bool):
    """``(x_shape, g)``: a valid input shape and geometry for a convolution (im2col) or a pooling window."""
    KH, KW = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH = draw(st.integers(0, min(3, KH // 2) if pool else 3))
    PW = draw(st.integers(0, min(3, KW // 2) if pool else 3))
    H = draw(st.integers(max(1, KH - 2 * PH), KH + 7))
    W = draw(st.integers(max(1, KW - 2 * PW), KW + 7))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    g = (pool_geometry if pool else conv_geometry)(H, W, (KH, KW), (SH, SW), (PH, PW))
    return (N, C, H, W), g


@pytest.fixture(params=["i32", "i64"])
def gpu(request, cuda_emu, monkeypatch):
    """``(asarray, host, set_launch)`` on the double; ``set_launch(shape)`` forces a launch shape. Run
    with the kernels' 32-bit index arithmetic (what small arrays get) and with the 64-bit twins."""
    if request.param == "i64":
        monkeypatch.setattr(O, "INDEX32_LIMIT", -1)

    def set_launch(shape):
        fakecupy.world().launch = shape

    yield cuda_emu.asarray, cuda_emu.host, set_launch


def _rng(data):
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))


@SETTINGS
@given(case=geometries(pool=False), dtype=st.sampled_from(DTYPES), launch=st.sampled_from(LAUNCHES), data=st.data())
def test_im2col_and_col2im_match_numpy(gpu, case, dtype, launch, data):
    asarray, host, set_launch = gpu
    shape, g = case
    N, C, H, W = shape
    KH, KW, SH, SW, PH, PW, OH, OW = g
    rng = _rng(data)
    set_launch(launch)
    x = rng.standard_normal(shape).astype(dtype)
    xd = asarray(x)
    if data.draw(st.booleans()):  # a non-contiguous view: the op must make it contiguous
        xd = asarray(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    col = O.im2col(xd, g)
    assert col.dtype == dtype
    np.testing.assert_array_equal(host(col), numpy_conv.im2col(x, g))  # a pure copy: bit-exact
    c = rng.standard_normal((C * KH * KW, N * OH * OW)).astype(dtype)
    dx = host(O.col2im(asarray(c), shape, g))
    assert dx.dtype == dtype and dx.shape == shape
    # the same summation order as the NumPy path, so bit-exact; the naive loop sums in float64
    np.testing.assert_array_equal(dx, numpy_conv.col2im(c, shape, g))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx, naive_col2im(c.astype(np.float64), N, C, H, W, *g), rtol=tol, atol=tol)


@SETTINGS
@given(case=geometries(pool=True), dtype=st.sampled_from(DTYPES), launch=st.sampled_from(LAUNCHES), data=st.data())
def test_avg_pool_matches_numpy(gpu, case, dtype, launch, data):
    asarray, host, set_launch = gpu
    shape, g = case
    rng = _rng(data)
    set_launch(launch)
    x = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(host(O.avg_pool2d_forward(asarray(x), g)), numpy_ops.avg_pool2d_forward(x, g))
    dy = rng.standard_normal(shape[:2] + g[6:]).astype(dtype)
    np.testing.assert_array_equal(host(O.avg_pool2d_backward(asarray(dy), shape, g)),
                                  numpy_ops.avg_pool2d_backward(dy, shape, g))


@SETTINGS
@given(case=geometries(pool=True), dtype=st.sampled_from(DTYPES), values=st.sampled_from(["distinct", "ties", "nan"]),
       launch=st.sampled_from(LAUNCHES), data=st.data())
def test_max_pool_matches_numpy_and_the_naive_loop(gpu, case, dtype, values, launch, data):
    """Ties (few distinct values: the first maximum must win) and NaNs (the first NaN wins)."""
    asarray, host, set_launch = gpu
    shape, g = case
    KH, KW, SH, SW, PH, PW, OH, OW = g
    rng = _rng(data)
    set_launch(launch)
    if values == "ties":
        x = rng.integers(-2, 2, shape).astype(dtype)
    else:
        x = rng.permutation(int(np.prod(shape))).reshape(shape).astype(dtype) * dtype(0.37)
        if values == "nan":
            x.flat[rng.integers(0, x.size, max(1, x.size // 5))] = np.nan
    y, arg = O.max_pool2d_forward(asarray(x), g)
    ref, rarg = numpy_ops.max_pool2d_forward(x, g)
    assert host(arg).dtype == np.int32
    np.testing.assert_array_equal(host(y), ref)
    np.testing.assert_array_equal(host(arg), rarg)
    if KH == KW and SH == SW and PH == PW:
        ny, narg = naive_pool(x.astype(np.float64), KH, SH, PH, "max")
        np.testing.assert_array_equal(host(arg), narg)
    dy = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(host(O.max_pool2d_backward(asarray(dy), arg, shape, g)),
                                  numpy_ops.max_pool2d_backward(dy, rarg, shape, g))


def test_max_pool_padding_never_wins_even_below_zero(gpu):
    """All inputs very negative and padded: padding (-inf) must never be chosen."""
    asarray, host, _ = gpu
    x = -1e30 * np.ones((1, 1, 3, 3)) - np.arange(9).reshape(1, 1, 3, 3)
    y, arg = O.max_pool2d_forward(asarray(x), pool_geometry(3, 3, 3, 1, 1))
    assert (host(y) <= -1e30).all()
    # window at (0, 0) covers x[0:2, 0:2]; its max -1e30 is x[0, 0] at window offset (1, 1) = 4
    assert host(arg)[0, 0, 0, 0] == 4


@settings(max_examples=40)
@given(N=st.integers(1, 4), O_=st.integers(1, 5), OH=st.integers(1, 6), OW=st.integers(1, 6),
       dtype=st.sampled_from(DTYPES), launch=st.sampled_from(LAUNCHES), data=st.data())
def test_conv_output_equals_bias_add_then_transpose(gpu, N, O_, OH, OW, dtype, launch, data):
    asarray, host, set_launch = gpu
    rng = _rng(data)
    set_launch(launch)
    y2 = rng.standard_normal((O_, N * OH * OW)).astype(dtype)
    b = rng.standard_normal(O_).astype(dtype)
    y = host(O._conv_output(asarray(y2), asarray(b), N, OH, OW))
    ref = (y2 + b[:, None]).reshape(O_, N, OH, OW).transpose(1, 0, 2, 3)
    assert y.shape == (N, O_, OH, OW) and y.dtype == dtype
    np.testing.assert_array_equal(y, ref)  # the same single rounding as the add it replaces


@settings(max_examples=40)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), dtype=st.sampled_from(DTYPES),
       launch=st.sampled_from(LAUNCHES), data=st.data())
def test_relu_backward_kernel_matches_numpy(gpu, shape, dtype, launch, data):
    asarray, host, set_launch = gpu
    rng = _rng(data)
    set_launch(launch)
    y = np.maximum(rng.standard_normal(shape), 0).astype(dtype)
    y.flat[0] = 0.0  # exactly zero: gradient 0
    dy = rng.standard_normal(shape).astype(dtype)
    dy.flat[-1] = np.nan  # propagates where y > 0, like the product on the NumPy path
    np.testing.assert_array_equal(host(O.relu_backward(asarray(dy), asarray(y))), numpy_ops.relu_backward(dy, y))


def _numpy_sgd(p, g, v, lr, momentum, weight_decay):
    p, v = p.copy(), v.copy()
    numpy_ops.sgd_update([p], [g], [v], lr, momentum, weight_decay, {})
    return p, v


@settings(max_examples=60)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=7), dtype=st.sampled_from(DTYPES),
       lr=st.floats(1e-4, 1.0), momentum=st.sampled_from([0.0, 1e-3, 0.9]),
       weight_decay=st.sampled_from([0.0, 1e-3]), launch=st.sampled_from(LAUNCHES), data=st.data())
def test_fused_sgd_equals_the_numpy_update_per_tensor(gpu, sizes, dtype, lr, momentum, weight_decay, launch, data):
    """All tensors in one launch through the address table: each element updated exactly as by the
    NumPy update (same operations, order and rounding), none skipped or updated twice."""
    asarray, host, set_launch = gpu
    rng = _rng(data)
    set_launch(launch)
    ps, gs, vs = ([rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(3))
    refs = [_numpy_sgd(p, g, v, lr, momentum, weight_decay) for p, g, v in zip(ps, gs, vs)]
    dp, dg, dv = ([asarray(a) for a in arrs] for arrs in (ps, gs, vs))
    O.sgd_update(dp, dg, dv, lr, momentum, weight_decay, {})
    for p, v, (rp, rv) in zip(dp, dv, refs):
        np.testing.assert_array_equal(host(p), rp)
        np.testing.assert_array_equal(host(v), rv)


def test_sgd_reads_its_hyper_parameters_from_the_device_buffer(gpu):
    """What a replayed CUDA graph relies on: the same launch arguments, a new value in the buffer,
    a different update; the table is built once and rebuilt when an array is replaced."""
    asarray, host, _ = gpu
    p, g, v = asarray(np.ones(5, np.float32)), asarray(np.full(5, 2.0, np.float32)), asarray(np.zeros(5, np.float32))
    state = {}
    O.sgd_update([p], [g], [v], 0.5, 0.0, 0.0, state)
    np.testing.assert_array_equal(host(p), 0.0)  # 1 - 0.5 * 2
    table, hyper = state["table"], state["hyper"]
    g[...] = 4.0
    O.sgd_update([p], [g], [v], 0.25, 0.0, 0.0, state)
    np.testing.assert_array_equal(host(p), -1.0)  # 0 - 0.25 * 4
    assert state["table"] is table and state["hyper"] is hyper  # refreshed in place, no new upload
    p2 = asarray(np.zeros(5, np.float32))
    O.sgd_update([p2], [g], [v], 0.25, 0.0, 0.0, state)
    assert state["table"] is not table and state["table"][0] == O.sgd_table_key([p2], [g], [v])


@settings(max_examples=60)
@given(N=st.integers(1, 40), K=st.integers(1, 12), dtype=st.sampled_from(DTYPES),
       scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]), launch=st.sampled_from(LAUNCHES), data=st.data())
def test_softmax_xent_matches_float64(gpu, N, K, dtype, scale, launch, data):
    """Per-row loss ``logsumexp - z[label]`` and the gradient against float64 by hand; logits up to
    1e4 check that the log-sum-exp is stable (a naive softmax would overflow)."""
    asarray, host, set_launch = gpu
    rng = _rng(data)
    set_launch(launch)
    z = (rng.standard_normal((N, K)) * scale).astype(dtype)
    y = rng.integers(0, K, N)
    rows, grad = (host(a) for a in O.softmax_xent(asarray(z), asarray(y)))
    assert rows.dtype == grad.dtype == dtype and rows.shape == (N,) and grad.shape == (N, K)
    z64 = z.astype(np.float64)
    m = z64.max(axis=1)
    lse = m + np.log(np.exp(z64 - m[:, None]).sum(axis=1))
    p = np.exp(z64 - lse[:, None])
    p[np.arange(N), y] -= 1
    # exp amplifies the rounding of its argument, whose size grows with the logits: the tolerances
    # follow the conditioning, a few ulps times the logits' scale
    eps = float(np.finfo(dtype).eps)
    tol = 16 * eps * max(1.0, scale)
    np.testing.assert_allclose(rows, lse - z64[np.arange(N), y], rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, p / N, rtol=tol, atol=tol / N)


def test_softmax_xent_bad_labels_give_nan_rows_not_stray_reads(gpu):
    asarray, host, _ = gpu
    rows, grad = (host(a) for a in O.softmax_xent(asarray(np.zeros((4, 3), np.float32)), asarray(np.array([0, 3, -1, 2]))))
    assert np.isfinite(rows[[0, 3]]).all() and np.isnan(rows[[1, 2]]).all()
    assert np.isnan(grad[[1, 2]]).all() and np.isfinite(grad[[0, 3]]).all()
    np.testing.assert_allclose(rows[0], np.log(3), rtol=1e-6)


def test_float32_kernels_flush_subnormals_like_the_gpu(gpu):
    """CuPy compiles every kernel with -ftz=true, so on the GPU a float32 subnormal counts as zero;
    the emulation models it (float64 is never flushed). The NumPy path keeps subnormals: CPU and GPU
    agree bit for bit on normal numbers only."""
    asarray, host, _ = gpu
    g = pool_geometry(2, 2, 2)
    for dtype, tiny, flushed in ((np.float32, np.float32(4e-39), True), (np.float64, 4e-310, False)):
        x = np.full((1, 1, 2, 2), tiny, dtype)
        cpu = numpy_ops.avg_pool2d_forward(x, g)
        assert cpu[0, 0, 0, 0] == x[0, 0, 0, 0]  # the CPU keeps the (subnormal) mean
        gpu_y = host(O.avg_pool2d_forward(asarray(x), g))
        np.testing.assert_array_equal(gpu_y, 0 if flushed else cpu)
