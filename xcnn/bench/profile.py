"""Where xcnn's time goes: wall time per op family, read through the dispatcher's profiling hook
(:func:`xcnn.ops.profile_hook`) -- no function is patched. The hook synchronises the device
around every op, so the total runs a little slower than an unprofiled step; what no op accounts
for (layer checks, Python, batch slicing) is reported as "other"."""
from __future__ import annotations

import contextlib
import time

from .runners import EPOCH_IMAGES, HYPER, XcnnRunner, synthetic_batches

__all__ = ["profile", "format_profile", "FAMILIES"]

#: op name -> the family it is reported under
FAMILIES = {
    "im2col": "convolution", "col2im": "convolution", "conv2d_forward": "convolution",
    "conv2d_backward": "convolution",
    "avg_pool2d_forward": "pooling", "avg_pool2d_backward": "pooling", "max_pool2d_forward": "pooling",
    "max_pool2d_backward": "pooling",
    "relu_forward": "elementwise (activations)", "relu_backward": "elementwise (activations)",
    "sigmoid_forward": "elementwise (activations)", "sigmoid_backward": "elementwise (activations)",
    "tanh_forward": "elementwise (activations)", "tanh_backward": "elementwise (activations)",
    "linear_forward": "GEMM (linear, incl. bias)", "linear_backward": "GEMM (linear, incl. bias)",
    "softmax_cross_entropy": "loss (softmax CE)", "sgd_update": "optimizer", "adam_update": "optimizer",
}


class _Timer:
    """The hook: exclusive seconds per family (an op called inside another is charged once)."""

    def __init__(self, sync):
        self.sync = sync
        self.totals: dict[str, float] = {}
        self.depth = 0

    @contextlib.contextmanager
    def __call__(self, op, backend):
        if self.depth:  # nested: the outer op's time already covers it
            yield
            return
        self.depth += 1
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            fam = FAMILIES.get(op, op)
            self.totals[fam] = self.totals.get(fam, 0.0) + time.perf_counter() - t0
            self.depth -= 1


def profile(model, batch, device, steps):
    """Per-op-family seconds of ``steps`` xcnn training steps, on one CPU thread (the ops' serial
    cost: exclusive times need one thread of work)."""
    from ..cpu import config as cpu_config  # noqa: PLC0415
    from ..ops import profile_hook  # noqa: PLC0415

    xr = XcnnRunner(model, batch, device, HYPER, synthetic_batches(model, batch))
    for _ in range(3):
        xr.step()
    timer = _Timer(xr.sync)
    with cpu_config.using(threads=1), profile_hook(timer):
        xr.sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            xr.step()
        xr.sync()
        total = time.perf_counter() - t0
    rows = sorted(timer.totals.items(), key=lambda kv: -kv[1])
    rows.append(("other (layer checks, python, data)", total - sum(timer.totals.values())))
    return {"model": model, "batch": batch, "steps": steps, "total_s": total,
            "epoch_s": total / steps * EPOCH_IMAGES / batch,
            "ops": [{"op": k, "seconds": v, "share": v / total} for k, v in rows]}


def format_profile(p) -> str:
    lines = [f"{p['model']} batch {p['batch']}: {p['steps']} steps in {p['total_s']:.3f} s "
             f"({p['epoch_s']:.2f} s/epoch with the timers on, xcnn's own threads off)"]
    for r in p["ops"]:
        lines.append(f"  {r['op']:<44} {r['seconds'] * 1e3 / p['steps']:8.3f} ms/step  {100 * r['share']:5.1f}%")
    return "\n".join(lines)
