"""``python -m xcnn.bench``: training speed of xcnn against the same networks in PyTorch.

For each model (seed-cnn, mlp2, mlp1) and batch size it trains timed steps with xcnn and --
when ``torch`` imports (``pip install torch==2.13.0``; xcnn never depends on it) -- the
identical network in PyTorch: same initial weights (copied from the xcnn model), same SGD
(xcnn's ``v = m*v + g + wd*p; p -= lr*v`` is torch's SGD with dampening 0 for a constant lr),
same synthetic MNIST-shaped data. The two frameworks alternate repeat by repeat in one
process, so machine noise hits both alike; the ratio is what to read.

Seconds per epoch are extrapolated to 60,000 images from timed steps after a warm-up.
Peak memory (VmHWM, i.e. peak RSS) of one full seed-cnn epoch at batch 1024 is measured
in a fresh subprocess per framework. Results go to ``OUT/bench-<device>.json`` and ``.md``.

The measuring runs in a child process whose environment sets the thread counts
(``OPENBLAS_NUM_THREADS`` must be set before NumPy loads); ``--malloc-variant`` repeats
the whole measurement once more with glibc's ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``
raised, for both frameworks. ``--profile`` prints where xcnn's time goes, per op family.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

EPOCH_IMAGES = 60000
MODELS = ("seed-cnn", "mlp2", "mlp1")
BATCHES = (50, 256, 1024)
#: glibc settings of the ``--malloc-variant`` run: big temporaries stay in the heap, not mmap'd per step
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
#: the targets of issue 5 (xcnn seconds per epoch / PyTorch's, at most): on the CPU per model, on the
#: GPU per (model, batch) -- where the better of xcnn's eager and CUDA-graph steps counts
TARGETS = {"seed-cnn": 0.8, "mlp2": 1.0, "mlp1": 1.0}
GPU_TARGETS = {("seed-cnn", 50): 1.0}
#: and on the GPU, training images per second at batch 1024 (seed-cnn), at least
GPU_IMAGES_PER_S = 1_000_000
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XCNN_NUM_THREADS")


# --------------------------------------------------------------------------------------------
# the networks
# --------------------------------------------------------------------------------------------
def _torch_twin(net, device):
    """The PyTorch network equal to xcnn ``net`` (a preset), with its weights copied."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    from .backend import to_host  # noqa: PLC0415
    from .layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU  # noqa: PLC0415

    mods = []
    for layer in net.layers:
        if isinstance(layer, Conv2D):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                          layer.padding, bias=layer.bias is not None)
        elif isinstance(layer, Linear):
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        elif isinstance(layer, ReLU):
            m = nn.ReLU()
        elif isinstance(layer, AvgPool2D):
            m = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, MaxPool2D):
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, Flatten):
            m = nn.Flatten()
        else:  # pragma: no cover - the presets use only the layers above
            raise TypeError(f"no PyTorch twin for {layer!r}")
        with torch.no_grad():
            if hasattr(layer, "weight"):
                m.weight.copy_(torch.from_numpy(to_host(layer.weight.data).copy()))
                if layer.bias is not None:
                    m.bias.copy_(torch.from_numpy(to_host(layer.bias.data).copy()))
        mods.append(m)
    return nn.Sequential(*mods).to(device)


