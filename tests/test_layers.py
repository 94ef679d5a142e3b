"""Every layer and loss against central finite differences in float64, plus boundary checks."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import BACKENDS, conv_case, dev, pool_case
from hypothesis import given, settings
from hypothesis import strategies as st

from xcnn import layers as L
from xcnn.backend import to_host
from xcnn.losses import Euclidean, SoftmaxCrossEntropy

EPS = 1e-6


def numeric_grad(f, x):
    """Central differences of scalar ``f()`` w.r.t. every element of host array ``x`` (perturbed in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + EPS
        fp = f()
        x[i] = old - EPS
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * EPS)
    return g


def check_layer(layer, x, d, rng):
    """Compare backward's input and parameter gradients with finite differences of sum(forward(x) * r)."""
    layer.training = True
    y = to_host(layer.forward(d.asarray(x)))
    r = rng.standard_normal(y.shape)

    def f():
        return float(np.sum(to_host(layer.forward(d.asarray(x))) * r))

    layer.forward(d.asarray(x))
    dx = to_host(layer.backward(d.asarray(r)))
    analytic = {p.name: to_host(p.grad).copy() for p in layer.parameters()}
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=1e-7)
    for p in layer.parameters():
        host = to_host(p.data).copy()

        def fp(p=p, host=host):
            p.data = d.asarray(host)
            return f()

        num = numeric_grad(fp, host)
        p.data = d.asarray(host)
        np.testing.assert_allclose(analytic[p.name], num, rtol=1e-6, atol=1e-7, err_msg=p.name)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None)
@given(case=conv_case(max_size=8), seed=st.integers(0, 2**31), bias=st.booleans())
def test_conv2d_gradients_match_finite_differences(backend, case, seed, bias):
    N, C, H, W, O, k, s, p = case
    rng = np.random.default_rng(seed)
    layer = L.Conv2D(C, O, k, s, p, bias=bias, rng=rng, dtype=np.float64)
    net_dev = dev(backend)
    for prm in layer.parameters():
        prm.data, prm.grad = net_dev.asarray(prm.data), net_dev.asarray(prm.grad)
        if prm.name == "bias":
            prm.data += net_dev.asarray(rng.standard_normal(prm.data.shape))
    check_layer(layer, rng.standard_normal((N, C, H, W)), net_dev, rng)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 4), i=st.integers(1, 6), o=st.integers(1, 5), seed=st.integers(0, 2**31),
       bias=st.booleans())
def test_linear_gradients_match_finite_differences(backend, n, i, o, seed, bias):
    rng = np.random.default_rng(seed)
    layer = L.Linear(i, o, bias=bias, rng=rng, dtype=np.float64)
    d = dev(backend)
    for prm in layer.parameters():
        prm.data, prm.grad = d.asarray(prm.data + rng.standard_normal(prm.data.shape)), d.asarray(prm.grad)
    check_layer(layer, rng.standard_normal((n, i)), d, rng)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [L.ReLU, L.Sigmoid, L.Tanh, L.Flatten])
@settings(max_examples=8, deadline=None)
@given(shape=st.sampled_from([(1, 1, 1, 3), (2, 3, 4, 5), (3, 7), (1, 2, 5, 1)]), seed=st.integers(0, 2**31))
def test_elementwise_and_reshape_gradients(backend, cls, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if cls is L.ReLU:  # keep clear of the kink at 0, where the derivative is not defined
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    check_layer(cls(), x, dev(backend), rng)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [L.AvgPool2D, L.MaxPool2D])
@settings(max_examples=12, deadline=None)
@given(case=pool_case(max_size=8), seed=st.integers(0, 2**31))
def test_pool_gradients_match_finite_differences(backend, cls, case, seed):
    N, C, H, W, k, s, p = case
    rng = np.random.default_rng(seed)
    n = N * C * H * W
    x = rng.permutation(n).reshape(N, C, H, W) * 1e-2  # distinct, gaps far above EPS: no tie flips
    check_layer(cls(k, s, p), x, dev(backend), rng)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss_cls", [SoftmaxCrossEntropy, Euclidean])
