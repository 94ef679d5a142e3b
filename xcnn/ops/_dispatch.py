"""The one dispatcher: every op picks its implementation here, once per call, from its arrays.

* CuPy arrays -> ``cuda`` (:mod:`xcnn.cuda.ops`), run with the arrays' GPU current, so ``cuda:N``
  is right by construction; arrays of two GPUs, or host and device arrays mixed, are refused.
* NumPy arrays -> ``numba`` (:mod:`xcnn.cpu.numba_ops`) when the compiled kernels are on and the op
  has one that accepts these arguments, else ``numpy`` (:mod:`xcnn.cpu`'s NumPy implementations).

Inputs are validated by the op *before* this point (shapes, dtypes), so every backend refuses the
same bad input with the same error; compiled backends make their inputs contiguous themselves.
A profiling hook (:func:`set_profile_hook`) sees every call: the benchmark times op families
through it instead of patching functions.
"""
from __future__ import annotations

import contextlib

from ..backend import device_scope, placement
from ..cpu import config as cpu_config

__all__ = ["Op", "set_profile_hook", "BACKENDS"]

BACKENDS = ("cuda", "numba", "numpy")
_HOOK: list = [None]


class Op:
    """An op's implementations: ``numpy`` and ``cuda`` always, ``numba`` optionally, with an optional
    ``numba_accepts(*args)`` for arguments the compiled kernel does not handle (they go to NumPy).
    All implementations of an op take the same arguments."""

    __slots__ = ("name", "impls", "numba_accepts")

    def __init__(self, name: str, *, numpy, cuda, numba=None, numba_accepts=None):
        self.name = name
        self.impls = {"numpy": numpy, "cuda": cuda, "numba": numba}
        self.numba_accepts = numba_accepts

    def backend(self, arrays, args) -> tuple[str, int | None]:
        """``(backend, GPU index or None)`` for a call on ``arrays`` with ``args``."""
        where = placement(arrays)
        if where is not None:
            return "cuda", where
        if self.impls["numba"] is not None and cpu_config.use_numba() and (
                self.numba_accepts is None or self.numba_accepts(*args)):
            return "numba", None
        return "numpy", None

    def __call__(self, arrays, *args):
        """Run the implementation chosen for ``arrays`` (the call's array arguments) on ``args``."""
        name, where = self.backend(arrays, args)
        return self.run(name, where, *args)

    def run(self, name: str, where: int | None, *args):
        """Run backend ``name``'s implementation with GPU ``where`` (or the host) current."""
        fn = self.impls[name]
        hook = _HOOK[0]
        if hook is None and where is None:  # host arrays, no profiler: nothing to enter
            return fn(*args)
        with device_scope(where):
            if hook is None:
                return fn(*args)
            with hook(self.name, name):
                return fn(*args)


def set_profile_hook(hook):
    """Install ``hook(op_name, backend)`` -> context manager around every op call (None removes it);
    returns the previous hook."""
    before, _HOOK[0] = _HOOK[0], hook
    return before


@contextlib.contextmanager
def profile_hook(hook):
    """``set_profile_hook`` for the duration of a ``with`` block."""
    before = set_profile_hook(hook)
    try:
        yield
    finally:
        set_profile_hook(before)
