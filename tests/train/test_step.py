"""Training steps (xcnn/train/step.py): the eager step, and the CUDA-graph step -- the real
GraphedTrainStep and CupyGraphs, on the CuPy double (whose stream capture has CUDA-graph semantics:
it records and executes nothing; replays rerun the recorded operations on the recorded arrays with
the scalars they had) and on a real GPU where one is usable. Every graph test asserts that the graph
was captured and replayed: a fallback to eager steps cannot pass them."""
from __future__ import annotations

import math

import numpy as np

from doubles import fakecupy
import pytest
from helpers import synthetic

from xcnn.backend import get_device, to_host
from xcnn.cuda import gemm
from xcnn.errors import ConfigError, DeviceError
from xcnn.nn import SGD, Adam, SoftmaxCrossEntropy, build_model
from xcnn.train.step import GraphedTrainStep, TrainStep, make_train_step


def _data(device, n, seed=1):
    x, y, _, _ = synthetic(n, 1, seed=seed)
    return device.asarray(x), device.asarray(y.astype(np.int64))


def _cosine(it, total):
    return 0.1 * 0.5 * (1 + math.cos(math.pi * it / total))


def _graphed_vs_eager(device, model, batch, n, epochs, between=None):
    """Train ``model`` eagerly and with the graph step over ``epochs`` passes of ``n`` images in order
    (the last batch smaller), lr on a per-step cosine schedule; returns both (net, opt, sums, step).
    The eager run uses our GEMM kernels, as a graph run does (cuBLAS sums in another order)."""
    X, Y = _data(device, n)
    total = epochs * -(-n // batch)
    xp = device.xp
    runs = {}
    for kind in ("eager", "graph"):
        net = build_model(model, seed=0, device=device)
        opt = SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        st = TrainStep(net, opt, SoftmaxCrossEntropy()) if kind == "eager" else \
            GraphedTrainStep(net, opt, SoftmaxCrossEntropy(), batch, log=pytest.fail)
        sums, it = [], 0
        for _ in range(epochs):
            with st.scope(), gemm.using("kernels"):
                for b in range(0, n, batch):
                    opt.lr = _cosine(it, total)
                    st(X, Y, xp.arange(b, min(b + batch, n)))
                    it += 1
                sums.append(st.take())
            if between is not None:
                between(net)
        runs[kind] = (net, opt, sums, st)
    return runs


def _assert_same(runs):
    (ne, oe, se, _), (ng, og, sg, _) = runs["eager"], runs["graph"]
    assert se == sg and oe.steps == og.steps
    for pe, pg in zip(ne.parameters(), ng.parameters()):
        np.testing.assert_array_equal(to_host(pg.data), to_host(pe.data), err_msg=pe.name)
        np.testing.assert_array_equal(to_host(og.state["velocity"][pg.name]), to_host(oe.state["velocity"][pe.name]))


@pytest.mark.parametrize("model", ["seed-cnn", "lenet5", "mlp1"])
def test_cuda_graph_replays_equal_eager_steps(cuda_emu, model):
    """Bit-identical weights, velocities and running sums across a per-step cosine lr, a smaller last
    batch and an evaluation pass between epochs -- a value frozen at capture, a buffer reallocated
    after it or a host read inside it would all break this."""
    seen = []
    dev = cuda_emu.device
    probe = dev.asarray(synthetic(20, 1, seed=5)[0])
    runs = _graphed_vs_eager(dev, model, 8, 8 * 4 + 3, 3, between=lambda net: seen.append(to_host(net.forward(probe))))
    st = runs["graph"][3]
    assert st.failed is None and st.graph is not None and st.replays == 3 * 4 - 2
    assert st.graph.fake_launches == st.replays and len(st.graph.fake_ops) >= 15
    assert runs["eager"][1].steps == 15
    _assert_same(runs)
    for a, b in zip(seen[:3], seen[3:]):
        np.testing.assert_array_equal(a, b)


def test_a_failed_capture_warns_once_and_continues_eagerly(cuda_emu):
    """The double's stream refuses capture the way CUDA does when it cannot record: one warning, then
    eager steps with the same results as a plain eager run; ``failed`` says why, ``replays`` is 0."""
    fakecupy.world().capture_unsupported = True
    dev = cuda_emu.device
    X, Y = _data(dev, 40)
    said, runs = [], {}
    for kind in ("eager", "graph"):
        net = build_model("seed-cnn", seed=0, device=dev)
        opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
        st = TrainStep(net, opt, SoftmaxCrossEntropy()) if kind == "eager" else \
            GraphedTrainStep(net, opt, SoftmaxCrossEntropy(), 8, log=said.append)
        with st.scope(), gemm.using("kernels"):
            for b in range(0, 40, 8):
                st(X, Y, dev.xp.arange(b, b + 8))
        runs[kind] = (net, opt, st.take(), st)
    assert len(said) == 1 and "could not capture" in said[0] and "StreamCaptureUnsupported" in said[0]
    assert runs["graph"][3].replays == 0 and "StreamCaptureUnsupported" in runs["graph"][3].failed
    assert runs["graph"][2] == runs["eager"][2] and runs["graph"][1].steps == runs["eager"][1].steps == 5
    for pe, pg in zip(runs["eager"][0].parameters(), runs["graph"][0].parameters()):
        np.testing.assert_array_equal(to_host(pg.data), to_host(pe.data))


@pytest.mark.parametrize("model, ops", [("seed-cnn", 38), ("lenet5", 50), ("mlp2", 26)])
def test_device_operations_per_training_step(cuda_emu, model, ops):
    """How many device operations (about one kernel launch each) a full training step records, read
    from a captured graph on the double. A change detector, not a property of CUDA: a change here is
    a change in launch overhead and should be deliberate."""
    dev = cuda_emu.device
    net = build_model(model, device=dev)
    st = GraphedTrainStep(net, SGD(net.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3),
                          SoftmaxCrossEntropy(), 8, log=pytest.fail)
    X, Y = _data(dev, 8)
    for _ in range(st.warmup + 1):
        st(X, Y, dev.xp.arange(8))
    assert st.replays == 1 and len(st.graph.fake_ops) == ops


def test_graph_step_refuses_adam_the_cpu_and_no_warmup(cuda_emu):
    net = build_model("seed-cnn", seed=0)
    with pytest.raises(DeviceError, match="need a CUDA device, but the network is on cpu.*--device cuda"):
        GraphedTrainStep(net, SGD(net.parameters()), SoftmaxCrossEntropy(), 8)
    net.to("cuda")
    with pytest.raises(ConfigError, match="SGD only"):
        GraphedTrainStep(net, Adam(net.parameters()), SoftmaxCrossEntropy(), 8)
    with pytest.raises(ConfigError, match="warmup must be >= 1"):
        GraphedTrainStep(net, SGD(net.parameters()), SoftmaxCrossEntropy(), 8, warmup=0)
    assert type(make_train_step(net, SGD(net.parameters()), SoftmaxCrossEntropy(), 8)) is TrainStep


def test_take_returns_and_clears_the_running_sums(backend):
    net = build_model("seed-cnn", device=backend.device)
    loss = SoftmaxCrossEntropy()
    X, Y = _data(backend.device, 16)
    st = TrainStep(net, SGD(net.parameters(), lr=0.1), loss)
    assert st.take() == (0.0, 0)
    logits = net.forward(X[:8])
    ref_loss = float(loss.forward(logits, Y[:8])) * 8
    ref_correct = int((logits.argmax(axis=1) == Y[:8]).sum())
    st(X, Y, backend.device.xp.arange(8))
    got = st.take()
    assert got[1] == ref_correct and got[0] == pytest.approx(ref_loss, rel=1e-6)
    assert st.take() == (0.0, 0)


# ---------------------------------------------------------------------------- a real GPU

def test_cuda_graph_replays_equal_eager_steps_on_a_gpu():
    """Real capture and replay (skipped without a GPU): as above, plus a big evaluation pass between
    epochs whose allocations must not land in memory the graph writes to."""
    from xcnn.backend import gpu_unavailable_reason  # noqa: PLC0415

    reason = gpu_unavailable_reason(0)
    if reason is not None:
        pytest.skip(f"no usable GPU: {reason}")
    dev = get_device("cuda")
    probe = dev.asarray(synthetic(1000, 1, seed=2)[0])
    seen = []
    runs = _graphed_vs_eager(dev, "seed-cnn", 8, 8 * 5 + 3, 3, between=lambda net: seen.append(to_host(net.forward(probe))))
    st = runs["graph"][3]
    assert st.failed is None and st.replays == 13
    _assert_same(runs)
    for a, b in zip(seen[:3], seen[3:]):
        np.testing.assert_array_equal(a, b)

