"""The training loop: batches on the device, metrics, atomic checkpoints, exact resume, Ctrl-C and NaN handling.

The CLI (:mod:`xcnn.train`) only fills a :class:`RunConfig` and calls :func:`fit`.

Files written into ``out``::

    config.json          the run's settings
    checkpoint.npz       latest weights + optimizer state + where to resume (atomic, every epoch and on Ctrl-C)
    epoch_NNN.npz        snapshots kept for the epochs in ``save_epochs`` (0 = before training)
    metrics_iter.csv     per-iteration-window train loss/accuracy (window = ``log_every`` iterations)
    metrics_epoch.csv    per-epoch train/test loss/accuracy and seconds
    metrics.json         the same epoch metrics plus a summary
    curves_*.png         training curves (at the end and on interruption)
"""
from __future__ import annotations

import csv
import io
import json
import math
import platform
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .backend import get_device
from .io import atomic_write_json, atomic_write_text
from .losses import SoftmaxCrossEntropy
from .models import build_model
from .network import CheckpointError, load_checkpoint
from .optim import get_optimizer
from .step import make_train_step

__all__ = ["RunConfig", "RunResult", "fit", "TrainingError", "epoch_permutation", "evaluate_arrays"]

EXIT_INTERRUPTED = 130
EXIT_DIVERGED = 3


class TrainingError(RuntimeError):
    """A run that cannot start or continue (bad settings, mismatched resume, diverged loss)."""


