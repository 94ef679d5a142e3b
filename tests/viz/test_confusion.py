"""The confusion matrix (xcnn/viz/confusion.py): counts against a plain loop, and its figure."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np

from xcnn.viz.confusion import confusion_matrix, plot_confusion


def test_confusion_matrix_counts_true_against_predicted():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500).astype(np.uint8)
    pred = np.where(rng.random(500) < 0.8, y, rng.integers(0, 10, 500))
    want = np.zeros((10, 10), np.int64)
    for t, p in zip(y, pred):
        want[t, p] += 1
    cm = confusion_matrix(y, pred, 10)
    assert np.array_equal(cm, want)
    assert cm.sum() == 500 and np.trace(cm) == int((y == pred).sum())
    assert np.array_equal(confusion_matrix(np.array([0, 1]), np.array([1, 1]), 3), [[0, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_confusion_figure(tmp_path):
    cm = confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), 3)
    result = {"confusion": cm.tolist(), "classes": ["T-shirt/top", "Trouser", "Bag"], "model": "seed-cnn",
              "dataset": "fashion-mnist", "accuracy": 0.75}
    p = plot_confusion(result, tmp_path / "c.png")
    img = mpimg.imread(p)
    assert p == tmp_path / "c.png" and img.ndim == 3 and img.shape[0] > 300
