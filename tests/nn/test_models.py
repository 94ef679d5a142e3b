"""Model presets (xcnn/nn/models.py): parameter counts, the report's initialisation, seeding,
loading a checkpoint onto a device, and that the seed CNN learns."""
from __future__ import annotations

import numpy as np
import pytest

from xcnn.errors import CheckpointError, ConfigError
from xcnn.nn import SGD, SoftmaxCrossEntropy, build_model, load_model
from xcnn.nn.models import PARAMETER_COUNTS


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
    w1, b1, w2, b2, w3, b3 = (p.data for p in net.parameters())
    assert w1.shape == (4, 1, 5, 5) and w2.shape == (8, 4, 3, 3) and w3.shape == (10, 392)
    assert not b1.any() and not b2.any() and not b3.any()
    allconv = np.concatenate([w1.ravel(), w2.ravel()])
    assert 0.8 < allconv.std() < 1.2  # N(0, 1)
    assert 0.09 < w3.std() < 0.11  # N(0, 0.1^2)
    assert np.array_equal(build_model("seed-cnn", seed=3).parameters()[0].data, w1)
    assert not np.array_equal(build_model("seed-cnn", seed=4).parameters()[0].data, w1)
    # the weights do not depend on the dtype asked for (drawn in float64, then cast)
    np.testing.assert_array_equal(build_model("seed-cnn", seed=3, dtype=np.float64).parameters()[0].data
                                  .astype(np.float32), w1)


@pytest.mark.parametrize("call, message", [
    (lambda: build_model("resnet"), "unknown model 'resnet'.*seed-cnn"),
    (lambda: build_model("mlp1", init="xavier"), "unknown initialisation 'xavier'"),
    (lambda: build_model("mlp1", dtype=np.float16), "float32 or float64"),
])
def test_bad_presets_are_refused(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_load_model_rebuilds_the_preset_on_the_device(tmp_path, cuda_emu):
    net = build_model("lenet5", seed=7, dtype=np.float64)
    net.save(tmp_path / "ck.npz", meta={"epoch": 3})
    loaded, ck = load_model(tmp_path / "ck.npz", device="cuda")
    assert loaded.name == "lenet5" and loaded.dtype == np.float64 and str(loaded.device) == "cuda:0"
    assert ck["meta"] == {"epoch": 3}
    for a, b in zip(net.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(cuda_emu.host(b.data), a.data)


def test_load_model_refuses_a_network_that_is_not_a_preset(tmp_path):
    from xcnn.nn import Linear, Network

    Network([Linear(3, 2)], name="mine").save(tmp_path / "ck.npz")
    with pytest.raises(CheckpointError, match="network 'mine', which is not a preset"):
        load_model(tmp_path / "ck.npz")


def test_seed_cnn_learns_a_separable_problem(backend):
    """~300 SGD steps with the report's settings on a synthetic 10-class problem (a bright square at a
    class-specific position) must drive the loss far below its start."""
    rng = np.random.default_rng(0)
    n = 1000
    labels = rng.integers(0, 10, n)
    x = rng.uniform(-0.5, -0.3, (n, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 5)
        x[i, 0, 4 + 12 * r: 12 + 12 * r, 1 + 5 * q: 6 + 5 * q] += 0.8
    xd, yd = backend.asarray(x), backend.asarray(labels)
    net = build_model("seed-cnn", seed=0, device=backend.device)
    opt = SGD(net.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
    loss_fn = SoftmaxCrossEntropy()
    losses = []
    for step in range(300):
        i = (step * 50) % n
        losses.append(float(loss_fn(net.forward(xd[i:i + 50]), yd[i:i + 50])))
        net.backward(loss_fn.backward())
        opt.step()
    assert np.mean(losses[-20:]) < 0.1 * losses[0], (losses[0], losses[-20:])
    acc = float((backend.host(net.predict(xd)).argmax(1) == labels).mean())
    assert acc > 0.95
