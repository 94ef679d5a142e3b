"""The error families xcnn raises, one per kind of problem, so a command-line tool can turn any of
them into one line -- ``error: <what was wrong> — <how to fix it>`` -- and exit with status 2.

Each is also a ``ValueError`` or ``RuntimeError`` as before, so ``except ValueError`` keeps working.
"""
from __future__ import annotations

import contextlib
import sys

__all__ = ["XcnnError", "ConfigError", "DataError", "CheckpointError", "DeviceError", "ShapeError",
           "MissingExtraError", "DistributedError", "one_line", "exit_on_error", "run_app", "EXIT_USAGE"]


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


class MissingExtraError(XcnnError, ImportError):
    """An optional feature whose extra is not installed (``pip install 'xcnn[onnx]'``, say)."""


class DistributedError(XcnnError, RuntimeError):
    """A data-parallel run (``--distributed``) that cannot start or go on: no MPI, settings the ranks
    cannot share, ranks that disagree. ``collective`` is True when every rank raises it at the same
    point, so each can exit normally instead of ending the job with MPI_Abort."""

    def __init__(self, message: str, *, collective: bool = False):
        super().__init__(message)
        self.collective = collective


EXIT_USAGE = 2


def one_line(exc: BaseException) -> str | None:
    """The line (after ``error: ``) a command-line tool prints for ``exc``: an xcnn error, a refusal of
    the file system, or running out of host or GPU memory; None for anything else (a bug: traceback)."""
    if isinstance(exc, XcnnError):
        return str(exc)
    if isinstance(exc, OSError):  # the file system said no: a read-only folder, a full disk, a vanished file
        where = f" {exc.filename}" if exc.filename else ""
        return (f"cannot use{where}: {exc.strerror or exc} — check that the path exists and that you may write "
                "there (or pass another folder)")
    if isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__:  # CuPy's OutOfMemoryError
        where = "GPU" if "OutOfMemory" in type(exc).__name__ else "host"
        return f"out of {where} memory ({exc}) — try a smaller --batch-size or --device cpu"
    return None


@contextlib.contextmanager
def exit_on_error(*also: type):
    """For command-line tools: an xcnn error (or one of ``also``), or running out of host or GPU
    memory, becomes one line ``error: ...`` on stderr and exit status 2 -- never a traceback."""
    try:
        yield
    except (XcnnError, *also) as exc:
        _fail(str(exc))
    except Exception as exc:  # OSError, MemoryError, CuPy's OutOfMemoryError: one line; anything else: raised
        message = one_line(exc)
        if message is None:
            raise
        _fail(message)


def _fail(message: str):
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USAGE)


def run_app(app, prog_name: str, args=None):
    """Run a typer command line so that a refused flag or argument (a typo in a choice, a value out of
    range, a missing argument) is one line too: ``error: <the parser's message> — see PROG --help``, exit 2."""
    import typer  # noqa: PLC0415  (the library itself never needs it)

    try:
        code = app(args=args, prog_name=prog_name, standalone_mode=False)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        # click's UsageError and its subclasses (typer >= 0.2x carries its own copy of click, so match by name)
        if any(c.__name__ == "UsageError" for c in type(exc).__mro__):
            _fail(f"{exc.format_message().replace('Value error, ', '')} — see {prog_name} --help")
        raise
    if isinstance(code, int) and code:
        raise SystemExit(code)
