"""``cuda:1`` on the CuPy double's second device: arrays live on device 1, and so does every
operation, kernel launch, CUDA graph and allocation on them -- whatever device the caller has
current. The double refuses an operand on another device than the current one (no peer access)
and faults a kernel reading another GPU's memory, so work that lands on device 0 fails here."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import quiet, run_config, synthetic, weights

from doubles import fakecupy
from xcnn import ops
from xcnn.backend import get_device, to_host
from xcnn.errors import DeviceError
from xcnn.nn import SGD, SoftmaxCrossEntropy, build_model
from xcnn.train import fit
from xcnn.train.step import GraphedTrainStep


def _step(net, opt, x, y):
    loss = SoftmaxCrossEntropy()
    value = float(loss(net.forward(x), y))
    net.backward(loss.backward())
    opt.step()
    return value


@pytest.mark.parametrize("model", ["seed-cnn", "lenet5", "mlp2"])
def test_training_steps_on_the_second_gpu_match_the_cpu(cuda_emu, model):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 1, 28, 28)), rng.integers(0, 10, 5)
    gpu1 = get_device("cuda:1")
    net_c = build_model(model, dtype=np.float64, seed=3)
    net_g = build_model(model, dtype=np.float64, seed=3, device=gpu1)
    opt_c, opt_g = (SGD(n.parameters(), lr=0.1, momentum=0.9) for n in (net_c, net_g))
    launched = len(fakecupy.world().launches)
    for _ in range(2):
        lc = _step(net_c, opt_c, x, y)
        lg = _step(net_g, opt_g, gpu1.asarray(x), gpu1.asarray(y))  # device 0 stays current throughout
        assert lg == pytest.approx(lc, rel=1e-12)
    assert all(p.data.device.id == 1 and p.grad.device.id == 1 for p in net_g.parameters())
    assert all(v.device.id == 1 for v in opt_g.state["velocity"].values())
    kernels = fakecupy.world().launches[launched:]
    assert kernels and {dev for dev, *_ in kernels} == {1}  # every kernel launched on device 1
    for pc, pg in zip(net_c.parameters(), net_g.parameters()):
        np.testing.assert_allclose(to_host(pg.data), pc.data, rtol=1e-10, atol=1e-12)


def test_arrays_of_two_gpus_in_one_op_are_refused(cuda_emu):
    a = get_device("cuda:0").asarray(np.ones((1, 1, 4, 4)))
    w = get_device("cuda:1").asarray(np.ones((1, 1, 3, 3)))
    with pytest.raises(DeviceError, match="arrays on cuda:0 and cuda:1 in one operation"):
        ops.conv2d_forward(a, w)


def test_the_trainer_on_the_second_gpu(cuda_emu, tmp_path):
    arrays = synthetic(130, 40)
    kw = dict(epochs=1, batch_size=50, dtype="float64", momentum=0.9)
    a = fit(run_config(tmp_path / "cpu", device="cpu", **kw), arrays=arrays, log=quiet)
    b = fit(run_config(tmp_path / "gpu1", device="cuda:1", **kw), arrays=arrays, log=quiet)
    assert b.status == "completed"
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=1e-9, atol=1e-11, err_msg=k)


def test_a_cuda_graph_on_the_second_gpu(cuda_emu, tmp_path):
    """Capture, replay, the private pool and the stream all on device 1 (the caller keeps device 0
    current): a trainer run with --cuda-graph on cuda:1 replays and ends where an eager one does."""
    from xcnn.cuda import gemm  # noqa: PLC0415

    arrays = synthetic(130, 40)
    kw = dict(device="cuda:1", epochs=2, batch_size=50, momentum=0.9)
    with gemm.using("kernels"):
        a = fit(run_config(tmp_path / "eager", **kw), arrays=arrays, log=quiet)
    said = []
    b = fit(run_config(tmp_path / "graph", cuda_graph=True, **kw), arrays=arrays, log=said.append)
    assert not [m for m in said if "warning" in m]
    (graph,) = fakecupy.world().graphs
    assert graph.fake_device_id == 1 and graph.fake_launches == 2 and graph.fake_uploads == 1
    wa, wb = weights(a.out / "checkpoint.npz"), weights(b.out / "checkpoint.npz")
    for k in wa:
        np.testing.assert_array_equal(wb[k], wa[k], err_msg=k)


def test_graph_step_allocates_from_its_private_pool_on_the_second_gpu(cuda_emu):
    dev = get_device("cuda:1")
    net = build_model("seed-cnn", device=dev)
    st = GraphedTrainStep(net, SGD(net.parameters(), lr=0.1), SoftmaxCrossEntropy(), 8, log=pytest.fail)
    x, y, _, _ = synthetic(16, 1)
    X, Y = dev.asarray(x), dev.asarray(y.astype(np.int64))
    with dev:  # CuPy makes the index on the current device
        idx = [dev.xp.arange(0, 8), dev.xp.arange(8, 16)]
    for b in range(4):
        st(X, Y, idx[b % 2])
    assert st.replays == 2 and st.graph.fake_device_id == 1 and st.graph.fake_launches == 2
    # what outlives a step (parameters, gradients, velocities, the static batch, the running sums, the
    # hyper-parameters) is ordinary memory; every other block the graph touches is the private pool's
    keep = [p.data for p in net.parameters()] + [p.grad for p in net.parameters()] + \
        list(st.opt.state["velocity"].values()) + [st._x, st._y, st._loss_sum, st._correct, X, Y] + \
        [st.opt._backend_state["hyper"]]  # lr, momentum, decay on the device, refreshed before each replay
    kept = {id(fakecupy.block_of(a)) for a in keep}
    temporaries = [b for b in st.graph.fake_blocks if id(b) not in kept]
    assert temporaries and all(b.pool is st.graphs.pool for b in temporaries)
    assert all(b.device_id == 1 for b in st.graph.fake_blocks)


def test_predict_and_evaluate_on_the_second_gpu(cuda_emu, tmp_path):
    from xcnn.apps.predict import predict_images  # noqa: PLC0415

    net = build_model("seed-cnn", seed=1)
    net.save(tmp_path / "ck.npz")
    digit = tmp_path / "d.npy"
    np.save(digit, (np.arange(28 * 28).reshape(28, 28) % 255).astype(np.uint8))
    (_, k0, p0), = predict_images(tmp_path / "ck.npz", [digit], device="cpu")
    (_, k1, p1), = predict_images(tmp_path / "ck.npz", [digit], device="cuda:1")
    assert k0 == k1
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)
