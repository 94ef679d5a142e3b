"""Matplotlib set up for files only (the Agg backend, never a display), atomic PNG writes, and the
small helpers every figure shares."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import atomic_write_bytes  # noqa: E402

__all__ = ["plt", "save_figure", "read_csv", "running_mean"]


def running_mean(values, width: int) -> np.ndarray:
    """Trailing mean over ``width`` points (shorter at the start), for readable noisy curves."""
    v = np.asarray(values, dtype=np.float64)
    if width <= 1 or len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - width, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def read_csv(path) -> list[dict]:
    """Rows of a metrics CSV with numeric fields converted to float."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in csv.DictReader(fh)]


def save_figure(fig, path) -> Path:
    """Save ``fig`` as PNG atomically (temp file + rename) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
