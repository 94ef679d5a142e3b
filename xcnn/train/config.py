"""The settings of a training run, their validation, and the pure functions a run follows (the
learning-rate schedule, the order of each epoch), so a resumed run repeats an uninterrupted one."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields

import numpy as np

from ..errors import ConfigError

__all__ = ["RunConfig", "LR_SCHEDULES", "resumed_config", "lr_at", "epoch_permutation"]

LR_SCHEDULES = ("constant", "cosine")


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
        """Refuse settings that cannot work, naming the flag and the fix (:class:`ConfigError`)."""
        for flag, v in (("--epochs", self.epochs), ("--batch-size", self.batch_size), ("--log-every", self.log_every)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                extra = " (0 would train nothing)" if flag == "--epochs" else ""
                raise ConfigError(f"{flag} must be a whole number >= 1{extra}, got {v!r}")
        for flag, v in (("--train-limit", self.train_limit), ("--test-limit", self.test_limit)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ConfigError(f"{flag} must be >= 1, got {v!r} — omit it to use every image")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"--seed must be a whole number >= 0, got {self.seed!r}")
        if not (isinstance(self.lr, numbers.Real) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr!r}")
        for flag, v in (("--momentum", self.momentum), ("--weight-decay", self.weight_decay)):
            if not (isinstance(v, numbers.Real) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{flag} must be a finite number >= 0, got {v!r}")
        if any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 0 for e in self.save_epochs):
            raise ConfigError(f"--save-epochs takes epoch numbers >= 0, got {self.save_epochs!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"--optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.cuda_graph and self.optimizer != "sgd":
            raise ConfigError(f"--cuda-graph supports --optimizer sgd only, got {self.optimizer!r} (its per-step "
                              "bias correction would be frozen by a replayed graph) — drop --cuda-graph")

    def warnings(self, n_train: int | None = None) -> list[str]:
        """Settings that are legal but probably not meant, one sentence each (``n_train``: the number of
        training images available, when known)."""
        out = []
        if self.optimizer == "sgd" and self.momentum >= 1:
            out.append(f"--momentum {self.momentum} >= 1 lets the velocity grow without bound; SGD will likely "
                       "diverge (the report uses 1e-3; 0.9 is common)")
        late = [e for e in self.save_epochs if e > self.epochs]
        if late:
            out.append(f"--save-epochs {','.join(map(str, late))} lies after the last epoch ({self.epochs}); "
                       "no snapshot will be written for it")
        if n_train is not None:
            if self.train_limit is not None and self.train_limit > n_train:
                out.append(f"--train-limit {self.train_limit} exceeds the {n_train} training images; all are used")
            n = min(n_train, self.train_limit or n_train)
            if self.batch_size > n:
                out.append(f"--batch-size {self.batch_size} exceeds the {n} training images; each epoch is one "
                           f"step of {n}")
        return out

    def command(self, *, always=("model", "epochs", "device", "out")) -> str:
        """The ``python -m xcnn.train`` line that runs these settings: the ``always`` flags, then every
        setting that differs from its default."""
        default = RunConfig()
        parts = ["python -m xcnn.train"]
        for f in fields(self):
            v, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            if f.name not in always and v == getattr(default, f.name):
                continue
            if f.name == "dtype":
                parts += ["--float64"] if v == "float64" else []
            elif f.name == "cuda_graph":
                parts += ["--cuda-graph"] if v else []
            elif f.name == "save_epochs":
                parts += [flag, ",".join(map(str, v))] if v else []
            elif v is not None:
                parts += [flag, str(v)]
        return " ".join(parts)

    # settings that must agree for --resume to continue the same run (not cuda_graph: it changes
    # how a step is launched, never its result)
    RESUME_KEYS = ("model", "dataset", "batch_size", "lr", "momentum", "weight_decay", "optimizer", "seed",
                   "train_limit", "test_limit", "dtype", "log_every", "init", "lr_schedule")
    #: what a resumed run may change; everything else comes from the run's saved config.json. (Whether
    #: it runs --distributed, and on how many ranks, is no setting: a checkpoint holds global state only.)
    RESUME_MAY_CHANGE = ("epochs", "device", "data_dir", "cuda_graph", "save_epochs", "out")


def resumed_config(saved: dict, given: dict) -> RunConfig:
    """The settings of a resumed run: those saved in its ``config.json``, overridden by the flags given
    on the command line (``given``, as RunConfig fields) that a resumed run may change
    (:attr:`RunConfig.RESUME_MAY_CHANGE`). A given flag that would change any other setting is refused."""
    names = {f.name for f in fields(RunConfig)}
    base = {k: v for k, v in saved.items() if k in names}
    clash = {k: (base.get(k, getattr(RunConfig(), k)), v) for k, v in given.items()
             if k not in RunConfig.RESUME_MAY_CHANGE and base.get(k, getattr(RunConfig(), k)) != v}
    if clash:
        def flag(k):
            return "--float64" if k == "dtype" else "--" + k.replace("_", "-")

        raise ConfigError("--resume continues a run with its saved settings, but " + ", ".join(
            f"{flag(k)} {b} differs from the saved {a}" for k, (a, b) in clash.items())
            + f" — drop {'that flag' if len(clash) == 1 else 'those flags'}, or start a new run with another --out")
    base.update({k: v for k, v in given.items() if k in RunConfig.RESUME_MAY_CHANGE})
    return RunConfig(**base)


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
