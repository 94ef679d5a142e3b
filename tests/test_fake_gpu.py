"""The GPU code paths, run end to end without a GPU: CuPy replaced by a NumPy-backed stand-in whose
kernels are the real ``kernels/*.cu`` compiled for the CPU (tests/_fakecupy.py). This executes every
``xp is not np`` branch -- im2col + GEMM convolutions, the pooling, loss and SGD kernels, gradients
written in place, the device-side hyper-parameters, the trainer on ``--device cuda`` -- and compares
them with the CPU path. Real-GPU behaviour (asynchrony, streams, graphs) is the ``cuda`` cases' job.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import _emu
import _fakecupy
from xcnn import cpu_kernels
from xcnn.backend import get_device, is_device_array, to_host
from xcnn.losses import SoftmaxCrossEntropy
from xcnn.models import build_model
from xcnn.optim import SGD

from test_train import cfg, synthetic, weights

pytestmark = pytest.mark.skipif(not _emu.have_compiler(), reason=f"no C++ compiler ({_emu.CXX}) for the kernel emulation")


@pytest.fixture
def fake_gpu(monkeypatch):
    with cpu_kernels.use("numpy"), _fakecupy.install(monkeypatch) as fake:
        yield fake


def _launched() -> Counter:
    """How often each kernel has been launched so far on the emulated modules (all files)."""
    return Counter(name for mod in _emu._MODULES.values() for name, *_ in mod.launches)


def _step(net, opt, x, y):
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn(net.forward(x), y)
    net.backward(loss_fn.backward())
    grads = [to_host(p.grad).copy() for p in net.parameters()]
    opt.step()
    return float(loss), grads


@pytest.mark.parametrize("model, kernels", [
    ("seed-cnn", {"im2col_f64", "conv_output_f64", "col2im_f64", "avg_pool_fwd_f64", "avg_pool_bwd_f64",
                  "relu_bwd_f64", "softmax_xent_f64", "sgd_update_multi_f64"}),
    ("lenet5", {"im2col_f64", "conv_output_f64", "max_pool_fwd_f64", "max_pool_bwd_f64", "relu_bwd_f64",
                "softmax_xent_f64", "sgd_update_multi_f64"}),
    ("mlp2", {"relu_bwd_f64", "softmax_xent_f64", "sgd_update_multi_f64"}),
])
def test_gpu_path_training_steps_match_the_cpu(fake_gpu, model, kernels):
    """Three SGD steps in float64 on the GPU path and on the CPU: same losses, gradients and weights
    (to float64 rounding), and every kernel the model needs was launched."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 1, 28, 28))
    y = rng.integers(0, 10, 5)
    gpu = get_device("cuda")
    nets = {d: build_model(model, dtype=np.float64, seed=3, device=d) for d in ("cpu", "cuda")}
    opts = {d: SGD(nets[d].parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3) for d in nets}
    assert all(is_device_array(p.data) for p in nets["cuda"].parameters())
    before = _launched()
    for it in range(3):
        for d in nets:
            opts[d].lr = 0.1 / (it + 1)  # a schedule: the device-side lr must follow
        lc, gc = _step(nets["cpu"], opts["cpu"], x, y)
        lg, gg = _step(nets["cuda"], opts["cuda"], gpu.asarray(x), gpu.asarray(y))
        assert lg == pytest.approx(lc, rel=1e-12)
        for a, b in zip(gc, gg):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    for pc, pg in zip(nets["cpu"].parameters(), nets["cuda"].parameters()):
        np.testing.assert_allclose(to_host(pg.data), to_host(pc.data), rtol=1e-10, atol=1e-12, err_msg=pc.name)
    assert kernels <= set(_launched() - before)


