"""A sequential network: forward through the layers, backward in reverse, plus the bookkeeping
(parameters, modes, device and dtype moves, summary table, exact checkpoints)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backend import concatenate, device_of, get_device, to_host, zeros_like
from ..errors import CheckpointError
from .layer import Layer
from .serialize import load_checkpoint, save_checkpoint

__all__ = ["Network"]

_PREFIX = {"Conv2D": "conv", "Linear": "fc", "ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
           "AvgPool2D": "pool", "MaxPool2D": "pool", "Flatten": "flatten"}


class Network:
    """Layers applied in order. Unnamed layers get names like ``conv1``, ``relu2``, ``fc1``; a
    parameter is named ``<layer>.<attribute>`` (``conv1.weight``)."""

    def __init__(self, layers: list[Layer], name: str = "network"):
        self.layers = list(layers)
        self.name = name
        counters: dict[str, int] = {}
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Network: {layer!r} is not an xcnn Layer")
            base = _PREFIX.get(type(layer).__name__, type(layer).__name__.lower())
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
        # first Linear, say): that layer skips its input gradient, and backward stops there.
        self._first = next((layer for layer in self.layers if layer.parameters()), None)
        if self._first is not None:
            self._first.needs_input_grad = False
        self.training = True

    # -- running ------------------------------------------------------------
    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy, *, input_grad: bool = False):
        """Back-propagate ``dy`` (the loss's gradient w.r.t. the output): every parameter's gradient is
        overwritten. Returns the gradient w.r.t. the network's input when ``input_grad`` (saliency
        maps, adversarial examples; it costs one more col2im or GEMM), else None."""
        if input_grad and self._first is not None:
            self._first.needs_input_grad = True
        try:
            for layer in reversed(self.layers):
                dy = layer.backward(dy)
                if dy is None:
                    break
        finally:
            if self._first is not None:
                self._first.needs_input_grad = False
        return dy if input_grad else None

    def predict(self, x, batch_size: int = 1000):
        """Logits for ``x`` in eval mode, in batches; the training flag is restored afterwards."""
        was = self.training
        self.eval()
        try:
            outs = [self.forward(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
            return concatenate(outs) if len(outs) > 1 else outs[0]
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
        """Move every parameter and gradient to ``device`` (a spec or Device). An optimizer's state
        moves with ``optimizer.to(device)``."""
        dev = get_device(device)
        for p in self.parameters():
            p.data = dev.asarray(p.data)
            p.grad = dev.asarray(p.grad)
        for layer in self.layers:
            layer.clear_workspaces()
        return self

    def astype(self, dtype):
        """Cast every parameter (and gradient) to ``dtype`` (float32 or float64). An optimizer's state
        follows with ``optimizer.astype(dtype)``."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"Network.astype: need float32 or float64, got {dtype}")
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
        """``{parameter name: host array}`` (copies when the network is on a GPU)."""
        return {p.name: to_host(p.data) for p in self.parameters()}

    def load_state_dict(self, state: dict, *, strict: bool = True):
        """Copy arrays from ``state`` into the parameters (cast to the network's dtype, moved to its
        device); the caller's arrays are never kept, so training does not change them."""
        params = {p.name: p for p in self.parameters()}
        missing = sorted(set(params) - set(state))
        extra = sorted(set(state) - set(params))
        if strict and (missing or extra):
            raise CheckpointError(f"checkpoint does not fit network {self.name!r}: missing {missing}, "
                                  f"unexpected {extra} — load it into the network it was saved from")
        dev = self.device
        for name, arr in state.items():
            p = params.get(name)
            if p is None:
                continue
            if tuple(arr.shape) != tuple(p.data.shape):
                raise CheckpointError(f"checkpoint parameter {name!r} has shape {tuple(arr.shape)}, network has "
                                      f"{tuple(p.data.shape)} — load it into the network it was saved from")
            p.data = dev.asarray(np.array(to_host(arr), dtype=p.data.dtype, copy=True))
            p.grad = zeros_like(p.data)
        return self

    def save(self, path, optimizer=None, meta: dict | None = None) -> Path:
        """Write weights (and optimizer state, and JSON ``meta``) to ``path`` (.npz) atomically.
        Loading restores them bit for bit."""
        return save_checkpoint(path, self.name, self.state_dict(),
                               optimizer.state_dict() if optimizer is not None else None, meta)

    def load(self, path, optimizer=None) -> dict:
        """Restore weights (and optimizer state when given) from :meth:`save`'s file; returns ``meta``."""
        ck = load_checkpoint(path)
        self.load_state_dict(ck["params"])
        if optimizer is not None:
            if not ck["optim"]:
                raise CheckpointError(f"{path}: holds no optimizer state — it is a weights-only snapshot")
            optimizer.load_state_dict(ck["optim"])
        return ck["meta"]
