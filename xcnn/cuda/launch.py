"""Starting our kernels: the launch shape, the scalar arguments as the exact C types the kernels
declare, and the argument check against the parsed C signature (:mod:`.loader`).

Every kernel is a grid-stride loop over ``total`` elements with one-dimensional blocks, so any grid
is correct; an empty launch (``total == 0``) starts nothing (a zero-block grid is invalid). Outputs
are allocated and kernels launched on the *current* device, which the ops make the arrays' own.

The Python work of a launch is what a small-batch GPU step mostly costs, so the full argument check
runs once per (kernel, argument types, dtypes, contiguity) -- later launches only build that key --
and a layer's geometry is packed into C ``int`` s once (:func:`ints` is memoised).
"""
from __future__ import annotations

import functools

import numpy as np

from ..backend import cupy_or_none
from . import loader

__all__ = ["BLOCK", "MAX_GRID", "launch_config", "launch", "launch_grid", "suffix", "ints", "cupy"]

BLOCK = 256
#: Cap on blocks per launch; the grid-stride loops cover anything beyond it.
MAX_GRID = 65535 * 4

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_I32_MAX = 2**31 - 1


def cupy():
    cp = cupy_or_none()
    if cp is None:  # pragma: no cover - the ops only come here with CuPy arrays
        raise RuntimeError("xcnn.cuda needs CuPy")
    return cp


def launch_config(total: int, block: int = BLOCK, max_grid: int = MAX_GRID) -> tuple[int, int]:
    """``(grid, block)`` for ``total`` elements: one thread per element up to ``max_grid`` blocks."""
    return max(1, min(-(-int(total) // block), max_grid)), block


_CHECKED: set = set()


def _check(file: str, name: str, args: tuple) -> None:
    """:func:`loader.check_args`, once per kind of argument tuple: a scalar's type, an array's dtype
    and contiguity (what the signature check looks at)."""
    try:
        key = (file, name) + tuple(type(a) if isinstance(a, np.generic) else (a.dtype, a.flags.c_contiguous)
                                   for a in args)
    except AttributeError:  # a Python int, or no array at all: the full check says what is wrong
        key = None
    if key not in _CHECKED:
        loader.check_args(file, name, args)
        _CHECKED.add(key)


def launch(file: str, name: str, total: int, args: tuple) -> None:
    """Check ``args`` against ``file:name``'s C signature, then launch it over ``total`` elements."""
    if total <= 0:
        return
    _check(file, name, args)
    grid, block = launch_config(total)
    loader.get_kernel(file, name)((grid,), (block,), args)


def suffix(op: str, a) -> str:
    """``f32`` or ``f64``: the kernel twin for ``a``'s dtype."""
    try:
        return _SUFFIX[np.dtype(a.dtype)]
    except KeyError:
        raise TypeError(f"{op}: CUDA kernels support float32 and float64 only, got {a.dtype}") from None


def ints(op: str, **vals) -> tuple:
    """The values as ``np.int32`` scalars (the kernels take C ``int``), range-checked first."""
    return _ints(op, tuple(vals.items()))


@functools.lru_cache(maxsize=4096)
def _ints(op: str, items: tuple) -> tuple:
    out = []
    for k, v in items:
        v = int(v)
        if not 0 <= v <= _I32_MAX:
            raise ValueError(f"{op}: {k}={v} does not fit the kernels' 32-bit int")
        out.append(np.int32(v))
    return tuple(out)


def launch_grid(file: str, name: str, grid: int, block: int, args: tuple) -> None:
    """Launch ``file:name`` with an explicit ``(grid, block)`` (kernels with their own tiling)."""
    _check(file, name, args)
    loader.get_kernel(file, name)((int(grid),), (int(block),), args)