class _XcnnRunner:
    def __init__(self, model, batch, device, hyper, pool, cuda_graph=False):
        from .backend import get_device  # noqa: PLC0415
        from .losses import SoftmaxCrossEntropy  # noqa: PLC0415
        from .models import build_model  # noqa: PLC0415
        from .optim import SGD  # noqa: PLC0415

        self.dev = get_device(device)
        self.net = build_model(model, seed=0, device=str(self.dev))
        self.opt = SGD(self.net.parameters(), **hyper)
        self.loss = SoftmaxCrossEntropy()
        self.data = [(self.dev.asarray(x), self.dev.asarray(t)) for x, t in pool]
        self.i = 0
        self.graph = None
        if cuda_graph:  # the trainer's --cuda-graph step: gathers each batch into its static buffers
            from .step import GraphedTrainStep  # noqa: PLC0415

            xp = self.dev.xp
            self.X = xp.concatenate([x for x, _ in self.data])
            self.Y = xp.concatenate([t for _, t in self.data])
            self.idx = [xp.arange(i * batch, (i + 1) * batch) for i in range(len(self.data))]
            self.graph = GraphedTrainStep(self.net, self.opt, self.loss, batch, log=lambda *a: None)

    def scope(self):
        return self.graph.scope() if self.graph is not None else contextlib.nullcontext()

    def step(self):
        if self.graph is not None:
            self.graph(self.X, self.Y, self.idx[self.i % len(self.idx)])
            self.i += 1
            return None
        x, t = self.data[self.i % len(self.data)]
        self.i += 1
        loss = self.loss.forward(self.net.forward(x), t)
        # as in the trainer's step (xcnn.step.TrainStep): backward overwrites the gradients, no zero_grad
        self.net.backward(self.loss.backward())
        self.opt.step()
        return loss

    def sync(self):
        self.dev.synchronize()


class _TorchRunner:
    def __init__(self, xnet, batch, device, hyper, pool):
        import torch  # noqa: PLC0415

        self.torch = torch
        self.cuda = device.startswith("cuda")
        self.device = torch.device(device)
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.net = _torch_twin(xnet, self.device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=hyper["lr"], momentum=hyper["momentum"],
                                   weight_decay=hyper["weight_decay"], dampening=0)
        self.lossf = torch.nn.CrossEntropyLoss()
        self.data = [(torch.from_numpy(x).to(self.device), torch.from_numpy(t).to(self.device)) for x, t in pool]
        self.i = 0

    def step(self):
        x, t = self.data[self.i % len(self.data)]
        self.i += 1
        self.opt.zero_grad()  # PyTorch's default (set_to_none=True): its backward then writes fresh gradients
        loss = self.lossf(self.net(x), t)
        loss.backward()
        self.opt.step()
        return loss

    def scope(self):
        return contextlib.nullcontext()

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()


def _pool(model, batch, n=4, seed=0):
    """``n`` synthetic MNIST-shaped batches (pixels in [0, 1), labels 0..9); speed ignores pixel values."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    shape = (batch, 1, 28, 28)
    return [(rng.random(shape, dtype=np.float32), rng.integers(0, 10, batch).astype(np.int64)) for _ in range(n)]


HYPER = {"lr": 0.1, "momentum": 1e-3, "weight_decay": 1e-3}  # the report's settings


def _timed(runner, steps):
    with runner.scope():
        runner.sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            runner.step()
        runner.sync()
        return time.perf_counter() - t0


def _summary(times, steps, batch):
    per_epoch = [t / steps * EPOCH_IMAGES / batch for t in times]
    return {"epoch_s_min": min(per_epoch), "epoch_s_median": statistics.median(per_epoch),
            "epoch_s_all": per_epoch, "images_per_s": EPOCH_IMAGES / statistics.median(per_epoch)}


def measure(model, batch, device, *, images, repeats, warmup, use_torch, budget_s, pause_s=0.2, cuda_graph=False):
    """Interleaved timing of one (model, batch): xcnn and torch alternate, order swapped each repeat.
    ``cuda_graph`` (CUDA only) adds xcnn's ``--cuda-graph`` step as a third runner."""
    pool = _pool(model, batch)
    xr = _XcnnRunner(model, batch, device, HYPER, pool)
    runners = {"xcnn": xr}
    if cuda_graph:
        runners["xcnn-graph"] = _XcnnRunner(model, batch, device, HYPER, pool, cuda_graph=True)
    if use_torch:
        runners["torch"] = _TorchRunner(xr.net, batch, device, HYPER, pool)
    steps = max(2, math.ceil(images / batch))
    for r in runners.values():
        for _ in range(warmup + (3 if r is runners.get("xcnn-graph") else 0)):  # + warm-up steps and capture
            r.step()
        r.sync()
    times = {k: [] for k in runners}
    t_start = time.perf_counter()
    order = list(runners)
    for rep in range(repeats):
        for k in (order if rep % 2 == 0 else order[::-1]):
            # Let the other framework's idle worker threads (OpenBLAS, OpenMP) stop spinning, and
            # warm this one's caches with one untimed step, so neither pays for the other.
            time.sleep(pause_s)
            runners[k].step()
            times[k].append(_timed(runners[k], steps))
        if rep >= 1 and time.perf_counter() - t_start > budget_s:
            break  # a loaded machine: keep the run bounded, the repeats done so far are reported
    row = {"model": model, "batch": batch, "steps_per_repeat": steps, "repeats": len(times["xcnn"])}
    for k, ts in times.items():
        row[k] = _summary(ts, steps, batch)
    if "xcnn-graph" in runners:
        g = runners["xcnn-graph"].graph
        row["graph_failed"] = g.failed
        row["graph_replays"] = g.replays
    if "torch" in times:
        row["ratio_median"] = row["xcnn"]["epoch_s_median"] / row["torch"]["epoch_s_median"]
        row["ratio_min"] = row["xcnn"]["epoch_s_min"] / row["torch"]["epoch_s_min"]
        best = row["ratio_median"]
        if "xcnn-graph" in times:
            row["ratio_graph_median"] = row["xcnn-graph"]["epoch_s_median"] / row["torch"]["epoch_s_median"]
            best = min(best, row["ratio_graph_median"])
        row["target"] = GPU_TARGETS.get((model, batch)) if device.startswith("cuda") else TARGETS.get(model)
        row["met"] = row["target"] is not None and best <= row["target"]
    return row


