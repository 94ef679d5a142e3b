"""Losses as small classes: ``forward(pred, target) -> loss`` then ``backward() -> dpred``.

The loss is the mean over the batch (as in the report's framework) and stays a 0-d array
on the device, so a training step never waits for the host.
"""
from __future__ import annotations

from . import functional as F

__all__ = ["SoftmaxCrossEntropy", "Euclidean", "get_loss"]


class _Loss:
    name = "loss"

    def __init__(self):
        self._grad = None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def backward(self):
        """Gradient of the last ``forward`` w.r.t. its prediction."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}: backward() called before forward()")
        return self._grad


class SoftmaxCrossEntropy(_Loss):
    """Mean cross-entropy of ``softmax(logits)``; targets are integer labels (N,) or one-hot (N, K).
    Stable for large logits (log-sum-exp)."""

    name = "softmax cross-entropy"

    def forward(self, logits, target):
        loss, self._grad = F.softmax_cross_entropy(logits, target)
        return loss


class Euclidean(_Loss):
    """Caffe's Euclidean loss ``sum((pred - target)^2) / (2N)`` (mean over the batch of half the
    squared error); for classification pass one-hot targets."""

    name = "euclidean"

    def forward(self, pred, target):
        if target.ndim == 1 and pred.ndim == 2 and target.dtype.kind in "iu":
            xp = F.get_array_module(pred, target)
            target = xp.eye(pred.shape[1], dtype=pred.dtype)[target]
        loss, self._grad = F.euclidean_loss(pred, target)
        return loss


def get_loss(name: str) -> _Loss:
    """``'softmax'``/``'cross-entropy'`` or ``'euclidean'``/``'mse'``."""
    key = name.lower().replace("_", "-")
    if key in ("softmax", "cross-entropy", "softmax-cross-entropy", "ce"):
        return SoftmaxCrossEntropy()
    if key in ("euclidean", "mse", "l2"):
        return Euclidean()
    raise ValueError(f"unknown loss {name!r}: use 'cross-entropy' or 'euclidean'")
