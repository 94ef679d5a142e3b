"""Average and max pooling, forward and backward: ``x (N, C, H, W) -> y (N, C, OH, OW)``.

Average pooling counts padding as zeros (divisor KH*KW, PyTorch's ``count_include_pad=True``).
Max pooling returns ``(y, argmax)``: ``argmax`` (int32, y's shape) is the winning offset
``kh*KW + kw`` in each window. Ties go to the *first* maximum in row-major window order; a NaN
beats any number and the first NaN wins (NumPy's rule, the same on every backend); padding is
-inf and never wins (padding is at most half the window, so every window sees input). The
backward passes send each output's gradient to what it read.
"""
from __future__ import annotations

import numpy as np

from ..cpu import numba_ops as _nb
from ..cpu import numpy_ops as _np
from ..cuda import ops as _cu
from . import _check
from ._dispatch import Op
from .geometry import pool_geometry

__all__ = ["avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward", "max_pool2d_backward"]

_AVG_FWD = Op("avg_pool2d_forward", numpy=_np.avg_pool2d_forward, numba=_nb.avg_pool2d_forward,
              cuda=_cu.avg_pool2d_forward)
_AVG_BWD = Op("avg_pool2d_backward", numpy=_np.avg_pool2d_backward, numba=_nb.avg_pool2d_backward,
              cuda=_cu.avg_pool2d_backward)
_MAX_FWD = Op("max_pool2d_forward", numpy=_np.max_pool2d_forward, numba=_nb.max_pool2d_forward,
              cuda=_cu.max_pool2d_forward)
_MAX_BWD = Op("max_pool2d_backward", numpy=_np.max_pool2d_backward, numba=_nb.max_pool2d_backward,
              cuda=_cu.max_pool2d_backward)


def _forward(op, x, kernel_size, stride, padding):
    _check.floats(op, x=x)
    N, C, H, W = _check.ndim(op, "x", x, 4, "(N, C, H, W)")
    return pool_geometry(H, W, kernel_size, stride, padding, op)


def _backward(op, dy, x_shape, kernel_size, stride, padding):
    N, C, H, W = _check.image_shape(op, x_shape)
    g = pool_geometry(H, W, kernel_size, stride, padding, op)
    _check.floats(op, dy=dy)
    _check.shape(op, "dy", dy, (N, C, g[6], g[7]))
    return (N, C, H, W), g


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ws=None):
    """Average pooling ``(N, C, H, W) -> (N, C, OH, OW)`` (stride defaults to the window)."""
    g = _forward("avg_pool2d_forward", x, kernel_size, stride, padding)
    return _AVG_FWD([x], x, g, ws)


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, ws=None):
    """Gradient of :func:`avg_pool2d_forward` w.r.t. its input of shape ``x_shape``."""
    x_shape, g = _backward("avg_pool2d_backward", dy, x_shape, kernel_size, stride, padding)
    return _AVG_BWD([dy], dy, x_shape, g, ws)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, ws=None):
    """Max pooling: ``(y, argmax)``, both ``(N, C, OH, OW)``."""
    g = _forward("max_pool2d_forward", x, kernel_size, stride, padding)
    return _MAX_FWD([x], x, g, ws)


def max_pool2d_backward(dy, argmax, x_shape, kernel_size, stride=None, padding=0, ws=None):
    """Gradient of :func:`max_pool2d_forward`: each output's gradient goes to its recorded argmax."""
    x_shape, g = _backward("max_pool2d_backward", dy, x_shape, kernel_size, stride, padding)
    _check.integers("max_pool2d_backward", "argmax", argmax)
    _check.shape("max_pool2d_backward", "argmax", argmax, dy.shape)
    if argmax.dtype != np.int32:
        argmax = argmax.astype(np.int32)
    return _MAX_BWD([dy, argmax], dy, argmax, x_shape, g, ws)
