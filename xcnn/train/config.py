"""The settings of a training run, their validation, and the pure functions a run follows (the
learning-rate schedule, the order of each epoch), so a resumed run repeats an uninterrupted one."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from ..errors import ConfigError

__all__ = ["RunConfig", "LR_SCHEDULES", "lr_at", "epoch_permutation"]

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
        if self.epochs < 0:
            raise ConfigError(f"--epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ConfigError("--momentum and --weight-decay must be >= 0")
        if self.log_every < 1:
            raise ConfigError(f"--log-every must be >= 1, got {self.log_every}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"--optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.cuda_graph and self.optimizer != "sgd":
            raise ConfigError(f"--cuda-graph supports --optimizer sgd only, got {self.optimizer!r} (its per-step "
                              "bias correction would be frozen by a replayed graph) — drop --cuda-graph")

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
