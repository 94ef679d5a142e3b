"""Optimizers (xcnn/nn/optim.py): the report's SGD step by hand, hyper-parameter checks, and state
that follows the parameters' device and dtype or refuses -- never a silent reset."""
from __future__ import annotations

import numpy as np
import pytest

from xcnn.errors import ConfigError, DeviceError
from xcnn.nn import SGD, Adam, Linear, Network, SoftmaxCrossEntropy, build_model, get_optimizer


def _grads(net, x, y):
    loss = SoftmaxCrossEntropy()
    value = loss(net.forward(x), y)
    net.backward(loss.backward())
    return float(value)


def test_one_sgd_step_equals_the_hand_computed_update(backend):
    net = build_model("seed-cnn", dtype=np.float64, seed=1, device=backend.device)
    rng = np.random.default_rng(0)
    x, y = backend.asarray(rng.standard_normal((4, 1, 28, 28))), backend.asarray(rng.integers(0, 10, 4))
    opt = SGD(net.parameters(), lr=0.1, momentum=0.5, weight_decay=1e-3)
    velocity = [np.zeros(p.shape) for p in net.parameters()]
    for _ in range(2):  # two steps, so the momentum term is exercised
        before = [backend.host(p.data).copy() for p in net.parameters()]
        opt.zero_grad()
        _grads(net, x, y)
        grads = [backend.host(p.grad).copy() for p in net.parameters()]
        opt.step()
        for i, (p, w, g) in enumerate(zip(net.parameters(), before, grads)):
            velocity[i] = 0.5 * velocity[i] + (g + 1e-3 * w)  # biases decayed too
            np.testing.assert_allclose(backend.host(p.data), w - 0.1 * velocity[i], rtol=1e-13, atol=1e-15)


def test_adam_steps_equal_the_textbook_update(backend):
    layer = Linear(3, 2, rng=np.random.default_rng(0), dtype=np.float64)
    net = Network([layer]).to(backend.device)
    opt = Adam(net.parameters(), lr=0.01, weight_decay=0.1)
    w = backend.host(layer.weight.data).copy()
    m = v = np.zeros_like(w)
    rng = np.random.default_rng(1)
    for t in range(1, 4):
        g = rng.standard_normal(w.shape)
        layer.weight.grad[...] = backend.asarray(g)
        layer.bias.grad.fill(0)
        opt.step()
        g = g + 0.1 * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(backend.host(layer.weight.data), w, rtol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda ps: SGD(ps, lr=-1), "lr must be a finite number > 0"),
    (lambda ps: SGD(ps, lr=float("nan")), "lr must be a finite number"),
    (lambda ps: SGD(ps, lr=float("inf")), "lr must be a finite number"),
    (lambda ps: SGD(ps, momentum=float("nan")), "momentum must be a finite number >= 0"),
    (lambda ps: SGD(ps, weight_decay=-1e-3), "weight_decay must be a finite number >= 0"),
    (lambda ps: SGD(ps, lr="fast"), "lr must be a number"),
    (lambda ps: Adam(ps, beta1=1.0), r"beta1 must be a finite number >= 0 and < 1"),
    (lambda ps: Adam(ps, eps=0), "eps must be a finite number > 0"),
    (lambda ps: Adam(ps, lr=float("nan")), "lr must be a finite number"),
    (lambda ps: get_optimizer("rmsprop", ps), "unknown optimizer 'rmsprop'"),
    (lambda ps: SGD([]), "empty parameter list"),
])
def test_optimizer_arguments_are_checked(make, message):
    with pytest.raises(ConfigError, match=message):
        make(build_model("mlp1").parameters())


def _one_step(net, opt, dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 28, 28)).astype(dtype)
    _grads(net, net.device.asarray(x), net.device.asarray(rng.integers(0, 10, 4)))
    opt.step()


def test_state_refuses_a_parameter_cast_behind_its_back_and_follows_astype():
    net = build_model("mlp1")
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    _one_step(net, opt)
    net.astype(np.float64)
    with pytest.raises(DeviceError, match=r"state 'velocity' of fc1.weight is cpu float32 but the parameter is cpu "
                                          r"float64 — after net.to\(\)/net.astype\(\) call optimizer"):
        _one_step(net, opt, np.float64)
    before = {k: v.copy() for k, v in opt.state["velocity"].items()}
    opt.astype(np.float64)
    assert all(v.dtype == np.float64 for v in opt.state["velocity"].values())
    for k, v in opt.state["velocity"].items():
        np.testing.assert_array_equal(v, before[k].astype(np.float64))  # cast, not reset
    _one_step(net, opt, np.float64)


def test_state_refuses_a_parameter_moved_behind_its_back_and_follows_to(cuda_emu):
    net = build_model("mlp1")
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    _one_step(net, opt)
    velocity = {k: v.copy() for k, v in opt.state["velocity"].items()}
    net.to("cuda")
    with pytest.raises(DeviceError, match="is cpu float32 but the parameter is cuda:0 float32"):
        _one_step(net, opt)
    opt.to("cuda")
    for k, v in opt.state["velocity"].items():
        np.testing.assert_array_equal(cuda_emu.host(v), velocity[k])  # moved, not re-zeroed
    _one_step(net, opt)


def test_state_dict_round_trip_and_refusals():
    net = build_model("mlp1")
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    _one_step(net, opt)
    sd = opt.state_dict()
    opt2 = SGD(net.parameters(), lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.lr == 0.1 and opt2.momentum == 0.9 and opt2.steps == 1
    for k, v in opt.state["velocity"].items():
        np.testing.assert_array_equal(opt2.state["velocity"][k], v)
        assert opt2.state["velocity"][k] is not sd[f"velocity/{k}"]
    with pytest.raises(ConfigError, match="holds a 'sgd' optimizer state, not 'adam'"):
        Adam(net.parameters()).load_state_dict(sd)
