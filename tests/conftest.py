"""The backend fixture: every op, layer and network test body runs on

* ``cpu-numpy``  -- the pure-NumPy CPU implementations,
* ``cpu-numba``  -- the compiled CPU kernels (skipped without Numba),
* ``cuda-emu``   -- the CUDA path on the CuPy double (tests/doubles/fakecupy.py), whose kernels are
  ``kernels/*.cu`` compiled for the host (skipped without a C++ compiler),
* ``cuda``       -- a real GPU (skipped, with the reason, where none is usable).
"""
from __future__ import annotations

import importlib

import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from xcnn.backend import Device, get_device, gpu_unavailable_reason, to_host
from xcnn import data
from xcnn.cpu import config as cpu_config
from xcnn.errors import DataError

_GPU_REASON = gpu_unavailable_reason(0)
_NUMBA_REASON = None if cpu_config.numba_available() else cpu_config.numba_reason()
_CXX = shutil.which("g++")

BACKENDS = [
    pytest.param("cpu-numpy", id="cpu-numpy"),
    pytest.param("cpu-numba", id="cpu-numba", marks=pytest.mark.skipif(
        _NUMBA_REASON is not None, reason=f"compiled CPU kernels off: {_NUMBA_REASON}")),
    pytest.param("cuda-emu", id="cuda-emu", marks=pytest.mark.skipif(
        _CXX is None, reason="no C++ compiler (g++) for the CUDA kernel emulation")),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        _GPU_REASON is not None, reason=f"no usable GPU: {_GPU_REASON}")]),
]


@dataclass
class Backend:
    """Where a test body runs: ``device`` takes host arrays there, ``fake`` is the CuPy double on
    ``cuda-emu`` (None elsewhere)."""

    name: str
    device: Device
    fake: object = None

    @property
    def is_cuda(self) -> bool:
        return self.device.is_cuda

    def asarray(self, a, dtype=None):
        """A copy of ``a`` on this backend's device (a copy on the CPU too, as on a GPU, so in-place
        updates never reach the test's own arrays)."""
        return self.device.asarray(np.array(a, dtype=dtype, copy=True))

    @staticmethod
    def host(a):
        return to_host(a)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    yield from _backend(request.param, monkeypatch)


def _backend(name, monkeypatch):
    if name == "cpu-numpy":
        with cpu_config.using(kernels="numpy"):
            yield Backend(name, get_device("cpu"))
    elif name == "cpu-numba":
        with cpu_config.using(kernels="numba"):
            yield Backend(name, get_device("cpu"))
    elif name == "cuda-emu":
        from doubles import fakecupy

        with cpu_config.using(kernels="numpy"), fakecupy.install(monkeypatch) as fake:
            yield Backend(name, get_device("cuda"), fake)
    else:
        yield Backend(name, get_device("cuda"))


@pytest.fixture
def cuda_emu(monkeypatch):
    """The CUDA path on the CuPy double alone (for tests about the GPU path itself)."""
    if _CXX is None:
        pytest.skip("no C++ compiler (g++) for the CUDA kernel emulation")
    yield from _backend("cuda-emu", monkeypatch)


from hypothesis import HealthCheck, settings  # noqa: E402

# The backend fixture is set up once per test function and shared by its hypothesis examples (it
# only selects an implementation), so the function-scoped-fixture health check does not apply.
settings.register_profile("xcnn", deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("xcnn")


# ----------------------------------------------------------------------------- MNIST for the tests that need it

@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """A ``data_dir`` MNIST loads from without the network: None when it is in the usual place,
    else a copy (verified against the pins) of the ../shared/data/mnist a dev or CI checkout has."""
    try:
        data.load("mnist", fetch_if_missing=False)
        return None
    except DataError as exc:
        missing = str(exc)
    shared = importlib.import_module("xcnn.data.fetch")._shared_sources("mnist")
    if not shared:
        pytest.skip(f"needs MNIST, which is neither in the data cache ({missing}) nor in a ../shared/data/mnist "
                    "copy; `python -m xcnn.data fetch mnist` puts it there (tests never download it)")
    root = tmp_path_factory.mktemp("mnist-data")
    data.fetch("mnist", root, source=shared[0])
    return str(root)


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    return data.load("mnist", mnist_dir, fetch_if_missing=False)
