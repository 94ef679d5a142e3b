"""``python -m xcnn.evaluate`` (xcnn/apps/evaluate.py): accuracy, per-class accuracy and the confusion
matrix of a trained checkpoint on the MNIST test set, checked against an independent forward pass;
one-line errors, exit 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import weights
from typer.testing import CliRunner

from xcnn.apps.evaluate import app as eval_app
from xcnn.apps.evaluate import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_evaluate_cli_writes_accuracy_per_class_and_confusion(tmp_path, trained_checkpoint, mnist, data_args):
    r = runner.invoke(eval_app, [str(trained_checkpoint), "--device", "cpu", "--out", str(tmp_path / "ev"),
                                 *data_args])
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert ev["n"] == 10000 and 0.8 < ev["accuracy"] < 1 and len(ev["per_class"]) == 10
    cm = np.asarray(ev["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 10000
    assert np.trace(cm) == round(ev["accuracy"] * 10000)
    assert cm.sum(axis=1).tolist() == np.bincount(mnist.test_labels, minlength=10).tolist()  # rows: true class
    np.testing.assert_allclose(ev["per_class"], cm.diagonal() / cm.sum(axis=1))
    assert ev["model"] == "seed-cnn" and ev["dataset"] == "mnist" and ev["classes"] == [str(d) for d in range(10)]
    png = tmp_path / "ev" / "confusion.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"test accuracy {ev['accuracy']:.2%} (10000 images)" in r.output


def test_evaluation_equals_an_independent_forward_pass(trained_checkpoint, mnist, mnist_dir, seed_cnn_reference):
    ev = evaluate_checkpoint(trained_checkpoint, device="cpu", data_dir=mnist_dir, limit=300)
    ref = seed_cnn_reference(weights(trained_checkpoint), mnist.test_images[:300])
    pred, y = ref["probs"].argmax(axis=1), mnist.test_labels[:300]
    assert ev["n"] == 300 and ev["accuracy"] == float((pred == y).mean())
    want = np.zeros((10, 10), np.int64)
    for t, q in zip(y, pred):
        want[t, q] += 1
    assert np.array_equal(np.asarray(ev["confusion"]), want)


def test_evaluate_refuses_a_missing_checkpoint_in_one_line(tmp_path):
    r = runner.invoke(eval_app, [str(tmp_path / "nope.npz")])
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output
    assert not any(tmp_path.iterdir())


def test_python_m_xcnn_evaluate_runs_the_app(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "xcnn.evaluate", str(tmp_path / "nope.npz")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith("error: checkpoint") and "does not exist" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
