"""Peak memory of a training epoch: VmHWM (peak RSS) of a fresh process, read from /proc."""
from __future__ import annotations

import math
import time
from typing import Optional

from .runners import EPOCH_IMAGES, HYPER, TorchRunner, XcnnRunner, synthetic_batches

__all__ = ["peak_rss"]


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
    pool = synthetic_batches(model, batch, n=2)
    xr = XcnnRunner(model, batch, device, HYPER, pool)
    r = xr if framework == "xcnn" else TorchRunner(xr.net, batch, device, HYPER, pool)
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
