"""``mpirun -n N python -m xcnn.train --distributed`` on the CPU, with real MPI: N ranks at global
batch B end where one process at batch B ends; sharded evaluation, rank-0-only writing, resume on
another number of ranks (from the run's saved settings), a stop request on one rank, a dead rank,
Ctrl-C on mpirun, a failure on one rank, and refusals printed once.

The runs use the first 1,010 MNIST training images and 500 test images when MNIST is at hand (no
download is tried), else the synthetic problem of tests/helpers.py through tests/dist/_train_prog.py
(the same command line). 1,010 images in batches of 50 are 20 full batches (25 + 25 on 2 ranks,
17 + 17 + 16 on 3) and a last one of 10 (4 + 3 + 3 on 3 ranks)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mpijob
import pytest

from xcnn.nn.serialize import load_checkpoint

pytestmark = mpijob.requires_mpi

PROG = mpijob.TESTS / "dist" / "_train_prog.py"
N_TRAIN, N_TEST = 1010, 500
TOLERANCE = 1e-9  # float64, after an epoch: max over tensors of max|a - b| / max|a|


@pytest.fixture(scope="module")
def mnist():
    """True when MNIST loads from what is on this machine (then every rank finds it too)."""
    try:
        from xcnn import data  # noqa: PLC0415

        data.load("mnist", fetch_if_missing=False)
        return True
    except Exception:  # noqa: BLE001 - no MNIST here: the synthetic problem
        return False


def train_cmd(mnist, ranks: int | None, args: list[str], n_train=N_TRAIN, n_test=N_TEST, resume=False) -> list:
    """One process (``ranks=None``: no mpirun, no --distributed) or ``mpirun -n ranks`` with --distributed;
    ``resume``: continue from the saved settings (``args`` then holds only what may change)."""
    extra = ["--distributed"] if ranks else []
    if mnist:
        limits = [] if resume else ["--train-limit", str(n_train), "--test-limit", str(n_test)]
        tail = [*extra, *limits, *args]
        return mpijob.command(ranks, tail) if ranks else [sys.executable, "-m", "xcnn.train", *tail]
    tail = ["--synthetic", f"{n_train},{n_test}", "--", *extra, *args]
    return mpijob.command(ranks, tail, script=PROG) if ranks else [sys.executable, str(PROG), *tail]


def common(model, epochs=1):
    return ["--model", model, "--float64", "--device", "cpu", "--epochs", str(epochs), "--batch-size", "50",
            "--quiet", "--log-every", "5"]


def ok(res):
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def params(run_dir):
    return load_checkpoint(run_dir / "checkpoint.npz")["params"]


def history(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["history"]


RUN_FILES = {"checkpoint.npz", "config.json", "metrics.json", "metrics_epoch.csv", "metrics_iter.csv",
             "curves_epoch.png", "curves_iteration.png"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist):
    """seed-cnn and mlp2, one epoch: one process, and mpirun -n 2 and -n 3."""
    base = tmp_path_factory.mktemp("equiv")
    out = {}
    for model in ("seed-cnn", "mlp2"):
        for ranks in (None, 2, 3):
            d = base / f"{model}-{ranks or 1}"
            ok(mpijob.run(train_cmd(mnist, ranks, [*common(model), "--out", str(d)])))
            out[model, ranks or 1] = d
    return out


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("model", ["seed-cnn", "mlp2"])
def test_n_ranks_end_with_the_single_process_weights(runs, model, ranks):
    """Float64, one epoch at global batch 50: max relative difference <= 1e-9 (measured ~3e-15), the
    optimizer state too; the training loss per logged window agrees to 1e-12; the run records its ranks."""
    one, many = runs[model, 1], runs[model, ranks]
    assert mpijob.max_relative_difference(params(one), params(many)) <= TOLERANCE
    oa, ob = load_checkpoint(one / "checkpoint.npz")["optim"], load_checkpoint(many / "checkpoint.npz")["optim"]
    velocity = {k: v for k, v in oa.items() if k.startswith("velocity/")}
    assert velocity and mpijob.max_relative_difference(velocity, {k: ob[k] for k in velocity}) <= TOLERANCE
    assert int(ob["steps"]) == int(oa["steps"]) == 21
    ha, hb = history(one), history(many)
    assert hb[0]["train_loss"] == pytest.approx(ha[0]["train_loss"], rel=1e-12)
    assert hb[0]["train_acc"] == ha[0]["train_acc"]
    dist = json.loads((many / "metrics.json").read_text())["distributed"]
    assert dist["ranks"] == ranks and dist["backend"] == "mpi" and dist["replica_resyncs"] == 0
    assert json.loads((many / "config.json").read_text())["distributed"]["ranks"] == ranks
    assert "distributed" not in json.loads((one / "metrics.json").read_text())  # a single run's files unchanged


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("model", ["seed-cnn", "mlp2"])
def test_sharded_evaluation_gives_the_single_process_figures(runs, model, ranks):
    """500 test images in shares of 250/250 and 167/167/166: the same accuracy exactly, the same mean
    loss to rounding; and only rank 0's files, all of them, are in the run directory."""
    ha, hb = history(runs[model, 1]), history(runs[model, ranks])
    assert hb[0]["test_acc"] == ha[0]["test_acc"]
    assert hb[0]["test_loss"] == pytest.approx(ha[0]["test_loss"], rel=1e-12)
    assert {p.name for p in runs[model, ranks].iterdir()} == RUN_FILES


