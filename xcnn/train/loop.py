"""The training loop: the dataset on the device, steps, metrics, atomic checkpoints, exact resume,
Ctrl-C and NaN handling. The CLI (:mod:`.cli`) only fills a :class:`RunConfig` and calls :func:`fit`.

Files written into ``out``::

    config.json          the run's settings and the machine
    checkpoint.npz       latest weights + optimizer state + where to resume (atomic, every epoch and on Ctrl-C)
    epoch_NNN.npz        snapshots kept for the epochs in ``save_epochs`` (0 = before training)
    metrics_iter.csv     per-iteration-window train loss/accuracy (window = ``log_every`` iterations)
    metrics_epoch.csv    per-epoch train/test loss/accuracy and seconds
    metrics.json         the same epoch metrics plus a summary
    curves_*.png         training curves (at the end and on interruption)
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import machine
from ..backend import get_device
from ..errors import ConfigError
from ..io import atomic_write_json, check_output_dir
from ..nn.losses import SoftmaxCrossEntropy
from ..nn.models import build_model
from ..nn.optim import get_optimizer
from . import checkpoint
from .checkpoint import RunState
from .config import RunConfig, epoch_permutation, lr_at
from .metrics import write_metrics
from .step import make_train_step

__all__ = ["RunResult", "fit", "evaluate_arrays", "EXIT_INTERRUPTED", "EXIT_DIVERGED"]

EXIT_INTERRUPTED = 130
EXIT_DIVERGED = 3


@dataclass
class RunResult:
    status: str  # "completed", "interrupted" or "diverged"
    epochs_done: int
    final_test_acc: float | None
    best_test_acc: float | None
    out: Path
    history: list[dict]
    message: str = ""


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


def _load_data(cfg: RunConfig):
    from .. import data  # noqa: PLC0415  (keeps `import xcnn.train` light)

    ds = data.load(cfg.dataset, data_dir=cfg.data_dir)
    dtype = np.dtype(cfg.dtype)
    xtr, ytr = ds.train_images, ds.train_labels
    xte, yte = ds.test_images, ds.test_labels
    if cfg.train_limit:
        xtr, ytr = xtr[:cfg.train_limit], ytr[:cfg.train_limit]
    if cfg.test_limit:
        xte, yte = xte[:cfg.test_limit], yte[:cfg.test_limit]
    return (data.normalize(xtr, dtype), ytr.astype(np.int64), data.normalize(xte, dtype), yte.astype(np.int64))


class _Run:
    """One call of :func:`fit`: the configuration, the device data, network, optimizer and step, the
    run state, and the files they are written to (by rank 0 alone in a distributed run)."""

    def __init__(self, cfg: RunConfig, device, arrays, state: RunState | None, log, progress, parallel=None):
        self.cfg, self.device, self.log, self.progress, self.parallel = cfg, device, log, progress, parallel
        self.writes = parallel is None or parallel.is_root
        self.out = Path(cfg.out)
        dtype = np.dtype(cfg.dtype)
        x_tr, y_tr, x_te, y_te = arrays
        # The whole dataset lives on the device: a step never copies from the host.
        self.X, self.Y = device.asarray(x_tr.astype(dtype, copy=False)), device.asarray(y_tr)
        self.XT, self.YT = device.asarray(x_te.astype(dtype, copy=False)), device.asarray(y_te)
        self.n = int(self.X.shape[0])
        if self.n == 0:
            raise ConfigError("the training set is empty")
        self.steps_per_epoch = (self.n + cfg.batch_size - 1) // cfg.batch_size
        self.net = build_model(cfg.model, dtype=dtype, seed=cfg.seed, device=device, init=cfg.init)
        opt_kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "sgd":
            opt_kw["momentum"] = cfg.momentum
        self.opt = get_optimizer(cfg.optimizer, self.net.parameters(), **opt_kw)
        self.step = make_train_step(self.net, self.opt, SoftmaxCrossEntropy(), cfg.batch_size,
                                    cuda_graph=cfg.cuda_graph, log=log, parallel=parallel)
        if self.writes:
            self.out.mkdir(parents=True, exist_ok=True)
        if state is not None:
            if self.writes:
                self.net.load(checkpoint.path(self.out), self.opt)
            self.state = state
            log(f"resuming {cfg.model} from {checkpoint.path(self.out)}: epoch {state.epoch + 1}, "
                f"batch {state.batch}/{self.steps_per_epoch}")
        else:
            self.state = RunState()
            if self.writes:
                dist = {} if parallel is None else {"distributed": parallel.describe()}
                atomic_write_json(self.out / "config.json", {**asdict(cfg), "machine": machine.describe(str(device)),
                                                             "device_resolved": str(device), **dist})
        if parallel is not None:  # the same data on every rank (checked); rank 0's weights and optimizer state
            parallel.start(self.net, self.opt, arrays)
        if state is None and 0 in cfg.save_epochs and self.writes:
            self.net.save(self.out / "epoch_000.npz", self.opt, meta={"epoch": 0})

    # -- files ---------------------------------------------------------------
    def write_metrics(self, status):
        if self.writes:
            write_metrics(self.out, status, self.cfg, self.device, self.net.num_parameters(), self.state.history,
                          self.step, None if self.parallel is None else self.parallel.describe())

    def save_checkpoint(self):
        if self.writes:
            checkpoint.save(self.out, self.net, self.opt, self.cfg, self.state)

    @property
    def resume_command(self) -> str:
        if self.parallel is None:
            return f"python -m xcnn.train --out {self.out} --resume"
        return (f"mpirun -n {self.parallel.size} python -m xcnn.train --distributed --out {self.out} --resume "
                "(any number of ranks, or one process without --distributed)")

    def finish(self, status, message="") -> RunResult:
        self.write_metrics(status)
        try:
            from ..viz.curves import training_curves  # noqa: PLC0415

            if self.writes:
                training_curves(self.out, title=f"{self.cfg.model} on {self.cfg.dataset}")
        except Exception as exc:  # plotting must never lose a run
            self.log(f"warning: could not draw the training curves ({type(exc).__name__}: {exc})")
        if message:
            self.log(message)
        accs = [h["test_acc"] for h in self.state.history]
        return RunResult(status, len(accs), accs[-1] if accs else None, max(accs, default=None), self.out,
                         self.state.history, message)

    # -- training ---------------------------------------------------------------
    def _log_window(self, seen, t0):
        """Read the step's sums (the host's only reads during an epoch) into the per-iteration rows;
        returns a message when the loss is no longer finite."""
        st, cfg = self.state, self.cfg
        wl, wc = self.step.take()
        if not math.isfinite(wl):
            st.running["seconds"] += time.perf_counter() - t0
            ck = checkpoint.path(self.out)
            return (f"loss became {wl} at iteration {st.iteration} (epoch {st.epoch + 1}); stopped. "
                    f"The last good checkpoint is {ck if ck.exists() else 'not written yet'}; "
                    f"try a lower --lr (now {cfg.lr}).")
        st.iter_rows.append({"iteration": st.iteration, "epoch": st.epoch + st.batch / self.steps_per_epoch,
                             "train_loss": wl / seen, "train_acc": wc / seen})
        st.running["loss"] += wl
        st.running["correct"] += wc
        st.running["seen"] += seen
        if self.progress:
            self.progress("step", step=st.batch, loss=wl / seen, acc=wc / seen)
        return None

    def train_epoch(self, stop) -> RunResult | None:
        """The rest of the current epoch; a result when the run stops inside it."""
        cfg, st = self.cfg, self.state
        perm = self.device.asarray(epoch_permutation(self.n, cfg.seed, st.epoch))
        if self.progress:
            self.progress("epoch_start", epoch=st.epoch + 1, epochs=cfg.epochs, steps=self.steps_per_epoch,
                          start=st.batch)
        t0 = time.perf_counter()
        seen = 0
        self.net.train()
        with self.step.scope():
            while st.batch < self.steps_per_epoch:
                idx = perm[st.batch * cfg.batch_size:(st.batch + 1) * cfg.batch_size]
                if cfg.lr_schedule != "constant":
                    self.opt.lr = lr_at(cfg, st.iteration, cfg.epochs * self.steps_per_epoch)
                self.step(self.X, self.Y, idx)  # loss and accuracy accumulate on the device
                seen += int(idx.shape[0])
                st.iteration += 1
                st.batch += 1
                last = st.batch == self.steps_per_epoch
                if st.iteration % cfg.log_every == 0 or last or stop.requested:
                    diverged = self._log_window(seen, t0)
                    if diverged:
                        return self.finish("diverged", diverged)
                    seen = 0
                if stop.requested and not last:
                    st.running["seconds"] += time.perf_counter() - t0
                    self.save_checkpoint()
                    return self.finish("interrupted", (
                        f"interrupted at epoch {st.epoch + 1}, batch {st.batch}/{self.steps_per_epoch}; checkpoint "
                        f"saved. Resume with: {self.resume_command}"))
        self.device.synchronize()
        st.running["seconds"] += time.perf_counter() - t0
        return None

    def end_epoch(self):
        """Evaluate, record the epoch's row, checkpoint, snapshot and report."""
        cfg, st = self.cfg, self.state
        train_s = st.running["seconds"]
        t1 = time.perf_counter()
        if self.parallel is None:
            test_loss, test_acc = evaluate_arrays(self.net, self.XT, self.YT)
        else:  # each rank its share of the test set; sums, stop flags and a replica check reduced
            test_loss, test_acc = self.parallel.end_of_epoch(self.net, self.opt, self.XT, self.YT, evaluate_arrays)
        eval_s = time.perf_counter() - t1
        seen = max(st.running["seen"], 1)
        row = {"epoch": st.epoch + 1, "iteration": st.iteration, "lr": self.opt.lr,
               "train_loss": st.running["loss"] / seen, "train_acc": st.running["correct"] / seen,
               "test_loss": test_loss, "test_acc": test_acc, "train_seconds": train_s, "eval_seconds": eval_s,
               "images_per_second": self.n / train_s if train_s > 0 else None}
        st.history.append(row)
        st.next_epoch()
        self.save_checkpoint()
        if st.epoch in cfg.save_epochs and self.writes:
            self.net.save(self.out / f"epoch_{st.epoch:03d}.npz", self.opt, meta={"epoch": st.epoch})
        self.write_metrics("running")
        if self.progress:
            self.progress("epoch_end", **row)
        else:
            self.log(f"epoch {st.epoch:3d}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc "
                     f"{row['train_acc']:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}  {train_s:.1f}s")


