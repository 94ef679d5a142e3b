"""Training-curve figures (the report's figures 3-5): loss and accuracy against iteration and epoch."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["read_csv", "training_curves", "save_figure", "running_mean"]


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
    from .io import atomic_write_bytes  # noqa: PLC0415
    import io as _io  # noqa: PLC0415

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def training_curves(run_dir, title: str = "") -> list[Path]:
    """Write ``curves_iteration.png`` and ``curves_epoch.png`` into ``run_dir`` from its metrics CSVs."""
    run_dir = Path(run_dir)
    it = read_csv(run_dir / "metrics_iter.csv")
    ep = read_csv(run_dir / "metrics_epoch.csv")
    written = []
    if it:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        x = [r["iteration"] for r in it]
        loss = [r["train_loss"] for r in it]
        acc = [100 * r["train_acc"] for r in it]
        smooth = max(1, len(it) // 100)  # ~100 windows' worth of points per running mean
        a1.plot(x, loss, lw=0.4, alpha=0.35, color="tab:blue", label="per logged window")
        a1.plot(x, running_mean(loss, smooth), lw=1.4, color="tab:blue", label=f"running mean of {smooth}")
        a1.set(xlabel="iteration", ylabel="training loss", title="loss per iteration")
        a1.set_yscale("log")
        a2.plot(x, acc, lw=0.4, alpha=0.35, color="tab:green", label="per logged window")
        a2.plot(x, running_mean(acc, smooth), lw=1.4, color="tab:green", label=f"running mean of {smooth}")
        a2.set(xlabel="iteration", ylabel="training accuracy (%)", title="accuracy per iteration")
        for a in (a1, a2):
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
        fig.suptitle(f"{title} — per iteration".strip(" —"))
        written.append(save_figure(fig, run_dir / "curves_iteration.png"))
    if ep:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        x = [r["epoch"] for r in ep]
        a1.plot(x, [r["train_loss"] for r in ep], "o-", ms=3, label="train")
        a1.plot(x, [r["test_loss"] for r in ep], "s-", ms=3, label="test")
        a1.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
        a2.plot(x, [100 * r["train_acc"] for r in ep], "o-", ms=3, label="train")
        a2.plot(x, [100 * r["test_acc"] for r in ep], "s-", ms=3, label="test")
        a2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy per epoch")
        for a in (a1, a2):
            a.grid(alpha=0.3)
            a.legend()
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(f"{title} — per epoch".strip(" —"))
        written.append(save_figure(fig, run_dir / "curves_epoch.png"))
    return written
