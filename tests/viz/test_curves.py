"""Training curves (xcnn/viz/curves.py): a run's per-iteration and per-epoch figures from its metric
CSVs, only those whose data exist, and several runs side by side."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from xcnn.train.metrics import EPOCH_FIELDS, ITER_FIELDS, write_csv
from xcnn.viz import curves


def _write_run(run, *, iters=True, epochs=True, acc=0.6, n_epochs=2):
    if iters:
        rows = [{"iteration": i, "epoch": i / 10, "train_loss": 2.0 / (i + 1), "train_acc": min(1.0, 0.1 + i / 40)}
                for i in range(1, 10 * n_epochs + 1)]
        write_csv(run / "metrics_iter.csv", rows, ITER_FIELDS)
    if epochs:
        write_csv(run / "metrics_epoch.csv", [{"epoch": e, "iteration": 10 * e, "lr": 0.1, "train_loss": 1.0 / e,
                                               "train_acc": acc, "test_loss": 1.2 / e, "test_acc": acc + 0.01 * e,
                                               "train_seconds": 1, "eval_seconds": 0.1, "images_per_second": 100}
                                              for e in range(1, n_epochs + 1)], EPOCH_FIELDS)
    return run


@pytest.mark.parametrize("iters, epochs", [(True, True), (True, False), (False, True), (False, False)])
def test_training_curves_draws_what_the_run_has(tmp_path, iters, epochs):
    run = _write_run(tmp_path / "run", iters=iters, epochs=epochs) if iters or epochs else tmp_path
    written = curves.training_curves(run, title="mlp1 on mnist")
    want = ["curves_iteration.png"] * iters + ["curves_epoch.png"] * epochs
    assert [p.name for p in written] == want
    assert sorted(p.name for p in run.glob("*.png")) == sorted(want)
    for p in written:
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[1] > img.shape[0] > 100  # two panels side by side
        assert img[..., :3].std() > 0.05  # something is drawn


def test_training_curves_depend_on_the_data(tmp_path):
    a = curves.training_curves(_write_run(tmp_path / "a", acc=0.6))[1].read_bytes()
    b = curves.training_curves(_write_run(tmp_path / "b", acc=0.8))[1].read_bytes()
    a2 = curves.training_curves(_write_run(tmp_path / "a2", acc=0.6))[1].read_bytes()
    assert a != b and a == a2  # the epoch figure follows the numbers, and nothing else


@pytest.mark.filterwarnings("ignore:No artists with labels found")  # the run without data has no legend
def test_comparison_of_several_runs(tmp_path):
    runs = {"seed-cnn": _write_run(tmp_path / "cnn", acc=0.97, n_epochs=3),
            "mlp2": _write_run(tmp_path / "mlp2", acc=0.96, n_epochs=2),
            "mlp1": _write_run(tmp_path / "mlp1", epochs=False)}
    p = curves.plot_comparison(runs, tmp_path / "out" / "cmp.png", title="three runs")
    img = mpimg.imread(p)
    assert p == tmp_path / "out" / "cmp.png" and img.shape[0] > 500 and img.shape[1] > 500  # a 2x2 grid
    one = curves.plot_comparison({"seed-cnn": runs["seed-cnn"]}, tmp_path / "one.png")
    assert one.read_bytes() != p.read_bytes()
    empty = curves.plot_comparison({"none": tmp_path / "missing"}, tmp_path / "empty.png")  # no data: axes only
    assert np.asarray(mpimg.imread(empty)).size > 0
