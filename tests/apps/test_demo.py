"""The demo's server without a browser: what it computes for a drawing (against xcnn.predict's own
function and a float64 NumPy forward pass), its endpoints over real HTTP, its errors and its command line."""
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from helpers import ROOT
from matplotlib import image as mpimg
from numpy.lib.stride_tricks import sliding_window_view
from typer.testing import CliRunner

pytest.importorskip("starlette", reason="needs the [demo] extra: pip install -e '.[demo]'")
pytest.importorskip("uvicorn", reason="needs the [demo] extra: pip install -e '.[demo]'")
from xcnn.apps.demo.model import DemoModel, quantise  # noqa: E402
from xcnn.apps.demo.server import app as demo_app  # noqa: E402
from xcnn.apps.demo.server import bind, make_app, serve_in_thread  # noqa: E402
from xcnn.apps.predict import predict_images, read_images, to_mnist  # noqa: E402
from xcnn.nn.architecture import save_network  # noqa: E402
from xcnn.nn.layers import Conv2D, Flatten, Linear, Tanh  # noqa: E402
from xcnn.nn.models import build_model  # noqa: E402
from xcnn.nn.network import Network  # noqa: E402
from xcnn.nn.serialize import load_checkpoint  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    build_model("seed-cnn", seed=2).save(d / "seed.npz")
    build_model("mlp1").save(d / "mlp1.npz")
    r = np.random.default_rng(0)
    odd = Network([Conv2D(1, 3, 5, stride=2, dtype=np.float32, rng=r), Tanh(), Conv2D(3, 2, 3, rng=r), Flatten(),
                   Linear(2 * 10 * 10, 10, rng=r)], name="odd")
    save_network(odd, d / "odd.npz")
    return d


@pytest.fixture(scope="module")
def server(checkpoints):
    """The seed-cnn page served over real HTTP on a free port."""
    with serve_in_thread(make_app(DemoModel(checkpoints / "seed.npz"))) as running:
        yield running.url


