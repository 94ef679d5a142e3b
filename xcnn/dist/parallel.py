"""One rank of a synchronous data-parallel run: every rank holds the whole network and trains on its
share of each global batch (:mod:`.bucket`); one all-reduce of one flat buffer per step makes the
update the single-process one. :class:`DataParallel` is what the trainer (:mod:`xcnn.train`) calls.

**Same start, same order.** Rank 0's weights and optimizer state are broadcast before the first
step (also after ``--resume``, which only rank 0 reads); every rank draws the same permutation (a
pure function of seed and epoch) and checks that it holds the same data.

**Stopping together.** SIGINT, SIGTERM and SIGUSR1 set a local flag; each step starts a non-blocking
MAX-reduction of the flags and finishes the previous one, so every rank learns of a stop request at
the same step (one step after it was made) and the loop leaves at the same place on all ranks; rank
0 writes the checkpoint. The epoch-end evaluation reduces the flag synchronously.

**One writer.** Only rank 0 reads the run directory and writes files (the trainer asks
:attr:`DataParallel.is_root`); the others keep the same state in memory. Errors that rank 0 meets
there reach every rank (:meth:`~xcnn.dist.comm.Communicator.from_root`), so all exit alike.

**Replicas stay equal.** After each epoch the ranks compare a digest of their weights and optimizer
state; should they differ (a reduction that is not bitwise the same everywhere), rank 0's are
broadcast again and the run says so.
"""
from __future__ import annotations

import hashlib
import signal

import numpy as np

from ..backend import Device, gpu_unavailable_reason, parse_device, to_host
from ..errors import DeviceError, DistributedError, XcnnError
from .bucket import GradientBucket, share
from .comm import Communicator, MpiCommunicator, make_communicator

__all__ = ["CollectiveStop", "rank_device", "DataParallel"]


