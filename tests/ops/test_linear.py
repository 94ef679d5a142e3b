"""The fully connected op (xcnn/ops/linear.py) against NumPy products in float64, on every backend."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPES, assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

from xcnn import ops
from xcnn.errors import ShapeError


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=15)
@given(n=st.integers(1, 70), i=st.integers(1, 40), o=st.integers(1, 33), seed=st.integers(0, 2**31),
       bias=st.booleans(), need_dx=st.booleans())
def test_forward_and_backward_match_the_products(backend, dtype, n, i, o, seed, bias, need_dx):
    rng = np.random.default_rng(seed)
    x, w, b, dy = rng.standard_normal((n, i)), rng.standard_normal((o, i)), rng.standard_normal(o), \
        rng.standard_normal((n, o))
    y = ops.linear_forward(backend.asarray(x, dtype), backend.asarray(w, dtype),
                           backend.asarray(b, dtype) if bias else None)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else {}
    assert_close(y, x @ w.T + (b if bias else 0), dtype, **tol)
    dw = backend.asarray(np.full((o, i), np.nan), dtype)
    db = backend.asarray(np.full(o, np.nan), dtype) if bias else None
    dx = ops.linear_backward(backend.asarray(dy, dtype), backend.asarray(x, dtype), backend.asarray(w, dtype),
                             dw, db, need_dx)
    assert_close(dw, dy.T @ x, dtype, **tol)
    if bias:
        assert_close(db, dy.sum(0), dtype, **tol)
    if need_dx:
        assert_close(dx, dy @ w, dtype, **tol)
    else:
        assert dx is None


def test_skinny_products_split_on_the_cpu_equal_one_product():
    """The CPU splits skinny products (batch 1024 x 392 x 10) to keep them off BLAS's thread pool; the
    pieces must add up to the one product."""
    from xcnn.cpu import config

    rng = np.random.default_rng(0)
    x, w, dy = rng.standard_normal((1024, 392)), rng.standard_normal((10, 392)), rng.standard_normal((1024, 10))
    with config.using(serial_gemm_mnk=1 << 12):
        y = ops.linear_forward(x, w)
        dw = np.empty((10, 392))
        dx = ops.linear_backward(dy, x, w, dw)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(dw, dy.T @ x, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(dx, dy @ w, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("call, message", [
    (lambda: ops.linear_forward(np.zeros((2, 3)), np.zeros((4, 5))), r"expected x of shape \(2, 5\)"),
    (lambda: ops.linear_forward(np.zeros((2, 3, 1)), np.zeros((4, 3))), r"expected x \(N, in_features\)"),
    (lambda: ops.linear_forward(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3)), r"expected bias of shape \(4,\)"),
    (lambda: ops.linear_backward(np.zeros((2, 5)), np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 3))),
     r"expected dy of shape \(2, 4\)"),
    (lambda: ops.linear_backward(np.zeros((2, 4)), np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((3, 4))),
     r"expected dw_out of shape \(4, 3\)"),
])
def test_shapes_that_do_not_fit_are_refused(call, message):
    with pytest.raises(ShapeError, match=message):
        call()
