"""Device choice: the one module that knows whether arrays live in NumPy or CuPy.

A device is a string spec: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
Everything else asks the arrays themselves (:func:`get_array_module`), so layers
never need to know where they run. CuPy is imported lazily, inside a guard: the
package imports fine on machines without it (or without a driver).
"""
from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DeviceError

__all__ = [
    "Device", "DeviceError", "get_device", "parse_device", "get_array_module", "cupy_or_none",
    "gpu_available", "gpu_unavailable_reason", "to_host", "is_device_array", "device_of", "same_device", "placement",
    "device_scope", "describe_gpu", "zeros_like", "concatenate",
]

_CUPY: Any = None
_CUPY_ERROR: str | None = None
_CUPY_TRIED = False


def cupy_or_none():
    """Import CuPy once; return the module or ``None`` (the reason is kept for error messages)."""
    global _CUPY, _CUPY_ERROR, _CUPY_TRIED
    if not _CUPY_TRIED:
        _CUPY_TRIED = True
        try:
            import cupy  # noqa: PLC0415  (optional dependency, guarded on purpose)

            _CUPY = cupy
        except Exception as exc:  # ImportError, or a broken CUDA install raising anything
            _CUPY_ERROR = f"{type(exc).__name__}: {exc}"
    return _CUPY


def gpu_unavailable_reason(index: int = 0) -> str | None:
    """``None`` when CUDA device ``index`` is usable, else a sentence saying why not and how to fix it."""
    cp = cupy_or_none()
    if cp is None:
        return (
            "CuPy is not installed or failed to import "
            f"({_CUPY_ERROR}). Install one of `pip install 'xcnn[cuda13]'` (driver >= 580, GPU sm_75 or newer) "
            "or `pip install 'xcnn[cuda12]'` (older drivers and GPUs)."
        )
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when no driver is loaded
        return (
            f"CuPy is installed but no CUDA device answers ({type(exc).__name__}: {exc}). "
            "Check the NVIDIA driver (`nvidia-smi`) and that the CuPy wheel matches its CUDA version."
        )
    if count == 0:
        return "CuPy is installed but the driver reports no CUDA devices (`nvidia-smi` lists none)."
    if index >= count:
        return f"cuda:{index} was asked for but only {count} CUDA device(s) exist (cuda:0..cuda:{count - 1})."
    try:
        with cp.cuda.Device(index):
            cp.zeros(1).sum().item()
    except Exception as exc:
        hint = ""
        if any(w in str(exc).lower() for w in ("header", "nvrtc", "cublas")):  # a driver-only host
            hint = (" CuPy compiles its kernels with NVRTC and the CUDA headers: reinstall with "
                    "`pip install 'xcnn[cuda13]'` or `'xcnn[cuda12]'`, which bring CuPy's [ctk] extra.")
        return f"CUDA device {index} did not answer a test computation ({type(exc).__name__}: {exc}).{hint}"
    return None


def describe_gpu(index: int = 0) -> dict:
    """The GPU's name and the CUDA versions (empty without CuPy; a note when the device cannot say)."""
    cp = cupy_or_none()
    if cp is None:
        return {}
    try:
        name = cp.cuda.runtime.getDeviceProperties(index)["name"]
        return {"gpu": name.decode() if isinstance(name, bytes) else str(name), "cupy": cp.__version__,
                "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
                "cuda_driver": cp.cuda.runtime.driverGetVersion()}
    except Exception as exc:  # naming the GPU is a nicety; say why it failed
        return {"cupy": getattr(cp, "__version__", None), "gpu_note": f"{type(exc).__name__}: {exc}"}


def gpu_available(index: int = 0) -> bool:
    """True when CuPy imports *and* CUDA device ``index`` answers."""
    return gpu_unavailable_reason(index) is None


_LOCAL = threading.local()


def _entered() -> list:
    """This thread's stack of entered CuPy device contexts."""
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


