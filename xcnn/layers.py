"""Layers: small classes with their parameters, gradients, ``forward`` and ``backward``.

No device logic lives here: the math is in :mod:`xcnn.functional`, and the array module
comes from the arrays. Every layer checks its input at the boundary and says what it
expected (``Conv2D 'conv1': expected input (N, 1, H, W), got (50, 784)``).
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .backend import DeviceError, get_array_module

__all__ = [
    "Parameter", "Layer", "Conv2D", "Linear", "ReLU", "Sigmoid", "Tanh",
    "AvgPool2D", "MaxPool2D", "Flatten", "ShapeError",
]


class ShapeError(ValueError):
    """An input whose shape, dtype or device does not fit the layer."""


class Parameter:
    """A trainable array and its gradient (same shape, dtype and device)."""

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name: str = ""):
        self.data = data
        self.grad = get_array_module(data).zeros_like(data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def size(self) -> int:
        return int(self.data.size)

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


def _normal(rng, shape, std, dtype):
    # Draw in float64 then cast, so a preset's weights do not depend on the dtype asked for.
    return (rng.standard_normal(shape) * std).astype(dtype)


class Layer:
    """Base class: a name, a training flag, parameters, forward and backward."""

    kind = "layer"

    def __init__(self, name: str | None = None):
        self.name = name
        self.training = True

    # -- the contract -------------------------------------------------------
    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of the output for an input of ``input_shape`` (checks it, computes nothing)."""
        return tuple(input_shape)

    def parameters(self) -> list[Parameter]:
        return []

    # -- helpers --------------------------------------------------------------
    def describe(self) -> str:
        return type(self).__name__

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
                get_array_module(x, like)
            except DeviceError as exc:
                raise DeviceError(f"{self._label()}: {exc}") from None
            if x.dtype != like.dtype:
                self._fail(f"dtype {like.dtype} (the layer's parameter dtype)",
                           f"dtype {x.dtype}; convert the input with .astype({like.dtype}) or the network with .astype()")

    def _out_hw(self, geometry, H, W):
        """``(OH, OW)`` of this layer's sliding window (``F.conv_geometry`` or ``F.pool_geometry``);
        a window that does not fit is a :class:`ShapeError` naming the layer."""
        try:
            return geometry(H, W, self.kernel_size, self.stride, self.padding, self._label())[-2:]
        except ValueError as exc:
            raise ShapeError(str(exc)) from None

    def _need_cache(self, what):
        if what is None:
            raise RuntimeError(f"{self._label()}: backward() called without a training-mode forward() before it")
        return what

    def __repr__(self):
        return f"{self.describe()}" + (f" [{self.name}]" if self.name else "")


