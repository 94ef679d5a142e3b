"""CPU/GPU parity: the same layers, steps and training runs on NumPy and on CuPy agree.

float64 within 1e-10 relative, float32 within 1e-5; 100 SGD steps end within 1e-4;
max-pool ties are resolved identically. Skipped (with the reason) where no GPU is usable.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import BACKENDS

from xcnn import layers as L
from xcnn.backend import get_device, gpu_unavailable_reason, to_host
from xcnn.losses import SoftmaxCrossEntropy
from xcnn.models import build_model
from xcnn.optim import SGD

_REASON = gpu_unavailable_reason(0)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=f"no usable GPU: {_REASON}")]

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
assert [p.values[0] for p in BACKENDS] == ["cpu-numba", "cpu-numpy", "cuda"]  # this file compares the devices


def _layer_cases(dtype, rng):
    return [
        ("conv k5 p2", lambda: L.Conv2D(3, 4, 5, padding=2, rng=np.random.default_rng(1), dtype=dtype), (2, 3, 11, 9)),
        ("conv k3 s2 p1", lambda: L.Conv2D(2, 5, 3, 2, 1, rng=np.random.default_rng(2), dtype=dtype), (3, 2, 10, 7)),
        ("conv k7 s3 p3 nobias", lambda: L.Conv2D(1, 2, 7, 3, 3, bias=False, rng=np.random.default_rng(3),
                                                  dtype=dtype), (1, 1, 13, 8)),
        ("linear", lambda: L.Linear(12, 7, rng=np.random.default_rng(4), dtype=dtype), (5, 12)),
        ("relu", L.ReLU, (2, 3, 4, 5)),
        ("sigmoid", L.Sigmoid, (2, 3, 4, 5)),
        ("tanh", L.Tanh, (2, 3, 4, 5)),
        ("avgpool 2", lambda: L.AvgPool2D(2), (2, 3, 8, 6)),
        ("avgpool 3 s2 p1", lambda: L.AvgPool2D(3, 2, 1), (2, 3, 9, 7)),
        ("maxpool 2", lambda: L.MaxPool2D(2), (2, 3, 8, 6)),
        ("maxpool 3 s1 p1", lambda: L.MaxPool2D(3, 1, 1), (1, 2, 7, 5)),
        ("flatten", L.Flatten, (2, 3, 4, 5)),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_layer_forward_and_backward_agree(dtype):
    rng = np.random.default_rng(0)
    gpu = get_device("cuda")
    for name, make, shape in _layer_cases(dtype, rng):
        x = rng.standard_normal(shape).astype(dtype)
        cpu_layer, gpu_layer = make(), make()
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


def test_max_pool_ties_resolve_identically():
    gpu = get_device("cuda")
    x = np.random.default_rng(0).integers(0, 3, (4, 3, 8, 8)).astype(np.float32)  # many ties
    for k, s, p in [(2, 2, 0), (3, 1, 1), (3, 2, 1)]:
        layer_c, layer_g = L.MaxPool2D(k, s, p), L.MaxPool2D(k, s, p)
        y_c, y_g = layer_c.forward(x), layer_g.forward(gpu.asarray(x))
        np.testing.assert_array_equal(to_host(layer_g._arg), layer_c._arg)
        dy = np.ones_like(y_c)
        np.testing.assert_array_equal(to_host(layer_g.backward(gpu.asarray(dy))), layer_c.backward(dy))


def _step(net, opt, x, y):
    loss = SoftmaxCrossEntropy()
    value = loss(net.forward(x), y)
    opt.zero_grad()
    net.backward(loss.backward())
    opt.step()
    return float(value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_a_seed_cnn_training_step_agrees(dtype):
    gpu = get_device("cuda")
    rng = np.random.default_rng(1)
    x = (rng.random((50, 1, 28, 28)) - 0.5).astype(dtype)
    y = rng.integers(0, 10, 50)
    net_c = build_model("seed-cnn", dtype=dtype, seed=0)
    net_g = build_model("seed-cnn", dtype=dtype, seed=0, device=gpu)
    opt_c = SGD(net_c.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    opt_g = SGD(net_g.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    l_c = _step(net_c, opt_c, x, y)
    l_g = _step(net_g, opt_g, gpu.asarray(x), gpu.asarray(y))
    assert abs(l_c - l_g) <= TOL[dtype]["rtol"] * abs(l_c) + 1e-12
    for pc, pg in zip(net_c.parameters(), net_g.parameters()):
        np.testing.assert_allclose(to_host(pg.grad), pc.grad, **TOL[dtype], err_msg=pc.name)
        np.testing.assert_allclose(to_host(pg.data), pc.data, **TOL[dtype], err_msg=pc.name)


def test_one_hundred_sgd_steps_end_within_1e4():
    gpu = get_device("cuda")
    rng = np.random.default_rng(2)
    xs = (rng.random((100, 50, 1, 28, 28)) - 0.5).astype(np.float32)
    ys = rng.integers(0, 10, (100, 50))
    net_c = build_model("seed-cnn", seed=0)
    net_g = build_model("seed-cnn", seed=0, device=gpu)
    opt_c = SGD(net_c.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    opt_g = SGD(net_g.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    for x, y in zip(xs, ys):
        _step(net_c, opt_c, x, y)
        _step(net_g, opt_g, gpu.asarray(x), gpu.asarray(y))
    for pc, pg in zip(net_c.parameters(), net_g.parameters()):
        np.testing.assert_allclose(to_host(pg.data), pc.data, rtol=1e-4, atol=1e-4, err_msg=pc.name)
