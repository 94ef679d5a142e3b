"""The report's accuracies, reproduced by full training runs on the CPU (about a minute each).

Excluded from the default test command; run them with ``python -m pytest -m slow``. The runs use one
thread, as ``scripts/seeds.py`` does for ``benchmarks/accuracy/seeds.md``, so each one repeats the
committed figure bit for bit (the compiled convolution sums its weight gradient per thread, so another
thread count changes the last bits and, over 30 epochs, the accuracy by a few hundredths).
"""
from __future__ import annotations

import pytest
from helpers import quiet

from xcnn.cpu import config as cpu_config
from xcnn.train import RunConfig, fit

REPORT_CNN = 0.9854  # the report: 98.54 % within 30 epochs

# Seeds 1 and 2 miss at the final epoch (benchmarks/accuracy/seeds.md). Why: with the report's constant
# learning rate the test accuracy of this 4,330-parameter network wanders by 0.1-0.5 % from epoch to epoch
# (seed 1's last ten epochs: 97.90-98.47 %), and with weight decay 1e-3 it underfits (training accuracy
# 98.3-98.6 %, no higher than the test's), so 98.54 % sits inside that wander. Seed 0 ends at 98.91 %; the
# mean over the seeds is 98.58 +- 0.29 %. With weight decay 1e-4 all three end at or within 0.01 % of it.
MISSES = {1: "ends at 98.47 % (best 98.47 %): the final epoch wanders below 98.54 %; see the module comment",
          2: "ends at 98.37 % (best 98.60 %, epoch 21): the final epoch wanders below 98.54 %"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=MISSES[s]))
                                  if s in MISSES else s for s in (0, 1, 2)])
def test_seed_cnn_final_accuracy_reaches_the_report(tmp_path, mnist_dir, seed):
    """The report's CNN with the report's exact settings, 30 epochs: the final epoch's test accuracy."""
    with cpu_config.using(threads=1):
        res = fit(RunConfig(seed=seed, device="cpu", out=str(tmp_path / "run"), data_dir=mnist_dir), log=quiet)
    assert res.status == "completed" and res.epochs_done == 30
    assert res.final_test_acc >= REPORT_CNN, [round(h["test_acc"], 4) for h in res.history]


@pytest.mark.slow
@pytest.mark.parametrize("model, target", [("mlp2", 0.9833), ("mlp1", 0.9800)])  # the report: within 40 epochs
def test_mlps_reach_the_report_with_weight_decay_1e_4(tmp_path, mnist_dir, model, target):
    """The MLPs underfit with weight decay 1e-3 (97.63 / 97.45 % final on average over three seeds); with
    1e-4, everything else the report's, their best epoch reaches the report's figure (all three seeds do)."""
    with cpu_config.using(threads=1):
        res = fit(RunConfig(model=model, epochs=40, weight_decay=1e-4, device="cpu", out=str(tmp_path / model),
                            data_dir=mnist_dir), log=quiet)
    assert res.status == "completed"
    assert res.best_test_acc >= target, [round(h["test_acc"], 4) for h in res.history]
