"""Fully connected layer: ``y (N, O) = x (N, I) @ weight (O, I).T + bias (O,)`` and its gradients."""
from __future__ import annotations

from ..cpu import gemm as _cpu
from ..cuda import ops as _cu
from . import _check
from ._dispatch import Op

__all__ = ["linear_forward", "linear_backward"]

_FORWARD = Op("linear_forward", numpy=_cpu.linear_forward, cuda=_cu.linear_forward)
_BACKWARD = Op("linear_backward", numpy=_cpu.linear_backward, cuda=_cu.linear_backward)


def linear_forward(x, weight, bias=None):
    """``x (N, I) @ weight (O, I).T + bias (O,)`` -> ``(N, O)``."""
    _check.floats("linear_forward", x=x, weight=weight, bias=bias)
    N, I = _check.ndim("linear_forward", "x", x, 2, "(N, in_features)")
    O, Iw = _check.ndim("linear_forward", "weight", weight, 2, "(out_features, in_features)")
    if Iw != I:
        _check.shape("linear_forward", "x", x, (N, Iw))
    if bias is not None:
        _check.shape("linear_forward", "bias", bias, (O,))
    return _FORWARD([x, weight, bias], x, weight, bias)


def linear_backward(dy, x, weight, dw_out, db_out=None, need_dx=True):
    """Writes ``dy.T @ x`` into ``dw_out (O, I)`` and ``dy.sum(0)`` into ``db_out (O,)`` (when given);
    returns ``dx = dy @ weight`` (or None without ``need_dx``)."""
    _check.floats("linear_backward", dy=dy, x=x, weight=weight, dw_out=dw_out, db_out=db_out)
    O, I = _check.ndim("linear_backward", "weight", weight, 2, "(out_features, in_features)")
    N = _check.ndim("linear_backward", "x", x, 2, "(N, in_features)")[0]
    _check.shape("linear_backward", "x", x, (N, I))
    _check.shape("linear_backward", "dy", dy, (N, O))
    _check.shape("linear_backward", "dw_out", dw_out, (O, I))
    if db_out is not None:
        _check.shape("linear_backward", "db_out", db_out, (O,))
    return _BACKWARD([dy, x, weight, dw_out, db_out], dy, x, weight, dw_out, db_out, need_dx)