class Conv2D(Layer):
    """2-D convolution over NCHW input: im2col + one GEMM forward; GEMMs + col2im backward.

    ``weight`` (out_channels, in_channels, KH, KW) ~ N(0, weight_std^2); He
    (``sqrt(2 / fan_in)``) when ``weight_std`` is None. ``bias`` starts at zero.
    """

    kind = "conv"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, *, weight_std: float | None = None, rng=None,
                 dtype=np.float32, name: str | None = None):
        super().__init__(name)
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Conv2D: {arg} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride = F.pair(stride, "stride")
        self.padding = F.pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2D: need kernel_size >= 1, stride >= 1, padding >= 0; got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        KH, KW = self.kernel_size
        fan_in = in_channels * KH * KW
        std = math.sqrt(2.0 / fan_in) if weight_std is None else float(weight_std)
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(_normal(rng, (out_channels, in_channels, KH, KW), std, dtype), "weight")
        self.bias = Parameter(np.zeros(out_channels, dtype=dtype), "bias") if bias else None
        self.needs_input_grad = True  # a Network clears this on its first layer
        self.ws = F.Workspace()
        self._col = None
        self._x_shape = None

    def parameters(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def describe(self):
        return (f"Conv2D({self.in_channels}->{self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding})")

    def output_shape(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] != self.in_channels:
            self._fail(f"(N, {self.in_channels}, H, W)", tuple(input_shape))
        N, _, H, W = input_shape
        OH, OW = self._out_hw(F.conv_geometry, H, W)
        return (N, self.out_channels, OH, OW)

    def forward(self, x):
        self._check_array(x, self.weight.data)
        self.output_shape(x.shape)
        b = self.bias.data if self.bias is not None else None
        y, col = F.conv2d_forward(x, self.weight.data, b, self.stride, self.padding, ws=self.ws)
        if self.training:
            self._col, self._x_shape = col, x.shape
        return y

    def backward(self, dy):
        col = self._need_cache(self._col)
        dx, dw, db = F.conv2d_backward(dy, col, self._x_shape, self.weight.data, self.stride, self.padding,
                                       need_dx=self.needs_input_grad, need_bias=self.bias is not None,
                                       ws=self.ws, dw_out=self.weight.grad,
                                       db_out=self.bias.grad if self.bias is not None else None)
        if dw is not self.weight.grad:
            self.weight.grad[...] = dw
        if self.bias is not None and db is not self.bias.grad:
            self.bias.grad[...] = db
        return dx


class Linear(Layer):
    """Fully connected ``y (N, out) = x (N, in) @ weight.T + bias``; ``weight`` is (out, in).

    ``weight`` ~ N(0, weight_std^2); He when ``weight_std`` is None; bias zero.
    """

    kind = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_std: float | None = None, rng=None, dtype=np.float32, name: str | None = None):
        super().__init__(name)
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Linear: {arg} must be a positive int, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        std = math.sqrt(2.0 / in_features) if weight_std is None else float(weight_std)
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(_normal(rng, (out_features, in_features), std, dtype), "weight")
        self.bias = Parameter(np.zeros(out_features, dtype=dtype), "bias") if bias else None
        self.needs_input_grad = True
        self._x = None

    def parameters(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def describe(self):
        return f"Linear({self.in_features}->{self.out_features})"

    def output_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[1] != self.in_features:
            hint = " (add a Flatten layer before it)" if len(input_shape) > 2 else ""
            self._fail(f"(N, {self.in_features}){hint}", tuple(input_shape))
        return (input_shape[0], self.out_features)

    def forward(self, x):
        self._check_array(x, self.weight.data)
        self.output_shape(x.shape)
        if get_array_module(x) is np:
            y = F.matmul_cpu(x, self.weight.data.T)  # skinny products stay off the BLAS thread pool
        else:
            y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        if self.training:
            self._x = x
        return y

    def backward(self, dy):
        x = self._need_cache(self._x)
        xp = get_array_module(dy, x)
        if xp is np:
            F.matmul_cpu(dy.T, x, out=self.weight.grad)
        else:
            xp.matmul(dy.T, x, out=self.weight.grad)
        if self.bias is not None:
            dy.sum(axis=0, out=self.bias.grad)
        if not self.needs_input_grad:
            return None
        return F.matmul_cpu(dy, self.weight.data) if xp is np else dy @ self.weight.data


class _Activation(Layer):
    kind = "activation"

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        self._check_array(x)
        y = self._f(get_array_module(x), x)
        if self.training:
            self._y = y
        return y

    def backward(self, dy):
        y = self._need_cache(getattr(self, "_y", None))
        return self._df(get_array_module(dy, y), dy, y)


class ReLU(_Activation):
    """``max(x, 0)``; the gradient at exactly 0 is taken as 0."""

    def _f(self, xp, x):
        return F.relu_forward(x)

    def _df(self, xp, dy, y):
        return F.relu_backward(dy, y)


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``, computed without overflow as ``0.5 * (1 + tanh(x / 2))``."""

    def _f(self, xp, x):
        h = x.dtype.type(0.5)
        return h * (1 + xp.tanh(h * x))

    def _df(self, xp, dy, y):
        return dy * y * (1 - y)


class Tanh(_Activation):
    """Hyperbolic tangent."""

    def _f(self, xp, x):
        return xp.tanh(x)

    def _df(self, xp, dy, y):
        return dy * (1 - y * y)


class _Pool2D(Layer):
    kind = "pool"

    def __init__(self, kernel_size, stride=None, padding=0, name: str | None = None):
        super().__init__(name)
        self.kernel_size = F.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F.pair(stride, "stride")
        self.padding = F.pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"{type(self).__name__}: need kernel_size >= 1, stride >= 1, padding >= 0; got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}")
        if 2 * self.padding[0] > self.kernel_size[0] or 2 * self.padding[1] > self.kernel_size[1]:
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at most half the "
                             f"window {self.kernel_size}")
        self.ws = F.Workspace()
        self._x_shape = None

    def describe(self):
        return f"{type(self).__name__}(k={self.kernel_size}, s={self.stride}, p={self.padding})"

    def output_shape(self, input_shape):
        if len(input_shape) != 4:
            self._fail("(N, C, H, W)", tuple(input_shape))
        N, C, H, W = input_shape
        OH, OW = self._out_hw(F.pool_geometry, H, W)
        return (N, C, OH, OW)


class AvgPool2D(_Pool2D):
    """Average pooling; padding counts as zeros (divisor KH*KW)."""

    def forward(self, x):
        self._check_array(x)
        self.output_shape(x.shape)
        if self.training:
            self._x_shape = x.shape
        return F.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding, ws=self.ws)

    def backward(self, dy):
        shape = self._need_cache(self._x_shape)
        return F.avg_pool2d_backward(dy, shape, self.kernel_size, self.stride, self.padding, ws=self.ws)


class MaxPool2D(_Pool2D):
    """Max pooling; on ties the gradient goes to the first maximum in row-major window order."""

    def forward(self, x):
        self._check_array(x)
        self.output_shape(x.shape)
        y, arg = F.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding, ws=self.ws)
        if self.training:
            self._x_shape, self._arg = x.shape, arg
        return y

    def backward(self, dy):
        shape = self._need_cache(self._x_shape)
        return F.max_pool2d_backward(dy, self._arg, shape, self.kernel_size, self.stride, self.padding,
                                     ws=self.ws)


class Flatten(Layer):
    """``(N, C, H, W) -> (N, C*H*W)`` in C order (channel-major), so weights read as NCHW."""

    kind = "reshape"

    def output_shape(self, input_shape):
        if len(input_shape) < 2:
            self._fail("(N, ...) with at least 2 dimensions", tuple(input_shape))
        return (input_shape[0], int(np.prod(input_shape[1:])))

    def forward(self, x):
        self._check_array(x)
        if self.training:
            self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._need_cache(getattr(self, "_x_shape", None)))