class CollectiveStop:
    """A stop request that all ranks see at the same step. Signal handlers (SIGINT, SIGTERM, SIGUSR1)
    only set :attr:`local`; :meth:`poll` (once per step, on every rank) finishes the previous
    non-blocking MAX-reduction of the flags and starts the next, so :attr:`requested` changes only
    inside a step and at the same step everywhere. A second SIGINT raises KeyboardInterrupt."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")

    def __init__(self, comm: Communicator):
        self.comm = comm
        self.local = False
        self.requested = False
        self._pending = None
        self._old: dict = {}

    def __enter__(self):
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.local:
            raise KeyboardInterrupt
        self.local = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
        if exc[0] is None:
            self.drain()
        return False

    def poll(self) -> None:
        self.drain()
        self._pending = self.comm.iallreduce_host(np.array([int(self.local)], dtype=np.int32), "max")

    def drain(self) -> None:
        """Finish the reduction in flight (collective), folding its result into :attr:`requested`."""
        if self._pending is not None:
            if int(self._pending.wait()[0]) > 0:
                self.requested = True
            self._pending = None


def rank_device(mpi: Communicator, spec: str) -> Device:
    """This rank's device for ``--device spec``: ``cuda`` (and ``auto`` where GPUs answer) is one GPU
    per process, ``cuda:<local rank>``. Collective: every rank gets the same kind, or all refuse."""
    dev, err = None, None
    try:
        kind, _ = parse_device(spec)
    except DeviceError as exc:  # a malformed spec: the same on every rank
        kind, err = None, str(exc)
    if kind == "cpu":
        dev = Device("cpu")
    elif kind == "cuda" and str(spec).strip().lower() != "cuda":
        err = (f"--distributed picks each process's GPU from its local rank (cuda:<local rank>) — pass "
               f"--device cuda instead of {spec!r}")
    elif kind in ("cuda", "auto"):
        reason = gpu_unavailable_reason(mpi.local_rank)
        if reason is None:
            dev = Device("cuda", mpi.local_rank)
        elif kind == "auto":
            dev = Device("cpu")
        else:
            err = (f"--distributed --device cuda gives local rank {mpi.local_rank} on {mpi.host} "
                   f"cuda:{mpi.local_rank}, which is not usable ({reason}) — start at most one process per GPU "
                   "on each host, or use --device cpu")
    mpi.agree(err)
    kinds = mpi.allgather_object(dev.kind)
    if len(set(kinds)) > 1:
        raise DistributedError(f"--device {spec} resolved to {sorted(set(kinds))} on different ranks — pass "
                               "--device cpu or --device cuda so that all ranks agree", collective=True)
    return dev


class DataParallel:
    """One rank of a data-parallel run: the communicator, this rank's device, the stop flag and the
    hooks the training loop calls. Make it with :meth:`launch` (collective)."""

    def __init__(self, comm: Communicator, device: Device, note: str | None = None):
        self.comm, self.device, self.note = comm, device, note
        self.stop = CollectiveStop(comm)
        self.resyncs = 0
        self.log = print
        self.hosts = len(set(comm.allgather_object(comm.host)))

    @classmethod
    def launch(cls, device: str = "auto", backend: str = "auto", mpi: MpiCommunicator | None = None):
        """Join the job started by mpirun/srun (or use ``mpi``): this rank's device, NCCL where it applies."""
        mpi = mpi if mpi is not None else MpiCommunicator()
        dev = rank_device(mpi, device)
        comm, note = make_communicator(dev, backend, mpi)
        return cls(comm, dev, note)

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size

    @property
    def is_root(self) -> bool:
        return self.comm.rank == 0

    def describe(self) -> dict:
        """What metrics.json records about the run's ranks."""
        return {"ranks": self.size, "hosts": self.hosts, "backend": self.comm.backend,
                "device": "cuda:<local rank>" if self.device.is_cuda else "cpu",
                "batch_split": "contiguous shares in rank order; the first B mod N ranks take one sample more",
                "replica_resyncs": self.resyncs, "note": self.note}

    # -- checks and the start ---------------------------------------------------------------------------
    def check(self, cfg) -> None:
        """``cfg.check()`` and the settings a distributed run refuses: a pure function of the settings,
        which every rank holds alike, so every rank raises alike (marked collective)."""
        try:
            cfg.check()
        except XcnnError as exc:
            exc.collective = True
            raise
        if cfg.cuda_graph:
            raise DistributedError("--cuda-graph is not supported with --distributed (the all-reduce sits between "
                                   "backward and the update a replayed graph would freeze) — drop --cuda-graph (a "
                                   "resumed run that used it: pass --no-cuda-graph)", collective=True)
        if cfg.batch_size < self.size:
            raise DistributedError(f"--batch-size {cfg.batch_size} is the global batch and must give every one of "
                                   f"the {self.size} ranks a sample — use --batch-size >= {self.size} or fewer ranks",
                                   collective=True)

    def from_root(self, fn, *args):
        """``fn(*args)`` on rank 0 only; see :meth:`Communicator.from_root`."""
        return self.comm.from_root(fn, *args)

    def each(self, fn, *args):
        """``fn(*args)`` on every rank; see :meth:`Communicator.each`."""
        return self.comm.each(fn, *args)

    def start(self, net, opt, arrays) -> None:
        """Before the first step: every rank holds the same data (checked) and rank 0's weights and
        optimizer state (broadcast: weights as one flat buffer, optimizer state as host arrays)."""
        digest = hashlib.sha1()
        for a in arrays:
            h = to_host(a)
            digest.update(str((h.shape, h.dtype.str)).encode())
            digest.update(np.ascontiguousarray(h).tobytes())
        digests = self.comm.allgather_object(digest.hexdigest())
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise DistributedError(f"ranks {odd} loaded other training/test data than rank 0 (a different dataset "
                                   "file, --train-limit or --data-dir?) — every rank must see the same data",
                                   collective=True)
        self.broadcast_state(net, opt)

    def broadcast_state(self, net, opt) -> None:
        bucket = GradientBucket(opt.params)
        if self.is_root:
            bucket.pack("data")
        for buf in bucket.buffers:
            self.comm.bcast(buf, root=0)
        if not self.is_root:
            bucket.unpack("data")
        state = self.comm.bcast_object(opt.state_dict() if self.is_root else None)
        if not self.is_root:
            opt.load_state_dict(state)

    # -- the loop's hooks -----------------------------------------------------------------------------
    def reduce_gradients(self, bucket: GradientBucket) -> None:
        """Every rank's share-weighted gradients summed in place (the step polls the stop flag first)."""
        self.stop.poll()
        for buf in bucket.buffers:
            self.comm.allreduce_sum(buf)

    def sum_over_ranks(self, loss_sum: float, correct: int) -> tuple[float, int]:
        total = self.comm.allreduce_host(np.array([loss_sum, correct], dtype=np.float64))
        return float(total[0]), int(round(float(total[1])))

    def interrupt(self) -> CollectiveStop:
        """The context the loop runs in (the trainer's Ctrl-C handler, made collective)."""
        return self.stop

    def end_of_epoch(self, net, opt, XT, YT, evaluate) -> tuple[float, float]:
        """Sharded evaluation -- each rank ``evaluate``\\ s its :func:`share` of the test set, and
        the loss sums, correct counts and stop flags are reduced in one call -- then a check that the
        replicas still agree bit for bit (rank 0's state is re-broadcast if not). Collective."""
        self.stop.drain()
        n = int(XT.shape[0])
        lo, hi = share(n, self.size, self.rank)
        loss_sum = correct = 0.0
        if hi > lo:
            mean_loss, acc = evaluate(net, XT[lo:hi], YT[lo:hi])
            loss_sum, correct = mean_loss * (hi - lo), round(acc * (hi - lo))
        total = self.comm.allreduce_host(np.array([loss_sum, correct, float(self.stop.local)], dtype=np.float64))
        if total[2] > 0:
            self.stop.requested = True
        if not self._replicas_agree(opt):
            self.resyncs += 1
            if self.is_root:
                self.log("warning: the ranks' weights drifted apart (a reduction that differs between ranks); "
                         "rank 0's weights and optimizer state were broadcast again")
            self.broadcast_state(net, opt)
        return float(total[0]) / max(n, 1), float(total[1]) / max(n, 1)

    def _replicas_agree(self, opt) -> bool:
        digest = hashlib.sha1()
        for p in opt.params:
            digest.update(np.ascontiguousarray(to_host(p.data)).tobytes())
        for kind in sorted(opt.state):
            for name in sorted(opt.state[kind]):
                digest.update(np.ascontiguousarray(to_host(opt.state[kind][name])).tobytes())
        return len(set(self.comm.allgather_object(digest.hexdigest()))) == 1

    def close(self) -> None:
        self.comm.close()
