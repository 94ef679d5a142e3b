"""``python -m xcnn.visualize`` (xcnn/apps/visualize.py): the feature maps of any layer, saved beside
their PNG, equal an independent forward pass; every bad request is one line, exit 2, nothing written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import weights
from typer.testing import CliRunner

from xcnn.apps.visualize import app as visualize_app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_visualize_draws_any_layer_equal_to_the_independent_forward(trained_checkpoint, mnist, data_args,
                                                                    seed_cnn_reference, tmp_path):
    ck = trained_checkpoint
    res = runner.invoke(visualize_app, [str(ck), "--layer", "conv1", "--layer", "pool2", "--index", "0",
                                        "--index", "7", "--out", str(tmp_path), *data_args])
    assert res.exit_code == 0, res.output
    ref = seed_cnn_reference(weights(ck), mnist.test_images[[0, 7]])
    for layer in ("conv1", "pool2"):
        png = tmp_path / f"checkpoint_{layer}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in res.output
        saved = np.load(tmp_path / f"checkpoint_{layer}.npz")
        np.testing.assert_allclose(saved["maps"], ref[layer], rtol=1e-4, atol=1e-4)
        assert saved["indices"].tolist() == [0, 7] and saved["labels"].tolist() == mnist.test_labels[[0, 7]].tolist()
        np.testing.assert_array_equal(saved["pred"], ref["probs"].argmax(axis=1))
        np.testing.assert_allclose(saved["prob"], ref["probs"].max(axis=1), rtol=1e-4, atol=1e-5)
    assert ref["conv1"].min() < 0  # conv1 is signed: the check covers more than ReLU outputs


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "does not exist"),
    (["{bad}"], "not a readable xcnn checkpoint"),
    (["{ck}", "--layer", "fc1"], "conv1, relu1, pool1, conv2, relu2, pool2"),
    (["{ck}", "--layer", "nope"], "unknown layer 'nope'"),
    (["{ck}", "--index", "10000"], "out of range"),
    (["{ck}", "--index=-1"], "out of range"),
])
def test_visualize_errors_are_one_line_with_exit_code_2(trained_checkpoint, data_args, tmp_path, args, message):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    fill = {"missing": tmp_path / "none.npz", "bad": bad, "ck": trained_checkpoint}
    argv = [a.format(**fill) for a in args] + ["--out", str(tmp_path / "o"), *data_args]
    res = runner.invoke(visualize_app, argv)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_python_m_xcnn_visualize_runs_the_app(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "xcnn.visualize", str(tmp_path / "nope.npz"), "--out",
                        str(tmp_path / "o")], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith("error: checkpoint") and "does not exist" in p.stderr
    assert not (tmp_path / "o").exists()
