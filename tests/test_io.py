"""xcnn/io.py, the one writer of every file xcnn produces: files get the umask's permissions (0644
under umask 022) whoever writes them -- checkpoints, metric files, figures, IDX files -- and a write
that fails leaves the old file as it was and no temporary file behind."""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import stat

import numpy as np
import pytest
from helpers import quiet, run_config, synthetic

from xcnn import io
from xcnn.data import fetch, write_idx
from xcnn.nn.models import build_model
from xcnn.nn.optim import SGD
from xcnn.train import fit


@contextlib.contextmanager
def umask(mask):
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_every_file_xcnn_writes_gets_the_umasks_permissions(tmp_path, mask, mode):
    with umask(mask):
        # checkpoints, snapshots, metric files, the run's config and its figures
        res = fit(run_config(tmp_path, epochs=1, save_epochs=[0, 1]), arrays=synthetic(100, 50), log=quiet)
        run = tmp_path / "run"
        names = sorted(p.name for p in run.iterdir())
        assert res.status == "completed"
        assert {"checkpoint.npz", "epoch_000.npz", "epoch_001.npz", "metrics_iter.csv", "metrics_epoch.csv",
                "metrics.json", "config.json", "curves_iteration.png", "curves_epoch.png"} <= set(names)
        net = build_model("mlp1")
        net.save(tmp_path / "model.npz", SGD(net.parameters(), lr=0.1))
        # IDX files: written directly, and by a fetch from a local source folder
        labels = np.arange(20, dtype=np.uint8) % 10
        images = np.zeros((20, 28, 28), np.uint8)
        src = tmp_path / "src"
        for name, a in (("train-images-idx3-ubyte", images[:12]), ("train-labels-idx1-ubyte", labels[:12]),
                        ("t10k-images-idx3-ubyte.gz", images[12:]), ("t10k-labels-idx1-ubyte", labels[12:])):
            write_idx(src / name, a)
        pins = {p.name.removesuffix(".gz"): hashlib.sha256(
            gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()).hexdigest()
            for p in src.iterdir()}
        cache = fetch("mnist", tmp_path / "cache", source=src, pins=pins)
    written = [run / n for n in names] + [tmp_path / "model.npz"] + list(src.iterdir()) + list(cache.iterdir())
    assert len(list(cache.iterdir())) == 4
    for p in written:
        assert _mode(p) == mode, f"{p.name}: {oct(_mode(p))}, expected {oct(mode)} under umask {oct(mask)}"
        assert not p.name.startswith(".") and not p.name.endswith(".tmp"), p  # no temp file left anywhere


def _fail_write(monkeypatch):
    """The data cannot be written (the process is interrupted mid-write)."""
    real_open = open

    class Interrupting:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            self.fh.__enter__()
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr("builtins.open", lambda *a, **k: Interrupting(real_open(*a, **k)))
    return KeyboardInterrupt


def _fail_fsync(monkeypatch):
    """The disk is full when the data is flushed."""
    def fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    return OSError


def _fail_rename(monkeypatch):
    """The rename over the old file fails."""
    def replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", replace)
    return PermissionError


@pytest.mark.parametrize("failure", [_fail_write, _fail_fsync, _fail_rename], ids=["write", "fsync", "rename"])
@pytest.mark.parametrize("writer", ["bytes", "text", "json", "npz"])
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, failure, writer):
    path = tmp_path / "out.file"
    new = {"bytes": (io.atomic_write_bytes, b"new contents" * 100),
           "text": (io.atomic_write_text, "new text\n" * 100),
           "json": (io.atomic_write_json, {"new": list(range(100))}),
           "npz": (io.atomic_save_npz, {"w": np.arange(100.0)})}[writer]
    io.atomic_write_bytes(path, b"old contents")
    with monkeypatch.context() as m:
        error = failure(m)
        with pytest.raises(error):
            new[0](path, new[1])
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.file"]
    # and with no old file: nothing at all
    with monkeypatch.context() as m:
        error = failure(m)
        with pytest.raises(error):
            new[0](tmp_path / "fresh.file", new[1])
    assert [p.name for p in tmp_path.iterdir()] == ["out.file"]
    # the same write, unhindered, replaces the file
    new[0](path, new[1])
    assert path.read_bytes() != b"old contents"


def test_writers_round_trip_and_make_missing_folders(tmp_path):
    p = io.atomic_write_json(tmp_path / "a" / "b" / "x.json", {"k": [1, 2.5, "z"]})
    assert json.loads(p.read_text()) == {"k": [1, 2.5, "z"]} and p.read_text().endswith("\n")
    assert io.atomic_write_text(tmp_path / "t.txt", "é\n").read_bytes() == "é\n".encode()
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array("meta")}
    back = io.load_npz(io.atomic_save_npz(tmp_path / "w.npz", arrays))
    assert back.keys() == arrays.keys()
    for k in arrays:
        assert back[k].dtype == arrays[k].dtype and np.array_equal(back[k], arrays[k])


def test_load_npz_refuses_pickled_objects(tmp_path):
    np.savez(tmp_path / "evil.npz", obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        io.load_npz(tmp_path / "evil.npz")
