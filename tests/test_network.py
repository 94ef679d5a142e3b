"""Network container, presets, optimizers, checkpoints and the device abstraction."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import BACKENDS, dev

from xcnn import backend
from xcnn.backend import DeviceError, get_device, to_host
from xcnn.layers import Conv2D, Flatten, Linear, ReLU
from xcnn.losses import SoftmaxCrossEntropy
from xcnn.models import PARAMETER_COUNTS, build_model
from xcnn.network import CheckpointError, Network
from xcnn.optim import SGD, Adam, get_optimizer


@pytest.mark.parametrize("name, count", [("seed-cnn", 4330), ("mlp2", 396210), ("mlp1", 318010), ("lenet5", 61706)])
def test_preset_parameter_counts(name, count):
    net = build_model(name)
    assert net.num_parameters() == count == PARAMETER_COUNTS[name]
    assert f"total parameters: {count:,}" in net.summary()


def test_seed_cnn_summary_and_initialisation_follow_the_report():
    net = build_model("seed-cnn", seed=3)
    text = net.summary((1, 1, 28, 28))
    for row in ("4x28x28", "4x14x14", "8x14x14", "8x7x7", "392", "3,930"):
        assert row in text
    w1, b1, w2, b2, w3, b3 = (to_host(p.data) for p in net.parameters())
    assert w1.shape == (4, 1, 5, 5) and w2.shape == (8, 4, 3, 3) and w3.shape == (10, 392)
    assert not b1.any() and not b2.any() and not b3.any()
    allconv = np.concatenate([w1.ravel(), w2.ravel()])
    assert 0.8 < allconv.std() < 1.2  # N(0, 1)
    assert 0.09 < w3.std() < 0.11  # N(0, 0.1^2)
    # seeded: the same seed gives the same weights, another seed does not
    assert np.array_equal(to_host(build_model("seed-cnn", seed=3).parameters()[0].data), w1)
    assert not np.array_equal(to_host(build_model("seed-cnn", seed=4).parameters()[0].data), w1)


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*seed-cnn"):
        build_model("resnet")


def _grads(net, x, y):
    loss = SoftmaxCrossEntropy()
    l = loss(net.forward(x), y)
    net.backward(loss.backward())
    return float(l)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_sgd_step_equals_the_hand_computed_update(backend):
    d = dev(backend)
    net = build_model("seed-cnn", dtype=np.float64, seed=1, device=d)
    rng = np.random.default_rng(0)
    x, y = d.asarray(rng.standard_normal((4, 1, 28, 28))), d.asarray(rng.integers(0, 10, 4))
    opt = SGD(net.parameters(), lr=0.1, momentum=0.5, weight_decay=1e-3)
    velocity = [np.zeros(p.shape) for p in net.parameters()]
    for _ in range(2):  # two steps, so the momentum term is exercised
        before = [to_host(p.data).copy() for p in net.parameters()]
        opt.zero_grad()
        _grads(net, x, y)
        grads = [to_host(p.grad).copy() for p in net.parameters()]
        opt.step()
        for i, (p, w, g) in enumerate(zip(net.parameters(), before, grads)):
            velocity[i] = 0.5 * velocity[i] + (g + 1e-3 * w)  # biases decayed too
            np.testing.assert_allclose(to_host(p.data), w - 0.1 * velocity[i], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_overwrites_every_gradient(backend, bias):
    """The training step relies on it (it skips zero_grad): whatever a gradient held before, backward
    leaves exactly the gradient of this batch -- for convolutions (strided or not, with or without
    bias and input gradient) and linear layers."""
    d = dev(backend)
    rng = np.random.default_rng(0)
    net = Network([Conv2D(2, 3, 3, padding=1, bias=bias, rng=rng, dtype=np.float64), ReLU(),
                   Conv2D(3, 4, 3, stride=2, bias=bias, rng=rng, dtype=np.float64), Flatten(),
                   Linear(4 * 3 * 3, 5, bias=bias, rng=rng, dtype=np.float64)]).to(d)
    x, y = d.asarray(rng.standard_normal((3, 2, 7, 7))), d.asarray(rng.integers(0, 5, 3))
    for p in net.parameters():
        p.grad.fill(0)
    _grads(net, x, y)
    clean = [to_host(p.grad).copy() for p in net.parameters()]
    assert all(np.abs(g).sum() > 0 for g in clean)
    for p in net.parameters():
        p.grad.fill(np.nan)
    _grads(net, x, y)
    for p, g in zip(net.parameters(), clean):
        np.testing.assert_array_equal(to_host(p.grad), g, err_msg=p.name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adam_steps_equal_the_textbook_update(backend):
    d = dev(backend)
    layer = Linear(3, 2, rng=np.random.default_rng(0), dtype=np.float64)
    net = Network([layer]).to(d)
    opt = Adam(net.parameters(), lr=0.01, weight_decay=0.1)
    w = to_host(layer.weight.data).copy()
    m = v = np.zeros_like(w)
    rng = np.random.default_rng(1)
    for t in range(1, 4):
        g = rng.standard_normal(w.shape)
        layer.weight.grad[...] = d.asarray(g)
        layer.bias.grad.fill(0)
        opt.step()
        g = g + 0.1 * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(to_host(layer.weight.data), w, rtol=1e-12)


def test_optimizer_arguments_are_checked():
    net = build_model("mlp1")
    with pytest.raises(ValueError, match="lr > 0"):
        SGD(net.parameters(), lr=-1)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        get_optimizer("rmsprop", net.parameters())
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_checkpoint_round_trip_is_bit_exact_and_training_continues_identically(backend, opt_name, tmp_path):
    d = dev(backend)
    rng = np.random.default_rng(0)
    batches = [(d.asarray(rng.standard_normal((8, 1, 28, 28)).astype(np.float32)), d.asarray(rng.integers(0, 10, 8)))
               for _ in range(6)]
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-3) if opt_name == "sgd" else dict(lr=1e-3)

    def run(net, opt, bs):
        for x, y in bs:
            opt.zero_grad()
            _grads(net, x, y)
            opt.step()

    net_a = build_model("seed-cnn", seed=5, device=d)
    opt_a = get_optimizer(opt_name, net_a.parameters(), **kw)
    run(net_a, opt_a, batches)

    net_b = build_model("seed-cnn", seed=5, device=d)
    opt_b = get_optimizer(opt_name, net_b.parameters(), **kw)
    run(net_b, opt_b, batches[:3])
    path = net_b.save(tmp_path / "ck.npz", opt_b, meta={"epoch": 1})
    net_c = build_model("seed-cnn", seed=99, device=d)
    opt_c = get_optimizer(opt_name, net_c.parameters(), **kw)
    assert net_c.load(path, opt_c) == {"epoch": 1}
    for pb, pc in zip(net_b.parameters(), net_c.parameters()):
        assert np.array_equal(to_host(pb.data), to_host(pc.data))  # bit-exact
    assert opt_c.steps == 3
    run(net_c, opt_c, batches[3:])
    for pa, pc in zip(net_a.parameters(), net_c.parameters()):
        assert np.array_equal(to_host(pa.data), to_host(pc.data))
    # no pickle inside: numpy can read it with pickling disabled
    with np.load(path, allow_pickle=False) as z:
        assert "param/conv1.weight" in z.files


def test_bad_checkpoints_are_refused_clearly(tmp_path):
    net = build_model("seed-cnn")
    with pytest.raises(CheckpointError, match="does not exist"):
        net.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable xcnn checkpoint"):
        net.load(tmp_path / "junk.npz")
    build_model("mlp1").save(tmp_path / "mlp.npz")
    with pytest.raises(CheckpointError, match="does not fit network"):
        net.load(tmp_path / "mlp.npz")
    net.save(tmp_path / "noopt.npz")
    with pytest.raises(CheckpointError, match="no optimizer state"):
        net.load(tmp_path / "noopt.npz", SGD(net.parameters()))


def test_atomic_save_leaves_the_previous_checkpoint_intact_on_failure(tmp_path, monkeypatch):
    import xcnn.io as xio

    net = build_model("seed-cnn", seed=1)
    path = net.save(tmp_path / "ck.npz")
    original = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(xio.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        build_model("seed-cnn", seed=2).save(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]  # no temp file left behind


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_cnn_learns_a_separable_problem(backend):
    """~300 SGD steps with the report's settings on a synthetic 10-class problem (a bright square at a
    class-specific position) must drive the loss far below its start."""
    d = dev(backend)
    rng = np.random.default_rng(0)
    n = 1000
    labels = rng.integers(0, 10, n)
    x = rng.uniform(-0.5, -0.3, (n, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 5)
        x[i, 0, 4 + 12 * r: 12 + 12 * r, 1 + 5 * q: 6 + 5 * q] += 0.8
    xd, yd = d.asarray(x), d.asarray(labels)
    net = build_model("seed-cnn", seed=0, device=d)
    opt = SGD(net.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    first = _grads(net, xd[:50], yd[:50])
    losses = []
    for step in range(300):
        i = (step * 50) % n
        opt.zero_grad()
        losses.append(_grads(net, xd[i:i + 50], yd[i:i + 50]))
        opt.step()
    assert np.mean(losses[-20:]) < 0.1 * first, (first, losses[-20:])
    acc = float((to_host(net.predict(xd)).argmax(1) == labels).mean())
    assert acc > 0.95


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
    assert [getattr(layer, "needs_input_grad", None) for layer in mlp.layers if layer.parameters()] == [False, True, True]
    with pytest.raises(ValueError, match="names must be unique"):
        Network([ReLU(name="a"), ReLU(name="a")])


# ---------------------------------------------------------------- device abstraction

def test_device_specs():
    assert str(get_device("cpu")) == "cpu" and get_device("cpu").xp is np
    for bad in ("gpu", "cuda:x", "cpu:1", "", "auto:0"):
        with pytest.raises(ValueError, match="unknown device"):
            get_device(bad)


def test_cuda_without_a_gpu_says_why_and_how_to_fix(monkeypatch, capsys):
    monkeypatch.setattr(backend, "gpu_unavailable_reason", lambda index=0: "CuPy is not installed (test). "
                        "Install it with `pip install xcnn[cuda12]`.")
    with pytest.raises(DeviceError, match=r"'cuda:1' is not usable: CuPy is not installed.*xcnn\[cuda12\].*--device cpu"):
        get_device("cuda:1")
    assert get_device("auto").kind == "cpu"
    assert "no usable GPU, running on CPU" in capsys.readouterr().err


def test_real_reason_is_specific_when_cupy_is_missing():
    reason = backend.gpu_unavailable_reason(0)
    if reason is None:
        pytest.skip("a GPU is usable here")
    assert "CuPy" in reason and ("pip install xcnn[cuda" in reason or "driver" in reason or "nvidia-smi" in reason)


def test_mixing_host_and_device_arrays_is_refused(monkeypatch):
    """With a stand-in for CuPy (its ndarray type is all the check looks at), mixing raises."""

    class FakeCupy:
        class ndarray:  # noqa: N801 - mirrors cupy.ndarray
            pass

    monkeypatch.setattr(backend, "_CUPY", FakeCupy)
    dev_arr = FakeCupy.ndarray()
    assert backend.get_array_module(dev_arr) is FakeCupy
    with pytest.raises(DeviceError, match="mixed host .* and device"):
        backend.get_array_module(np.zeros(2), dev_arr)
    layer = Linear(2, 2)
    dev_arr.shape, dev_arr.dtype = (1, 2), np.dtype(np.float32)
    with pytest.raises(DeviceError, match="Linear: mixed host"):
        layer.forward(dev_arr)


def test_entering_a_cuda_device_makes_it_current_and_nests(monkeypatch):
    """`with device:` enters CuPy's device context (checked with a stand-in for CuPy) and leaves it."""
    log = []

    class FakeDeviceContext:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            log.append(("enter", self.index))
            return self

        def __exit__(self, *exc):
            log.append(("exit", self.index))
            return False

    class FakeCupy:
        class cuda:  # noqa: N801 - mirrors cupy.cuda
            Device = FakeDeviceContext

    monkeypatch.setattr(backend, "_CUPY", FakeCupy)
    d0, d1 = backend.Device("cuda", 0), backend.Device("cuda", 1)
    with d0:
        with d1:
            assert log == [("enter", 0), ("enter", 1)]
        with get_device("cpu"):
            pass
    assert log == [("enter", 0), ("enter", 1), ("exit", 1), ("exit", 0)]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_device_rng_is_reproducible(backend_name):
    d = dev(backend_name)
    a = to_host(d.rng(7).standard_normal(5))
    b = to_host(d.rng(7).standard_normal(5))
    c = to_host(d.rng(8).standard_normal(5))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
