"""The layer contract: a name, a training flag, parameters (registered by assignment), ``forward``
and ``backward``, plus the input checks every layer shares."""
from __future__ import annotations

import numpy as np

from ..backend import placement, zeros_like
from ..errors import ConfigError, DeviceError, ShapeError
from ..ops import Workspace

__all__ = ["Parameter", "Layer"]


class Parameter:
    """A trainable array and its gradient (same shape, dtype and device)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name: str = ""):
        self.data = data
        self.grad = zeros_like(data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def size(self) -> int:
        return int(self.data.size)

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


def positive_int(owner: str, arg: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ConfigError(f"{owner}: {arg} must be a positive int, got {v!r}")
    return int(v)


class Layer:
    """Base class. A layer sets its :class:`Parameter` s as attributes (they are registered in that
    order), implements ``forward`` and ``backward``, and keeps what backward needs from its last
    *training-mode* forward only: an eval-mode forward in between changes nothing backward sees.

    ``needs_input_grad``: a :class:`~xcnn.nn.network.Network` clears it on its first trainable layer,
    whose backward then skips the input gradient (a col2im or a whole GEMM)."""

    needs_input_grad = True

    def __init__(self, name: str | None = None):
        object.__setattr__(self, "_params", {})
        self.name = name
        self.training = True

    def __setattr__(self, key, value):
        if isinstance(value, Parameter):
            value.name = key
            self._params[key] = value
        elif key in self._params:
            del self._params[key]
        object.__setattr__(self, key, value)

    # -- the contract -------------------------------------------------------
    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of the output for an input of ``input_shape`` (checks it, computes nothing)."""
        return tuple(input_shape)

    def parameters(self) -> list[Parameter]:
        return list(self._params.values())

    def clear_workspaces(self) -> None:
        """Drop reusable scratch memory (after a device move, or before a CUDA graph is captured)."""

    def describe(self) -> str:
        return type(self).__name__

    # -- helpers --------------------------------------------------------------
    def _label(self) -> str:
        return f"{type(self).__name__} '{self.name}'" if self.name else type(self).__name__

    def _fail(self, expected: str, got) -> None:
        raise ShapeError(f"{self._label()}: expected input {expected}, got {got}")

    def _check_array(self, x, like=None):
        """Refuse non-arrays, non-float dtypes, and a dtype or device that differs from the parameters."""
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            self._fail("an array", type(x).__name__)
        if x.dtype.kind != "f":
            self._fail("a float32 or float64 array", f"dtype {x.dtype}")
        if like is not None:
            try:
                placement((x, like))
            except DeviceError as exc:
                raise DeviceError(f"{self._label()}: {exc}") from None
            if x.dtype != like.dtype:
                self._fail(f"dtype {like.dtype} (the layer's parameter dtype)",
                           f"dtype {x.dtype}; convert the input with .astype({like.dtype}) or the network with .astype()")

    def _need_cache(self, what):
        if what is None:
            raise RuntimeError(f"{self._label()}: backward() called without a training-mode forward() before it")
        return what

    def __repr__(self):
        return f"{self.describe()}" + (f" [{self.name}]" if self.name else "")


class WindowLayer(Layer):
    """A layer with reusable scratch memory, one workspace for training forwards and their backward
    (what backward needs may live there) and one for evaluation, so the two can never overwrite
    each other."""

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._ws_train = Workspace()
        self._ws_eval = Workspace()

    def _ws(self):
        return self._ws_train if self.training else self._ws_eval

    def clear_workspaces(self):
        self._ws_train.clear()
        self._ws_eval.clear()
