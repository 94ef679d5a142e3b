"""Launching our kernels (xcnn/cuda/launch.py): the launch shape, the argument check against the
parsed C signature (a Python int where a kernel says ``int`` would reach the GPU as 64 bits), and
that the GPU ops launch every kernel with arguments of exactly the declared types."""
from __future__ import annotations

import numpy as np
import pytest

from doubles import fakecupy
from doubles import emu
from xcnn.cuda import gemm
from xcnn.cuda import launch as L
from xcnn.cuda import loader as K
from xcnn.cuda import ops as O
from xcnn.ops import conv_geometry, pool_geometry


def _launched(fake):
    """``[(file, name, grid, block, args)]`` of every emulated launch so far, in order."""
    return list(emu.LAUNCHES)


def _every_op(asarray):
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        x = asarray(rng.standard_normal((2, 2, 5, 4)).astype(dtype))
        g = conv_geometry(5, 4, 2, 1, 1)
        col = O.im2col(x, g)
        O.col2im(col, (2, 2, 5, 4), g)
        p = pool_geometry(5, 4, 2, 2, 1)
        y = O.avg_pool2d_forward(x, p)
        O.avg_pool2d_backward(y, (2, 2, 5, 4), p)
        y, a = O.max_pool2d_forward(x, p)
        O.max_pool2d_backward(y, a, (2, 2, 5, 4), p)
        w = asarray(rng.standard_normal((3, 4)).astype(dtype))
        O.sgd_update([w], [w.copy()], [asarray(np.zeros((3, 4), dtype))], 0.1, 0.9, 1e-3, {})
        O.sgd_update([w, asarray(np.zeros(3, np.float32))], [w.copy(), asarray(np.zeros(3, np.float32))],
                     [asarray(np.zeros((3, 4), dtype)), asarray(np.zeros(3, np.float32))], 0.1, 0.9, 0, {})
        O.softmax_xent(w, asarray(np.array([0, 3, 1])))
        O._conv_output(w, w[:, 0].copy(), 2, 1, 2)
        O.relu_backward(w, w)
        with gemm.using("kernels"):  # our GEMMs: single pass, and split-K (K = 2*16*16 >= 512)
            x = asarray(rng.standard_normal((2, 3, 16, 16)).astype(dtype))
            wc = asarray(rng.standard_normal((4, 3, 3, 3)).astype(dtype))
            g = conv_geometry(16, 16, 3, 1, 1)
            y, col = O.conv2d_forward(x, wc, None, g)
            O.conv2d_backward(y, col, x.shape, wc, g, True, True, None, asarray(np.zeros((4, 3, 3, 3), dtype)))
            O.linear_forward(w, w, asarray(np.zeros(3, dtype)))


def test_the_gpu_ops_launch_every_kernel_with_matching_arguments(cuda_emu, monkeypatch):
    before = len(_launched(cuda_emu.fake))
    _every_op(cuda_emu.asarray)  # small arrays: the kernels with 32-bit index arithmetic
    monkeypatch.setattr(O, "INDEX32_LIMIT", -1)
    _every_op(cuda_emu.asarray)  # and their 64-bit twins
    calls = _launched(cuda_emu.fake)[before:]
    launched = {(f, n) for f, n, *_ in calls}
    every = {(f, n) for f in K.kernel_files() for n in K.kernel_signatures(f)}
    assert launched == every, f"kernels never launched by the GPU ops: {sorted(every - launched)}"
    for f, n, grid, block, args in calls:
        K.check_args(f, n, args)  # also checked inside every emulated launch
        if f != "gemm.cu":  # gemm.cu has launch rules of its own (tests/cuda/test_gemm.py)
            assert (grid, block) == L.launch_config(int(args[[t for t, _ in K.kernel_signatures(f)[n]]
                                                              .index("long long")]))


def test_a_forced_launch_shape_is_the_one_that_runs(cuda_emu):
    """The kernel tests force tiny launch shapes through the double; check that they really apply."""
    fakecupy.world().launch = (1, 1)
    x = cuda_emu.asarray(np.random.default_rng(0).standard_normal((2, 3, 9, 11)))
    before = len(_launched(cuda_emu.fake))
    O.im2col(x, conv_geometry(9, 11, 3, 2, 1))
    ((_, name, grid, block, args),) = _launched(cuda_emu.fake)[before:]
    assert name == "im2col_i32_f64" and (grid, block) == (1, 1) and int(args[2]) > 100


def _recorded(name, cuda_emu):
    _every_op(cuda_emu.asarray)
    return next(c for c in _launched(cuda_emu.fake) if c[1] == name)


@pytest.mark.parametrize("bad", [7, np.int64(7), np.int16(7), 7.0])
def test_a_launch_refuses_the_wrong_scalar_type_for_int(cuda_emu, bad):
    f, n, _, _, args = _recorded("im2col_f32", cuda_emu)
    i = [t for t, _ in K.kernel_signatures(f)[n]].index("int")
    with pytest.raises(K.KernelArgError, match="must be int32"):
        emu.build(f).launch(n, 1, 32, args[:i] + (bad,) + args[i + 1:])


def test_a_launch_refuses_the_wrong_type_for_long_long_and_pointers(cuda_emu):
    f, n, _, _, args = _recorded("max_pool_bwd_f64", cuda_emu)
    mod = emu.build(f)
    with pytest.raises(K.KernelArgError, match="must be int64"):
        mod.launch(n, 1, 32, args[:3] + (np.int32(args[3]),) + args[4:])
    with pytest.raises(K.KernelArgError, match="dtype int32"):  # argmax as int64
        mod.launch(n, 1, 32, args[:1] + (args[1].astype(np.int64),) + args[2:])
    with pytest.raises(K.KernelArgError, match="dtype float64"):  # dy as float32
        mod.launch(n, 1, 32, (args[0].astype(np.float32),) + args[1:])
    with pytest.raises(K.KernelArgError, match="C-contiguous"):
        mod.launch(n, 1, 32, (np.asfortranarray(args[0]),) + args[1:])
    with pytest.raises(K.KernelArgError, match="arguments"):
        mod.launch(n, 1, 32, args[:-1])


def test_unsupported_dtypes_and_sizes_are_refused_before_a_launch(cuda_emu):
    before = len(_launched(cuda_emu.fake))
    with pytest.raises(TypeError, match="float32 and float64"):
        O.im2col(cuda_emu.asarray(np.zeros((1, 1, 3, 3), np.float16)), conv_geometry(3, 3, 2))
    with pytest.raises(ValueError, match="32-bit"):
        O.im2col(cuda_emu.asarray(np.zeros((1, 1, 3, 3), np.float32)), (2, 2, 1, 1, 0, 0, 2, 2**31))
    assert len(_launched(cuda_emu.fake)) == before


def test_an_empty_batch_launches_nothing(cuda_emu):
    before = len(_launched(cuda_emu.fake))
    col = O.im2col(cuda_emu.asarray(np.zeros((0, 2, 4, 4))), conv_geometry(4, 4, 2))
    assert col.shape == (8, 0) and len(_launched(cuda_emu.fake)) == before


def test_launch_config():
    assert L.launch_config(1) == (1, 256)
    assert L.launch_config(257) == (2, 256)
    assert L.launch_config(10**12) == (L.MAX_GRID, 256)
