"""The one description of the machine a run or a measurement happened on (recorded in run
directories, benchmark reports, the lab report and the GPU check)."""
from __future__ import annotations

import os
import platform

import numpy as np

__all__ = ["describe", "cpu_model"]

_THREAD_ENV = ("OPENBLAS", "OMP_", "MKL_", "MALLOC_", "GOTO", "KMP_", "XCNN_")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> str | None:
    try:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: no dict mode
        return None


def _torch() -> dict:
    try:
        import torch  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a broken install
        return {"torch": None, "torch_note": f"{type(exc).__name__}: {exc}"}
    info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def describe(device: str | None = None, *, torch: bool = False) -> dict:
    """Versions, CPU, cores, BLAS, xcnn's CPU kernels and threads, the load average, the threading
    environment; the GPU's name and CUDA versions when ``device`` is a CUDA spec; PyTorch's version
    when ``torch`` is true."""
    from . import __version__  # noqa: PLC0415
    from .backend import describe_gpu, parse_device  # noqa: PLC0415
    from .cpu import config as cpu_config  # noqa: PLC0415

    info = {"xcnn": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(), "blas": _blas(),
            "cpu_kernels": cpu_config.describe_kernels(), "cpu_threads": cpu_config.get().threads}
    try:
        info["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        info["loadavg"] = None
    info["env"] = {k: v for k, v in os.environ.items() if k.startswith(_THREAD_ENV)}
    if device is not None:
        kind, index = parse_device(device)
        info["device"] = str(device)
        if kind == "cuda":
            info.update(describe_gpu(index))
    if torch:
        info.update(_torch())
    return info
