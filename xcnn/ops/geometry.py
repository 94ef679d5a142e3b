"""Sliding-window geometry, validated once for every backend.

Shape names: N (batch), C (channels), H, W (input height, width), KH, KW (window), SH, SW (stride),
PH, PW (padding), OH, OW (output height, width). A geometry is the tuple
``(KH, KW, SH, SW, PH, PW, OH, OW)``.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, ShapeError

__all__ = ["pair", "conv_output_size", "conv_geometry", "pool_geometry"]


def pair(v, name: str = "value") -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``; refuses anything that is not one or two integers."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ConfigError(f"{name} must be an int or a pair of ints, got {v!r}")
        a, b = v
    else:
        a = b = v
    for t in (a, b):
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {v!r} ({type(t).__name__})")
    return int(a), int(b)


def conv_output_size(size: int, k: int, s: int, p: int) -> int:
    """Output length of a sliding window: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * p - k) // s + 1


def window(op: str, kernel_size, stride, padding, *, pool: bool) -> tuple[int, int, int, int, int, int]:
    """``(KH, KW, SH, SW, PH, PW)`` checked: kernel and stride >= 1, padding >= 0, and for pooling a
    padding of at most half the window (else some windows would see only padding)."""
    KH, KW = pair(kernel_size, "kernel_size")
    SH, SW = pair(stride, "stride")
    PH, PW = pair(padding, "padding")
    if KH < 1 or KW < 1:
        raise ConfigError(f"{op}: kernel_size must be >= 1, got {(KH, KW)}")
    if SH < 1 or SW < 1:
        raise ConfigError(f"{op}: stride must be >= 1, got {(SH, SW)}")
    if PH < 0 or PW < 0:
        raise ConfigError(f"{op}: padding must be >= 0, got {(PH, PW)}")
    if pool and (2 * PH > KH or 2 * PW > KW):
        raise ConfigError(f"{op}: padding {(PH, PW)} must be at most half the window {(KH, KW)}, "
                          "or some windows would see only padding")
    return KH, KW, SH, SW, PH, PW


_GEOMETRIES: dict = {}  # (op, H, W, kernel_size, stride, padding, pool) -> a checked geometry


def _geometry(op: str, H: int, W: int, kernel_size, stride, padding, *, pool: bool):
    """A window's geometry, checked once per distinct (hashable) set of arguments and then remembered."""
    try:
        key = (op, H, W, kernel_size, stride, padding, pool)
        return _GEOMETRIES[key]
    except TypeError:  # a list somewhere: not hashable, so not remembered
        return _checked_geometry(op, H, W, kernel_size, stride, padding, pool=pool)
    except KeyError:
        g = _checked_geometry(op, H, W, kernel_size, stride, padding, pool=pool)
        if len(_GEOMETRIES) < 4096:
            _GEOMETRIES[key] = g
        return g


def _checked_geometry(op: str, H: int, W: int, kernel_size, stride, padding, *, pool: bool):
    KH, KW, SH, SW, PH, PW = window(op, kernel_size, stride, padding, pool=pool)
    if KH > H + 2 * PH or KW > W + 2 * PW:
        raise ShapeError(f"{op}: kernel {(KH, KW)} is larger than the padded input {(H + 2 * PH, W + 2 * PW)} "
                         f"(input {(H, W)}, padding {(PH, PW)}) — use a smaller kernel or more padding")
    return KH, KW, SH, SW, PH, PW, conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)


def conv_geometry(H, W, kernel_size, stride=1, padding=0, op="conv2d"):
    """``(KH, KW, SH, SW, PH, PW, OH, OW)`` for a convolution, validated."""
    return _geometry(op, H, W, kernel_size, stride, padding, pool=False)


def pool_geometry(H, W, kernel_size, stride=None, padding=0, op="pool2d"):
    """``(KH, KW, SH, SW, PH, PW, OH, OW)`` for a pooling window (stride defaults to the window)."""
    return _geometry(op, H, W, kernel_size, kernel_size if stride is None else stride, padding, pool=True)
