"""Fixtures shared by the application tests (MNIST itself: ``mnist_dir`` and ``mnist`` in
tests/conftest.py): a seed-cnn checkpoint trained on it once per
session, and an independent float64 forward pass of the seed-cnn (explicit loops over the kernel
offsets) to check what the applications draw and save."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import quiet, run_config

from xcnn.train import fit


@pytest.fixture(scope="session")
def data_args(mnist_dir):
    """``--data-dir DIR`` for a command line, or nothing when MNIST is in the usual place."""
    return [] if mnist_dir is None else ["--data-dir", mnist_dir]


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, mnist_dir):
    """seed-cnn, the report's settings, one epoch on the first 3,000 MNIST training images."""
    tmp = tmp_path_factory.mktemp("trained")
    res = fit(run_config(tmp, train_limit=3000, test_limit=500, epochs=1, data_dir=mnist_dir), log=quiet)
    assert res.status == "completed", res.message
    return res.out / "checkpoint.npz"


def _conv(x, w, b, pad):
    """(N, C, H, W) * (O, C, KH, KW) -> (N, O, H', W'), stride 1, zero padding ``pad``: explicit loops
    over the kernel offsets (cross-correlation, as every CNN library means by convolution)."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    xp[:, :, pad:pad + H, pad:pad + W] = x
    OH, OW = H + 2 * pad - KH + 1, W + 2 * pad - KW + 1
    y = np.zeros((N, O, OH, OW))
    for o in range(O):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    y[:, o] += w[o, c, i, j] * xp[:, c, i:i + OH, j:j + OW]
        y[:, o] += b[o]
    return y


def _avgpool2(x):
    N, C, H, W = x.shape
    y = np.zeros((N, C, H // 2, W // 2))
    for i in range(H // 2):
        for j in range(W // 2):
            y[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(2, 3))
    return y


def _seed_cnn(params, images_u8):
    """Every layer output of the report's CNN from a checkpoint's raw arrays and uint8 images."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    x = images_u8.astype(np.float64)[:, None] / 255 - 0.5
    out = {"conv1": _conv(x, p["conv1.weight"], p["conv1.bias"], 2)}
    out["relu1"] = np.maximum(out["conv1"], 0)
    out["pool1"] = _avgpool2(out["relu1"])
    out["conv2"] = _conv(out["pool1"], p["conv2.weight"], p["conv2.bias"], 1)
    out["relu2"] = np.maximum(out["conv2"], 0)
    out["pool2"] = _avgpool2(out["relu2"])
    z = out["pool2"].reshape(len(x), -1) @ p["fc1.weight"].T + p["fc1.bias"]  # weight is (out, in)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out["probs"] = e / e.sum(axis=1, keepdims=True)
    return out


@pytest.fixture(scope="session")
def seed_cnn_reference():
    """``seed_cnn_reference(params, images_u8) -> {layer: output, "probs": softmax}`` in float64."""
    return _seed_cnn