@dataclass
class RunConfig:
    model: str = "seed-cnn"
    dataset: str = "mnist"
    epochs: int = 30
    batch_size: int = 50
    lr: float = 0.1
    momentum: float = 1e-3
    weight_decay: float = 1e-3
    optimizer: str = "sgd"
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    out: str = "runs/seed-cnn"
    log_every: int = 10
    save_epochs: list[int] = field(default_factory=list)
    train_limit: int | None = None  # use only the first N training images (tests, quick runs)
    test_limit: int | None = None
    dtype: str = "float32"
    lr_schedule: str = "constant"  # or "cosine": lr * (1 + cos(pi * t / T)) / 2 over all T steps
    init: str | None = None  # None: the preset's default ("report" for the report's networks)
    cuda_graph: bool = False  # replay full-batch steps as a captured CUDA graph (same results, fewer launches)

    def check(self):
        if self.epochs < 0:
            raise TrainingError(f"--epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise TrainingError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainingError(f"--lr must be a positive number, got {self.lr}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise TrainingError("--momentum and --weight-decay must be >= 0")
        if self.log_every < 1:
            raise TrainingError(f"--log-every must be >= 1, got {self.log_every}")
        if self.optimizer not in ("sgd", "adam"):
            raise TrainingError(f"--optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.dtype not in ("float32", "float64"):
            raise TrainingError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.cuda_graph and self.optimizer != "sgd":
            raise TrainingError(f"--cuda-graph supports --optimizer sgd only, got {self.optimizer!r} (its per-step "
                                "bias correction would be frozen by a replayed graph); drop --cuda-graph")

    # settings that must agree for --resume to continue the same run (not cuda_graph: it changes
    # how a step is launched, never its result)
    RESUME_KEYS = ("model", "dataset", "batch_size", "lr", "momentum", "weight_decay", "optimizer", "seed",
                   "train_limit", "test_limit", "dtype", "log_every", "init", "lr_schedule")


@dataclass
class RunResult:
    status: str  # "completed", "interrupted" or "diverged"
    epochs_done: int
    final_test_acc: float | None
    best_test_acc: float | None
    out: Path
    history: list[dict]
    message: str = ""


LR_SCHEDULES = ("constant", "cosine")


def lr_at(cfg: RunConfig, step: int, total_steps: int) -> float:
    """The learning rate for 0-based training step ``step`` of ``total_steps``: a pure function, so a
    resumed run uses exactly the rates an uninterrupted one would."""
    if cfg.lr_schedule == "cosine" and total_steps > 0:
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return cfg.lr


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the training set in ``epoch`` (0-based): a pure function of (seed, epoch), so a
    resumed run sees exactly the batches an uninterrupted one would."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def evaluate_arrays(net, x, y, batch_size: int = 1000):
    """``(mean loss, accuracy)`` of ``net`` on device arrays ``x``, ``y`` in eval mode (two host reads)."""
    loss_fn = SoftmaxCrossEntropy()
    was = net.training
    net.eval()
    try:
        total = 0.0
        correct = 0
        for i in range(0, x.shape[0], batch_size):
            logits = net.forward(x[i:i + batch_size])
            yb = y[i:i + batch_size]
            total = total + loss_fn.forward(logits, yb) * yb.shape[0]
            correct = correct + (logits.argmax(axis=1) == yb).sum()
        n = x.shape[0]
        return float(total) / n, float(correct) / n
    finally:
        net.train(was)


class _Interrupt:
    """Turns the first Ctrl-C into a flag (the step in flight finishes); a second one aborts at once."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _write_csv(path: Path, rows: list[dict], fields: list[str]):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write_text(path, buf.getvalue())


ITER_FIELDS = ["iteration", "epoch", "train_loss", "train_acc"]
EPOCH_FIELDS = ["epoch", "iteration", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "train_seconds",
                "eval_seconds", "images_per_second"]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> dict:
    import os  # noqa: PLC0415

    return {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
            "processor": cpu_model(), "cores": os.cpu_count(), "xcnn": __version__}


def _load_data(cfg: RunConfig):
    from . import data  # noqa: PLC0415  (keeps `import xcnn.trainer` light)

    ds = data.load(cfg.dataset, data_dir=cfg.data_dir)
    dtype = np.dtype(cfg.dtype)
    xtr, ytr = ds.train_images, ds.train_labels
    xte, yte = ds.test_images, ds.test_labels
    if cfg.train_limit:
        xtr, ytr = xtr[:cfg.train_limit], ytr[:cfg.train_limit]
    if cfg.test_limit:
        xte, yte = xte[:cfg.test_limit], yte[:cfg.test_limit]
    return (data.normalize(xtr, dtype), ytr.astype(np.int64), data.normalize(xte, dtype), yte.astype(np.int64))


def fit(cfg: RunConfig, *, resume: bool = False, progress=None, log=print, arrays=None) -> RunResult:
    """Train ``cfg.model`` on ``cfg.dataset`` as configured; see the module docstring for the files.

    ``arrays`` = ``(x_train, y_train, x_test, y_test)`` host arrays replaces loading the dataset
    (used by tests). ``progress`` is an optional callable ``progress(event, **info)`` for a UI.
    """
    cfg.check()
    out = Path(cfg.out)
    ck_path = out / "checkpoint.npz"
    device = get_device(cfg.device)
    dtype = np.dtype(cfg.dtype)

    state = None
    if resume:
        if not ck_path.is_file():
            raise TrainingError(f"--resume: no checkpoint at {ck_path}; start without --resume")
        try:
            saved_cfg = json.loads((out / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise TrainingError(f"--resume: {out / 'config.json'} is missing or unreadable ({exc})") from None
        diff = {k: (saved_cfg.get(k), getattr(cfg, k)) for k in RunConfig.RESUME_KEYS
                if saved_cfg.get(k) != getattr(cfg, k)}
        if cfg.lr_schedule != "constant" and saved_cfg.get("epochs") != cfg.epochs:
            diff["epochs"] = (saved_cfg.get("epochs"), cfg.epochs)  # the schedule spans all epochs
        if diff:
            raise TrainingError("--resume: settings differ from the interrupted run: " + ", ".join(
                f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items()) + " (use the same flags, or a new --out)")
        state = load_checkpoint(ck_path)["meta"]
    elif ck_path.exists():
        raise TrainingError(f"{out} already holds a run (checkpoint.npz): continue it with --resume, "
                            "or choose another --out")

    x_tr, y_tr, x_te, y_te = arrays if arrays is not None else _load_data(cfg)
    x_tr, x_te = x_tr.astype(dtype, copy=False), x_te.astype(dtype, copy=False)
    # The whole dataset lives on the device: a step never copies from the host.
    with device:
        X, Y = device.asarray(x_tr), device.asarray(y_tr)
        XT, YT = device.asarray(x_te), device.asarray(y_te)
    n = X.shape[0]
    if n == 0:
        raise TrainingError("the training set is empty")
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size

    net = build_model(cfg.model, dtype=dtype, seed=cfg.seed, device=device, init=cfg.init)
    opt_kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        opt_kw["momentum"] = cfg.momentum
    opt = get_optimizer(cfg.optimizer, net.parameters(), **opt_kw)
    loss_fn = SoftmaxCrossEntropy()
    try:
        train_step = make_train_step(net, opt, loss_fn, cfg.batch_size, cuda_graph=cfg.cuda_graph, log=log)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None

    out.mkdir(parents=True, exist_ok=True)
    if state is not None:
        net.load(ck_path, opt)
        epoch, batch_in_epoch = int(state["epoch"]), int(state["batch"])
        history, iter_rows = list(state["history"]), _read_iter_rows(out / "metrics_iter.csv", state["iteration"])
        run_acc = dict(state["running"])
        log(f"resuming {cfg.model} from {ck_path}: epoch {epoch + 1}, batch {batch_in_epoch}/{steps_per_epoch}")
    else:
        atomic_write_json(out / "config.json", {**asdict(cfg), "machine": _machine(), "device_resolved": str(device)})
        epoch, batch_in_epoch, history, iter_rows = 0, 0, [], []
        run_acc = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        if 0 in cfg.save_epochs:
            net.save(out / "epoch_000.npz", opt, meta={"epoch": 0})

    def save_checkpoint(ep, b, iteration):
        meta = {"epoch": ep, "batch": b, "iteration": iteration, "history": history, "running": run_acc,
                "config": asdict(cfg)}
        net.save(ck_path, opt, meta=meta)
        _write_csv(out / "metrics_iter.csv", iter_rows, ITER_FIELDS)

    def write_metrics(status):
        _write_csv(out / "metrics_epoch.csv", history, EPOCH_FIELDS)
        best = max((h["test_acc"] for h in history), default=None)
        atomic_write_json(out / "metrics.json", {
            "status": status, "model": cfg.model, "dataset": cfg.dataset, "device": str(device),
            "parameters": net.num_parameters(), "epochs_done": len(history),
            "final_test_acc": history[-1]["test_acc"] if history else None, "best_test_acc": best,
            "mean_train_seconds_per_epoch": (float(np.mean([h["train_seconds"] for h in history]))
                                             if history else None),
            "cuda_graph": ({"replays": train_step.replays, "capture_failed": train_step.failed}
                           if train_step.graphed else None),
            "config": asdict(cfg), "history": history})

    def finish(status, message):
        write_metrics(status)
        try:
            from .plots import training_curves  # noqa: PLC0415

            training_curves(out, title=f"{cfg.model} on {cfg.dataset}")
        except Exception as exc:  # plotting must never lose a run
            log(f"warning: could not draw the training curves ({type(exc).__name__}: {exc})")
        final = history[-1]["test_acc"] if history else None
        best = max((h["test_acc"] for h in history), default=None)
        return RunResult(status, len(history), final, best, out, history, message)

    iteration = epoch * steps_per_epoch + batch_in_epoch
    win_seen = 0
    # Overflow/NaN warnings are not printed: a non-finite loss is detected and reported below.
    with _Interrupt() as stop, np.errstate(over="ignore", invalid="ignore"):
        while epoch < cfg.epochs:
            perm = device.asarray(epoch_permutation(n, cfg.seed, epoch))
            if progress:
                progress("epoch_start", epoch=epoch + 1, epochs=cfg.epochs, steps=steps_per_epoch,
                         start=batch_in_epoch)
            t0 = time.perf_counter()
            net.train()
            with train_step.scope():
                for b in range(batch_in_epoch, steps_per_epoch):
                    idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                    if cfg.lr_schedule != "constant":
                        opt.lr = lr_at(cfg, iteration, cfg.epochs * steps_per_epoch)
                    train_step(X, Y, idx)  # loss and accuracy accumulate on the device
                    win_seen += int(idx.shape[0])
                    iteration += 1
                    last = b == steps_per_epoch - 1
                    if iteration % cfg.log_every == 0 or last or stop.requested:
                        wl, wc = train_step.take()  # the host reads only at log points
                        if not math.isfinite(wl):
                            run_acc["seconds"] += time.perf_counter() - t0
                            msg = (f"loss became {wl} at iteration {iteration} (epoch {epoch + 1}); stopped. "
                                   f"The last good checkpoint is {ck_path if ck_path.exists() else 'not written yet'}"
                                   f"; try a lower --lr (now {cfg.lr}).")
                            log(msg)
                            return finish("diverged", msg)
                        iter_rows.append({"iteration": iteration, "epoch": epoch + (b + 1) / steps_per_epoch,
                                          "train_loss": wl / win_seen, "train_acc": wc / win_seen})
                        run_acc["loss"] += wl
                        run_acc["correct"] += wc
                        run_acc["seen"] += win_seen
                        if progress:
                            progress("step", step=b + 1, loss=wl / win_seen, acc=wc / win_seen)
                        win_seen = 0
                    if stop.requested and not last:
                        run_acc["seconds"] += time.perf_counter() - t0
                        save_checkpoint(epoch, b + 1, iteration)
                        msg = (f"interrupted at epoch {epoch + 1}, batch {b + 1}/{steps_per_epoch}; checkpoint saved. "
                               f"Resume with: python -m xcnn.train --out {out} --resume (and the same settings)")
                        log(msg)
                        return finish("interrupted", msg)
            device.synchronize()
            train_s = run_acc["seconds"] + time.perf_counter() - t0
            t1 = time.perf_counter()
            test_loss, test_acc = evaluate_arrays(net, XT, YT)
            eval_s = time.perf_counter() - t1
            seen = max(run_acc["seen"], 1)
            row = {"epoch": epoch + 1, "iteration": iteration, "lr": opt.lr, "train_loss": run_acc["loss"] / seen,
                   "train_acc": run_acc["correct"] / seen, "test_loss": test_loss, "test_acc": test_acc,
                   "train_seconds": train_s, "eval_seconds": eval_s,
                   "images_per_second": n / train_s if train_s > 0 else None}
            history.append(row)
            epoch += 1
            batch_in_epoch = 0
            run_acc = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            save_checkpoint(epoch, 0, iteration)
            if epoch in cfg.save_epochs:
                net.save(out / f"epoch_{epoch:03d}.npz", opt, meta={"epoch": epoch})
            write_metrics("running")
            if progress:
                progress("epoch_end", **row)
            else:
                log(f"epoch {epoch:3d}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                    f"test loss {test_loss:.4f} acc {test_acc:.4f}  {train_s:.1f}s")
            if stop.requested:
                msg = (f"interrupted after epoch {epoch}; checkpoint saved. Resume with: "
                       f"python -m xcnn.train --out {out} --resume (and the same settings)")
                log(msg)
                return finish("interrupted", msg)
    return finish("completed", "")


def _read_iter_rows(path: Path, upto: int) -> list[dict]:
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


def load_run(out) -> dict:
    """Read a run directory's ``metrics.json`` (raises :class:`CheckpointError` when absent)."""
    p = Path(out) / "metrics.json"
    if not p.is_file():
        raise CheckpointError(f"{out}: no metrics.json (is this a training run directory?)")
    return json.loads(p.read_text())