# --------------------------------------------------------------------------------------------
# profile mode: a timing wrapper around functional ops and layers, installed only here
# --------------------------------------------------------------------------------------------
class _Profiler:
    """Exclusive wall time per op family: a wrapper charges its own time minus its children's."""

    def __init__(self, sync):
        self.totals: dict[str, float] = {}
        self.stack: list[float] = []
        self.sync = sync
        self.undo: list = []

    def wrap(self, owner, attr, family):
        fn = getattr(owner, attr)
        prof = self

        def timed(*a, **kw):
            prof.sync()
            prof.stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                prof.sync()
                dt = time.perf_counter() - t0
                child = prof.stack.pop()
                prof.totals[family] = prof.totals.get(family, 0.0) + dt - child
                if prof.stack:
                    prof.stack[-1] += dt

        timed.__wrapped__ = fn
        self.undo.append((owner, attr, owner.__dict__.get(attr, _MISSING)))
        setattr(owner, attr, timed)

    def restore(self):
        for owner, attr, old in reversed(self.undo):
            if old is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, old)
        self.undo.clear()


_MISSING = object()


def profile(model, batch, device, steps):
    """Per-op-family seconds of ``steps`` xcnn training steps (exclusive times, so they add up)."""
    from . import functional as F  # noqa: PLC0415
    from . import layers as L  # noqa: PLC0415
    from . import optim as O  # noqa: PLC0415

    pool = _pool(model, batch)
    xr = _XcnnRunner(model, batch, device, HYPER, pool)
    for _ in range(3):
        xr.step()
    prof = _Profiler(xr.sync)
    for name in ("im2col", "_im2col_pad", "_im2col_fill", "_copy_block"):
        if hasattr(F, name):
            prof.wrap(F, name, "im2col")
    for name in ("col2im", "_col2im_add", "_fold_rows"):
        if hasattr(F, name):
            prof.wrap(F, name, "col2im")
    for name in ("conv2d_forward", "conv2d_backward", "_gemm"):
        if hasattr(F, name):
            prof.wrap(F, name, "convolution (compiled kernels, or GEMMs + glue)")
    for name in ("avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward", "max_pool2d_backward"):
        prof.wrap(F, name, "pooling")
    prof.wrap(F, "softmax_cross_entropy", "loss (softmax CE)")
    for cls in (L.Linear,):
        prof.wrap(cls, "forward", "GEMM (linear, incl. bias)")
        prof.wrap(cls, "backward", "GEMM (linear, incl. bias)")
    for cls in (L.ReLU, L.Sigmoid, L.Tanh, L.Flatten):
        prof.wrap(cls, "forward", "elementwise (activations, reshape)")
        prof.wrap(cls, "backward", "elementwise (activations, reshape)")
    for cls in (L.Conv2D, L.AvgPool2D, L.MaxPool2D):
        prof.wrap(cls, "forward", "layer glue (checks, grad copies)")
        prof.wrap(cls, "backward", "layer glue (checks, grad copies)")
    prof.wrap(O.SGD, "step", "optimizer")
    threads = getattr(F, "CPU_THREADS", 1)
    F.CPU_THREADS = 1  # exclusive times need one thread of work; the profile shows the ops' serial cost
    try:
        xr.sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            xr.step()
        xr.sync()
        total = time.perf_counter() - t0
    finally:
        prof.restore()
        F.CPU_THREADS = threads
    rows = sorted(prof.totals.items(), key=lambda kv: -kv[1])
    rows.append(("other (python, data)", total - sum(prof.totals.values())))
    return {"model": model, "batch": batch, "steps": steps, "total_s": total,
            "epoch_s": total / steps * EPOCH_IMAGES / batch,
            "ops": [{"op": k, "seconds": v, "share": v / total} for k, v in rows]}


