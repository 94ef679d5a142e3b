"""The sequential network (xcnn/nn/network.py): backward, input gradients, modes, device and dtype
moves, state dicts and checkpoints, on every backend."""
from __future__ import annotations

import numpy as np
import pytest

from xcnn.nn import SGD, Conv2D, Flatten, Linear, Network, ReLU, SoftmaxCrossEntropy, build_model, get_optimizer


def _grads(net, x, y):
    loss = SoftmaxCrossEntropy()
    value = loss(net.forward(x), y)
    net.backward(loss.backward())
    return float(value)


@pytest.mark.parametrize("bias", [True, False])
def test_backward_overwrites_every_gradient(backend, bias):
    """The training step relies on it (it skips zero_grad): whatever a gradient held before, backward
    leaves exactly the gradient of this batch -- for convolutions (strided or not, with or without
    bias and input gradient) and linear layers."""
    rng = np.random.default_rng(0)
    net = Network([Conv2D(2, 3, 3, padding=1, bias=bias, rng=rng, dtype=np.float64), ReLU(),
                   Conv2D(3, 4, 3, stride=2, bias=bias, rng=rng, dtype=np.float64), Flatten(),
                   Linear(4 * 3 * 3, 5, bias=bias, rng=rng, dtype=np.float64)]).to(backend.device)
    x, y = backend.asarray(rng.standard_normal((3, 2, 7, 7))), backend.asarray(rng.integers(0, 5, 3))
    for p in net.parameters():
        p.grad.fill(0)
    _grads(net, x, y)
    clean = [backend.host(p.grad).copy() for p in net.parameters()]
    assert all(np.abs(g).sum() > 0 for g in clean)
    for p in net.parameters():
        p.grad.fill(np.nan)
    _grads(net, x, y)
    for p, g in zip(net.parameters(), clean):
        np.testing.assert_array_equal(backend.host(p.grad), g, err_msg=p.name)


def test_input_gradient_on_request_matches_finite_differences(backend):
    """``backward(dy, input_grad=True)`` returns d(loss)/d(input) (saliency maps); by default None."""
    rng = np.random.default_rng(1)
    net = build_model("seed-cnn", dtype=np.float64, seed=2, device=backend.device)
    x = rng.standard_normal((2, 1, 28, 28))
    y = rng.integers(0, 10, 2)
    loss = SoftmaxCrossEntropy()
    loss(net.forward(backend.asarray(x)), backend.asarray(y))
    assert net.backward(loss.backward()) is None
    loss(net.forward(backend.asarray(x)), backend.asarray(y))
    dx = backend.host(net.backward(loss.backward(), input_grad=True))
    assert dx.shape == x.shape and net.layers[0].needs_input_grad is False  # restored afterwards
    for idx in [(0, 0, 14, 14), (1, 0, 3, 20), (0, 0, 27, 0)]:
        e = np.zeros_like(x)
        e[idx] = 1e-6
        plus = float(loss(net.forward(backend.asarray(x + e)), backend.asarray(y)))
        minus = float(loss(net.forward(backend.asarray(x - e)), backend.asarray(y)))
        assert abs(dx[idx] - (plus - minus) / 2e-6) < 1e-6 * max(1.0, abs(dx[idx]))


def test_predict_restores_the_mode_and_matches_forward(backend):
    net = build_model("mlp1", dtype=np.float64, device=backend.device)
    x = backend.asarray(np.random.default_rng(0).standard_normal((2500, 1, 28, 28)))
    out = net.predict(x, batch_size=1000)
    assert net.training
    np.testing.assert_allclose(backend.host(out), backend.host(net.forward(x)), rtol=1e-10, atol=1e-12)


def test_network_modes_and_first_layer_skips_input_gradient():
    net = build_model("seed-cnn")
    assert net.layers[0].needs_input_grad is False and net.layers[3].needs_input_grad is True
    net.eval()
    assert all(not layer.training for layer in net.layers)
    net.train()
    assert all(layer.training for layer in net.layers)
    assert [layer.name for layer in net.layers] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                                    "flatten1", "fc1"]
    mlp = build_model("mlp2")
    assert [layer.needs_input_grad for layer in mlp.layers if layer.parameters()] == [False, True, True]
    with pytest.raises(ValueError, match="names must be unique"):
        Network([ReLU(name="a"), ReLU(name="a")])
    with pytest.raises(TypeError, match="is not an xcnn Layer"):
        Network([ReLU(), "relu"])


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_checkpoint_round_trip_is_bit_exact_and_training_continues_identically(backend, opt_name, tmp_path):
    rng = np.random.default_rng(0)
    batches = [(backend.asarray(rng.standard_normal((8, 1, 28, 28)).astype(np.float32)),
                backend.asarray(rng.integers(0, 10, 8))) for _ in range(6)]
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-3) if opt_name == "sgd" else dict(lr=1e-3)

    def run(net, opt, bs):
        for x, y in bs:
            opt.zero_grad()
            _grads(net, x, y)
            opt.step()

    net_a = build_model("seed-cnn", seed=5, device=backend.device)
    opt_a = get_optimizer(opt_name, net_a.parameters(), **kw)
    run(net_a, opt_a, batches)

    net_b = build_model("seed-cnn", seed=5, device=backend.device)
    opt_b = get_optimizer(opt_name, net_b.parameters(), **kw)
    run(net_b, opt_b, batches[:3])
    path = net_b.save(tmp_path / "ck.npz", opt_b, meta={"epoch": 1})
    net_c = build_model("seed-cnn", seed=99, device=backend.device)
    opt_c = get_optimizer(opt_name, net_c.parameters(), **kw)
    assert net_c.load(path, opt_c) == {"epoch": 1}
    for pb, pc in zip(net_b.parameters(), net_c.parameters()):
        assert np.array_equal(backend.host(pb.data), backend.host(pc.data))  # bit-exact
    assert opt_c.steps == 3
    run(net_c, opt_c, batches[3:])
    for pa, pc in zip(net_a.parameters(), net_c.parameters()):
        assert np.array_equal(backend.host(pa.data), backend.host(pc.data))
    with np.load(path, allow_pickle=False) as z:  # no pickle inside
        assert "param/conv1.weight" in z.files


def test_load_state_dict_copies_the_callers_arrays():
    """Training after load_state_dict must not change the dict the caller passed in."""
    net = build_model("mlp1")
    state = {k: v.copy() for k, v in net.state_dict().items()}
    keep = {k: v.copy() for k, v in state.items()}
    net.load_state_dict(state)
    opt = SGD(net.parameters(), lr=0.5)
    rng = np.random.default_rng(0)
    _grads(net, rng.standard_normal((4, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 4))
    opt.step()
    for k in state:
        np.testing.assert_array_equal(state[k], keep[k], err_msg=k)
    assert not np.array_equal(net.state_dict()["fc1.weight"], keep["fc1.weight"])


def test_to_and_astype_move_parameters_and_gradients(cuda_emu):
    net = build_model("seed-cnn")
    host = net.state_dict()
    net.to("cuda")
    assert str(net.device) == "cuda:0" and all(type(p.grad) is type(p.data) for p in net.parameters())
    net.astype(np.float64)
    assert net.dtype == np.float64 and all(p.grad.dtype == np.float64 for p in net.parameters())
    net.to("cpu").astype(np.float32)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, host[k])
    with pytest.raises(ValueError, match="float32 or float64"):
        net.astype(np.float16)
