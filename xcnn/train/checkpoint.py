"""A run's checkpoint: the network, the optimizer and where to continue (epoch, batch, iteration,
the metrics so far), written atomically every epoch and on Ctrl-C; and reading it back to resume."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..nn.serialize import load_checkpoint
from .metrics import ITER_FIELDS, read_iter_rows, write_csv

__all__ = ["RunState", "save", "resume", "ensure_fresh", "start_state"]


def _zero_running() -> dict:
    return {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


@dataclass
class RunState:
    """Where a run stands: the next epoch and batch to train, the iteration count, the epoch rows and
    the per-iteration rows so far, and the running sums of the epoch in progress."""

    epoch: int = 0
    batch: int = 0
    iteration: int = 0
    history: list = field(default_factory=list)
    iter_rows: list = field(default_factory=list)
    running: dict = field(default_factory=_zero_running)

    def next_epoch(self):
        self.epoch += 1
        self.batch = 0
        self.running = _zero_running()


def path(out) -> Path:
    return Path(out) / "checkpoint.npz"


def ensure_fresh(out) -> None:
    if path(out).exists():
        raise ConfigError(f"{out} already holds a run (checkpoint.npz) — continue it with --resume, "
                          "or choose another --out")


def save(out, net, opt, cfg, state: RunState) -> None:
    """Write ``checkpoint.npz`` (atomically) and the per-iteration CSV up to this point."""
    out = Path(out)
    meta = {"epoch": state.epoch, "batch": state.batch, "iteration": state.iteration, "history": state.history,
            "running": state.running, "config": asdict(cfg)}
    net.save(path(out), opt, meta=meta)
    write_csv(out / "metrics_iter.csv", state.iter_rows, ITER_FIELDS)


def resume(out, cfg) -> RunState:
    """The state saved in ``out`` after checking that ``cfg`` continues the same run."""
    out = Path(out)
    if not path(out).is_file():
        raise ConfigError(f"--resume: no checkpoint at {path(out)} — start without --resume")
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: {out / 'config.json'} is missing or unreadable ({exc})") from None
    diff = {k: (saved.get(k), getattr(cfg, k)) for k in cfg.RESUME_KEYS if saved.get(k) != getattr(cfg, k)}
    if cfg.lr_schedule != "constant" and saved.get("epochs") != cfg.epochs:
        diff["epochs"] = (saved.get("epochs"), cfg.epochs)  # the schedule spans all epochs
    if diff:
        raise ConfigError("--resume: settings differ from the interrupted run: " + ", ".join(
            f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items()) + " — use the same flags, or a new --out")
    meta = load_checkpoint(path(out))["meta"]
    return RunState(epoch=int(meta["epoch"]), batch=int(meta["batch"]), iteration=int(meta["iteration"]),
                    history=list(meta["history"]), running=dict(meta["running"]),
                    iter_rows=read_iter_rows(out / "metrics_iter.csv", meta["iteration"]))


def start_state(cfg, resuming: bool, log) -> RunState | None:
    """The state a run starts from: when ``resuming``, the one saved in ``cfg.out`` (checked to fit
    ``cfg``, and to have epochs left or be redone); else None, after checking ``cfg.out`` holds no run."""
    if not resuming:
        ensure_fresh(cfg.out)
        return None
    state = resume(cfg.out, cfg)
    if state.epoch > cfg.epochs:
        raise ConfigError(f"the run in {cfg.out} has done {state.epoch} epochs, more than --epochs {cfg.epochs} "
                          f"— pass --epochs N with N > {state.epoch} to train it further")
    if state.epoch == cfg.epochs and state.batch == 0:
        log(f"the run in {cfg.out} has done all its {cfg.epochs} epochs; its files are rewritten (pass "
            f"--epochs N with N > {cfg.epochs} to train it further)")
    return state
