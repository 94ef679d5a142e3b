"""Devices (xcnn/backend.py): the one spec parser, "is a GPU usable?", placement of arrays and the
device scope the ops run in."""
from __future__ import annotations

import numpy as np
import pytest

from xcnn import backend
from xcnn.backend import DeviceError, get_device, parse_device, placement


def test_device_specs():
    assert str(get_device("cpu")) == "cpu" and get_device("cpu").xp is np
    assert parse_device("cuda:3") == ("cuda", 3) and parse_device(" CUDA ") == ("cuda", 0)
    assert parse_device("auto") == ("auto", 0) and parse_device(get_device("cpu")) == ("cpu", 0)
    for bad in ("gpu", "cuda:x", "cpu:1", "", "auto:0", "cuda:-1"):
        with pytest.raises(DeviceError, match="unknown device"):
            get_device(bad)


def test_cuda_without_a_gpu_says_why_and_how_to_fix(monkeypatch, capsys):
    monkeypatch.setattr(backend, "gpu_unavailable_reason", lambda index=0: "CuPy is not installed (test). "
                        "Install it with `pip install xcnn[cuda12]`.")
    with pytest.raises(DeviceError, match=r"'cuda:1' is not usable: CuPy is not installed.*xcnn\[cuda12\].*--device cpu"):
        get_device("cuda:1")
    assert get_device("auto").kind == "cpu"
    assert "no usable GPU, running on CPU" in capsys.readouterr().err


def test_real_reason_is_specific_when_cupy_is_missing():
    reason = backend.gpu_unavailable_reason(0)
    if reason is None:
        pytest.skip("a GPU is usable here")
    assert "CuPy" in reason and ("pip install 'xcnn[cuda" in reason or "driver" in reason or "nvidia-smi" in reason)


def test_a_driver_only_host_is_told_to_install_the_ctk_extras(monkeypatch):
    """CuPy 14 on a host with the driver but no CUDA headers fails at its first kernel compile with
    RuntimeError('Failed to find CUDA headers ...') (cupy/_core/core.pyx:2581-2603): the reason names
    the extras that bring CuPy's [ctk]."""
    from types import SimpleNamespace

    def zeros(n):
        raise RuntimeError("Failed to find CUDA headers. Please install CUDA toolkit headers "
                           "(e.g., pip install cupy-cuda12x[ctk])")

    class Dev:
        def __init__(self, i):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    runtime = SimpleNamespace(getDeviceCount=lambda: 1)
    cp = SimpleNamespace(zeros=zeros, cuda=SimpleNamespace(runtime=runtime, Device=Dev))
    monkeypatch.setattr(backend, "cupy_or_none", lambda: cp)
    reason = backend.gpu_unavailable_reason(0)
    assert reason.startswith("CUDA device 0 did not answer a test computation (RuntimeError: Failed to find CUDA")
    assert "'xcnn[cuda13]'" in reason and "[ctk]" in reason and "\n" not in reason


def test_placement_of_host_and_device_arrays(cuda_emu):
    dev = cuda_emu.asarray(np.zeros(2))
    assert placement([np.zeros(2), None, np.ones(1)]) is None and placement([]) is None
    assert placement([dev, None, dev]) == 0
    assert backend.get_array_module(dev) is cuda_emu.fake and backend.get_array_module(np.zeros(1)) is np
    with pytest.raises(DeviceError, match="mixed host .* and device"):
        placement([np.zeros(2), dev])
    with pytest.raises(DeviceError, match="mixed host .* and device"):
        placement([dev, np.zeros(2)])


def test_entering_a_cuda_device_makes_it_current_and_nests(monkeypatch):
    """`with device:` enters CuPy's device context (checked with a recording stand-in) and leaves it."""
    log = []

    class FakeDeviceContext:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            log.append(("enter", self.index))
            return self

        def __exit__(self, *exc):
            log.append(("exit", self.index))
            return False

    class FakeCupy:
        class cuda:  # noqa: N801 - mirrors cupy.cuda
            Device = FakeDeviceContext

    monkeypatch.setattr(backend, "_CUPY", FakeCupy)
    d0, d1 = backend.Device("cuda", 0), backend.Device("cuda", 1)
    with d0:
        with d1:
            assert log == [("enter", 0), ("enter", 1)]
        with get_device("cpu"):
            pass
    assert log == [("enter", 0), ("enter", 1), ("exit", 1), ("exit", 0)]
    with backend.device_scope(1):
        pass
    with backend.device_scope(None):
        pass
    assert log[-2:] == [("enter", 1), ("exit", 1)]


def test_to_host_copies_device_arrays(cuda_emu):
    a = cuda_emu.asarray(np.arange(3.0))
    h = backend.to_host(a)
    assert type(h) is np.ndarray and h.tolist() == [0.0, 1.0, 2.0]
    assert backend.device_of(a) == get_device("cuda") and backend.device_of(h) == get_device("cpu")
