"""The process side of a distributed run (``python -m xcnn.train --distributed``): joining the MPI job,
and making sure that a failure on one rank ends every rank.

An error that every rank raises at the same point (bad settings, a refused ``--resume``, data that no
rank can read: marked ``collective``) is printed once, by rank 0, as the usual one line ``error: ...``,
and every rank exits with status 2. Anything else -- an exception on one rank, a second Ctrl-C -- is
printed with the rank's number and ends the whole job through ``MPI_Abort``, since the other ranks
would otherwise wait forever inside a collective. (A rank killed outright, SIGKILL or a crash, is
noticed by the launcher, which ends the others.)
"""
from __future__ import annotations

import contextlib
import os
import sys
import traceback

from ..errors import EXIT_USAGE, DistributedError, one_line
from .comm import Communicator, MpiCommunicator

__all__ = ["launcher_rank", "join", "Job", "one_job"]

#: where launchers put the process's rank before MPI is initialised (Open MPI, PMIx, MPICH/PMI, Slurm)
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")


def launcher_rank() -> int | None:
    """This process's rank as the launcher (mpirun, srun) set it, before MPI exists; None outside one."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def join() -> MpiCommunicator:
    """This process's communicator in the job mpirun/srun started (a job of one without a launcher).
    Where MPI cannot start (no mpi4py, no MPI library) every process fails alike: the launcher's rank 0
    prints the one line, and every process exits with status 2."""
    try:
        return MpiCommunicator()
    except DistributedError as exc:
        if launcher_rank() in (0, None):
            _say(f"error: {exc}")
        raise SystemExit(EXIT_USAGE) from None


class Job:
    """What :func:`one_job` needs to end the job: the communicator (replace it with the run's own,
    e.g. the NCCL one, once it exists, so that an abort releases it too)."""

    def __init__(self, comm: Communicator):
        self.comm = comm


@contextlib.contextmanager
def one_job(comm: Communicator):
    """Run the body as one rank of the job (see the module docstring): a collective error is one line
    from rank 0 and exit status 2 on every rank; any other failure on this rank is one line naming the
    rank (a traceback first for what is not an xcnn error) and ``MPI_Abort`` of the whole job."""
    job = Job(comm)
    try:
        yield job
    except (Exception, KeyboardInterrupt) as exc:
        message = one_line(exc)
        if getattr(exc, "collective", False):
            if job.comm.is_root:
                _say(f"error: {message or f'{type(exc).__name__}: {exc}'}")
            raise SystemExit(EXIT_USAGE) from None
        code = EXIT_USAGE if message is not None else 130 if isinstance(exc, KeyboardInterrupt) else 1
        if message is None:
            traceback.print_exc()
            message = f"{type(exc).__name__}: {exc}"
        _say(f"rank {job.comm.rank}: error: {message}; stopping every rank (MPI_Abort)")
        sys.stdout.flush()
        job.comm.abort(code)
