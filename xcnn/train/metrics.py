"""The metric files of a run directory: per-iteration-window and per-epoch CSVs, ``metrics.json``."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, atomic_write_text

__all__ = ["ITER_FIELDS", "EPOCH_FIELDS", "write_csv", "read_iter_rows", "write_metrics"]

ITER_FIELDS = ["iteration", "epoch", "train_loss", "train_acc"]
EPOCH_FIELDS = ["epoch", "iteration", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "train_seconds",
                "eval_seconds", "images_per_second"]


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write_text(path, buf.getvalue())


def read_iter_rows(path: Path, upto: int) -> list[dict]:
    """Per-iteration rows already written, truncated to the checkpoint's iteration."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            it = int(r["iteration"])
            if it <= upto:
                rows.append({"iteration": it, "epoch": float(r["epoch"]), "train_loss": float(r["train_loss"]),
                             "train_acc": float(r["train_acc"])})
    return rows


def write_metrics(out: Path, status: str, cfg, device, parameters: int, history: list[dict], step,
                  distributed: dict | None = None) -> None:
    """``metrics_epoch.csv`` and ``metrics.json`` (the epoch rows, a summary, and -- for a
    ``--cuda-graph`` run -- how many steps replayed the graph, or why capture failed; for a
    ``--distributed`` run, ``distributed``: its ranks and backend)."""
    write_csv(out / "metrics_epoch.csv", history, EPOCH_FIELDS)
    accs = [h["test_acc"] for h in history]
    extra = {} if distributed is None else {"distributed": distributed}
    atomic_write_json(out / "metrics.json", {
        "status": status, "model": cfg.model, "dataset": cfg.dataset, "device": str(device),
        "parameters": parameters, "epochs_done": len(history),
        "final_test_acc": accs[-1] if accs else None, "best_test_acc": max(accs, default=None),
        "mean_train_seconds_per_epoch": float(np.mean([h["train_seconds"] for h in history])) if history else None,
        "cuda_graph": {"replays": step.replays, "capture_failed": step.failed} if step.graphed else None,
        **extra, "config": asdict(cfg), "history": history})
