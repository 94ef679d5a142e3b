"""NCCL through CuPy (``cupy.cuda.nccl``) for the data-parallel runs of :mod:`xcnn.dist`: one GPU
per process, in-place sum all-reduce and broadcast of flat CuPy arrays on the current stream.

``cupy.cuda.nccl`` is not an attribute of ``cupy.cuda`` until it is imported
(cupy/cuda/__init__.py:52-99 (v14.2.0) lists what resolves lazily; NCCL does not), so it is
imported here on first use. A CuPy wheel without the NCCL library still imports it, with
``available = False`` (cupy/cuda/nccl.py:12-19 (v14.2.0)): :func:`unavailable_reason` says what to
install. Nothing here checks what CuPy's binding checks again; the checks below are the ones NCCL
does not make (a buffer on another GPU than the communicator's, a dtype it has no type for).
"""
from __future__ import annotations

import importlib

import numpy as np

from ..backend import cupy_or_none
from ..errors import DistributedError

__all__ = ["binding", "unavailable_reason", "unique_id", "NcclComm", "DTYPES"]

#: dtype -> the name of cupy.cuda.nccl's ncclDataType_t constant (bfloat16 has no NumPy dtype)
DTYPES = {np.dtype("int8"): "NCCL_INT8", np.dtype("uint8"): "NCCL_UINT8", np.dtype("int32"): "NCCL_INT32",
          np.dtype("uint32"): "NCCL_UINT32", np.dtype("int64"): "NCCL_INT64", np.dtype("uint64"): "NCCL_UINT64",
          np.dtype("float16"): "NCCL_FLOAT16", np.dtype("float32"): "NCCL_FLOAT32",
          np.dtype("float64"): "NCCL_FLOAT64"}


def binding():
    """``cupy.cuda.nccl`` of the CuPy in use (imported now), or None without CuPy."""
    cp = cupy_or_none()
    if cp is None:
        return None
    try:
        return importlib.import_module(f"{cp.__name__}.cuda.nccl")
    except ImportError:
        return None


def unavailable_reason() -> str | None:
    """None when CuPy's NCCL binding is usable, else why not and how to fix it."""
    if cupy_or_none() is None:
        return "CuPy is not installed (pip install 'xcnn[cuda13]' or 'xcnn[cuda12]')"
    mod = binding()
    if mod is None or not getattr(mod, "available", False):
        return ("CuPy finds no NCCL library (pip install nvidia-nccl-cu13, or nvidia-nccl-cu12 for CUDA 12, "
                "matching the CuPy wheel)")
    return None


def unique_id() -> bytes:
    """A new NCCL unique id (128 bytes in CuPy >= 14), to be sent to every rank by other means."""
    return binding().get_unique_id()


class NcclComm:
    """Rank ``rank`` of ``size`` on GPU ``device_index`` (NCCL binds a communicator to the device
    current when it is made); every rank passes the same ``uid``. Collective."""

    def __init__(self, size: int, uid: bytes, rank: int, device_index: int):
        cp = self._cp = cupy_or_none()
        self._nccl = binding()
        self._types = {dt: getattr(self._nccl, name) for dt, name in DTYPES.items()}
        self.device_index = int(device_index)
        with cp.cuda.Device(self.device_index):
            self._comm = self._nccl.NcclCommunicator(int(size), uid, int(rank))

    def _args(self, buf, what: str):
        code = self._types.get(np.dtype(buf.dtype))
        if code is None:
            raise TypeError(f"{what}: NCCL cannot move {buf.dtype}; use one of "
                            f"{', '.join(sorted(str(d) for d in self._types))}")
        if int(buf.device.id) != self.device_index:
            raise DistributedError(f"{what}: the buffer is on cuda:{int(buf.device.id)}, this rank's NCCL "
                                   f"communicator on cuda:{self.device_index} — allocate it under "
                                   f"`with cupy.cuda.Device({self.device_index})`")
        return code, self._cp.cuda.get_current_stream().ptr

    def allreduce_sum(self, buf) -> None:
        """Sum the flat CuPy array ``buf`` over the ranks, in place, on the current stream."""
        code, stream = self._args(buf, "allreduce_sum")
        self._comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, code, self._nccl.NCCL_SUM, stream)

    def bcast(self, buf, root: int = 0) -> None:
        """Overwrite ``buf`` on every rank with ``root``'s, in place, on the current stream."""
        code, stream = self._args(buf, "bcast")
        self._comm.bcast(buf.data.ptr, buf.size, code, int(root), stream)

    def abort(self) -> None:
        """ncclCommAbort: release the communicator without waiting for peers that may be gone."""
        if self._comm is not None:
            self._comm.abort()
            self._comm = None

    def destroy(self) -> None:
        """Release the communicator after the queued NCCL work is done (collective)."""
        if self._comm is not None:
            with self._cp.cuda.Device(self.device_index):
                self._cp.cuda.get_current_stream().synchronize()
            self._comm.destroy()
            self._comm = None
