"""ONNX export checked by ONNX Runtime: every preset on the MNIST test set (synthetic digits without it),
every layer kind with odd shapes, strides and paddings, the graph's contract, errors and the CLI.

Tolerance: ONNX Runtime's logits and xcnn's agree within 1e-5 of each image's largest logit (float32).
Element-wise relative error means nothing for a logit near zero -- its rounding error is set by the
terms summed into it, which are as large as the largest logits -- so each row's largest |logit| is the
scale. Float32's epsilon is 1.2e-7; GEMMs and convolutions summing up to a few hundred products in
another order stay within a few dozen epsilons of that scale, well inside 1e-5. Float64: 1e-12.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, digits, row_relative_error, train_preset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra: pip install -e '.[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs the [onnx] extra: pip install -e '.[onnx]'")
from onnx.reference import ReferenceEvaluator  # noqa: E402

from xcnn.apps.export import app as export_app  # noqa: E402
from xcnn.data import normalize  # noqa: E402
from xcnn.interop import ExportError  # noqa: E402
from xcnn.interop.onnx_export import export_onnx, to_onnx  # noqa: E402
from xcnn.nn.architecture import save_network  # noqa: E402
from xcnn.nn.layer import Layer  # noqa: E402
from xcnn.nn.layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sigmoid, Tanh  # noqa: E402
from xcnn.nn.models import PRESETS, build_model  # noqa: E402
from xcnn.nn.network import Network  # noqa: E402

runner = CliRunner()
PRESET_NAMES = list(PRESETS)


def session(path_or_model):
    model = path_or_model.SerializeToString() if hasattr(path_or_model, "SerializeToString") else str(path_or_model)
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- #
# Every preset, trained, on the whole test set
# --------------------------------------------------------------------------- #

@pytest.fixture(scope="module")
def dataset():
    return digits()


@pytest.fixture(scope="module")
def trained(dataset):
    train_x, train_y, *_ = dataset
    return {name: train_preset(name, train_x, train_y, steps=150) for name in PRESET_NAMES}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_matches_onnxruntime_on_the_test_set(name, trained, dataset, tmp_path):
    net = trained[name]
    *_, test_x, test_y, source = dataset
    path = export_onnx(net, tmp_path / f"{name}.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)

    x = normalize(test_x)
    ours = net.predict(x)
    theirs = session(path).run(["logits"], {"image": x})[0]
    assert theirs.dtype == np.float32 and theirs.shape == (len(x), 10)
    err = row_relative_error(theirs, ours)
    assert err <= 1e-5, f"{name}: ONNX Runtime differs by {err:.2e} of the largest logit"
    # the same decisions, except where the top two logits are closer than the tolerance
    top2 = np.sort(ours, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-5 * np.abs(ours).max(axis=1)
    assert (ours.argmax(1) == theirs.argmax(1))[clear].all()
    if source == "mnist":  # the weights are really trained: the comparison runs on meaningful logits
        assert (ours.argmax(1) == test_y).mean() > 0.85, f"{name} trained too little to be a fair test"


# --------------------------------------------------------------------------- #
# The graph's contract
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("name", PRESET_NAMES)
def test_graph_names_dynamic_batch_opset_and_one_node_per_layer(name, tmp_path):
    net = build_model(name)
    model = onnx.load(str(export_onnx(net, tmp_path / "m.onnx")))
    g = model.graph
    assert [o.domain for o in model.opset_import] == [""] and model.opset_import[0].version == 17
    assert [i.name for i in g.input] == ["image"] and [o.name for o in g.output] == ["logits"]
    in_dims = g.input[0].type.tensor_type.shape.dim
    out_dims = g.output[0].type.tensor_type.shape.dim
    assert in_dims[0].dim_param == "batch" and [d.dim_value for d in in_dims[1:]] == [1, 28, 28]
    assert out_dims[0].dim_param == "batch" and out_dims[1].dim_value == 10
    expected = {"Conv2D": "Conv", "Linear": "Gemm", "ReLU": "Relu", "AvgPool2D": "AveragePool",
                "MaxPool2D": "MaxPool", "Flatten": "Flatten"}
    assert [n.op_type for n in g.node] == [expected[type(layer).__name__] for layer in net.layers]
    assert [n.name for n in g.node] == [layer.name for layer in net.layers]
    for node in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm":
            assert attrs["transB"] == 1
        if node.op_type == "AveragePool":
            assert attrs["count_include_pad"] == 1 and attrs["ceil_mode"] == 0
    # the weights are the network's, bit for bit
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    assert set(inits) == set(net.state_dict())
    for k, v in net.state_dict().items():
        assert np.array_equal(inits[k], v)
    # any batch size runs
    s = session(model)
    for n in (1, 3, 64):
        x = np.random.default_rng(n).uniform(-0.5, 0.5, (n, 1, 28, 28)).astype(np.float32)
        assert s.run(None, {"image": x})[0].shape == (n, 10)


def test_other_opsets_pass_the_checker_and_run():
    net = build_model("lenet5")
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (5, 1, 28, 28)).astype(np.float32)
    for opset in (13, 19, onnx.defs.onnx_opset_version()):
        model = to_onnx(net, opset=opset)
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == opset
        if opset <= 21:  # what this ONNX Runtime is sure to implement
            assert row_relative_error(session(model).run(None, {"image": x})[0], net.predict(x)) <= 1e-5


# --------------------------------------------------------------------------- #
# Every layer kind, odd shapes, strides and paddings
# --------------------------------------------------------------------------- #

def _rng_net(layers, dtype=np.float32, seed=0):
    """Random weights and biases (biases non-zero, so a dropped bias would show)."""
    net = Network(layers, name="odd")
    rng = np.random.default_rng(seed)
    for p in net.parameters():
        p.data[...] = rng.standard_normal(p.shape).astype(dtype) * (0.5 if p.data.ndim > 1 else 0.3)
    return net


def _odd_nets():
    r = np.random.default_rng(0)
    return {
        # the example: every layer kind in one chain
        "issue-example": ((1, 13, 11), lambda dt: [
            Conv2D(1, 3, 3, stride=2, padding=1, dtype=dt, rng=r), Tanh(), MaxPool2D(3, stride=2, padding=1),
            Conv2D(3, 5, 1, dtype=dt, rng=r), Sigmoid(), AvgPool2D(2, stride=1, padding=1), Flatten(),
            Linear(5 * 5 * 4, 7, dtype=dt, rng=r)]),
        # non-square kernels, strides and paddings; no biases; pooling windows overlapping and padded
        "non-square": ((2, 9, 16), lambda dt: [
            Conv2D(2, 4, (3, 5), stride=(2, 1), padding=(1, 2), bias=False, dtype=dt, rng=r), ReLU(),
            AvgPool2D((3, 2), stride=(1, 2), padding=(1, 1)), MaxPool2D((2, 3), stride=(2, 1), padding=(0, 1)),
            Flatten(), Linear(4 * 2 * 9, 6, bias=False, dtype=dt, rng=r), Sigmoid(), Linear(6, 3, dtype=dt, rng=r)]),
        # a 1x1 image through a full-size kernel, strides larger than the window
        "tiny": ((3, 5, 5), lambda dt: [
            Conv2D(3, 2, 5, dtype=dt, rng=r), Tanh(), Flatten(), Linear(2, 2, dtype=dt, rng=r)]),
        "strided-pools": ((1, 17, 17), lambda dt: [
            Conv2D(1, 2, 2, stride=3, dtype=dt, rng=r), MaxPool2D(1, stride=2), AvgPool2D(3, stride=1, padding=1),
            ReLU(), Flatten(), Linear(2 * 3 * 3, 4, dtype=dt, rng=r)]),
        "mlp": ((3, 5, 7), lambda dt: [
            Flatten(), Linear(105, 11, dtype=dt, rng=r), Tanh(), Linear(11, 11, dtype=dt, rng=r), Sigmoid(),
            Linear(11, 4, dtype=dt, rng=r)]),
    }


ODD = _odd_nets()


@pytest.mark.parametrize("case", list(ODD))
def test_every_layer_kind_with_odd_shapes_float32(case, tmp_path):
    shape, make = ODD[case]
    net = _rng_net(make(np.float32))
    path = export_onnx(net, tmp_path / "odd.onnx", input_shape=shape)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim[1:]] for v in inferred.graph.value_info}
    for layer, s in zip(net.layers[:-1], net.output_shapes((1, *shape))):  # ONNX's shape arithmetic agrees
        assert dims[layer.name] == list(s[1:])
    for n in (1, 7):
        x = np.random.default_rng(n).uniform(-1, 1, (n, *shape)).astype(np.float32)
        ours = net.predict(x)
        assert row_relative_error(session(path).run(None, {"image": x})[0], ours) <= 1e-5
        # and against ONNX's own reference implementation (plain NumPy, another code base)
        ref = ReferenceEvaluator(model).run(None, {"image": x})[0]
        assert row_relative_error(ref, ours) <= 1e-5


@pytest.mark.parametrize("case", list(ODD))
def test_float64_networks_export_as_double_models(case, tmp_path):
    """Float64 exports float64. ONNX Runtime's CPU provider lacks float64 Conv and AveragePool kernels, so
    conv networks are checked against ONNX's reference evaluator; the MLP runs in ONNX Runtime too."""
    shape, make = ODD[case]
    net = _rng_net(make(np.float64))
    path = export_onnx(net, tmp_path / "odd64.onnx", input_shape=shape)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x = np.random.default_rng(0).uniform(-1, 1, (4, *shape))
    ours = net.predict(x)
    ref = ReferenceEvaluator(model).run(None, {"image": x})[0]
    assert ref.dtype == np.float64 and row_relative_error(ref, ours) <= 1e-12
    if case == "mlp":
        assert row_relative_error(session(path).run(None, {"image": x})[0], ours) <= 1e-12
    # and cast to float32 on the way out, for runtimes without float64 kernels
    m32 = to_onnx(net, input_shape=shape, dtype=np.float32)
    out = session(m32).run(None, {"image": x.astype(np.float32)})[0]
    assert out.dtype == np.float32 and row_relative_error(out, ours) <= 1e-5


