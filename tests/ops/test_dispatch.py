"""The dispatcher (xcnn/ops/_dispatch.py): which implementation runs, the profiling hook, and the
refusal of arrays from two places."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

from xcnn import ops
from xcnn.cpu import config
from xcnn.errors import DeviceError


def _seen(fn):
    calls = []

    @contextlib.contextmanager
    def hook(name, backend):
        calls.append((name, backend))
        yield

    with ops.profile_hook(hook):
        fn()
    return calls


def test_host_arrays_take_numba_when_it_is_on_and_numpy_otherwise():
    x = np.ones((2, 1, 6, 6), np.float32)
    w = np.ones((2, 1, 3, 3), np.float32)
    with config.using(kernels="numpy"):
        assert _seen(lambda: ops.conv2d_forward(x, w)) == [("conv2d_forward", "numpy")]
    if not config.numba_available():
        pytest.skip(config.numba_reason())
    with config.using(kernels="numba"):
        assert _seen(lambda: ops.conv2d_forward(x, w)) == [("conv2d_forward", "numba")]
        # strided convolutions have no compiled kernel: NumPy runs them
        assert _seen(lambda: ops.conv2d_forward(x, w, stride=2)) == [("conv2d_forward", "numpy")]
        # ops without a compiled kernel
        assert _seen(lambda: ops.linear_forward(np.ones((2, 3)), np.ones((4, 3)))) == [("linear_forward", "numpy")]


def test_a_cache_goes_back_to_the_backend_that_made_it():
    """A forward on the compiled kernels and a backward after switching to NumPy (or back) still
    pair up: the cache names its backend."""
    if not config.numba_available():
        pytest.skip(config.numba_reason())
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 1, 6, 6)), rng.standard_normal((2, 1, 3, 3))
    dy = rng.standard_normal((2, 2, 6, 6))
    for first, second in (("numba", "numpy"), ("numpy", "numba")):
        with config.using(kernels=first):
            _, cache = ops.conv2d_forward(x, w, None, 1, 1)
        with config.using(kernels=second):
            calls = _seen(lambda: ops.conv2d_backward(dy, cache, w))
        assert calls == [("conv2d_backward", first)]


def test_the_gpu_arrays_take_the_cuda_implementation(cuda_emu):
    x = cuda_emu.asarray(np.ones((2, 1, 6, 6), np.float32))
    assert _seen(lambda: ops.avg_pool2d_forward(x, 2)) == [("avg_pool2d_forward", "cuda")]


def test_host_and_device_arrays_mixed_are_refused(cuda_emu):
    x = cuda_emu.asarray(np.ones((2, 1, 6, 6), np.float32))
    with pytest.raises(DeviceError, match="mixed host .* and device"):
        ops.conv2d_forward(x, np.ones((2, 1, 3, 3), np.float32))


def test_config_choices_are_checked():
    with pytest.raises(ValueError, match="is not a choice"):
        with config.using(kernels="fortran"):
            pass
