"""CUDA graphs through CuPy: a stream to capture on, a private memory pool, capture and replay.

Used by :class:`xcnn.train.step.GraphedTrainStep`. Every call makes the graph's GPU current first,
so a step captured on ``cuda:1`` stays on ``cuda:1`` whatever device the caller has current. Inside
:meth:`CupyGraphs.scope` the matrix products use our own kernels (:mod:`.gemm`): CuPy refuses every
cuBLAS call while a stream is capturing, and the eager steps of a graph run (warm-up, a smaller last
batch) must use the very kernels its replays do, so the whole run gives the same bits.
"""
from __future__ import annotations

import contextlib

from ..backend import is_device_array
from ..errors import DeviceError
from . import gemm
from .launch import cupy

__all__ = ["CupyGraphs"]


class CupyGraphs:
    """A capture stream and a private memory pool on the GPU of ``like`` (a CuPy array)."""

    def __init__(self, like):
        if not is_device_array(like):
            raise DeviceError("CUDA graphs need a CUDA device, but the network is on cpu — train with "
                              "--device cuda, or drop --cuda-graph")
        cp = self.cp = cupy()
        self.device = like.device
        with self.device:
            self.stream = cp.cuda.Stream(non_blocking=True)
            self.pool = cp.cuda.MemoryPool()

    @contextlib.contextmanager
    def scope(self):
        """Run the body on the capture stream, ordered after what the caller queued before and
        before what it queues after, with our GEMM kernels."""
        with self.device, gemm.using("kernels"):
            caller = self.cp.cuda.get_current_stream()
            self.stream.wait_event(caller.record())
            try:
                with self.stream:
                    yield
            finally:
                caller.wait_event(self.stream.record())

    def private_memory(self):
        """Allocate from the private pool inside the ``with`` block (warm-up and capture), so the
        temporaries a graph writes on every replay are never handed to other code."""
        return self.cp.cuda.using_allocator(self.pool.malloc)

    def capture(self, body):
        """Record ``body()`` into a graph (nothing executes), then upload it to the device, so its first
        launch does not pay for that; on failure end the capture and re-raise."""
        with self.device:
            s = self.stream
            s.begin_capture()
            try:
                body()
            except BaseException:
                with contextlib.suppress(Exception):
                    s.end_capture()
                raise
            graph = s.end_capture()
            graph.upload(stream=s)
            return graph

    def launch(self, graph):
        with self.device:
            graph.launch(stream=self.stream)

    def take(self, X, idx, out):
        """``out[...] = X[idx]`` along axis 0, on the device (a gather into a static buffer)."""
        with self.device:
            self.cp.take(X, idx, axis=0, out=out)
