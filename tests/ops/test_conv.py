"""Convolution ops (xcnn/ops/conv.py) against naive float64 loops, on every backend."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPES, assert_close, conv_case
from hypothesis import given, settings
from hypothesis import strategies as st
from references import naive_col2im, naive_conv, naive_conv_backward, naive_im2col, out_size

from xcnn import ops
from xcnn.errors import ShapeError


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25)
@given(case=conv_case(), seed=st.integers(0, 2**31))
def test_im2col_matches_naive_and_col2im_is_its_adjoint(backend, dtype, case, seed):
    N, C, H, W, _, k, s, p = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    ref = naive_im2col(x, k, s, p)
    col = ops.im2col(backend.asarray(x, dtype), k, s, p)
    assert col.dtype == dtype
    assert_close(col, ref, dtype)
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>, and equals a naive scatter-add
    c = rng.standard_normal(ref.shape)
    back = backend.host(ops.col2im(backend.asarray(c, dtype), x.shape, k, s, p))
    assert back.shape == x.shape and back.dtype == dtype
    np.testing.assert_allclose(np.vdot(ref, c), np.vdot(x, back), rtol=1e-4 if dtype == np.float32 else 1e-10)
    OH, OW = out_size(H, k, s, p), out_size(W, k, s, p)
    assert_close(back, naive_col2im(c, N, C, H, W, k, k, s, s, p, p, OH, OW), dtype)


def test_im2col_accepts_non_contiguous_input(backend):
    base = np.arange(2 * 3 * 6 * 5, dtype=np.float64).reshape(3, 2, 6, 5)
    strided = backend.asarray(base).transpose(1, 0, 2, 3)
    assert not strided.flags.c_contiguous
    a = ops.im2col(strided, 3, 1, 1)
    b = ops.im2col(backend.asarray(np.ascontiguousarray(base.transpose(1, 0, 2, 3))), 3, 1, 1)
    assert_close(a, b, np.float64)
    assert_close(a, naive_im2col(base.transpose(1, 0, 2, 3), 3, 1, 1), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=20)
@given(case=conv_case(), seed=st.integers(0, 2**31), bias=st.booleans())
def test_conv2d_forward_backward_match_naive(backend, dtype, case, seed, bias):
    N, C, H, W, O, k, s, p = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C, k, k))
    b = rng.standard_normal(O) if bias else None
    y_ref = naive_conv(x, w, b, s, p)
    y, cache = ops.conv2d_forward(backend.asarray(x, dtype), backend.asarray(w, dtype),
                                  None if b is None else backend.asarray(b, dtype), s, p)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else {}
    assert y.shape == y_ref.shape and y.dtype == dtype
    assert_close(y, y_ref, dtype, **tol)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = naive_conv_backward(x, w, dy, s, p)
    dx, dw, db = ops.conv2d_backward(backend.asarray(dy, dtype), cache, backend.asarray(w, dtype), need_bias=bias)
    assert_close(dx, dx_ref, dtype, **tol)
    assert_close(dw, dw_ref, dtype, **tol)
    if bias:
        assert_close(db, db_ref, dtype, **tol)


def test_backward_writes_into_the_given_gradient_arrays(backend):
    rng = np.random.default_rng(0)
    x, w, b = (backend.asarray(rng.standard_normal(s)) for s in ((2, 3, 6, 6), (4, 3, 3, 3), (4,)))
    y, cache = ops.conv2d_forward(x, w, b, 1, 1)
    dy = backend.asarray(rng.standard_normal(y.shape))
    dw_out, db_out = backend.asarray(np.full((4, 3, 3, 3), np.nan)), backend.asarray(np.full(4, np.nan))
    _, dw, db = ops.conv2d_backward(dy, cache, w, dw_out=dw_out, db_out=db_out)
    assert dw is dw_out and db is db_out
    _, dw2, db2 = ops.conv2d_backward(dy, cache, w)
    assert_close(dw_out, dw2, np.float64)
    assert_close(db_out, db2, np.float64)


def test_a_wrong_gradient_is_refused_on_every_backend(backend):
    """Memory safety: the compiled paths check nothing themselves; the op refuses a dy that does not
    fit the forward -- the same ShapeError on every backend, instead of garbage or a heap overrun."""
    x = backend.asarray(np.ones((2, 1, 8, 8), np.float32))
    w = backend.asarray(np.ones((4, 1, 3, 3), np.float32))
    y, cache = ops.conv2d_forward(x, w, None, 1, 1)
    for bad in ((2, 4, 9, 8), (3, 4, 8, 8), (2, 4, 8)):
        with pytest.raises(ShapeError, match=r"conv2d_backward: expected dy of shape \(2, 4, 8, 8\)"):
            ops.conv2d_backward(backend.asarray(np.ones(bad, np.float32)), cache, w)
    with pytest.raises(ShapeError, match="conv2d_backward: dy is float64 but weight is float32"):
        ops.conv2d_backward(backend.asarray(np.ones((2, 4, 8, 8))), cache, w)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.conv2d_forward(np.zeros((1, 2, 5, 5), np.float32), np.zeros((3, 1, 3, 3), np.float32)),
     r"expected x of shape \(1, 1, 5, 5\)"),
    (lambda: ops.conv2d_forward(np.zeros((1, 1, 5, 5), np.float32), np.zeros((3, 1, 3, 3), np.float32),
                                np.zeros(2, np.float32)), r"expected bias of shape \(3,\)"),
    (lambda: ops.conv2d_forward(np.zeros((1, 1, 5, 5), np.float32), np.zeros((3, 1, 3, 3))), "float32 but weight"),
    (lambda: ops.conv2d_forward(np.zeros((1, 1, 5, 5), np.int32), np.zeros((3, 1, 3, 3))), "float32 or float64"),
    (lambda: ops.im2col(np.zeros((5, 5)), 3), r"expected x \(N, C, H, W\)"),
    (lambda: ops.col2im(np.zeros((9, 10)), (1, 1, 5, 5), 3), r"expected columns of shape \(9, 9\)"),
])
def test_bad_inputs_are_refused_before_any_kernel(call, message):
    with pytest.raises(ShapeError, match=message):
        call()
