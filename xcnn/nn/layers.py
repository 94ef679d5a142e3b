"""The layers: Conv2D, Linear, ReLU/Sigmoid/Tanh, AvgPool2D/MaxPool2D and Flatten.

Each checks its input at the boundary and says what it expected
(``Conv2D 'conv1': expected input (N, 1, H, W), got (50, 784)``); the math is in :mod:`xcnn.ops`.
Weights are drawn on the host in float64 then cast, so a preset's weights do not depend on the
dtype asked for.
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import ShapeError
from .layer import Layer, Parameter, WindowLayer, positive_int

__all__ = ["Conv2D", "Linear", "ReLU", "Sigmoid", "Tanh", "AvgPool2D", "MaxPool2D", "Flatten"]


def _normal(rng, shape, std, dtype):
    return (rng.standard_normal(shape) * std).astype(dtype)


def _window(layer, kernel_size, stride, padding, pool):
    """``(kernel_size, stride, padding)`` as pairs, checked like the ops check them."""
    KH, KW, SH, SW, PH, PW = ops.geometry.window(type(layer).__name__, kernel_size, stride, padding, pool=pool)
    return (KH, KW), (SH, SW), (PH, PW)


class Conv2D(WindowLayer):
    """2-D convolution over NCHW input. ``weight`` (out_channels, in_channels, KH, KW) ~ N(0,
    weight_std^2); He (``sqrt(2 / fan_in)``) when ``weight_std`` is None. ``bias`` starts at zero."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, *, weight_std: float | None = None, rng=None,
                 dtype=np.float32, name: str | None = None):
        super().__init__(name)
        self.in_channels = positive_int("Conv2D", "in_channels", in_channels)
        self.out_channels = positive_int("Conv2D", "out_channels", out_channels)
        self.kernel_size, self.stride, self.padding = _window(self, kernel_size, stride, padding, pool=False)
        KH, KW = self.kernel_size
        std = math.sqrt(2.0 / (in_channels * KH * KW)) if weight_std is None else float(weight_std)
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(_normal(rng, (out_channels, in_channels, KH, KW), std, dtype))
        if bias:
            self.bias = Parameter(np.zeros(out_channels, dtype=dtype))
        else:
            self.bias = None
        self._cache = None

    def describe(self):
        return (f"Conv2D({self.in_channels}->{self.out_channels}, k={self.kernel_size}, "
                f"s={self.stride}, p={self.padding})")

    def output_shape(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] != self.in_channels:
            self._fail(f"(N, {self.in_channels}, H, W)", tuple(input_shape))
        N, _, H, W = input_shape
        try:
            g = ops.conv_geometry(H, W, self.kernel_size, self.stride, self.padding, self._label())
        except ShapeError as exc:
            raise ShapeError(str(exc)) from None
        return (N, self.out_channels, g[6], g[7])

    def forward(self, x):
        self._check_array(x, self.weight.data)
        self.output_shape(x.shape)
        b = self.bias.data if self.bias is not None else None
        y, cache = ops.conv2d_forward(x, self.weight.data, b, self.stride, self.padding, ws=self._ws())
        if self.training:
            self._cache = cache
        return y

    def backward(self, dy):
        cache = self._need_cache(self._cache)
        dx, _, _ = ops.conv2d_backward(dy, cache, self.weight.data, need_dx=self.needs_input_grad,
                                       need_bias=self.bias is not None, ws=self._ws_train, dw_out=self.weight.grad,
                                       db_out=self.bias.grad if self.bias is not None else None)
        return dx