def test_only_rank_0_writes(tmp_path, mnist):
    """Two ranks told different --out (an MPMD launch, one program per rank): rank 0's directory holds
    the whole run, rank 1's is never created."""
    a, b = tmp_path / "rank0", tmp_path / "rank1"
    progs = []
    for d in (a, b):
        cmd = train_cmd(mnist, 1, [*common("mlp2"), "--out", str(d)], n_train=200, n_test=100)
        progs.append(cmd[cmd.index("--oversubscribe") + 1:])  # python ... of `mpirun -n 1 --oversubscribe python ...`
    ok(mpijob.run([mpijob.mpirun(), "--oversubscribe", "-n", "1", *progs[0], ":", "-n", "1", *progs[1]]))
    assert {p.name for p in a.iterdir()} == RUN_FILES
    assert not b.exists()


def _start(cmd):
    return subprocess.Popen(cmd, env=mpijob.env(), cwd=mpijob.ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(proc, prefix, lines, timeout=300):
    """Read the job's output until a line starts with ``prefix``."""
    end = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return
        assert time.monotonic() < end, "".join(lines)
    raise AssertionError("the job ended before printing " + repr(prefix) + "\n" + "".join(lines))


def test_usr1_stops_all_ranks_and_the_run_resumes_on_3_ranks_and_on_1(tmp_path, mnist):
    """SIGUSR1 to mpirun (which forwards it to every rank) during epoch 2 of 2: every rank stops at the
    same step (one reduced stop flag), rank 0 saves, exit 130, and the message says how to resume. The
    checkpoint holds global state only, so `--out DIR --resume` alone (the saved settings) continues it
    on 3 ranks and on 1 process; both end within 1e-9 of an uninterrupted single process."""
    args = common("seed-cnn", epochs=2)
    ref = tmp_path / "ref"
    ok(mpijob.run(train_cmd(mnist, None, [*args, "--out", str(ref)])))
    run = tmp_path / "run"
    proc = _start(train_cmd(mnist, 2, [*args, "--out", str(run)]))
    lines = []
    _wait_for(proc, "epoch   1/2", lines)
    proc.send_signal(signal.SIGUSR1)
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=120) == 130, "".join(lines)
    text = "".join(lines)
    assert "interrupted" in text and "checkpoint saved" in text and "MPI_Abort" not in text
    assert f"Resume with: mpirun -n 2 python -m xcnn.train --distributed --out {run} --resume" in text
    meta = load_checkpoint(run / "checkpoint.npz")["meta"]
    assert meta["epoch"] == 1 and meta["batch"] > 0  # stopped inside epoch 2
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    for ranks in (3, None):
        d = tmp_path / f"resumed-{ranks or 1}"
        shutil.copytree(run, d)
        ok(mpijob.run(train_cmd(mnist, ranks, ["--out", str(d), "--resume", "--quiet"], resume=True)))
        assert mpijob.max_relative_difference(params(ref), params(d)) <= TOLERANCE, ranks
        assert [h["test_acc"] for h in history(d)] == [h["test_acc"] for h in history(ref)]


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step(tmp_path, mnist):
    """SIGINT to rank 1 alone (a Ctrl-C reaching one process): its flag is reduced with the others', so
    all three ranks leave the loop after the same step and exit 130; rank 0's checkpoint is that step's."""
    run = tmp_path / "run"
    proc = _start(train_cmd(mnist, 3, [*common("mlp2", epochs=4), "--out", str(run)]))
    lines = []
    _wait_for(proc, "epoch   1/4", lines)
    pids = mpijob.rank_pids(proc.pid)
    assert sorted(pids) == [0, 1, 2]
    os.kill(pids[1], signal.SIGINT)
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=120) == 130, "".join(lines)
    assert "MPI_Abort" not in "".join(lines)
    meta = load_checkpoint(run / "checkpoint.npz")["meta"]
    assert 1 <= meta["epoch"] < 4
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"


