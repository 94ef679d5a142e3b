"""A NumPy-backed stand-in for CuPy, so the GPU code paths run on a machine without a GPU.

"Device" arrays are a NumPy subclass (``FakeDeviceArray``) that :func:`xcnn.backend.is_device_array`
recognises once :func:`install` has put this module in CuPy's place; NumPy functions keep the
subclass, so every ``xp.*`` call of a GPU branch stays "on the device". ``RawModule`` kernels run on
the CPU emulation of ``kernels/*.cu`` (tests/_emu.py), through the same argument checks as on a GPU.

Stream capture is emulated with CUDA-graph semantics: between ``begin_capture`` and ``end_capture``
every array operation (ufuncs, reductions, array functions, fills, item assignments, kernel
launches) is recorded with the very array objects it used -- the addresses of a real graph -- and
its Python scalars as they were; afterwards every array that existed before the capture is put
back (a capture executes nothing), and ``Graph.launch`` replays the recorded operations in order.
A host read (``float(x)``, ``.get()``) or a host-to-device copy during capture raises, as CUDA does.
``capture_unsupported = True`` makes ``begin_capture`` fail the way CUDA does where it cannot record.
What this cannot show: anything about real CUDA timing or asynchrony -- the ``cuda`` cases' job.
"""
from __future__ import annotations

import contextlib
import types
import weakref

import numpy as np

from doubles import emu as _emu
from xcnn import backend
from xcnn.cuda import loader as K

#: ``launch``: ``(grid, block)`` forced on every kernel launch (None: what the caller asked for), to
#: run the grid-stride loops with launch shapes far too small for the data; ``sanitize``: build the
#: emulated kernels with AddressSanitizer and UBSan (the process must preload libasan)
_STATE = types.SimpleNamespace(recording=None, capture_unsupported=False, launch=None, sanitize=False)
_LIVE: "weakref.WeakValueDictionary[int, FakeDeviceArray]" = weakref.WeakValueDictionary()


def _plain(a):
    if isinstance(a, FakeDeviceArray):
        return a.view(np.ndarray)
    if isinstance(a, (tuple, list)):
        return type(a)(_plain(x) for x in a)
    return a


def _dev(a):
    """Results as device arrays: ndarrays become views, NumPy scalars 0-d arrays (as CuPy returns)."""
    if isinstance(a, FakeDeviceArray):
        return a
    if isinstance(a, np.ndarray):
        return a.view(FakeDeviceArray)
    if isinstance(a, np.generic):
        return np.asarray(a).view(FakeDeviceArray)
    if isinstance(a, tuple):
        return tuple(_dev(x) for x in a)
    return a


def _record(op):
    if _STATE.recording is not None:
        _STATE.recording.ops.append(op)


def _no_cublas():
    # cupy_backends/cuda/libs/cublas.pyx (v14.2.0) setStream: every cuBLAS wrapper sets its stream
    # first, and that refuses a capturing stream; CuPy's matmul/dot reach cuBLAS for float arrays.
    if _STATE.recording is not None:
        raise NotImplementedError("calling cuBLAS API during stream capture is currently unsupported")


def _no_host_io(what):
    if _STATE.recording is not None:
        raise RuntimeError(f"{what} during stream capture (a synchronous device-host transfer is not allowed)")


