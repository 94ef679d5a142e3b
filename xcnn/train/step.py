"""One training step as an object: forward, loss, backward, update, and the running loss and
accuracy kept on the device (the host reads them only when asked, at log points).

:class:`TrainStep` runs the step eagerly, on any device. :class:`GraphedTrainStep` (opt-in:
``python -m xcnn.train --device cuda --cuda-graph``) records a full-batch step once as a CUDA
graph and then replays it with a single launch in place of the dozens of kernel launches of a step
and their Python and driver overhead (what a small batch mostly costs on a GPU). Both give the
same weights bit for bit: the graph replays the very kernels the eager step launches.

How the graph stays correct:

* **Fixed addresses.** Each batch is gathered into static input buffers (outside the graph); the
  parameters, gradients and velocities are updated in place; the running sums are in-place
  accumulators. Nothing the graph reads is ever reallocated.
* **Private memory.** Warm-up and capture allocate from a memory pool of their own, so the
  temporaries the graph writes on every replay can never be handed to other code (evaluation,
  checkpointing) while it still uses them.
* **No frozen Python values.** lr, momentum and weight decay are read by the fused SGD kernel
  from a device buffer that is refreshed before each replay (so ``--lr-schedule cosine`` works);
  the optimizer's step counter is advanced on the host. Adam is refused: its bias correction is a
  per-step Python value that a replay would freeze.
* **Ordering.** The work runs on a stream of its own; :meth:`GraphedTrainStep.scope` orders it
  after whatever the caller queued before and makes the caller's stream wait for it afterwards.
* **Only full batches.** A last, smaller batch runs eagerly. If capture fails (an old driver, an
  operation CUDA cannot record), the step says why once and stays eager: same results, slower;
  ``failed`` and ``replays`` say what happened (the trainer records them in ``metrics.json``).

:class:`DistributedTrainStep` is one rank's step of a data-parallel run (``--distributed``,
:mod:`xcnn.dist`): its share of each global batch, the share-weighted gradients summed over the
ranks in one flat buffer, then the update every rank applies alike.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..backend import zeros_like
from ..cuda.graphs import CupyGraphs
from ..dist.bucket import GradientBucket, share
from ..errors import ConfigError
from ..nn.optim import SGD

__all__ = ["TrainStep", "GraphedTrainStep", "DistributedTrainStep", "make_train_step"]


class TrainStep:
    """``step(X, Y, idx)`` trains on ``X[idx], Y[idx]``; :meth:`take` returns and clears the loss sum
    and the number of correct predictions since the last call (two host reads)."""

    graphed = False

    def __init__(self, net, opt, loss_fn):
        self.net, self.opt, self.loss_fn = net, opt, loss_fn
        self._loss_sum = self._correct = None

    def scope(self):
        """Context for a run of steps (an epoch); nothing to set up for eager steps."""
        return contextlib.nullcontext()

    def __call__(self, X, Y, idx):
        self._train(X[idx], Y[idx])

    def _train(self, x, y):
        logits = self.net.forward(x)
        loss = self.loss_fn.forward(logits, y)
        # no opt.zero_grad(): every layer's backward overwrites its gradients (the network tests
        # check it), so clearing them first would only cost a fill per parameter
        self.net.backward(self.loss_fn.backward())
        self.opt.step()
        self._tally(logits, loss, y)

    def _tally(self, logits, loss, y):
        """Add a batch's (mean) ``loss`` times its size, and its correct predictions, to the sums."""
        self._sums(loss)
        self._loss_sum += loss * y.shape[0]
        self._correct += (logits.argmax(axis=1) == y).sum()

    def _sums(self, like):
        """The accumulators (0-d arrays on ``like``'s device, the loss's dtype), made on first use."""
        if self._loss_sum is None:
            self._loss_sum = zeros_like(like, shape=())
            self._correct = zeros_like(like, shape=(), dtype=np.int64)

    def take(self) -> tuple[float, int]:
        """``(sum of batch-size-weighted losses, correct predictions)`` since the last call; resets both."""
        if self._loss_sum is None:
            return 0.0, 0
        loss_sum, correct = float(self._loss_sum), int(self._correct)
        self._loss_sum[...] = 0
        self._correct[...] = 0
        return loss_sum, correct