def _root_state(cfg: RunConfig, resume: bool, log) -> RunState | None:
    check_output_dir(cfg.out)
    return checkpoint.start_state(cfg, resume, log)


def fit(cfg: RunConfig, *, resume: bool = False, progress=None, log=print, arrays=None, parallel=None) -> RunResult:
    """Train ``cfg.model`` on ``cfg.dataset`` as configured; see the module docstring for the files.

    ``arrays`` = ``(x_train, y_train, x_test, y_test)`` host arrays replaces loading the dataset
    (used by tests). ``progress`` is an optional callable ``progress(event, **info)`` for a UI.
    ``parallel``: this process's :class:`xcnn.dist.DataParallel` in a distributed run (``--distributed``);
    its rank 0 alone reads and writes ``cfg.out``, and every rank must call ``fit`` alike.
    """
    if parallel is None:
        cfg.check()
        check_output_dir(cfg.out)  # before anything slow: a bad --out is refused at once
        device = get_device(cfg.device)
        state = checkpoint.start_state(cfg, resume, log)
        arrays = arrays if arrays is not None else _load_data(cfg)
    else:  # rank 0 reads the run directory; an error there or in any rank's data reaches every rank
        parallel.check(cfg)  # (cfg.check() too)
        parallel.log, device = log, parallel.device
        state = parallel.from_root(_root_state, cfg, resume, log)
        arrays = arrays if arrays is not None else parallel.each(_load_data, cfg)
    for w in cfg.warnings(n_train=len(arrays[0])):  # (after a --train-limit cut: len <= the limit)
        log(f"warning: {w}")
    # Overflow/NaN warnings are not printed: a non-finite loss is detected and reported.
    with device, (_Interrupt() if parallel is None else parallel.interrupt()) as stop, \
            np.errstate(over="ignore", invalid="ignore"):
        run = _Run(cfg, device, arrays, state, log, progress, parallel)
        while run.state.epoch < cfg.epochs:
            stopped = run.train_epoch(stop)
            if stopped is not None:
                return stopped
            run.end_epoch()
            if stop.requested:
                return run.finish("interrupted", (
                    f"interrupted after epoch {run.state.epoch}; checkpoint saved. Resume with: {run.resume_command}"))
        return run.finish("completed")