class FakeDeviceArray(np.ndarray):
    """NumPy memory posing as a CuPy array."""

    def __array_finalize__(self, obj):
        _LIVE[id(self)] = self

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul:
            _no_cublas()
        out = kwargs.pop("out", None)
        outs = tuple(out) if out is not None else None
        res = getattr(ufunc, method)(*_plain(inputs), **kwargs, **({"out": _plain(outs)} if outs else {}))
        if method == "at":
            _record(("call", getattr(ufunc, method), inputs, kwargs, None))
            return None
        if outs:
            result = outs if isinstance(res, tuple) else outs[0]
        else:
            result = _dev(res)
        targets = result if isinstance(result, tuple) else (result,)
        _record(("ufunc", ufunc, method, inputs, kwargs, targets))
        return result

    def __array_function__(self, func, types_, args, kwargs):
        res = func(*_plain(args), **{k: _plain(v) for k, v in kwargs.items()})
        out = kwargs.get("out")
        result = out if out is not None else _dev(res)
        if isinstance(result, FakeDeviceArray) and not np.may_share_memory(result, _first_array(args)):
            _record(("func", func, args, kwargs, result))  # a computed array (views compute nothing)
        return result

    # methods that NumPy runs without dispatching to the two hooks above
    def argmax(self, axis=None, out=None):
        return np.argmax(self, axis=axis, out=out)

    def copy(self, order="C"):
        return np.copy(self, order=order)

    def astype(self, dtype, copy=True, **kw):
        res = self.view(np.ndarray).astype(dtype, copy=copy, **kw)
        if np.may_share_memory(res, self):
            return self
        out = res.view(FakeDeviceArray)
        _record(("derive", lambda src: src.astype(dtype, **kw), self, out))
        return out

    def reshape(self, *shape, **kw):
        res = self.view(np.ndarray).reshape(*shape, **kw)
        out = res.view(FakeDeviceArray)
        if not np.may_share_memory(res, self):  # a reshape that had to copy (e.g. of a transpose)
            _record(("derive", lambda src: src.reshape(*shape, **kw), self, out))
        return out

    def ravel(self, order="C"):
        return self.reshape(-1, order=order)

    def __getitem__(self, key):
        res = _dev(self.view(np.ndarray)[_plain(key)])
        if isinstance(res, FakeDeviceArray) and not np.may_share_memory(res, self):  # fancy indexing: a gather
            _record(("derive", lambda src: src[_plain(key)], self, res))
        return res

    def fill(self, value):
        self.view(np.ndarray).fill(value)
        _record(("fill", self, value))

    def __setitem__(self, key, value):
        self.view(np.ndarray)[_plain(key)] = _plain(value)
        _record(("setitem", self, key, value))

    def get(self, stream=None):
        _no_host_io("a device-to-host copy (.get())")
        return np.array(self.view(np.ndarray), copy=True)

    def item(self, *a):
        _no_host_io("a host read (.item())")
        return self.view(np.ndarray).item(*a)

    def __float__(self):
        _no_host_io("a host read (float())")
        return float(self.view(np.ndarray))

    def __int__(self):
        _no_host_io("a host read (int())")
        return int(self.view(np.ndarray))

    @property
    def device(self):
        return _Device(0)

    @property
    def data(self):
        """CuPy's ``MemoryPointer``: ``.ptr`` is the address of the first element."""
        return types.SimpleNamespace(ptr=self.ctypes.data)


def _first_array(args):
    for a in args:
        if isinstance(a, np.ndarray):
            return a
        if isinstance(a, (tuple, list)):
            for b in a:
                if isinstance(b, np.ndarray):
                    return b
    return np.empty(0)


def _replay(op):
    kind = op[0]
    if kind == "ufunc":
        _, ufunc, method, inputs, kwargs, targets = op
        getattr(ufunc, method)(*_plain(inputs), **kwargs, out=_plain(targets) if len(targets) > 1 else
                               _plain(targets[0]))
    elif kind == "func":
        _, func, args, kwargs, result = op
        if kwargs.get("out") is not None:
            func(*_plain(args), **{k: _plain(v) for k, v in kwargs.items()})
        else:
            result.view(np.ndarray)[...] = func(*_plain(args), **{k: _plain(v) for k, v in kwargs.items()})
    elif kind == "derive":
        _, fn, src, result = op
        result.view(np.ndarray)[...] = fn(src.view(np.ndarray))
    elif kind == "fill":
        op[1].view(np.ndarray).fill(op[2])
    elif kind == "setitem":
        op[1].view(np.ndarray)[_plain(op[2])] = _plain(op[3])
    elif kind == "kernel":
        _, mod, name, grid, block, args = op
        mod.launch(name, grid, block, args)
    elif kind == "call":
        _, fn, inputs, kwargs, _ = op
        fn(*_plain(inputs), **kwargs)


class _Recording:
    def __init__(self):
        self.ops: list = []
        self.saved = [(a, np.array(a.view(np.ndarray), copy=True)) for a in list(_LIVE.values())]

    def undo(self):
        for a, v in self.saved:
            a.view(np.ndarray)[...] = v


