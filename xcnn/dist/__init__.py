"""Data-parallel training across processes, GPUs and hosts: MPI (mpi4py) for host arrays and
control, NCCL (through CuPy, :mod:`xcnn.cuda.nccl`) for GPU arrays.

``python -m xcnn.train --distributed`` under ``mpirun``/``srun`` runs one process per rank (one per
GPU on a GPU machine). Importing this package imports neither mpi4py nor CuPy: a single-process run
never touches MPI. The parts, below the trainer (:mod:`xcnn.train` calls them; nothing here knows
the training loop):

* :mod:`.comm` -- the :class:`~.comm.Communicator` interface, its MPI and NCCL implementations and
  :func:`~.comm.make_communicator`, which picks one for a device.
* :mod:`.bucket` -- each rank's :func:`~.bucket.share` of a global batch and the flat
  :class:`~.bucket.GradientBucket` the gradients live in.
* :mod:`.parallel` -- :class:`~.parallel.DataParallel`, one rank of a run: its device, the
  collective stop flag, rank 0's state broadcast, sharded evaluation, the replica check.
* :mod:`.launch` -- the process side: joining the job, and ending every rank when one fails.
"""
from ..errors import DistributedError

__all__ = ["DistributedError"]
