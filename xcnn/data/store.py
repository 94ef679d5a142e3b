"""Where datasets live on disk, and reading their files with the SHA-256 pins checked.

Data lives in ``<root>/<dataset>/`` where ``<root>`` is, in order: the ``data_dir`` argument (CLI
``--data-dir``), ``$XCNN_DATA``, then ``$XDG_CACHE_HOME/xcnn`` or ``~/.cache/xcnn``. Every IDX file
is checked against the pin of its *uncompressed* bytes the first time a process reads it, so a
``.gz`` and a raw copy of the same file carry the same pin.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import DataError
from .idx import parse_idx, read_bytes
from .specs import FILES, fetch_hint, spec

__all__ = ["data_root", "dataset_dir", "locate", "find", "load_verified", "sha256", "mismatch"]

# (resolved path, mtime_ns, size) -> SHA-256 already checked in this process.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def sha256(buf: bytes) -> str:
    return hashlib.sha256(buf).hexdigest()


def mismatch(where: str, expected: str, actual: str, fix: str) -> DataError:
    return DataError(f"{where}: SHA-256 mismatch: expected {expected}, got {actual}; {fix}")


def load_verified(path: Path, fname: str, pins: Mapping[str, str], name: str) -> np.ndarray:
    """Read a cached IDX file, checking its pin the first time this process sees it."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    fix = f"delete it and {fetch_hint(name)}"
    try:
        # Parse before hashing: "truncated" says more than a digest mismatch.
        buf = read_bytes(path)
        array = parse_idx(buf, str(path), 1 if "labels" in fname else 3)
    except DataError as e:
        raise DataError(f"{e}; {fix}") from None
    if _VERIFIED.get(key) != pins[fname]:
        digest = sha256(buf)
        if digest != pins[fname]:
            raise mismatch(str(path), pins[fname], digest, fix)
        _VERIFIED[key] = digest
    return array


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding ``<dataset>/`` folders: data_dir, else $XCNN_DATA, else the user cache."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("XCNN_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "xcnn"


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """``data_root(data_dir) / name``."""
    return data_root(data_dir) / spec(name).name


def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds a dataset's files: ``<root>/<name>/``; or, when the root (``data_dir``, else
    ``$XCNN_DATA``, else the cache) holds the four files itself (raw or .gz) and ``<root>/<name>/`` does
    not, the root."""
    default = dataset_dir(name, data_dir)
    direct = data_root(data_dir)
    if all(find(direct, f) for f in FILES) and not all(find(default, f) for f in FILES):
        return direct
    return default


def find(directory: Path, fname: str) -> Path | None:
    """The raw file if present, else its .gz, else None."""
    for candidate in (directory / fname, directory / f"{fname}.gz"):
        if candidate.is_file():
            return candidate
    return None
