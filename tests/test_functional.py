"""Ops against naive loop references written plainly here (independent of xcnn's vectorised code)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import BACKENDS, DTYPES, assert_close, conv_case, dev, pool_case
from hypothesis import given, settings
from hypothesis import strategies as st

from xcnn import functional as F
from xcnn.backend import to_host

# ---------------------------------------------------------------- naive references (float64 loops)


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def naive_conv(x, w, b, s, p):
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH, OW = out_size(H, KH, s, p), out_size(W, KW, s, p)
    y = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    acc = b[o] if b is not None else 0.0
                    for c in range(C):
                        for kh in range(KH):
                            for kw in range(KW):
                                h, ww = i * s + kh - p, j * s + kw - p
                                if 0 <= h < H and 0 <= ww < W:
                                    acc += x[n, c, h, ww] * w[o, c, kh, kw]
                    y[n, o, i, j] = acc
    return y


def naive_conv_backward(x, w, dy, s, p):
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    _, _, OH, OW = dy.shape
    dx, dw, db = np.zeros(x.shape), np.zeros(w.shape), dy.sum(axis=(0, 2, 3))
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    g = dy[n, o, i, j]
                    for c in range(C):
                        for kh in range(KH):
                            for kw in range(KW):
                                h, ww = i * s + kh - p, j * s + kw - p
                                if 0 <= h < H and 0 <= ww < W:
                                    dx[n, c, h, ww] += g * w[o, c, kh, kw]
                                    dw[o, c, kh, kw] += g * x[n, c, h, ww]
    return dx, dw, db


def naive_pool(x, k, s, p, mode):
    """Returns (y, argmax) with ties to the first maximum; padding is 0 for avg and -inf for max."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, k, s, p), out_size(W, k, s, p)
    y = np.zeros((N, C, OH, OW))
    arg = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, besti, total = -np.inf, -1, 0.0
                    for kh in range(k):
                        for kw in range(k):
                            h, ww = i * s + kh - p, j * s + kw - p
                            inside = 0 <= h < H and 0 <= ww < W
                            v = x[n, c, h, ww] if inside else (0.0 if mode == "avg" else -np.inf)
                            total += v if inside else 0.0
                            if v > best:
                                best, besti = v, kh * k + kw
                    y[n, c, i, j] = total / (k * k) if mode == "avg" else best
                    arg[n, c, i, j] = besti
    return y, arg


def naive_pool_backward(dy, arg, x_shape, k, s, p, mode):
    N, C, H, W = x_shape
    _, _, OH, OW = dy.shape
    dx = np.zeros(x_shape)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    for kh in range(k):
                        for kw in range(k):
                            h, ww = i * s + kh - p, j * s + kw - p
                            if not (0 <= h < H and 0 <= ww < W):
                                continue
                            if mode == "avg":
                                dx[n, c, h, ww] += dy[n, c, i, j] / (k * k)
                            elif arg[n, c, i, j] == kh * k + kw:
                                dx[n, c, h, ww] += dy[n, c, i, j]
    return dx


# ---------------------------------------------------------------- inputs

