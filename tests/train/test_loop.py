"""The training loop (xcnn/train/loop.py): a real accuracy threshold, exact resume after Ctrl-C,
NaN handling, snapshots, and the same run on the GPU path as on the CPU -- with and without the
CUDA-graph step."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import quiet, run_config, synthetic, weights

from xcnn.cuda import gemm
from xcnn.errors import ConfigError
from xcnn.nn.serialize import load_checkpoint
from xcnn.train import fit

SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def mnist_dir():
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"no MNIST copy at {SHARED_MNIST}")
    return str(SHARED_MNIST.parent)


def test_short_mnist_run_clears_a_real_accuracy_threshold(tmp_path, mnist_dir):
    """seed-cnn, report settings, 2 epochs on the first 6,000 training images: > 88 % on 2,000 test images."""
    res = fit(run_config(tmp_path, train_limit=6000, test_limit=2000, data_dir=mnist_dir), log=quiet)
    assert res.status == "completed" and res.epochs_done == 2
    assert res.final_test_acc > 0.88, res.history
    out = Path(res.out)
    for f in ("checkpoint.npz", "config.json", "metrics.json", "metrics_epoch.csv", "metrics_iter.csv",
              "curves_epoch.png", "curves_iteration.png"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["parameters"] == 4330 and len(m["history"]) == 2
    assert m["history"][-1]["test_acc"] == res.final_test_acc and m["cuda_graph"] is None
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["device_resolved"] == "cpu" and cfg["machine"]["cores"] >= 1


def interrupt_at(step_no):
    """A progress callback that sends this process a real Ctrl-C at its ``step_no``-th log point."""
    seen = {"n": 0}

    def progress(event, **info):
        if event == "step":
            seen["n"] += 1
            if seen["n"] == step_no:
                os.kill(os.getpid(), signal.SIGINT)

    return progress


@pytest.mark.parametrize("stop_step, schedule", [(2, "constant"), (5, "constant"), (5, "cosine")])
def test_interrupted_and_resumed_run_ends_bit_identical(tmp_path, stop_step, schedule):
    """Stopped mid-epoch 1 (log points every 3 steps) or mid-epoch 2, then resumed: same final weights."""
    arrays = synthetic()
    kw = dict(epochs=3, momentum=0.9, lr_schedule=schedule)
    full = fit(run_config(tmp_path / "a", **kw), arrays=arrays, log=quiet)
    part = fit(run_config(tmp_path / "b", **kw), arrays=arrays, log=quiet, progress=interrupt_at(stop_step))
    assert part.status == "interrupted"
    meta = load_checkpoint(Path(part.out) / "checkpoint.npz")["meta"]
    assert meta["batch"] > 0 or meta["epoch"] > 0
    with pytest.raises(ConfigError, match="already holds a run"):
        fit(run_config(tmp_path / "b", **kw), arrays=arrays, log=quiet)
    with pytest.raises(ConfigError, match="settings differ.*lr was 0.1, now 0.2"):
        fit(run_config(tmp_path / "b", lr=0.2, **kw), arrays=arrays, resume=True, log=quiet)
    done = fit(run_config(tmp_path / "b", **kw), arrays=arrays, resume=True, log=quiet)
    assert done.status == "completed" and done.epochs_done == 3
    wa, wb = weights(Path(full.out) / "checkpoint.npz"), weights(Path(done.out) / "checkpoint.npz")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k
    assert [h["test_acc"] for h in full.history] == [h["test_acc"] for h in done.history]
    assert (Path(full.out) / "metrics_iter.csv").read_text() == (Path(done.out) / "metrics_iter.csv").read_text()


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """Weights blowing up mid-epoch 2 (simulated: the optimizer writes inf after step 15 of 12-step epochs)."""
    from xcnn.nn.optim import SGD

    real_step = SGD.step
    calls = {"n": 0}

    def step(self):
        real_step(self)
        calls["n"] += 1
        if calls["n"] == 15:
            self.params[0].data[...] = np.inf

    monkeypatch.setattr(SGD, "step", step)
    said = []
    res = fit(run_config(tmp_path, epochs=3), arrays=synthetic(), log=said.append)
    assert res.status == "diverged" and "loss became nan" in res.message and said[-1] == res.message
    ck = load_checkpoint(Path(res.out) / "checkpoint.npz")
    assert ck["meta"]["epoch"] == 1  # the last good state: after epoch 1
    assert all(np.isfinite(v).all() for v in ck["params"].values())
    assert json.loads((Path(res.out) / "metrics.json").read_text())["status"] == "diverged"


def test_bad_settings_are_refused(tmp_path):
    for kw, msg in [(dict(epochs=-1), "--epochs must be a whole number >= 1"), (dict(epochs=0), "train nothing"),
                    (dict(batch_size=0), "--batch-size"), (dict(lr=0.0), "--lr must be a finite number > 0"),
                    (dict(lr=float("nan")), "--lr must be"), (dict(momentum=float("inf")), "--momentum must be"),
                    (dict(weight_decay=-1e-3), "--weight-decay must be"), (dict(train_limit=0), "--train-limit"),
                    (dict(train_limit=-10), "--train-limit must be >= 1"), (dict(test_limit=0), "--test-limit"),
                    (dict(seed=-1), "--seed"), (dict(save_epochs=[-1]), "--save-epochs"),
                    (dict(optimizer="rmsprop"), "--optimizer"), (dict(lr_schedule="linear"), "--lr-schedule must be")]:
        with pytest.raises(ConfigError, match=msg):
            fit(run_config(tmp_path, **kw), arrays=synthetic(), log=quiet)
    with pytest.raises(ConfigError, match="no checkpoint"):
        fit(run_config(tmp_path), arrays=synthetic(), resume=True, log=quiet)
    with pytest.raises(ConfigError, match="training set is empty"):
        fit(run_config(tmp_path / "e"), arrays=tuple(a[:0] if i == 0 or i == 1 else a
                                                    for i, a in enumerate(synthetic())), log=quiet)


def test_adam_and_snapshots(tmp_path):
    res = fit(run_config(tmp_path, optimizer="adam", lr=1e-3, epochs=2, save_epochs=[0, 2]), arrays=synthetic(),
              log=quiet)
    assert res.status == "completed" and res.final_test_acc > 0.5
    assert (Path(res.out) / "epoch_000.npz").is_file() and (Path(res.out) / "epoch_002.npz").is_file()
    assert load_checkpoint(Path(res.out) / "epoch_002.npz")["optim"]["kind"] == "adam"


# ---------------------------------------------------------------------------- the GPU path

def test_the_gpu_path_trains_like_the_cpu(tmp_path, cuda_emu):
    """``fit(device='cuda')``: data on the device, steps, evaluation, checkpoints -- the same run as on
    the CPU (float64, so the two algorithms agree to rounding)."""
    arrays = synthetic(130, 40)
    kw = dict(epochs=2, batch_size=50, dtype="float64", momentum=0.9, lr_schedule="cosine")
    a = fit(run_config(tmp_path / "cpu", device="cpu", **kw), arrays=arrays, log=quiet)
    b = fit(run_config(tmp_path / "gpu", device="cuda", **kw), arrays=arrays, log=quiet)
    assert a.status == b.status == "completed"
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=1e-9, atol=1e-11, err_msg=k)
    for ha, hb in zip(a.history, b.history):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-9)
        assert hb["test_acc"] == ha["test_acc"]


def test_a_cuda_graph_run_writes_the_same_run_as_an_eager_one(tmp_path, cuda_emu):
    """``fit(cuda_graph=True)``: scopes per epoch, host reads only at log points, checkpoints and
    evaluation between replays -- the same weights and metrics as without the graph, and metrics.json
    says how many steps replayed it."""
    arrays = synthetic(130, 40)
    kw = dict(device="cuda", epochs=2, batch_size=50, momentum=0.9, lr_schedule="cosine", log_every=2)
    said = []
    with gemm.using("kernels"):  # a graph run's GEMMs (cuBLAS sums in another order)
        a = fit(run_config(tmp_path / "eager", **kw), arrays=arrays, log=said.append)
    b = fit(run_config(tmp_path / "graph", cuda_graph=True, **kw), arrays=arrays, log=said.append)
    assert not [m for m in said if "warning" in m]
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_array_equal(wb[k], wa[k], err_msg=k)
    assert (a.out / "metrics_iter.csv").read_text() == (b.out / "metrics_iter.csv").read_text()
    assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in b.history]
    # 130 images in batches of 50: two full batches an epoch, the first two of the run are warm-up
    assert json.loads((b.out / "metrics.json").read_text())["cuda_graph"] == {"replays": 2, "capture_failed": None}
    assert json.loads((a.out / "metrics.json").read_text())["cuda_graph"] is None


def test_an_interrupted_cuda_graph_run_resumes_bit_identical(tmp_path, cuda_emu):
    """Ctrl-C in the middle of a --cuda-graph epoch (inside the graph stream's scope), then --resume
    (a new graph, new warm-up steps): the same final weights as an uninterrupted run."""
    arrays = synthetic(330, 40)
    kw = dict(device="cuda", epochs=2, batch_size=50, momentum=0.9, lr_schedule="cosine", cuda_graph=True)
    full = fit(run_config(tmp_path / "a", **kw), arrays=arrays, log=quiet)
    part = fit(run_config(tmp_path / "b", **kw), arrays=arrays, log=quiet, progress=interrupt_at(2))
    assert part.status == "interrupted"
    done = fit(run_config(tmp_path / "b", **kw), arrays=arrays, resume=True, log=quiet)
    assert done.status == "completed"
    assert json.loads((full.out / "metrics.json").read_text())["cuda_graph"]["replays"] > 0
    wa, wb = weights(full.out / "checkpoint.npz"), weights(done.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_array_equal(wb[k], wa[k], err_msg=k)


def test_cuda_graph_run_equals_eager_on_a_real_gpu(tmp_path):
    """The same comparison on a real GPU (skipped without one), and the graph must have replayed:
    a capture failure falls back to eager steps, which would make the comparison vacuous."""
    from xcnn.backend import gpu_unavailable_reason  # noqa: PLC0415

    reason = gpu_unavailable_reason(0)
    if reason is not None:
        pytest.skip(f"no usable GPU: {reason}")
    arrays = synthetic(610, 100)
    kw = dict(device="cuda", epochs=2, momentum=0.9, lr_schedule="cosine")
    with gemm.using("kernels"):  # a graph run's GEMMs (cuBLAS sums in another order)
        a = fit(run_config(tmp_path / "eager", **kw), arrays=arrays, log=quiet)
    b = fit(run_config(tmp_path / "graph", cuda_graph=True, **kw), arrays=arrays, log=quiet)
    graph = json.loads((b.out / "metrics.json").read_text())["cuda_graph"]
    assert graph["capture_failed"] is None and graph["replays"] == 2 * 12 - 2
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
