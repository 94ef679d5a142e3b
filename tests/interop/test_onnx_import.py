"""ONNX import: round trips through export, a torch-exported CNN (a committed fixture, so this runs
without torch) and, when torch is installed, LeNets exported by torch.onnx live -- logits against
torch's, one fine-tuning step against torch's SGD, then evaluate/predict/visualize/export on the
imported checkpoint; hand-built graphs for each op's semantics; a clear refusal for everything else."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, digits, mnist_data_dir, mnist_or_none, row_relative_error
from matplotlib import image as mpimg
from typer.testing import CliRunner

onnx = pytest.importorskip("onnx", reason="needs the [onnx] extra: pip install -e '.[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs the [onnx] extra: pip install -e '.[onnx]'")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from xcnn.apps.evaluate import app as evaluate_app  # noqa: E402
from xcnn.apps.evaluate import evaluate_checkpoint  # noqa: E402
from xcnn.apps.export import app as export_app  # noqa: E402
from xcnn.apps.import_onnx import app as import_app  # noqa: E402
from xcnn.apps.predict import app as predict_app  # noqa: E402
from xcnn.apps.predict import predict_images, read_images, to_mnist  # noqa: E402
from xcnn.apps.visualize import app as visualize_app  # noqa: E402
from xcnn.apps.visualize import visualize  # noqa: E402
from xcnn.data import normalize  # noqa: E402
from xcnn.errors import CheckpointError  # noqa: E402
from xcnn.interop.onnx_export import export_onnx, to_onnx  # noqa: E402
from xcnn.interop.onnx_import import OnnxImportError, convert, import_onnx, read_model  # noqa: E402
from xcnn.nn.architecture import network_architecture, save_network  # noqa: E402
from xcnn.nn.layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sigmoid, Tanh  # noqa: E402
from xcnn.nn.losses import SoftmaxCrossEntropy  # noqa: E402
from xcnn.nn.models import PRESETS, build_model, load_model  # noqa: E402
from xcnn.nn.network import Network  # noqa: E402
from xcnn.nn.optim import SGD  # noqa: E402

runner = CliRunner()
DATA = ROOT / "tests" / "interop" / "data"


def shapes_only(specs):
    return [{k: v for k, v in s.items() if k != "name"} for s in specs]


def run_ort(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


# --------------------------------------------------------------------------- #
# Round trips
# --------------------------------------------------------------------------- #

def _odd_net(dtype):
    r = np.random.default_rng(1)
    net = Network([Conv2D(2, 3, (3, 5), stride=(2, 1), padding=(1, 2), dtype=dtype, rng=r), Tanh(),
                   MaxPool2D(3, stride=2, padding=1), Conv2D(3, 5, 1, bias=False, dtype=dtype, rng=r), Sigmoid(),
                   AvgPool2D(2, stride=1, padding=1), Flatten(), Linear(5 * 4 * 9, 7, dtype=dtype, rng=r), ReLU(),
                   Linear(7, 4, bias=False, dtype=dtype, rng=r)], name="odd")
    for p in net.parameters():
        p.data[...] = r.standard_normal(p.shape).astype(dtype)
    return net, (2, 9, 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", [*PRESETS, "odd"])
def test_export_then_import_is_the_same_network(name, dtype):
    if name == "odd":
        net, shape = _odd_net(dtype)
    else:
        net, shape = build_model(name, dtype=dtype, seed=3), (1, 28, 28)
    back = import_onnx(to_onnx(net, input_shape=shape))
    assert back.name == net.name and back.dtype == net.dtype
    assert shapes_only(network_architecture(back)) == shapes_only(network_architecture(net))
    for k, v in net.state_dict().items():
        assert np.array_equal(back.state_dict()[k], v)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (5, *shape)).astype(dtype)
    assert np.array_equal(back.predict(x), net.predict(x))  # same layers, same weights: bit for bit


# --------------------------------------------------------------------------- #
# A CNN exported by torch.onnx (committed, so no torch is needed)
# --------------------------------------------------------------------------- #

def test_torch_exported_fixture_matches_torchs_logits():
    ref = np.load(DATA / "torch_small_cnn_logits.npz")
    imported = convert(read_model(DATA / "torch_small_cnn.onnx"))
    net = imported.network
    assert [s["type"] for s in network_architecture(net)] == [
        "Conv2D", "ReLU", "AvgPool2D", "Conv2D", "Tanh", "MaxPool2D", "Flatten", "Linear", "ReLU", "Linear"]
    pool = net.layers[2]
    assert (pool.kernel_size, pool.stride, pool.padding) == ((3, 3), (2, 2), (1, 1))
    assert imported.input_shape == (1, 28, 28)
    assert any("Reshape" in n and "Flatten" in n for n in imported.notes)  # x.view(x.size(0), -1)
    assert row_relative_error(net.predict(ref["x"]), ref["logits"]) <= 1e-5


def test_imported_checkpoint_works_with_predict_evaluate_visualize_and_export(tmp_path):
    """The CLI writes a checkpoint that carries its architecture; the library's commands take it."""
    ck = tmp_path / "small.npz"
    res = runner.invoke(import_app, [str(DATA / "torch_small_cnn.onnx"), str(ck)])
    assert res.exit_code == 0, res.output
    assert "total parameters" in res.output and "ONNX Runtime and xcnn agree" in res.output
    net, meta = load_model(ck)
    assert net.name == "torch_small_cnn" and meta["meta"]["input_shape"] == [1, 28, 28]
    assert meta["meta"]["source"]["producer"].startswith("pytorch")
    ref = np.load(DATA / "torch_small_cnn_logits.npz")
    assert row_relative_error(net.predict(ref["x"]), ref["logits"]) <= 1e-5

    # python -m xcnn.predict: a PNG of a digit; its class is the network's on to_mnist's pixels
    img = np.zeros((60, 50))
    img[10:50, 22:28] = 1.0
    mpimg.imsave(tmp_path / "one.png", img, cmap="gray")
    res = runner.invoke(predict_app, [str(ck), str(tmp_path / "one.png"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    z = net.predict(normalize(to_mnist(read_images(tmp_path / "one.png")[0][1])[None]))[0]
    assert res.output.split(": ")[1].split()[0] == str(int(z.argmax()))

    # python -m xcnn.export: ONNX Runtime agrees with the imported network
    res = runner.invoke(export_app, [str(ck), str(tmp_path / "again.onnx")])
    assert res.exit_code == 0 and "agree" in res.output, res.output
    assert row_relative_error(run_ort(onnx.load(str(tmp_path / "again.onnx")), ref["x"]), ref["logits"]) <= 1e-5

    ds = mnist_or_none()
    if ds is None:
        pytest.skip("MNIST is not on this machine: evaluate and visualize need its test set")
    data_args = [] if mnist_data_dir() is None else ["--data-dir", mnist_data_dir()]
    # python -m xcnn.evaluate: the accuracy is the network's on the whole test set
    res = runner.invoke(evaluate_app, [str(ck), "--device", "cpu", "--out", str(tmp_path / "eval"), *data_args])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    logits = net.predict(normalize(ds.test_images))
    assert result["n"] == 10_000 and result["accuracy"] == float((logits.argmax(1) == ds.test_labels).mean())
    # python -m xcnn.visualize: the maps saved are the network's first layers on those test images
    res = runner.invoke(visualize_app, [str(ck), "--layer", "conv1", "--layer", "relu1", "--layer", "conv2",
                                        "--index", "0", "--index", "3", "--out", str(tmp_path / "maps"), *data_args])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "maps").glob("*.png")) == [
        "small_conv1.png", "small_conv2.png", "small_relu1.png"]
    h = normalize(ds.test_images[[0, 3]])
    for layer in net.layers[:4]:
        h = layer.forward(h)
    np.testing.assert_array_equal(np.load(tmp_path / "maps" / "small_conv2.npz")["maps"], h)


def test_python_dash_m_xcnn_import_onnx(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xcnn.import_onnx", str(DATA / "torch_small_cnn.onnx"),
                           str(tmp_path / "ck.npz"), "--no-verify", "--name", "small"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and load_model(tmp_path / "ck.npz")[0].name == "small"


# --------------------------------------------------------------------------- #
# Live torch: LeNets exported by torch.onnx, compared with torch, fine-tuned against torch's SGD
# --------------------------------------------------------------------------- #

def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")


def _torch_export(model, example, *, dynamic=True):
    torch = _torch()
    buf = io.BytesIO()
    kw = {"dynamic_axes": {"x": {0: "N"}, "y": {0: "N"}}} if dynamic else {}
    with torch.no_grad():
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], **kw)
    return buf.getvalue()


