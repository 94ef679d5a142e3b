"""Training steps: the eager step and the CUDA-graph step give the same weights bit for bit.

Without a GPU the graph step runs on a NumPy stand-in for its CUDA side (``FakeGraphs``): capture
records the step without running it, as CUDA does, and each launch runs what was recorded. That
checks the bookkeeping around the graph -- static buffers, warm-up steps, the optimizer's step
count, the smaller last batch, the fallback when capture fails, the trainer's use of it. The
``cuda`` cases run the real capture and replay where a GPU is usable.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from xcnn import step as S
from xcnn.backend import DeviceError, get_array_module, to_host
from xcnn.losses import SoftmaxCrossEntropy
from xcnn.models import build_model
from xcnn.optim import SGD, Adam

from helpers import BACKENDS, dev
from test_train import cfg, synthetic, weights


class FakeGraph:
    def __init__(self, body, owner):
        self.body, self.owner = body, owner

    def launch(self):
        self.owner.launches += 1
        self.body()


class FakeGraphs:
    """NumPy stand-in for :class:`xcnn.step.CupyGraphs`. Like a CUDA capture, :meth:`capture` runs the
    step's Python (its side effects on Python objects happen) but none of its array work: the arrays
    named by ``arrays()`` are put back as they were."""

    def __init__(self, like=None, fail: str | None = None, arrays=None):
        self.fail, self.arrays = fail, arrays
        self.captures = self.launches = self.private = self.scopes = 0

    @contextlib.contextmanager
    def scope(self):
        self.scopes += 1
        yield

    @contextlib.contextmanager
    def private_memory(self):
        self.private += 1
        yield

    def capture(self, body):
        self.captures += 1
        if self.fail:
            raise RuntimeError(self.fail)
        live = [a for a in (self.arrays() if self.arrays else []) if a is not None]
        saved = [a.copy() for a in live]
        body()
        for a, b in zip(live, saved):
            a[...] = b
        return FakeGraph(body, self)

    def launch(self, graph):
        graph.launch()

    def take(self, X, idx, out):
        np.take(X, idx, axis=0, out=out)


def use_fake_graphs(monkeypatch) -> list:
    """Make every GraphedTrainStep built from here on use a :class:`FakeGraphs` that knows which arrays
    its step writes; returns the list of the stand-ins made."""
    made = []
    init = S.GraphedTrainStep.__init__

    def fake(like):
        made.append(FakeGraphs())
        return made[-1]

    def init_and_wire(self, *a, **kw):
        init(self, *a, **kw)
        self.backend.arrays = lambda: _device_state(self.net, self.opt, self)

    monkeypatch.setattr(S, "CupyGraphs", fake)
    monkeypatch.setattr(S.GraphedTrainStep, "__init__", init_and_wire)
    return made


def _setup(device, seed=0):
    net = build_model("seed-cnn", seed=seed, device=device)
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    return net, opt, SoftmaxCrossEntropy()


def _data(d, n, seed=1):
    x, y, _, _ = synthetic(n, 1, seed=seed)
    return d.asarray(x), d.asarray(y.astype(np.int64))


def _run(step, opt, X, Y, batch, epochs, lr_of=None, between=None):
    """Train ``epochs`` passes in order (the last batch smaller); returns the take() after each epoch."""
    n = X.shape[0]
    xp = get_array_module(X)
    sums, it = [], 0
    for _ in range(epochs):
        with step.scope():
            for b in range(0, n, batch):
                if lr_of is not None:
                    opt.lr = lr_of(it)
                step(X, Y, xp.arange(b, min(b + batch, n)))
                it += 1
            sums.append(step.take())
        if between is not None:
            between()
    return sums


def _cosine(it, total=40):
    return 0.1 * 0.5 * (1 + math.cos(math.pi * it / total))


def _device_state(net, opt, step):
    """Every array a training step writes that outlives it."""
    ps = net.parameters()
    return ([p.data for p in ps] + [p.grad for p in ps] + list(opt.state.get("velocity", {}).values())
            + [step._loss_sum, step._correct])


def _assert_same_state(net_a, opt_a, net_b, opt_b):
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        np.testing.assert_array_equal(to_host(pa.data), to_host(pb.data), err_msg=pa.name)
        np.testing.assert_array_equal(to_host(opt_a.state["velocity"][pa.name]),
                                      to_host(opt_b.state["velocity"][pb.name]), err_msg=pa.name)
    assert opt_a.steps == opt_b.steps


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id != "cuda"])
def test_graphed_steps_equal_eager_steps_bit_for_bit(backend):
    """Two epochs of 5 full batches and a smaller last one, lr changed every step: warm-up, capture
    (which must not train), replays and the eager last batch add up to exactly the eager run."""
    d = dev(backend)
    X, Y = _data(d, 8 * 5 + 3)
    net_e, opt_e, loss_e = _setup(str(d))
    net_g, opt_g, loss_g = _setup(str(d))
    fake = FakeGraphs()
    eager = S.TrainStep(net_e, opt_e, loss_e)
    graphed = S.GraphedTrainStep(net_g, opt_g, loss_g, 8, warmup=2, backend=fake, log=lambda *a: None)
    fake.arrays = lambda: _device_state(net_g, opt_g, graphed)
    sums_e = _run(eager, opt_e, X, Y, 8, 2, _cosine)
    sums_g = _run(graphed, opt_g, X, Y, 8, 2, _cosine)
    _assert_same_state(net_e, opt_e, net_g, opt_g)
    assert sums_e == sums_g and sums_e[0][1] > 0
    assert opt_g.steps == 12
    assert fake.captures == 1 and graphed.graph is not None
    # 10 full batches: 2 warm-up steps, then 8 replays (the first right after the capture)
    assert fake.launches == graphed.replays == 8
    assert fake.private == 3  # warm-up and capture allocate privately; replays allocate nothing


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id != "cuda"])
def test_failed_capture_warns_once_and_continues_eagerly(backend):
    d = dev(backend)
    X, Y = _data(d, 8 * 4)
    net_e, opt_e, loss_e = _setup(str(d))
    net_g, opt_g, loss_g = _setup(str(d))
    said = []
    graphed = S.GraphedTrainStep(net_g, opt_g, loss_g, 8, warmup=1, backend=FakeGraphs(fail="operation not permitted"),
                                 log=said.append)
    _run(S.TrainStep(net_e, opt_e, loss_e), opt_e, X, Y, 8, 2)
    _run(graphed, opt_g, X, Y, 8, 2)
    _assert_same_state(net_e, opt_e, net_g, opt_g)
    assert len(said) == 1 and "could not capture" in said[0] and "operation not permitted" in said[0]
    assert graphed.graph is None and graphed.replays == 0


def test_graph_step_refuses_adam_and_the_cpu():
    net = build_model("seed-cnn", seed=0)
    with pytest.raises(ValueError, match="SGD only"):
        S.GraphedTrainStep(net, Adam(net.parameters()), SoftmaxCrossEntropy(), 8, backend=FakeGraphs())
    with pytest.raises(DeviceError, match="need a CUDA device, but the network is on cpu.*--device cuda"):
        S.GraphedTrainStep(net, SGD(net.parameters()), SoftmaxCrossEntropy(), 8)
    assert type(S.make_train_step(net, SGD(net.parameters()), SoftmaxCrossEntropy(), 8)) is S.TrainStep


def test_take_returns_and_clears_the_running_sums():
    net, opt, loss = _setup("cpu")
    X, Y = _data(dev("cpu"), 16)
    st = S.TrainStep(net, opt, loss)
    assert st.take() == (0.0, 0)
    logits = net.forward(X[:8])
    ref_loss = float(loss.forward(logits, Y[:8])) * 8
    ref_correct = int((logits.argmax(axis=1) == Y[:8]).sum())
    st(X, Y, np.arange(8))
    got = st.take()
    assert got[1] == ref_correct and got[0] == pytest.approx(ref_loss, rel=1e-6)
    assert st.take() == (0.0, 0)


def test_trainer_with_a_graphed_step_writes_the_same_run(tmp_path, monkeypatch):
    """fit(cuda_graph=True) on the stand-in: same weights, per-iteration and per-epoch metrics as eager,
    including a cosine schedule and a smaller last batch (610 images, batch 50)."""
    made = use_fake_graphs(monkeypatch)
    arrays = synthetic(610, 100)
    kw = dict(epochs=2, momentum=0.9, lr_schedule="cosine")
    a = fit_quiet(cfg(tmp_path / "eager", **kw), arrays)
    b = fit_quiet(cfg(tmp_path / "graph", cuda_graph=True, **kw), arrays)
    assert len(made) == 1 and made[0].captures == 1 and made[0].launches == 2 * 12 - 2
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    strip = [{k: v for k, v in h.items() if not k.endswith(("seconds", "per_second"))} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if not k.endswith(("seconds", "per_second"))} for h in b.history]
    assert (a.out / "metrics_iter.csv").read_text() == (b.out / "metrics_iter.csv").read_text()


def fit_quiet(c, arrays):
    from xcnn.trainer import fit  # noqa: PLC0415

    res = fit(c, arrays=arrays, log=lambda *a: None)
    assert res.status == "completed"
    return res


def test_train_cli_explains_cuda_graph_limits():
    from xcnn.train import app  # noqa: PLC0415

    r = CliRunner().invoke(app, ["--device", "cpu", "--cuda-graph", "--optimizer", "adam"])
    assert r.exit_code == 2 and "--cuda-graph supports --optimizer sgd only" in r.output
    assert "Traceback" not in r.output


def test_train_cli_refuses_cuda_graph_on_the_cpu(tmp_path, monkeypatch):
    from xcnn import trainer  # noqa: PLC0415
    from xcnn.train import app  # noqa: PLC0415

    monkeypatch.setattr(trainer, "_load_data", lambda c: synthetic(100, 20))
    r = CliRunner().invoke(app, ["--device", "cpu", "--cuda-graph", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "CUDA graphs need a CUDA device" in r.output and "Traceback" not in r.output


# ---------------------------------------------------------------------------- the real thing

CUDA = [b for b in BACKENDS if b.id == "cuda"]


@pytest.mark.parametrize("backend", CUDA)
def test_cuda_graph_replays_equal_eager_steps_on_the_gpu(backend):
    """Real capture and replay: bit-identical to eager steps across a cosine schedule, smaller last
    batches, and a big evaluation pass between epochs (whose allocations must not land in memory
    the graph writes to)."""
    d = dev(backend)
    X, Y = _data(d, 8 * 5 + 3)
    XT, _ = _data(d, 1000, seed=2)
    net_e, opt_e, loss_e = _setup(str(d))
    net_g, opt_g, loss_g = _setup(str(d))
    graphed = S.GraphedTrainStep(net_g, opt_g, loss_g, 8, warmup=2)
    outs = {"e": [], "g": []}
    sums_e = _run(S.TrainStep(net_e, opt_e, loss_e), opt_e, X, Y, 8, 3, _cosine,
                  between=lambda: outs["e"].append(to_host(net_e.forward(XT))))
    sums_g = _run(graphed, opt_g, X, Y, 8, 3, _cosine, between=lambda: outs["g"].append(to_host(net_g.forward(XT))))
    assert graphed.failed is None and graphed.replays == 13
    _assert_same_state(net_e, opt_e, net_g, opt_g)
    assert sums_e == sums_g
    for a, b in zip(outs["e"], outs["g"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", CUDA)
def test_trainer_cuda_graph_run_equals_eager_on_the_gpu(backend, tmp_path):
    arrays = synthetic(610, 100)
    kw = dict(device="cuda", epochs=2, momentum=0.9, lr_schedule="cosine")
    a = fit_quiet(cfg(tmp_path / "eager", **kw), arrays)
    b = fit_quiet(cfg(tmp_path / "graph", cuda_graph=True, **kw), arrays)
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    assert [h["test_acc"] for h in a.history] == [h["test_acc"] for h in b.history]
