"""Run under ``mpirun -n 2``: the NCCL double's rules across real processes, and xcnn's communicators on
fake GPUs (tests/doubles/fakecupy.py with tests/doubles/fakenccl.py behind ``cupy.cuda.nccl``).

    mpirun -n 2 python tests/dist/_nccl_checks.py OUT.json

Every rank runs every check in the same order (a refusal must not leave a peer waiting); rank 0
writes ``{check: {rank: outcome}}`` where an outcome is ``{"raised": type, "status": NCCL status,
"message": ..., "warn": what NCCL would log}`` or ``{"value": ...}``. tests/dist/test_nccl_double.py
asserts on them.
"""
from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest


def outcome(fn):
    try:
        return {"value": fn()}
    except Exception as exc:  # noqa: BLE001 - the refusal is the result
        return {"raised": type(exc).__name__, "status": getattr(exc, "status", None), "message": str(exc),
                "warn": getattr(exc, "fake_warn", None)}


def main(out_path):
    from doubles import fakecupy, fakenccl  # noqa: PLC0415

    from xcnn.backend import Device  # noqa: PLC0415
    from xcnn.dist.comm import MpiCommunicator, make_communicator  # noqa: PLC0415

    results = {}
    with pytest.MonkeyPatch.context() as mp, fakecupy.install(mp, devices=2, nccl=fakenccl) as cp:
        nccl = importlib.import_module("cupy.cuda.nccl")  # what xcnn.cuda.nccl imports
        mpi = MpiCommunicator()
        rank, other = mpi.rank, 1 - mpi.rank
        cp.cuda.Device(rank).use()
        uid = mpi.bcast_object(nccl.get_unique_id() if rank == 0 else None)
        check = lambda name, fn: results.__setitem__(name, outcome(fn))  # noqa: E731

        # -- creating a communicator ---------------------------------------------------------------------
        check("unique_id_is_128_bytes", lambda: [type(uid).__name__, len(uid)])
        check("commid_must_be_bytes", lambda: nccl.NcclCommunicator(2, tuple(uid), rank))
        check("commid_length", lambda: nccl.NcclCommunicator(2, uid[:64], rank))
        check("rank_out_of_range", lambda: nccl.NcclCommunicator(2, uid, 2))
        with cp.cuda.Device(0):
            check("two_ranks_one_gpu", lambda: nccl.NcclCommunicator(2, uid, rank))
        mine = nccl.get_unique_id()
        check("different_unique_ids", lambda: nccl.NcclCommunicator(2, mine, rank))

        # -- xcnn's NCCL communicator on this rank's GPU ------------------------------------------------------
        comm, note = make_communicator(Device("cuda", rank), "auto", mpi)
        check("factory_picks_nccl", lambda: [type(comm).__name__, note])
        raw = comm._nccl._comm
        check("bound_to_current_device", lambda: [raw.device_id(), raw.rank_id(), raw.size()])

        def allreduce(dtype):
            rng = np.random.default_rng(10 + rank)
            host = (rng.standard_normal(1001) * 100).astype(dtype)
            everyone = mpi.allgather_object(host)
            buf = cp.asarray(host)
            comm.allreduce_sum(buf)
            got = buf.get()
            expect = np.sum(np.stack(everyone).astype(np.float64), axis=0)
            same_everywhere = len({g.tobytes() for g in mpi.allgather_object(got)}) == 1
            tol = {np.float16: 2e-2, np.float32: 1e-5}.get(dtype, 1e-12)
            return [bool(np.allclose(got.astype(np.float64), expect, rtol=tol, atol=tol)), same_everywhere]

        for dt in ("float64", "float32", "float16", "int64", "int32"):
            check(f"allreduce_sum_{dt}", lambda dt=dt: allreduce(np.dtype(dt).type))

        def bcast_from_1():
            buf = cp.asarray(np.full(37, float(rank)))
            comm.bcast(buf, root=1)
            return buf.get().tolist() == [1.0] * 37

        check("bcast_from_root_1", bcast_from_1)
        check("xcnn_refuses_unsupported_dtype", lambda: comm.allreduce_sum(cp.zeros(4, dtype=np.complex64)))
        check("xcnn_refuses_2d_buffer", lambda: comm.allreduce_sum(cp.zeros((2, 2))))
        with cp.cuda.Device(other):
            elsewhere = cp.zeros(8)
            foreign_stream = cp.cuda.Stream(non_blocking=True)
        check("xcnn_refuses_other_device", lambda: comm.allreduce_sum(elsewhere))

        # -- the raw double: NCCL's argument checks ----------------------------------------------------------
        buf = cp.zeros(16)
        ptr, stream = buf.data.ptr, cp.cuda.get_current_stream().ptr
        f64, add = nccl.NCCL_FLOAT64, nccl.NCCL_SUM
        check("invalid_datatype", lambda: raw.allReduce(ptr, ptr, 16, 42, add, stream))
        check("bfloat16_not_modelled", lambda: raw.allReduce(ptr, ptr, 16, nccl.NCCL_BFLOAT16, add, stream))
        check("negative_op", lambda: raw.allReduce(ptr, ptr, 16, f64, -1, stream))
        check("unknown_op", lambda: raw.allReduce(ptr, ptr, 16, f64, 7, stream))
        check("invalid_root", lambda: raw.bcast(ptr, 16, f64, 2, stream))
        check("negative_count", lambda: raw.allReduce(ptr, ptr, -1, f64, add, stream))
        check("numpy_pointer", lambda: raw.allReduce(np.int64(ptr), ptr, 16, f64, add, stream))
        check("buffer_on_other_device", lambda: raw.allReduce(elsewhere.data.ptr, elsewhere.data.ptr, 8, f64, add,
                                                              stream))
        host = np.zeros(16)
        check("host_pointer", lambda: raw.allReduce(host.ctypes.data, host.ctypes.data, 16, f64, add, stream))
        check("count_past_the_array", lambda: raw.allReduce(ptr, ptr, 17, f64, add, stream))
        check("datatype_not_the_buffers", lambda: raw.allReduce(ptr, ptr, 16, nccl.NCCL_FLOAT32, add, stream))
        check("view_inside_allocation", lambda: raw.allReduce(buf[4:].data.ptr, buf[4:].data.ptr, 12, f64, add,
                                                              stream))
        check("stream_of_other_device", lambda: raw.allReduce(ptr, ptr, 16, f64, add, foreign_stream.ptr))
        check("refused_on_one_rank", lambda: raw.allReduce(ptr, ptr, 16 if rank == 0 else 17, f64, add, stream))
        check("mismatched_calls", lambda: raw.allReduce(ptr, ptr, 16, f64, add, stream)
              if rank == 0 else raw.bcast(ptr, 16, f64, 0, stream))
        check("mismatched_counts", lambda: raw.allReduce(ptr, ptr, 16 - rank, f64, add, stream))
        freed = cp.zeros(16)
        freed_ptr = freed.data.ptr
        del freed
        check("freed_memory", lambda: raw.allReduce(freed_ptr, freed_ptr, 16, f64, add, stream))
        check("calls_counted", lambda: [fakenccl.calls.allreduce, fakenccl.calls.bcast])

        # -- MPI staging of device arrays (no NCCL) ---------------------------------------------------------
        def staged():
            b = cp.asarray(np.arange(5.0) * (rank + 1))
            mpi.allreduce_sum(b)
            return b.get().tolist()

        check("mpi_stages_device_arrays", staged)

        # -- after destroy -------------------------------------------------------------------------------------
        comm.close()
        check("allreduce_after_destroy", lambda: raw.allReduce(ptr, ptr, 16, f64, add, stream))
        check("rank_id_after_destroy", lambda: raw.rank_id())
        check("destroy_twice", lambda: raw.destroy())

    gathered = MpiCommunicator().allgather_object(results)
    if rank == 0:
        merged = {name: {str(r): gathered[r][name] for r in range(len(gathered))} for name in results}
        with open(out_path, "w") as fh:
            json.dump(merged, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
