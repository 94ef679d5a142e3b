"""Training: real accuracy on an MNIST subset, exact resume, Ctrl-C, NaN handling, CLIs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xcnn.network import load_checkpoint
from xcnn.trainer import RunConfig, TrainingError, fit

ROOT = Path(__file__).resolve().parents[1]


def synthetic(n=600, n_test=200, seed=0):
    """A separable 10-class problem: a bright bar at a class-specific place."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n + n_test)
    x = rng.uniform(-0.5, -0.3, (n + n_test, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 5)
        x[i, 0, 4 + 12 * r:12 + 12 * r, 1 + 5 * q:6 + 5 * q] += 0.8
    return x[:n], y[:n], x[n:], y[n:]


def cfg(tmp_path, **kw):
    base = dict(device="cpu", epochs=2, batch_size=50, out=str(tmp_path / "run"), log_every=3)
    base.update(kw)
    return RunConfig(**base)


def weights(path):
    return load_checkpoint(path)["params"]


@pytest.fixture(scope="module")
def mnist():
    from xcnn import data

    return data.load("mnist")


def test_short_mnist_run_clears_a_real_accuracy_threshold(tmp_path, mnist):
    """seed-cnn, report settings, 2 epochs on the first 6,000 training images: > 88 % on 2,000 test images."""
    res = fit(cfg(tmp_path, train_limit=6000, test_limit=2000), log=lambda *a: None)
    assert res.status == "completed" and res.epochs_done == 2
    assert res.final_test_acc > 0.88, res.history
    out = Path(res.out)
    for f in ("checkpoint.npz", "config.json", "metrics.json", "metrics_epoch.csv", "metrics_iter.csv",
              "curves_epoch.png", "curves_iteration.png"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["parameters"] == 4330 and len(m["history"]) == 2
    assert m["history"][-1]["test_acc"] == res.final_test_acc


def _interrupt_at(step_no):
    seen = {"n": 0}

    def progress(event, **info):
        if event == "step":
            seen["n"] += 1
            if seen["n"] == step_no:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to our handler

    return progress


@pytest.mark.parametrize("stop_step, schedule", [(2, "constant"), (5, "constant"), (5, "cosine")])
def test_interrupted_and_resumed_run_ends_bit_identical(tmp_path, stop_step, schedule):
    """Stopped mid-epoch 1 (log points every 3 steps) or mid-epoch 2, then resumed: same final weights."""
    arrays = synthetic()
    full = fit(cfg(tmp_path / "a", epochs=3, momentum=0.9, lr_schedule=schedule), arrays=arrays, log=lambda *a: None)
    part = fit(cfg(tmp_path / "b", epochs=3, momentum=0.9, lr_schedule=schedule), arrays=arrays, log=lambda *a: None,
               progress=_interrupt_at(stop_step))
    assert part.status == "interrupted"
    meta = load_checkpoint(Path(part.out) / "checkpoint.npz")["meta"]
    assert meta["batch"] > 0 or meta["epoch"] > 0
    with pytest.raises(TrainingError, match="already holds a run"):
        fit(cfg(tmp_path / "b", epochs=3, momentum=0.9, lr_schedule=schedule), arrays=arrays, log=lambda *a: None)
    with pytest.raises(TrainingError, match="settings differ.*lr was 0.1, now 0.2"):
        fit(cfg(tmp_path / "b", epochs=3, momentum=0.9, lr=0.2, lr_schedule=schedule), arrays=arrays, resume=True,
            log=lambda *a: None)
    done = fit(cfg(tmp_path / "b", epochs=3, momentum=0.9, lr_schedule=schedule), arrays=arrays, resume=True,
               log=lambda *a: None)
    assert done.status == "completed" and done.epochs_done == 3
    wa, wb = weights(Path(full.out) / "checkpoint.npz"), weights(Path(done.out) / "checkpoint.npz")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k
    assert [h["test_acc"] for h in full.history] == [h["test_acc"] for h in done.history]


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """Weights blowing up mid-epoch 2 (simulated: the optimizer writes inf after step 15 of 12-step epochs)."""
    from xcnn.optim import SGD

    arrays = synthetic()
    real_step = SGD.step
    calls = {"n": 0}

    def step(self):
        real_step(self)
        calls["n"] += 1
        if calls["n"] == 15:
            self.params[0].data[...] = np.inf

    monkeypatch.setattr(SGD, "step", step)
    res = fit(cfg(tmp_path, epochs=3), arrays=arrays, log=lambda *a: None)
    assert res.status == "diverged" and "loss became nan" in res.message and "lower --lr" in res.message
    ck = load_checkpoint(Path(res.out) / "checkpoint.npz")
    assert ck["meta"]["epoch"] == 1  # the last good state: after epoch 1
    assert all(np.isfinite(v).all() for v in ck["params"].values())
    assert json.loads((Path(res.out) / "metrics.json").read_text())["status"] == "diverged"


def test_cosine_schedule_decays_to_zero_over_the_run():
    from xcnn.trainer import lr_at

    c = RunConfig(lr=0.2, lr_schedule="cosine")
    assert lr_at(c, 0, 100) == pytest.approx(0.2)
    assert lr_at(c, 50, 100) == pytest.approx(0.1)
    assert lr_at(c, 100, 100) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(RunConfig(lr=0.2), 77, 100) == 0.2


def test_bad_settings_are_refused(tmp_path):
    for kw, msg in [(dict(epochs=-1), "--epochs must be >= 0"), (dict(batch_size=0), "--batch-size"),
                    (dict(lr=0.0), "--lr must be a positive"), (dict(optimizer="rmsprop"), "--optimizer"),
                    (dict(lr_schedule="linear"), "--lr-schedule must be one of")]:
        with pytest.raises(TrainingError, match=msg):
            fit(cfg(tmp_path, **kw), arrays=synthetic(), log=lambda *a: None)
    with pytest.raises(TrainingError, match="no checkpoint"):
        fit(cfg(tmp_path), arrays=synthetic(), resume=True, log=lambda *a: None)


def test_adam_and_snapshots(tmp_path):
    res = fit(cfg(tmp_path, optimizer="adam", lr=1e-3, epochs=2, save_epochs=[0, 2]), arrays=synthetic(),
              log=lambda *a: None)
    assert res.status == "completed" and res.final_test_acc > 0.5
    assert (Path(res.out) / "epoch_000.npz").is_file() and (Path(res.out) / "epoch_002.npz").is_file()
    assert load_checkpoint(Path(res.out) / "epoch_002.npz")["optim"]["kind"] == "adam"


# ---------------------------------------------------------------- command lines

def test_train_cli_refuses_bad_values_in_one_line():
    from xcnn.train import app

    runner = CliRunner()
    r = runner.invoke(app, ["--epochs", "-1", "--device", "cpu"])
    assert r.exit_code == 2 and "--epochs must be >= 0" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["--model", "resnet"])
    assert r.exit_code == 2 and "unknown model 'resnet'" in r.output
    r = runner.invoke(app, ["--device", "tpu"])
    assert r.exit_code == 2 and "unknown device 'tpu'" in r.output
    r = runner.invoke(app, ["--save-epochs", "a,b"])
    assert r.exit_code == 2


def test_train_cli_ctrl_c_exits_130_and_resume_matches_uninterrupted(tmp_path, mnist):
    """End to end through `python -m xcnn.train`: SIGINT after the first epoch, exit 130 with a resume
    line, then --resume; the final weights equal an uninterrupted run's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "xcnn.train", "--device", "cpu", "--epochs", "3", "--train-limit", "3000",
            "--test-limit", "500", "--quiet"]
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
