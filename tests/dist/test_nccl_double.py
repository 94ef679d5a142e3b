"""The NCCL path without a GPU: tests/doubles/fakenccl.py (``cupy.cuda.nccl`` modelled, across real MPI
processes) behind the CuPy double, under ``mpirun -n 2``; each rank owns fake GPU ``rank``.

Every rule the double models across processes is asserted here from one run of
tests/dist/_nccl_checks.py, on both ranks (what NCCL would log is the error's ``fake_warn``; the
message itself is CuPy's, the same for every invalid argument); then ``python -m xcnn.train
--distributed --device cuda`` trains on the doubles and must end where one CPU process ends."""
from __future__ import annotations

import json
import sys

import mpijob
import pytest

from doubles import emu as _emu
from xcnn.nn.serialize import load_checkpoint

pytestmark = mpijob.requires_mpi

HERE = mpijob.TESTS / "dist"
INVALID_ARGUMENT = "NCCL_ERROR_INVALID_ARGUMENT: invalid argument (run with NCCL_DEBUG=WARN for details)"
INVALID_USAGE = "NCCL_ERROR_INVALID_USAGE: invalid usage (run with NCCL_DEBUG=WARN for details)"

# check -> (exception type, NCCL status, words of the message or of what NCCL logs); "(fakenccl)" marks
# the double's stricter rules, where NCCL has no check
REFUSALS = {
    "commid_must_be_bytes": ("TypeError", None, "expected bytes, got tuple"),  # nccl.pyx:323
    "commid_length": ("ValueError", None, "commId length 64 != 128."),  # nccl.pyx:329-331
    "rank_out_of_range": ("NcclError", 4, "Invalid rank requested : 2/2"),  # init.cc:2500-2503
    "two_ranks_one_gpu": ("NcclError", 5, "Multiple Ranks are using the same GPU"),  # init.cc:1055-1059
    "different_unique_ids": ("NcclError", 5, "(fakenccl) ranks joined with different unique ids"),
    "invalid_datatype": ("NcclError", 4, "AllReduce : invalid type 42"),  # argcheck.cc:207-210
    "bfloat16_not_modelled": ("NotImplementedError", None, "fakenccl: NCCL data type 9"),
    "negative_op": ("NcclError", 4, "AllReduce : invalid reduction operation -1"),  # argcheck.cc:216-219
    "unknown_op": ("NcclError", 4, "reduction operation 7 unknown to this communicator"),  # argcheck.cc:220-225
    "invalid_root": ("NcclError", 4, "Broadcast : invalid root 2 (root should be in the 0..2 range)"),
    "negative_count": ("OverflowError", None, "can't convert negative value to size_t"),  # size_t count
    "numpy_pointer": ("TypeError", None, "an integer is required"),  # intptr_t sendbuf
    "buffer_on_other_device": ("NcclError", 4, "mismatchs with NCCL device"),  # argcheck.cc:20-25
    "host_pointer": ("NcclError", 4, "is not a valid pointer"),  # argcheck.cc:15-18
    "count_past_the_array": ("NcclError", 4, "(fakenccl) AllReduce : sendbuff holds 128 bytes"),
    "datatype_not_the_buffers": ("NcclError", 4, "(fakenccl) AllReduce : sendbuff holds float64 data"),
    "stream_of_other_device": ("NcclError", 1, "(fakenccl) AllReduce: stream of device"),
    "mismatched_calls": ("NcclError", 5, "(fakenccl)"),  # NVIDIA/nccl#239
    "mismatched_counts": ("NcclError", 5, "the ranks' calls do not match"),
    "freed_memory": ("NcclError", 4, "was returned to CuPy's memory pool"),
    "allreduce_after_destroy": ("NcclError", 4, "AllReduce : comm argument is NULL"),  # nccl.pyx:434-438
    "rank_id_after_destroy": ("NcclError", 4, "CommUserRank : comm argument is NULL"),  # init.cc:3515
    "xcnn_refuses_unsupported_dtype": ("TypeError", None, "NCCL cannot move complex64"),
    "xcnn_refuses_2d_buffer": ("ValueError", None, "flat contiguous buffer"),
    "xcnn_refuses_other_device": ("DistributedError", None, "allocate it under"),
}


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    out = tmp_path_factory.mktemp("nccl") / "checks.json"
    res = mpijob.run(mpijob.command(2, [str(out)], script=HERE / "_nccl_checks.py"), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_the_double_refuses_what_nccl_and_cupy_refuse(checks, name):
    kind, status, words = REFUSALS[name]
    for rank, got in checks[name].items():
        assert got.get("raised") == kind, (rank, got)
        assert got.get("status") == status, (rank, got)
        assert words in got["message"] + " | " + str(got.get("warn")), (rank, got)
        if kind == "NcclError":  # CuPy's message: the status's name and NCCL's text for it, never the reason
            assert got["message"] == {4: INVALID_ARGUMENT, 5: INVALID_USAGE}.get(status, got["message"])


def test_a_call_refused_on_one_rank_is_refused_on_every_rank(checks):
    """Rank 1 asks for more than its array holds, rank 0 not: rank 1 gets its own refusal, rank 0 is told
    that rank 1's call was refused (real NCCL would leave it waiting)."""
    r0, r1 = checks["refused_on_one_rank"]["0"], checks["refused_on_one_rank"]["1"]
    assert r1["status"] == 4 and "run past the array" in r1["warn"]
    assert r0["status"] == 5 and "refused on rank(s) [1]" in r0["warn"]


def test_collectives_move_the_data(checks):
    """Sums of random buffers (five dtypes) equal NumPy's sum of all ranks' data, bit-identical on both
    ranks; a broadcast from rank 1 reaches rank 0; a view inside an allocation is accepted; MPI stages
    device arrays through the host when there is no NCCL; destroying twice is harmless (nccl.pyx:434-438)."""
    for dt in ("float64", "float32", "float16", "int64", "int32"):
        for got in checks[f"allreduce_sum_{dt}"].values():
            assert got == {"value": [True, True]}, (dt, got)
    assert all(v == {"value": True} for v in checks["bcast_from_root_1"].values())
    assert all(v == {"value": None} for v in checks["view_inside_allocation"].values())
    assert all(v == {"value": [0.0, 3.0, 6.0, 9.0, 12.0]} for v in checks["mpi_stages_device_arrays"].values())
    assert all(v == {"value": ["bytes", 128]} for v in checks["unique_id_is_128_bytes"].values())
    assert all(v == {"value": None} for v in checks["destroy_twice"].values())


def test_xcnn_communicator_binds_each_rank_to_its_gpu(checks):
    """make_communicator picks NCCL for a GPU device; the communicator is bound to cuda:<rank> (the device
    current when it was made), with this rank's number and the job's size."""
    for rank, got in checks["factory_picks_nccl"].items():
        assert got == {"value": ["NcclCommunicator", None]}
    for rank, got in checks["bound_to_current_device"].items():
        assert got == {"value": [int(rank), int(rank), 2]}
    for got in checks["calls_counted"].values():
        assert got == {"value": [6, 1]}  # the five all-reduce dtypes and the view; one broadcast


@pytest.mark.skipif(not _emu.have_compiler(), reason=f"no C++ compiler ({_emu.CXX}) for the kernel emulation")
def test_distributed_training_on_the_nccl_double_matches_one_cpu_process(tmp_path):
    """``--distributed --device cuda`` on 2 ranks over the CuPy and NCCL doubles (float64, mlp2, 230
    images in batches of 50: four full batches and one of 30): the weights end within 1e-9 relative of
    one CPU process, the weights went out by one NCCL broadcast and every step's gradients by one NCCL
    all-reduce (counted by the double), and the NCCL communicator was destroyed at the end."""
    prog = HERE / "_train_prog.py"
    args = ["--float64", "--epochs", "1", "--model", "mlp2", "--batch-size", "50", "--quiet"]
    one = mpijob.run([sys.executable, str(prog), "--synthetic", "230,60", "--", "--device", "cpu",
                      *args, "--out", str(tmp_path / "one")])
    assert one.returncode == 0, one.stdout + one.stderr
    two = mpijob.run(mpijob.command(2, ["--synthetic", "230,60", "--fake-gpus", "2", "--report",
                                        str(tmp_path / "calls"), "--", "--distributed", "--device", "cuda",
                                        *args, "--out", str(tmp_path / "two")], script=prog), timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    for rank in (0, 1):
        calls = json.loads((tmp_path / f"calls.{rank}.json").read_text())
        assert calls == {"init": 1, "allreduce": 5, "bcast": 1, "destroy": 1, "bytes": calls["bytes"]}
        assert calls["bytes"] == 6 * 396210 * 8  # one broadcast and five all-reduces of every parameter
    meta = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert meta["distributed"]["backend"] == "nccl" and meta["distributed"]["ranks"] == 2
    assert meta["device"] == "cuda:0"
    a = load_checkpoint(tmp_path / "one" / "checkpoint.npz")["params"]
    b = load_checkpoint(tmp_path / "two" / "checkpoint.npz")["params"]
    assert mpijob.max_relative_difference(a, b) <= 1e-9
