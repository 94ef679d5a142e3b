"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The one writer of every file xcnn produces (checkpoints, metrics, figures, datasets). Files get the
usual permissions for the user's umask (0644 under umask 022), like any tool's output.
"""
from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import numpy as np

__all__ = ["check_output_dir", "check_output_file", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npz", "load_npz"]


def check_output_dir(path, flag: str = "--out") -> Path:
    """Refuse, before any work, an output folder that cannot be one: an existing file, a path under a
    file, or a folder (or its nearest existing parent, where it would be created) that is not writable.
    Returns the path; nothing is created."""
    from .errors import ConfigError  # noqa: PLC0415

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder — pass a folder (it is created if missing)")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{flag} {path}: {probe} is a file, so no folder can be made under it — pass another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be created: {probe} is not writable"
        raise ConfigError(f"{flag} {path} {what} — pass a folder you can write to")
    return path


def check_output_file(path, what: str, flag: str = "the folder of OUT") -> Path:
    """Refuse, before any work, a file that cannot be written: a path that is a folder (``what`` names
    the file to give instead, e.g. ``.onnx file``), or one whose folder :func:`check_output_dir` refuses."""
    from .errors import ConfigError  # noqa: PLC0415

    if Path(path).expanduser().is_dir():
        raise ConfigError(f"{path} is a directory — name the {what} to write")
    check_output_dir(Path(path).expanduser().parent, flag)
    return Path(path).expanduser()


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "xb") rather than mkstemp: the file gets the umask's permissions, not 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_npz(path, arrays: dict) -> Path:
    """Save ``{name: array}`` as an uncompressed ``.npz`` atomically (no pickled objects inside)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def load_npz(path) -> dict:
    """Load an ``.npz`` with pickling disabled; returns a plain dict of arrays."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
