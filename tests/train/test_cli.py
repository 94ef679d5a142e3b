"""``python -m xcnn.train`` (xcnn/train/cli.py): one-line refusals, and Ctrl-C then --resume end to end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_main, synthetic, weights

from xcnn.train.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def _main(argv, capsys):
    """Run the command in this process: (exit status, stdout, stderr)."""
    return run_main(main, argv, capsys)


def test_bad_values_are_refused_in_one_line(capsys):
    for argv, said in ((["--epochs", "-1"], "Invalid value for '--epochs'"),
                       (["--model", "resnet"], "'resnet' is not one of 'seed-cnn', 'mlp2', 'mlp1', 'lenet5'"),
                       (["--device", "tpu"], "unknown device 'tpu'"),
                       (["--save-epochs", "a,b"], "expected comma-separated epoch numbers"),
                       (["--momentum", "nan"], "--momentum must be a finite number >= 0, got nan")):
        code, out, err = _main(argv + ["--device", "cpu"] if "--device" not in argv else argv, capsys)
        assert code == 2 and said in err and err.startswith("error: "), (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err + out, err


def test_cuda_graph_limits_are_explained(capsys):
    code, out, err = _main(["--device", "cpu", "--cuda-graph", "--optimizer", "adam"], capsys)
    assert code == 2 and "--cuda-graph supports --optimizer sgd only" in err and err.count("\n") == 1


def test_cuda_graph_on_the_cpu_is_refused(tmp_path, monkeypatch, capsys):
    from xcnn.train import loop  # noqa: PLC0415

    monkeypatch.setattr(loop, "_load_data", lambda c: synthetic(100, 20))
    code, out, err = _main(["--device", "cpu", "--cuda-graph", "--epochs", "1", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "CUDA graphs need a CUDA device" in err and "Traceback" not in err


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
    assert "Resume with: python -m xcnn.train --out " in text  # the saved settings come back by themselves
    resume = [sys.executable, "-m", "xcnn.train", "--out", str(tmp_path / "int"), "--resume", "--data-dir", str(SHARED)]
    res = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "epoch   2/3" in res.stdout and "/30" not in res.stdout, res.stdout  # its own --epochs 3, not the default
    a, b = weights(tmp_path / "ref" / "checkpoint.npz"), weights(tmp_path / "int" / "checkpoint.npz")
    for k in a:
        assert np.array_equal(a[k], b[k]), k
