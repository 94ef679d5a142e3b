"""Softmax and the losses (xcnn/ops/loss.py) against their definitions in float64, on every backend."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

from xcnn import ops
from xcnn.errors import ShapeError


def test_softmax_cross_entropy_matches_definition_and_is_stable(backend):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    loss, grad = ops.softmax_cross_entropy(backend.asarray(z), backend.asarray(y))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert abs(float(loss) - (-np.log(p[np.arange(6), y]).mean())) < 1e-12
    onehot = np.eye(5)[y]
    assert_close(grad, (p - onehot) / 6, np.float64)
    loss2, grad2 = ops.softmax_cross_entropy(backend.asarray(z), backend.asarray(onehot))
    assert abs(float(loss2) - float(loss)) < 1e-12
    assert_close(grad2, grad, np.float64)
    big, gbig = ops.softmax_cross_entropy(backend.asarray(z * 1e4, np.float32), backend.asarray(y))
    assert np.isfinite(float(big)) and np.isfinite(backend.host(gbig)).all()


def test_softmax_and_log_softmax(backend):
    z = np.random.default_rng(2).standard_normal((4, 7)) * 50
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert_close(ops.softmax(backend.asarray(z)), p, np.float64)
    assert_close(ops.log_softmax(backend.asarray(z)), np.log(p), np.float64, atol=1e-9)


def test_a_nan_logit_poisons_its_row_only(backend):
    z = np.zeros((3, 4))
    z[1, 2] = np.nan
    loss, grad = ops.softmax_cross_entropy(backend.asarray(z), backend.asarray(np.array([0, 1, 3])))
    g = backend.host(grad)
    assert np.isnan(float(loss))
    assert np.isnan(g[1]).all() and np.isfinite(g[[0, 2]]).all()


def test_euclidean_loss_is_caffe_s(backend):
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss, grad = ops.euclidean_loss(backend.asarray(pred), backend.asarray(target))
    assert abs(float(loss) - ((pred - target) ** 2).sum() / 10) < 1e-12
    assert_close(grad, (pred - target) / 5, np.float64)


def test_out_of_range_labels_are_refused_on_the_host():
    z = np.zeros((3, 4))
    for bad in (-1, 4):
        with pytest.raises(ShapeError, match=f"label {bad} is outside 0..3"):
            ops.softmax_cross_entropy(z, np.array([0, bad, 1]))
    with pytest.raises(ShapeError, match="labels must lie in 0..3"):
        ops.one_hot(np.array([0, 4]), 4)


def test_out_of_range_labels_give_nan_rows_on_the_gpu(cuda_emu):
    """On a GPU a check would cost a synchronisation every step: the row comes out NaN instead (and
    the trainer stops on a non-finite loss). Documented in xcnn/ops/loss.py."""
    b = cuda_emu
    loss, grad = ops.softmax_cross_entropy(b.asarray(np.zeros((3, 4), np.float32)), b.asarray(np.array([0, -1, 4])))
    g = b.host(grad)
    assert np.isnan(float(loss)) and np.isnan(g[1]).all() and np.isnan(g[2]).all() and np.isfinite(g[0]).all()


def test_target_errors_are_clear():
    z = np.zeros((4, 3))
    with pytest.raises(ShapeError, match=r"expected labels of shape \(4,\)"):
        ops.softmax_cross_entropy(z, np.zeros(5, dtype=np.int64))
    with pytest.raises(ShapeError, match=r"one-hot \(N, K\)\) of shape \(4, 3\)"):
        ops.softmax_cross_entropy(z, np.zeros((4, 2)))
    with pytest.raises(ShapeError, match="labels must be an integer array"):
        ops.softmax_cross_entropy(z, np.zeros(4))
    with pytest.raises(ShapeError, match="differ"):
        ops.euclidean_loss(z, np.zeros((4, 2)))
    with pytest.raises(ShapeError, match=r"expected logits \(N, K\)"):
        ops.softmax_cross_entropy(np.zeros(3), np.zeros(3, np.int64))


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")
def test_an_empty_batch_gives_an_empty_gradient():
    loss, grad = ops.softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64))
    assert grad.shape == (0, 3)