_SPEC = re.compile(r"^(cpu|auto|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A resolved device: ``kind`` is ``"cpu"`` or ``"cuda"``; ``xp`` is its array module."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def xp(self):
        return np if self.kind == "cpu" else cupy_or_none()

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __enter__(self):
        """Make this GPU current (``with device: ...``); a no-op on CPU. Nestable. The entered CuPy
        contexts live on a per-thread stack, since a Device is a frozen value, not a resource."""
        if self.is_cuda:
            ctx = self.xp.cuda.Device(self.index)
            ctx.__enter__()
            _entered().append(ctx)
        return self

    def __exit__(self, *exc):
        if self.is_cuda:
            _entered().pop().__exit__(*exc)
        return False

    def asarray(self, a, dtype=None):
        """Move (or copy) ``a`` onto this device; host arrays go through NumPy first."""
        if self.kind == "cpu":
            return np.asarray(to_host(a), dtype=dtype)
        cp = self.xp
        with cp.cuda.Device(self.index):
            return cp.asarray(a, dtype=dtype)

    def synchronize(self) -> None:
        """Wait for queued device work (for honest timings); a no-op on CPU."""
        if self.is_cuda:
            with self.xp.cuda.Device(self.index):
                self.xp.cuda.get_current_stream().synchronize()



def parse_device(spec) -> tuple[str, int]:
    """``"cpu"`` -> ``("cpu", 0)``, ``"cuda:1"`` -> ``("cuda", 1)``, ``"auto"`` -> ``("auto", 0)``: the one
    parser of device specs (no GPU is probed). A malformed spec is a :class:`DeviceError` saying
    what is accepted."""
    if isinstance(spec, Device):
        return spec.kind, spec.index
    m = _SPEC.match(str(spec).strip().lower())
    if not m:
        raise DeviceError(f"unknown device {spec!r} — use 'cpu', 'cuda', 'cuda:N' (N = GPU index) or 'auto'")
    kind, idx = m.group(1), m.group(2)
    if kind != "cuda" and idx is not None:
        raise DeviceError(f"unknown device {spec!r} — '{kind}' takes no index, use '{kind}'")
    return kind, int(idx or 0)


def get_device(spec: "str | Device" = "auto", *, quiet: bool = False) -> Device:
    """Resolve a device spec. ``auto`` means CUDA when usable, else CPU with a one-line notice.

    Raises :class:`DeviceError` naming the problem and the fix when the spec is malformed or
    ``cuda``/``cuda:N`` cannot be used.
    """
    if isinstance(spec, Device):
        return spec
    kind, idx = parse_device(spec)
    if kind == "cpu":
        return Device("cpu")
    if kind == "auto":
        reason = gpu_unavailable_reason(0)
        if reason is None:
            return Device("cuda", 0)
        if not quiet:
            print(f"xcnn: no usable GPU, running on CPU ({reason.split('.')[0]}).", file=sys.stderr)
        return Device("cpu")
    reason = gpu_unavailable_reason(idx)
    if reason is not None:
        raise DeviceError(f"device {spec!r} is not usable: {reason} Or run with --device cpu.")
    return Device("cuda", idx)


def is_device_array(a) -> bool:
    """True for a CuPy array (without importing CuPy when it was never imported)."""
    cp = _CUPY
    return cp is not None and isinstance(a, cp.ndarray)


def get_array_module(*arrays):
    """NumPy or CuPy, decided by the arrays; mixing host and device arrays (or two GPUs) is an error."""
    return np if placement(arrays) is None else _CUPY


def placement(arrays) -> int | None:
    """Where an operation on ``arrays`` runs: ``None`` for host (NumPy) arrays, else the index of the
    one GPU they all live on. Host and device arrays mixed, or arrays of two GPUs, are a
    :class:`DeviceError` (never a silent copy). ``None`` entries are ignored."""
    if _CUPY is None:  # CuPy never imported: there can be no device array
        return None
    where = -1  # nothing seen yet
    for a in arrays:
        if a is None:
            continue
        d = int(a.device.id) if is_device_array(a) else None
        if where == -1:
            where = d
        elif d != where:
            if where is None or d is None:
                raise DeviceError(
                    "mixed host (NumPy) and device (CuPy) arrays in one operation — move them to one "
                    "device first, e.g. net.to('cuda') and device.asarray(batch)")
            raise DeviceError(f"arrays on cuda:{where} and cuda:{d} in one operation — move them to one "
                              "device first (net.to(...), device.asarray(...))")
    return None if where == -1 else where


class _NoScope:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NO_SCOPE = _NoScope()


def device_scope(index: int | None):
    """Context that makes GPU ``index`` current (CuPy allocates outputs and launches kernels on the
    current device); nothing for ``None`` (host arrays). With :func:`placement` this is how every
    op runs on its arrays' device, so ``cuda:N`` needs no care anywhere else."""
    if index is None:
        return _NO_SCOPE
    return _CUPY.cuda.Device(index)


def zeros_like(a, shape=None, dtype=None):
    """Zeros on ``a``'s device (and module), of ``a``'s shape and dtype unless given. CuPy allocates
    on the *current* device, so the array's own device is entered for it."""
    where = placement([a])
    xp = np if where is None else _CUPY
    with device_scope(where):
        return xp.zeros(a.shape if shape is None else shape, dtype=a.dtype if dtype is None else dtype)


def concatenate(arrays):
    """``xp.concatenate`` on the arrays' device (all on one)."""
    where = placement(arrays)
    with device_scope(where):
        return (np if where is None else _CUPY).concatenate(arrays)


def device_of(a) -> Device:
    """The :class:`Device` an array lives on."""
    if is_device_array(a):
        return Device("cuda", int(a.device.id))
    return Device("cpu")


def same_device(a, b) -> bool:
    """``a`` and ``b`` live on one device (the host, or one GPU)."""
    if _CUPY is None:  # CuPy never imported: both are host arrays
        return True
    return device_of(a) == device_of(b)


def to_host(a):
    """A NumPy array for ``a`` (copies device arrays to the host; host arrays pass through)."""
    if is_device_array(a):
        return a.get()
    return np.asarray(a)
