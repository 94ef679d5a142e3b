"""kernels/*.cu run on the CPU (compiled as C++, see tests/_emu.py) against the NumPy path.

The ops under test are the real ones of :mod:`xcnn.cuda_ops` (allocation, dtype choice,
contiguity, argument tuples); only the launcher differs from the GPU. Sizes cover batch 1,
non-square images, kernels 1..7, strides 1..3, padding 0..3, float32/float64, and launch
shapes far too small for the data (the grid-stride loops must cover the rest).
"""
from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcnn import cuda_ops as O
from xcnn import cuda_ops as O_  # where a shape variable is called O
from xcnn import functional as F
from xcnn import kernels as K

import _emu

pytestmark = pytest.mark.skipif(not _emu.have_compiler(), reason=f"no C++ compiler ({_emu.CXX}) for the kernel emulation")


@pytest.fixture(autouse=True)
def _numpy_reference():
    """The CUDA kernels are written to match the pure-NumPy path bit for bit (same summation order);
    the compiled CPU kernels are compared with both in tests/test_cpu_kernels.py."""
    from xcnn import cpu_kernels  # noqa: PLC0415

    with cpu_kernels.use("numpy"):
        yield

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Launch shapes: what the GPU path would use, one tiny block, and an odd small grid.
LAUNCHES = [(None, None), (1, 32), (3, 7), (1, 1)]
DTYPES = [np.float32, np.float64]


