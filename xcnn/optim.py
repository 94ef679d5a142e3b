"""Optimizers: in-place updates of :class:`~xcnn.layers.Parameter` lists, with savable state.

SGD follows the report's framework exactly (biases decayed too)::

    v = momentum * v + (grad + weight_decay * param)
    param -= lr * v

Note this is *not* PyTorch's placement of the learning rate, which only matters when
``lr`` changes during training; with a constant ``lr`` the trajectories are identical.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import cpu_kernels as CK
from . import functional as F
from .backend import get_array_module, get_device, to_host

__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer"]


class Optimizer:
    """Base: ``step()`` updates parameters from their gradients, ``zero_grad()`` clears gradients,
    ``state_dict()``/``load_state_dict()`` round-trip every buffer exactly (as host arrays)."""

    kind = "optimizer"
    hyper: tuple[str, ...] = ()

    def __init__(self, params):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{type(self).__name__}: parameter names must be unique, got {names}")
        self.steps = 0
        self.state: dict[str, dict] = {}  # buffer name -> {param name: array}

    def zero_grad(self):
        for p in self.params:
            p.grad.fill(0)

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _buffer(self, kind: str, p):
        bufs = self.state.setdefault(kind, {})
        b = bufs.get(p.name)
        if b is None or b.shape != p.data.shape or get_array_module(b) is not get_array_module(p.data):
            b = get_array_module(p.data).zeros_like(p.data)
            bufs[p.name] = b
        return b

    def to(self, device):
        dev = get_device(device)
        for bufs in self.state.values():
            for k in bufs:
                bufs[k] = dev.asarray(bufs[k])
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
            raise ValueError(f"checkpoint holds a {kind or 'missing'!r} optimizer state, not {self.kind!r}")
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
                raise ValueError(f"optimizer state names parameter {name!r}, which this network lacks")
            if tuple(arr.shape) != tuple(p.data.shape):
                raise ValueError(f"optimizer state {key!r} has shape {arr.shape}, parameter has {p.data.shape}")
            xp = get_array_module(p.data)
            self.state.setdefault(buf_kind, {})[name] = xp.asarray(arr, dtype=p.data.dtype)
        return self


def _multiply(a, b, out):
    """``out[...] = a * b`` on the arrays' own module (NumPy or CuPy)."""
    get_array_module(a, out).multiply(a, b, out=out)