class Linear(Layer):
    """Fully connected ``y (N, out) = x (N, in) @ weight.T + bias``; ``weight`` is (out, in),
    ~ N(0, weight_std^2), He when ``weight_std`` is None; bias zero."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_std: float | None = None, rng=None, dtype=np.float32, name: str | None = None):
        super().__init__(name)
        self.in_features = positive_int("Linear", "in_features", in_features)
        self.out_features = positive_int("Linear", "out_features", out_features)
        std = math.sqrt(2.0 / in_features) if weight_std is None else float(weight_std)
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(_normal(rng, (out_features, in_features), std, dtype))
        if bias:
            self.bias = Parameter(np.zeros(out_features, dtype=dtype))
        else:
            self.bias = None
        self._x = None

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
        y = ops.linear_forward(x, self.weight.data, self.bias.data if self.bias is not None else None)
        if self.training:
            self._x = x
        return y

    def backward(self, dy):
        x = self._need_cache(self._x)
        return ops.linear_backward(dy, x, self.weight.data, self.weight.grad,
                                   self.bias.grad if self.bias is not None else None, self.needs_input_grad)


class _Activation(Layer):
    """Elementwise; keeps its output for backward."""

    _forward = _backward = None

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._y = None

    def forward(self, x):
        self._check_array(x)
        y = type(self)._forward(x)
        if self.training:
            self._y = y
        return y

    def backward(self, dy):
        return type(self)._backward(dy, self._need_cache(self._y))


class ReLU(_Activation):
    """``max(x, 0)``; the gradient at exactly 0 is taken as 0."""

    _forward, _backward = staticmethod(ops.relu_forward), staticmethod(ops.relu_backward)


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``, computed without overflow as ``0.5 * (1 + tanh(x / 2))``."""

    _forward, _backward = staticmethod(ops.sigmoid_forward), staticmethod(ops.sigmoid_backward)


class Tanh(_Activation):
    """Hyperbolic tangent."""

    _forward, _backward = staticmethod(ops.tanh_forward), staticmethod(ops.tanh_backward)


class _Pool2D(WindowLayer):
    def __init__(self, kernel_size, stride=None, padding=0, name: str | None = None):
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = _window(
            self, kernel_size, kernel_size if stride is None else stride, padding, pool=True)
        self._x_shape = None

    def describe(self):
        return f"{type(self).__name__}(k={self.kernel_size}, s={self.stride}, p={self.padding})"

    def output_shape(self, input_shape):
        if len(input_shape) != 4:
            self._fail("(N, C, H, W)", tuple(input_shape))
        N, C, H, W = input_shape
        try:
            g = ops.pool_geometry(H, W, self.kernel_size, self.stride, self.padding, self._label())
        except ShapeError as exc:
            raise ShapeError(str(exc)) from None
        return (N, C, g[6], g[7])

    def _window_args(self):
        return self.kernel_size, self.stride, self.padding


class AvgPool2D(_Pool2D):
    """Average pooling; padding counts as zeros (divisor KH*KW)."""

    def forward(self, x):
        self._check_array(x)
        self.output_shape(x.shape)
        y = ops.avg_pool2d_forward(x, *self._window_args(), ws=self._ws())
        if self.training:
            self._x_shape = x.shape
        return y

    def backward(self, dy):
        return ops.avg_pool2d_backward(dy, self._need_cache(self._x_shape), *self._window_args(), ws=self._ws_train)


class MaxPool2D(_Pool2D):
    """Max pooling; on ties the gradient goes to the first maximum in row-major window order, and a
    window holding a NaN outputs NaN (its gradient goes to the first NaN)."""

    def forward(self, x):
        self._check_array(x)
        self.output_shape(x.shape)
        y, arg = ops.max_pool2d_forward(x, *self._window_args(), ws=self._ws())
        if self.training:
            self._x_shape, self._arg = x.shape, arg
        return y

    def backward(self, dy):
        shape = self._need_cache(self._x_shape)
        return ops.max_pool2d_backward(dy, self._arg, shape, *self._window_args(), ws=self._ws_train)


class Flatten(Layer):
    """``(N, C, H, W) -> (N, C*H*W)`` in C order (channel-major), so weights read as NCHW."""

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._x_shape = None

    def output_shape(self, input_shape):
        if len(input_shape) < 2:
            self._fail("(N, ...) with at least 2 dimensions", tuple(input_shape))
        return (input_shape[0], math.prod(input_shape[1:]))

    def forward(self, x):
        self._check_array(x)
        self.output_shape(x.shape)
        if self.training:
            self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        shape = self._need_cache(self._x_shape)
        want = (shape[0], math.prod(shape[1:]))
        if dy.shape != want:
            raise ShapeError(f"{self._label()}: expected dy of shape {want}, "
                             f"got {tuple(dy.shape)}")
        return dy.reshape(shape)