def _lenet(flatten):
    torch = _torch()
    from torch import nn

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
            self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
            x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
            x = x.view(x.size(0), -1) if flatten == "view" else torch.flatten(x, 1)
            return self.f3(torch.relu(self.f2(torch.relu(self.f1(x)))))

    torch.manual_seed(0)
    return LeNet().eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("flatten", ["view", "flatten"])
def test_torch_lenet_imports_matches_torch_and_fine_tunes_like_torch(flatten, tmp_path):
    torch = _torch()
    model = _lenet(flatten)
    net = import_onnx(_torch_export(model, torch.zeros(1, 1, 28, 28)))
    train_x, train_y, test_x, _, _ = digits(n_test=2000)
    x = normalize(test_x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert row_relative_error(net.predict(x), expected) <= 1e-5

    # one SGD step on the same batch, in both frameworks: the same weights afterwards
    xb, yb = normalize(train_x[:64]), train_y[:64].astype(np.int64)
    loss = SoftmaxCrossEntropy()
    opt = SGD(net.parameters(), lr=0.05)
    net.train()
    loss(net.forward(xb), yb)
    opt.zero_grad()
    net.backward(loss.backward())
    opt.step()
    model.train()
    topt = torch.optim.SGD(model.parameters(), lr=0.05)
    topt.zero_grad()
    torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb)).backward()
    topt.step()
    model.eval()
    theirs = [p.detach().numpy() for p in model.parameters()]
    ours = [p.data for p in net.parameters()]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert row_relative_error(net.predict(x), expected) <= 1e-5

    # the fine-tuned network saves, loads, exports, predicts, evaluates and draws like any other
    ck = save_network(net, tmp_path / "tuned.npz")
    again, _ = load_model(ck)
    assert np.array_equal(again.predict(x), net.predict(x))
    out = export_onnx(again, tmp_path / "tuned.onnx")
    assert row_relative_error(run_ort(onnx.load(str(out)), x), expected) <= 1e-5
    img = np.ones((40, 40))
    img[8:32, 18:23] = 0.0  # a dark 1 on white paper
    mpimg.imsave(tmp_path / "one.png", img, cmap="gray")
    (_, k, probs), = predict_images(ck, [tmp_path / "one.png"], device="cpu")
    with torch.no_grad():
        z = model(torch.from_numpy(normalize(to_mnist(read_images(tmp_path / "one.png")[0][1])[None]))).numpy()[0]
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(probs, p, rtol=1e-4, atol=1e-6)
    ds = mnist_or_none()
    if ds is not None:
        result = evaluate_checkpoint(ck, device="cpu", limit=1000, data_dir=mnist_data_dir())
        with torch.no_grad():
            torch_pred = model(torch.from_numpy(normalize(ds.test_images[:1000]))).numpy().argmax(1)
        assert result["n"] == 1000  # torch's accuracy on the same images, give or take a near-tie
        assert abs(result["accuracy"] - (torch_pred == ds.test_labels[:1000]).mean()) <= 0.002
        (png,) = visualize(ck, ["relu2"], [0], tmp_path / "maps", data_dir=mnist_data_dir())
        maps = np.load(tmp_path / "maps" / "tuned_relu2.npz")["maps"]
        assert png.name == "tuned_relu2.png" and maps.shape == (1, 16, 10, 10)
        with torch.no_grad():
            first = torch.from_numpy(normalize(ds.test_images[:1]))
            r2 = torch.relu(model.c2(torch.max_pool2d(torch.relu(model.c1(first)), 2))).numpy()
        np.testing.assert_allclose(maps, r2, rtol=1e-4, atol=1e-5 * np.abs(r2).max())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_sequential_variants_import():
    """nn.Flatten, padded average and max pooling, Tanh/Sigmoid, bias-free layers, a static batch, and an
    MLP on flat (N, 784) input."""
    torch = _torch()
    from torch import nn

    torch.manual_seed(1)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Tanh(), nn.AvgPool2d(3, stride=2, padding=1),
                        nn.MaxPool2d(2, padding=1), nn.Dropout(0.3), nn.Flatten(), nn.Linear(256, 10, bias=False),
                        nn.Sigmoid()).eval()
    mlp = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (6, 1, 28, 28)).astype(np.float32)
    for model, example, dynamic, feed in [
        (cnn, torch.zeros(2, 1, 28, 28), False, x[:2]),  # static batch of 2
        (cnn, torch.zeros(1, 1, 28, 28), True, x),
        (mlp, torch.zeros(1, 784), True, x.reshape(6, 784)),
    ]:
        imported = convert(read_model(_torch_export(model, example, dynamic=dynamic)))
        with torch.no_grad():
            expected = model(torch.from_numpy(feed)).numpy()
        assert row_relative_error(imported.network.predict(feed.reshape(len(feed), 1, 28, 28)), expected) <= 1e-5
    assert imported.input_shape == (1, 28, 28) and any("(N, 784)" in n for n in imported.notes)


