"""Shared test helpers: tolerances, comparisons, hypothesis strategies, synthetic data, run settings.
(Independent reference implementations live in references.py; the backend fixture in conftest.py.)"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from xcnn.backend import to_host

DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

#: (rtol, atol) per dtype for comparing against float64 references
TOL = {np.dtype(np.float32): (2e-5, 2e-5), np.dtype(np.float64): (1e-10, 1e-12)}


def assert_close(actual, expected, dtype=None, rtol=None, atol=None, err_msg=""):
    a = to_host(actual)
    e = to_host(expected)
    dt = np.dtype(dtype if dtype is not None else a.dtype)
    r, t = TOL[dt]
    np.testing.assert_allclose(a, e, rtol=r if rtol is None else rtol, atol=t if atol is None else atol,
                               err_msg=err_msg)


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


def distinct_values(rng, shape):
    """Values with no ties and gaps >= 1e-3 (so max-pool has a unique winner, FD steps cannot flip it)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 1e-2 - n * 5e-3).astype(np.float64)


def synthetic(n=600, n_test=200, seed=0):
    """A separable 10-class problem: a bright bar at a class-specific place, MNIST-shaped."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n + n_test)
    x = rng.uniform(-0.5, -0.3, (n + n_test, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 5)
        x[i, 0, 4 + 12 * r:12 + 12 * r, 1 + 5 * q:6 + 5 * q] += 0.8
    return x[:n], y[:n], x[n:], y[n:]


def run_config(tmp_path, **kw):
    """Settings of a short test run into ``tmp_path/run`` on the CPU (override anything)."""
    from xcnn.train import RunConfig

    base = dict(device="cpu", epochs=2, batch_size=50, out=str(tmp_path / "run"), log_every=3)
    base.update(kw)
    return RunConfig(**base)


def weights(path):
    """The parameters saved in a checkpoint (host arrays by name)."""
    from xcnn.nn.serialize import load_checkpoint

    return load_checkpoint(path)["params"]


def quiet(*args, **kwargs):
    """A ``log`` that prints nothing."""
