"""Pooling ops (xcnn/ops/pool.py) against naive float64 loops, on every backend: values, the tie and
NaN rules, and refusals of gradients that do not fit."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPES, assert_close, distinct_values, pool_case
from hypothesis import given, settings
from hypothesis import strategies as st
from references import naive_pool, naive_pool_backward

from xcnn import ops
from xcnn.errors import ShapeError


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["avg", "max"])
@settings(max_examples=25)
@given(case=pool_case(), seed=st.integers(0, 2**31))
def test_pool_forward_backward_match_naive(backend, dtype, mode, case, seed):
    N, C, H, W, k, s, p = case
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, (N, C, H, W)) if mode == "max" else rng.standard_normal((N, C, H, W))
    y_ref, arg_ref = naive_pool(x, k, s, p, mode)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = naive_pool_backward(dy, arg_ref, x.shape, k, s, p, mode)
    xd = backend.asarray(x, dtype)
    if mode == "avg":
        y = ops.avg_pool2d_forward(xd, k, s, p)
        dx = ops.avg_pool2d_backward(backend.asarray(dy, dtype), x.shape, k, s, p)
    else:
        y, arg = ops.max_pool2d_forward(xd, k, s, p)
        np.testing.assert_array_equal(backend.host(arg), arg_ref)
        dx = ops.max_pool2d_backward(backend.asarray(dy, dtype), arg, x.shape, k, s, p)
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, y_ref, dtype)
    assert_close(dx, dx_ref, dtype)


def test_max_pool_ties_go_to_the_first_maximum(backend):
    """Documented tie rule: the gradient goes to the first maximum in row-major window order."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, :2, :2] = [[5, 5], [5, 5]]  # all four tie: first is (0, 0)
    x[0, 0, :2, 2:] = [[1, 7], [7, 7]]  # three tie: first is (0, 3)
    x[0, 0, 2:, :2] = [[0, 0], [3, 3]]  # tie on the bottom row: first is (3, 0)
    x[0, 0, 2:, 2:] = [[2, 2], [2, 2]]  # all tie again: (2, 2)
    y, arg = ops.max_pool2d_forward(backend.asarray(x), 2)
    np.testing.assert_array_equal(backend.host(y)[0, 0], [[5, 7], [3, 2]])
    np.testing.assert_array_equal(backend.host(arg)[0, 0], [[0, 1], [2, 0]])
    dx = backend.host(ops.max_pool2d_backward(backend.asarray(np.ones((1, 1, 2, 2))), arg, x.shape, 2))
    expected = np.zeros((4, 4))
    expected[0, 0] = expected[0, 3] = expected[3, 0] = expected[2, 2] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)
    # overlapping windows with ties: the same input element can win several windows
    x2 = np.full((1, 1, 3, 3), 1.0)
    y2, arg2 = ops.max_pool2d_forward(backend.asarray(x2), 2, 1)
    dx2 = backend.host(ops.max_pool2d_backward(backend.asarray(np.ones((1, 1, 2, 2))), arg2, x2.shape, 2, 1))
    np.testing.assert_array_equal(dx2[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_nan_wins_max_pooling_on_every_backend(backend, dtype, k, s, p):
    """NumPy's rule on every backend: a window holding a NaN outputs NaN, and its gradient goes to the
    first NaN (so the 2x2 fast paths and the general kernels agree with the naive reference)."""
    rng = np.random.default_rng(3)
    x = distinct_values(rng, (2, 3, 7, 6))
    x[0, 0, 0, 1] = x[0, 1, 1, 1] = x[1, 2, 4, 3] = x[1, 2, 4, 4] = x[1, 0, 6, 5] = np.nan
    y_ref, arg_ref = naive_pool(x, k, s, p, "max")
    assert np.isnan(y_ref).sum() >= 3
    y, arg = ops.max_pool2d_forward(backend.asarray(x, dtype), k, s, p)
    np.testing.assert_array_equal(np.isnan(backend.host(y)), np.isnan(y_ref))
    np.testing.assert_array_equal(backend.host(arg), arg_ref)
    assert_close(np.nan_to_num(backend.host(y)), np.nan_to_num(y_ref), dtype)


def test_avg_pooling_propagates_nan(backend):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    y = backend.host(ops.avg_pool2d_forward(backend.asarray(x), 2))
    np.testing.assert_array_equal(np.isnan(y[0, 0]), [[True, False], [False, False]])


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_a_gradient_that_does_not_fit_is_refused_on_every_backend(backend, mode):
    """Memory safety: an oversized dy once overran the heap on the compiled path; now every backend
    refuses it, with the same message, before any kernel runs."""
    x = backend.asarray(np.ones((2, 3, 8, 8), np.float32))
    if mode == "avg":
        call = lambda dy: ops.avg_pool2d_backward(dy, x.shape, 2)  # noqa: E731
    else:
        _, arg = ops.max_pool2d_forward(x, 2)
        call = lambda dy: ops.max_pool2d_backward(dy, arg, x.shape, 2)  # noqa: E731
    for bad in ((2, 3, 5, 4), (8, 3, 4, 4), (2, 3, 4)):
        with pytest.raises(ShapeError, match=r"expected dy of shape \(2, 3, 4, 4\)"):
            call(backend.asarray(np.ones(bad, np.float32)))


def test_max_pool_backward_refuses_a_bad_argmax(backend):
    x = backend.asarray(np.ones((2, 3, 8, 8), np.float32))
    y, arg = ops.max_pool2d_forward(x, 2)
    with pytest.raises(ShapeError, match="argmax must be an integer array"):
        ops.max_pool2d_backward(y, y, x.shape, 2)
    with pytest.raises(ShapeError, match=r"expected argmax of shape \(2, 3, 4, 4\)"):
        ops.max_pool2d_backward(y, arg[:1], x.shape, 2)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, 2, 2), "at most half the window"),
    (lambda: ops.max_pool2d_forward(np.zeros((1, 1, 1, 1)), 2), "larger than the padded input"),
    (lambda: ops.max_pool2d_forward(np.zeros((1, 4, 4)), 2), r"expected x \(N, C, H, W\)"),
    (lambda: ops.avg_pool2d_forward(np.zeros((1, 1, 4, 4), np.int64), 2), "float32 or float64"),
])
def test_bad_pool_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_workspace_shared_by_max_and_avg_pooling_keeps_each_border():
    """Max pooling pads with -inf, average pooling with zeros: sharing one workspace must not mix them."""
    ws = ops.Workspace()
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    ops.max_pool2d_forward(x, 2, 2, 1, ws=ws)
    y = ops.avg_pool2d_forward(x, 2, 2, 1, ws=ws)
    np.testing.assert_allclose(y, naive_pool(x, 2, 2, 1, "avg")[0])
    y2, _ = ops.max_pool2d_forward(x, 2, 2, 1, ws=ws)
    np.testing.assert_allclose(y2, naive_pool(x, 2, 2, 1, "max")[0])
