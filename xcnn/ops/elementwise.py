"""Activations, elementwise, forward and backward (any shape; output in the input's shape and dtype).

NaN in the input propagates to the output on every backend. A backward pass is a product with
``dy``, so a NaN or inf in ``dy`` propagates too (``NaN * 0`` is NaN).
"""
from __future__ import annotations

from ..backend import get_array_module
from ..cpu import numba_ops as _nb
from ..cpu import numpy_ops as _np
from ..cuda import ops as _cu
from . import _check
from ._dispatch import Op

__all__ = ["relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward",
           "tanh_backward"]


def _sigmoid(x):
    # 1 / (1 + exp(-x)) without overflow, as 0.5 * (1 + tanh(x / 2))
    h = x.dtype.type(0.5)
    return h * (1 + get_array_module(x).tanh(h * x))


def _sigmoid_bwd(dy, y):
    return dy * y * (1 - y)


def _tanh(x):
    return get_array_module(x).tanh(x)


def _tanh_bwd(dy, y):
    return dy * (1 - y * y)


_RELU = Op("relu_forward", numpy=_np.relu_forward, numba=_nb.relu_forward, cuda=_cu.relu_forward)
_RELU_BWD = Op("relu_backward", numpy=_np.relu_backward, numba=_nb.relu_backward, cuda=_cu.relu_backward)
# NumPy and CuPy share these (array methods and ufuncs); the dispatcher still makes the device current
_SIGMOID = Op("sigmoid_forward", numpy=_sigmoid, cuda=_sigmoid)
_SIGMOID_BWD = Op("sigmoid_backward", numpy=_sigmoid_bwd, cuda=_sigmoid_bwd)
_TANH = Op("tanh_forward", numpy=_tanh, cuda=_tanh)
_TANH_BWD = Op("tanh_backward", numpy=_tanh_bwd, cuda=_tanh_bwd)


def _pair(op, dy, y):
    _check.floats(op, dy=dy, y=y)
    _check.shape(op, "dy", dy, y.shape)


def relu_forward(x):
    """``max(x, 0)``."""
    _check.floats("relu_forward", x=x)
    return _RELU([x], x)


def relu_backward(dy, y):
    """Gradient of :func:`relu_forward` given its output ``y``: ``dy * (y > 0)`` (0 at exactly 0)."""
    _pair("relu_backward", dy, y)
    return _RELU_BWD([dy, y], dy, y)


def sigmoid_forward(x):
    """``1 / (1 + exp(-x))``, computed as ``0.5 * (1 + tanh(x / 2))`` (no overflow)."""
    _check.floats("sigmoid_forward", x=x)
    return _SIGMOID([x], x)


def sigmoid_backward(dy, y):
    """``dy * y * (1 - y)`` given the forward's output ``y``."""
    _pair("sigmoid_backward", dy, y)
    return _SIGMOID_BWD([dy, y], dy, y)


def tanh_forward(x):
    _check.floats("tanh_forward", x=x)
    return _TANH([x], x)


def tanh_backward(dy, y):
    """``dy * (1 - y**2)`` given the forward's output ``y``."""
    _pair("tanh_backward", dy, y)
    return _TANH_BWD([dy, y], dy, y)
