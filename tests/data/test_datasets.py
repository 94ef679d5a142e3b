"""Loading datasets (xcnn/data/datasets.py): pins, the lookup order, fetching what is missing,
consistency of the splits, and normalisation; the real MNIST where a ../shared copy exists."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from doubles.fakewheel import hub_tuple, py2_pickle, synthetic_mnist

from xcnn import data
from xcnn.data import FILES, DataError

REPO = Path(__file__).resolve().parents[2]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.mark.parametrize("gz", [False, True])
def test_load_synthetic_with_injected_pins(tmp_path, no_ambient_data, write_dataset, gz):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "mnist", images, labels, 8, gz=gz)
    ds = data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)
    assert np.array_equal(ds.train_images, images[:8]) and np.array_equal(ds.test_labels, labels[8:])
    assert np.array_equal(ds.train_labels, labels[:8]) and np.array_equal(ds.test_images, images[8:])
    assert ds.train_images.shape == (8, 28, 28) and ds.test_images.shape == (4, 28, 28)
    assert ds.name == "mnist" and len(ds.classes) == 10
    assert "train=(8, 28, 28)" in repr(ds)


def test_real_pins_refuse_synthetic_data(tmp_path, no_ambient_data, write_dataset):
    images, labels = synthetic_mnist()
    write_dataset(tmp_path / "mnist", images, labels, 8)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        data.load("mnist", tmp_path, fetch_if_missing=False)


def test_missing_data_says_how_to_fetch(tmp_path, no_ambient_data):
    with pytest.raises(DataError, match=r"not found.*python -m xcnn.data fetch fashion-mnist") as e:
        data.load("fashion-mnist", tmp_path, fetch_if_missing=False)
    assert f"--data-dir {tmp_path}" in str(e.value)  # the directory it looked in, for the fix


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        data.load("cifar")


@pytest.mark.parametrize("cut, message", [
    ("train-labels-idx1-ubyte", "train has 8 images but 7 labels"),
    ("t10k-images-idx3-ubyte", "test has 3 images but 4 labels"),
])
def test_splits_with_unequal_images_and_labels_are_refused(tmp_path, no_ambient_data, idx_bytes, sha, cut,
                                                           message):
    images, labels = synthetic_mnist()
    arrays = {FILES[0]: images[:8], FILES[1]: labels[:8], FILES[2]: images[8:], FILES[3]: labels[8:]}
    arrays[cut] = arrays[cut][:-1]
    (tmp_path / "mnist").mkdir()
    for f, a in arrays.items():
        (tmp_path / "mnist" / f).write_bytes(idx_bytes(a))
    pins = {f: sha(idx_bytes(a)) for f, a in arrays.items()}
    with pytest.raises(DataError, match=message):
        data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)


def test_labels_outside_the_classes_are_refused(tmp_path, no_ambient_data, write_dataset):
    images, labels = synthetic_mnist()
    labels = labels.copy()
    labels[9] = 10  # a test label; mnist has classes 0..9
    pins = write_dataset(tmp_path / "mnist", images, labels, 8)
    with pytest.raises(DataError, match="test label 10 is out of range for 10 classes"):
        data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)


def test_load_picks_arg_then_env_then_cache(tmp_path, no_ambient_data, monkeypatch, write_dataset):
    images, labels = synthetic_mnist()
    roots = {k: tmp_path / k for k in ("arg", "env", "xdg")}
    pins = {}
    for i, (k, root) in enumerate(roots.items()):
        # Same shapes, different content: tell the sources apart by the first label.
        labs = labels.copy()
        labs[0] = i
        pins[k] = write_dataset(root / "mnist" if k != "xdg" else root / "xcnn" / "mnist", images, labs, 8)
    monkeypatch.setenv("XCNN_DATA", str(roots["env"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(roots["xdg"]))
    assert data.load("mnist", roots["arg"], pins=pins["arg"]).train_labels[0] == 0
    assert data.load("mnist", pins=pins["env"]).train_labels[0] == 1
    monkeypatch.delenv("XCNN_DATA")
    assert data.load("mnist", pins=pins["xdg"]).train_labels[0] == 2


def test_load_fetches_when_missing(tmp_path, no_ambient_data, monkeypatch, fake_hub, idx_bytes, sha):
    images, labels = synthetic_mnist()
    seen = fake_hub(py2_pickle(hub_tuple(images, labels, 5, 3)))
    pins = {f: sha(b) for f, b in zip(FILES, (
        idx_bytes(images[:8]), idx_bytes(labels[:8]), idx_bytes(images[8:]), idx_bytes(labels[8:])))}
    monkeypatch.setenv("XCNN_DATA", str(tmp_path / "env"))
    ds = data.load("mnist", pins=pins)
    assert len(seen) == 1 and (tmp_path / "env" / "mnist" / FILES[0]).is_file()
    assert np.array_equal(ds.train_labels, labels[:8])


def test_normalize():
    images = np.array([[[0, 255], [51, 128]]], dtype=np.uint8)
    x = data.normalize(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], images[0] / 255.0 - 0.5, rtol=0, atol=1e-7)
    assert x.min() == -0.5 and x.max() == 0.5
    assert data.normalize(images, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="uint8"):
        data.normalize(x)
    four = np.zeros((2, 3, 4, 5), np.uint8)  # (N, C, H, W) keeps its channels
    assert data.normalize(four).shape == (2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, C, H, W\)"):
        data.normalize(np.zeros((4, 5), np.uint8))


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"no real MNIST at {SHARED_MNIST}")
def test_real_mnist_from_shared_copy(tmp_path, monkeypatch):
    fetch_mod = importlib.import_module("xcnn.data.fetch")
    monkeypatch.setattr(importlib.import_module("xcnn.data.store"), "_VERIFIED", {})
    monkeypatch.setattr(fetch_mod, "_download_wheel", lambda dest: pytest.fail("tried to download"))
    monkeypatch.chdir(REPO)
    data.fetch("mnist", tmp_path)  # copies from ../shared/data/mnist, verifying pins
    ds = data.load("mnist", tmp_path, fetch_if_missing=False)
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.uint8
    train_counts = np.bincount(ds.train_labels, minlength=10)
    test_counts = np.bincount(ds.test_labels, minlength=10)
    assert train_counts.sum() == 60000 and test_counts.sum() == 10000
    assert train_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test_counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x = data.normalize(ds.test_images[:100])
    assert x.shape == (100, 1, 28, 28) and -0.5 <= x.min() < x.max() <= 0.5
