"""The benchmark's runners (xcnn/bench/runners.py): the synthetic batches, what ``measure`` reports
and how it summarises repeats, and the ``--cuda-graph`` runner on the CuPy double -- it trains
through replays to the eager runner's weights, or reports that capture failed; either way the
replays it reports are the replays that ran. No timed assertions."""
from __future__ import annotations

import importlib.util
import statistics

import numpy as np
import pytest
from doubles import fakecupy

from xcnn.backend import to_host
from xcnn.bench import runners
from xcnn.bench.runners import EPOCH_IMAGES, HYPER, XcnnRunner, measure, synthetic_batches

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_synthetic_batches():
    pool = synthetic_batches("seed-cnn", 7, n=3, seed=1)
    assert len(pool) == 3
    for x, t in pool:
        assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() < 1
        assert t.shape == (7,) and t.dtype == np.int64 and 0 <= t.min() and t.max() <= 9
    again = synthetic_batches("seed-cnn", 7, n=3, seed=1)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(pool, again))
    assert not np.array_equal(pool[0][0], pool[1][0])


def test_xcnn_runner_trains_the_preset_with_the_reports_settings():
    pool = synthetic_batches("mlp1", 16, n=2)
    r = XcnnRunner("mlp1", 16, "cpu", HYPER, pool)
    before = [to_host(p.data).copy() for p in r.net.parameters()]
    losses = [float(r.step()) for _ in range(6)]
    assert r.i == 6 and all(np.isfinite(losses))
    assert all(not np.array_equal(a, to_host(p.data)) for a, p in zip(before, r.net.parameters()))
    assert (r.opt.lr, r.opt.momentum, r.opt.weight_decay) == (HYPER["lr"], HYPER["momentum"], HYPER["weight_decay"])
    assert losses[-2] < losses[0]  # the same two batches again, after training on them


def test_measure_on_the_cpu_reports_every_repeat():
    row = measure("mlp1", 8, "cpu", images=20, repeats=3, warmup=1, use_torch=False, budget_s=60, pause_s=0)
    assert row["model"] == "mlp1" and row["batch"] == 8
    assert row["steps_per_repeat"] == 3 and row["repeats"] == 3  # ceil(20 / 8)
    x = row["xcnn"]
    assert len(x["epoch_s_all"]) == 3 and all(t > 0 for t in x["epoch_s_all"])
    assert x["epoch_s_min"] == min(x["epoch_s_all"]) and x["epoch_s_median"] == statistics.median(x["epoch_s_all"])
    assert x["images_per_s"] == pytest.approx(EPOCH_IMAGES / x["epoch_s_median"])
    assert "torch" not in row and "ratio_median" not in row and "xcnn-graph" not in row and "met" not in row


def test_measure_stops_repeating_past_its_budget():
    row = measure("mlp1", 8, "cpu", images=8, repeats=50, warmup=0, use_torch=False, budget_s=0.0, pause_s=0)
    assert row["repeats"] == 2  # at least two repeats, then the budget ends the run


def test_graph_runner_trains_through_replays_to_the_eager_weights(cuda_emu):
    pool = synthetic_batches("seed-cnn", 8, n=3)
    eager = XcnnRunner("seed-cnn", 8, "cuda", HYPER, pool)
    graph = XcnnRunner("seed-cnn", 8, "cuda", HYPER, pool, cuda_graph=True)
    n0 = len(fakecupy.world().graphs)
    with graph.scope():  # (the eager steps inside it use the graph's GEMM kernels too: same bits)
        for _ in range(7):
            graph.step()
            eager.step()
    captured = fakecupy.world().graphs[n0:]
    g = graph.graph
    assert g.failed is None and g.replays == sum(c.fake_launches for c in captured)  # what it reports ran
    assert len(captured) == 1 and g.replays == 5  # 2 eager warm-up steps, then 5 replays
    for a, b in zip(eager.net.parameters(), graph.net.parameters()):
        assert np.array_equal(to_host(a.data), to_host(b.data)), a.name


def test_measure_with_the_graph_runner_reports_its_replays_or_its_failure(cuda_emu):
    n0 = len(fakecupy.world().graphs)
    row = measure("seed-cnn", 8, "cuda", images=16, repeats=2, warmup=1, use_torch=False, budget_s=5, pause_s=0,
                  cuda_graph=True)
    captured = fakecupy.world().graphs[n0:]
    assert row["xcnn"]["epoch_s_median"] > 0 and row["xcnn-graph"]["epoch_s_median"] > 0
    assert row["graph_failed"] is None and row["graph_replays"] == sum(c.fake_launches for c in captured)
    # warm-up: 1 + 3 steps (2 eager, a capture and its replay), then 1 untimed + 2 timed per repeat
    assert len(captured) == 1 and row["graph_replays"] == 2 + 2 * 3


def test_measure_reports_a_failed_capture(cuda_emu):
    fakecupy.world().capture_unsupported = True
    row = measure("mlp1", 8, "cuda", images=16, repeats=1, warmup=1, use_torch=False, budget_s=5, pause_s=0,
                  cuda_graph=True)
    assert row["graph_replays"] == 0 and "StreamCaptureUnsupported" in row["graph_failed"]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0)")
def test_torch_twin_computes_what_the_xcnn_network_computes():
    import torch

    pool = synthetic_batches("seed-cnn", 4, n=1)
    xr = XcnnRunner("seed-cnn", 4, "cpu", HYPER, pool)
    twin = runners.torch_twin(xr.net, "cpu")
    x = pool[0][0]
    with torch.no_grad():
        ours = to_host(xr.net.forward(x))
        theirs = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