def format_profile(p) -> str:
    lines = [f"{p['model']} batch {p['batch']}: {p['steps']} steps in {p['total_s']:.3f} s "
             f"({p['epoch_s']:.2f} s/epoch with the timers on, xcnn's own threads off)"]
    for r in p["ops"]:
        lines.append(f"  {r['op']:<44} {r['seconds'] * 1e3 / p['steps']:8.3f} ms/step  {100 * r['share']:5.1f}%")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# peak memory: one full epoch in a fresh process, VmHWM read from /proc
# --------------------------------------------------------------------------------------------
def _vm_hwm_bytes() -> Optional[int]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # noqa: PLC0415

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def peak_rss(framework, model, batch, device, steps=None, budget_s=90.0) -> dict:
    """Peak RSS of this process after building the network and training one 60,000-image epoch
    (stopped early, after at least 10 steps, past ``budget_s`` on a loaded machine: ``steps_done``)."""
    pool = _pool(model, batch, n=2)
    xr = _XcnnRunner(model, batch, device, HYPER, pool)
    r = xr if framework == "xcnn" else _TorchRunner(xr.net, batch, device, HYPER, pool)
    if framework != "xcnn":
        del xr
    before = _vm_hwm_bytes()
    steps = steps or math.ceil(EPOCH_IMAGES / batch)
    t0 = time.perf_counter()
    done = 0
    while done < steps and (done < 10 or time.perf_counter() - t0 < budget_s):
        r.step()
        done += 1
    r.sync()
    t = time.perf_counter() - t0
    return {"framework": framework, "model": model, "batch": batch, "steps": steps, "steps_done": done,
            "seconds": t, "peak_rss_bytes": _vm_hwm_bytes(), "peak_rss_before_training_bytes": before}


# --------------------------------------------------------------------------------------------
# machine description
# --------------------------------------------------------------------------------------------
def machine_info(threads) -> dict:
    import numpy as np  # noqa: PLC0415

    from .trainer import cpu_model  # noqa: PLC0415

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "numpy": np.__version__, "threads": threads,
            "env": {k: v for k, v in os.environ.items()
                    if k.startswith(("OPENBLAS", "OMP_", "MKL_", "MALLOC_", "GOTO", "KMP_"))}}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: no dict mode
        info["blas"] = None
    try:
        info["loadavg"] = list(os.getloadavg())
    except OSError:
        info["loadavg"] = None
    try:
        import torch  # noqa: PLC0415

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except Exception as exc:
        info["torch"] = None
        info["torch_note"] = f"{type(exc).__name__}: {exc}"
    from . import functional as F  # noqa: PLC0415

    info["xcnn_cpu_threads"] = getattr(F, "CPU_THREADS", 1)
    from . import cpu_kernels as CK  # noqa: PLC0415

    if CK.active():
        import numba  # noqa: PLC0415

        info["cpu_kernels"] = f"numba {numba.__version__}"
    else:
        info["cpu_kernels"] = f"numpy ({CK.reason_unavailable()})"
    return info


