"""A strict double of ``cupy.cuda.nccl`` (CuPy 14.2's binding, cupy_backends/cuda/libs/nccl.pyx) for the
CuPy double (tests/doubles/fakecupy.py), across real processes.

Each MPI process is one NCCL rank on one fake GPU; a collective reads the fake device memory behind
the raw addresses it is given, moves it over MPI (mpi4py, underneath) and writes the result back.
``fakecupy.install(monkeypatch, nccl=fakenccl)`` makes it what ``import cupy.cuda.nccl`` gives.

It models the part of the binding xcnn uses -- ``get_unique_id``, ``NcclCommunicator(ndev, commId,
rank)``, ``allReduce``, ``bcast``, ``destroy``, ``abort``, ``rank_id``/``size``/``device_id``,
``comm``, ``NcclError`` and the ``NCCL_*`` constants (their values from cupy_names.json) -- and
refuses what CuPy and NCCL refuse. CuPy is cited at v14.2.0, NCCL at 5067397 (2.30.7); what CuPy's
binding does before NCCL touches a GPU (argument conversion, the NULL communicator, the error texts)
was checked against cupy-cuda13x 14.2.0 with nvidia-nccl-cu13 2.32.3 on a machine without a GPU
(tests/doubles/nccl_outcomes.json, compared in tests/doubles/test_fakenccl.py):

* arguments convert as Cython converts them: ``commId`` must be ``bytes`` (nccl.pyx:323), of 128
  bytes (nccl.pyx:329-331); a pointer or stream (``intptr_t``) must be a Python int, a count
  (``size_t``) must not be negative, an ``int`` must fit in 32 bits;
* an error is CuPy's ``NcclError``: ``status`` and ``'<NAME>: <ncclGetErrorString>'``
  (nccl.pyx:104-130; NCCL src/init.cc:3415-3438); NCCL's own reason is logged (``NCCL WARN ...`` on
  stderr when ``NCCL_DEBUG`` is WARN or INFO) and kept as ``fake_warn``;
* ``rank`` outside ``[0, ndev)`` -> ncclInvalidArgument (init.cc:2500-2503); the communicator binds
  to the device current when it is made (init.cc:2670); two ranks of one host on one GPU ->
  ncclInvalidUsage (init.cc:1055-1059);
* a data type outside ``ncclDataType_t`` -> ncclInvalidArgument (src/misc/argcheck.cc:207-210); an
  operation < 0 is invalid, one >= ncclNumOps unknown to the communicator (argcheck.cc:216-225); a
  root outside ``[0, nranks)`` -> ncclInvalidArgument (argcheck.cc:203-206);
* a buffer that is no device memory, or on another device than the communicator's ->
  ncclInvalidArgument (``CudaPtrCheck``, argcheck.cc:12-28, which NCCL runs only under
  ``NCCL_CHECK_MODE``; the double always);
* any call on a destroyed or aborted communicator -> ncclInvalidArgument: CuPy sets the handle to
  NULL (nccl.pyx:434-447) and NCCL's ``CommCheck`` refuses it (argcheck.cc:30-39, reached from
  src/enqueue.cc:3126 and init.cc:3488,3502,3515); ``destroy``/``abort`` of a NULL handle do nothing.

Stricter than NCCL, where NCCL has no check and the result is undefined: a ``count`` running past
the end of the array the memory was allocated for, memory already returned to CuPy's pool, a buffer allocated for
another dtype than ``datatype`` (NCCL would reinterpret the bytes), ranks calling different
collectives or the same one with other counts, types, operations or roots (real NCCL hangs or mixes
the data, NVIDIA/nccl#239), joining with different unique ids or ``ndev`` (real NCCL waits forever), a
stream of another device (CUDA refuses the launch). Not modelled (``NotImplementedError``): group
calls, ``broadcast``, ``reduce``, ``allGather``, ``reduceScatter``, send/recv, ``initAll``, configs,
``NCCL_AVG``, bfloat16/fp8 data, NCCL calls inside a CUDA graph capture. Every process of the MPI
job must create its communicator at the same time (the double meets its peers over
``MPI.COMM_WORLD``).
"""
from __future__ import annotations

import os
import socket
import sys
import types

import numpy as np

from doubles import fakecupy

NCCL_UNIQUE_ID_BYTES = 128  # nccl.pyx:19

