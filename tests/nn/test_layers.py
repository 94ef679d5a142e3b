"""Every layer (xcnn/nn/layers.py) against central finite differences in float64, on every backend;
boundary checks; and what backward sees after an evaluation in between."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import conv_case, pool_case
from hypothesis import given, settings
from hypothesis import strategies as st
from references import numeric_grad

from xcnn.errors import ShapeError
from xcnn.nn import layers as L


def _to(layer, backend):
    for p in layer.parameters():
        p.data, p.grad = backend.asarray(p.data), backend.asarray(p.grad)
    return layer


def check_layer(layer, x, backend, rng):
    """Compare backward's input and parameter gradients with finite differences of sum(forward(x) * r)."""
    layer.training = True
    y = backend.host(layer.forward(backend.asarray(x)))
    r = rng.standard_normal(y.shape)

    def f():
        return float(np.sum(backend.host(layer.forward(backend.asarray(x))) * r))

    layer.forward(backend.asarray(x))
    dx = backend.host(layer.backward(backend.asarray(r)))
    analytic = {p.name: backend.host(p.grad).copy() for p in layer.parameters()}
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=1e-7)
    for p in layer.parameters():
        host = backend.host(p.data).copy()

        def fp(p=p, host=host):
            p.data = backend.asarray(host)
            return f()

        num = numeric_grad(fp, host)
        p.data = backend.asarray(host)
        np.testing.assert_allclose(analytic[p.name], num, rtol=1e-6, atol=1e-7, err_msg=p.name)


@settings(max_examples=12)
@given(case=conv_case(max_size=8), seed=st.integers(0, 2**31), bias=st.booleans())
def test_conv2d_gradients_match_finite_differences(backend, case, seed, bias):
    N, C, H, W, O, k, s, p = case
    rng = np.random.default_rng(seed)
    layer = L.Conv2D(C, O, k, s, p, bias=bias, rng=rng, dtype=np.float64)
    if bias:
        layer.bias.data += rng.standard_normal(O)
    check_layer(_to(layer, backend), rng.standard_normal((N, C, H, W)), backend, rng)


@settings(max_examples=10)
@given(n=st.integers(1, 4), i=st.integers(1, 6), o=st.integers(1, 5), seed=st.integers(0, 2**31),
       bias=st.booleans())
def test_linear_gradients_match_finite_differences(backend, n, i, o, seed, bias):
    rng = np.random.default_rng(seed)
    layer = L.Linear(i, o, bias=bias, rng=rng, dtype=np.float64)
    for prm in layer.parameters():
        prm.data = prm.data + rng.standard_normal(prm.data.shape)
    check_layer(_to(layer, backend), rng.standard_normal((n, i)), backend, rng)