@pytest.mark.parametrize("how", ["kill -9 one rank", "ctrl-c on mpirun"])
def test_a_dead_rank_or_ctrl_c_on_mpirun_ends_the_job_and_keeps_the_checkpoint(tmp_path, mnist, how):
    """After epoch 1: SIGKILL to rank 1 (mpirun notices and kills the rest), or SIGINT to mpirun (Open MPI
    aborts the job: SIGTERM, then SIGKILL 0.25 s later, too soon to save). Every process is gone within
    30 s, and the last checkpoint (epoch 1, written atomically) loads."""
    run = tmp_path / "run"
    proc = _start(train_cmd(mnist, 2, [*common("seed-cnn", epochs=20), "--out", str(run)]))
    lines = []
    _wait_for(proc, "epoch   1/20", lines)
    pids = mpijob.rank_pids(proc.pid)
    assert sorted(pids) == [0, 1]
    if how.startswith("kill"):
        os.kill(pids[1], signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    rc = proc.wait(timeout=30)
    lines += proc.stdout.readlines()
    deadline = time.monotonic() + 10
    while any(mpijob.alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(mpijob.alive(p) for p in pids.values()), "".join(lines)
    assert rc != 0 and time.monotonic() - t0 < 30
    ck = load_checkpoint(run / "checkpoint.npz")
    assert ck["meta"]["epoch"] >= 1 and ck["params"]


def test_a_failure_on_one_rank_aborts_the_job(tmp_path, mnist):
    """An exception on rank 1 only (its optimizer raises at step 3) while rank 0 waits in the next
    all-reduce: rank 1 names the error and calls MPI_Abort, and the job ends instead of hanging."""
    args = ["--fail-rank", "1", "--fail-step", "3"]
    if mnist:
        tail = [*args, "--", "--distributed", "--train-limit", "200", "--test-limit", "100"]
    else:
        tail = [*args, "--synthetic", "200,100", "--", "--distributed"]
    res = mpijob.run(mpijob.command(2, [*tail, *common("mlp2"), "--out", str(tmp_path / "run")], script=PROG),
                     timeout=180)
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "rank 1: error: RuntimeError: injected failure at step 3; stopping every rank (MPI_Abort)" in text


@pytest.mark.parametrize("flags, said", [
    (["--batch-size", "2"], "error: --batch-size 2 is the global batch and must give every one of the 3 ranks"),
    (["--cuda-graph"], "error: --cuda-graph is not supported with --distributed"),
    (["--dist-backend", "nccl"], "error: --dist-backend nccl moves GPU arrays only"),
    (["--device", "cuda:1"], "error: --distributed picks each process's GPU from its local rank"),
    (["--lr", "nan"], "error: --lr must be a finite number > 0, got nan"),
    (["--resume"], "holds no run"),
])
def test_settings_every_rank_refuses_are_one_line_from_rank_0(tmp_path, mnist, flags, said):
    """Every rank refuses at the same point: rank 0 prints one line, all exit 2 (no MPI_Abort), nothing
    is written."""
    args = [*common("mlp2"), "--out", str(tmp_path / "x")]
    if "--device" in flags:
        args = [a for i, a in enumerate(args) if a != "--device" and args[i - 1] != "--device"]
    res = mpijob.run(train_cmd(mnist, 3, [*args, *flags], n_train=100, n_test=50), timeout=180)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count(said) == 1 and res.stderr.count("error:") == 1, res.stderr
    assert "MPI_Abort" not in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()


def test_without_mpi4py_every_rank_exits_2_and_one_says_why(tmp_path, mnist):
    """mpi4py hidden from the ranks: MPI never starts, so the launcher's rank 0 alone prints the line."""
    hide = tmp_path / "hide" / "mpi4py"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = mpijob.env()
    env["PYTHONPATH"] = os.pathsep.join([str(hide.parent), env["PYTHONPATH"]])
    res = mpijob.run(train_cmd(mnist, 2, [*common("mlp2"), "--out", str(tmp_path / "x")]), env=env, timeout=180)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("error: --distributed needs mpi4py and an MPI library") == 1, res.stderr
    assert "pip install 'xcnn[mpi]'" in res.stderr and not (tmp_path / "x").exists()


def _two_gpus_reason() -> str | None:
    from xcnn.backend import gpu_unavailable_reason  # noqa: PLC0415
    from xcnn.cuda.nccl import unavailable_reason  # noqa: PLC0415

    return gpu_unavailable_reason(1) or unavailable_reason()


@pytest.mark.gpu
@pytest.mark.skipif(_two_gpus_reason() is not None, reason=f"needs two CUDA GPUs and NCCL: {_two_gpus_reason()}")
@pytest.mark.parametrize("model", ["seed-cnn", "mlp2"])
def test_two_real_gpus_over_nccl_end_with_the_single_process_weights(runs, mnist, tmp_path, model):
    """Where two GPUs exist: mpirun -n 2 --device cuda (NCCL, cuda:0 and cuda:1) against one CPU process,
    float64, one epoch: within 1e-9 relative, and the run says it used NCCL."""
    d = tmp_path / model
    args = [a if a != "cpu" else "cuda" for a in common(model)]
    ok(mpijob.run(train_cmd(mnist, 2, [*args, "--out", str(d)])))
    assert json.loads((d / "metrics.json").read_text())["distributed"]["backend"] == "nccl"
    assert mpijob.max_relative_difference(params(runs[model, 1]), params(d)) <= TOLERANCE