# --------------------------------------------------------------------------- #
# Hand-built graphs: each op's semantics against ONNX's reference evaluator
# --------------------------------------------------------------------------- #

def graph(nodes, inits, in_shape, *, dtype=TensorProto.FLOAT, batch="N", out="y", opset=17, out_shape=None):
    """A model with input ``x`` (batch, *in_shape) and output ``out`` (its shape inferred unless given)."""
    inits = [numpy_helper.from_array(np.asarray(v, np.float32 if dtype == TensorProto.FLOAT else np.float64)
                                     if np.asarray(v).dtype.kind == "f" else np.asarray(v), k)
             for k, v in inits.items()]
    g = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("x", dtype, [batch, *in_shape])],
                          [helper.make_tensor_value_info(out, dtype, out_shape)], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model)  # fills in the output's shape, which the checker wants


R = np.random.default_rng(7)
W8x12, W12x8, B8 = R.standard_normal((8, 12)), R.standard_normal((12, 8)), R.standard_normal(8)


@pytest.mark.parametrize("case", [
    "gemm-transB0-alpha-beta", "gemm-C-row", "gemm-scalar-C", "matmul-add", "add-then-matmul-order",
    "matmul-no-bias", "identity-dropout-flatten-negative-axis", "reshape-constant", "reshape-zero-copy",
    "reshape-shape-graph", "unsqueeze-attr-opset11",
])
def test_hand_built_graphs_compute_what_onnx_does(case):
    flat = [helper.make_node("Flatten", ["x"], ["f"], axis=1)]
    flatten_gemm = [helper.make_node("Reshape", ["x", "s"], ["f"]),
                    helper.make_node("Gemm", ["f", "B"], ["y"], transB=1)]
    shape = (3, 2, 2)
    if case == "gemm-transB0-alpha-beta":
        m = graph(flat + [helper.make_node("Gemm", ["f", "B", "C"], ["y"], alpha=0.5, beta=2.0, transB=0)],
                  {"B": W12x8, "C": B8}, shape)
    elif case == "gemm-C-row":
        m = graph(flat + [helper.make_node("Gemm", ["f", "B", "C"], ["y"], transB=1)],
                  {"B": W8x12, "C": B8[None]}, shape)
    elif case == "gemm-scalar-C":
        m = graph(flat + [helper.make_node("Gemm", ["f", "B", "C"], ["y"], transB=1)],
                  {"B": W8x12, "C": np.array([0.75])}, shape)
    elif case == "matmul-add":
        m = graph(flat + [helper.make_node("MatMul", ["f", "B"], ["m"]), helper.make_node("Add", ["m", "C"], ["y"])],
                  {"B": W12x8, "C": B8}, shape)
    elif case == "add-then-matmul-order":  # the bias may come first in the Add
        m = graph(flat + [helper.make_node("MatMul", ["f", "B"], ["m"]), helper.make_node("Add", ["C", "m"], ["y"])],
                  {"B": W12x8, "C": B8[None]}, shape)
    elif case == "matmul-no-bias":
        m = graph(flat + [helper.make_node("MatMul", ["f", "B"], ["y"])], {"B": W12x8}, shape)
    elif case == "identity-dropout-flatten-negative-axis":
        m = graph([helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Dropout", ["i"], ["d"]),
                   helper.make_node("Flatten", ["d"], ["f"], axis=-3),
                   helper.make_node("Gemm", ["f", "B"], ["y"], transB=1)], {"B": W8x12}, shape)
    elif case == "reshape-constant":
        m = graph(flatten_gemm,
                  {"B": W8x12, "s": np.array([-1, 12], np.int64)}, shape)
    elif case == "reshape-zero-copy":
        m = graph(flatten_gemm,
                  {"B": W8x12, "s": np.array([0, -1], np.int64)}, shape)
    elif case == "reshape-shape-graph":  # Shape -> Slice -> Concat([N], [-1]) -> Reshape, with a Cast on the way
        m = graph([helper.make_node("Shape", ["x"], ["sh"]),
                   helper.make_node("Slice", ["sh", "z", "o"], ["n"]),
                   helper.make_node("Cast", ["n"], ["n64"], to=TensorProto.INT64),
                   helper.make_node("Concat", ["n64", "m1"], ["s"], axis=0),
                   *flatten_gemm],
                  {"B": W8x12, "z": np.array([0], np.int64), "o": np.array([1], np.int64),
                   "m1": np.array([-1], np.int64)}, shape)
    else:  # "unsqueeze-attr-opset11": Unsqueeze's axes as an attribute, Gather of a scalar index
        m = graph([helper.make_node("Shape", ["x"], ["sh"]),
                   helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
                   helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
                   helper.make_node("Concat", ["n1", "m1"], ["s"], axis=0),
                   *flatten_gemm],
                  {"B": W8x12, "zero": np.array(0, np.int64), "m1": np.array([-1], np.int64)}, shape, opset=11,
                  out_shape=["N", 8])
    onnx.checker.check_model(m, full_check=True)
    net = import_onnx(m)
    x = np.random.default_rng(1).uniform(-1, 1, (5, *shape)).astype(np.float32)
    expected = ReferenceEvaluator(m).run(None, {"x": x})[0]
    assert row_relative_error(net.predict(x), expected) <= 1e-5


