"""The NumPy convolution cut into chunks and blocks (xcnn/cpu/numpy_conv.py, and for stride 1 the
row-columns path of xcnn/cpu/numpy_rowconv.py it hands over to): chunked, blocked and threaded
results equal naive loops and the whole batch at once, the workspace is reused safely across
calls and batch sizes, and a chunked training step equals an unchunked one.

The knobs are :class:`xcnn.cpu.config.CpuConfig` fields, set with ``config.using(...)``."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close
from references import naive_conv, naive_conv_backward, out_size

from xcnn import ops
from xcnn.cpu import config
from xcnn.cpu.numpy_rowconv import RowColumns
from xcnn.nn.layers import AvgPool2D, Conv2D, Flatten, Linear, ReLU
from xcnn.nn.models import build_model
from xcnn.nn.network import Network
from xcnn.nn.optim import SGD

#: (N, C, H, W, O, k, s, p): stride 1 takes the row-columns path, other strides the strided one
ROWCOLS = [(3, 2, 7, 6, 4, 3, 1, 1), (2, 3, 6, 5, 2, 1, 1, 0), (3, 1, 5, 8, 2, 5, 1, 2), (2, 2, 6, 4, 3, (3, 1), 1, 0)]
STRIDED = [(5, 1, 9, 9, 3, 5, 2, 2), (4, 2, 8, 8, 3, 3, 3, 2), (3, 2, 7, 6, 4, 3, 2, 1), (2, 3, 6, 5, 2, 1, 2, 0),
           (3, 2, 6, 4, 3, (3, 1), 2, 0)]
GEOMS = [pytest.param(g, id=f"rowcols-{i}") for i, g in enumerate(ROWCOLS)] + \
        [pytest.param(g, id=f"strided-{i}") for i, g in enumerate(STRIDED)]


@pytest.fixture(params=[1, 2, 3], ids=["1thread", "2threads", "3threads"])
def threads(request):
    return request.param


def _column_bytes(geom, itemsize):
    """Bytes of one sample's columns: ``C*KH*KW`` rows of ``OH*OW`` (strided) or ``OH*Wp`` (row columns)."""
    _, C, H, W, _, k, s, p = geom
    kh, kw = ops.pair(k)
    OH, OW = out_size(H, kh, s, p), out_size(W, kw, s, p)
    return C * kh * kw * OH * (W + 2 * p if s == 1 else OW) * itemsize


def _chunking(mode, threads, sample_bytes=0):
    """``one-sample``: every chunk and block one sample; ``blocks``: blocks of 2 one-sample GEMM chunks
    (``chunk_bytes`` fits 2.5 samples' columns); both shared out over ``threads`` however small the arrays."""
    chunk = 1 if mode == "one-sample" else 2 * sample_bytes + sample_bytes // 2
    return config.using(kernels="numpy", chunk_bytes=chunk, serial_gemm_mnk=1, threads=threads,
                        parallel_min_elements=1)