# --------------------------------------------------------------------------------------------
# the worker (child process) and the driver
# --------------------------------------------------------------------------------------------
def _torch_usable(device, threads) -> Optional[str]:
    """``None`` when torch imports (and has CUDA for a cuda device), else why not."""
    try:
        import torch  # noqa: PLC0415
    except Exception as exc:
        return f"torch not importable ({type(exc).__name__}: {exc}); pip install torch==2.13.0"
    torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        return "torch has no usable CUDA"
    return None


def worker(spec: dict) -> dict:
    """Run in the child: the timings (and, asked for, one peak-RSS measurement)."""
    threads = spec["threads"]
    if spec.get("rss"):  # xcnn's peak is measured without torch ever imported
        fw, model, batch = spec["rss"]
        no_torch = _torch_usable(spec["device"], threads) if fw == "torch" else None
        if no_torch:
            return {"framework": fw, "skipped": no_torch}
        return peak_rss(fw, model, batch, spec["device"], spec.get("rss_steps"))
    import numpy as np  # noqa: PLC0415

    no_torch = _torch_usable(spec["device"], threads) if spec["torch"] else "--no-torch given"
    out = {"machine": machine_info(threads), "torch_skipped": no_torch, "rows": [], "profiles": []}
    with np.errstate(over="ignore", invalid="ignore"):
        for model in spec["models"]:
            for batch in spec["batches"]:
                out["rows"].append(measure(model, batch, spec["device"], images=spec["images"],
                                           repeats=spec["repeats"], warmup=spec["warmup"],
                                           use_torch=no_torch is None, budget_s=spec["budget_s"],
                                           cuda_graph=spec.get("cuda_graph", False)))
                print(_row_line(out["rows"][-1]), file=sys.stderr, flush=True)
        if spec.get("profile"):
            for model in spec["models"]:
                for batch in spec["batches"]:
                    p = profile(model, batch, spec["device"], max(2, math.ceil(spec["images"] / batch)))
                    out["profiles"].append(p)
                    print(format_profile(p), file=sys.stderr, flush=True)
    return out


def _row_line(r) -> str:
    s = f"{r['model']:>8} batch {r['batch']:>5}: xcnn {r['xcnn']['epoch_s_median']:7.2f} s/epoch"
    if "xcnn-graph" in r:
        s += f", xcnn+graph {r['xcnn-graph']['epoch_s_median']:7.2f} s/epoch"
    if "torch" in r:
        s += f", torch {r['torch']['epoch_s_median']:7.2f} s/epoch, ratio {r['ratio_median']:.2f}"
    return s


