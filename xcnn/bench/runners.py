"""The runners the benchmark times: xcnn's training step (eager, or the ``--cuda-graph`` step) and the
identical network in PyTorch (same initial weights, same SGD, same synthetic MNIST-shaped data),
interleaved repeat by repeat in one process so machine noise hits both alike."""
from __future__ import annotations

import contextlib
import math
import statistics
import time

EPOCH_IMAGES = 60000
MODELS = ("seed-cnn", "mlp2", "mlp1")
BATCHES = (50, 256, 1024)
#: the targets of the performance issue (xcnn seconds per epoch / PyTorch's, at most): on the CPU per
#: model, on the GPU per (model, batch) -- where the better of xcnn's eager and CUDA-graph steps counts
TARGETS = {"seed-cnn": 0.8, "mlp2": 1.0, "mlp1": 1.0}
GPU_TARGETS = {("seed-cnn", 50): 1.0}
#: and on the GPU, training images per second at batch 1024 (seed-cnn), at least
GPU_IMAGES_PER_S = 1_000_000
HYPER = {"lr": 0.1, "momentum": 1e-3, "weight_decay": 1e-3}  # the report's settings

__all__ = ["EPOCH_IMAGES", "MODELS", "BATCHES", "TARGETS", "GPU_TARGETS", "GPU_IMAGES_PER_S", "HYPER", "torch_twin",
           "XcnnRunner", "TorchRunner", "synthetic_batches", "measure"]


def torch_twin(net, device):
    """The PyTorch network equal to xcnn ``net`` (a preset), with its weights copied."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    from ..backend import to_host  # noqa: PLC0415
    from ..nn.layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU  # noqa: PLC0415

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


class XcnnRunner:
    def __init__(self, model, batch, device, hyper, pool, cuda_graph=False, gemm=None):
        from ..backend import get_device  # noqa: PLC0415
        from ..nn import SGD, SoftmaxCrossEntropy, build_model  # noqa: PLC0415

        self.dev = get_device(device)
        self.net = build_model(model, seed=0, device=self.dev)
        self.opt = SGD(self.net.parameters(), **hyper)
        self.loss = SoftmaxCrossEntropy()
        self.data = [(self.dev.asarray(x), self.dev.asarray(t)) for x, t in pool]
        self.i = 0
        self.graph = None
        self.gemm = gemm  # CUDA eager steps: "cublas" or "kernels" (our GEMMs); None = the default
        if cuda_graph:  # the trainer's --cuda-graph step: gathers each batch into its static buffers
            from ..train.step import GraphedTrainStep  # noqa: PLC0415

            xp = self.dev.xp
            self.X = xp.concatenate([x for x, _ in self.data])
            self.Y = xp.concatenate([t for _, t in self.data])
            self.idx = [xp.arange(i * batch, (i + 1) * batch) for i in range(len(self.data))]
            self.graph = GraphedTrainStep(self.net, self.opt, self.loss, batch, log=lambda *a: None)

    def scope(self):
        if self.graph is not None:
            return self.graph.scope()
        if self.gemm is not None:
            from ..cuda import gemm  # noqa: PLC0415

            return gemm.using(self.gemm)
        return contextlib.nullcontext()

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


class TorchRunner:
    def __init__(self, xnet, batch, device, hyper, pool):
        import torch  # noqa: PLC0415

        self.torch = torch
        from ..backend import parse_device  # noqa: PLC0415

        kind, index = parse_device(device)
        self.cuda = kind == "cuda"
        self.device = torch.device(f"cuda:{index}" if self.cuda else "cpu")
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.net = torch_twin(xnet, self.device)
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


def synthetic_batches(model, batch, n=4, seed=0):
    """``n`` synthetic MNIST-shaped batches (pixels in [0, 1), labels 0..9); speed ignores pixel values."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    shape = (batch, 1, 28, 28)
    return [(rng.random(shape, dtype=np.float32), rng.integers(0, 10, batch).astype(np.int64)) for _ in range(n)]


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
    ``cuda_graph`` (CUDA only) adds xcnn's ``--cuda-graph`` step as a third runner, and the eager step
    with our GEMM kernels in place of cuBLAS (``xcnn-kernels``): the figures the choice of
    ``XCNN_GPU_GEMM``'s default rests on."""
    pool = synthetic_batches(model, batch)
    xr = XcnnRunner(model, batch, device, HYPER, pool)
    runners = {"xcnn": xr}
    if cuda_graph:
        runners["xcnn-graph"] = XcnnRunner(model, batch, device, HYPER, pool, cuda_graph=True)
        runners["xcnn-kernels"] = XcnnRunner(model, batch, device, HYPER, pool, gemm="kernels")
    if use_torch:
        runners["torch"] = TorchRunner(xr.net, batch, device, HYPER, pool)
    steps = max(2, math.ceil(images / batch))
    for r in runners.values():
        with r.scope():
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
            with runners[k].scope():
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
        for k in ("xcnn-graph", "xcnn-kernels"):
            if k in times:
                row[f"ratio_{k[5:]}_median"] = row[k]["epoch_s_median"] / row["torch"]["epoch_s_median"]
                best = min(best, row[f"ratio_{k[5:]}_median"])
        row["target"] = GPU_TARGETS.get((model, batch)) if xr.dev.is_cuda else TARGETS.get(model)
        row["met"] = row["target"] is not None and best <= row["target"]
    return row
