"""Optimizer updates, in place on lists of parameters, gradients and state buffers.

SGD in the report's form (biases decayed too)::

    v = momentum * v + (grad + weight_decay * param)
    param -= lr * v

with the same operations and rounding on every backend (the GPU kernel and the compiled CPU pass
are bit-identical to NumPy's). ``state`` is a dict the optimizer keeps for the backend between
steps (scratch buffers on the CPU; on the GPU the fused update's address table and the device copy
of the hyper-parameters, which a replayed CUDA graph reads).
"""
from __future__ import annotations

from ..backend import get_array_module
from ..cpu import numba_ops as _nb
from ..cpu import numpy_ops as _np
from ..cuda import ops as _cu
from ..errors import ShapeError
from . import _check
from ._dispatch import Op

__all__ = ["sgd_update", "sgd_prepare", "adam_update"]


def _contiguous(params, grads, velocities, *rest):
    return all(p.flags.c_contiguous and v.flags.c_contiguous for p, v in zip(params, velocities))


def _adam(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, step):
    c1, c2 = 1 - beta1 ** step, 1 - beta2 ** step
    for p, g, m, v in zip(params, grads, ms, vs):
        xp = get_array_module(p)
        t = p.dtype.type
        if weight_decay:
            g = g + t(weight_decay) * p
        m *= t(beta1)
        m += t(1 - beta1) * g
        v *= t(beta2)
        v += t(1 - beta2) * (g * g)
        p -= t(lr / c1) * m / (xp.sqrt(v * t(1 / c2)) + t(eps))


_SGD = Op("sgd_update", numpy=_np.sgd_update, numba=_nb.sgd_update, cuda=_cu.sgd_update, numba_accepts=_contiguous)
_ADAM = Op("adam_update", numpy=_adam, cuda=_adam)
_PREPARE = Op("sgd_prepare", numpy=lambda *a: None, cuda=_cu.device_hyper)


def _check_state(op, params, *buffers):
    for group in buffers:
        if len(group) != len(params):
            raise ShapeError(f"{op}: {len(params)} parameters but {len(group)} gradients or state buffers")
    for arrays in zip(params, *buffers):  # the fast test: same shape and float dtype everywhere
        p = arrays[0]
        if not (hasattr(p, "shape") and hasattr(p, "dtype") and p.dtype in _check._FLOATS and all(
                hasattr(a, "shape") and a.shape == p.shape and getattr(a, "dtype", None) == p.dtype
                for a in arrays[1:])):
            break
    else:
        return
    for i, arrays in enumerate(zip(params, *buffers)):  # something is wrong: name it
        _check.floats(op, **{f"tensor {i} ({k})": a for k, a in zip(("param", "grad", "state", "state"), arrays)})
        for a in arrays[1:]:
            _check.shape(op, f"tensor {i}", a, arrays[0].shape)


def sgd_update(params, grads, velocities, lr, momentum, weight_decay, state):
    """One SGD step for every tensor, in place (see the module docstring)."""
    _check_state("sgd_update", params, grads, velocities)
    if params:
        _SGD([*params, *grads, *velocities], params, grads, velocities, lr, momentum, weight_decay, state)


def sgd_prepare(params, lr, momentum, weight_decay, state):
    """Bring the device copy of the hyper-parameters up to date without an update (before replaying a
    captured CUDA graph, whose update kernel reads them); nothing on the CPU."""
    if params:
        _PREPARE(params, state, params[0], lr, momentum, weight_decay)


def adam_update(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step (Kingma & Ba, bias-corrected; ``weight_decay`` adds ``wd * param`` to the gradient),
    in place; ``step`` counts from 1."""
    _check_state("adam_update", params, grads, ms, vs)
    if params:
        _ADAM([*params, *grads, *ms, *vs], params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, step)
