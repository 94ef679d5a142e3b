"""The figures' shared helpers (xcnn/viz/figure.py): files only (the Agg backend), PNGs written
atomically, metric CSVs read back as numbers, the trailing running mean."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from xcnn.viz import figure


def test_files_only_backend_and_atomic_png(tmp_path):
    assert matplotlib.get_backend().lower() == "agg"
    fig, ax = figure.plt.subplots()
    ax.plot([0, 1], [1, 0])
    n_open = len(figure.plt.get_fignums())
    p = figure.save_figure(fig, tmp_path / "sub" / "f.png")
    assert p == tmp_path / "sub" / "f.png" and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.plt.get_fignums()) == n_open - 1  # the figure is closed
    assert [q.name for q in (tmp_path / "sub").iterdir()] == ["f.png"]  # no temp file left


def test_read_csv(tmp_path):
    (tmp_path / "m.csv").write_text("epoch,test_acc,note\n1,0.5,\n2,0.75,3\n")
    assert figure.read_csv(tmp_path / "m.csv") == [{"epoch": 1.0, "test_acc": 0.5, "note": None},
                                                   {"epoch": 2.0, "test_acc": 0.75, "note": 3.0}]
    assert figure.read_csv(tmp_path / "missing.csv") == []


@pytest.mark.parametrize("width", [1, 2, 3, 10])
def test_running_mean_is_a_trailing_mean(width):
    v = np.random.default_rng(0).standard_normal(7)
    want = [v[max(0, i + 1 - width):i + 1].mean() for i in range(len(v))]
    np.testing.assert_allclose(figure.running_mean(v, width), want, rtol=1e-12)
    assert len(figure.running_mean([], width)) == 0