def test_gpu_sgd_is_bit_identical_to_the_cpu_update(fake_gpu):
    """float32, lr changed between steps: the fused kernel reads the refreshed device buffer and rounds
    like the NumPy update."""
    gpu = get_device("cuda")
    net_c = build_model("seed-cnn", seed=1)
    net_g = build_model("seed-cnn", seed=1, device="cuda")
    opt_c = SGD(net_c.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt_g = SGD(net_g.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    rng = np.random.default_rng(2)
    for lr in (0.1, 0.05, 0.05, 0.01):
        for pc, pg in zip(net_c.parameters(), net_g.parameters()):
            g = rng.standard_normal(pc.shape).astype(np.float32)
            pc.grad[...] = g
            pg.grad[...] = gpu.asarray(g)
        opt_c.lr = opt_g.lr = lr
        opt_c.step()
        opt_g.step()
    hyper = opt_g.device_hyper(net_g.parameters()[0].data)
    assert is_device_array(hyper) and to_host(hyper).tolist() == pytest.approx([0.01, 0.9, 1e-3])
    for pc, pg in zip(net_c.parameters(), net_g.parameters()):
        np.testing.assert_array_equal(to_host(pg.data), pc.data, err_msg=pc.name)


def test_gpu_sgd_table_is_built_once_and_rebuilt_when_arrays_change(fake_gpu, tmp_path):
    net = build_model("mlp1", device="cuda")
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    for p in net.parameters():
        p.grad.fill(0.5)
    opt.step()
    first = opt._table
    opt.step()
    assert opt._table is first  # same arrays: no rebuild (and no upload inside a captured step)
    net.save(tmp_path / "c.npz", opt)
    net.load(tmp_path / "c.npz", opt)  # load may replace arrays; the table must follow
    opt.step()
    assert opt._table[0] == _table_key(net, opt)


def _table_key(net, opt):
    from xcnn import cuda_ops  # noqa: PLC0415

    ps = net.parameters()
    return cuda_ops.sgd_table_key([p.data for p in ps], [p.grad for p in ps],
                                  [opt.state["velocity"][p.name] for p in ps])


def test_trainer_on_the_gpu_path_matches_the_cpu(fake_gpu, tmp_path):
    """``fit(device='cuda')``: data on the device, steps, evaluation, checkpoints -- the same run as on
    the CPU (float64, so the two algorithms agree to rounding)."""
    arrays = synthetic(130, 40)
    kw = dict(epochs=2, batch_size=50, dtype="float64", momentum=0.9, lr_schedule="cosine")
    from xcnn.trainer import fit  # noqa: PLC0415

    a = fit(cfg(tmp_path / "cpu", device="cpu", **kw), arrays=arrays, log=lambda *m: None)
    b = fit(cfg(tmp_path / "gpu", device="cuda", **kw), arrays=arrays, log=lambda *m: None)
    assert a.status == b.status == "completed"
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=1e-9, atol=1e-11, err_msg=k)
    for ha, hb in zip(a.history, b.history):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-9)
        assert hb["test_acc"] == ha["test_acc"]


def test_graph_step_on_the_gpu_path_falls_back_when_capture_fails(fake_gpu):
    """The real CupyGraphs on the stand-in, whose stream refuses capture the way CUDA does when it
    cannot record: one warning, then eager steps with the same results as a plain eager run."""
    from xcnn.step import GraphedTrainStep, TrainStep  # noqa: PLC0415

    fake_gpu.state.capture_unsupported = True
    gpu = get_device("cuda")
    x, y, _, _ = synthetic(40, 1)
    X, Y = gpu.asarray(x), gpu.asarray(y.astype(np.int64))
    runs = {}
    said = []
    for kind in ("eager", "graph"):
        net = build_model("seed-cnn", seed=0, device="cuda")
        opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
        st = TrainStep(net, opt, SoftmaxCrossEntropy()) if kind == "eager" else \
            GraphedTrainStep(net, opt, SoftmaxCrossEntropy(), 8, log=said.append)
        with st.scope():
            for b in range(0, 40, 8):
                st(X, Y, gpu.xp.arange(b, b + 8))
        runs[kind] = (net, opt, st.take())
    assert len(said) == 1 and "could not capture" in said[0] and "StreamCaptureUnsupported" in said[0]
    assert runs["graph"][2] == runs["eager"][2] and runs["graph"][1].steps == runs["eager"][1].steps == 5
    for pe, pg in zip(runs["eager"][0].parameters(), runs["graph"][0].parameters()):
        np.testing.assert_array_equal(to_host(pg.data), to_host(pe.data))


