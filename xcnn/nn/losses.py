"""Losses as small classes: ``forward(pred, target) -> loss`` then ``backward() -> dpred``.

The loss is the mean over the batch (as in the report's framework) and stays a 0-d array on the
device, so a training step never waits for the host.
"""
from __future__ import annotations

import numpy as np

from .. import ops

__all__ = ["SoftmaxCrossEntropy", "Euclidean"]


class _Loss:
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

    def forward(self, logits, target):
        loss, self._grad = ops.softmax_cross_entropy(logits, target)
        return loss


class Euclidean(_Loss):
    """Caffe's Euclidean loss ``sum((pred - target)^2) / (2N)`` (mean over the batch of half the
    squared error); integer labels are turned into one-hot rows."""

    def forward(self, pred, target):
        if target.ndim == 1 and pred.ndim == 2 and np.dtype(target.dtype).kind in "iu":
            target = ops.one_hot(target, pred.shape[1], pred.dtype)
        loss, self._grad = ops.euclidean_loss(pred, target)
        return loss
