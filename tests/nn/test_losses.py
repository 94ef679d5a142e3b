"""Loss classes (xcnn/nn/losses.py) against central finite differences in float64, on every backend."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from references import numeric_grad

from xcnn.nn import Euclidean, SoftmaxCrossEntropy

EPS = 1e-6


@pytest.mark.parametrize("loss_cls", [SoftmaxCrossEntropy, Euclidean])
@pytest.mark.parametrize("onehot", [False, True])
@settings(max_examples=10)
@given(n=st.integers(1, 5), k=st.integers(2, 6), seed=st.integers(0, 2**31), scale=st.sampled_from([1.0, 30.0]))
def test_loss_gradients_match_finite_differences(backend, loss_cls, onehot, n, k, seed, scale):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k)) * scale
    labels = rng.integers(0, k, n)
    t = np.eye(k)[labels] if onehot else labels
    loss = loss_cls()

    def f():
        return float(loss.forward(backend.asarray(z), backend.asarray(t)))

    f0 = f()
    g = backend.host(loss.backward())
    # central differences carry a rounding error of ~eps64*|f|/EPS: with scale 30 the loss is in the
    # thousands, so the absolute floor grows with it
    floor = 8 * np.finfo(np.float64).eps * abs(f0) / EPS
    np.testing.assert_allclose(g, numeric_grad(f, z, EPS), rtol=1e-5, atol=max(1e-7, floor))


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        SoftmaxCrossEntropy().backward()


def test_euclidean_turns_integer_labels_into_one_hot_rows():
    z = np.random.default_rng(0).standard_normal((3, 4))
    a, b = Euclidean(), Euclidean()
    assert float(a(z, np.array([0, 3, 1]))) == float(b(z, np.eye(4)[[0, 3, 1]]))
    np.testing.assert_array_equal(a.backward(), b.backward())
