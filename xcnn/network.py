"""A sequential network: forward through the layers, backward in reverse, plus the bookkeeping
(parameters, modes, device moves, summary table, exact checkpoints)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .backend import device_of, get_device, to_host
from .io import atomic_save_npz, load_npz
from .layers import Layer

__all__ = ["Network", "CheckpointError", "load_checkpoint"]

FORMAT = "xcnn-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the network."""


class Network:
    """Layers applied in order. Unnamed layers get names like ``conv1``, ``relu2``, ``fc1``."""

    def __init__(self, layers: list[Layer], name: str = "network"):
        self.layers = list(layers)
        self.name = name
        counters: dict[str, int] = {}
        prefix = {"Conv2D": "conv", "Linear": "fc", "ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
                  "AvgPool2D": "pool", "MaxPool2D": "pool", "Flatten": "flatten"}
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Network: {layer!r} is not an xcnn Layer")
            base = prefix.get(type(layer).__name__, type(layer).__name__.lower())
            counters[base] = counters.get(base, 0) + 1
            if layer.name is None:
                layer.name = f"{base}{counters[base]}"
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"Network: layer names must be unique, got {names}")
        for layer in self.layers:
            for p in layer.parameters():
                p.name = f"{layer.name}.{p.name.split('.')[-1]}"
        # Nothing before the first trainable layer needs a gradient (a Flatten in front of an MLP's
        # first Linear, say): that layer skips its input gradient (a col2im or a whole GEMM), and
        # backward stops there.
        for layer in self.layers:
            if layer.parameters():
                if hasattr(layer, "needs_input_grad"):
                    layer.needs_input_grad = False
                break
        self.training = True

    # -- running ------------------------------------------------------------
    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
            if dy is None:
                break
        return dy

    def predict(self, x, batch_size: int = 1000):
        """Logits for ``x`` in eval mode, in batches; the training flag is restored afterwards."""
        was = self.training
        self.eval()
        try:
            xp = device_of(self.parameters()[0].data).xp if self.parameters() else np
            outs = [self.forward(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
            return xp.concatenate(outs) if len(outs) > 1 else outs[0]
        finally:
            self.train(was)

    # -- bookkeeping ----------------------------------------------------------
    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def train(self, mode: bool = True):
        self.training = mode
        for layer in self.layers:
            layer.training = mode
        return self

    def eval(self):
        return self.train(False)

    @property
    def device(self):
        ps = self.parameters()
        return device_of(ps[0].data) if ps else get_device("cpu")

    @property
    def dtype(self):
        ps = self.parameters()
        return ps[0].data.dtype if ps else np.dtype(np.float32)

    def to(self, device):
        """Move every parameter and gradient to ``device`` (a spec or :class:`Device`)."""
        dev = get_device(device)
        for p in self.parameters():
            p.data = dev.asarray(p.data)
            p.grad = dev.asarray(p.grad)
        for layer in self.layers:
            if hasattr(layer, "ws"):
                layer.ws.clear()
        return self

    def astype(self, dtype):
        """Cast every parameter (and gradient) to ``dtype`` (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"Network.astype: need a float dtype, got {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = p.grad.astype(dtype)
        return self

    def output_shapes(self, input_shape):
        shapes, s = [], tuple(input_shape)
        for layer in self.layers:
            s = layer.output_shape(s)
            shapes.append(s)
        return shapes

    def summary(self, input_shape=(1, 1, 28, 28)) -> str:
        """A table of layer, output shape and parameter count, with the total."""
        shapes = self.output_shapes(input_shape)
        rows = [("layer", "type", "output shape", "params")]
        for layer, s in zip(self.layers, shapes):
            n = sum(p.size for p in layer.parameters())
            rows.append((layer.name, layer.describe(), "x".join(str(d) for d in s[1:]), f"{n:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        line = "-" * (sum(widths) + 6)
        out = [f"{self.name}  (input {'x'.join(str(d) for d in input_shape[1:])})", line]
        for i, r in enumerate(rows):
            out.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}")
            if i == 0:
                out.append(line)
        out += [line, f"total parameters: {self.num_parameters():,}"]
        return "\n".join(out)

    # -- checkpoints ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {p.name: to_host(p.data) for p in self.parameters()}

    def load_state_dict(self, state: dict, *, strict: bool = True):
        params = {p.name: p for p in self.parameters()}
        missing = sorted(set(params) - set(state))
        extra = sorted(set(state) - set(params))
        if strict and (missing or extra):
            raise CheckpointError(f"checkpoint does not fit network {self.name!r}: missing {missing}, unexpected {extra}")
        for name, arr in state.items():
            p = params.get(name)
            if p is None:
                continue
            if tuple(arr.shape) != tuple(p.data.shape):
                raise CheckpointError(f"checkpoint parameter {name!r} has shape {tuple(arr.shape)}, "
                                      f"network has {tuple(p.data.shape)}")
            p.data = self.device.asarray(np.asarray(arr, dtype=p.data.dtype))
            p.grad = self.device.xp.zeros_like(p.data)
        return self

    def save(self, path, optimizer=None, meta: dict | None = None) -> Path:
        """Write weights (and optimizer state, and JSON ``meta``) to ``path`` (.npz) atomically.
        Loading restores them bit for bit."""
        arrays = {f"param/{k}": v for k, v in self.state_dict().items()}
        if optimizer is not None:
            arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
        info = {"format": FORMAT, "network": self.name, "meta": meta or {}}
        arrays["__meta__"] = np.array(json.dumps(info))
        return atomic_save_npz(path, arrays)

    def load(self, path, optimizer=None) -> dict:
        """Restore weights (and optimizer state when given) from :meth:`save`'s file; returns ``meta``."""
        ck = load_checkpoint(path)
        self.load_state_dict(ck["params"])
        if optimizer is not None:
            if not ck["optim"]:
                raise CheckpointError(f"{path}: holds no optimizer state")
            optimizer.load_state_dict(ck["optim"])
        return ck["meta"]


def load_checkpoint(path) -> dict:
    """Read a checkpoint into ``{"params": {...}, "optim": {...}, "meta": {...}, "network": name}``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (train one with `python -m xcnn.train`)")
    try:
        raw = load_npz(path)
        info = json.loads(str(raw.pop("__meta__")))
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable xcnn checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} has format {info.get('format')!r}, expected {FORMAT!r}")
    params = {k[len("param/"):]: v for k, v in raw.items() if k.startswith("param/")}
    optim = {k[len("optim/"):]: v for k, v in raw.items() if k.startswith("optim/")}
    return {"params": params, "optim": optim, "meta": info.get("meta", {}), "network": info.get("network")}