@pytest.mark.parametrize("cls", [L.ReLU, L.Sigmoid, L.Tanh, L.Flatten])
@settings(max_examples=8)
@given(shape=st.sampled_from([(1, 1, 1, 3), (2, 3, 4, 5), (3, 7), (1, 2, 5, 1)]), seed=st.integers(0, 2**31))
def test_elementwise_and_reshape_gradients(backend, cls, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if cls is L.ReLU:  # keep clear of the kink at 0, where the derivative is not defined
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    check_layer(cls(), x, backend, rng)


@pytest.mark.parametrize("cls", [L.AvgPool2D, L.MaxPool2D])
@settings(max_examples=12)
@given(case=pool_case(max_size=8), seed=st.integers(0, 2**31))
def test_pool_gradients_match_finite_differences(backend, cls, case, seed):
    N, C, H, W, k, s, p = case
    rng = np.random.default_rng(seed)
    x = rng.permutation(N * C * H * W).reshape(N, C, H, W) * 1e-2  # distinct, gaps far above EPS: no tie flips
    check_layer(cls(k, s, p), x, backend, rng)


LAYERS = [
    ("conv k5 p2", lambda: L.Conv2D(2, 3, 5, padding=2, rng=np.random.default_rng(1), dtype=np.float64), (4, 2, 9, 8)),
    ("conv k3 s2 p1", lambda: L.Conv2D(2, 3, 3, 2, 1, rng=np.random.default_rng(2), dtype=np.float64), (4, 2, 9, 8)),
    ("linear", lambda: L.Linear(12, 5, rng=np.random.default_rng(3), dtype=np.float64), (4, 12)),
    ("relu", L.ReLU, (4, 2, 5, 5)),
    ("sigmoid", L.Sigmoid, (4, 2, 5, 5)),
    ("avgpool 3 s2 p1", lambda: L.AvgPool2D(3, 2, 1), (4, 2, 9, 8)),
    ("maxpool 2", lambda: L.MaxPool2D(2), (4, 2, 8, 8)),
    ("maxpool 3 s1 p1", lambda: L.MaxPool2D(3, 1, 1), (4, 2, 7, 5)),
    ("flatten", L.Flatten, (4, 2, 3, 3)),
]


@pytest.mark.parametrize("name, make, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_an_evaluation_between_forward_and_backward_changes_nothing(backend, name, make, shape):
    """What backward needs belongs to the layer's last training forward: an eval-mode forward in
    between (Network.predict, feature maps) -- even with another batch size -- leaves the gradients
    exactly as without it. (On the NumPy path a conv's columns once lived in a reused workspace, and
    the weight gradient came out off by ~97.)"""
    rng = np.random.default_rng(0)
    x1 = backend.asarray(rng.standard_normal(shape))
    x2 = backend.asarray(rng.standard_normal((7,) + shape[1:]))
    layer = _to(make(), backend)
    y = layer.forward(x1)
    dy = backend.asarray(rng.standard_normal(y.shape))
    ref_dx = backend.host(layer.backward(dy))
    ref = [backend.host(p.grad).copy() for p in layer.parameters()]
    layer.forward(x1)
    layer.training = False
    layer.forward(x2)
    layer.training = True
    np.testing.assert_array_equal(backend.host(layer.backward(dy)), ref_dx)
    for p, g in zip(layer.parameters(), ref):
        np.testing.assert_array_equal(backend.host(p.grad), g, err_msg=p.name)


def test_shape_errors_name_the_layer_and_what_was_expected():
    conv = L.Conv2D(1, 4, 5, padding=2, name="conv1")
    with pytest.raises(ShapeError, match=r"Conv2D 'conv1': expected input \(N, 1, H, W\), got \(50, 784\)"):
        conv.forward(np.zeros((50, 784), np.float32))
    with pytest.raises(ShapeError, match=r"expected input \(N, 1, H, W\), got \(2, 3, 28, 28\)"):
        conv.forward(np.zeros((2, 3, 28, 28), np.float32))
    fc = L.Linear(392, 10, name="fc1")
    with pytest.raises(ShapeError, match=r"Linear 'fc1': expected input \(N, 392\) \(add a Flatten"):
        fc.forward(np.zeros((2, 8, 7, 7), np.float32))
    with pytest.raises(ShapeError, match=r"dtype float32 .* got dtype float64"):
        conv.forward(np.zeros((2, 1, 28, 28)))
    with pytest.raises(ShapeError, match="float32 or float64 array"):
        L.ReLU().forward(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ShapeError, match="larger than the padded input"):
        L.Conv2D(1, 1, 7).forward(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ShapeError, match="larger than the padded input"):
        L.AvgPool2D(4).forward(np.zeros((1, 1, 3, 3), np.float32))


def test_a_gradient_that_does_not_fit_is_refused_by_every_layer(backend):
    """Memory safety: a wrong dy to a layer's backward is refused (it once gave dW ~1e292 on the
    compiled path, or overran the heap in pooling)."""
    rng = np.random.default_rng(0)
    cases = [(L.Conv2D(1, 4, 3, padding=1, rng=rng), (2, 1, 8, 8), (2, 4, 9, 8)),
             (L.ReLU(), (2, 4, 8, 8), (2, 4, 8, 9)), (L.MaxPool2D(2), (2, 4, 8, 8), (2, 4, 5, 4)),
             (L.AvgPool2D(2), (2, 4, 8, 8), (2, 4, 5, 4)), (L.Linear(5, 3, rng=rng), (2, 5), (2, 4)),
             (L.Flatten(), (2, 4, 2, 2), (2, 15))]
    for layer, xs, bad in cases:
        _to(layer, backend).forward(backend.asarray(np.ones(xs, np.float32)))
        with pytest.raises(ShapeError, match="expected dy"):
            layer.backward(backend.asarray(np.ones(bad, np.float32)))


@pytest.mark.parametrize("make, message", [
    (lambda: L.Conv2D(0, 4, 3), "in_channels must be a positive int"),
    (lambda: L.Conv2D(1, 4, 3, stride=0), "stride must be >= 1"),
    (lambda: L.Conv2D(1, 4, (3, 3, 3)), "kernel_size must be an int or a pair"),
    (lambda: L.MaxPool2D(2.5), "kernel_size must be an int"),
    (lambda: L.MaxPool2D(2, padding=2), "at most half the window"),
    (lambda: L.Linear(10, -1), "out_features must be a positive int"),
    (lambda: L.Linear(True, 3), "in_features must be a positive int"),
])
def test_bad_layer_arguments_are_refused(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_backward_without_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="without a training-mode forward"):
        L.Conv2D(1, 1, 3).backward(np.zeros((1, 1, 3, 3), np.float32))
    layer = L.Linear(3, 2)
    layer.training = False
    layer.forward(np.zeros((1, 3), np.float32))
    with pytest.raises(RuntimeError, match="without a training-mode forward"):
        layer.backward(np.zeros((1, 2), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_end_to_end(backend, dtype):
    rng = np.random.default_rng(0)
    layers = [_to(layer, backend) for layer in
              [L.Conv2D(1, 2, 3, padding=1, rng=rng, dtype=dtype), L.ReLU(), L.MaxPool2D(2), L.AvgPool2D(2),
               L.Sigmoid(), L.Tanh(), L.Flatten(), L.Linear(8, 3, rng=rng, dtype=dtype)]]
    x = backend.asarray(rng.standard_normal((2, 1, 8, 8)).astype(dtype))
    for layer in layers:
        x = layer.forward(x)
        assert x.dtype == dtype, type(layer).__name__
    for layer in reversed(layers):
        x = layer.backward(x)
        assert x.dtype == dtype, type(layer).__name__
        for p in layer.parameters():
            assert p.grad.dtype == dtype


def test_parameters_are_registered_in_order_and_by_name():
    conv = L.Conv2D(1, 2, 3)
    assert [p.name for p in conv.parameters()] == ["weight", "bias"]
    assert [p.name for p in L.Conv2D(1, 2, 3, bias=False).parameters()] == ["weight"]
    assert L.ReLU().parameters() == [] and L.MaxPool2D(2).parameters() == []
