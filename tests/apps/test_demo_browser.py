"""The demo page in a real browser: headless Chromium (the system's, driven by Playwright) draws a stroke
with the mouse and one with a finger; the page must show, for the drawing it sent, what xcnn.predict
computes for that very PNG, and render one map per conv channel."""
from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib import image as mpimg

pytest.importorskip("starlette", reason="needs the [demo] extra: pip install -e '.[demo]'")
pytest.importorskip("uvicorn", reason="needs the [demo] extra: pip install -e '.[demo]'")
pytest.importorskip("playwright", reason="needs playwright (in the dev extra): pip install -e '.[dev]'")

from xcnn.apps.demo.browser import (STROKES, chromium_path, draw_with_mouse, draw_with_touch, open_page,  # noqa: E402
                                    stroke_points, wait_until_idle)
from xcnn.apps.demo.model import DemoModel  # noqa: E402
from xcnn.apps.demo.server import make_app, serve_in_thread  # noqa: E402
from xcnn.apps.predict import predict_images, read_images, to_mnist  # noqa: E402
from xcnn.nn.models import build_model  # noqa: E402

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="no Chromium: apt-get install chromium (or set XCNN_CHROMIUM)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ck = tmp_path_factory.mktemp("ck") / "lenet5.npz"
    build_model("lenet5", seed=1).save(ck)
    with serve_in_thread(make_app(DemoModel(ck))) as running:
        yield running.url, ck


def page_state(page):
    """What the page shows: the class, the bars' probabilities, and every map canvas's size and pixels."""
    return page.evaluate("""() => ({
        shown: document.getElementById('prediction').dataset.class,
        digit: document.getElementById('digit').textContent,
        bars: [...document.querySelectorAll('#bars li')].map(li => Number(li.dataset.p)),
        seen: Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data),
        layers: [...document.querySelectorAll('#maps .layer')].map(div => ({
            name: div.dataset.layer,
            maps: [...div.querySelectorAll('canvas')].map(c => {
                const r = c.getBoundingClientRect();
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let opaque = 0, colours = new Set();
                for (let i = 0; i < px.length; i += 4) {
                    opaque += px[i + 3] === 255;
                    colours.add(px[i] << 16 | px[i + 1] << 8 | px[i + 2]);
                }
                return {w: r.width, h: r.height, pixels: px.length / 4, opaque, colours: colours.size};
            }),
        })),
        sent: window.xcnnDemo.sent, rendered: window.xcnnDemo.rendered, error: window.xcnnDemo.error,
    })""")


def check_page_against_library(page, png, ck, tmp_path, strokes):
    """The page's prediction, bars and 28x28 input are xcnn.predict's for the PNG the page sent; every conv
    channel has a rendered map."""
    state = page_state(page)
    assert state["error"] is None and state["rendered"] == state["sent"]
    path = tmp_path / "sent.png"
    path.write_bytes(png)
    (_, k, probs), = predict_images(ck, [path], device="cpu")  # the library, on the very pixels the page sent
    assert state["shown"] == str(k) and state["digit"] == str(k)
    np.testing.assert_allclose(state["bars"], probs, rtol=1e-5, atol=1e-7)
    assert abs(sum(state["bars"]) - 1) < 1e-6
    seen = np.array(state["seen"]).reshape(28, 28, 4)
    assert np.array_equal(seen[..., 0], to_mnist(read_images(path)[0][1])) and (seen[..., 3] == 255).all()

    # the PNG holds the whole drawing: its ink spans the strokes' extent (give or take the pen's width)
    ink = read_images(path)[0][1] < 0.5
    ys, xs = np.nonzero(ink)
    pts = np.array([p for s in strokes for p in stroke_points(s)])
    assert abs(xs.min() - pts[:, 0].min()) <= 12 and abs(xs.max() - pts[:, 0].max()) <= 12
    assert abs(ys.min() - pts[:, 1].min()) <= 12 and abs(ys.max() - pts[:, 1].max()) <= 12

    # one rendered map per conv channel (lenet5: conv1/relu1 6 maps 28x28, conv2/relu2 16 maps 10x10)
    expected = {"conv1": (6, 28), "relu1": (6, 28), "conv2": (16, 10), "relu2": (16, 10)}
    assert [layer["name"] for layer in state["layers"]] == list(expected)
    for layer in state["layers"]:
        channels, side = expected[layer["name"]]
        assert len(layer["maps"]) == channels
        for m in layer["maps"]:
            assert m["w"] > 0 and m["h"] > 0 and m["pixels"] == side * side
            assert m["opaque"] == side * side  # painted, every pixel
        assert max(m["colours"] for m in layer["maps"]) > 1  # and showing structure, not one flat colour
    return k


def last_png(requests):
    bodies = [r.post_data_buffer for r in requests if r.url.endswith("/api/predict")]
    assert bodies, "the page sent no drawing"
    return bodies


def test_mouse_stroke_shows_the_librarys_prediction_and_every_map(served, tmp_path):
    url, ck = served
    with open_page(url) as page:
        requests = []
        page.on("request", lambda r: requests.append(r))
        draw_with_mouse(page, STROKES["7"])
        wait_until_idle(page)
        bodies = last_png(requests)
        assert len(bodies) >= 2, "no prediction was sent while drawing"  # live: throttled sends mid-stroke
        check_page_against_library(page, bodies[-1], ck, tmp_path, STROKES["7"])

        # Clear empties the page; the next stroke starts from a blank pad
        page.click("#clear")
        state = page_state(page)
        assert state["shown"] == "" and state["digit"] == "–" and not any(state["bars"])
        draw_with_mouse(page, STROKES["1"])
        wait_until_idle(page)
        check_page_against_library(page, last_png(requests)[-1], ck, tmp_path, STROKES["1"])


def test_finger_stroke_draws_and_predicts(served, tmp_path):
    url, ck = served
    with open_page(url, touch=True) as page:
        requests = []
        page.on("request", lambda r: requests.append(r))
        draw_with_touch(page, STROKES["0"])
        wait_until_idle(page)
        check_page_against_library(page, last_png(requests)[-1], ck, tmp_path, STROKES["0"])
        # what the page sent is what its canvas shows
        shot = mpimg.imread(io.BytesIO(page.locator("#pad").screenshot()))
        assert shot[..., :3].mean(axis=-1).min() < 0.2  # dark ink on the pad
