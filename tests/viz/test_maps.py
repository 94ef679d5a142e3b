"""Feature maps and kernels (xcnn/viz/maps.py): ``feature_maps(net, x, layer)`` on normalised images
``x (N, 1, H, W)`` equals an independent float64 forward pass (naive loops from references.py), the
layer outputs come back in eval mode with the training flag restored, and the figures are written."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
from references import naive_conv, naive_pool

from xcnn.errors import ShapeError
from xcnn.nn.models import build_model
from xcnn.viz import maps


def _reference(net, x):
    """Every layer output of a seed-cnn, from its parameters, by naive loops in float64."""
    p = {q.name: q.data.astype(np.float64) for q in net.parameters()}
    out = {"conv1": naive_conv(x, p["conv1.weight"], p["conv1.bias"], 1, 2)}
    out["relu1"] = np.maximum(out["conv1"], 0)
    out["pool1"] = naive_pool(out["relu1"], 2, 2, 0, "avg")[0]
    out["conv2"] = naive_conv(out["pool1"], p["conv2.weight"], p["conv2.bias"], 1, 1)
    out["relu2"] = np.maximum(out["conv2"], 0)
    out["pool2"] = naive_pool(out["relu2"], 2, 2, 0, "avg")[0]
    z = out["pool2"].reshape(len(x), -1) @ p["fc1.weight"].T + p["fc1.bias"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out["probs"] = e / e.sum(axis=1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def net_and_images():
    net = build_model("seed-cnn", dtype=np.float64, seed=3)
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    x = u8[:, None].astype(np.float64) / 255 - 0.5  # normalised as xcnn.data.normalize does
    return net, x, _reference(net, x)


@pytest.mark.parametrize("layer", ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"])
def test_feature_maps_equal_an_independent_forward_pass(net_and_images, layer):
    net, x, ref = net_and_images
    r = maps.feature_maps(net, x, layer)
    np.testing.assert_allclose(r["maps"], ref[layer], rtol=1e-10, atol=1e-10)
    assert r["probs"].dtype == np.float64
    np.testing.assert_allclose(r["probs"], ref["probs"], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(r["pred"], ref["probs"].argmax(axis=1))
    np.testing.assert_allclose(r["prob"], ref["probs"].max(axis=1), rtol=1e-10)


def test_feature_maps_take_normalised_images_not_pixels(net_and_images):
    net, x, _ = net_and_images
    with pytest.raises(ShapeError, match="float32 or float64"):
        maps.feature_maps(net, np.zeros((2, 1, 28, 28), np.uint8), "relu1")
    net32 = build_model("seed-cnn", seed=3)
    assert maps.feature_maps(net32, x.astype(np.float32), "relu1")["maps"].shape == (2, 4, 28, 28)


def test_unknown_and_non_map_layers_are_refused_with_the_choices(net_and_images):
    net, x, _ = net_and_images
    with pytest.raises(ValueError, match="unknown layer 'nope'; seed-cnn has conv1, relu1"):
        maps.feature_maps(net, x, "nope")
    with pytest.raises(ValueError, match=r"outputs shape \(2, 10\), not feature maps; choose one of conv1, relu1, "
                                         r"pool1, conv2, relu2, pool2"):
        maps.feature_maps(net, x, "fc1")


@pytest.mark.parametrize("training", [True, False])
def test_activations_stop_at_upto_run_in_eval_mode_and_restore_the_flag(net_and_images, training):
    net, x, ref = net_and_images
    net.train(training)
    seen = []
    real_forward = net.layers[0].forward

    def spy(h):
        seen.append(net.layers[0].training)
        return real_forward(h)

    net.layers[0].forward = spy
    try:
        acts = maps.activations(net, x, upto="pool1")
    finally:
        del net.layers[0].forward
    assert list(acts) == ["conv1", "relu1", "pool1"] and seen == [False]
    assert net.training is training and all(layer.training is training for layer in net.layers)
    np.testing.assert_allclose(acts["pool1"], ref["pool1"], rtol=1e-10, atol=1e-10)
    assert list(maps.activations(net, x)) == [layer.name for layer in net.layers]
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        maps.activations(net, x, upto="fc9")
    net.train(True)


def test_feature_map_layers():
    assert maps.feature_map_layers(build_model("seed-cnn")) == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
    assert maps.feature_map_layers(build_model("lenet5"))[-1] == "pool2"  # max pooling counts; after Flatten none
    assert maps.feature_map_layers(build_model("mlp1")) == []


def test_first_of_classes():
    labels = np.array([3, 1, 4, 1, 2, 4, 3])
    assert maps.first_of_classes(labels, (1, 2, 3, 4)) == [1, 4, 0, 2]
    with pytest.raises(ValueError, match="no image of class 7 in the 7 labels"):
        maps.first_of_classes(labels, (1, 7))


def test_feature_map_figure_is_written(tmp_path, net_and_images):
    net, x, ref = net_and_images
    u8 = np.clip(np.rint((x[:, 0] + 0.5) * 255), 0, 255).astype(np.uint8)
    dead = ref["conv1"].copy()
    dead[1] = 0.0  # a row of constant maps still gets a visible scale
    kw = dict(labels=np.array([1, 2]), pred=np.array([1, 3]), prob=np.array([0.9, 0.4]), indices=[5, 9])
    p1 = maps.plot_feature_maps(u8, dead, title="conv1", path=tmp_path / "a" / "m.png", **kw)
    p2 = maps.plot_feature_maps(u8, ref["relu2"], title="relu2", path=tmp_path / "r.png", **kw)
    for p, (rows, cols) in ((p1, (2, 5)), (p2, (2, 9))):
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 50 * rows and img.shape[1] > 50 * cols  # a row per image
    assert p1 == tmp_path / "a" / "m.png" and sorted(q.name for q in tmp_path.iterdir()) == ["a", "r.png"]


def test_kernel_figure_is_written(tmp_path):
    a, b = build_model("seed-cnn", seed=0), build_model("seed-cnn", seed=1)
    p = maps.plot_kernels({"epoch 0": a.layers[0].weight.data, "epoch 5": b.layers[0].weight.data},
                          tmp_path / "k.png")
    q = maps.plot_kernels({"epoch 0": a.layers[0].weight.data}, tmp_path / "k1.png")
    assert mpimg.imread(p).shape[0] > mpimg.imread(q).shape[0]  # two rows of kernels against one