class _Graph:
    def __init__(self, ops):
        self.ops = ops
        self.launches = 0

    def launch(self, stream=None):
        self.launches += 1
        for op in self.ops:
            _replay(op)


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
    captures: list = []

    def __init__(self, non_blocking=False):
        self.ptr = id(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        _no_host_io("stream synchronisation")

    def record(self, event=None):
        return event or _Event()

    def wait_event(self, event):
        pass

    def begin_capture(self, mode=None):
        if _STATE.capture_unsupported:  # what CUDA answers where it cannot record
            raise RuntimeError("cudaErrorStreamCaptureUnsupported: operation not permitted when stream is "
                               "capturing (NumPy stand-in)")
        if _STATE.recording is not None:
            raise RuntimeError("cudaErrorIllegalState: the stream is already capturing")
        _STATE.recording = _Recording()

    def end_capture(self):
        rec, _STATE.recording = _STATE.recording, None
        if rec is None:
            raise RuntimeError("cudaErrorIllegalState: not capturing")
        rec.undo()  # a capture executes nothing
        graph = _Graph(rec.ops)
        _Stream.captures.append(graph)
        return graph


class _RawModule:
    compiled: list = []

    def __init__(self, code, options=(), name_expressions=None):
        _RawModule.compiled.append(options)
        self.code = code

    def get_function(self, name):
        file = next(f for f in K.kernel_files() if name in K.kernel_signatures(f))

        def launch(grid, block, args):
            mod = _emu.build(file, sanitize=_STATE.sanitize)
            g, b = _STATE.launch or (grid[0], block[0])
            mod.launch(name, g, b, _plain(args))
            _record(("kernel", mod, name, g, b, _plain(args)))

        return launch


def _asarray(a, dtype=None):
    if isinstance(a, FakeDeviceArray) and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    if not isinstance(a, FakeDeviceArray):
        _no_host_io("a host-to-device copy (asarray of host data)")
    src = a.view(np.ndarray) if isinstance(a, FakeDeviceArray) else np.asarray(a)
    out = _dev(np.array(src, dtype=dtype, copy=True))
    if isinstance(a, FakeDeviceArray):
        _record(("func", np.asarray, (a,), {"dtype": dtype}, out))
    return out


_FILLS = {"zeros": 0, "zeros_like": 0, "ones": 1, "ones_like": 1}


class _Module(types.ModuleType):
    """``fake.<name>`` is NumPy's ``<name>`` with array results turned into device arrays. During a
    capture, a computed result is recorded (zeros/ones as a fill, a memset node); ``empty`` and views
    compute nothing."""

    def __getattr__(self, name):
        fn = getattr(np, name)
        if not callable(fn) or isinstance(fn, type):
            return fn

        def wrapped(*a, **kw):
            if name in ("matmul", "dot", "tensordot", "inner", "vdot", "einsum"):
                _no_cublas()
            res = _dev(fn(*_plain(a), **{k: _plain(v) for k, v in kw.items()}))
            out = kw.get("out")
            if name in _FILLS and isinstance(res, FakeDeviceArray):
                _record(("fill", res, _FILLS[name]))
            elif out is not None:
                _record(("func", fn, a, kw, out))
            elif isinstance(res, FakeDeviceArray) and not name.startswith("empty") \
                    and not np.may_share_memory(res, _first_array(a)):
                _record(("func", fn, a, kw, res))
            return res

        return wrapped


def make():
    """A fresh stand-in module."""
    fake = _Module("fakecupy")
    fake.__version__ = "0.0-fake"
    fake.ndarray = FakeDeviceArray
    fake.asarray = _asarray
    fake.RawModule = _RawModule
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0, runtimeGetVersion=lambda: 0,
                                    driverGetVersion=lambda: 0,
                                    getDeviceProperties=lambda i: {"name": b"NumPy stand-in"})
    current = _Stream()
    fake.cuda = types.SimpleNamespace(
        Device=_Device, runtime=runtime, Stream=_Stream, Event=_Event,
        MemoryPool=lambda: types.SimpleNamespace(malloc=None),
        using_allocator=lambda malloc=None: contextlib.nullcontext(),
        get_current_stream=lambda device_id=-1: current)
    fake.state = _STATE
    return fake


def state():
    """The double's switches (``launch``, ``sanitize``, ``capture_unsupported``)."""
    return _STATE


class _SetAttr:
    """``monkeypatch.setattr`` for code without pytest (a subprocess), undone on exit."""

    def __init__(self):
        self.undo = []

    def setattr(self, obj, name, value):
        self.undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)


@contextlib.contextmanager
def installed(*, sanitize=False):
    """:func:`install` outside pytest, e.g. in the sanitizer subprocess."""
    patch = _SetAttr()
    try:
        with install(patch) as fake:
            _STATE.sanitize = sanitize
            yield fake
    finally:
        for obj, name, value in reversed(patch.undo):
            setattr(obj, name, value)


@contextlib.contextmanager
def install(monkeypatch):
    """Put a stand-in in CuPy's place (``backend._CUPY``) for the duration; kernel caches are cleared
    on the way in and out."""
    fake = make()
    monkeypatch.setattr(backend, "_CUPY", fake)
    monkeypatch.setattr(backend, "_CUPY_TRIED", True)
    _STATE.recording, _STATE.capture_unsupported, _STATE.launch, _STATE.sanitize = None, False, None, False
    K.clear_cache()
    try:
        yield fake
    finally:
        _STATE.recording, _STATE.capture_unsupported, _STATE.launch, _STATE.sanitize = None, False, None, False
        K.clear_cache()
