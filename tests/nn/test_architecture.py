"""Architectures in checkpoints: layer specs round-trip through JSON, load_model rebuilds any network from
them, presets and checkpoints without an architecture load as before, and bad specs are refused clearly."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from xcnn.apps.predict import app as predict_app
from xcnn.errors import CheckpointError, ConfigError
from xcnn.nn.architecture import (LAYER_TYPES, ArchitectureError, build_layers, build_network, layer_spec,
                                  network_architecture, save_network)
from xcnn.nn.layer import Layer
from xcnn.nn.layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sigmoid, Tanh
from xcnn.nn.models import PRESETS, build_model, load_model
from xcnn.nn.network import Network

runner = CliRunner()


def custom_net(dtype=np.float32):
    """Every layer type, with non-default arguments everywhere (not a preset)."""
    rng = np.random.default_rng(0)
    net = Network([Conv2D(1, 3, (3, 5), stride=(2, 1), padding=(1, 2), bias=False, dtype=dtype, rng=rng), Tanh(),
                   MaxPool2D(3, stride=2, padding=1), Conv2D(3, 4, 1, dtype=dtype, rng=rng), Sigmoid(),
                   AvgPool2D((2, 3), stride=(1, 2), padding=(1, 1)), ReLU(), Flatten(),
                   Linear(4 * 6 * 5, 5, bias=False, dtype=dtype, rng=rng), ReLU(), Linear(5, 10, dtype=dtype, rng=rng)],
                  name="custom")
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    return net


def test_specs_describe_every_constructor_argument():
    net = custom_net()
    specs = json.loads(json.dumps(network_architecture(net)))  # JSON-ready as it is
    assert [s["type"] for s in specs] == [type(layer).__name__ for layer in net.layers]
    assert set(s["type"] for s in specs) == set(LAYER_TYPES)
    assert specs[0] == {"type": "Conv2D", "name": "conv1", "in_channels": 1, "out_channels": 3, "kernel_size": [3, 5],
                        "stride": [2, 1], "padding": [1, 2], "bias": False}
    assert specs[5] == {"type": "AvgPool2D", "name": "pool2", "kernel_size": [2, 3], "stride": [1, 2],
                        "padding": [1, 1]}
    assert specs[8] == {"type": "Linear", "name": "fc1", "in_features": 120, "out_features": 5, "bias": False}
    assert specs[1] == {"type": "Tanh", "name": "tanh1"}


@pytest.mark.parametrize("name", [*PRESETS, "custom"])
def test_built_layers_equal_the_described_ones(name):
    net = custom_net() if name == "custom" else build_model(name)
    specs = network_architecture(net)
    again = build_network(specs, name=net.name, dtype=net.dtype)
    assert network_architecture(again) == specs
    assert again.summary((1, 1, 28, 28) if name != "custom" else (1, 1, 17, 19)) == \
        net.summary((1, 1, 28, 28) if name != "custom" else (1, 1, 17, 19))
    assert [p.name for p in again.parameters()] == [p.name for p in net.parameters()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_load_model_rebuilds_a_non_preset_network_from_its_checkpoint(tmp_path, dtype):
    net = custom_net(dtype)
    save_network(net, tmp_path / "custom.npz", meta={"note": "kept"})
    back, ck = load_model(tmp_path / "custom.npz")
    assert ck["meta"]["note"] == "kept" and back.name == "custom" and back.dtype == dtype
    x = np.random.default_rng(1).standard_normal((3, 1, 17, 19)).astype(dtype)
    assert np.array_equal(back.predict(x), net.predict(x))


def test_presets_and_checkpoints_without_an_architecture_load_as_before(tmp_path):
    net = build_model("lenet5", seed=4)
    net.save(tmp_path / "old.npz", meta={"epoch": 3})  # what the trainer writes: no architecture
    back, ck = load_model(tmp_path / "old.npz")
    assert "architecture" not in ck["meta"] and back.name == "lenet5"
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert np.array_equal(back.predict(x), net.predict(x))


def test_a_non_preset_without_architecture_says_how_to_save_it(tmp_path):
    custom_net().save(tmp_path / "c.npz")
    with pytest.raises(CheckpointError, match="not a preset.*carries no architecture.*save_network"):
        load_model(tmp_path / "c.npz")


@pytest.mark.parametrize("specs, message", [
    ([], "non-empty list"),
    ({"type": "ReLU"}, "non-empty list"),
    (["ReLU"], "layer 0: expected a dict with a 'type'"),
    ([{"type": "Flatten"}, {"type": "Dropout"}], "layer 1: unknown layer type 'Dropout'; known types: Conv2D"),
    ([{"type": "Linear", "in_features": 4}], r"layer 0 \(Linear\): missing arguments \['bias', 'out_features'\]"),
    ([{"type": "ReLU", "inplace": True}], r"unexpected \['inplace'\]"),
    ([{"type": "Conv2D", "in_channels": 0, "out_channels": 2, "kernel_size": 3, "stride": 1, "padding": 0,
       "bias": True}], r"layer 0 \(Conv2D\): Conv2D: in_channels must be a positive int"),
    ([{"type": "MaxPool2D", "kernel_size": [2, 2], "stride": [1, 1], "padding": [2, 2]}], "at most half the window"),
    ([{"type": "ReLU", "name": "a"}, {"type": "Tanh", "name": "a"}], "names must be unique"),
])
def test_bad_specs_are_refused_clearly(specs, message):
    with pytest.raises(ArchitectureError, match=message) as info:
        build_network(specs)
    assert isinstance(info.value, ConfigError) and "\n" not in str(info.value)  # one line, an xcnn error


def test_layers_without_a_spec_are_refused():
    class Custom(Layer):
        pass

    class MyReLU(ReLU):
        pass

    for layer in (Custom(), MyReLU()):
        with pytest.raises(ArchitectureError, match="cannot describe layer"):
            layer_spec(layer)


def test_a_checkpoint_with_a_broken_architecture_is_a_one_line_cli_error(tmp_path):
    net = build_model("mlp1")
    net.save(tmp_path / "bad.npz", meta={"architecture": [{"type": "Flatten"}, {"type": "Softmax"}]})
    with pytest.raises(CheckpointError, match="bad.npz.*unknown layer type 'Softmax'"):
        load_model(tmp_path / "bad.npz")
    from matplotlib import image
    image.imsave(tmp_path / "d.png", np.eye(28))
    res = runner.invoke(predict_app, [str(tmp_path / "bad.npz"), str(tmp_path / "d.png"), "--device", "cpu"])
    assert res.exit_code == 2 and "unknown layer type 'Softmax'" in res.output and res.output.count("\n") == 1


def test_build_layers_takes_the_dtype_and_placeholder_weights_are_deterministic():
    specs = network_architecture(build_model("seed-cnn"))
    a, b = build_layers(specs, dtype=np.float64), build_layers(specs, dtype=np.float64)
    assert a[0].weight.data.dtype == np.float64
    assert np.array_equal(a[0].weight.data, b[0].weight.data)