CONV_W = R.standard_normal((2, 1, 3, 3))


@pytest.mark.parametrize("nodes, inits, in_shape, message", [
    ([helper.make_node("LeakyRelu", ["x"], ["y"], name="act7")], {}, (1, 4, 4),
     "unsupported op LeakyRelu in node 'act7'"),
    ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Softmax", ["r"], ["y"], name="probs")], {}, (3,),
     "unsupported op Softmax in node 'probs'"),
    ([helper.make_node("Conv", ["x", "W"], ["y"], name="c", dilations=[2, 2])], {"W": CONV_W}, (1, 8, 8),
     "node 'c' (Conv): dilations [2, 2] are not supported"),
    ([helper.make_node("Conv", ["x", "W"], ["y"], name="c", group=2)], {"W": CONV_W}, (2, 8, 8),
     "group=2 is not supported"),
    ([helper.make_node("Conv", ["x", "W"], ["y"], name="c", pads=[1, 1, 0, 0])], {"W": CONV_W}, (1, 8, 8),
     "pads [1, 1, 0, 0] are not symmetric"),
    ([helper.make_node("Conv", ["x", "W"], ["y"], name="c", auto_pad="SAME_UPPER")], {"W": CONV_W}, (1, 8, 8),
     "auto_pad=SAME_UPPER is not supported"),
    ([helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], ceil_mode=1)], {}, (1, 5, 5),
     "node 'p' (MaxPool): ceil_mode=1 is not supported"),
    ([helper.make_node("AveragePool", ["x"], ["y"], name="p", kernel_shape=[3, 3], pads=[1, 1, 1, 1])], {}, (1, 5, 5),
     "count_include_pad=0 with pads [1, 1] is not supported"),
    ([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "B"], ["y"], name="g", transA=1)],
     {"B": W8x12}, (12,), "node 'g' (Gemm): transA=1 is not supported"),
    ([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")], {"s": np.array([-1, 2, 6], np.int64)}, (3, 2, 2),
     "node 'r' (Reshape): reshapes"),
    ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"], name="skip")], {}, (1, 4, 4),
     "unsupported op Add in node 'skip'"),
    ([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["y"], name="branch")], {}, (1, 4, 4),
     "node 'branch' (Sigmoid) reads 'x', which is neither a constant nor the current activation"),
    ([helper.make_node("Conv", ["x", "W"], ["y"], name="c")], {"W": R.standard_normal((2, 3, 3, 3))}, (1, 8, 8),
     "node 'c' (Conv): Conv2D"),
    ([helper.make_node("Relu", ["x"], ["y"])], {}, ("H", 4, 4), "with every dimension but the batch fixed"),
    ([helper.make_node("Conv", ["x", "W", "b"], ["y"], name="c")], {"W": CONV_W, "b": np.zeros(3)}, (1, 8, 8),
     "node 'c' (Conv): bias of shape [3] for 2 output channels"),
    ([helper.make_node("Shape", ["x"], ["sh"]), helper.make_node("Gather", ["sh", "i"], ["n"], name="g"),
      helper.make_node("Relu", ["x"], ["y"])], {"i": np.array(7, np.int64)}, (1, 4, 4),
     "node 'g' (Gather): cannot evaluate it on its constants (IndexError"),
])
def test_unsupported_graphs_are_refused_naming_op_and_node(nodes, inits, in_shape, message):
    m = graph(nodes, inits, in_shape)
    with pytest.raises(OnnxImportError) as info:
        import_onnx(m)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and isinstance(info.value, CheckpointError)  # one line, an xcnn error


