"""The report's accuracies, reproduced by full training runs on CPU (minutes each).

Excluded from the default test command; run them with ``python -m pytest -m slow``.
"""
from __future__ import annotations

import pytest

from xcnn.train import RunConfig, fit


@pytest.mark.slow
@pytest.mark.parametrize("model, epochs, weight_decay, target", [
    ("seed-cnn", 30, 1e-3, 0.9854),  # the report: 98.54 % within 30 epochs, with the report's exact settings
    # The MLPs underfit with weight decay 1e-3 (98.03 % / 97.91 %, see benchmarks/accuracy/README.md);
    # with 1e-4 and everything else the report's they reach its numbers.
    ("mlp2", 40, 1e-4, 0.9833),      # 98.33 % within 40 epochs
    ("mlp1", 40, 1e-4, 0.9800),      # 98.00 % within 40 epochs
])
def test_report_accuracy_is_reached(tmp_path, model, epochs, weight_decay, target):
    res = fit(RunConfig(model=model, epochs=epochs, weight_decay=weight_decay, device="cpu",
                        out=str(tmp_path / model)), log=print)
    assert res.status == "completed"
    assert res.best_test_acc >= target, [round(h["test_acc"], 4) for h in res.history]