def distinct_values(rng, shape):
    """Values with no ties and gaps >= 1e-3 (so max-pool has a unique winner, FD steps cannot flip it)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 1e-2 - n * 5e-3).astype(np.float64)


# ---------------------------------------------------------------- im2col / col2im

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(case=conv_case(), seed=st.integers(0, 2**31))
def test_im2col_matches_naive_and_col2im_is_its_adjoint(backend, dtype, case, seed):
    N, C, H, W, _, k, s, p = case
    d = dev(backend)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    OH, OW = out_size(H, k, s, p), out_size(W, k, s, p)
    ref = np.zeros((C * k * k, N * OH * OW))
    xp_ = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    for c in range(C):
        for kh in range(k):
            for kw in range(k):
                for n in range(N):
                    for i in range(OH):
                        for j in range(OW):
                            ref[(c * k + kh) * k + kw, (n * OH + i) * OW + j] = xp_[n, c, i * s + kh, j * s + kw]
    col = F.im2col(d.asarray(x, dtype), k, s, p)
    assert col.dtype == dtype
    assert_close(col, ref, dtype)
    # col2im is the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>
    c = rng.standard_normal(ref.shape)
    back = to_host(F.col2im(d.asarray(c, dtype), x.shape, k, s, p))
    assert back.shape == x.shape and back.dtype == dtype
    np.testing.assert_allclose(np.vdot(ref, c), np.vdot(x, back), rtol=1e-4 if dtype == np.float32 else 1e-10)
    # and against a naive scatter-add
    naive = np.zeros((N, C, H + 2 * p, W + 2 * p))
    for c_ in range(C):
        for kh in range(k):
            for kw in range(k):
                for n in range(N):
                    for i in range(OH):
                        for j in range(OW):
                            naive[n, c_, i * s + kh, j * s + kw] += c[(c_ * k + kh) * k + kw, (n * OH + i) * OW + j]
    assert_close(back, naive[:, :, p:p + H, p:p + W], dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_im2col_accepts_non_contiguous_input(backend):
    d = dev(backend)
    x = np.arange(2 * 3 * 6 * 5, dtype=np.float64).reshape(3, 2, 6, 5).transpose(1, 0, 2, 3)
    a = F.im2col(d.asarray(x), 3, 1, 1)
    b = F.im2col(d.asarray(np.ascontiguousarray(x)), 3, 1, 1)
    assert_close(a, b, np.float64)


def test_workspace_buffers_are_reused_between_calls():
    ws = F.Workspace()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    c1 = F.im2col(x, 3, 1, 1, ws=ws)
    c1_copy = c1.copy()
    c2 = F.im2col(x * 2, 3, 1, 1, ws=ws)
    assert c2 is c1  # same buffer, no fresh allocation
    np.testing.assert_array_equal(c2, 2 * c1_copy)  # and the padded border stayed zero


# ---------------------------------------------------------------- convolution

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=20, deadline=None)
@given(case=conv_case(), seed=st.integers(0, 2**31), bias=st.booleans())
def test_conv2d_forward_backward_match_naive(backend, dtype, case, seed, bias):
    N, C, H, W, O, k, s, p = case
    d = dev(backend)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C, k, k))
    b = rng.standard_normal(O) if bias else None
    y_ref = naive_conv(x, w, b, s, p)
    y, col = F.conv2d_forward(d.asarray(x, dtype), d.asarray(w, dtype), None if b is None else d.asarray(b, dtype), s, p)
    assert y.shape == y_ref.shape and y.dtype == dtype
    assert_close(y, y_ref, dtype, rtol=1e-4 if dtype == np.float32 else None, atol=1e-4 if dtype == np.float32 else None)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = naive_conv_backward(x, w, dy, s, p)
    dx, dw, db = F.conv2d_backward(d.asarray(dy, dtype), col, x.shape, d.asarray(w, dtype), s, p, need_bias=bias)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else {}
    assert_close(dx, dx_ref, dtype, **tol)
    assert_close(dw, dw_ref, dtype, **tol)
    if bias:
        assert_close(db, db_ref, dtype, **tol)


# ---------------------------------------------------------------- pooling

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["avg", "max"])
@settings(max_examples=25, deadline=None)
@given(case=pool_case(), seed=st.integers(0, 2**31))
def test_pool_forward_backward_match_naive(backend, dtype, mode, case, seed):
    N, C, H, W, k, s, p = case
    d = dev(backend)
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, (N, C, H, W)) if mode == "max" else rng.standard_normal((N, C, H, W))
    y_ref, arg_ref = naive_pool(x, k, s, p, mode)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = naive_pool_backward(dy, arg_ref, x.shape, k, s, p, mode)
    xd = d.asarray(x, dtype)
    if mode == "avg":
        y = F.avg_pool2d_forward(xd, k, s, p)
        dx = F.avg_pool2d_backward(d.asarray(dy, dtype), x.shape, k, s, p)
    else:
        y, arg = F.max_pool2d_forward(xd, k, s, p)
        np.testing.assert_array_equal(to_host(arg), arg_ref)
        dx = F.max_pool2d_backward(d.asarray(dy, dtype), arg, x.shape, k, s, p)
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, y_ref, dtype)
    assert_close(dx, dx_ref, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_ties_go_to_the_first_maximum(backend):
    """Documented tie rule: the gradient goes to the first maximum in row-major window order."""
    d = dev(backend)
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, :2, :2] = [[5, 5], [5, 5]]  # all four tie: first is (0, 0)
    x[0, 0, :2, 2:] = [[1, 7], [7, 7]]  # three tie: first is (0, 3)
    x[0, 0, 2:, :2] = [[0, 0], [3, 3]]  # tie on the bottom row: first is (3, 0)
    x[0, 0, 2:, 2:] = [[2, 2], [2, 2]]  # all tie again: (2, 2)
    y, arg = F.max_pool2d_forward(d.asarray(x), 2)
    np.testing.assert_array_equal(to_host(y)[0, 0], [[5, 7], [3, 2]])
    np.testing.assert_array_equal(to_host(arg)[0, 0], [[0, 1], [2, 0]])
    dx = to_host(F.max_pool2d_backward(d.asarray(np.ones((1, 1, 2, 2))), arg, x.shape, 2))
    expected = np.zeros((4, 4))
    expected[0, 0] = expected[0, 3] = expected[3, 0] = expected[2, 2] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)
    # overlapping windows with ties: the same input element can win several windows
    x2 = np.full((1, 1, 3, 3), 1.0)
    y2, arg2 = F.max_pool2d_forward(d.asarray(x2), 2, 1)
    dx2 = to_host(F.max_pool2d_backward(d.asarray(np.ones((1, 1, 2, 2))), arg2, x2.shape, 2, 1))
    np.testing.assert_array_equal(dx2[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


# ---------------------------------------------------------------- losses

@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_matches_definition_and_is_stable(backend):
    d = dev(backend)
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    loss, grad = F.softmax_cross_entropy(d.asarray(z), d.asarray(y))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert abs(float(loss) - (-np.log(p[np.arange(6), y]).mean())) < 1e-12
    onehot = np.eye(5)[y]
    assert_close(grad, (p - onehot) / 6, np.float64)
    loss2, grad2 = F.softmax_cross_entropy(d.asarray(z), d.asarray(onehot))
    assert abs(float(loss2) - float(loss)) < 1e-12
    assert_close(grad2, grad, np.float64)
    big, _ = F.softmax_cross_entropy(d.asarray(z * 1e4, np.float32), d.asarray(y))
    assert np.isfinite(float(big))


def test_loss_target_errors_are_clear():
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match="expected 4 labels"):
        F.softmax_cross_entropy(z, np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match=r"one-hot \(4, 3\)"):
        F.softmax_cross_entropy(z, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="differ"):
        F.euclidean_loss(z, np.zeros((4, 2)))


# ---------------------------------------------------------------- geometry errors

@pytest.mark.parametrize("call, message", [
    (lambda: F.im2col(np.zeros((1, 1, 3, 3)), 5, 1, 0), "larger than the padded input"),
    (lambda: F.im2col(np.zeros((1, 1, 3, 3)), 3, 0, 0), "stride must be >= 1"),
    (lambda: F.im2col(np.zeros((1, 1, 3, 3)), 3, 1, -1), "padding must be >= 0"),
    (lambda: F.im2col(np.zeros((1, 1, 3, 3)), 2.5, 1, 0), "kernel_size must be an int"),
    (lambda: F.avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, 2, 2), "at most half the window"),
    (lambda: F.max_pool2d_forward(np.zeros((1, 1, 1, 1)), 2), "larger than the padded input"),
])
def test_bad_geometry_is_refused_with_a_clear_message(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_a_workspace_shared_by_max_and_avg_pooling_keeps_each_border():
    """Max pooling pads with -inf, average pooling with zeros: sharing one workspace must not mix them."""
    ws = F.Workspace()
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    F.max_pool2d_forward(x, 2, 2, 1, ws=ws)
    y = F.avg_pool2d_forward(x, 2, 2, 1, ws=ws)
    np.testing.assert_allclose(y, naive_pool(x, 2, 2, 1, "avg")[0])
    y2, _ = F.max_pool2d_forward(x, 2, 2, 1, ws=ws)
    np.testing.assert_allclose(y2, naive_pool(x, 2, 2, 1, "max")[0])
