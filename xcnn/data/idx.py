"""The IDX file format (uint8 payloads only, the layouts MNIST uses), raw or gzip-compressed.

Labels (magic 0x00000801) have shape (N,), images (0x00000803) shape (N, H, W).
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_bytes

__all__ = ["read_idx", "write_idx", "read_bytes", "parse_idx", "idx_bytes"]

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UINT8 = 0x08
# (ndim) -> what the file is, for messages; only the uint8 layouts MNIST uses.
_IDX_KINDS = {1: "labels (magic 0x00000801)", 3: "images (magic 0x00000803)"}


def read_bytes(path: Path) -> bytes:
    """The file's uncompressed bytes; gzip is detected by its magic, not the name."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip data ({e})") from None


def parse_idx(buf: bytes, where: str, expect_ndim: int | None = None) -> np.ndarray:
    """Decode an IDX byte string (uint8 payload only). Shapes: labels (N,), images (N, H, W)."""
    if len(buf) < 4:
        raise DataError(f"{where}: truncated IDX file ({len(buf)} bytes, no header)")
    b0, b1, dtype_code, ndim = buf[:4]
    magic = int.from_bytes(buf[:4], "big")
    if b0 != 0 or b1 != 0:
        raise DataError(f"{where}: not an IDX file (magic 0x{magic:08x}; "
                        "expected 0x00000801 for labels or 0x00000803 for images)")
    if dtype_code != _IDX_UINT8:
        raise DataError(f"{where}: IDX element type 0x{dtype_code:02x} is not supported "
                        "(expected 0x08, unsigned byte)")
    if ndim not in _IDX_KINDS:
        raise DataError(f"{where}: IDX file with {ndim} dimensions (magic 0x{magic:08x}); "
                        "expected 1 (labels, 0x00000801) or 3 (images, 0x00000803)")
    if expect_ndim is not None and ndim != expect_ndim:
        raise DataError(f"{where}: holds {_IDX_KINDS[ndim]} but {_IDX_KINDS[expect_ndim]} "
                        "were expected")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{where}: truncated IDX header ({len(buf)} of {header} bytes)")
    dims = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    want = header + int(np.prod(dims, dtype=np.int64))
    if len(buf) < want:
        raise DataError(f"{where}: truncated: header says shape {dims} ({want} bytes) "
                        f"but the file has {len(buf)} bytes")
    if len(buf) > want:
        raise DataError(f"{where}: {len(buf) - want} unexpected trailing bytes after "
                        f"the {dims} payload")
    # A copy, so callers get an ordinary writable array rather than a view of bytes.
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: str | os.PathLike, *, expect_ndim: int | None = None) -> np.ndarray:
    """Read a uint8 IDX file, raw or gzip (detected by magic bytes).

    Labels (magic 0x00000801) give shape (N,), images (0x00000803) give (N, H, W).
    Raises DataError naming the file for a bad magic, dimensions or payload length.
    """
    path = Path(path)
    return parse_idx(read_bytes(path), str(path), expect_ndim)


def idx_bytes(array: np.ndarray) -> bytes:
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"write_idx: expected a uint8 array, got {a.dtype}")
    if a.ndim not in _IDX_KINDS:
        raise ValueError(f"write_idx: expected labels (N,) or images (N, H, W), got shape {a.shape}")
    header = bytes([0, 0, _IDX_UINT8, a.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in a.shape)
    return header + np.ascontiguousarray(a).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 (N,) or (N, H, W) array as IDX, gzip-compressed if the name ends in .gz.

    The write is atomic (temp file in the same directory, fsync, rename).
    """
    path = Path(path)
    data = idx_bytes(array)
    if path.suffix == ".gz":
        # mtime=0 keeps the .gz reproducible.
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(path, data)


