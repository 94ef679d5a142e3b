"""The parts of data parallelism that need no MPI: the batch split, the share-weighted bucket (against a
full-batch gradient), the stop protocol's timing, the refusals, the command line without mpi4py, that
a single-process run never imports mpi4py, and that the package build ships xcnn.dist. (The real
collectives are tested under mpirun in the other modules of tests/dist.)"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xcnn.backend import Device
from xcnn.dist.bucket import GradientBucket, share
from xcnn.dist.comm import Communicator, _Pending, mpi_module
from xcnn.dist.parallel import CollectiveStop, DataParallel
from xcnn.errors import ConfigError, DistributedError
from xcnn.nn.losses import SoftmaxCrossEntropy
from xcnn.nn.models import build_model
from xcnn.train import RunConfig
from xcnn.train import cli as train_cli

ROOT = Path(__file__).resolve().parents[2]


@given(n=st.integers(0, 400), size=st.integers(1, 9))
def test_share_cuts_a_batch_into_contiguous_balanced_slices(n, size):
    bounds = [share(n, size, r) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, in rank order
    counts = [hi - lo for lo, hi in bounds]
    assert counts == [n // size + (1 if r < n % size else 0) for r in range(size)]


def test_share_examples_and_refusals():
    assert [share(50, 2, r) for r in range(2)] == [(0, 25), (25, 50)]
    assert [share(50, 3, r) for r in range(3)] == [(0, 17), (17, 34), (34, 50)]
    assert [share(10, 3, r) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [share(2, 3, r) for r in range(3)] == [(0, 1), (1, 2), (2, 2)]  # the last rank has nothing
    with pytest.raises(ValueError, match="need 0 <= rank < size"):
        share(10, 2, 2)


@pytest.mark.parametrize("model", ["seed-cnn", "mlp2"])
@pytest.mark.parametrize("n, ranks", [(50, 3), (10, 3), (2, 3), (7, 2)])
def test_share_weighted_bucket_sum_is_the_full_batch_gradient(model, n, ranks):
    """Each share's backward pass writes its mean gradient straight into the attached bucket, which is
    scaled by n_r/n; the buckets summed (what the all-reduce does) equal the gradient of the whole
    batch, float64, to 1e-12 relative; empty shares add zeros."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 1, 28, 28)), rng.integers(0, 10, n)
    net = build_model(model, dtype=np.float64, seed=1, device="cpu")
    loss = SoftmaxCrossEntropy()
    bucket = GradientBucket(net.parameters())
    bucket.attach()
    total = np.zeros(bucket.buffers[0].size)
    for r in range(ranks):
        lo, hi = share(n, ranks, r)
        if hi == lo:
            bucket.zero()
        else:
            loss.forward(net.forward(x[lo:hi]), y[lo:hi])
            net.backward(loss.backward())
            bucket.scale((hi - lo) / n)
        total += bucket.buffers[0]
    assert bucket.attached()  # backward wrote into the views, it did not replace them
    loss.forward(net.forward(x), y)
    net.backward(loss.backward())
    full = np.concatenate([p.grad.reshape(-1) for p in net.parameters()])
    np.testing.assert_allclose(total, full, rtol=1e-12, atol=1e-14)


def test_attached_gradients_are_views_and_a_replacement_is_noticed(tmp_path):
    net = build_model("seed-cnn", seed=0, device="cpu")
    for p in net.parameters():
        p.grad[...] = 1.5
    bucket = GradientBucket(net.parameters())
    assert not bucket.attached()
    bucket.attach()
    assert bucket.attached() and all(np.shares_memory(p.grad, bucket.buffers[0]) for p in net.parameters())
    np.testing.assert_array_equal(bucket.buffers[0], 1.5)  # values kept
    bucket.scale(2.0)
    assert all((p.grad == 3.0).all() for p in net.parameters())
    net.save(tmp_path / "c.npz")
    net.load(tmp_path / "c.npz")  # replaces every gradient array
    assert not bucket.attached()


def test_bucket_round_trips_each_dtype_in_its_own_buffer():
    a = build_model("seed-cnn", dtype=np.float32, seed=0, device="cpu")
    b = build_model("mlp1", dtype=np.float64, seed=0, device="cpu")
    params = a.parameters() + b.parameters()
    bucket = GradientBucket(params)
    assert [buf.dtype for buf in bucket.buffers] == [np.float32, np.float64]
    assert bucket.nbytes == a.num_parameters() * 4 + b.num_parameters() * 8
    for p in params:
        p.grad[...] = np.arange(p.grad.size).reshape(p.grad.shape)
    bucket.pack("grad")
    for p in params:
        p.grad[...] = -1
    bucket.unpack("grad")
    for p in params:
        np.testing.assert_array_equal(p.grad, np.arange(p.grad.size).reshape(p.grad.shape))
    bucket.pack("data")
    bucket.unpack("grad")
    for p in params:
        np.testing.assert_array_equal(p.grad, p.data)


