"""``python -m xcnn.train`` (xcnn/train/cli.py): one-line refusals, and Ctrl-C then --resume end to end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic, weights
from typer.testing import CliRunner

from xcnn.train.cli import app

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def test_bad_values_are_refused_in_one_line():
    runner = CliRunner()
    r = runner.invoke(app, ["--epochs", "-1", "--device", "cpu"])
    assert r.exit_code == 2 and "--epochs must be >= 0" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["--model", "resnet"])
    assert r.exit_code == 2 and "unknown model 'resnet'" in r.output
    r = runner.invoke(app, ["--device", "tpu"])
    assert r.exit_code == 2 and "unknown device 'tpu'" in r.output
    r = runner.invoke(app, ["--save-epochs", "a,b"])
    assert r.exit_code == 2


def test_cuda_graph_limits_are_explained():
    r = CliRunner().invoke(app, ["--device", "cpu", "--cuda-graph", "--optimizer", "adam"])
    assert r.exit_code == 2 and "--cuda-graph supports --optimizer sgd only" in r.output
    assert "Traceback" not in r.output


def test_cuda_graph_on_the_cpu_is_refused(tmp_path, monkeypatch):
    from xcnn.train import loop  # noqa: PLC0415

    monkeypatch.setattr(loop, "_load_data", lambda c: synthetic(100, 20))
    r = CliRunner().invoke(app, ["--device", "cpu", "--cuda-graph", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "CUDA graphs need a CUDA device" in r.output and "Traceback" not in r.output


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"no MNIST copy at {SHARED / 'mnist'}")
def test_ctrl_c_exits_130_and_resume_matches_uninterrupted(tmp_path):
    """End to end through `python -m xcnn.train`: SIGINT after the first epoch, exit 130 with a resume
    line, then --resume; the final weights equal an uninterrupted run's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "xcnn.train", "--device", "cpu", "--epochs", "3", "--train-limit", "3000",
            "--test-limit", "500", "--quiet", "--data-dir", str(SHARED)]
    ref = subprocess.run(args + ["--out", str(tmp_path / "ref")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr
    p = subprocess.Popen(args + ["--out", str(tmp_path / "int")], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if line.startswith("epoch   1/3"):
            p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=300)
    text = "".join(lines)
    assert rc == 130, text
    assert "Resume with: python -m xcnn.train" in text and "--resume" in text
    res = subprocess.run(args + ["--out", str(tmp_path / "int"), "--resume"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    a, b = weights(tmp_path / "ref" / "checkpoint.npz"), weights(tmp_path / "int" / "checkpoint.npz")
    for k in a:
        assert np.array_equal(a[k], b[k]), k
