"""kernels/gemm.cu run on the CPU emulation (tests/doubles/emu.py): against float64 NumPy, bit for bit
against a naive fma loop in the documented order, independent of the launch shape, at the report
network's shapes, and under the address, undefined-behaviour and thread sanitizers.

The launch parameters come from tests/doubles/emu_gemm.py and xcnn/cuda/gemm.py's plan, which follow the rules written in
gemm.cu's header comment (test_documented_rules_match_the_launch_helper ties the two together).
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doubles import emu as _emu
from doubles import emu_gemm as EG
from xcnn.cuda import gemm as XG
from xcnn.cuda import loader

pytestmark = pytest.mark.skipif(not _emu.have_compiler(), reason=f"no C++ compiler ({_emu.CXX}) for the kernel emulation")

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float32, np.float64]
LAYOUTS = ["NN", "NT", "TN", "TT", "strided"]
TESTS = Path(__file__).resolve().parents[1]
DOUBLES = TESTS / "doubles"


# ----------------------------------------------------------------------------- operands

def operands(rng, layout, M, N, K, dtype, values=None):
    """``(A, B, (sa0, sa1, sb0, sb1), a, b)``: flat buffers and element strides for the kernel, and the
    logical (M, K) / (K, N) matrices they hold. NT/TN/TT store an operand transposed; "strided" keeps
    both in wider buffers (row stride > K, every other element), so no stride is 1."""
    draw = values or (lambda shape: rng.standard_normal(shape))
    if layout == "strided":
        A, B = draw((M, 2 * K + 1)), draw((K, 2 * N + 3))
        strides = (2 * K + 1, 2, 2 * N + 3, 2)
    else:
        ta, tb = layout[0] == "T", layout[1] == "T"
        A, B = draw((K, M) if ta else (M, K)), draw((N, K) if tb else (K, N))
        strides = ((1, M) if ta else (K, 1)) + ((1, K) if tb else (N, 1))
    A, B = np.ascontiguousarray(A, dtype=dtype), np.ascontiguousarray(B, dtype=dtype)
    a = np.lib.stride_tricks.as_strided(A, (M, K), (strides[0] * A.itemsize, strides[1] * A.itemsize))
    b = np.lib.stride_tricks.as_strided(B, (K, N), (strides[2] * B.itemsize, strides[3] * B.itemsize))
    return A.ravel(), B.ravel(), strides, a, b


def error_bound(a, b, bias, dtype):
    """A rigorous bound on |C - float64 reference|: K fma steps, up to S-1 partial additions (S <= K)
    and the bias add cost at most (2K + 1) unit roundoffs of sum |a||b| + |bias| in ``dtype``, the
    float64 reference at most K of float64's."""
    K = a.shape[1]
    mag = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    if bias is not None:
        mag = mag + np.abs(bias.astype(np.float64))
    return (K + 1) * (np.finfo(dtype).eps + np.finfo(np.float64).eps) * mag + np.finfo(dtype).tiny


def reference64(a, b, bias):
    c = a.astype(np.float64) @ b.astype(np.float64)
    return c if bias is None else c + bias.astype(np.float64)


def check_product(rng, layout, M, N, K, dtype, use_bias, split, grid=None):
    """Run gemm.cu and check it against float64 (within the bound) and the naive loop (bit for bit)."""
    A, B, st_, a, b = operands(rng, layout, M, N, K, dtype)
    bias = rng.standard_normal(N).astype(dtype) if use_bias else None
    C, part = EG.gemm(A, B, M, N, K, *st_, bias, split=split, grid=grid)
    assert C.dtype == dtype and C.shape == (M, N)
    np.testing.assert_array_less(np.abs(C - reference64(a, b, bias)), error_bound(a, b, bias, dtype))
    L = None if part is None else XG.plan(M, N, K)[1] if split is None else split
    ref, parts = EG.gemm_reference(A, B, M, N, K, *st_, bias, L=L)
    np.testing.assert_array_equal(C, ref)
    if part is not None:
        assert part.shape[0] == len(parts)
        np.testing.assert_array_equal(part, np.stack(parts))
    return C, part


