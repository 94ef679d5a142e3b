"""The benchmark CLI writes the expected report, and the chunked CPU paths it relies on equal
the whole-batch ones (and naive loops). No timed assertions: speed is the benchmark's business."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close
from test_functional import naive_conv, naive_conv_backward, naive_pool

from xcnn import cpu_kernels
from xcnn import functional as F
from xcnn.layers import AvgPool2D, Conv2D

ROOT = Path(__file__).resolve().parent.parent
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_bench_quick_writes_json_and_markdown(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "xcnn.bench", "--quick", "--out", str(tmp_path), "--models", "seed-cnn,mlp1",
           "--batches", "8,16", "--profile"]
    if not HAS_TORCH:
        cmd.append("--no-torch")
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads((tmp_path / "bench-cpu.json").read_text())
    for key in ("started", "device", "spec", "command", "runs", "memory", "seconds"):
        assert key in res
    run = res["runs"][0]
    m = run["machine"]
    for key in ("cpu", "cores", "numpy", "threads", "env", "torch"):
        assert key in m
    assert m["threads"] == 2
    assert [(r["model"], r["batch"]) for r in run["rows"]] == [("seed-cnn", 8), ("seed-cnn", 16),
                                                              ("mlp1", 8), ("mlp1", 16)]
    for r in run["rows"]:
        x = r["xcnn"]
        assert 0 < x["epoch_s_min"] <= x["epoch_s_median"] and x["images_per_s"] > 0
        assert len(x["epoch_s_all"]) == r["repeats"] >= 1
        if HAS_TORCH:
            assert r["torch"]["epoch_s_median"] > 0 and r["ratio_median"] > 0 and isinstance(r["met"], bool)
        else:
            assert "torch" not in r
    assert run["profiles"] and {o["op"] for o in run["profiles"][0]["ops"]} >= {"pooling", "optimizer", "convolution (compiled kernels, or GEMMs + glue)"}
    xm = [r for r in res["memory"] if r["framework"] == "xcnn"][0]
    assert xm["peak_rss_bytes"] >= xm["peak_rss_before_training_bytes"] > 0
    md = (tmp_path / "bench-cpu.md").read_text()
    assert "| model | batch |" in md and "Peak memory" in md and "## Machine" in md


def test_bench_graph_runner_and_gpu_targets_in_the_report(tmp_path, monkeypatch):
    """The --cuda-graph runner of a CUDA benchmark, on the NumPy stand-in of tests/test_step.py: it
    trains through replays, and the report shows its row, the GPU targets and the images/s line."""
    from test_step import use_fake_graphs

    from xcnn import bench

    use_fake_graphs(monkeypatch)
    row = bench.measure("seed-cnn", 8, "cpu", images=16, repeats=2, warmup=1, use_torch=False, budget_s=5,
                        pause_s=0, cuda_graph=True)
    assert row["xcnn-graph"]["epoch_s_median"] > 0 and row["graph_failed"] is None and row["graph_replays"] > 4
    # the same row as a CUDA run would report it, with a stand-in PyTorch time
    row = dict(row, torch=dict(row["xcnn"]), ratio_median=0.9, ratio_min=0.9, ratio_graph_median=0.5,
               target=bench.GPU_TARGETS[("seed-cnn", 50)], met=True, batch=50)
    big = dict(row, batch=1024, target=None, met=False)
    big["xcnn-graph"] = dict(big["xcnn-graph"], images_per_s=2.5e6)
    machine = bench.machine_info(2)
    res = {"device": "cuda", "started": "now", "command": "python -m xcnn.bench --device cuda", "seconds": 1,
           "spec": {"images": 16, "repeats": 2, "threads": 2}, "memory": [], "notes": [],
           "runs": [{"label": "Training speed", "torch_skipped": None, "machine": machine, "rows": [row, big]}]}
    bench.write_markdown(tmp_path / "b.md", res)
    md = (tmp_path / "b.md").read_text()
    assert "| seed-cnn, --cuda-graph | 50 |" in md and "| 0.50 |" in md
    assert "- met: seed-cnn @ 50" in md
    assert "images/s at batch 1024: 2,500,000 (target >= 1,000,000: met)" in md


@pytest.fixture
def numpy_path():
    with cpu_kernels.use("numpy"):
        yield


@pytest.fixture(params=[1, 2, 3], ids=["1thread", "2threads", "3threads"])
def tiny_chunks(monkeypatch, request):
    """Force a chunk of one sample, so every batch below is cut into several chunks, shared out
    over 1-3 threads even for tiny arrays."""
    monkeypatch.setattr(F, "CHUNK_BYTES", 1)
    monkeypatch.setattr(F, "CPU_THREADS", request.param)
    monkeypatch.setattr(F, "PARALLEL_MIN_ELEMENTS", 1)
    with cpu_kernels.use("numpy"):  # these knobs belong to the pure-NumPy path
        yield F


@pytest.mark.parametrize("rows", [True, False], ids=["rowcols", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geom", [(3, 2, 7, 6, 4, 3, 1, 1), (5, 1, 9, 9, 3, 5, 2, 2), (2, 3, 6, 5, 2, 1, 1, 0),
                                  (4, 2, 8, 8, 3, 3, 3, 2), (3, 1, 5, 8, 2, 5, 1, 2), (2, 2, 6, 4, 3, (3, 1), 1, 0)])
def test_chunked_conv_equals_whole_batch_and_naive(tiny_chunks, monkeypatch, rows, dtype, geom):
    N, C, H, W, O, k, s, p = geom
    monkeypatch.setattr(F, "ROW_COLUMNS", rows)
    kh, kw = F.pair(k)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((O, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    ws = F.Workspace()
    y, col = F.conv2d_forward(x, w, b, s, p, ws=ws)
    assert_close(y, naive_conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), s, p), dtype)
    if isinstance(col, F.RowColumns):
        assert rows and s == 1
    else:  # the chunk-filled columns equal a whole-batch im2col
        assert_close(col, F.im2col(x, (kh, kw), s, p), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    if rows:  # dy in the conv's own CNHW memory order, as the layers hand it back
        dy = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    dx, dw, db = F.conv2d_backward(dy, col, x.shape, w, s, p, ws=ws)
    rdx, rdw, rdb = naive_conv_backward(x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64), s, p)
    assert_close(dx, rdx, dtype)
    assert_close(dw, rdw, dtype)
    assert_close(db, rdb, dtype)
    # the same after a second forward through the same workspace (reused, bordered buffers);
    # dx is a view of a workspace buffer, valid until the next backward (as col2im's always was)
    dx, dw = dx.copy(), dw.copy()
    y2, col2 = F.conv2d_forward(x[::-1].copy(), w, b, s, p, ws=ws)
    np.testing.assert_allclose(y2, y[::-1], rtol=1e-12, atol=1e-12)
    dx2, dw2, _ = F.conv2d_backward(dy[::-1].copy(), col2, x.shape, w, s, p, ws=ws)
    np.testing.assert_allclose(dx2, dx[::-1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw2, dw, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(F, "CHUNK_BYTES", 1 << 30)  # one chunk: the whole batch
    monkeypatch.setattr(F, "SERIAL_GEMM_MNK", 1 << 62)
    y1, _ = F.conv2d_forward(x, w, b, s, p)
    np.testing.assert_allclose(y, y1, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-6)


@pytest.mark.parametrize("rows", [True, False], ids=["rowcols", "strided"])
def test_conv_layer_reuses_workspace_across_steps_with_chunks(tiny_chunks, monkeypatch, rows):
    """Steps of different batch sizes through one layer (shared workspace, chunked fill) match naive loops."""
    monkeypatch.setattr(F, "ROW_COLUMNS", rows)
    rng = np.random.default_rng(2)
    layer = Conv2D(2, 3, 3, padding=1, rng=np.random.default_rng(0), dtype=np.float64)
    for n in (3, 5, 3):
        x = rng.standard_normal((n, 2, 6, 6))
        y = layer.forward(x)
        ref = naive_conv(x, layer.weight.data, layer.bias.data, 1, 1)
        np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
        rdx, rdw, _ = naive_conv_backward(x, layer.weight.data, dy, 1, 1)
        np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.weight.grad, rdw, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("geom", [(2, 2, 0), (3, 2, 1), (3, 3, 0), (2, 1, 0), (1, 1, 0), (3, 1, 1)])
def test_threaded_avg_pool_and_relu_match_naive(tiny_chunks, geom):
    """The sample-split (threaded) pooling and ReLU paths against naive loops, odd sizes included."""
    k, s, p = geom
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3, 7, 6))
    y = F.avg_pool2d_forward(x, k, s, p)
    np.testing.assert_allclose(y, naive_pool(x, k, s, p, "avg")[0], rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = F.avg_pool2d_backward(dy, x.shape, k, s, p)
    # adjoint check: <avgpool(x), dy> == <x, avgpool^T(dy)>
    np.testing.assert_allclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12)
    r = F.relu_forward(x)
    np.testing.assert_array_equal(r, np.where(x > 0, x, 0))
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(F.relu_backward(g, r), np.where(r > 0, g, 0))


@pytest.mark.parametrize("order", ["nchw", "cnhw"])
@pytest.mark.usefixtures("numpy_path")
def test_avg_pool_keeps_memory_order_and_values(order):
    """The NumPy path's pooling keeps a CNHW-ordered input's order (what its conv hands it) and still
    computes the same."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 8, 6))
    if order == "cnhw":
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    pool = AvgPool2D(2)
    y = pool.forward(x)
    np.testing.assert_allclose(y, naive_pool(x, 2, 2, 0, "avg")[0], rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    if order == "cnhw":
        dy = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    dx = pool.backward(dy)
    np.testing.assert_allclose(dx, np.repeat(np.repeat(dy, 2, axis=2), 2, axis=3) / 4, rtol=1e-12, atol=1e-12)
    if order == "cnhw":
        assert dx.transpose(1, 0, 2, 3).flags.c_contiguous  # conv backward reads it without a copy


@pytest.mark.parametrize("shape", [(1024, 392, 10), (10, 1024, 392), (1024, 10, 392), (7, 5, 3), (200, 300, 400)])
def test_matmul_cpu_pieces_equal_one_product(monkeypatch, shape):
    """Skinny products cut along M or K (forced small pieces) equal one float64 product."""
    monkeypatch.setattr(F, "SERIAL_GEMM_MNK", 257)
    M, K, N = shape
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    ref = a @ b
    np.testing.assert_allclose(F.matmul_cpu(a, b), ref, rtol=1e-12, atol=1e-10)
    out = np.full((M, N), np.nan)
    assert F.matmul_cpu(a.T.copy().T, b, out=out) is out  # a non-contiguous view works too
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(F.matmul_cpu(a, b, accumulate_k=False), ref, rtol=1e-12, atol=1e-10)


def test_chunked_linear_and_conv_training_step_matches_unchunked(monkeypatch):
    """One SGD step of seed-cnn with tiny forced chunks equals the step with whole-batch GEMMs."""
    from xcnn.models import build_model
    from xcnn.optim import SGD

    rng = np.random.default_rng(5)
    x = rng.random((6, 1, 28, 28))
    t = rng.integers(0, 10, 6)
    results = []
    for chunk, mnk, threads, rows in ((1, 257, 2, True), (1, 257, 3, False), (1 << 30, 1 << 62, 1, False)):
        monkeypatch.setattr(F, "ROW_COLUMNS", rows)
        monkeypatch.setattr(F, "CHUNK_BYTES", chunk)
        monkeypatch.setattr(F, "SERIAL_GEMM_MNK", mnk)
        monkeypatch.setattr(F, "CPU_THREADS", threads)
        monkeypatch.setattr(F, "PARALLEL_MIN_ELEMENTS", 1)
        net = build_model("seed-cnn", dtype=np.float64, seed=0)
        opt = SGD(net.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)
        for _ in range(2):
            loss, g = F.softmax_cross_entropy(net.forward(x), t)
            opt.zero_grad()
            net.backward(g)
            opt.step()
        results.append([p.data.copy() for p in net.parameters()])
    for other in results[:-1]:
        for a, b in zip(other, results[-1]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