class _Loopback(Communicator):
    """A one-process stand-in for the reductions CollectiveStop and DataParallel.check use: ``size``
    ranks that all hold this process's values."""

    backend = "loopback"

    def __init__(self, size=1):
        self.rank, self.size, self.local_rank, self.local_size, self.host = 0, size, 0, 1, "here"

    def iallreduce_host(self, values, op="max"):
        return _Pending(None, None, np.array(values))

    def allgather_object(self, obj):
        return [obj] * self.size


def test_stop_request_is_agreed_one_step_later_and_a_second_ctrl_c_interrupts():
    stop = CollectiveStop(_Loopback())
    with stop:
        stop.poll()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.local and not stop.requested  # the flag travels with the next step's reduction
        stop.poll()
        assert not stop.requested
        stop.poll()
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # after a stop request, a Ctrl-C ends at once
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers restored


def test_settings_a_distributed_run_refuses():
    par = DataParallel(_Loopback(size=3), Device("cpu"))
    with pytest.raises(DistributedError, match="--cuda-graph is not supported with --distributed") as e:
        par.check(RunConfig(cuda_graph=True))
    assert e.value.collective
    with pytest.raises(DistributedError, match="--batch-size 2 is the global batch.*>= 3"):
        par.check(RunConfig(batch_size=2))
    par.check(RunConfig(batch_size=3))
    with pytest.raises(ConfigError, match="--lr must be a finite number") as e:  # RunConfig.check, on every rank
        par.check(RunConfig(lr=float("nan")))
    assert e.value.collective


def test_without_mpi4py_distributed_is_one_line_saying_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    for name in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DistributedError, match=r"pip install 'xcnn\[mpi\]'.*mpirun -n N"):
        mpi_module()
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--distributed", "--device", "cpu", "--epochs", "1", "--out", str(Path("unused"))])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: --distributed needs mpi4py") and err.count("\n") == 1


@pytest.mark.parametrize("argv, said", [
    (["--dist-backend", "gloo"], "'gloo' is not one of 'auto', 'mpi', 'nccl'"),
    (["--distributed", "--cuda-graph", "--dist-backend", "nccl"], None),
])
def test_the_distributed_flags_in_the_parser(argv, said, monkeypatch, capsys):
    """An unknown backend is refused by the parser (one line, exit 2); --distributed with --cuda-graph
    gets as far as MPI (here absent, so the MPI line), the refusal itself being collective (above)."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(SystemExit) as e:
        train_cli.main(argv + ["--device", "cpu"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert (said or "--distributed needs mpi4py") in err


def test_single_process_runs_never_import_mpi(tmp_path):
    code = ("import sys, numpy as np; import xcnn.dist, xcnn.dist.comm, xcnn.dist.parallel, xcnn.dist.launch; "
            "import xcnn.cuda.nccl, xcnn.train.cli; from xcnn.train import RunConfig, fit; "
            "rng = np.random.default_rng(0); "
            "a = (rng.standard_normal((60, 1, 28, 28)), rng.integers(0, 10, 60), "
            "rng.standard_normal((20, 1, 28, 28)), rng.integers(0, 10, 20)); "
            f"fit(RunConfig(model='mlp1', device='cpu', epochs=1, out={str(tmp_path / 'r')!r}), arrays=a, "
            "log=lambda *m: None); bad = [m for m in ('mpi4py', 'cupy') if m in sys.modules]; "
            "assert not bad, bad; print('clean')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0 and "clean" in res.stdout, res.stderr


def test_the_package_build_ships_every_package(tmp_path):
    """setuptools' build_py over a copy of the project: every folder of xcnn/ with an __init__.py --
    xcnn/dist among them -- is in the built tree (pyproject.toml lists the packages explicitly)."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("xcnn", "kernels"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    lib = tmp_path / "lib"
    res = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                          "--build-lib", str(lib)], cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    packages = {p.parent.relative_to(ROOT) for p in (ROOT / "xcnn").rglob("__init__.py")}
    missing = sorted(str(p) for p in packages if not (lib / p / "__init__.py").is_file())
    assert not missing, f"not in the build (add them to [tool.setuptools] packages): {missing}"
    assert {p.name for p in (lib / "xcnn" / "dist").glob("*.py")} >= {"__init__.py", "comm.py", "bucket.py",
                                                                     "parallel.py", "launch.py"}
