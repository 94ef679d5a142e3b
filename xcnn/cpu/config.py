"""CPU settings in one object instead of module globals, read once from the environment.

``XCNN_CPU_KERNELS`` = ``auto`` (Numba when it imports, else NumPy), ``numba`` or ``numpy``;
``XCNN_NUM_THREADS`` = threads xcnn splits a batch over (default: the core count, at most 8).
Tests and benchmarks change settings for a ``with`` block through :func:`using`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import types

__all__ = ["CpuConfig", "get", "using", "numba_kernels", "numba_available", "numba_reason", "use_numba",
           "describe_kernels"]

_CHOICES = ("auto", "numba", "numpy")


def _default_threads() -> int:
    try:
        n = int(os.environ.get("XCNN_NUM_THREADS", "0"))
    except ValueError:
        n = 0
    return n if n > 0 else max(1, min(os.cpu_count() or 1, 8))


@dataclasses.dataclass(frozen=True)
class CpuConfig:
    #: ``auto``, ``numba`` or ``numpy``: which implementation the CPU ops use
    kernels: str = "auto"
    #: threads a batch is split over (NumPy and OpenBLAS release the GIL; each thread owns samples)
    threads: int = 1
    #: below this many elements an op runs on the calling thread: a hand-off to a pool thread costs
    #: ~100 us of wall time in CPython, more than splitting a smaller op saves (measured on 2 cores)
    parallel_min_elements: int = 1 << 18
    #: bytes of column data a NumPy convolution fills and multiplies at a time (stays in L2)
    chunk_bytes: int = 1 << 20
    #: largest M*N*K of one convolution GEMM kept on the calling thread: OpenBLAS hands bigger ones to
    #: its pool, whose hand-off costs ~10x on a machine whose other core is busy
    serial_gemm_mnk: int = 1 << 19
    #: work (elements) from which a compiled op is split into ranges for Numba's pool (~2 us a launch)
    pool_min_work: int = 1 << 13
    #: multiply-adds worth one element of the thresholds above (a conv output costs many MACs)
    macs_per_element: int = 32
    #: seconds after a threaded OpenBLAS GEMM during which Numba's (spinning) pool is not used
    blas_quiet_s: float = 0.05

    @classmethod
    def from_env(cls) -> "CpuConfig":
        choice = os.environ.get("XCNN_CPU_KERNELS", "auto").strip().lower() or "auto"
        if choice not in _CHOICES:
            raise ValueError(f"XCNN_CPU_KERNELS={choice!r} is not a choice — use one of {', '.join(_CHOICES)}")
        return cls(kernels=choice, threads=_default_threads())


_LOCK = threading.Lock()
_STATE: dict = {"config": None, "nb": None, "error": None}


def get() -> CpuConfig:
    """The settings in force (read from the environment on first use)."""
    cfg = _STATE["config"]
    if cfg is None:
        with _LOCK:
            if _STATE["config"] is None:
                _STATE["config"] = CpuConfig.from_env()
            cfg = _STATE["config"]
    return cfg


@contextlib.contextmanager
def using(**changes):
    """Replace settings inside a ``with`` block, e.g. ``using(kernels="numpy", threads=1)``.
    Process-wide, like the environment variables; not meant for concurrent threads."""
    before = get()
    new = dataclasses.replace(before, **changes)
    if new.kernels not in _CHOICES:
        raise ValueError(f"kernels={new.kernels!r} is not a choice — use one of {', '.join(_CHOICES)}")
    if new.kernels == "numba" and numba_kernels() is None:
        raise RuntimeError(_STATE["error"])
    _STATE["config"] = new
    try:
        yield new
    finally:
        _STATE["config"] = before


def numba_kernels():
    """The compiled kernels (one namespace over the ``_nb_*`` modules), or None when Numba is missing."""
    if _STATE["nb"] is None and _STATE["error"] is None:
        with _LOCK:
            if _STATE["nb"] is None and _STATE["error"] is None:
                try:
                    from . import _nb_conv, _nb_elementwise, _nb_pool  # noqa: PLC0415
                except ImportError as exc:  # Numba missing, or too old/new for this NumPy
                    _STATE["error"] = f"numba is not importable ({exc}) — install it with: pip install numba"
                else:
                    _STATE["nb"] = types.SimpleNamespace(**{
                        k: getattr(m, k) for m in (_nb_conv, _nb_pool, _nb_elementwise) for k in m.__all__})
    return _STATE["nb"]


def numba_available() -> bool:
    """Numba imports (whatever ``XCNN_CPU_KERNELS`` says)."""
    return numba_kernels() is not None


def numba_reason() -> str | None:
    """Why the compiled kernels are off now (None when they are on)."""
    if get().kernels == "numpy":
        return "XCNN_CPU_KERNELS=numpy"
    numba_kernels()
    return _STATE["error"]


def use_numba() -> bool:
    """The CPU ops take the compiled kernels now."""
    choice = get().kernels
    if choice == "numpy":
        return False
    if numba_kernels() is None:
        if choice == "numba":
            raise RuntimeError(f"XCNN_CPU_KERNELS=numba, but {_STATE['error']}")
        return False
    return True


def describe_kernels() -> str:
    """``numba 0.61.0`` or ``numpy (why)``: for machine descriptions."""
    if use_numba():
        import numba  # noqa: PLC0415

        return f"numba {numba.__version__}"
    return f"numpy ({numba_reason()})"
