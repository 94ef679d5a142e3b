"""Softmax, log-softmax and the losses: each returns ``(loss, dpred)`` with the loss a 0-d array
(kept on the device: a training step never waits for the host) and the gradient of the mean.

Logits ``z (N, K)``. Softmax cross-entropy takes integer labels ``(N,)`` or one-hot/probability
rows ``(N, K)``; it is stable for any magnitude (log-sum-exp). A NaN in a row of logits makes that
row's loss and gradient NaN on every backend. An integer label outside ``0..K-1`` is refused on the
host; on a GPU (where checking would cost a synchronisation every step) its row comes out NaN.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, is_device_array
from ..cuda import ops as _cu
from ..errors import ShapeError
from . import _check
from ._dispatch import Op

__all__ = ["softmax", "log_softmax", "softmax_cross_entropy", "euclidean_loss", "one_hot"]


def _log_softmax(z):
    xp = get_array_module(z)
    s = z - z.max(axis=1, keepdims=True)
    return s - xp.log(xp.exp(s).sum(axis=1, keepdims=True))


def _softmax(z):
    e = get_array_module(z).exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def _scale(grad, N):
    grad *= grad.dtype.type(1.0 / max(N, 1))  # an empty batch: an empty gradient, not a ZeroDivisionError
    return grad


def _xent_labels(logits, labels):
    xp = get_array_module(logits)
    N = logits.shape[0]
    rows = xp.arange(N)
    lsm = _log_softmax(logits)
    loss = -lsm[rows, labels].mean()
    grad = xp.exp(lsm)
    grad[rows, labels] -= 1
    return loss, _scale(grad, N)


def _xent_labels_gpu(logits, labels):
    rows, grad = _cu.softmax_xent(logits, labels)  # one kernel (kernels/loss.cu)
    return rows.mean(), grad


def _xent_targets(logits, target):
    t = target.astype(logits.dtype, copy=False)
    lsm = _log_softmax(logits)
    loss = -(t * lsm).sum() / logits.shape[0]
    return loss, _scale(get_array_module(lsm).exp(lsm) - t, logits.shape[0])


def _euclidean(pred, target):
    diff = pred - target.astype(pred.dtype, copy=False)
    N = pred.shape[0]
    return (diff * diff).sum() / (2 * N), diff * pred.dtype.type(1.0 / N)


def _one_hot(labels, K, dtype):
    return get_array_module(labels).eye(K, dtype=dtype)[labels]


_LOG_SOFTMAX = Op("log_softmax", numpy=_log_softmax, cuda=_log_softmax)
_SOFTMAX = Op("softmax", numpy=_softmax, cuda=_softmax)
_XENT_LABELS = Op("softmax_cross_entropy", numpy=_xent_labels, cuda=_xent_labels_gpu)
_XENT_TARGETS = Op("softmax_cross_entropy", numpy=_xent_targets, cuda=_xent_targets)
_EUCLIDEAN = Op("euclidean_loss", numpy=_euclidean, cuda=_euclidean)
_ONE_HOT = Op("one_hot", numpy=_one_hot, cuda=_one_hot)


def _out_of_range(labels, K: int) -> bool:
    """Some integer label lies outside ``0..K-1``: one reduction, since a negative label read as
    unsigned (a view, no copy) is larger than any ``K``."""
    if labels.dtype.kind == "i":
        labels = labels.view(f"u{labels.dtype.itemsize}")
    return int(labels.max()) >= K


def _logits(op, z):
    _check.floats(op, logits=z)
    return _check.ndim(op, "logits", z, 2, "(N, K)")


def log_softmax(z):
    """Row-wise ``log softmax`` of ``z (N, K)``, stable for any magnitude."""
    _logits("log_softmax", z)
    return _LOG_SOFTMAX([z], z)


def softmax(z):
    """Row-wise softmax of ``z (N, K)``."""
    _logits("softmax", z)
    return _SOFTMAX([z], z)


def softmax_cross_entropy(logits, target):
    """Mean cross-entropy of ``softmax(logits (N, K))`` against integer labels ``(N,)`` or one-hot
    ``(N, K)``: ``(loss, dlogits)`` with ``dlogits = (softmax - onehot) / N``."""
    N, K = _logits("softmax_cross_entropy", logits)
    _check.arrays("softmax_cross_entropy", target=target)
    if target.ndim == 1:
        _check.integers("softmax_cross_entropy", "labels", target)
        _check.shape("softmax_cross_entropy", "labels", target, (N,))
        if N and not is_device_array(target) and _out_of_range(target, K):
            lo, hi = int(target.min()), int(target.max())
            bad = lo if lo < 0 else hi
            raise ShapeError(f"softmax_cross_entropy: label {bad} is outside 0..{K - 1} for {K} classes — "
                             "labels must index the logits' columns")
        return _XENT_LABELS([logits, target], logits, target)
    _check.floats("softmax_cross_entropy", logits=logits, target=target)
    _check.shape("softmax_cross_entropy", "target (labels (N,) or one-hot (N, K))", target, (N, K))
    return _XENT_TARGETS([logits, target], logits, target)


def euclidean_loss(pred, target):
    """Caffe's Euclidean loss ``sum((pred - target)**2) / (2N)`` over N rows: ``(loss, (pred - target) / N)``."""
    _check.floats("euclidean_loss", pred=pred)
    _check.arrays("euclidean_loss", target=target)
    if tuple(pred.shape) != tuple(target.shape):
        raise ShapeError(f"euclidean_loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return _EUCLIDEAN([pred, target], pred, target)


def one_hot(labels, K: int, dtype=None):
    """``(N, K)`` rows of ``dtype`` with a 1 at each integer label of ``labels (N,)`` (labels in 0..K-1)."""
    _check.integers("one_hot", "labels", labels)
    _check.ndim("one_hot", "labels", labels, 1, "(N,)")
    if labels.size and not is_device_array(labels) and (int(labels.min()) < 0 or int(labels.max()) >= K):
        raise ShapeError(f"one_hot: labels must lie in 0..{K - 1}, got {int(labels.min())}..{int(labels.max())}")
    return _ONE_HOT([labels], labels, int(K), np.float32 if dtype is None else dtype)
