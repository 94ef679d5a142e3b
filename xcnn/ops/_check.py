"""Input checks shared by the ops: every backend refuses the same bad input with the same
:class:`~xcnn.errors.ShapeError` (a ``ValueError``), before any kernel sees it."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _shape(a) -> tuple:
    if type(a) is np.ndarray:  # (the fast path: already a tuple of ints)
        return a.shape
    return tuple(int(s) for s in a.shape)


def _array(op: str, name: str, a) -> None:
    if type(a) is not np.ndarray and not (hasattr(a, "shape") and hasattr(a, "dtype")):
        raise ShapeError(f"{op}: {name} must be an array, got {type(a).__name__}")


def arrays(op: str, **named) -> None:
    """Each value is an array (has a shape and a dtype)."""
    for name, a in named.items():
        _array(op, name, a)


def floats(op: str, **named):
    """The arrays (``None`` skipped) share one dtype, float32 or float64; returns it."""
    dt = None
    for name, a in named.items():
        if a is None:
            continue
        _array(op, name, a)
        d = a.dtype
        if d not in _FLOATS:
            raise ShapeError(f"{op}: {name} must be float32 or float64, got {d} — convert it with .astype(np.float32)")
        if dt is None:
            dt, first = d, name
        elif d != dt:
            raise ShapeError(f"{op}: {first} is {dt} but {name} is {d} — give them one dtype (.astype)")
    return dt


def integers(op: str, name: str, a) -> None:
    arrays(op, **{name: a})
    if np.dtype(a.dtype).kind not in "iu":
        raise ShapeError(f"{op}: {name} must be an integer array, got {a.dtype}")


def ndim(op: str, name: str, a, n: int, what: str) -> tuple:
    """``a`` has ``n`` dimensions (``what`` names them, e.g. ``(N, C, H, W)``); returns its shape."""
    if a.ndim != n:
        raise ShapeError(f"{op}: expected {name} {what}, got shape {_shape(a)}")
    return _shape(a)


def shape(op: str, name: str, a, want: tuple) -> None:
    """``a`` has exactly the shape ``want``."""
    if a.shape != want and _shape(a) != tuple(int(s) for s in want):  # (the fast test first: both tuples)
        raise ShapeError(f"{op}: expected {name} of shape {tuple(int(s) for s in want)}, got {_shape(a)}")


def image_shape(op: str, x_shape) -> tuple:
    """A stored input shape ``(N, C, H, W)``."""
    s = tuple(int(v) for v in x_shape)
    if len(s) != 4 or min(s) < 0:
        raise ShapeError(f"{op}: expected an input shape (N, C, H, W), got {tuple(x_shape)}")
    return s