@pytest.mark.parametrize("mode", ["one-sample", "blocks"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", GEOMS)
def test_chunked_conv_equals_whole_batch_and_naive(threads, mode, dtype, geom):
    N, C, H, W, O, k, s, p = geom
    kh, kw = ops.pair(k)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((O, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    with _chunking(mode, threads, _column_bytes(geom, np.dtype(dtype).itemsize)):
        ws = ops.Workspace()
        y, cache = ops.conv2d_forward(x, w, b, s, p, ws=ws)
        assert cache.backend == "numpy"
        assert_close(y, naive_conv(x64, w64, b.astype(np.float64), s, p), dtype)
        if s == 1:  # the row-columns path serves stride 1, and only it
            assert isinstance(cache.data, RowColumns)
        else:  # the chunk-filled columns equal a whole-batch im2col
            assert isinstance(cache.data, np.ndarray)
            with config.using(chunk_bytes=1 << 30, serial_gemm_mnk=1 << 62, threads=1):
                assert_close(cache.data, ops.im2col(x, (kh, kw), s, p), dtype)
        dy = rng.standard_normal(y.shape).astype(dtype)
        if s == 1:  # dy in the conv's own CNHW memory order, as the layers hand it back
            dy = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        dx, dw, db = ops.conv2d_backward(dy, cache, w, ws=ws)
        rdx, rdw, rdb = naive_conv_backward(x64, w64, dy.astype(np.float64), s, p)
        assert_close(dx, rdx, dtype)
        assert_close(dw, rdw, dtype)
        assert_close(db, rdb, dtype)
        # the same after a second forward through the same workspace (reused, bordered buffers);
        # dx is a view of a workspace buffer, valid until the next backward (as col2im's always was)
        dx, dw = dx.copy(), dw.copy()
        y2, cache2 = ops.conv2d_forward(x[::-1].copy(), w, b, s, p, ws=ws)
        np.testing.assert_allclose(y2, y[::-1], rtol=1e-12, atol=1e-12)
        dx2, dw2, _ = ops.conv2d_backward(dy[::-1].copy(), cache2, w, ws=ws)
        np.testing.assert_allclose(dx2, dx[::-1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dw2, dw, rtol=1e-5, atol=1e-5)
        with config.using(chunk_bytes=1 << 30, serial_gemm_mnk=1 << 62, threads=1):  # one chunk: the whole batch
            y1, _ = ops.conv2d_forward(x, w, b, s, p)
        np.testing.assert_allclose(y, y1, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2], ids=["rowcols", "strided"])
def test_conv_layer_reuses_workspace_across_steps_with_chunks(threads, stride):
    """Steps of different batch sizes through one layer (shared workspace, chunked fill) match naive loops."""
    rng = np.random.default_rng(2)
    layer = Conv2D(2, 3, 3, stride=stride, padding=1, rng=np.random.default_rng(0), dtype=np.float64)
    with _chunking("one-sample", threads):
        for n in (3, 5, 3):
            x = rng.standard_normal((n, 2, 6, 6))
            y = layer.forward(x)
            ref = naive_conv(x, layer.weight.data, layer.bias.data, stride, 1)
            np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
            dy = rng.standard_normal(y.shape)
            dx = layer.backward(dy)
            rdx, rdw, rdb = naive_conv_backward(x, layer.weight.data, dy, stride, 1)
            np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(layer.weight.grad, rdw, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(layer.bias.grad, rdb, rtol=1e-10, atol=1e-12)


def _strided_net():
    rng = np.random.default_rng(0)
    return Network([Conv2D(1, 4, 5, stride=2, padding=2, rng=rng, dtype=np.float64), ReLU(), AvgPool2D(2),
                    Conv2D(4, 6, 3, stride=3, padding=1, rng=rng, dtype=np.float64), ReLU(), Flatten(),
                    Linear(6 * 3 * 3, 10, rng=rng, dtype=np.float64)], name="strided")


@pytest.mark.parametrize("model", ["seed-cnn", "strided"])
def test_chunked_linear_and_conv_training_step_matches_unchunked(model):
    """Two SGD steps with tiny forced chunks (convolutions and skinny GEMMs cut up, 2 or 3 threads)
    equal the steps with whole-batch GEMMs on one thread."""
    rng = np.random.default_rng(5)
    x = rng.random((6, 1, 28, 28))
    t = rng.integers(0, 10, 6)
    results = []
    for chunk, mnk, threads in ((1, 257, 2), (1, 257, 3), (1 << 30, 1 << 62, 1)):
        with config.using(kernels="numpy", chunk_bytes=chunk, serial_gemm_mnk=mnk, threads=threads,
                          parallel_min_elements=1):
            net = build_model("seed-cnn", dtype=np.float64, seed=0) if model == "seed-cnn" else _strided_net()
            opt = SGD(net.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
            for _ in range(2):
                loss, g = ops.softmax_cross_entropy(net.forward(x), t)
                opt.zero_grad()
                net.backward(g)
                opt.step()
            results.append([p.data.copy() for p in net.parameters()])
    first = [p.data for p in (build_model("seed-cnn", dtype=np.float64, seed=0) if model == "seed-cnn"
                              else _strided_net()).parameters()]
    assert any(not np.allclose(a, b) for a, b in zip(first, results[-1]))  # the steps changed the weights
    for other in results[:-1]:
        for a, b in zip(other, results[-1]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