def request(url, body=None):
    """``(status, content type, body bytes)`` of a GET, or of a POST when ``body`` is given."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "image/png"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type", ""), err.read()


def digit_png(path):
    """A dark '7' on light paper, 200x160, as a drawing program would save it (RGBA)."""
    img = np.ones((200, 160))
    img[30:46, 30:130] = 0.0
    for r in range(46, 180):
        c = int(130 - (r - 46) * 0.45)
        img[r, c - 8:c + 8] = 0.0
    mpimg.imsave(path, img, cmap="gray", vmin=0, vmax=1)
    return path


def decode(layer):
    levels = np.frombuffer(base64.b64decode(layer["data"]), np.uint8).reshape(layer["shape"])
    return layer["lo"] + levels / 255 * (layer["hi"] - layer["lo"])


# --------------------------------------------------------------------------- #
# An independent forward pass (float64, sliding windows)
# --------------------------------------------------------------------------- #

def conv(x, w, b, stride=1, pad=0):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, w.shape[2:], axis=(1, 2))[:, ::stride, ::stride]  # C, OH, OW, KH, KW
    y = np.einsum("chwij,ocij->ohw", win, w)
    return y + (b[:, None, None] if b is not None else 0)


def avgpool2(x):
    C, H, W = x.shape
    return x[:, :H // 2 * 2, :W // 2 * 2].reshape(C, H // 2, 2, W // 2, 2).mean(axis=(2, 4))


def seed_cnn_maps(params, x):
    p = {k: v.astype(np.float64) for k, v in params.items()}
    c1 = conv(x, p["conv1.weight"], p["conv1.bias"], pad=2)
    r1 = np.maximum(c1, 0)
    c2 = conv(avgpool2(r1), p["conv2.weight"], p["conv2.bias"], pad=1)
    r2 = np.maximum(c2, 0)
    z = p["fc1.weight"] @ avgpool2(r2).reshape(-1) + p["fc1.bias"]
    return {"conv1": c1, "relu1": r1, "conv2": c2, "relu2": r2}, z


# --------------------------------------------------------------------------- #
# What one drawing gives
# --------------------------------------------------------------------------- #

def test_a_drawing_gives_predicts_probabilities_and_the_independent_maps(checkpoints, server, tmp_path):
    ck = checkpoints / "seed.npz"
    png = digit_png(tmp_path / "seven.png")
    status, ctype, body = request(server + "api/predict", png.read_bytes())
    assert status == 200 and ctype == "application/json", body
    out = json.loads(body)

    # exactly xcnn.predict: its own function on the same file gives the same class and probabilities
    (_, k, probs), = predict_images(ck, [png], device="cpu")
    assert out["prediction"] == k
    np.testing.assert_allclose(out["probabilities"], probs, rtol=1e-5, atol=1e-7)
    assert abs(sum(out["probabilities"]) - 1) < 1e-9
    seen = np.frombuffer(base64.b64decode(out["input"]), np.uint8).reshape(28, 28)
    assert np.array_equal(seen, to_mnist(read_images(png)[0][1]))

    # the maps: conv and ReLU after each, equal to a float64 forward pass within one quantisation level
    ref, z = seed_cnn_maps(load_checkpoint(ck)["params"], seen[None] / 255.0 - 0.5)
    assert [layer["name"] for layer in out["layers"]] == ["conv1", "relu1", "conv2", "relu2"]
    for layer in out["layers"]:
        assert layer["shape"] == list(ref[layer["name"]].shape)
        step = (layer["hi"] - layer["lo"]) / 255
        np.testing.assert_allclose(decode(layer), ref[layer["name"]], atol=0.5 * step + 1e-4 * layer["hi"])
        assert layer["cmap"] == ("RdBu_r" if ref[layer["name"]].min() < 0 else "viridis")
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(out["probabilities"], p, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, layers", [("mlp1", []), ("odd", ["conv1", "tanh1", "conv2"])])
def test_map_layers_are_each_conv_and_the_activation_after_it(checkpoints, name, layers, tmp_path):
    model = DemoModel(checkpoints / f"{name}.npz")
    info = model.info()
    assert [layer["name"] for layer in info["layers"]] == layers
    out = model.analyse_png(digit_png(tmp_path / "d.png").read_bytes())
    assert [layer["name"] for layer in out["layers"]] == layers
    assert len(out["probabilities"]) == 10


def test_info_lists_classes_shapes_and_the_figures_colour_maps(server):
    import matplotlib

    info = json.loads(request(server + "api/info")[2])
    assert info["model"] == "seed-cnn" and info["parameters"] == 4330 and info["classes"] == list("0123456789")
    assert [(layer["name"], layer["shape"]) for layer in info["layers"]] == [
        ("conv1", [4, 28, 28]), ("relu1", [4, 28, 28]), ("conv2", [8, 14, 14]), ("relu2", [8, 14, 14])]
    for name in ("viridis", "RdBu_r"):
        table = np.array(info["colormaps"][name])
        assert table.shape == (256, 3)
        expected = np.rint(matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255)
        assert np.array_equal(table, expected)


def test_quantise_keeps_the_figures_scales():
    signed = np.array([[[-2.0, 0.0], [1.0, 0.5]]])
    q = quantise(signed)
    assert (q["lo"], q["hi"], q["cmap"]) == (-2.0, 2.0, "RdBu_r")  # symmetric: zero sits mid-scale
    levels = np.frombuffer(base64.b64decode(q["data"]), np.uint8)
    assert list(levels) == [0, 128, 191, 159]
    q = quantise(np.array([[[0.0, 3.0]]]))
    assert (q["lo"], q["hi"], q["cmap"]) == (0.0, 3.0, "viridis")
    q = quantise(np.zeros((2, 3, 3)))  # a blank layer keeps an honest, non-empty scale
    assert (q["lo"], q["hi"]) == (0.0, 1.0)
    assert not np.frombuffer(base64.b64decode(q["data"]), np.uint8).any()


# --------------------------------------------------------------------------- #
# Endpoints and errors
# --------------------------------------------------------------------------- #

def test_the_page_and_its_assets_are_served(server):
    status, ctype, page = request(server)
    assert status == 200 and "text/html" in ctype
    for asset, kind in (("/static/demo.js", "javascript"), ("/static/demo.css", "text/css")):
        assert asset.encode() in page
        status, ctype, _ = request(server + asset[1:])
        assert status == 200 and kind in ctype
    assert request(server + "static/nothing.js")[0] == 404
    assert request(server + "api/predict")[0] == 405


def test_bad_drawings_get_a_clear_error(server):
    status, _, body = request(server + "api/predict", b"GIF89a not a png")
    assert status == 400 and json.loads(body) == {"error": "the drawing is not a PNG image"}
    status, _, body = request(server + "api/predict", b"\x89PNG\r\n\x1a\n" + b"broken")
    assert status == 400 and "not a readable PNG" in json.loads(body)["error"]
    # an oversized body is refused from its Content-Length, before any of it is read
    host, port = server.split("/")[2].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Type", "image/png")
    conn.putheader("Content-Length", str(4 * 1024 * 1024 + 1))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "at most 4,194,304 are accepted" in json.loads(r.read())["error"]
    conn.close()


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "does not exist"),
    (["{bad}"], "not a readable xcnn checkpoint"),
    (["{seed}", "--device", "tpu"], "tpu"),
    (["{seed}", "--port", "{busy}"], "cannot listen on 127.0.0.1:"),
])
def test_cli_refuses_before_serving_with_one_line(checkpoints, tmp_path, args, message):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    with bind("127.0.0.1", 0) as busy:
        fill = {"missing": tmp_path / "none.npz", "bad": bad, "seed": checkpoints / "seed.npz",
                "busy": busy.getsockname()[1]}
        res = runner.invoke(demo_app, [a.format(**fill) for a in args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and message in res.output and res.output.count("\n") == 1


def test_cli_without_the_extra_says_how_to_install_it(checkpoints, monkeypatch):
    monkeypatch.setitem(sys.modules, "starlette", None)
    res = runner.invoke(demo_app, [str(checkpoints / "seed.npz")])
    assert res.exit_code == 2 and "pip install 'xcnn[demo]'" in res.output and res.output.count("\n") == 1


def test_a_model_for_other_inputs_is_refused(checkpoints, tmp_path):
    net = Network([Flatten(), Linear(3 * 8 * 8, 10)], name="rgb8")
    save_network(net, tmp_path / "rgb.npz", meta={"input_shape": [3, 8, 8]})
    res = runner.invoke(demo_app, [str(tmp_path / "rgb.npz")])
    assert res.exit_code == 2 and "draws 28x28 digits" in res.output


def test_python_dash_m_xcnn_demo_serves_until_stopped(checkpoints):
    """The real command: prints its URL, answers, and stops on SIGINT."""
    proc = subprocess.Popen([sys.executable, "-m", "xcnn.demo", str(checkpoints / "seed.npz"), "--port", "0",
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = proc.stdout.readline()
        assert "xcnn demo: seed-cnn" in line and "http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        for _ in range(100):
            try:
                info = json.load(urllib.request.urlopen(url + "api/info", timeout=5))
                break
            except OSError:
                time.sleep(0.1)
        assert info["model"] == "seed-cnn"
        assert b"<canvas id=\"pad\"" in urllib.request.urlopen(url, timeout=5).read()
    finally:
        proc.send_signal(2)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -2, 130), proc.stderr.read()


def test_bind_port_zero_gives_a_free_port():
    with bind("127.0.0.1", 0) as a, bind("127.0.0.1", 0) as b:
        assert a.getsockname()[1] != b.getsockname()[1]
        with socket.create_connection(a.getsockname(), timeout=2):
            pass
