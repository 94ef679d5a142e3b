"""Reusable scratch buffers, so a layer's big temporaries (padded input, columns) are allocated once
and not per step (a fresh temporary of that size costs an mmap and page faults every time)."""
from __future__ import annotations

import numpy as np

__all__ = ["Workspace", "scratch"]


class Workspace:
    """Host buffers keyed by name. A buffer stays the same array while its shape and dtype do: a
    result that refers to it is valid until the next call that asks for the same key."""

    def __init__(self):
        self._bufs: dict = {}

    def get(self, key, shape, dtype, *, zero: bool = False):
        """A buffer of ``shape``/``dtype``; fresh zeros when first made or reshaped, cleared on every
        call with ``zero=True``."""
        shape = tuple(int(s) for s in shape)
        buf = self._bufs.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.zeros(shape, dtype=dtype)
            self._bufs[key] = buf
        elif zero:
            buf.fill(0)
        return buf

    def clear(self):
        self._bufs.clear()


def scratch(ws, key, shape, dtype, zero: bool = False):
    """``ws.get(...)``, or fresh zeros when there is no workspace."""
    if ws is None:
        return np.zeros(shape, dtype=dtype)
    return ws.get(key, shape, dtype, zero=zero)
