"""The optimizer updates (xcnn/ops/update.py): SGD in the report's form, bit-identical across
backends, and Adam against the textbook formula."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcnn import ops
from xcnn.errors import ShapeError


def _numpy_sgd(p, g, v, lr, m, wd):
    """The update written out in NumPy, operation by operation, in the report's order."""
    t = p.dtype.type
    v = v * t(m) + g
    if wd:
        v = v + p * t(wd)
    return p - v * t(lr), v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=15)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=4), seed=st.integers(0, 2**31),
       lr=st.sampled_from([0.1, 0.01, 1e-3]), m=st.sampled_from([0.0, 1e-3, 0.9]),
       wd=st.sampled_from([0.0, 1e-3, 5e-4]))
def test_sgd_is_bit_identical_to_the_numpy_formula(backend, dtype, sizes, seed, lr, m, wd):
    rng = np.random.default_rng(seed)
    ps = [rng.standard_normal(n).astype(dtype) for n in sizes]
    gs = [rng.standard_normal(n).astype(dtype) for n in sizes]
    vs = [rng.standard_normal(n).astype(dtype) for n in sizes]
    dp, dg, dv = ([backend.asarray(a) for a in arrs] for arrs in (ps, gs, vs))
    state = {}
    for step in range(3):
        ops.sgd_update(dp, dg, dv, lr, m, wd, state)
        for i in range(len(sizes)):
            ps[i], vs[i] = _numpy_sgd(ps[i], gs[i], vs[i], lr, m, wd)
            np.testing.assert_array_equal(backend.host(dp[i]), ps[i])
            np.testing.assert_array_equal(backend.host(dv[i]), vs[i])


def test_sgd_follows_a_changed_learning_rate(backend):
    """The GPU keeps lr on the device (for graph replay): a new Python value must reach the kernel."""
    p, g, v = (backend.asarray(np.ones(5)) for _ in range(3))
    state = {}
    ops.sgd_update([p], [g], [v], 0.1, 0.0, 0.0, state)
    ops.sgd_update([p], [g], [v], 0.5, 0.0, 0.0, state)
    np.testing.assert_array_equal(backend.host(p), np.full(5, 1 - 0.1 - 0.5))


def test_sgd_on_strided_parameters_still_updates_them(backend):
    base = np.arange(12.0).reshape(3, 4)
    p = backend.asarray(base).T  # not C-contiguous
    g, v = backend.asarray(np.ones((4, 3))), backend.asarray(np.zeros((4, 3)))
    if backend.is_cuda:
        with pytest.raises(ValueError, match="C-contiguous"):
            ops.sgd_update([p], [g], [v], 0.5, 0.0, 0.0, {})
        return
    ops.sgd_update([p], [g], [v], 0.5, 0.0, 0.0, {})
    np.testing.assert_array_equal(backend.host(p), base.T - 0.5)


def test_adam_steps_equal_the_textbook_update(backend):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2))
    p, m, v = backend.asarray(w), backend.asarray(np.zeros((3, 2))), backend.asarray(np.zeros((3, 2)))
    mm = vv = np.zeros_like(w)
    for t in range(1, 4):
        g = rng.standard_normal(w.shape)
        ops.adam_update([p], [backend.asarray(g)], [m], [v], 0.01, 0.9, 0.999, 1e-8, 0.1, t)
        g = g + 0.1 * w
        mm = 0.9 * mm + 0.1 * g
        vv = 0.999 * vv + 0.001 * g * g
        w = w - 0.01 * (mm / (1 - 0.9 ** t)) / (np.sqrt(vv / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(backend.host(p), w, rtol=1e-12)


def test_mismatched_state_is_refused():
    p = [np.zeros(3), np.zeros(2)]
    with pytest.raises(ShapeError, match="2 parameters but 1 gradients"):
        ops.sgd_update(p, [np.zeros(3)], [np.zeros(3), np.zeros(2)], 0.1, 0, 0, {})
    with pytest.raises(ShapeError, match=r"expected tensor 1 of shape \(2,\)"):
        ops.sgd_update(p, [np.zeros(3), np.zeros(3)], [np.zeros(3), np.zeros(2)], 0.1, 0, 0, {})
    with pytest.raises(ShapeError, match="float32 or float64"):
        ops.sgd_update([np.zeros(3, np.int32)], [np.zeros(3)], [np.zeros(3)], 0.1, 0, 0, {})


def test_the_fused_gpu_update_refuses_a_tensor_listed_twice(cuda_emu):
    """Two table entries updating one tensor would race on a GPU (the sequential emulation cannot
    show the race, so the table refuses it)."""
    p = cuda_emu.asarray(np.ones(4))
    g, v = cuda_emu.asarray(np.ones(4)), cuda_emu.asarray(np.zeros(4))
    g2, v2 = cuda_emu.asarray(np.ones(4)), cuda_emu.asarray(np.zeros(4))
    with pytest.raises(ValueError, match="appears twice"):
        ops.sgd_update([p, p], [g, g2], [v, v2], 0.1, 0.0, 0.0, {})
