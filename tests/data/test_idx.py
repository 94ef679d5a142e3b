"""The IDX format (xcnn/data/idx.py): round trips raw and gzipped, gzip found by its magic, every
malformed file refused with a message naming it."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from xcnn.data import DataError, read_idx, write_idx


@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 5, 4), (0, 28, 28)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, idx_bytes, shape, suffix):
    a = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    p = tmp_path / f"f-idx{suffix}"
    write_idx(p, a)
    raw = p.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert (gzip.decompress(raw) if suffix else raw) == idx_bytes(a)
    b = read_idx(p)
    assert b.dtype == np.uint8 and b.shape == shape and np.array_equal(a, b)
    b[...] = 0  # an ordinary writable array
    assert [x.name for x in tmp_path.iterdir()] == [p.name]  # no temp file left
    write_idx(p, a)
    assert p.read_bytes() == raw  # reproducible, .gz included (no timestamp inside)


def test_gzip_detected_by_magic_not_name(tmp_path, idx_bytes):
    a = np.arange(10, dtype=np.uint8)
    (tmp_path / "labels").write_bytes(gzip.compress(idx_bytes(a)))  # gz without .gz
    (tmp_path / "labels.gz").write_bytes(idx_bytes(a))               # raw named .gz
    assert np.array_equal(read_idx(tmp_path / "labels"), a)
    assert np.array_equal(read_idx(tmp_path / "labels.gz"), a)


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
def test_idx_rejects_bad_files(tmp_path, idx_bytes, mangle, message):
    good = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(mangle(good))
    with pytest.raises(DataError, match=message) as e:
        read_idx(p)
    assert str(p) in str(e.value)


def test_idx_rejects_truncated_gzip(tmp_path, idx_bytes):
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))[:-12])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as e:
        read_idx(p)
    assert str(p) in str(e.value)


def test_missing_file_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="file not found") as e:
        read_idx(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)


def test_idx_expected_kind(tmp_path, idx_bytes):
    p = tmp_path / "x"
    p.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)))
    with pytest.raises(DataError, match="holds labels .* but images"):
        read_idx(p, expect_ndim=3)
    assert np.array_equal(read_idx(p, expect_ndim=1), np.arange(5))


@pytest.mark.parametrize("array, message", [
    (np.zeros(3, np.int64), "uint8"),
    (np.zeros((2, 3), np.uint8), r"labels \(N,\) or images \(N, H, W\)"),
])
def test_writer_refuses_what_idx_cannot_hold(tmp_path, array, message):
    with pytest.raises(ValueError, match=message):
        write_idx(tmp_path / "x", array)
    assert not any(tmp_path.iterdir())  # nothing written
