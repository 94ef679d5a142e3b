"""A NumPy-backed stand-in for CuPy, so the GPU code paths run on a machine without a GPU.

"Device" arrays are a NumPy subclass (``FakeDeviceArray``) that :func:`xcnn.backend.is_device_array`
recognises once :func:`install` has put this module in CuPy's place; NumPy functions keep the
subclass, so every ``xp.*`` call of a GPU branch stays "on the device". ``RawModule`` kernels run on
the CPU emulation of ``kernels/*.cu`` (tests/_emu.py), through the same argument checks as on a GPU.
Streams, events and memory pools are inert, and stream capture fails as it does where CUDA cannot
record (so the CUDA-graph step's fallback runs for real). What this cannot show: anything about real CUDA
(timing, asynchrony, stream capture) -- the ``cuda`` test cases cover that where a GPU exists.
"""
from __future__ import annotations

import contextlib
import types

import numpy as np

import _emu
from xcnn import backend
from xcnn import kernels as K


class FakeDeviceArray(np.ndarray):
    """NumPy memory posing as a CuPy array."""

    def get(self, stream=None):
        return np.array(self.view(np.ndarray), copy=True)

    @property
    def device(self):
        return _Device(0)


def _dev(a):
    """Results of NumPy functions as device arrays (scalars and non-arrays pass through)."""
    if isinstance(a, np.ndarray) and not isinstance(a, FakeDeviceArray):
        return a.view(FakeDeviceArray)
    if isinstance(a, tuple):
        return tuple(_dev(x) for x in a)
    return a


class _Device:
    def __init__(self, index=0):
        self.id = int(index)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self):
        return self.id

    def synchronize(self):
        pass


class _Event:
    pass


class _Stream:
    def __init__(self, non_blocking=False):
        self.ptr = id(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass

    def record(self, event=None):
        return event or _Event()

    def wait_event(self, event):
        pass

    def begin_capture(self, mode=None):
        # what CUDA answers when capture is impossible; a NumPy stand-in cannot record kernels
        raise RuntimeError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing "
                           "(NumPy stand-in)")

    def end_capture(self):
        raise RuntimeError("cudaErrorIllegalState: not capturing")


class _RawModule:
    compiled: list = []

    def __init__(self, code, options=(), name_expressions=None):
        _RawModule.compiled.append(options)
        self.code = code

    def get_function(self, name):
        mod = next(_emu.build(f) for f in K.kernel_files() if name in K.kernel_signatures(f))
        return lambda grid, block, args: mod.launch(name, grid[0], block[0], args)


def _asarray(a, dtype=None):
    if isinstance(a, FakeDeviceArray) and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    host = a.get() if isinstance(a, FakeDeviceArray) else np.asarray(a)
    return _dev(np.array(host, dtype=dtype, copy=True))


class _Module(types.ModuleType):
    """``fake.<name>`` is NumPy's ``<name>`` with array results turned into device arrays."""

    def __getattr__(self, name):
        fn = getattr(np, name)
        if callable(fn) and not isinstance(fn, type):
            def wrapped(*a, **kw):
                return _dev(fn(*a, **kw))
            return wrapped
        return fn


def make():
    """A fresh stand-in module."""
    fake = _Module("fakecupy")
    fake.__version__ = "0.0-fake"
    fake.ndarray = FakeDeviceArray
    fake.asarray = _asarray
    fake.RawModule = _RawModule
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 0,
                                    driverGetVersion=lambda: 0,
                                    getDeviceProperties=lambda i: {"name": b"NumPy stand-in"})
    current = _Stream()
    fake.cuda = types.SimpleNamespace(
        Device=_Device, runtime=runtime, Stream=_Stream, Event=_Event, MemoryPool=lambda: types.SimpleNamespace(
            malloc=None), using_allocator=lambda malloc=None: contextlib.nullcontext(),
        get_current_stream=lambda device_id=-1: current)
    return fake


@contextlib.contextmanager
def install(monkeypatch):
    """Put a stand-in in CuPy's place (``backend._CUPY``) for the duration; kernel caches are cleared
    on the way in and out."""
    fake = make()
    monkeypatch.setattr(backend, "_CUPY", fake)
    monkeypatch.setattr(backend, "_CUPY_TRIED", True)
    K.clear_cache()
    try:
        yield fake
    finally:
        K.clear_cache()
