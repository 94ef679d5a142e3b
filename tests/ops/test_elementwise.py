"""Activations (xcnn/ops/elementwise.py): values against their definitions, gradients against float64
finite differences, NaN propagation and refusals -- on every backend."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPES, assert_close
from references import numeric_grad

from xcnn import ops
from xcnn.errors import ShapeError

CASES = {
    "relu": (ops.relu_forward, ops.relu_backward, lambda x: np.maximum(x, 0)),
    "sigmoid": (ops.sigmoid_forward, ops.sigmoid_backward, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (ops.tanh_forward, ops.tanh_backward, np.tanh),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_values_and_gradients(backend, name, dtype):
    fwd, bwd, ref = CASES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 2)) * 3
    x = np.where(np.abs(x) < 1e-3, 0.5, x)  # keep clear of ReLU's kink
    y = fwd(backend.asarray(x, dtype))
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, ref(x), dtype)
    dy = rng.standard_normal(x.shape)
    dx = bwd(backend.asarray(dy, dtype), y)
    xx = x.copy()
    assert_close(dx, numeric_grad(lambda: float((ref(xx) * dy).sum()), xx), dtype,
                 rtol=1e-5 if dtype == np.float64 else 1e-4, atol=1e-6 if dtype == np.float64 else 1e-4)


def test_sigmoid_does_not_overflow(backend):
    y = backend.host(ops.sigmoid_forward(backend.asarray(np.array([-1e4, 0.0, 1e4], np.float32))))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", CASES)
def test_nan_propagates_forward_and_backward(backend, name):
    """The same on every backend: NaN in -> NaN out; backward is a product with dy, so a NaN in dy
    propagates even where the local derivative is 0 (ReLU at a negative input)."""
    fwd, bwd, _ = CASES[name]
    x = backend.asarray(np.array([[np.nan, -1.0, 2.0]]))
    y = fwd(x)
    assert np.isnan(backend.host(y)[0, 0]) and not np.isnan(backend.host(y)[0, 1:]).any()
    dx = backend.host(bwd(backend.asarray(np.array([[1.0, np.nan, 1.0]])), y))
    assert np.isnan(dx[0, 1])
    assert not np.isnan(dx[0, 2])


def test_relu_gradient_at_zero_is_zero(backend):
    y = ops.relu_forward(backend.asarray(np.array([0.0, -0.0, 1e-30, -1e-30])))
    dx = backend.host(ops.relu_backward(backend.asarray(np.ones(4)), y))
    np.testing.assert_array_equal(dx, [0, 0, 1, 0])


@pytest.mark.parametrize("name", CASES)
def test_a_gradient_that_does_not_fit_is_refused(backend, name):
    fwd, bwd, _ = CASES[name]
    y = fwd(backend.asarray(np.ones((2, 3), np.float32)))
    with pytest.raises(ShapeError, match=r"expected dy of shape \(2, 3\)"):
        bwd(backend.asarray(np.ones((2, 4), np.float32)), y)
    with pytest.raises(ShapeError, match="dy is float64 but y is float32"):
        bwd(backend.asarray(np.ones((2, 3))), y)
    with pytest.raises(ShapeError, match="float32 or float64"):
        fwd(backend.asarray(np.ones((2, 3), np.int64)))