@st.composite
def geometries(draw, pool: bool):
    """A valid (N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW) for a conv (im2col) or a pooling window."""
    KH, KW = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH = draw(st.integers(0, min(3, KH // 2) if pool else 3))
    PW = draw(st.integers(0, min(3, KW // 2) if pool else 3))
    H = draw(st.integers(max(1, KH - 2 * PH), KH + 7))
    W = draw(st.integers(max(1, KW - 2 * PW), KW + 7))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    geo = (F.pool_geometry if pool else F.conv_geometry)(H, W, (KH, KW), (SH, SW), (PH, PW))
    return (N, C, H, W) + tuple(geo)


def _launcher(draw):
    grid, block = draw(st.sampled_from(LAUNCHES))
    return _emu.Launcher(grid, block)


def _x(rng, shape, dtype, distinct=True):
    if distinct:  # no ties: a random permutation of distinct values
        n = int(np.prod(shape))
        return (rng.permutation(n).reshape(shape) * 0.37 - n * 0.1).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _spec(g):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = g
    return (KH, KW), (SH, SW), (PH, PW)


# ----------------------------------------------------------------------------- im2col / col2im

@SETTINGS
@given(g=geometries(pool=False), dtype=st.sampled_from(DTYPES), data=st.data())
def test_im2col_matches_numpy(g, dtype, data):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = g
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    if data.draw(st.booleans()):  # a non-contiguous view: cuda_ops must make it contiguous
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    col = O._im2col(np, _launcher(data.draw), x, KH, KW, SH, SW, PH, PW, OH, OW)
    ref = F.im2col(x, *_spec(g))
    assert col.dtype == dtype and col.shape == ref.shape
    np.testing.assert_array_equal(col, ref)  # a pure copy: bit-exact


@SETTINGS
@given(g=geometries(pool=False), dtype=st.sampled_from(DTYPES), data=st.data())
def test_col2im_matches_numpy_and_naive_loop(g, dtype, data):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = g
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    col = rng.standard_normal((C * KH * KW, N * OH * OW)).astype(dtype)
    dx = O._col2im(np, _launcher(data.draw), col, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    assert dx.dtype == dtype and dx.shape == (N, C, H, W)
    # Same summation order as the NumPy path, so bit-exact; the naive loop sums in float64.
    np.testing.assert_array_equal(dx, F.col2im(col, (N, C, H, W), *_spec(g)))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx, _emu.naive_col2im(col.astype(np.float64), *g), rtol=tol, atol=tol)


@SETTINGS
@given(g=geometries(pool=False), data=st.data())
def test_col2im_is_the_adjoint_of_im2col(g, data):
    """<im2col(x), c> == <x, col2im(c)> in float64: catches any misplaced index on either side."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = g
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((N, C, H, W))
    c = rng.standard_normal((C * KH * KW, N * OH * OW))
    L = _launcher(data.draw)
    lhs = np.vdot(O._im2col(np, L, x, KH, KW, SH, SW, PH, PW, OH, OW), c)
    rhs = np.vdot(x, O._col2im(np, L, c, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


# ----------------------------------------------------------------------------- pooling

@SETTINGS
@given(g=geometries(pool=True), dtype=st.sampled_from(DTYPES), data=st.data())
def test_avg_pool_forward_and_backward_match_numpy(g, dtype, data):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = g
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    L = _launcher(data.draw)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    y = O._avg_pool_forward(np, L, x, KH, KW, SH, SW, PH, PW, OH, OW)
    ref = F.avg_pool2d_forward(x, *_spec(g))
    assert y.dtype == dtype and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)
    dy = rng.standard_normal((N, C, OH, OW)).astype(dtype)
    dx = O._avg_pool_backward(np, L, dy, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    dref = F.avg_pool2d_backward(dy, (N, C, H, W), *_spec(g))
    assert dx.dtype == dtype and dx.shape == (N, C, H, W)
    np.testing.assert_array_equal(dx, dref)


@SETTINGS
@given(g=geometries(pool=True), dtype=st.sampled_from(DTYPES), ties=st.booleans(), data=st.data())
def test_max_pool_forward_and_backward_match_numpy(g, dtype, ties, data):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = g
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    L = _launcher(data.draw)
    # ties=True: few distinct values, so windows hold several equal maxima (first one must win).
    x = rng.integers(-2, 2, (N, C, H, W)).astype(dtype) if ties else _x(rng, (N, C, H, W), dtype)
    y, arg = O._max_pool_forward(np, L, x, KH, KW, SH, SW, PH, PW, OH, OW)
    ref, rarg = F.max_pool2d_forward(x, *_spec(g))
    assert y.dtype == dtype and arg.dtype == np.int32 and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(arg, rarg)
    ny, narg = _emu.naive_max_pool(x, KH, KW, SH, SW, PH, PW, OH, OW)
    np.testing.assert_array_equal(y, ny)
    np.testing.assert_array_equal(arg, narg)
    dy = rng.standard_normal((N, C, OH, OW)).astype(dtype)
    dx = O._max_pool_backward(np, L, dy, arg, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    np.testing.assert_array_equal(dx, F.max_pool2d_backward(dy, rarg, (N, C, H, W), *_spec(g)))


def test_max_pool_padding_never_wins_even_below_zero():
    """All inputs negative and padded: zeros (or -inf) from padding must never be chosen."""
    x = -1e30 * np.ones((1, 1, 3, 3)) - np.arange(9).reshape(1, 1, 3, 3)
    y, arg = O._max_pool_forward(np, _emu.Launcher(), x, 3, 3, 1, 1, 1, 1, 3, 3)
    assert (y <= -1e30).all()
    # window at (0, 0) covers x[0:2, 0:2]; its max -1e30 is x[0, 0] at window offset (1, 1) = 4
    assert arg[0, 0, 0, 0] == 4


def test_single_thread_launch_covers_a_larger_image():
    """One block of one thread must still produce every output (grid-stride loop)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 11))
    L = _emu.Launcher(1, 1)
    g = F.conv_geometry(9, 11, 3, 2, 1)
    np.testing.assert_array_equal(O._im2col(np, L, x, *g), F.im2col(x, 3, 2, 1))
    assert all(c[2] > 100 for c in L.calls)


# ----------------------------------------------------------------------------- conv output, ReLU backward

@SETTINGS
@given(N=st.integers(1, 4), O=st.integers(1, 5), OH=st.integers(1, 6), OW=st.integers(1, 6),
       dtype=st.sampled_from(DTYPES), data=st.data())
def test_conv_output_equals_bias_add_then_transpose(N, O, OH, OW, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    y2 = rng.standard_normal((O, N * OH * OW)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    y = O_._conv_output(np, _launcher(data.draw), y2, b, N, OH, OW)
    ref = (y2 + b[:, None]).reshape(O, N, OH, OW).transpose(1, 0, 2, 3)
    assert y.shape == (N, O, OH, OW) and y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(y, ref)  # the same single rounding as the add it replaces


@SETTINGS
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), dtype=st.sampled_from(DTYPES), data=st.data())
def test_relu_backward_kernel_matches_numpy(shape, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    y = np.maximum(rng.standard_normal(shape), 0).astype(dtype)
    y.flat[0] = 0.0  # exactly zero: gradient 0
    dy = rng.standard_normal(shape).astype(dtype)
    dy.flat[-1] = np.nan  # propagates where y > 0, like the product on the NumPy path
    dx = O_._relu_backward(np, _launcher(data.draw), dy, y)
    np.testing.assert_array_equal(dx, F.relu_backward(dy, y))


def test_conv_output_and_relu_backward_refuse_mismatches():
    L = _emu.Launcher()
    with pytest.raises(ValueError, match="conv_output: expected"):
        O_._conv_output(np, L, np.zeros((2, 12), np.float32), np.zeros(3, np.float32), 2, 2, 3)
    with pytest.raises(ValueError, match="relu_backward: dy"):
        O_._relu_backward(np, L, np.zeros(3, np.float32), np.zeros(4, np.float32))
    assert not L.calls


# ----------------------------------------------------------------------------- SGD update

def _numpy_sgd(p, g, v, lr, momentum, weight_decay):
    """The reference: :class:`xcnn.optim.SGD`'s NumPy update on copies (NumPy path forced)."""
    from xcnn.layers import Parameter  # noqa: PLC0415
    from xcnn.optim import SGD  # noqa: PLC0415

    par = Parameter(p.copy(), "w")
    par.grad[...] = g
    opt = SGD([par], lr=lr, momentum=momentum, weight_decay=weight_decay)
    opt.state["velocity"] = {"w": v.copy()}
    opt.step()
    return par.data, opt.state["velocity"]["w"]


@SETTINGS
@given(n=st.integers(1, 700), dtype=st.sampled_from(DTYPES), data=st.data(),
       lr=st.floats(1e-4, 1.0), momentum=st.sampled_from([0.0, 1e-3, 0.9]),
       weight_decay=st.sampled_from([0.0, 1e-3, 5e-4]))
def test_sgd_update_matches_numpy_bit_for_bit(n, dtype, data, lr, momentum, weight_decay):
    """The fused kernel does the NumPy update's operations in its order and rounding: identical bits.
    (The host compiler never contracts here; test_gpu_kernels_match_numpy checks nvcc's code.)"""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    p, g, v = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    ref_p, ref_v = _numpy_sgd(p, g, v, lr, momentum, weight_decay)
    hyper = np.array([lr, momentum, weight_decay], dtype=dtype)
    O._sgd_update(np, _launcher(data.draw), p, g, v, hyper)
    np.testing.assert_array_equal(p, ref_p)
    np.testing.assert_array_equal(v, ref_v)


@SETTINGS
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=7), dtype=st.sampled_from(DTYPES), data=st.data(),
       weight_decay=st.sampled_from([0.0, 1e-3]))
def test_sgd_update_multi_equals_one_update_per_tensor(sizes, dtype, data, weight_decay):
    """All tensors in one launch through the address table: each element updated exactly as by the
    per-tensor kernel (and the NumPy update), none skipped or updated twice, whatever the launch shape."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ps, gs, vs = ([rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(3))
    refs = [_numpy_sgd(p, g, v, 0.05, 0.9, weight_decay) for p, g, v in zip(ps, gs, vs)]
    key = O.sgd_table_key(ps, gs, vs)
    table, offsets, total = O._sgd_table(np, key)
    assert total == sum(sizes) and offsets.tolist()[-1] == total
    O._sgd_update_multi(np, _launcher(data.draw), table, offsets, total, np.array([0.05, 0.9, weight_decay], dtype))
    for p, v, (rp, rv) in zip(ps, vs, refs):
        np.testing.assert_array_equal(p, rp)
        np.testing.assert_array_equal(v, rv)


def test_sgd_table_key_follows_the_arrays():
    a, b = np.zeros(3, np.float32), np.zeros(3, np.float32)
    k = O.sgd_table_key([a], [b], [a])
    assert k == O.sgd_table_key([a], [b], [a]) and k != O.sgd_table_key([a.copy()], [b], [a])
    with pytest.raises(ValueError, match="table of 3 addresses"):
        O._sgd_update_multi(np, _emu.Launcher(), np.zeros(2, np.int64), np.array([0, 3]), 3, np.zeros(3, np.float32))


def test_sgd_update_reads_hyper_parameters_from_the_buffer():
    """What a replayed CUDA graph relies on: the same launch arguments, a new value in the buffer,
    a different update."""
    p = np.ones(5, np.float32)
    g = np.full(5, 2.0, np.float32)
    v = np.zeros(5, np.float32)
    hyper = np.array([0.5, 0.0, 0.0], np.float32)
    L = _emu.Launcher()
    O._sgd_update(np, L, p, g, v, hyper)
    np.testing.assert_array_equal(p, 0.0)  # 1 - 0.5 * 2
    hyper[0] = 0.25
    g[:] = 4.0
    O._sgd_update(np, L, p, g, v, hyper)
    np.testing.assert_array_equal(p, -1.0)  # 0 - 0.25 * 4


def test_sgd_update_refuses_mismatched_shapes():
    L = _emu.Launcher()
    with pytest.raises(ValueError, match="share a shape"):
        O._sgd_update(np, L, np.zeros(4, np.float32), np.zeros(5, np.float32), np.zeros(4, np.float32),
                      np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="hyper must be"):
        O._sgd_update(np, L, *(np.zeros(4, np.float32) for _ in range(3)), np.zeros(2, np.float32))
    assert not L.calls


# ----------------------------------------------------------------------------- softmax cross-entropy

@SETTINGS
@given(N=st.integers(1, 40), K=st.integers(1, 12), dtype=st.sampled_from(DTYPES),
       scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]), data=st.data())
def test_softmax_xent_matches_numpy(N, K, dtype, scale, data):
    """Loss and gradient against the array-level NumPy version; logits up to 1e4 check that the
    log-sum-exp is stable (a naive softmax would overflow)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    z = (rng.standard_normal((N, K)) * scale).astype(dtype)
    y = rng.integers(0, K, N)
    rows, grad = O._softmax_xent(np, _launcher(data.draw), z, y)
    loss, ref_grad = F.softmax_cross_entropy(z, y)
    assert rows.dtype == grad.dtype == dtype and rows.shape == (N,) and grad.shape == (N, K)
    assert np.isfinite(rows).all() and np.isfinite(grad).all()
    rtol, atol = (2e-6, 1e-6) if dtype == np.float32 else (1e-13, 1e-14)
    np.testing.assert_allclose(rows.mean(dtype=np.float64), float(loss), rtol=rtol, atol=atol * max(1.0, scale))
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol)
    # and against float64 by hand: per-row loss = logsumexp - z[label]
    z64 = z.astype(np.float64)
    m = z64.max(axis=1)
    lse = m + np.log(np.exp(z64 - m[:, None]).sum(axis=1))
    np.testing.assert_allclose(rows, lse - z64[np.arange(N), y], rtol=rtol * 5, atol=atol * max(1.0, scale) * 5)


def test_softmax_xent_bad_labels_give_nan_rows_not_stray_reads():
    z = np.zeros((4, 3), np.float32)
    rows, grad = O._softmax_xent(np, _emu.Launcher(), z, np.array([0, 3, -1, 2]))
    assert np.isfinite(rows[[0, 3]]).all() and np.isnan(rows[[1, 2]]).all()
    assert np.isnan(grad[[1, 2]]).all() and np.isfinite(grad[[0, 3]]).all()
    np.testing.assert_allclose(rows[0], np.log(3), rtol=1e-6)
    with pytest.raises(TypeError, match="integers"):
        O._softmax_xent(np, _emu.Launcher(), z, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"logits \(N, K\) and labels \(N,\)"):
        O._softmax_xent(np, _emu.Launcher(), z, np.zeros(5, np.int64))


# ----------------------------------------------------------------------------- argument checks

def _recorded_args():
    """Every kernel launched once through cuda_ops, with the argument tuples it really passes."""
    rng = np.random.default_rng(1)
    L = _emu.Launcher()
    for dtype in DTYPES:
        x = rng.standard_normal((2, 2, 5, 4)).astype(dtype)
        g = F.conv_geometry(5, 4, 2, 1, 1)
        col = O._im2col(np, L, x, *g)
        O._col2im(np, L, col, 2, 2, 5, 4, *g)
        p = F.pool_geometry(5, 4, 2, 2, 1)
        y = O._avg_pool_forward(np, L, x, *p)
        O._avg_pool_backward(np, L, y, 2, 2, 5, 4, *p)
        y, a = O._max_pool_forward(np, L, x, *p)
        O._max_pool_backward(np, L, y, a, 2, 2, 5, 4, *p)
        w = rng.standard_normal((3, 4)).astype(dtype)
        O._sgd_update(np, L, w, w.copy(), np.zeros_like(w), np.array([0.1, 0.9, 1e-3], dtype))
        O._softmax_xent(np, L, w, np.array([0, 3, 1]))
        tab, off, total = O._sgd_table(np, O.sgd_table_key([w], [w.copy()], [np.zeros_like(w)]))
        O._sgd_update_multi(np, L, tab, off, total, np.array([0.1, 0.9, 1e-3], dtype))
        O._conv_output(np, L, w, w[:, 0].copy(), 2, 1, 2)
        O._relu_backward(np, L, w, w)
    return L.calls


def test_cuda_ops_launch_every_kernel_with_matching_arguments():
    calls = _recorded_args()
    launched = {(f, n) for f, n, _, _ in calls}
    every = {(f, n) for f in K.kernel_files() for n in K.kernel_signatures(f)}
    assert launched == every, f"kernels never launched by cuda_ops: {sorted(every - launched)}"
    for f, n, total, args in calls:
        K.check_args(f, n, args)  # also checked inside every emulated launch
        assert type(args[K.kernel_signatures(f)[n].index(("long long", "total"))]) is np.int64


@pytest.mark.parametrize("bad", [7, np.int64(7), np.int16(7), 7.0])
def test_launch_refuses_wrong_scalar_type_for_int(bad):
    f, n, total, args = next(c for c in _recorded_args() if c[1] == "im2col_f32")
    i = [t for t, _ in K.kernel_signatures(f)[n]].index("int")
    bad_args = args[:i] + (bad,) + args[i + 1:]
    with pytest.raises(K.KernelArgError, match="must be int32"):
        _emu.build(f).launch(n, 1, 32, bad_args)


def test_launch_refuses_wrong_type_for_long_long_and_pointers():
    f, n, total, args = next(c for c in _recorded_args() if c[1] == "max_pool_bwd_f64")
    mod = _emu.build(f)
    with pytest.raises(K.KernelArgError, match="must be int64"):
        mod.launch(n, 1, 32, args[:3] + (np.int32(total),) + args[4:])
    with pytest.raises(K.KernelArgError, match="dtype int32"):  # argmax as int64
        mod.launch(n, 1, 32, args[:1] + (args[1].astype(np.int64),) + args[2:])
    with pytest.raises(K.KernelArgError, match="dtype float64"):  # dy as float32
        mod.launch(n, 1, 32, (args[0].astype(np.float32),) + args[1:])
    with pytest.raises(K.KernelArgError, match="C-contiguous"):
        mod.launch(n, 1, 32, (np.asfortranarray(args[0]),) + args[1:])
    with pytest.raises(K.KernelArgError, match="arguments"):
        mod.launch(n, 1, 32, args[:-1])


def test_cuda_ops_refuse_unsupported_dtypes():
    L = _emu.Launcher()
    with pytest.raises(TypeError, match="float32 and float64"):
        O._im2col(np, L, np.zeros((1, 1, 3, 3), np.float16), 2, 2, 1, 1, 0, 0, 2, 2)
    with pytest.raises(TypeError, match="float32 and float64"):
        O._avg_pool_forward(np, L, np.zeros((1, 1, 4, 4), np.int64), 2, 2, 2, 2, 0, 0, 2, 2)
    with pytest.raises(ValueError, match="32-bit"):
        O._im2col(np, L, np.zeros((1, 1, 3, 3), np.float32), 2, 2, 1, 1, 0, 0, 2, 2**31)
    assert not L.calls


def test_empty_batch_launches_nothing():
    L = _emu.Launcher()
    col = O._im2col(np, L, np.zeros((0, 2, 4, 4)), 2, 2, 1, 1, 0, 0, 3, 3)
    assert col.shape == (8, 0) and not L.calls


def test_launch_config():
    assert O.launch_config(1) == (1, 256)
    assert O.launch_config(257) == (2, 256)
    assert O.launch_config(10**12) == (O.MAX_GRID, 256)


# ----------------------------------------------------------------------------- the public GPU path

class _FakeCupy(types.SimpleNamespace):
    """Enough of CuPy for the public cuda_ops entry points: NumPy arrays, and RawModules whose
    kernels run on the emulation. Exercises _gpu_launch -> check_args -> get_kernel -> launch."""


def _fake_cupy():
    compiled = []

    class RawModule:
        def __init__(self, code, options, name_expressions=None):
            compiled.append(options)
            self.code = code

        def get_function(self, name):
            mod = next(_emu.build(f) for f in K.kernel_files() if name in K.kernel_signatures(f))
            return lambda grid, block, args: mod.launch(name, grid[0], block[0], args)

    dev = types.SimpleNamespace(id=0)
    cuda = types.SimpleNamespace(Device=lambda *a: dev)
    cp = _FakeCupy(RawModule=RawModule, cuda=cuda, ascontiguousarray=np.ascontiguousarray, empty=np.empty)
    return cp, compiled


def test_public_entry_points_through_fake_cupy(monkeypatch):
    cp, compiled = _fake_cupy()
    monkeypatch.setattr(O, "cupy_or_none", lambda: cp)
    monkeypatch.setattr(K, "cupy_or_none", lambda: cp)
    K.clear_cache()
    try:
        rng = np.random.default_rng(3)
        x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
        g = F.conv_geometry(6, 5, 3, 1, 1)
        col = O.im2col(x, *g)
        np.testing.assert_array_equal(col, F.im2col(x, 3, 1, 1))
        np.testing.assert_array_equal(O.col2im(col, 2, 3, 6, 5, *g), F.col2im(col, x.shape, 3, 1, 1))
        p = F.pool_geometry(6, 5, 2, 2, 0)
        y, a = O.max_pool_forward(x, *p)
        np.testing.assert_array_equal(y, F.max_pool2d_forward(x, 2)[0])
        np.testing.assert_array_equal(O.max_pool_backward(y, a, 2, 3, 6, 5, *p),
                                      F.max_pool2d_backward(y, a, x.shape, 2))
        np.testing.assert_array_equal(O.avg_pool_forward(x, *p), F.avg_pool2d_forward(x, 2))
        np.testing.assert_array_equal(O.avg_pool_backward(y, 2, 3, 6, 5, *p), F.avg_pool2d_backward(y, x.shape, 2))
        w, dw = rng.standard_normal((2, 7)).astype(np.float32), rng.standard_normal((2, 7)).astype(np.float32)
        v = np.zeros_like(w)
        ref_w, ref_v = _numpy_sgd(w, dw, v, 0.1, 0.9, 1e-3)
        O.sgd_update(w, dw, v, np.array([0.1, 0.9, 1e-3], np.float32))
        np.testing.assert_array_equal(w, ref_w)
        np.testing.assert_array_equal(v, ref_v)
        z, t = rng.standard_normal((5, 4)).astype(np.float32), np.array([0, 3, 1, 1, 2])
        rows, grad = O.softmax_xent(z, t)
        loss, ref_grad = F.softmax_cross_entropy(z, t)
        np.testing.assert_allclose(rows.mean(), loss, rtol=1e-6)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-7)
        y2, b = rng.standard_normal((3, 8)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
        np.testing.assert_array_equal(O.conv_output(y2, b, 2, 2, 2),
                                      (y2 + b[:, None]).reshape(3, 2, 2, 2).transpose(1, 0, 2, 3))
        np.testing.assert_array_equal(O.relu_backward(y2, b[:, None] * y2), F.relu_backward(y2, b[:, None] * y2))
        assert len(compiled) == 5  # one module per file, no matter how many launches
    finally:
        K.clear_cache()


# ----------------------------------------------------------------------------- sanitizers

def _sanitizer_env():
    libasan = subprocess.run([_emu.CXX, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip(f"{_emu.CXX} has no AddressSanitizer runtime (libasan.so not found)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0", XCNN_CPU_KERNELS="numpy",
               PYTHONPATH=os.pathsep.join([root, os.path.join(root, "tests"), os.environ.get("PYTHONPATH", "")]))
    return env, os.path.join(root, "tests", "_emu_asan_cases.py")


def _run_sanitized(mode):
    env, script = _sanitizer_env()
    return subprocess.run([sys.executable, script, mode], env=env, capture_output=True, text=True, timeout=300)


def test_kernels_under_address_and_undefined_behaviour_sanitizers():
    """Fixed shapes (incl. 1x1 images, padding 3, tiny grids) with -fsanitize=address,undefined."""
    proc = _run_sanitized("cases")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sanitized emulation OK" in proc.stdout
    assert int(proc.stdout.split(":")[1].split()[0]) > 500


@pytest.mark.parametrize("mode, report", [("oob", "heap-buffer-overflow"), ("overflow", "signed integer overflow")])
def test_sanitizer_harness_catches_broken_kernels(mode, report):
    """The harness must be able to fail: an off-by-one write and an int overflow both abort."""
    proc = _run_sanitized(mode)
    assert proc.returncode != 0, "a broken kernel ran clean under the sanitizers"
    assert report in proc.stderr, proc.stderr[-2000:]


# ----------------------------------------------------------------------------- the real device

GPU_CASES = [  # (N, C, H, W), kernel, stride, padding
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0)),
    ((2, 3, 7, 5), (3, 2), (2, 1), (1, 1)),
    ((3, 2, 9, 11), (7, 4), (3, 2), (3, 2)),
    ((50, 4, 28, 28), (2, 2), (2, 2), (0, 0)),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GPU_CASES)
def test_gpu_kernels_match_numpy(case, dtype):
    """The same ops through CuPy RawKernels on a real GPU (skipped where none is usable)."""
    from xcnn.backend import get_device, gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no usable GPU: {reason}")
    dev = get_device("cuda")
    shape, k, s, p = case
    N, C, H, W = shape
    rng = np.random.default_rng(0)
    x = _x(rng, shape, dtype)
    xd = dev.asarray(x)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    g = F.conv_geometry(H, W, k, s, p)
    col = O.im2col(xd, *g)
    np.testing.assert_array_equal(col.get(), F.im2col(x, k, s, p))
    np.testing.assert_allclose(O.col2im(col, N, C, H, W, *g).get(), F.col2im(col.get(), shape, k, s, p), **tol)
    if 2 * p[0] <= k[0] and 2 * p[1] <= k[1]:
        pg = F.pool_geometry(H, W, k, s, p)
        y = O.avg_pool_forward(xd, *pg)
        np.testing.assert_allclose(y.get(), F.avg_pool2d_forward(x, k, s, p), **tol)
        np.testing.assert_allclose(O.avg_pool_backward(y, N, C, H, W, *pg).get(),
                                   F.avg_pool2d_backward(y.get(), shape, k, s, p), **tol)
        y, a = O.max_pool_forward(xd, *pg)
        ry, ra = F.max_pool2d_forward(x, k, s, p)
        np.testing.assert_array_equal(y.get(), ry)
        np.testing.assert_array_equal(a.get(), ra)
        np.testing.assert_allclose(O.max_pool_backward(y, a, N, C, H, W, *pg).get(),
                                   F.max_pool2d_backward(ry, ra, shape, k, s, p), **tol)
    w, dw, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    ref_w, ref_v = _numpy_sgd(w, dw, v, 0.1, 0.9, 1e-3)
    wd, vd = dev.asarray(w), dev.asarray(v)
    O.sgd_update(wd, dev.asarray(dw), vd, dev.asarray(np.array([0.1, 0.9, 1e-3], dtype)))
    np.testing.assert_array_equal(wd.get(), ref_w)  # no FMA contraction on the real compiler either
    np.testing.assert_array_equal(vd.get(), ref_v)
    tensors = [[dev.asarray(rng.standard_normal(n).astype(dtype)) for _ in range(3)] for n in (7, 300, 1)]
    refs = [_numpy_sgd(p.get(), g.get(), v.get(), 0.1, 0.9, 1e-3) for p, g, v in tensors]
    key = O.sgd_table_key(*zip(*tensors))
    O.sgd_update_multi(*O.sgd_table(key, tensors[0][0]), dev.asarray(np.array([0.1, 0.9, 1e-3], dtype)))
    for (p, _, v), (rp, rv) in zip(tensors, refs):
        np.testing.assert_array_equal(p.get(), rp)
        np.testing.assert_array_equal(v.get(), rv)
    y2 = rng.standard_normal((C, N * H * W)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    np.testing.assert_array_equal(O.conv_output(dev.asarray(y2), dev.asarray(b), N, H, W).get(),
                                  (y2 + b[:, None]).reshape(C, N, H, W).transpose(1, 0, 2, 3))
    r = np.maximum(x, 0)
    np.testing.assert_array_equal(O.relu_backward(dev.asarray(x), dev.asarray(r)).get(), F.relu_backward(x, r))
    z = (rng.standard_normal((N * C, W)) * 30).astype(dtype)
    t = rng.integers(0, W, N * C)
    rows, grad = O.softmax_xent(dev.asarray(z), dev.asarray(t))
    loss, ref_grad = F.softmax_cross_entropy(z, t)
    np.testing.assert_allclose(float(rows.mean()), float(loss), **tol)
    np.testing.assert_allclose(grad.get(), ref_grad, **tol)