def test_gpu_check_and_bench_time_the_gpu_path(fake_gpu):
    """The GPU timing code of scripts/gpu_check.py and xcnn.bench runs on the device path, eager and
    with the CUDA-graph step (captured and replayed on the stand-in)."""
    from test_gpu_check import _module  # noqa: PLC0415

    from xcnn import bench  # noqa: PLC0415

    gc = _module()
    layers = gc.layer_timings("cuda", [2], 1)
    assert layers and all(r["device"] == "cuda" and r["forward_ms"] > 0 for r in layers)
    rows = gc.epoch_timings("cuda", [4], 1)
    assert {r["framework"] for r in rows} == {"xcnn", "xcnn --cuda-graph"} and all(r["epoch_s"] > 0 for r in rows)
    assert all(r["graph_failed"] is None and r["graph_replays"] > 0 for r in rows if r["framework"] != "xcnn")
    row = bench.measure("seed-cnn", 4, "cuda", images=8, repeats=1, warmup=1, use_torch=False, budget_s=5,
                        pause_s=0, cuda_graph=True)
    assert row["xcnn"]["epoch_s_median"] > 0 and row["graph_failed"] is None and row["graph_replays"] > 0


def _graphed_vs_eager(model, batch, n, epochs, between=None):
    """Train ``model`` eagerly and with the real CupyGraphs step (on the stand-in's recorded graphs) over
    ``epochs`` passes of ``n`` images in order, lr on a cosine schedule; returns both (net, opt, sums)."""
    from xcnn.step import GraphedTrainStep, TrainStep  # noqa: PLC0415

    gpu = get_device("cuda")
    x, y, _, _ = synthetic(n, 1)
    X, Y = gpu.asarray(x), gpu.asarray(y.astype(np.int64))
    total = epochs * -(-n // batch)
    runs = {}
    for kind in ("eager", "graph"):
        net = build_model(model, seed=0, device="cuda")
        opt = SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        st = TrainStep(net, opt, SoftmaxCrossEntropy()) if kind == "eager" else \
            GraphedTrainStep(net, opt, SoftmaxCrossEntropy(), batch, log=pytest.fail)
        sums, it = [], 0
        for _ in range(epochs):
            with st.scope():
                for b in range(0, n, batch):
                    opt.lr = 0.1 * 0.5 * (1 + np.cos(np.pi * it / total))
                    st(X, Y, gpu.xp.arange(b, min(b + batch, n)))
                    it += 1
                sums.append(st.take())
            if between is not None:
                between(net)
        runs[kind] = (net, opt, sums, st)
    return runs


@pytest.mark.parametrize("model", ["seed-cnn", "lenet5", "mlp1"])
def test_cuda_graph_replays_equal_eager_steps(fake_gpu, model):
    """The real CupyGraphs + GraphedTrainStep against eager steps, with CUDA-graph semantics emulated:
    the capture records and executes nothing, replays rerun the recorded operations on the recorded
    arrays with the scalars they had. Bit-identical weights, velocities and running sums across a
    per-step cosine lr, a smaller last batch and an evaluation pass between epochs -- a value frozen
    at capture, a buffer reallocated after it or a host read inside it would all break this."""
    seen = []
    runs = _graphed_vs_eager(model, 8, 8 * 4 + 3, 3, between=lambda net: seen.append(to_host(net.forward(
        get_device("cuda").asarray(synthetic(20, 1, seed=5)[0])))))
    (ne, oe, se, _), (ng, og, sg, st) = runs["eager"], runs["graph"]
    assert st.failed is None and st.graph is not None and st.replays == 3 * 4 - 2
    assert st.graph.launches == st.replays and len(st.graph.ops) > 20
    assert se == sg and oe.steps == og.steps == 15
    for pe, pg in zip(ne.parameters(), ng.parameters()):
        np.testing.assert_array_equal(to_host(pg.data), to_host(pe.data), err_msg=pe.name)
        np.testing.assert_array_equal(to_host(og.state["velocity"][pg.name]), to_host(oe.state["velocity"][pe.name]))
    for a, b in zip(seen[:3], seen[3:]):
        np.testing.assert_array_equal(a, b)


def test_trainer_cuda_graph_run_equals_the_eager_run(fake_gpu, tmp_path):
    """``fit(device='cuda', cuda_graph=True)`` -- scopes per epoch, host reads only at log points,
    checkpoints and evaluation between graph replays -- writes the same run as without the graph."""
    from xcnn.trainer import fit  # noqa: PLC0415

    arrays = synthetic(130, 40)
    kw = dict(device="cuda", epochs=2, batch_size=50, momentum=0.9, lr_schedule="cosine", log_every=2)
    said = []
    a = fit(cfg(tmp_path / "eager", **kw), arrays=arrays, log=said.append)
    b = fit(cfg(tmp_path / "graph", cuda_graph=True, **kw), arrays=arrays, log=said.append)
    assert not [m for m in said if "warning" in m]  # the capture worked
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_array_equal(wb[k], wa[k], err_msg=k)
    assert (a.out / "metrics_iter.csv").read_text() == (b.out / "metrics_iter.csv").read_text()
    assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in b.history]
    import json  # noqa: PLC0415

    # 130 images in batches of 50: two full batches an epoch, the first two of the run are warm-up
    assert json.loads((b.out / "metrics.json").read_text())["cuda_graph"] == {"replays": 2, "capture_failed": None}
    assert json.loads((a.out / "metrics.json").read_text())["cuda_graph"] is None


