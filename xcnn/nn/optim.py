"""Optimizers: hyper-parameters and state; the update itself is :mod:`xcnn.ops.update`.

SGD follows the report's framework exactly (biases decayed too)::

    v = momentum * v + (grad + weight_decay * param)
    param -= lr * v

Note this is *not* PyTorch's placement of the learning rate, which only matters when ``lr``
changes during training; with a constant ``lr`` the trajectories are identical.

State buffers live on the parameters' device in their dtype. After ``net.to(...)`` or
``net.astype(...)`` call ``optimizer.to(...)`` / ``optimizer.astype(...)``: a step on parameters whose
device or dtype no longer matches the state is refused (never a silent reset or a silent cast).
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..backend import device_of, get_device, same_device, to_host, zeros_like
from ..errors import ConfigError, DeviceError

__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer"]


def _hyper(owner: str, name: str, v, *, low: float, low_open: bool, high: float | None = None) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {name} must be a number, got {v!r}") from None
    bad = not math.isfinite(v) or (v <= low if low_open else v < low) or (high is not None and v >= high)
    if bad:
        rng = f"{'>' if low_open else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise ConfigError(f"{owner}: {name} must be a finite number {rng}, got {v!r}")
    return v


class Optimizer:
    """Base: ``step()`` updates parameters from their gradients, ``zero_grad()`` clears gradients,
    ``state_dict()``/``load_state_dict()`` round-trip every buffer exactly (as host arrays)."""

    kind = "optimizer"
    hyper: tuple[str, ...] = ()

    def __init__(self, params):
        self.params = list(params)
        if not self.params:
            raise ConfigError(f"{type(self).__name__}: got an empty parameter list")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ConfigError(f"{type(self).__name__}: parameter names must be unique, got {names}")
        self.steps = 0
        self.state: dict[str, dict] = {}  # buffer name -> {param name: array}
        self._backend_state: dict = {}  # what the update's backend keeps between steps (not saved)

    def zero_grad(self):
        for p in self.params:
            p.grad.fill(0)

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _buffers(self, kind: str) -> list:
        """The ``kind`` buffer of every parameter, made (zeros) on first use; refuses one whose device
        or dtype no longer matches its parameter."""
        bufs = self.state.setdefault(kind, {})
        out = []
        for p in self.params:
            b = bufs.get(p.name)
            if b is None:
                b = bufs[p.name] = zeros_like(p.data)
            elif b.dtype != p.data.dtype or not same_device(b, p.data):
                raise DeviceError(
                    f"{type(self).__name__}: state {kind!r} of {p.name} is {device_of(b)} {b.dtype} but the parameter "
                    f"is {device_of(p.data)} {p.data.dtype} — after net.to()/net.astype() call optimizer.to()/"
                    "optimizer.astype() too")
            out.append(b)
        return out

    def to(self, device):
        """Move every state buffer to ``device`` (after ``net.to(device)``)."""
        dev = get_device(device)
        for bufs in self.state.values():
            for k in bufs:
                bufs[k] = dev.asarray(bufs[k])
        self._backend_state = {}
        return self

    def astype(self, dtype):
        """Cast every state buffer to ``dtype`` (after ``net.astype(dtype)``)."""
        for bufs in self.state.values():
            for k in bufs:
                bufs[k] = bufs[k].astype(dtype)
        self._backend_state = {}
        return self

    def state_dict(self) -> dict:
        """Flat ``{key: numpy array}``: hyper-parameters, step count and every buffer."""
        out = {"kind": np.array(self.kind), "steps": np.array(self.steps, dtype=np.int64)}
        for h in self.hyper:
            out[f"hyper/{h}"] = np.array(getattr(self, h), dtype=np.float64)
        for kind, bufs in self.state.items():
            for name, arr in bufs.items():
                out[f"{kind}/{name}"] = to_host(arr)
        return out

    def load_state_dict(self, state: dict):
        kind = str(state.get("kind", ""))
        if kind != self.kind:
            raise ConfigError(f"checkpoint holds a {kind or 'missing'!r} optimizer state, not {self.kind!r} — "
                              "load it with the optimizer it was saved with")
        self.steps = int(state["steps"])
        for h in self.hyper:
            if f"hyper/{h}" in state:
                setattr(self, h, float(state[f"hyper/{h}"]))
        by_name = {p.name: p for p in self.params}
        self.state = {}
        for key, arr in state.items():
            if key in ("kind", "steps") or key.startswith("hyper/"):
                continue
            buf_kind, name = key.split("/", 1)
            p = by_name.get(name)
            if p is None:
                raise ConfigError(f"optimizer state names parameter {name!r}, which this network lacks")
            if tuple(arr.shape) != tuple(p.data.shape):
                raise ConfigError(f"optimizer state {key!r} has shape {arr.shape}, parameter has {p.data.shape}")
            self.state.setdefault(buf_kind, {})[name] = device_of(p.data).asarray(
                np.array(arr, dtype=p.data.dtype, copy=True))
        self._backend_state = {}
        return self


class SGD(Optimizer):
    """SGD with momentum and L2 weight decay in the report's form (see module docstring)."""

    kind = "sgd"
    hyper = ("lr", "momentum", "weight_decay")

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params)
        self.lr = _hyper("SGD", "lr", lr, low=0, low_open=True)
        self.momentum = _hyper("SGD", "momentum", momentum, low=0, low_open=False)
        self.weight_decay = _hyper("SGD", "weight_decay", weight_decay, low=0, low_open=False)

    def step(self):
        ops.sgd_update([p.data for p in self.params], [p.grad for p in self.params], self._buffers("velocity"),
                       self.lr, self.momentum, self.weight_decay, self._backend_state)
        self.steps += 1

    def prepare(self):
        """Make the state a replayed step needs (the velocities, the device copy of lr, momentum and
        weight decay) current, without updating anything: before a CUDA graph replay."""
        self._buffers("velocity")
        ops.sgd_prepare([p.data for p in self.params], self.lr, self.momentum, self.weight_decay,
                        self._backend_state)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` adds ``wd * param`` to the gradient."""

    kind = "adam"
    hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params)
        self.lr = _hyper("Adam", "lr", lr, low=0, low_open=True)
        self.beta1 = _hyper("Adam", "beta1", beta1, low=0, low_open=False, high=1)
        self.beta2 = _hyper("Adam", "beta2", beta2, low=0, low_open=False, high=1)
        self.eps = _hyper("Adam", "eps", eps, low=0, low_open=True)
        self.weight_decay = _hyper("Adam", "weight_decay", weight_decay, low=0, low_open=False)

    def step(self):
        self.steps += 1
        ops.adam_update([p.data for p in self.params], [p.grad for p in self.params], self._buffers("m"),
                        self._buffers("v"), self.lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.steps)


def get_optimizer(name: str, params, **kw) -> Optimizer:
    """``'sgd'`` or ``'adam'``; unknown keyword arguments are refused by the class."""
    key = name.lower()
    if key == "sgd":
        return SGD(params, **kw)
    if key == "adam":
        return Adam(params, **kw)
    raise ConfigError(f"unknown optimizer {name!r} — use 'sgd' or 'adam'")
