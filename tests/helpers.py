"""Shared test helpers: tolerances, comparisons, hypothesis strategies, synthetic data, run settings.
(Independent reference implementations live in references.py; the backend fixture in conftest.py.)"""
from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

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


# --------------------------------------------------------------------------- #
# Digits for the interop and demo tests: the real MNIST test set when it is on this machine (never
# downloaded from here), else synthetic strokes; and presets trained briefly on whichever is there.
# --------------------------------------------------------------------------- #

ROOT = Path(__file__).resolve().parents[1]

#: (lr, momentum) that train each preset in a few hundred steps
TRAINING = {"seed-cnn": (0.1, 0.0), "mlp2": (0.1, 0.0), "mlp1": (0.1, 0.0), "lenet5": (0.05, 0.9)}


@functools.lru_cache(maxsize=None)
def _mnist():
    """``(dataset, data_dir)``: MNIST from the data cache (``data_dir`` None), else from a copy (verified
    against the pins, in a temporary directory) of the ../shared/data/mnist a dev or CI checkout
    has; ``(None, None)`` when neither is there. Never downloads."""
    from xcnn import data
    from xcnn.data.fetch import _shared_sources

    try:
        return data.load("mnist", fetch_if_missing=False), None
    except data.DataError:
        pass
    shared = _shared_sources("mnist")
    if not shared:
        return None, None
    try:
        root = tempfile.mkdtemp(prefix="xcnn-mnist-")
        atexit.register(shutil.rmtree, root, True)
        data.fetch("mnist", root, source=shared[0])
        return data.load("mnist", root, fetch_if_missing=False), root
    except data.DataError:
        return None, None


def mnist_or_none():
    """The MNIST dataset when it is on this machine (see :func:`_mnist`), else None."""
    return _mnist()[0]


def mnist_data_dir():
    """The ``data_dir`` :func:`mnist_or_none`'s dataset loads from (None: the usual place)."""
    return _mnist()[1]


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 28x28 images of 2-4 thick random strokes (light on dark, like MNIST) and random labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    images = np.zeros((n, 28, 28))
    for img in images:
        for _ in range(rng.integers(2, 5)):
            (y0, x0), (y1, x1) = rng.uniform(5, 23, (2, 2))
            d = np.array([y1 - y0, x1 - x0])
            t = np.clip(((yy - y0) * d[0] + (xx - x0) * d[1]) / max(d @ d, 1e-9), 0, 1)
            dist = np.hypot(yy - (y0 + t * d[0]), xx - (x0 + t * d[1]))
            np.maximum(img, np.clip(1.8 - dist, 0, 1), out=img)
    return np.rint(images * 255).astype(np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def digits(n_test: int = 10_000):
    """``(train_x, train_y, test_x, test_y, source)``: MNIST's when present, else synthetic (2,000 test images)."""
    ds = mnist_or_none()
    if ds is not None:
        return ds.train_images, ds.train_labels, ds.test_images[:n_test], ds.test_labels[:n_test], "mnist"
    tx, ty = synthetic_digits(2000, seed=1)
    vx, vy = synthetic_digits(min(n_test, 2000), seed=2)
    return tx, ty, vx, vy, "synthetic"


def train_preset(name: str, train_x, train_y, steps: int = 300, batch: int = 50, seed: int = 0, dtype=np.float32):
    """Preset ``name`` after ``steps`` SGD steps on the given images (float32 unless asked)."""
    from xcnn.data import normalize
    from xcnn.nn import SGD, SoftmaxCrossEntropy, build_model

    net = build_model(name, seed=seed, dtype=dtype)
    lr, momentum = TRAINING[name]
    opt = SGD(net.parameters(), lr=lr, momentum=momentum)
    loss = SoftmaxCrossEntropy()
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(train_x), batch)
        loss(net.forward(normalize(train_x[idx], net.dtype)), train_y[idx].astype(np.int64))
        opt.zero_grad()
        net.backward(loss.backward())
        opt.step()
    return net.eval()


def row_relative_error(actual, reference) -> float:
    """max over rows of max |actual - reference| / max |reference|: element-wise relative error means
    nothing for a logit near zero, whose rounding error is set by the terms summed into it (as large
    as the row's largest logits), so each row's largest |logit| is the scale."""
    a = np.asarray(actual, np.float64).reshape(len(actual), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    return float((np.abs(a - r).max(axis=1) / np.abs(r).max(axis=1)).max())


def snapshot(root: Path) -> dict:
    """Every file below ``root`` with its SHA-256: equal snapshots mean nothing was lost or changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_main(main, argv, capsys) -> tuple:
    """``main(argv)`` as its command would run it: ``(exit status, stdout, stderr)``."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err

