"""CPU/GPU parity: the same layers, steps and training runs on NumPy and on the CUDA path agree --
on the CuPy double (kernels emulated on the host) and on a real GPU where one is usable.

float64 within 1e-10 relative, float32 within 1e-5 per step; after 100 SGD steps within 1e-9
(float64) and 3e-3 (float32); max-pool ties are resolved identically.
"""
from __future__ import annotations

import numpy as np
import pytest

from xcnn.backend import to_host
from xcnn.nn import SGD, SoftmaxCrossEntropy, build_model
from xcnn.nn import layers as L

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}


@pytest.fixture
def gpu(backend):
    if not backend.is_cuda:
        pytest.skip("compares the CPU with the CUDA path")
    return backend.device


LAYERS = [
    ("conv k5 p2", lambda dt: L.Conv2D(3, 4, 5, padding=2, rng=np.random.default_rng(1), dtype=dt), (2, 3, 11, 9)),
    ("conv k3 s2 p1", lambda dt: L.Conv2D(2, 5, 3, 2, 1, rng=np.random.default_rng(2), dtype=dt), (3, 2, 10, 7)),
    ("conv k7 s3 p3 nobias", lambda dt: L.Conv2D(1, 2, 7, 3, 3, bias=False, rng=np.random.default_rng(3), dtype=dt),
     (1, 1, 13, 8)),
    ("linear", lambda dt: L.Linear(12, 7, rng=np.random.default_rng(4), dtype=dt), (5, 12)),
    ("relu", lambda dt: L.ReLU(), (2, 3, 4, 5)),
    ("sigmoid", lambda dt: L.Sigmoid(), (2, 3, 4, 5)),
    ("tanh", lambda dt: L.Tanh(), (2, 3, 4, 5)),
    ("avgpool 2", lambda dt: L.AvgPool2D(2), (2, 3, 8, 6)),
    ("avgpool 3 s2 p1", lambda dt: L.AvgPool2D(3, 2, 1), (2, 3, 9, 7)),
    ("maxpool 2", lambda dt: L.MaxPool2D(2), (2, 3, 8, 6)),
    ("maxpool 3 s1 p1", lambda dt: L.MaxPool2D(3, 1, 1), (1, 2, 7, 5)),
    ("flatten", lambda dt: L.Flatten(), (2, 3, 4, 5)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_layer_forward_and_backward_agree(gpu, dtype):
    rng = np.random.default_rng(0)
    for name, make, shape in LAYERS:
        x = rng.standard_normal(shape).astype(dtype)
        cpu_layer, gpu_layer = make(dtype), make(dtype)
        for p in gpu_layer.parameters():
            p.data, p.grad = gpu.asarray(p.data), gpu.asarray(p.grad)
        y_c = cpu_layer.forward(x)
        y_g = gpu_layer.forward(gpu.asarray(x))
        np.testing.assert_allclose(to_host(y_g), y_c, **TOL[dtype], err_msg=f"{name} forward")
        dy = rng.standard_normal(y_c.shape).astype(dtype)
        dx_c = cpu_layer.backward(dy)
        dx_g = gpu_layer.backward(gpu.asarray(dy))
        np.testing.assert_allclose(to_host(dx_g), dx_c, **TOL[dtype], err_msg=f"{name} backward")
        for pc, pg in zip(cpu_layer.parameters(), gpu_layer.parameters()):
            np.testing.assert_allclose(to_host(pg.grad), pc.grad, **TOL[dtype], err_msg=f"{name} {pc.name}")


def test_max_pool_ties_resolve_identically(gpu):
    x = np.random.default_rng(0).integers(0, 3, (4, 3, 8, 8)).astype(np.float32)  # many ties
    for k, s, p in [(2, 2, 0), (3, 1, 1), (3, 2, 1)]:
        layer_c, layer_g = L.MaxPool2D(k, s, p), L.MaxPool2D(k, s, p)
        y_c, y_g = layer_c.forward(x), layer_g.forward(gpu.asarray(x))
        np.testing.assert_array_equal(to_host(y_g), y_c)
        dy = np.ones_like(y_c)
        np.testing.assert_array_equal(to_host(layer_g.backward(gpu.asarray(dy))), layer_c.backward(dy))


def _step(net, opt, x, y):
    loss = SoftmaxCrossEntropy()
    value = loss(net.forward(x), y)
    net.backward(loss.backward())
    opt.step()
    return float(value)


@pytest.mark.parametrize("model", ["seed-cnn", "lenet5", "mlp2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_training_steps_agree(gpu, model, dtype):
    """Three steps with a changing lr (the GPU reads it on the device): losses, gradients, weights."""
    rng = np.random.default_rng(1)
    x = (rng.random((20, 1, 28, 28)) - 0.5).astype(dtype)
    y = rng.integers(0, 10, 20)
    net_c = build_model(model, dtype=dtype, seed=0)
    net_g = build_model(model, dtype=dtype, seed=0, device=gpu)
    opt_c = SGD(net_c.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt_g = SGD(net_g.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for it in range(3):
        opt_c.lr = opt_g.lr = 0.1 / (it + 1)
        l_c = _step(net_c, opt_c, x, y)
        l_g = _step(net_g, opt_g, gpu.asarray(x), gpu.asarray(y))
        assert abs(l_c - l_g) <= TOL[dtype]["rtol"] * abs(l_c) + 1e-12
        for pc, pg in zip(net_c.parameters(), net_g.parameters()):
            np.testing.assert_allclose(to_host(pg.grad), pc.grad, **TOL[dtype], err_msg=pc.name)
            np.testing.assert_allclose(to_host(pg.data), pc.data, **TOL[dtype], err_msg=pc.name)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 3e-3)], ids=["f64", "f32"])
def test_one_hundred_sgd_steps_stay_together(gpu, dtype, tol):
    """100 steps of the report's SGD: the two devices sum in different orders (a direct convolution
    against im2col + GEMM), so the weights drift apart by rounding only -- within 1e-9 in float64;
    in float32 the report's N(0, 1) initialisation amplifies it to ~1e-3 (measured: 2.3e-4 on a bias)."""
    rng = np.random.default_rng(2)
    xs = (rng.random((100, 20, 1, 28, 28)) - 0.5).astype(dtype)
    ys = rng.integers(0, 10, (100, 20))
    net_c = build_model("seed-cnn", seed=0, dtype=dtype)
    net_g = build_model("seed-cnn", seed=0, dtype=dtype, device=gpu)
    opt_c = SGD(net_c.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    opt_g = SGD(net_g.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    for x, y in zip(xs, ys):
        _step(net_c, opt_c, x, y)
        _step(net_g, opt_g, gpu.asarray(x), gpu.asarray(y))
    for pc, pg in zip(net_c.parameters(), net_g.parameters()):
        np.testing.assert_allclose(to_host(pg.data), pc.data, rtol=tol, atol=tol, err_msg=pc.name)