class SGD(Optimizer):
    """SGD with momentum and L2 weight decay in the report's form (see module docstring)."""

    kind = "sgd"
    hyper = ("lr", "momentum", "weight_decay")

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params)
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: need lr > 0, momentum >= 0, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)

    def step(self):
        triples = [(p.data, p.grad, self._buffer("velocity", p)) for p in self.params]
        arrays = [a for t in triples for a in t]
        if get_array_module(arrays[0]) is not np and F._kernel_dtype(*arrays) \
                and all(a.flags.c_contiguous for a in arrays):
            # the whole network in one launch (kernels/optim.cu), through a table of the tensors'
            # addresses that is rebuilt only when an array is replaced (load, .to)
            C = F._cuda()
            key = C.sgd_table_key(*zip(*triples))
            table = self.__dict__.get("_table")
            if table is None or table[0] != key:
                table = self._table = (key, *C.sgd_table(key, arrays[0]))
            C.sgd_update_multi(table[1], table[2], table[3], self.device_hyper(arrays[0]))
            self.steps += 1
            return
        hyper = None
        for p, (d, g, v) in zip(self.params, triples):
            xp = get_array_module(d)
            contiguous = d.flags.c_contiguous and g.flags.c_contiguous and v.flags.c_contiguous
            if xp is not np and contiguous and F._kernel_dtype(d, g, v):
                # one kernel per parameter (kernels/optim.cu), the same operations and rounding as
                # _update below; lr/momentum/decay are read on the device (graph-replay safe)
                if hyper is None or hyper.dtype != d.dtype:
                    hyper = self.device_hyper(d)
                F._cuda().sgd_update(d, g, v, hyper)
                continue
            if xp is np and contiguous and F._compiled(d, g, v):
                # one compiled pass, the same operations and rounding as _update below
                CK.sgd_update(d, g, v, self.lr, self.momentum, self.weight_decay)
                continue
            s = self._scratch(p)
            if xp is np and d.size >= F.PARALLEL_MIN_ELEMENTS and d.flags.c_contiguous:
                # A big layer's update is memory-bound: halves on two threads run ~1.6x faster
                # (NumPy releases the GIL); elementwise, so the result is the same bit for bit.
                flat = [a.reshape(-1) for a in (d, g, v, s)]
                F._parallel(lambda _t, a, b: self._update(*(x[a:b] for x in flat)), d.size, 1, d.size)
            else:
                self._update(d, g, v, s)
        self.steps += 1

    def device_hyper(self, like):
        """``(lr, momentum, weight_decay)`` as a ``(3,)`` array of ``like``'s dtype on its device, which
        the fused GPU update reads. Made once; when a Python value changes (a learning-rate schedule)
        only that entry is rewritten, by a tiny device-side fill: no host synchronisation, and a
        captured CUDA graph sees the new value on its next replay."""
        vals = (self.lr, self.momentum, self.weight_decay)
        h = self.__dict__.get("_hyper")
        if h is None or h.dtype != like.dtype or get_array_module(h) is not get_array_module(like) \
                or getattr(h, "device", None) != getattr(like, "device", None):
            xp = get_array_module(like)
            with (like.device if xp is not np else contextlib.nullcontext()):
                h = xp.asarray(np.array(vals, dtype=like.dtype))
            self._hyper, self._hyper_vals = h, vals
        elif vals != self._hyper_vals:
            for i, (new, old) in enumerate(zip(vals, self._hyper_vals)):
                if new != old:
                    h[i] = new
            self._hyper_vals = vals
        return h

    def _update(self, d, g, v, s):
        # v = m*v + g + wd*p; p -= lr*v -- in place, the products go through a reused scratch
        # buffer (a fresh temporary of a big layer's size costs an mmap and page faults per step)
        t = d.dtype.type
        v *= t(self.momentum)
        v += g
        if self.weight_decay:
            _multiply(d, t(self.weight_decay), s)
            v += s
        _multiply(v, t(self.lr), s)
        d -= s

    def _scratch(self, p):
        """A per-parameter temporary (not optimizer state: never saved, contents meaningless)."""
        bufs = self.__dict__.setdefault("_scratch_bufs", {})
        b = bufs.get(p.name)
        if b is None or b.shape != p.data.shape or b.dtype != p.data.dtype \
                or get_array_module(b) is not get_array_module(p.data):
            b = get_array_module(p.data).empty_like(p.data)
            bufs[p.name] = b
        return b


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` adds ``wd * param`` to the gradient."""

    kind = "adam"
    hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params)
        if lr <= 0 or not (0 <= beta1 < 1) or not (0 <= beta2 < 1) or eps <= 0 or weight_decay < 0:
            raise ValueError("Adam: need lr > 0, 0 <= beta1, beta2 < 1, eps > 0, weight_decay >= 0")
        self.lr, self.beta1, self.beta2, self.eps, self.weight_decay = map(float, (lr, beta1, beta2, eps, weight_decay))

    def step(self):
        self.steps += 1
        b1, b2 = self.beta1, self.beta2
        c1 = 1 - b1 ** self.steps
        c2 = 1 - b2 ** self.steps
        for p in self.params:
            xp = get_array_module(p.data)
            t = p.data.dtype.type
            g = p.grad + t(self.weight_decay) * p.data if self.weight_decay else p.grad
            m = self._buffer("m", p)
            v = self._buffer("v", p)
            m *= t(b1)
            m += t(1 - b1) * g
            v *= t(b2)
            v += t(1 - b2) * (g * g)
            p.data -= t(self.lr / c1) * m / (xp.sqrt(v * t(1 / c2)) + t(self.eps))


def get_optimizer(name: str, params, **kw) -> Optimizer:
    """``'sgd'`` or ``'adam'``; unknown keyword arguments are refused by the class."""
    key = name.lower()
    if key == "sgd":
        return SGD(params, **kw)
    if key == "adam":
        return Adam(params, **kw)
    raise ValueError(f"unknown optimizer {name!r}: use 'sgd' or 'adam'")
