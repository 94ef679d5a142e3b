"""Where datasets live and how their files are verified (xcnn/data/store.py): the lookup order of
the data root, raw before .gz, SHA-256 pins checked once per (path, mtime, size), and errors that
name the file, both digests and the command that fixes it."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from doubles.fakewheel import synthetic_mnist

from xcnn import data
from xcnn.data import DataError, store


def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XCNN_DATA", raising=False)
    assert store.data_root() == tmp_path / "home" / ".cache" / "xcnn"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.data_root() == tmp_path / "xdg" / "xcnn"
    monkeypatch.setenv("XCNN_DATA", str(tmp_path / "env"))
    assert store.data_root() == tmp_path / "env"
    assert store.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert store.dataset_dir("fashion-mnist", tmp_path / "arg") == tmp_path / "arg" / "fashion-mnist"
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        store.dataset_dir("cifar", tmp_path)


def test_find_prefers_the_raw_file_then_the_gz(tmp_path):
    assert store.find(tmp_path, "t10k-labels-idx1-ubyte") is None
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"x")
    assert store.find(tmp_path, "t10k-labels-idx1-ubyte") == tmp_path / "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"x")
    assert store.find(tmp_path, "t10k-labels-idx1-ubyte") == tmp_path / "t10k-labels-idx1-ubyte"


def test_checksum_mismatch_names_file_and_digests(tmp_path, no_ambient_data, write_dataset, sha):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "mnist", images, labels, 8)
    p = tmp_path / "mnist" / "train-images-idx3-ubyte"
    blob = bytearray(p.read_bytes())
    blob[-1] ^= 1  # same size, one pixel off
    p.write_bytes(bytes(blob))
    with pytest.raises(DataError) as e:
        store.load_verified(p, p.name, pins, "mnist")
    msg = str(e.value)
    for part in (str(p), pins[p.name], sha(bytes(blob)), "python -m xcnn.data fetch mnist"):
        assert part in msg
    # the same through data.load
    with pytest.raises(DataError, match="SHA-256 mismatch") as e:
        data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)
    assert str(p) in str(e.value) and sha(bytes(blob)) in str(e.value)


def test_a_gz_and_a_raw_copy_share_the_pin_of_the_uncompressed_bytes(tmp_path, no_ambient_data, idx_bytes, sha):
    a = np.arange(50, dtype=np.uint8) % 10
    raw, gz = tmp_path / "raw" / "train-labels-idx1-ubyte", tmp_path / "gz" / "train-labels-idx1-ubyte.gz"
    raw.parent.mkdir()
    gz.parent.mkdir()
    raw.write_bytes(idx_bytes(a))
    gz.write_bytes(gzip.compress(idx_bytes(a)))
    pins = {"train-labels-idx1-ubyte": sha(idx_bytes(a))}
    for p in (raw, gz):
        assert np.array_equal(store.load_verified(p, "train-labels-idx1-ubyte", pins, "mnist"), a)


def test_truncated_cache_file_says_what_to_do(tmp_path, no_ambient_data, write_dataset):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "mnist", images, labels, 8)
    p = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    p.write_bytes(p.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"truncated.*delete it and run `python -m xcnn.data fetch mnist`"):
        store.load_verified(p, p.name, pins, "mnist")
    with pytest.raises(DataError, match=r"truncated.*delete it and run `python -m xcnn.data fetch mnist`"):
        data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)


def test_labels_file_holding_images_is_refused(tmp_path, no_ambient_data, idx_bytes, sha):
    p = tmp_path / "train-labels-idx1-ubyte"
    blob = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    p.write_bytes(blob)
    with pytest.raises(DataError, match="holds images .* but labels"):
        store.load_verified(p, p.name, {p.name: sha(blob)}, "mnist")


def test_verification_cached_per_path_mtime_size(tmp_path, no_ambient_data, monkeypatch, write_dataset):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "mnist", images, labels, 8)
    calls = []
    real = store.sha256
    monkeypatch.setattr(store, "sha256", lambda b: calls.append(1) or real(b))
    data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)
    assert len(calls) == 4
    data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)
    assert len(calls) == 4  # second load in the process: no re-hash
    p = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    blob = bytearray(p.read_bytes())
    blob[-1] = (blob[-1] + 1) % 10
    p.write_bytes(bytes(blob))
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a changed file, new mtime
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)
    assert len(calls) == 5  # only the changed file was hashed again