def _child_env(threads, extra=None):
    env = dict(os.environ)
    for k in THREAD_VARS:
        env[k] = str(threads)
    env.update(extra or {})
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _run_child(spec, env, timeout):
    p = subprocess.run([sys.executable, "-m", "xcnn.bench", "worker", json.dumps(spec)], env=env,
                       stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark worker failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


#: What the measurements and profiles showed about the targets xcnn does not meet (kept with the
#: code that produces the numbers, so a rerun's Markdown carries them; revise when the code changes).
LIMITS = [
    "mlp1 and mlp2 (within a few percent of 1.0 at batch 50 and 256 -- run-to-run noise decides "
    "those -- and 1.1-1.2 at batch 1024): 75-85% of an MLP step is sgemm, and inside a training step, where a GEMM's operands "
    "come from memory rather than cache, PyTorch's MKL GEMMs run faster than NumPy's OpenBLAS ones: at batch 1024 the two 784x400 GEMMs of mlp2 take ~2.0 ms each in "
    "PyTorch (its profiler) against ~2.2-2.5 ms in xcnn, although timed alone, inputs cycling, the same "
    "OpenBLAS GEMM is no slower than PyTorch's (~2.1 against ~2.4 ms). Reused output buffers, the fastest "
    "transposition variant of each GEMM, fewer xcnn threads and skipping the SGD update's memory traffic "
    "were each measured: no change beyond noise. "
    "The rest of xcnn's step (bias, ReLU, loss, the one-pass compiled SGD update) is already lighter than "
    "PyTorch's (~1.2 ms against ~1.8 ms at batch 1024, both profiled). Closing the gap needs a faster "
    "GEMM than NumPy's BLAS gives inside the step; xcnn links no BLAS of its own.",
    "The compiled CPU kernels (Numba) split a batch into per-thread sample ranges. Numba's OpenMP pool "
    "starts a region in ~2 us but its idle workers spin, as do OpenBLAS's after a threaded GEMM; two "
    "spinning pools on two cores stall each other (an MLP or LeNet step 5-20x slower, measured). So the "
    "Numba pool runs only while OpenBLAS has been quiet for 50 ms -- always in the seed CNN, whose GEMMs "
    "xcnn keeps single-threaded -- and xcnn's own sleeping pool (~80 us a hand-off) otherwise; the "
    "results are the same bits either way.",
    "A loaded machine changes the picture: when another process keeps one core busy, any GEMM handed "
    "to a BLAS thread pool waits for it (~10x slower). xcnn keeps its convolution and skinny GEMMs "
    "below OpenBLAS's threading threshold and splits work itself, so it degrades far less than "
    "PyTorch there (seen during development: PyTorch 86-171 s/epoch at batch 50, xcnn ~3 s). The "
    "committed numbers come from a quiet machine; check the load average printed with each table.",
]


def _fmt_bytes(b):
    return "-" if not b else f"{b / 2**20:.0f} MiB"


def write_markdown(path: Path, res: dict) -> None:
    m = res["runs"][0]["machine"]
    L = [f"# xcnn vs PyTorch training speed ({res['device']})", "",
         f"Measured {res['started']} with `{res['command']}` ({res['seconds']:.0f} s in all).", "",
         "Seconds per 60,000-image epoch, extrapolated from timed training steps after a warm-up "
         f"(~{res['spec']['images']} images per repeat, up to {res['spec']['repeats']} repeats, xcnn and "
         "PyTorch alternating in one process on the same synthetic MNIST-shaped data, same initial "
         "weights, SGD lr 0.1, momentum 1e-3, weight decay 1e-3, softmax cross-entropy). "
         "Ratio = xcnn / PyTorch (median of repeats; lower is better for xcnn). Threads: "
         f"OpenBLAS, PyTorch and xcnn's own CPU paths each get {res['spec']['threads']}. PyTorch is optional: "
         "`pip install torch==2.13.0` (the CPU-only wheel is `torch==2.13.0+cpu`).", "",
         f"Machine: {m.get('cpu')}, {m.get('cores')} cores; NumPy {m.get('numpy')} with {m.get('blas')}; "
         f"PyTorch {m.get('torch')}; xcnn CPU kernels: {m.get('cpu_kernels', 'numpy')}.", ""]
    for run in res["runs"]:
        L += [f"## {run['label']}", ""]
        if run["torch_skipped"]:
            L += [f"PyTorch part skipped: {run['torch_skipped']}", ""]
        L += ["| model | batch | xcnn s/epoch (min / median) | torch s/epoch (min / median) | ratio median (min) "
              "| xcnn img/s | target | met |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in run["rows"]:
            x = r["xcnn"]
            t = r.get("torch")
            tt = f"{t['epoch_s_min']:.2f} / {t['epoch_s_median']:.2f}" if t else "-"
            ratio = f"{r['ratio_median']:.2f} ({r['ratio_min']:.2f})" if t else "-"
            tgt = f"<= {r['target']:.1f}" if t and r.get("target") else "-"
            met = ("yes" if r["met"] else "**no**") if t else "-"
            L.append(f"| {r['model']} | {r['batch']} | {x['epoch_s_min']:.2f} / {x['epoch_s_median']:.2f} | {tt} "
                     f"| {ratio} | {x['images_per_s']:,.0f} | {tgt} | {met} |")
            if "xcnn-graph" in r:
                gx = r["xcnn-graph"]
                gr = f"{r['ratio_graph_median']:.2f}" if t else "-"
                note = f" (capture failed: {r['graph_failed']}; eager steps)" if r.get("graph_failed") else ""
                L.append(f"| {r['model']}, --cuda-graph{note} | {r['batch']} | {gx['epoch_s_min']:.2f} / "
                         f"{gx['epoch_s_median']:.2f} | {tt} | {gr} | {gx['images_per_s']:,.0f} | | |")
        L += ["", f"Load average at start of this run: {run['machine'].get('loadavg')}.", ""]
    if res.get("memory"):
        L += ["## Peak memory", "", "Peak RSS (VmHWM) of a fresh process that builds the network and trains one full "
              "60,000-image epoch (fewer steps only if the epoch ran past 90 s).", "",
              "| framework | model | batch | peak RSS | RSS before training | steps done | seconds |",
              "|---|---|---:|---:|---:|---:|---:|"]
        for r in res["memory"]:
            if "skipped" in r:
                L.append(f"| {r.get('framework', '?')} | | | skipped: {r['skipped']} | | |")
                continue
            L.append(f"| {r['framework']} | {r['model']} | {r['batch']} | {_fmt_bytes(r['peak_rss_bytes'])} | "
                     f"{_fmt_bytes(r['peak_rss_before_training_bytes'])} | {r['steps_done']}/{r['steps']} "
                     f"| {r['seconds']:.2f} |")
        L.append("")
    first = res["runs"][0]
    if any("torch" in r for r in first["rows"]):
        met = [f"{r['model']} @ {r['batch']}" for r in first["rows"] if r.get("met")]
        missed = [f"{r['model']} @ {r['batch']} ({min(r['ratio_median'], r.get('ratio_graph_median', 9e9)):.2f} "
                  f"> {r['target']:.1f})"
                  for r in first["rows"] if "torch" in r and r.get("target") and not r.get("met")]
        L += ["## Targets (default environment, median ratio)", "",
              f"- met: {', '.join(met) or 'none'}", f"- not met: {', '.join(missed) or 'none'}"]
        if res["device"].startswith("cuda"):
            big = [r for r in first["rows"] if r["model"] == "seed-cnn" and r["batch"] == 1024]
            if big:
                ips = max(big[0]["xcnn"]["images_per_s"], big[0].get("xcnn-graph", {}).get("images_per_s", 0))
                L.append(f"- seed-cnn training images/s at batch 1024: {ips:,.0f} (target >= "
                         f"{GPU_IMAGES_PER_S:,}: {'met' if ips >= GPU_IMAGES_PER_S else '**not met**'})")
        xm = [r for r in res.get("memory", []) if r.get("framework") == "xcnn" and "peak_rss_bytes" in r]
        if xm:
            ok = xm[0]["peak_rss_bytes"] < 2**30
            L.append(f"- peak RSS of an xcnn seed-cnn epoch at batch {xm[0]['batch']}: "
                     f"{_fmt_bytes(xm[0]['peak_rss_bytes'])} ({'under' if ok else '**over**'} 1 GiB)")
        if missed:
            L += ["", "Why the missed targets are missed:", ""] + [f"- {t}" for t in LIMITS]
        L.append("")
    profiles = [p for run in res["runs"] for p in run.get("profiles", [])]
    if profiles:
        L += ["## Profile (xcnn, default environment)", "",
              "Exclusive wall time per op family (timers synchronise around every wrapped call, "
              "so the total runs a little slower than the table above).", "", "```"]
        L += [format_profile(p) for p in profiles] + ["```", ""]
    L += ["## Machine", ""]
    for k, v in m.items():
        L.append(f"- {k}: {v}")
    if res.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    L.append("")
    path.write_text("\n".join(L))


def run_benchmark(*, device="cpu", threads=2, quick=False, out=Path("benchmarks"), models=MODELS,
                  batches=BATCHES, profile_mode=False, malloc_variant=False, memory=True, use_torch=True,
                  repeats=None, images=None, command=None, cuda_graph=None) -> dict:
    t0 = time.perf_counter()
    if cuda_graph is None:
        cuda_graph = device.startswith("cuda")
    spec = {"device": device, "threads": threads, "models": list(models), "batches": list(batches),
            "cuda_graph": bool(cuda_graph),
            "images": images or (200 if quick else 6000), "repeats": repeats or (2 if quick else 5),
            "warmup": 1 if quick else 3, "torch": use_torch, "profile": profile_mode,
            "budget_s": 5.0 if quick else 20.0}
    variants = [("default environment", {})]
    if malloc_variant:
        variants.append(("with " + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items()), MALLOC_ENV))
    res = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device, "spec": spec,
           "command": command or "python -m xcnn.bench", "runs": [], "memory": [], "notes": []}
    for label, extra in variants:
        run = _run_child(dict(spec, profile=profile_mode and not extra), _child_env(threads, extra), timeout=1200)
        run["label"] = f"Training speed, {label}"
        run["env_extra"] = extra
        res["runs"].append(run)
    if memory and device == "cpu":
        mb = 1024 if not quick else min(batches)
        mm = "seed-cnn"
        for fw in (("xcnn", "torch") if use_torch else ("xcnn",)):
            mspec = dict(spec, rss=[fw, mm, mb])
            if quick:
                mspec["rss_steps"] = 2
            res["memory"].append(_run_child(mspec, _child_env(threads), timeout=600))
    env0 = res["runs"][0]["machine"]["env"]
    if any(k.startswith("OPENBLAS_CORETYPE") or k.startswith("OPENBLAS_L2") for k in env0):
        res["notes"].append(f"OpenBLAS tuning variables are set in this environment ({env0}); "
                            "results are reported as measured with them.")
    res["seconds"] = time.perf_counter() - t0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench-{device}.json").write_text(json.dumps(res, indent=2))
    write_markdown(out / f"bench-{device}.md", res)
    return res