@pytest.mark.parametrize("onehot", [False, True])
@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 5), k=st.integers(2, 6), seed=st.integers(0, 2**31), scale=st.sampled_from([1.0, 30.0]))
def test_loss_gradients_match_finite_differences(backend, loss_cls, onehot, n, k, seed, scale):
    d = dev(backend)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k)) * scale
    labels = rng.integers(0, k, n)
    t = np.eye(k)[labels] if onehot else labels
    loss = loss_cls()

    def f():
        return float(loss.forward(d.asarray(z), d.asarray(t)))

    f0 = f()
    g = to_host(loss.backward())
    # central differences carry a rounding error of ~eps64*|f|/EPS: with scale 30 the loss is in the
    # thousands, so the absolute floor grows with it
    floor = 8 * np.finfo(np.float64).eps * abs(f0) / EPS
    np.testing.assert_allclose(g, numeric_grad(f, z), rtol=1e-5, atol=max(1e-7, floor))


# ---------------------------------------------------------------- boundaries and errors

def test_shape_errors_name_the_layer_and_what_was_expected():
    conv = L.Conv2D(1, 4, 5, padding=2, name="conv1")
    with pytest.raises(L.ShapeError, match=r"Conv2D 'conv1': expected input \(N, 1, H, W\), got \(50, 784\)"):
        conv.forward(np.zeros((50, 784), np.float32))
    with pytest.raises(L.ShapeError, match=r"expected input \(N, 1, H, W\), got \(2, 3, 28, 28\)"):
        conv.forward(np.zeros((2, 3, 28, 28), np.float32))
    fc = L.Linear(392, 10, name="fc1")
    with pytest.raises(L.ShapeError, match=r"Linear 'fc1': expected input \(N, 392\) \(add a Flatten"):
        fc.forward(np.zeros((2, 8, 7, 7), np.float32))
    with pytest.raises(L.ShapeError, match=r"dtype float32 .* got dtype float64"):
        conv.forward(np.zeros((2, 1, 28, 28)))
    with pytest.raises(L.ShapeError, match="float32 or float64 array"):
        L.ReLU().forward(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(L.ShapeError, match="larger than the padded input"):
        L.Conv2D(1, 1, 7).forward(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(L.ShapeError, match="larger than the padded input"):
        L.AvgPool2D(4).forward(np.zeros((1, 1, 3, 3), np.float32))


@pytest.mark.parametrize("make, message", [
    (lambda: L.Conv2D(0, 4, 3), "in_channels must be a positive int"),
    (lambda: L.Conv2D(1, 4, 3, stride=0), "stride >= 1"),
    (lambda: L.Conv2D(1, 4, (3, 3, 3)), "kernel_size must be an int or a pair"),
    (lambda: L.MaxPool2D(2.5), "kernel_size must be an int"),
    (lambda: L.MaxPool2D(2, padding=2), "at most half the window"),
    (lambda: L.Linear(10, -1), "out_features must be a positive int"),
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
def test_dtype_is_kept_end_to_end(dtype):
    rng = np.random.default_rng(0)
    layers = [L.Conv2D(1, 2, 3, padding=1, rng=rng, dtype=dtype), L.ReLU(), L.MaxPool2D(2), L.AvgPool2D(2),
              L.Sigmoid(), L.Tanh(), L.Flatten(), L.Linear(8, 3, rng=rng, dtype=dtype)]
    x = rng.standard_normal((2, 1, 8, 8)).astype(dtype)
    for layer in layers:
        x = layer.forward(x)
        assert x.dtype == dtype, type(layer).__name__
    for layer in reversed(layers):
        x = layer.backward(np.ones_like(x) if x.ndim == 2 and x.shape[1] == 3 else x)
        assert x.dtype == dtype, type(layer).__name__
        for p in layer.parameters():
            assert p.grad.dtype == dtype