@st.composite
def chain(draw):
    """A random conv -> activation -> pool -> flatten -> linear chain that fits its input."""
    C, out = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    H = draw(st.integers(max(1, k[0] - 2 * p[0]), 12))
    W = draw(st.integers(max(1, k[1] - 2 * p[1]), 12))
    OH, OW = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    pk = (draw(st.integers(1, min(3, OH))), draw(st.integers(1, min(3, OW))))
    pp = (draw(st.integers(0, pk[0] // 2)), draw(st.integers(0, pk[1] // 2)))
    ps = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    PH, PW = (OH + 2 * pp[0] - pk[0]) // ps[0] + 1, (OW + 2 * pp[1] - pk[1]) // ps[1] + 1
    act = draw(st.sampled_from([ReLU, Sigmoid, Tanh]))
    pool = draw(st.sampled_from([AvgPool2D, MaxPool2D]))
    bias = draw(st.booleans())
    layers = [Conv2D(C, out, k, stride=s, padding=p, bias=bias), act(), pool(pk, stride=ps, padding=pp), Flatten(),
              Linear(out * PH * PW, 3)]
    return (C, H, W), layers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=chain(), n=st.integers(1, 4))
def test_random_chains_match_onnxruntime(case, n):
    shape, layers = case
    net = _rng_net(layers)
    model = to_onnx(net, input_shape=shape)
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(n).uniform(-1, 1, (n, *shape)).astype(np.float32)
    assert row_relative_error(session(model).run(None, {"image": x})[0], net.predict(x)) <= 1e-5


# --------------------------------------------------------------------------- #
# Errors, atomic writes
# --------------------------------------------------------------------------- #

def test_bad_requests_are_refused_clearly(tmp_path):
    net = build_model("seed-cnn")
    with pytest.raises(ExportError, match=r"does not take inputs of shape \(batch, 1, 32, 32\).*input_shape"):
        to_onnx(net, input_shape=(1, 32, 32))
    with pytest.raises(ExportError, match=r"input_shape must be \(C, H, W\)"):
        to_onnx(net, input_shape=(28, 28))
    with pytest.raises(ExportError, match="opset must be an int from 13"):
        to_onnx(net, opset=9)
    with pytest.raises(ExportError, match="float32 or float64"):
        to_onnx(net, dtype=np.float16)

    class Custom(Layer):
        def forward(self, x):
            return x

    with pytest.raises(ExportError, match="'custom1' \\(Custom\\) has no ONNX export"):
        to_onnx(Network([Flatten(), Custom(name="custom1")]))


def test_a_failed_export_leaves_the_old_file_alone(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    with pytest.raises(ExportError):
        export_onnx(build_model("mlp1"), path, input_shape=(1, 20, 20))
    assert path.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["model.onnx"]


# --------------------------------------------------------------------------- #
# The command
# --------------------------------------------------------------------------- #

def test_cli_exports_a_checkpoint_and_compares_with_onnxruntime(tmp_path):
    net = build_model("seed-cnn", seed=5)
    net.save(tmp_path / "ck.npz")
    res = runner.invoke(export_app, [str(tmp_path / "ck.npz"), str(tmp_path / "out.onnx")])
    assert res.exit_code == 0, res.output
    assert "onnx.checker passed" in res.output and "ONNX Runtime and xcnn agree" in res.output
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (9, 1, 28, 28)).astype(np.float32)
    assert row_relative_error(session(tmp_path / "out.onnx").run(None, {"image": x})[0], net.predict(x)) <= 1e-5


def test_cli_float64_conv_network_says_how_to_run_it_in_onnxruntime(tmp_path):
    build_model("seed-cnn", dtype=np.float64).save(tmp_path / "ck.npz")
    res = runner.invoke(export_app, [str(tmp_path / "ck.npz"), str(tmp_path / "out.onnx")])
    assert res.exit_code == 0, res.output
    assert "float64" in res.output and "--dtype float32" in res.output
    res = runner.invoke(export_app, [str(tmp_path / "ck.npz"), str(tmp_path / "out32.onnx"), "--dtype", "float32"])
    assert res.exit_code == 0 and "agree" in res.output, res.output
    assert onnx.load(str(tmp_path / "out32.onnx")).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
    for args, match in [([str(tmp_path / "missing.npz"), str(tmp_path / "o.onnx")], "does not exist"),
                        ([str(ROOT / "pyproject.toml"), str(tmp_path / "o.onnx")], "not a readable xcnn checkpoint")]:
        res = runner.invoke(export_app, args)
        assert res.exit_code == 2 and res.output.startswith("error: ") and match in res.output
        assert res.output.count("\n") == 1 and "Traceback" not in res.output
    build_model("mlp1").save(tmp_path / "ck.npz")
    res = runner.invoke(export_app, [str(tmp_path / "ck.npz"), str(tmp_path / "o.onnx"), "--opset", "3"])
    assert res.exit_code == 2 and "opset must be an int from 13" in res.output
    res = runner.invoke(export_app, [str(tmp_path / "ck.npz"), str(tmp_path)])  # OUT names a directory
    assert res.exit_code == 2 and "is a directory" in res.output and res.output.count("\n") == 1
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access  # a read-only folder, as the kernel answers for one (root's chmod would not refuse)
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if mode & os.W_OK and str(p).startswith(str(ro))
                        else real(p, mode, *a, **k))
    res = runner.invoke(export_app, [str(tmp_path / "ck.npz"), str(ro / "o.onnx")])
    assert res.exit_code == 2 and "is not writable" in res.output and res.output.count("\n") == 1
    assert not list(ro.iterdir())


def test_cli_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch):
    build_model("mlp1").save(tmp_path / "ck.npz")
    monkeypatch.setitem(sys.modules, "onnx", None)  # what a plain install looks like to `import onnx`
    res = runner.invoke(export_app, [str(tmp_path / "ck.npz"), str(tmp_path / "o.onnx")])
    assert res.exit_code == 2 and "pip install 'xcnn[onnx]'" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "o.onnx").exists()


def test_python_dash_m_xcnn_export(tmp_path):
    save_network(build_model("mlp1"), tmp_path / "ck.npz")
    proc = subprocess.run([sys.executable, "-m", "xcnn.export", str(tmp_path / "ck.npz"), str(tmp_path / "m.onnx"),
                           "--no-verify"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and Path(tmp_path / "m.onnx").is_file()
