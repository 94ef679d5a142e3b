"""Write tests/doubles/nccl_outcomes.json: what CuPy 14.2's ``cupy.cuda.nccl`` answers to calls that
need no GPU (argument conversion, the NULL communicator, the error texts), for the NCCL double
(tests/doubles/fakenccl.py), which tests/doubles/test_fakenccl.py holds to the very same answers.

Run it with the CuPy the double models and an NCCL library (no GPU or driver needed), from any directory:

    python3 -m venv /tmp/cupyvenv && /tmp/cupyvenv/bin/pip install cupy-cuda13x==14.2.0 nvidia-nccl-cu13
    /tmp/cupyvenv/bin/python tests/doubles/gen_nccl_outcomes.py            # rewrites the JSON
    /tmp/cupyvenv/bin/python tests/doubles/gen_nccl_outcomes.py --check    # exit 1 if it is stale

A communicator made with ``NcclCommunicator.__new__`` holds the NULL handle ``__cinit__`` leaves
(cupy_backends/cuda/libs/nccl.pyx:320-321 (v14.2.0)), so NCCL's checks of its calls run without a GPU.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "nccl_outcomes.json"
UID = b"x" * 128


def _null(n):
    return n.NcclCommunicator.__new__(n.NcclCommunicator)


SCENARIOS = {
    "available": lambda n: n.available,
    "unique_id": lambda n: [type(n.get_unique_id()).__name__, len(n.get_unique_id())],
    "unique_ids_differ": lambda n: n.get_unique_id() != n.get_unique_id(),
    "constants": lambda n: [n.NCCL_SUM, n.NCCL_PROD, n.NCCL_MAX, n.NCCL_MIN, n.NCCL_AVG, n.NCCL_INT8, n.NCCL_UINT8,
                            n.NCCL_INT32, n.NCCL_UINT32, n.NCCL_INT64, n.NCCL_UINT64, n.NCCL_FLOAT16,
                            n.NCCL_FLOAT32, n.NCCL_FLOAT64, n.NCCL_BFLOAT16],
    "no_such_name": lambda n: n.ncclAllReduce,
    "commid_tuple": lambda n: n.NcclCommunicator(2, tuple(UID), 0),
    "commid_str": lambda n: n.NcclCommunicator(2, "x" * 128, 0),
    "commid_bytearray": lambda n: n.NcclCommunicator(2, bytearray(UID), 0),
    "commid_short": lambda n: n.NcclCommunicator(2, UID[:64], 0),
    "commid_long": lambda n: n.NcclCommunicator(2, UID + b"x", 0),
    "ndev_str": lambda n: n.NcclCommunicator("2", UID, 0),
    "rank_str": lambda n: n.NcclCommunicator(2, UID, "0"),
    "rank_too_large_for_int": lambda n: n.NcclCommunicator(2, UID, 2**40),
    "config_not_a_config": lambda n: n.NcclCommunicator(2, UID, 0, config=1),
    "null_comm_handle": lambda n: _null(n).comm,
    "null_rank_id": lambda n: _null(n).rank_id(),
    "null_size": lambda n: _null(n).size(),
    "null_device_id": lambda n: _null(n).device_id(),
    "null_allreduce": lambda n: _null(n).allReduce(0, 0, 4, n.NCCL_FLOAT64, n.NCCL_SUM, 0),
    "null_bcast": lambda n: _null(n).bcast(0, 4, n.NCCL_FLOAT64, 0, 0),
    "null_destroy": lambda n: _null(n).destroy(),
    "null_abort": lambda n: _null(n).abort(),
    "negative_count": lambda n: _null(n).allReduce(0, 0, -1, n.NCCL_FLOAT64, n.NCCL_SUM, 0),
    "float_count": lambda n: _null(n).allReduce(0, 0, 4.0, n.NCCL_FLOAT64, n.NCCL_SUM, 0),
    "numpy_count": lambda n: _null(n).allReduce(0, 0, np.int64(4), n.NCCL_FLOAT64, n.NCCL_SUM, 0),
    "str_count": lambda n: _null(n).allReduce(0, 0, "4", n.NCCL_FLOAT64, n.NCCL_SUM, 0),
    "numpy_pointer": lambda n: _null(n).allReduce(np.int64(0), 0, 4, n.NCCL_FLOAT64, n.NCCL_SUM, 0),
    "float_pointer": lambda n: _null(n).allReduce(0.0, 0, 4, n.NCCL_FLOAT64, n.NCCL_SUM, 0),
    "negative_pointer": lambda n: _null(n).allReduce(-8, -8, 4, n.NCCL_FLOAT64, n.NCCL_SUM, 0),
    "numpy_stream": lambda n: _null(n).allReduce(0, 0, 4, n.NCCL_FLOAT64, n.NCCL_SUM, np.int64(0)),
    "float_datatype": lambda n: _null(n).allReduce(0, 0, 4, 8.0, n.NCCL_SUM, 0),
    "datatype_too_large_for_int": lambda n: _null(n).allReduce(0, 0, 4, 2**40, n.NCCL_SUM, 0),
    "str_op": lambda n: _null(n).allReduce(0, 0, 4, n.NCCL_FLOAT64, "sum", 0),
    "keyword_arguments": lambda n: _null(n).allReduce(sendbuf=0, recvbuf=0, count=4, datatype=n.NCCL_FLOAT64,
                                                      op=n.NCCL_SUM, stream=0),
    "bcast_str_root": lambda n: _null(n).bcast(0, 4, n.NCCL_FLOAT64, "0", 0),
    "error_texts": lambda n: [str(n.NcclError(s)) for s in (1, 4, 5)],
    "error_is_runtime_error": lambda n: [issubclass(n.NcclError, RuntimeError), n.NcclError(4).status],
    "error_pickles": lambda n: str(pickle.loads(pickle.dumps(n.NcclError(5)))),
}


def outcome(fn, n) -> str:
    """``ok: <repr>`` or ``<exception type>[ <status>]: <message>``."""
    try:
        return f"ok: {fn(n)!r}"
    except Exception as exc:  # noqa: BLE001 - the refusal is the outcome
        status = getattr(exc, "status", None)
        return f"{type(exc).__name__}{'' if status is None else f' {status}'}: {exc}"


def generate() -> dict:
    import cupy  # noqa: PLC0415
    import cupy.cuda.nccl as n  # noqa: PLC0415

    if cupy.__version__ != "14.2.0":
        sys.exit(f"these outcomes model CuPy 14.2.0; the imported CuPy is {cupy.__version__}")
    if not n.available:
        sys.exit("cupy.cuda.nccl found no NCCL library: pip install nvidia-nccl-cu13 beside this CuPy")
    return {"cupy_version": cupy.__version__, "nccl_version": n.get_version(),
            "regenerate": "tests/doubles/gen_nccl_outcomes.py",
            "outcomes": {name: outcome(fn, n) for name, fn in SCENARIOS.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    args = ap.parse_args()
    data = generate()
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if args.check:
        old = json.loads(OUT.read_text()) if OUT.exists() else {}
        same = old.get("outcomes") == data["outcomes"]
        print("up to date" if same else f"{OUT} differs from CuPy {data['cupy_version']}: regenerate it")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
