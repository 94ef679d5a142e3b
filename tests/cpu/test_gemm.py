"""CPU matrix products (xcnn/cpu/gemm.py): a skinny product cut into pieces under
``serial_gemm_mnk`` (along M, or along K with the partial products summed) equals one float64
product; the linear layer's products built on it."""
from __future__ import annotations

import numpy as np
import pytest

from xcnn.cpu import config, gemm


@pytest.mark.parametrize("shape", [(1024, 392, 10), (10, 1024, 392), (1024, 10, 392), (7, 5, 3), (200, 300, 400),
                                   (33, 600, 31)])
@pytest.mark.parametrize("limit", [257, 1 << 19])
def test_matmul_pieces_equal_one_product(shape, limit):
    """Skinny products cut along M or K (forced small pieces) equal one float64 product; small or
    square ones are one product."""
    M, K, N = shape
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    ref = np.einsum("mk,kn->mn", a, b)  # not np.matmul: an independent summation
    with config.using(serial_gemm_mnk=limit):
        np.testing.assert_allclose(gemm.matmul(a, b), ref, rtol=1e-12, atol=1e-10)
        out = np.full((M, N), np.nan)
        assert gemm.matmul(a.T.copy().T, b, out=out) is out  # a non-contiguous view works too
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)
        out = np.full((N, M), np.nan)  # into a transposed (non-contiguous) output
        assert gemm.matmul(b.T, a.T, out=out) is out
        np.testing.assert_allclose(out, ref.T, rtol=1e-12, atol=1e-10)


def test_matmul_result_type_follows_the_inputs():
    a = np.ones((40, 3), np.float32)
    with config.using(serial_gemm_mnk=10):
        assert gemm.matmul(a, np.ones((3, 50), np.float32)).dtype == np.float32
        assert gemm.matmul(a, np.ones((3, 50), np.float64)).dtype == np.float64


@pytest.mark.parametrize("limit", [257, 1 << 19])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_and_backward(limit, bias):
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((50, 392)), rng.standard_normal((10, 392)), rng.standard_normal(10)
    dy = rng.standard_normal((50, 10))
    with config.using(serial_gemm_mnk=limit):
        y = gemm.linear_forward(x, w, b if bias else None)
        np.testing.assert_allclose(y, np.einsum("ni,oi->no", x, w) + (b if bias else 0), rtol=1e-12, atol=1e-10)
        dw, db = np.full_like(w, np.nan), (np.full_like(b, np.nan) if bias else None)
        dx = gemm.linear_backward(dy, x, w, dw, db, need_dx=True)
        np.testing.assert_allclose(dw, np.einsum("no,ni->oi", dy, x), rtol=1e-12, atol=1e-10)
        if bias:
            np.testing.assert_allclose(db, dy.sum(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, np.einsum("no,oi->ni", dy, w), rtol=1e-12, atol=1e-10)
        assert gemm.linear_backward(dy, x, w, dw, db, need_dx=False) is None
