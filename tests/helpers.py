"""Shared test helpers: the backend list every test body is parameterised over, and tolerances."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from xcnn import cpu_kernels
from xcnn.backend import get_device, gpu_unavailable_reason, to_host

_GPU_REASON = gpu_unavailable_reason(0)
_NUMBA_REASON = None if cpu_kernels.available() else cpu_kernels.reason_unavailable()

#: every test body runs once per backend: the CPU twice -- with the compiled (Numba) kernels and on
#: the pure-NumPy path (tests/conftest.py selects it) -- and CUDA, which skips (with the reason)
#: where no GPU is usable
BACKENDS = [
    pytest.param("cpu-numba", id="cpu-numba", marks=pytest.mark.skipif(
        _NUMBA_REASON is not None, reason=f"compiled CPU kernels off: {_NUMBA_REASON}")),
    pytest.param("cpu-numpy", id="cpu-numpy"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        _GPU_REASON is not None, reason=f"no usable GPU: {_GPU_REASON}")]),
]

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

#: (rtol, atol) per dtype for comparing against float64 references
TOL = {np.dtype(np.float32): (2e-5, 2e-5), np.dtype(np.float64): (1e-10, 1e-12)}


def dev(name):
    """The device of a backend id (``cpu-numba`` and ``cpu-numpy`` are both the CPU)."""
    return get_device("cpu" if name.startswith("cpu") else name)


def assert_close(actual, expected, dtype=None, rtol=None, atol=None):
    a = to_host(actual)
    e = to_host(expected)
    dt = np.dtype(dtype if dtype is not None else a.dtype)
    r, t = TOL[dt]
    np.testing.assert_allclose(a, e, rtol=r if rtol is None else rtol, atol=t if atol is None else atol)


@st.composite
def conv_case(draw, max_size: int = 9):
    """``(N, C, H, W, O, k, s, p)``: kernels 1/3/5/7, padding 0-3, stride 1-3, batch 1-3, non-square inputs."""
    k = draw(st.sampled_from([1, 3, 5, 7]))
    p = draw(st.integers(0, 3))
    s = draw(st.integers(1, 3))
    H = draw(st.integers(max(1, k - 2 * p), max_size))
    W = draw(st.integers(max(1, k - 2 * p), max_size))
    return draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W, draw(st.integers(1, 3)), k, s, p


@st.composite
def pool_case(draw, max_size: int = 9):
    """``(N, C, H, W, k, s, p)``: windows 1-4, padding up to half the window, stride 1-3."""
    k = draw(st.integers(1, 4))
    p = draw(st.integers(0, k // 2))
    s = draw(st.integers(1, 3))
    H = draw(st.integers(max(1, k - 2 * p), max_size))
    W = draw(st.integers(max(1, k - 2 * p), max_size))
    return draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W, k, s, p
