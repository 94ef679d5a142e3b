"""``python -m xcnn.predict`` (xcnn/apps/predict.py): a digit as stored (NPY) and the same digit
as a 4x larger dark-on-light PNG are both made to look like MNIST and classified alike; bad files
are refused in one line, exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from typer.testing import CliRunner

from xcnn.apps.predict import ImageError, predict_images, read_images, to_mnist
from xcnn.apps.predict import app as pred_app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_predict_cli_classifies_an_npy_and_a_scaled_inverted_png_alike(tmp_path, trained_checkpoint, mnist):
    img, label = mnist.test_images[0], int(mnist.test_labels[0])
    np.save(tmp_path / "d.npy", img)
    mpimg.imsave(tmp_path / "d.png", np.kron(255 - img, np.ones((4, 4))).astype(np.uint8), cmap="gray",
                 vmin=0, vmax=255)
    r = runner.invoke(pred_app, [str(trained_checkpoint), str(tmp_path / "d.npy"), str(tmp_path / "d.png"),
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert [ln.split(": ")[0] for ln in lines] == [str(tmp_path / "d.npy"), str(tmp_path / "d.png")]
    preds = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert preds == [label, label]
    probs = predict_images(trained_checkpoint, [tmp_path / "d.npy"], device="cpu")[0][2]
    assert probs.shape == (10,) and probs.sum() == pytest.approx(1.0) and probs.argmax() == label


def test_missing_and_unreadable_images_are_refused_in_one_line(tmp_path, trained_checkpoint):
    r = runner.invoke(pred_app, [str(trained_checkpoint), str(tmp_path / "missing.png")])
    assert r.exit_code == 2 and "no such file" in r.output and "Traceback" not in r.output
    (tmp_path / "bad.png").write_bytes(b"garbage")
    r = runner.invoke(pred_app, [str(trained_checkpoint), str(tmp_path / "bad.png")])
    assert r.exit_code == 2 and "not a readable PNG or NPY" in r.output and "Traceback" not in r.output


def test_an_mnist_digit_passes_through_unchanged(tmp_path, mnist):
    img = mnist.test_images[0]
    assert img.min() == 0 and img.max() == 255
    np.save(tmp_path / "d.npy", img)
    [(name, got)] = read_images(tmp_path / "d.npy")
    assert name == str(tmp_path / "d.npy") and np.array_equal(to_mnist(got), img)


def test_a_light_background_is_inverted_and_a_digit_is_centred_in_28x28():
    paper = np.ones((60, 40))
    paper[10:50, 15:25] = 0.0  # a dark bar on white paper, off-centre
    out = to_mnist(paper)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0].max() == 0 and out[:, 0].max() == 0 and out.max() == 255  # light-on-dark now
    ys, xs = np.nonzero(out)
    assert ys.max() - ys.min() + 1 <= 20 and xs.max() - xs.min() + 1 <= 20  # fits 20x20
    mass = out.astype(float)
    cy, cx = (np.arange(28) @ mass.sum(1)) / mass.sum(), (np.arange(28) @ mass.sum(0)) / mass.sum()
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1  # centred by mass


def test_rgba_images_are_composited_on_white(tmp_path):
    rgba = np.zeros((28, 28, 4), np.float32)
    rgba[..., 3] = 0.0  # fully transparent: white
    rgba[10:18, 10:18] = (1.0, 0.0, 0.0, 1.0)  # an opaque red square
    mpimg.imsave(tmp_path / "c.png", rgba)
    [(_, img)] = read_images(tmp_path / "c.png")
    assert img.shape == (28, 28)
    np.testing.assert_allclose(img[0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(img[12, 12], 0.299, atol=2e-3)  # luminance of pure red
    with pytest.raises(ImageError, match="no such file"):
        read_images(tmp_path / "none.png")


def test_python_m_xcnn_predict_runs_the_app(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "xcnn.predict", str(tmp_path / "nope.npz"), str(tmp_path / "d.png")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith("error: checkpoint") and "does not exist" in p.stderr


def test_an_npy_stack_is_one_image_each(tmp_path, trained_checkpoint, mnist):
    """(10, 28, 28) and (10, 1, 28, 28) stacks: ten answers, named file.npy[i], equal to one file each."""
    stack = mnist.test_images[:10]
    np.save(tmp_path / "s.npy", stack)
    np.save(tmp_path / "s4.npy", stack[:, None])
    rows = predict_images(trained_checkpoint, [tmp_path / "s.npy", tmp_path / "s4.npy"], device="cpu")
    assert [r[0] for r in rows[:10]] == [f"{tmp_path / 's.npy'}[{i}]" for i in range(10)]
    assert [r[1] for r in rows[:10]] == [r[1] for r in rows[10:]]
    for i in (0, 7):
        np.save(tmp_path / f"one{i}.npy", stack[i])
        assert predict_images(trained_checkpoint, [tmp_path / f"one{i}.npy"], device="cpu")[0][1] == rows[i][1]


def test_blank_images_are_warned_about_and_bad_pixels_refused(tmp_path, trained_checkpoint):
    np.save(tmp_path / "blank.npy", np.zeros((28, 28)))
    heard = []
    rows = predict_images(trained_checkpoint, [tmp_path / "blank.npy"], device="cpu", warn=heard.append)
    assert len(rows) == 1 and heard == [f"{tmp_path / 'blank.npy'} is blank (every pixel is 0); its prediction "
                                        "means nothing"]
    nan = np.full((2, 28, 28), np.nan)
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ImageError, match=r"nan.npy\[0\]: 784 pixel\(s\) are NaN or infinite"):
        read_images(tmp_path / "nan.npy")
    mpimg.imsave(tmp_path / "dot.png", np.zeros((1, 1)), cmap="gray")
    with pytest.raises(ImageError, match="the image is 1x1 pixels — a digit needs at least 8x8"):
        read_images(tmp_path / "dot.png")