def _csv_list(text, conv, allowed=None):
    vals = [conv(t.strip()) for t in text.split(",") if t.strip()]
    if allowed:
        bad = [v for v in vals if v not in allowed]
        if bad:
            raise ValueError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return vals


def main(argv=None):
    import typer  # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:  # internal: the measuring child
        print(json.dumps(worker(json.loads(argv[1]))))
        return 0
    app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)

    @app.command()
    def bench(device: str = typer.Option("cpu", help="cpu or cuda"),
              threads: int = typer.Option(2, help="threads for OpenBLAS and PyTorch"),
              quick: bool = typer.Option(False, help="a tiny run (for tests): few images, 2 repeats"),
              out: Path = typer.Option(Path("benchmarks"), help="folder for bench-<device>.json/.md"),
              models: str = typer.Option(",".join(MODELS), help="comma-separated presets"),
              batches: str = typer.Option(",".join(map(str, BATCHES)), help="comma-separated batch sizes"),
              profile: bool = typer.Option(False, "--profile", help="also print xcnn's per-op time breakdown"),
              malloc_variant: bool = typer.Option(False, "--malloc-variant",
                                                  help="measure once more with raised glibc malloc thresholds"),
              memory: bool = typer.Option(True, help="measure peak RSS of a seed-cnn epoch at batch 1024"),
              torch: bool = typer.Option(True, help="compare with PyTorch when it imports"),
              repeats: Optional[int] = typer.Option(None, help="timed repeats per framework"),
              images: Optional[int] = typer.Option(None, help="images per timed repeat"),
              cuda_graph: bool = typer.Option(True, help="on cuda, also time the --cuda-graph training step")):
        """Time xcnn (and PyTorch) training; write OUT/bench-<device>.json and .md."""
        from .models import PRESETS  # noqa: PLC0415

        if device.split(":")[0] not in ("cpu", "cuda"):
            raise typer.BadParameter("--device must be cpu or cuda")
        if device.startswith("cuda"):
            from .backend import gpu_unavailable_reason  # noqa: PLC0415

            index = int(device.split(":")[1]) if ":" in device else 0
            reason = gpu_unavailable_reason(index)
            if reason is not None:
                raise typer.BadParameter(f"--device {device}: {reason}")
        try:
            ms = _csv_list(models, str, list(PRESETS))
            bs = _csv_list(batches, int)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        cmd = "python -m xcnn.bench " + " ".join(a for a in argv)
        res = run_benchmark(device=device, threads=threads, quick=quick, out=out, models=ms, batches=bs,
                            profile_mode=profile, malloc_variant=malloc_variant, memory=memory, use_torch=torch,
                            repeats=repeats, images=images, command=cmd.strip(),
                            cuda_graph=cuda_graph and device.startswith("cuda"))
        print(f"wrote {out / f'bench-{device}.json'} and .md in {res['seconds']:.0f} s")

    app(argv, standalone_mode=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
