"""xcnn/machine.py, the one description of the machine: its fields and their values from
independent sources, GPU fields only for a CUDA spec (from the CuPy double here), and no crash
where CuPy is missing or cannot name the GPU."""
from __future__ import annotations

import importlib.util
import os
import platform
import types

import numpy as np
import pytest
from doubles import fakecupy

import xcnn
from xcnn import backend, machine
from xcnn.cpu import config as cpu_config
from xcnn.errors import DeviceError

COMMON = {"xcnn", "python", "numpy", "platform", "cpu", "cores", "blas", "cpu_kernels", "cpu_threads", "loadavg",
          "env"}
GPU = {"gpu", "cupy", "cuda_runtime", "cuda_driver"}


def _no_cupy(monkeypatch):
    monkeypatch.setattr(backend, "_CUPY", None)
    monkeypatch.setattr(backend, "_CUPY_TRIED", True)
    monkeypatch.setattr(backend, "_CUPY_ERROR", "ImportError: No module named 'cupy'")


def test_fields_and_their_values(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.setenv("XCNN_NUM_THREADS", "2")
    monkeypatch.setenv("LANG_TEST_NOT_THREADS", "y")
    with cpu_config.using(kernels="numpy", threads=3):
        info = machine.describe()
    assert COMMON <= set(info)
    assert "processor" not in info and "device" not in info and not (GPU & set(info)) and "torch" not in info
    assert info["xcnn"] == xcnn.__version__ and info["numpy"] == np.__version__
    assert info["python"] == platform.python_version() and info["platform"] == platform.platform()
    assert info["cores"] == os.cpu_count() and info["cpu"] and isinstance(info["cpu"], str)
    assert info["cpu_kernels"] == "numpy (XCNN_CPU_KERNELS=numpy)" and info["cpu_threads"] == 3
    assert info["env"]["OPENBLAS_NUM_THREADS"] == "3" and info["env"]["XCNN_NUM_THREADS"] == "2"
    assert "LANG_TEST_NOT_THREADS" not in info["env"]
    assert info["loadavg"] is None or (len(info["loadavg"]) == 3 and all(v >= 0 for v in info["loadavg"]))


@pytest.mark.skipif(not cpu_config.numba_available(), reason="Numba is not importable")
def test_compiled_kernels_are_named_with_numbas_version():
    import numba

    with cpu_config.using(kernels="numba"):
        assert machine.describe()["cpu_kernels"] == f"numba {numba.__version__}"


def test_cpu_model_matches_proc_cpuinfo():
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
    except OSError:
        names = []
    if not names:
        pytest.skip("no model name in /proc/cpuinfo here")
    assert machine.cpu_model() == names[0]


def test_gpu_fields_only_for_a_cuda_spec(monkeypatch):
    with fakecupy.install(monkeypatch) as fake:
        cpu = machine.describe("cpu")
        assert cpu["device"] == "cpu" and not (GPU & set(cpu)) and "gpu_note" not in cpu
        for spec in ("cuda", "cuda:0"):
            info = machine.describe(spec)
            assert COMMON <= set(info) and GPU <= set(info)
            name = fake.cuda.runtime.getDeviceProperties(0)["name"]  # bytes, as CuPy returns it
            assert info["device"] == spec and info["gpu"] == name.decode() and info["cupy"] == fake.__version__
            assert info["cuda_runtime"] == fake.cuda.runtime.runtimeGetVersion()
            assert info["cuda_driver"] == fake.cuda.runtime.driverGetVersion()


def test_a_gpu_that_cannot_be_named_is_noted_not_fatal(monkeypatch):
    with fakecupy.install(monkeypatch) as fake:
        def broken(index):
            raise RuntimeError("cudaErrorNoDevice")

        monkeypatch.setattr(fake.cuda, "runtime", types.SimpleNamespace(getDeviceProperties=broken))
        info = machine.describe("cuda")
    assert "gpu" not in info and info["cupy"] == fake.__version__
    assert info["gpu_note"] == "RuntimeError: cudaErrorNoDevice"


def test_no_crash_without_cupy(monkeypatch):
    _no_cupy(monkeypatch)
    for spec in (None, "cpu", "cuda", "cuda:1"):
        info = machine.describe(spec)
        assert COMMON <= set(info) and not (GPU & set(info)) and "gpu_note" not in info
    assert machine.describe("cuda:1")["device"] == "cuda:1"


def test_a_bad_device_spec_is_refused():
    with pytest.raises(DeviceError):
        machine.describe("tpu")


def test_torch_fields_on_request():
    info = machine.describe(torch=True)
    assert "torch" in info
    if importlib.util.find_spec("torch") is None:
        assert info["torch"] is None and "torch_note" in info
    else:
        import torch

        assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