# ----------------------------------------------------------------------------- against the references

@SETTINGS
@given(layout=st.sampled_from(LAYOUTS), M=st.integers(1, 150), N=st.integers(1, 150), K=st.integers(0, 100),
       dtype=st.sampled_from(DTYPES), use_bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_single_pass_matches_float64_and_the_fma_loop(layout, M, N, K, dtype, use_bias, seed):
    """The single pass over 1..3 64-wide tiles each way, K from 0 to past six 16-steps, every layout:
    within the rounding bound of float64 and identical to the naive ascending-k fma loop."""
    C, part = check_product(np.random.default_rng(seed), layout, M, N, K, dtype, use_bias, split=0)
    assert part is None


@SETTINGS
@given(layout=st.sampled_from(LAYOUTS), M=st.integers(1, 40), N=st.integers(1, 40), K=st.integers(1, 600),
       dtype=st.sampled_from(DTYPES), use_bias=st.booleans(), data=st.data())
def test_split_k_matches_float64_and_the_chunked_fma_loop(layout, M, N, K, dtype, use_bias, data):
    """Both passes with chunk lengths from K/9 to past K (S from 1 to 9, chunks of 1..600 elements,
    partial 64-steps): every partial equals the naive loop over its chunk, and C their ascending sum."""
    L = data.draw(st.integers(max(1, K // 9), K + 70), label="L")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    C, part = check_product(rng, layout, M, N, K, dtype, use_bias, split=L)
    assert part.shape == (EG.cdiv(K, L), M, N)


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_k_with_one_chunk_is_the_single_pass(dtype):
    rng = np.random.default_rng(5)
    A, B, st_, a, b = operands(rng, "NT", 37, 29, 300, dtype)
    bias = rng.standard_normal(29).astype(dtype)
    single, _ = EG.gemm(A, B, 37, 29, 300, *st_, bias, split=0)
    for L in (300, 301, 10**6):
        split, part = EG.gemm(A, B, 37, 29, 300, *st_, bias, split=L)
        assert part.shape[0] == 1
        np.testing.assert_array_equal(split, single)
    two, _ = EG.gemm(A, B, 37, 29, 300, *st_, bias, split=150)
    assert not np.array_equal(two, single)  # another (fixed) rounding: the path is part of the rule


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("split", [0, 64, 700, None])
def test_exact_arithmetic_catches_any_missing_or_repeated_term(dtype, split):
    """Small integers: every product and partial sum is exact in float32, so C must equal the integer
    product exactly, whatever the path; one term dropped, doubled or misplaced shows."""
    rng = np.random.default_rng(11)
    M, N, K = 21, 70, 2500
    ints = lambda shape: rng.integers(-3, 4, shape).astype(np.float64)  # noqa: E731
    for layout in ("NN", "TN", "NT", "strided"):
        A, B, st_, a, b = operands(rng, layout, M, N, K, dtype, values=ints)
        bias = ints(N).astype(dtype)
        C, part = EG.gemm(A, B, M, N, K, *st_, bias, split=split)
        assert (part is None) == (split == 0)  # None: the plan splits this shape (2 tiles, K >= 512)
        exact = a.astype(np.int64) @ b.astype(np.int64) + bias.astype(np.int64)
        np.testing.assert_array_equal(C, exact.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_signed_zero_nan_and_inf_follow_the_fma_loop(dtype):
    """Products that round to -0 keep an accumulator of -0 (a padded fma(0, 0, acc) in a partial
    k-step would turn it into +0); inf * 0 gives NaN; an inf term stays inf."""
    tiny = np.finfo(dtype).tiny
    M, N, K = 5, 70, 17  # one full 16-step and a partial one
    A = np.full((M, K), -tiny, dtype)
    B = np.full((K, N), tiny, dtype)  # every product -tiny^2 rounds to -0
    A[1, 3], B[3, 5] = np.inf, 0.0  # C[1, 5] = inf * 0 = NaN
    A[2, 16] = np.inf  # C[2, :] = +inf (the last k, in the partial step)
    A[3, 0] = -np.inf  # C[3, :] = -inf
    for split in (0, 8, 9):
        C, _ = EG.gemm(A.ravel(), B.ravel(), M, N, K, K, 1, N, 1, split=split)
        ref, _ = EG.gemm_reference(A.ravel(), B.ravel(), M, N, K, K, 1, N, 1, L=split or None)
        np.testing.assert_array_equal(C, ref)
        assert (C[[0, 4]] == 0).all() and np.signbit(C[[0, 4]]).all()
        assert np.isnan(C[1, 5]) and (C[2, :5] == np.inf).all() and (C[3] == -np.inf).all()


def test_host_fma_is_correctly_rounded():
    """The emulation's bits equal the GPU's only if the host fmaf/fma round once, like fma.rn:
    checked exactly with rationals on random and adversarial triples (a*b + c needing far more
    bits than a double has, ties, cancellation, denormal results). float32 runs flushed to zero,
    as CuPy compiles it (``-ftz=true``: fma.rn.ftz.f32): subnormal inputs count as zero and a
    subnormal result is zero; float64 keeps its subnormals."""
    src = r'''
extern "C" __global__ void fma_f32(const float* a, const float* b, const float* c, float* r, long long total)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)blockDim.x * gridDim.x)
        r[i] = fmaf(a[i], b[i], c[i]);
}
extern "C" __global__ void fma_f64(const double* a, const double* b, const double* c, double* r, long long total)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)blockDim.x * gridDim.x)
        r[i] = fma(a[i], b[i], c[i]);
}
'''
    mod = _emu.build("fma.cu", source=src)
    rng = np.random.default_rng(3)
    for dtype, sfx in ((np.float32, "f32"), (np.float64, "f64")):
        fi = np.finfo(dtype)
        n = 3000
        a = rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)
        b = rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)
        c = rng.standard_normal(n) * 2.0 ** rng.integers(-60, 60, n)
        a, b, c = a.astype(dtype), b.astype(dtype), c.astype(dtype)
        eps, sub = dtype(fi.eps), dtype(fi.smallest_subnormal)
        # (1 + eps)^2 = 1 + 2eps + eps^2: c = -1 leaves the tiny exact rest, c = +-sub decides
        # the last bit by far less than a double resolves
        a[:4] = b[:4] = dtype(1) + eps
        c[:4] = [-1, sub, -sub, -(dtype(1) + 2 * eps)]
        a[4:6], b[4:6], c[4:6] = 1, 1, [eps / 2, 3 * eps / 2]  # exact ties: 1 + eps/2 -> 1, 1 + 3eps/2 -> 1 + 2eps
        a[6:8], b[6:8], c[6:8] = dtype(fi.tiny), [0.5, dtype(1) / 3], [-0.0, 0.0]  # denormal, exact and rounded
        a[8], b[8], c[8] = dtype(3) * dtype(fi.tiny), -dtype(0.3), sub  # inexact near the bottom
        r = np.empty(n, dtype)
        mod.launch(f"fma_{sfx}", 12, 256, (a, b, c, r, np.int64(n)))
        flushed = 0
        for x, y, z, got in zip(a.tolist(), b.tolist(), c.tolist(), r.tolist()):
            if dtype == np.float32:
                x, y, z = (0.0 if abs(v) < fi.tiny else v for v in (x, y, z))
                exact = Fraction(x) * Fraction(y) + Fraction(z)
                if abs(exact) < Fraction(float(fi.tiny)):
                    assert got == 0, (x, y, z, got)  # the subnormal result is flushed
                    flushed += exact != 0
                    continue
            assert _correctly_rounded(Fraction(x) * Fraction(y) + Fraction(z), got, dtype), (x, y, z, got)
        assert flushed >= (2 if dtype == np.float32 else 0)


def _correctly_rounded(exact: Fraction, got: float, dtype) -> bool:
    """Whether ``got`` is ``exact`` rounded to nearest, ties to even, in ``dtype`` (no overflow)."""
    fi = np.finfo(dtype)
    if got < 0 or (got == 0 and exact < 0):  # by symmetry, look at magnitudes
        exact, got = -exact, -got
    if exact < 0:
        return False
    g = Fraction(got)
    e = max(math.frexp(got)[1] - 1, fi.minexp) if got > 0 else fi.minexp  # 2^e <= got < 2^(e+1)
    up = Fraction(2) ** (e - fi.nmant)  # spacing above got
    down = up / 2 if got > 0 and g == Fraction(2) ** e and e > fi.minexp else up  # below a power of two: half
    err = exact - g
    if 2 * err > up or -2 * err > down:
        return False
    if 2 * err == up or -2 * err == down:  # a tie: the even neighbour wins
        return (g / Fraction(2) ** (e - fi.nmant)).numerator % 2 == 0
    return True


# ----------------------------------------------------------------------------- launch shapes

GRID_SHAPES = [  # M, N, K, layout, split: several work items per kernel
    (130, 70, 40, "NN", 0),
    (70, 130, 33, "TN", 0),
    (33, 40, 300, "NT", 64),
    (20, 17, 257, "strided", 100),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, N, K, layout, split", GRID_SHAPES)
def test_bits_do_not_depend_on_the_grid(M, N, K, layout, split, dtype):
    """One block for everything, a few, an odd number, the rule's grid, more blocks than work:
    the same bits every time (the grid-stride loops give each output the same order)."""
    rng = np.random.default_rng(M * N + K)
    A, B, st_, a, b = operands(rng, layout, M, N, K, dtype)
    bias = rng.standard_normal(N).astype(dtype)
    base, base_part = EG.gemm(A, B, M, N, K, *st_, bias, split=split)
    mod = _emu.build("gemm.cu")
    seen = set()
    for g in (1, 2, 3, 7, lambda kernel, d: d + 5):
        n0 = len(mod.launches)
        C, part = EG.gemm(A, B, M, N, K, *st_, bias, split=split, grid=g)
        seen.update(grid for _, grid, _, _ in mod.launches[n0:])
        np.testing.assert_array_equal(C, base)
        if part is not None:
            np.testing.assert_array_equal(part, base_part)
    assert len(seen) >= 5
    # and independent of how a block's threads interleave: fibers in order vs concurrent OS threads
    C, part = EG.gemm(A, B, M, N, K, *st_, bias, split=split, grid=3, os_threads=True)
    np.testing.assert_array_equal(C, base)


def test_wrong_block_size_traps():
    """Both tiled kernels need exactly 256 threads: another block size stops the launch loudly."""
    code = (
        "import numpy as np\nfrom doubles import emu as _emu\n"
        "a = np.ones(64, np.float32)\n"
        "_emu.build('gemm.cu').launch('gemm_f32', 1, 128, (a, a, a, np.zeros(64, np.float32), np.int32(8), "
        "np.int32(8), np.int32(8), np.int64(8), np.int64(1), np.int64(8), np.int64(1), np.int64(8), np.int32(0)))\n"
        "print('no trap')\n"
    )
    proc = _python(code)
    assert proc.returncode != 0 and "no trap" not in proc.stdout
    assert "__trap()" in proc.stderr


# ----------------------------------------------------------------------------- the report's products

def _report_products(batch, dtype, rng):
    """The six products of the report's network (conv1 O=4 R=25 P=784, conv2 O=8 R=36 P=196, fc 392->10)
    as (name, A, B, M, N, K, strides, bias, a, b)."""
    out = []
    for O, R, P in ((4, 25, 28 * 28), (8, 36, 14 * 14)):
        NP = batch * P
        W2 = rng.standard_normal((O, R)).astype(dtype)
        col = rng.standard_normal((R, NP)).astype(dtype)
        dy2 = rng.standard_normal((O, NP)).astype(dtype)
        out += [
            (f"conv{O} forward", W2, col, O, NP, R, (R, 1, NP, 1), None, W2, col),
            (f"conv{O} dcol", W2, dy2, R, NP, O, (1, R, NP, 1), None, W2.T, dy2),
            (f"conv{O} dW", dy2, col, O, R, NP, (NP, 1, 1, NP), None, dy2, col.T),
        ]
    I, O = 392, 10
    x = rng.standard_normal((batch, I)).astype(dtype)
    W = rng.standard_normal((O, I)).astype(dtype)
    dy = rng.standard_normal((batch, O)).astype(dtype)
    bias = rng.standard_normal(O).astype(dtype)
    out += [
        ("linear forward", x, W, batch, O, I, (I, 1, 1, I), bias, x, W.T),
        ("linear dX", dy, W, batch, I, O, (O, 1, I, 1), None, dy, W),
        ("linear dW", dy, x, O, I, batch, (1, O, I, 1), None, dy.T, x),
    ]
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_report_network_products(dtype):
    """Every product of a training step at batch 4 (the convolutions' dW is then K = 3,136 and 784
    long and split), each on the path the plan picks, bit for bit as the naive loop says."""
    rng = np.random.default_rng(2)
    for name, A, B, M, N, K, st_, bias, a, b in _report_products(4, dtype, rng):
        C, part = EG.gemm(A.ravel(), B.ravel(), M, N, K, *st_, bias)
        S, L = XG.plan(M, N, K)
        assert (part is None) == (S == 1), name
        np.testing.assert_array_less(np.abs(C - reference64(a, b, bias)), error_bound(a, b, bias, dtype))
        ref, _ = EG.gemm_reference(A.ravel(), B.ravel(), M, N, K, *st_, bias, L=None if S == 1 else L)
        np.testing.assert_array_equal(C, ref, err_msg=name)
        if name.endswith("dW") and name.startswith("conv"):
            assert S > 1, name


def test_conv_dw_at_batch_1024():
    """The longest product of the report's network at full size, K = 1024*784 = 802,816: the plan's
    256 chunks of 3,136, 512 pass-1 blocks; checked exactly (small integers) and against float64."""
    M, N, K = 4, 25, 1024 * 784
    assert XG.plan(M, N, K) == (256, 3136)
    assert XG.grids(M, N, 256) == {"gemm": 1, "gemm_splitk_partial": 512, "gemm_splitk_reduce": 1}
    rng = np.random.default_rng(4)
    dy2 = rng.integers(-2, 3, (M, K)).astype(np.float32)
    col = rng.integers(-2, 3, (N, K)).astype(np.float32)  # col^T: B(k, j) = col[j, k]
    C, part = EG.gemm(dy2.ravel(), col.ravel(), M, N, K, K, 1, 1, K)
    assert part.shape == (256, M, N)
    np.testing.assert_array_equal(C, (dy2.astype(np.int64) @ col.T.astype(np.int64)).astype(np.float32))


# ----------------------------------------------------------------------------- the plan

@settings(max_examples=400, deadline=None)
@given(M=st.integers(1, 5000), N=st.integers(1, 5000), K=st.integers(0, 10**7))
def test_plan_rule_properties(M, N, K):
    S, L = XG.plan(M, N, K)
    assert (S, L) == XG.plan(M, N, K)
    tiles = -(-M // 64) * -(-N // 64)
    if S == 1:
        assert L == K
        assert tiles >= 32 or K < 512
        return
    assert tiles < 32 and K >= 512
    assert L % 64 == 0 and L >= 256 and 2 <= S <= 256
    assert (S - 1) * L < K <= S * L  # every chunk non-empty, all of k covered
    assert S * M * N <= 2**22
    grids = XG.grids(M, N, S)
    assert grids["gemm_splitk_partial"] == S * -(-M // 16) * -(-N // 16)


def test_plan_examples():
    assert XG.plan(1024, 400, 784) == (1, 784)  # MLP layer forward: single pass, 112 tiles
    assert XG.plan(400, 784, 1024) == (1, 1024)  # its dW: 91 tiles
    assert XG.plan(10, 400, 1024) == (4, 256)  # last layer's dW: 7 tiles, split
    assert XG.plan(8, 36, 1024 * 196) == (242, 832)  # conv2 dW at batch 1024
    assert XG.plan(4, 25, 50 * 784) == (154, 256)  # conv1 dW at batch 50
    assert XG.plan(4, 802816, 25) == (1, 25)  # conv forward: 12,544 tiles
    assert XG.plan(200, 200, 10**6) == (104, 9664)  # the 2^22-element cap on the partials
    assert XG.grids(1024, 400, 1)["gemm"] == 112


def test_documented_rules_match_the_launch_helper():
    """The header comment documents the launch rules: its constants and formulas must be the ones the
    production launcher (xcnn/cuda/gemm.py) applies (change both or neither)."""
    src = loader.kernel_source("gemm.cu")
    for macro, value in (("GEMM_THREADS", XG.THREADS), ("GEMM_TILE", XG.TILE),
                         ("GEMM_SK_TILE", XG.SK_TILE), ("GEMM_SK_BK", XG.KALIGN)):
        assert re.search(rf"#define {macro} {value}\n", src), macro
    for text in ("tiles = ceil(M/64) * ceil(N/64)", f"if tiles >= {XG.SPLIT_TILES} or K < {XG.SPLIT_MIN_K}:",
                 f"smax = min({XG.SMAX}, max(1, 2^{XG.PART_MAX.bit_length() - 1} / (M*N)))",
                 f"L = max({XG.KCHUNK}, ceil(K / smax)), rounded up to a multiple of {XG.KALIGN}",
                 "S = ceil(K / L)", "Block: exactly 256 threads", "grid = min(tiles, 262140)",
                 "grid = min(items, 262140)", "grid = min(ceil(M*N / 256), 262140)",
                 "for k = 0 .. K-1 ascending: acc = fma(A(i,k), B(k,j), acc);",
                 "for s = 1 .. S-1 ascending: acc = acc + p_s;"):
        assert text in src, text
    from xcnn.cuda.launch import MAX_GRID  # noqa: PLC0415

    assert MAX_GRID == 262140


def test_every_gemm_kernel_is_exercised():
    """Each kernel of gemm.cu (both dtypes) is launched by the helper these tests use."""
    rng = np.random.default_rng(0)
    mod = _emu.build("gemm.cu")
    n0 = len(mod.launches)
    for dtype in DTYPES:
        for split in (0, 32):
            A, B, st_, a, b = operands(rng, "NN", 3, 4, 70, dtype)
            EG.gemm(A, B, 3, 4, 70, *st_, split=split)
    assert {n for n, *_ in mod.launches[n0:]} == set(loader.kernel_signatures("gemm.cu"))


def test_leading_dimension_and_helper_checks():
    """C written through ldc > N leaves the gaps alone; the helper refuses buffers too small."""
    rng = np.random.default_rng(1)
    A, B, st_, a, b = operands(rng, "NN", 9, 5, 20, np.float64)
    for split in (0, 8):
        out = np.full(9 * 7, -123.0)
        C, _ = EG.gemm(A, B, 9, 5, 20, *st_, out=out, ldc=7, split=split)
        np.testing.assert_allclose(C, a @ b, rtol=1e-13)
        assert (out.reshape(9, 7)[:, 5:] == -123.0).all()
    with pytest.raises(ValueError, match="A is too small"):
        EG.gemm(A[:-1], B, 9, 5, 20, *st_)
    with pytest.raises(ValueError, match="B is too small"):
        EG.gemm(A, B, 9, 6, 20, *st_)
    C, part = EG.gemm(A, B, 0, 5, 20, *st_)
    assert C.shape == (0, 5) and part is None


# ----------------------------------------------------------------------------- the block emulation

@pytest.mark.parametrize("os_threads", [False, True])
def test_block_emulation_honours_barriers(os_threads):
    mod = _emu.build("demo.cu", source=EG.BARRIER_DEMO, os_threads=os_threads)
    assert mod.block_threads == (2 if os_threads else 1)
    grid, block = 3, 64
    out = np.zeros(grid * block, np.float32)
    mod.launch("neighbour_f32", grid, block, (out, np.int32(out.size)))
    t = np.arange(block)
    want = np.concatenate([(t + 1) % block + 1000 * b for b in range(grid)]).astype(np.float32)
    np.testing.assert_array_equal(out, want)


def test_thread_by_thread_emulation_refuses_shared_memory(tmp_path):
    """Without the block emulation __syncthreads does not even compile, so a file cannot run there
    while relying on a barrier; the kernel files pick their mode from their own text."""
    assert not _emu.uses_block_barrier(loader.kernel_source("pool.cu"))
    assert _emu.uses_block_barrier(loader.kernel_source("gemm.cu"))
    src = tmp_path / "demo.cu"
    src.write_text(EG.BARRIER_DEMO)
    cpp = tmp_path / "launch.cpp"
    cpp.write_text(_emu.launcher_source(str(src), loader.parse_signatures(EG.BARRIER_DEMO), 0))
    proc = subprocess.run([_emu.CXX, *_emu.FLAGS, "-o", str(tmp_path / "x.so"), str(cpp)], capture_output=True, text=True)
    assert proc.returncode != 0 and "__syncthreads" in proc.stderr


@pytest.mark.parametrize("os_threads", [False, True])
def test_block_emulation_stops_on_a_barrier_not_all_threads_reach(os_threads):
    code = (
        "import numpy as np\nfrom doubles import emu as _emu\nfrom doubles.emu_gemm import BARRIER_DEMO\n"
        f"m = _emu.build('demo.cu', source=BARRIER_DEMO, os_threads={os_threads})\n"
        "m.launch('diverge_f32', 2, 8, (np.zeros(8, np.float32), np.int32(8)))\n"
        "print('ran through')\n"
    )
    proc = _python(code)
    assert proc.returncode != 0 and "ran through" not in proc.stdout
    assert "not reached by every thread of block 0" in proc.stderr, proc.stderr


def _python(code, env=None):
    root = TESTS.parent
    env = dict(env or os.environ, PYTHONPATH=os.pathsep.join([str(root), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=TESTS)


# ----------------------------------------------------------------------------- thread sanitizer

def _tsan_available():
    lib = subprocess.run([_emu.CXX, "-print-file-name=libtsan.so"], capture_output=True, text=True).stdout.strip()
    return os.path.isabs(lib) and os.path.exists(lib)


def _barrier_sites(src):
    """Where the code (not a comment) calls __syncthreads(): statements on their own line."""
    return [m.start(1) for m in re.finditer(r"^[ \t]*(__syncthreads\(\);)", src, flags=re.M)]


def _tsan_run(tmp_path, source_text, tag):
    """Build tests/doubles/emu_tsan_gemm.cpp against ``source_text`` with -fsanitize=thread and run it."""
    if not _tsan_available():
        pytest.skip(f"{_emu.CXX} has no ThreadSanitizer runtime")
    cu = tmp_path / f"gemm_{tag}.cu"
    cu.write_text(source_text)
    exe = tmp_path / f"tsan_{tag}"
    build = subprocess.run([_emu.CXX, *_emu.TSAN, f"-DGEMM_SOURCE=\"{cu}\"", f"-I{DOUBLES}", "-o", str(exe),
                            str(DOUBLES / "emu_tsan_gemm.cpp")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66")
    return subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=600)


def test_gemm_is_race_free_under_thread_sanitizer(tmp_path):
    """Every kernel of gemm.cu on concurrent OS threads under ThreadSanitizer (tiles, chunks and
    grid-stride loops that reuse shared memory): no data race, and the naive loop's bits."""
    proc = _tsan_run(tmp_path, loader.kernel_source("gemm.cu"), "clean")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "ThreadSanitizer" not in proc.stderr
    assert re.search(r"tsan gemm: (\d+) checks, 0 failures", proc.stdout)
    assert int(re.search(r"(\d+) checks", proc.stdout).group(1)) >= 12


def test_thread_sanitizer_catches_each_missing_barrier(tmp_path):
    """The race check can fail: gemm.cu with any one of its __syncthreads() removed is reported."""
    src = loader.kernel_source("gemm.cu")
    sites = _barrier_sites(src)
    assert len(sites) == 4  # load -> compute and compute -> next load, in both tiled kernels
    for n, at in enumerate(sites):
        broken = src[:at] + "/* barrier removed */" + src[at + len("__syncthreads();"):]
        proc = _tsan_run(tmp_path, broken, f"missing{n}")
        assert proc.returncode != 0, f"barrier {n} removed, yet no report:\n{proc.stdout}"
        assert "WARNING: ThreadSanitizer: data race" in proc.stderr, proc.stderr[-3000:]
        assert re.search(r"#0 .*gemm(_splitk_partial)?_impl<", proc.stderr), proc.stderr[-3000:]  # in the kernel


# ----------------------------------------------------------------------------- production, and the real device

def _check_production(dev):
    """xcnn.cuda.gemm.matmul with our kernels on ``dev``: the emulation's bits on the report's six
    products at batch 4 (plan-chosen paths) and on all layouts, with and without bias."""
    from xcnn.cuda import gemm as XG  # noqa: PLC0415

    rng = np.random.default_rng(8)
    launched = set()
    for dtype in DTYPES:
        for M, N, K_ in ((70, 45, 333), (4, 25, 4 * 784), (1024 // 8, 40, 300)):
            for ta, tb in ((False, False), (False, True), (True, False)):
                a = rng.standard_normal((K_, M) if ta else (M, K_)).astype(dtype)
                b = rng.standard_normal((N, K_) if tb else (K_, N)).astype(dtype)
                bias = rng.standard_normal(N).astype(dtype) if not ta else None
                sa = (1, M) if ta else (K_, 1)
                sb = (1, K_) if tb else (N, 1)
                want, part = EG.gemm(a.ravel(), b.ravel(), M, N, K_, *sa, *sb, bias)
                launched.add(part is not None)
                with XG.using("kernels"):
                    got = XG.matmul(dev.asarray(a), dev.asarray(b), trans_a=ta, trans_b=tb,
                                    bias=None if bias is None else dev.asarray(bias))
                np.testing.assert_array_equal(dev_host(got), want)
    assert launched == {True, False}  # both the single pass and split-K ran


def dev_host(a):
    from xcnn.backend import to_host  # noqa: PLC0415

    return to_host(a)


def test_production_launcher_gives_the_emulations_bits(cuda_emu):
    """xcnn/cuda/gemm.py (plan, grids, argument types) through the CuPy double: the very bits of the
    independent launch helper above."""
    _check_production(cuda_emu.device)


@pytest.mark.gpu
def test_gpu_gemm_matches_the_emulation_bit_for_bit():
    """The same on a real GPU (skipped where none is usable): the fma order leaves nvcc nothing to
    contract, so the GPU gives the emulation's bits (for normal numbers: CuPy compiles with
    -ftz=true, which the emulation models for float32)."""
    from xcnn.backend import get_device, gpu_unavailable_reason  # noqa: PLC0415

    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no usable GPU: {reason}")
    _check_production(get_device("cuda"))