class GraphedTrainStep(TrainStep):
    """:class:`TrainStep` whose full batches replay a captured CUDA graph (see the module docstring).

    The first ``warmup`` (at least 1) full batches run eagerly (they are real training steps; they
    also compile every kernel, create the optimizer's state and fill the private pool), the next one
    is captured and replayed, and every later one is a replay."""

    graphed = True

    def __init__(self, net, opt, loss_fn, batch_size: int, *, warmup: int = 2, log=print):
        super().__init__(net, opt, loss_fn)
        if not isinstance(opt, SGD):
            raise ConfigError(f"CUDA graphs support SGD only, got {type(opt).__name__}: its per-step bias "
                              "correction is a Python value a replayed graph would freeze — drop --cuda-graph")
        if int(warmup) < 1:
            raise ConfigError(f"GraphedTrainStep: warmup must be >= 1 (the optimizer's state and every kernel are "
                              f"made in warm-up, never inside a capture), got {warmup}")
        self.graphs = CupyGraphs(opt.params[0].data)
        self.batch_size, self.warmup, self.log = int(batch_size), int(warmup), log
        self.graph = None
        self.failed: str | None = None
        self.replays = 0
        self._warm = 0
        self._x = self._y = None
        self._depth = 0

    @contextlib.contextmanager
    def scope(self):
        with self.graphs.scope():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    def __call__(self, X, Y, idx):
        if self._depth == 0:  # called outside a scope: one of its own, so ordering is always right
            with self.scope():
                return self(X, Y, idx)
        if self.failed is not None or int(idx.shape[0]) != self.batch_size:
            return super().__call__(X, Y, idx)  # a last, smaller batch (or no graph): eager
        if self._x is None:
            self._x = zeros_like(X, shape=(self.batch_size,) + tuple(X.shape[1:]))
            self._y = zeros_like(Y, shape=(self.batch_size,) + tuple(Y.shape[1:]))
            self._sums(self.opt.params[0].data)  # before capture: a replay must not re-zero them
        self.graphs.take(X, idx, self._x)
        self.graphs.take(Y, idx, self._y)
        self.opt.prepare()  # lr etc. for this step, on the device, outside the graph
        if self.graph is None:
            if self._warm < self.warmup:
                if self._warm == 0:
                    for layer in self.net.layers:  # workspaces are remade in the private pool
                        layer.clear_workspaces()
                with self.graphs.private_memory():
                    self._train(self._x, self._y)
                self._warm += 1
                return None
            if not self._capture():
                return self._train(self._x, self._y)
        steps = self.opt.steps
        self.graphs.launch(self.graph)
        self.opt.steps = steps + 1  # the Python side of opt.step(), which a replay does not run
        self.replays += 1
        return None

    def _capture(self) -> bool:
        steps = self.opt.steps
        try:
            with self.graphs.private_memory():
                self.graph = self.graphs.capture(lambda: self._train(self._x, self._y))
        except Exception as exc:
            self.graph = None
            self.failed = f"{type(exc).__name__}: {exc}"
            self.log(f"warning: could not capture the training step as a CUDA graph ({self.failed}); "
                     "training continues without it (same results, more launch overhead)")
        finally:
            self.opt.steps = steps  # capture records the update, it does not perform it
        return self.graph is not None


class DistributedTrainStep(TrainStep):
    """One rank's :class:`TrainStep`: ``step(X, Y, idx)`` trains on this rank's :func:`share` of the
    global batch ``idx``, weights its mean gradient by the share (in the bucket the gradients are views
    of), has ``parallel`` sum the bucket over the ranks and applies the update; :meth:`take` returns
    the loss sum and correct count of all ranks. ``parallel`` is a :class:`xcnn.dist.DataParallel`."""

    def __init__(self, net, opt, loss_fn, parallel):
        super().__init__(net, opt, loss_fn)
        self.parallel = parallel
        self.bucket = GradientBucket(opt.params)

    def __call__(self, X, Y, idx):
        if not self.bucket.attached():  # first step, or the arrays were replaced (a load)
            self.bucket.attach()
        n = int(idx.shape[0])
        lo, hi = share(n, self.parallel.size, self.parallel.rank)
        if hi > lo:
            mine = idx[lo:hi]
            x, y = X[mine], Y[mine]
            logits = self.net.forward(x)
            loss = self.loss_fn.forward(logits, y)
            self.net.backward(self.loss_fn.backward())  # the gradients land in the bucket
            self.bucket.scale((hi - lo) / n)
            self._tally(logits, loss, y)
        else:
            self.bucket.zero()
        self.parallel.reduce_gradients(self.bucket)
        self.opt.step()

    def take(self) -> tuple[float, int]:
        return self.parallel.sum_over_ranks(*super().take())


def make_train_step(net, opt, loss_fn, batch_size: int, *, cuda_graph: bool = False, log=print,
                    parallel=None) -> TrainStep:
    """The trainer's step: eager, one rank's share (``parallel``: a distributed run), or
    (``cuda_graph=True``) captured and replayed as a CUDA graph."""
    if parallel is not None:
        return DistributedTrainStep(net, opt, loss_fn, parallel)
    if cuda_graph:
        return GraphedTrainStep(net, opt, loss_fn, batch_size, log=log)
    return TrainStep(net, opt, loss_fn)
