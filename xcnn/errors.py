"""The error families xcnn raises, one per kind of problem, so a command-line tool can turn any of
them into one line -- ``error: <what was wrong> — <how to fix it>`` -- and exit with status 2.

Each is also a ``ValueError`` or ``RuntimeError`` as before, so ``except ValueError`` keeps working.
"""
from __future__ import annotations

import contextlib
import sys

__all__ = ["XcnnError", "ConfigError", "DataError", "CheckpointError", "DeviceError", "ShapeError",
           "exit_on_error", "EXIT_USAGE"]


class XcnnError(Exception):
    """Base of xcnn's errors. The message says what was wrong and how to fix it, in one line."""


class ConfigError(XcnnError, ValueError):
    """Settings that cannot work together, or a run directory that does not fit them."""


class DataError(XcnnError, ValueError):
    """A dataset or image file that is missing, truncated, corrupt or not the pinned one."""


class CheckpointError(XcnnError, ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the network."""


class DeviceError(XcnnError, RuntimeError):
    """A device that cannot be used, or arrays of two devices mixed in one operation."""


class ShapeError(XcnnError, ValueError):
    """An array whose shape, dtype or device does not fit the layer or op it was given to."""


EXIT_USAGE = 2


@contextlib.contextmanager
def exit_on_error(*also: type):
    """For command-line tools: an xcnn error (or one of ``also``), or running out of host or GPU
    memory, becomes one line ``error: ...`` on stderr and exit status 2 -- never a traceback."""
    try:
        yield
    except (XcnnError, *also) as exc:
        _fail(str(exc))
    except Exception as exc:  # MemoryError, or CuPy's OutOfMemoryError
        if isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__:
            where = "GPU" if "OutOfMemory" in type(exc).__name__ else "host"
            _fail(f"out of {where} memory ({exc}) — try a smaller --batch-size or --device cpu")
        raise


def _fail(message: str):
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USAGE)