# ncclResult_t values (CuPy's ERROR2, nccl.pyx:104-112) and NCCL's texts for them (init.cc:3415-3438)
ncclUnhandledCudaError, ncclInvalidArgument, ncclInvalidUsage = 1, 4, 5
_NAMES = {1: "NCCL_ERROR_UNHANDLED_CUDA_ERROR", 4: "NCCL_ERROR_INVALID_ARGUMENT", 5: "NCCL_ERROR_INVALID_USAGE"}
_TEXTS = {1: "unhandled cuda error (run with NCCL_DEBUG=INFO for details)",
          4: "invalid argument (run with NCCL_DEBUG=WARN for details)",
          5: "invalid usage (run with NCCL_DEBUG=WARN for details)"}

_C = {k: v["value"] for k, v in fakecupy.NAMES["modules"]["cupy.cuda.nccl"].items() if "value" in v and k.isupper()}
_NUM_TYPES = 12  # ncclNumTypes (NCCL src/nccl.h.in:394)
_NUM_OPS = 5  # ncclNumOps (src/nccl.h.in:372)
_NUMPY_TYPES = {_C["NCCL_INT8"]: np.int8, _C["NCCL_UINT8"]: np.uint8, _C["NCCL_INT32"]: np.int32,
                _C["NCCL_UINT32"]: np.uint32, _C["NCCL_INT64"]: np.int64, _C["NCCL_UINT64"]: np.uint64,
                _C["NCCL_FLOAT16"]: np.float16, _C["NCCL_FLOAT32"]: np.float32, _C["NCCL_FLOAT64"]: np.float64}

#: what the double has seen, for tests that must show a path really ran
calls = types.SimpleNamespace(init=0, allreduce=0, bcast=0, destroy=0, bytes=0)


class NcclError(RuntimeError):
    """CuPy's ``NcclError``: ``status`` and ``'<NAME>: <text>'`` (nccl.pyx:118-133)."""

    def __init__(self, status):
        self.status = status
        super().__init__(f"{_NAMES[status]}: {_TEXTS[status]}")

    def __reduce__(self):
        return (type(self), (self.status,))


def _fail(status: int, warn: str) -> NcclError:
    """NCCL returning ``status`` after logging ``warn`` (``WARN(...)``: printed when NCCL_DEBUG asks)."""
    if os.environ.get("NCCL_DEBUG", "").upper() in ("WARN", "INFO", "TRACE"):
        print(f"{socket.gethostname()}:{os.getpid()} NCCL WARN {warn}", file=sys.stderr, flush=True)
    exc = NcclError(status)
    exc.fake_warn = warn
    return exc


def _not_modelled(what):
    return NotImplementedError(f"fakenccl: {what} is not modelled (CuPy 14.2 and NCCL have it; add it to "
                               "tests/doubles/fakenccl.py if xcnn needs it)")


# ---------------------------------------------------------------------- Cython's argument conversion

def _c_int(v) -> int:
    if isinstance(v, (str, bytes, bytearray)) or not hasattr(v, "__int__"):
        raise TypeError("an integer is required")
    v = int(v)
    if not -2**31 <= v < 2**31:
        raise OverflowError("value too large to convert to int")
    return v


def _c_size_t(v) -> int:
    if isinstance(v, (str, bytes, bytearray)) or not hasattr(v, "__int__"):
        raise TypeError("an integer is required")
    v = int(v)
    if v < 0:
        raise OverflowError("can't convert negative value to size_t")
    return v


def _c_intptr(v) -> int:
    if not isinstance(v, int):  # checked: a NumPy integer or a float is refused
        raise TypeError("an integer is required")
    return v


def get_unique_id() -> bytes:
    """128 bytes, as CuPy >= 14 returns them (nccl.pyx:159-169)."""
    return os.urandom(NCCL_UNIQUE_ID_BYTES)


def _world():
    from mpi4py import MPI  # noqa: PLC0415  (the double's transport: the ranks are real MPI processes)

    return MPI