@pytest.mark.parametrize("model, ops", [("seed-cnn", 37), ("lenet5", 51), ("mlp2", 28)])
def test_device_operations_per_training_step(fake_gpu, model, ops):
    """How many device operations (about one kernel launch each) a full training step records, read
    from a captured graph: the figure README.md quotes for seed-cnn. Not a timing; a change here is a
    change in launch overhead and should be deliberate (update the README with it)."""
    from xcnn.step import GraphedTrainStep  # noqa: PLC0415

    gpu = get_device("cuda")
    net = build_model(model, device="cuda")
    st = GraphedTrainStep(net, SGD(net.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3),
                          SoftmaxCrossEntropy(), 8, log=pytest.fail)
    x, y, _, _ = synthetic(8, 1)
    X, Y = gpu.asarray(x), gpu.asarray(y.astype(np.int64))
    for _ in range(st.warmup + 1):
        st(X, Y, gpu.xp.arange(8))
    assert len(st.graph.ops) == ops


def test_interrupted_cuda_graph_run_resumes_bit_identical(fake_gpu, tmp_path):
    """Ctrl-C in the middle of a --cuda-graph epoch (inside the graph stream's scope), then --resume
    (a new graph, new warm-up steps): the same final weights as an uninterrupted run."""
    from test_train import _interrupt_at  # noqa: PLC0415

    from xcnn.trainer import fit  # noqa: PLC0415

    arrays = synthetic(330, 40)
    kw = dict(device="cuda", epochs=2, batch_size=50, momentum=0.9, lr_schedule="cosine", cuda_graph=True)
    quiet = lambda *m: None  # noqa: E731
    full = fit(cfg(tmp_path / "a", **kw), arrays=arrays, log=quiet)
    part = fit(cfg(tmp_path / "b", **kw), arrays=arrays, log=quiet, progress=_interrupt_at(2))
    assert part.status == "interrupted"
    done = fit(cfg(tmp_path / "b", **kw), arrays=arrays, resume=True, log=quiet)
    assert done.status == "completed"
    wa, wb = weights(full.out / "checkpoint.npz"), weights(done.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_array_equal(wb[k], wa[k], err_msg=k)