def test_unreadable_inputs_are_refused(tmp_path):
    with pytest.raises(OnnxImportError, match="does not exist"):
        read_model(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a protobuf at all" * 3)
    with pytest.raises(OnnxImportError, match="not a readable ONNX model"):
        read_model(tmp_path / "junk.onnx")
    half = graph([helper.make_node("Relu", ["x"], ["y"])], {}, (1, 2, 2), dtype=TensorProto.INT32)
    with pytest.raises(OnnxImportError, match="element type INT32.*float32 or float64"):
        import_onnx(half)
    invalid = graph([helper.make_node("Relu", ["nowhere"], ["y"])], {}, (1, 2, 2))
    with pytest.raises(OnnxImportError, match="not valid"):
        read_model(invalid)


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
    bad = graph([helper.make_node("LeakyRelu", ["x"], ["y"], name="lr")], {}, (1, 4, 4))
    (tmp_path / "bad.onnx").write_bytes(bad.SerializeToString())
    for src, match in [(tmp_path / "none.onnx", "does not exist"), (tmp_path / "bad.onnx", "unsupported op LeakyRelu")]:
        res = runner.invoke(import_app, [str(src), str(tmp_path / "o.npz")])
        assert res.exit_code == 2 and res.output.startswith("error: ") and match in res.output, res.output
        assert res.output.count("\n") == 1 and not (tmp_path / "o.npz").exists()
    res = runner.invoke(import_app, [str(DATA / "torch_small_cnn.onnx"), str(tmp_path)])  # OUT names a directory
    assert res.exit_code == 2 and "is a directory" in res.output and res.output.count("\n") == 1
    monkeypatch.setitem(sys.modules, "onnx", None)
    res = runner.invoke(import_app, [str(DATA / "torch_small_cnn.onnx"), str(tmp_path / "o.npz")])
    assert res.exit_code == 2 and "pip install 'xcnn[onnx]'" in res.output