class NcclCommunicator:
    """One rank of a communicator (``NcclCommunicator(ndev, commId, rank, config=None)``,
    nccl.pyx:286-346). A bare ``NcclCommunicator.__new__(NcclCommunicator)`` holds a NULL handle, as
    ``__cinit__`` leaves it (nccl.pyx:320-321)."""

    _comm = None
    _rank = _ndev = _device = None
    _seq = 0

    def __init__(self, ndev, commId, rank, config=None):
        ndev = _c_int(ndev)
        if type(commId) is not bytes:  # the Cython signature takes `bytes commId`
            raise TypeError(f"Argument 'commId' has incorrect type (expected bytes, got {type(commId).__name__})")
        rank = _c_int(rank)
        if config is not None:  # `NcclConfig config=None`; NcclConfig itself is not modelled
            raise TypeError("Argument 'config' has incorrect type (expected cupy_backends.cuda.libs.nccl."
                            f"NcclConfig, got {type(config).__name__})")
        if len(commId) != NCCL_UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(commId)} != {NCCL_UNIQUE_ID_BYTES}.")
        device = fakecupy.get_device_id()  # cudaGetDevice: the current device
        if ndev < 1 or rank < 0 or rank >= ndev:
            raise _fail(ncclInvalidArgument, f"Invalid rank requested : {rank}/{ndev}")
        MPI = _world()
        world = MPI.COMM_WORLD
        peers = world.allgather((commId, ndev, rank, device, socket.gethostname()))
        if len({p[0] for p in peers}) != 1 or len({p[1] for p in peers}) != 1 or ndev != world.Get_size():
            raise _fail(ncclInvalidUsage, "(fakenccl) ranks joined with different unique ids or ndev, or ndev is not "
                                          "the number of processes: real NCCL would wait for the missing ranks")
        if sorted(p[2] for p in peers) != list(range(ndev)):
            raise _fail(ncclInvalidUsage, f"(fakenccl) ranks {sorted(p[2] for p in peers)} do not number 0..{ndev - 1}")
        if len({(p[4], p[3]) for p in peers}) != len(peers):
            raise _fail(ncclInvalidUsage, "Multiple Ranks are using the same GPU/Partition. Set "
                                          "NCCL_MULTI_RANK_GPU_ENABLE=1 to enable this configuration.")
        self._mpi, self._comm = MPI, world.Split(0, rank)  # ordered by NCCL rank
        self._rank, self._ndev, self._device = rank, ndev, device
        calls.init += 1

    # -- the handle ------------------------------------------------------------------------------------
    def _check(self, opname):
        if self._comm is None:
            raise _fail(ncclInvalidArgument, f"{opname} : comm argument is NULL")

    @property
    def comm(self) -> int:
        return 0 if self._comm is None else id(self)

    def destroy(self):
        if self._comm is not None:
            self._comm.Free()
            self._comm = None
            calls.destroy += 1

    def abort(self):
        self._comm = None  # without waiting for the peers (they may be gone)

    def device_id(self):
        self._check("CommCuDevice")
        return self._device

    def rank_id(self):
        self._check("CommUserRank")
        return self._rank

    def size(self):
        self._check("CommCount")
        return self._ndev

    # -- ncclEnqueueCheck ------------------------------------------------------------------------------
    def _enqueue(self, opname, count, datatype, op, root, stream, buffers):
        """NCCL's checks of a collective (CommCheck, then ArgsCheck), the double's stricter ones, and a
        comparison of the call with the other ranks'; returns the device memory of ``buffers``
        (``[(name, address)]``). A call refused on one rank is refused on every rank (real NCCL would
        leave the others waiting for it)."""
        self._check(opname)
        try:
            if not 0 <= root < self._ndev:
                raise _fail(ncclInvalidArgument, f"{opname} : invalid root {root} (root should be in the "
                                                 f"0..{self._ndev} range)")
            if not 0 <= datatype < _NUM_TYPES:
                raise _fail(ncclInvalidArgument, f"{opname} : invalid type {datatype}")
            if op < 0:
                raise _fail(ncclInvalidArgument, f"{opname} : invalid reduction operation {op}")
            if op >= _NUM_OPS:
                raise _fail(ncclInvalidArgument, f"{opname} : reduction operation {op} unknown to this communicator")
            if datatype not in _NUMPY_TYPES:
                raise _not_modelled(f"NCCL data type {datatype} (bfloat16/fp8 have no NumPy dtype)")
            if op == _C["NCCL_AVG"]:
                raise _not_modelled("NCCL_AVG")
            views = [self._buffer(opname, name, ptr, count, datatype) for name, ptr in buffers]
            self._stream(opname, stream)
            error = None
        except (NcclError, NotImplementedError) as exc:
            error = exc
        # every rank must make the same call next (NVIDIA/nccl#239): compare what each rank is doing
        self._seq += 1
        mine = (self._seq, opname, count, datatype, op, root)
        others = self._comm.allgather((mine, error is None))
        if error is not None:
            raise error
        refused = [r for r, (_, ok) in enumerate(others) if not ok]
        if refused:
            raise _fail(ncclInvalidUsage, f"(fakenccl) {opname}: the call was refused on rank(s) {refused}; real "
                                          "NCCL would wait for them forever")
        if any(o != mine for o, _ in others):
            raise _fail(ncclInvalidUsage, f"(fakenccl) {opname}: the ranks' calls do not match "
                                          f"({[o for o, _ in others]}); real NCCL would hang or mix the data")
        return views

    def _stream(self, opname, ptr):
        if ptr in (0, 2):  # the legacy and per-thread default streams: whichever device NCCL makes current
            return
        stream = fakecupy.stream_at(ptr)
        if stream is None:
            raise _not_modelled(f"NCCL on a stream handle the double did not make ({ptr:#x})")
        if stream.is_capturing():
            raise _not_modelled("NCCL calls inside a CUDA graph capture")
        if stream.device_id != self._device:
            raise _fail(ncclUnhandledCudaError, f"(fakenccl) {opname}: stream of device {stream.device_id} given to "
                                                f"the communicator of device {self._device} (CUDA refuses the launch)")

    def _buffer(self, opname, name, ptr, count, datatype):
        """The fake device memory behind ``ptr``: ``count`` elements of ``datatype``."""
        dtype = np.dtype(_NUMPY_TYPES[datatype])
        block = fakecupy.block_at(ptr)
        if block is None:
            raise _fail(ncclInvalidArgument, f"{opname} : {name} {ptr:#x} is not a valid pointer")
        if block.device_id != self._device:
            raise _fail(ncclInvalidArgument, f"{opname} : {name} allocated on device {block.device_id} mismatchs with "
                                             f"NCCL device {self._device}")
        if not fakecupy.in_use(block):
            raise _fail(ncclInvalidArgument, f"(fakenccl) {opname} : {name} {ptr:#x} was returned to CuPy's memory "
                                             "pool; NCCL would use memory that another array may now hold")
        nbytes = count * dtype.itemsize
        if ptr + nbytes > block.ptr + block.used:
            raise _fail(ncclInvalidArgument, f"(fakenccl) {opname} : {name} holds {block.ptr + block.used - ptr} "
                                             f"bytes of its array from its address, count {count} of {dtype} needs "
                                             f"{nbytes}: NCCL would run past the array")
        if block.dtype is not None and block.dtype != dtype:
            raise _fail(ncclInvalidArgument, f"(fakenccl) {opname} : {name} holds {block.dtype} data but datatype "
                                             f"says {dtype}: NCCL would reinterpret the bytes")
        start = ptr - block.ptr
        return block.buf[start:start + nbytes].view(dtype)

    # -- the collectives -------------------------------------------------------------------------------
    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        sendbuf, recvbuf, count = _c_intptr(sendbuf), _c_intptr(recvbuf), _c_size_t(count)
        datatype, op, stream = _c_int(datatype), _c_int(op), _c_intptr(stream)
        send, recv = self._enqueue("AllReduce", count, datatype, op, 0, stream,
                                   [("sendbuff", sendbuf), ("recvbuff", recvbuf)])
        MPI = self._mpi
        mpi_op = {_C["NCCL_SUM"]: MPI.SUM, _C["NCCL_PROD"]: MPI.PROD, _C["NCCL_MAX"]: MPI.MAX,
                  _C["NCCL_MIN"]: MPI.MIN}[op]
        if send.dtype == np.float16:  # MPI has no half type: reduced in float32, rounded once
            result = np.empty(send.shape, np.float32)
            self._comm.Allreduce(send.astype(np.float32), result, op=mpi_op)
        else:
            result = np.empty_like(send)
            self._comm.Allreduce(np.array(send), result, op=mpi_op)
        recv[...] = result
        fakecupy.world().ops.append("nccl.AllReduce")
        calls.allreduce += 1
        calls.bytes += send.nbytes

    def bcast(self, buff, count, datatype, root, stream):
        buff, count, datatype = _c_intptr(buff), _c_size_t(count), _c_int(datatype)
        root, stream = _c_int(root), _c_intptr(stream)
        # ncclBcast is ncclBroadcast(buff, buff, ...) (collectives.cc:204-206): sendbuff checked on the root
        name = "sendbuff" if self._comm is not None and self._rank == root else "recvbuff"
        (buf,) = self._enqueue("Broadcast", count, datatype, _C["NCCL_SUM"], root, stream, [(name, buff)])
        data = np.array(buf)
        self._comm.Bcast(data.view(np.uint8), root=root)
        buf[...] = data
        fakecupy.world().ops.append("nccl.Broadcast")
        calls.bcast += 1
        calls.bytes += data.nbytes


#: what ``import cupy.cuda.nccl`` offers (fakecupy wraps it in a namespace that resolves CuPy's names only)
IMPL = {"available": True, "NcclCommunicator": NcclCommunicator, "NcclError": NcclError,
        "get_unique_id": get_unique_id}
