"""A strict NumPy-backed double of CuPy 14.2 (cupy-cuda13x 14.2.0), for running xcnn's GPU code paths
on a machine without a GPU.

The rule it is built on: **it refuses what CuPy and CUDA refuse**, and it resolves no name CuPy lacks.
A permissive stand-in once hid a feature that cannot work on a GPU (every cuBLAS call is refused
while a stream captures); every refusal below is modelled on a line of CuPy's source at tag v14.2.0,
cited as ``cupy/<path>:<line> (v14.2.0)``, or on the CUDA documentation where CUDA itself refuses.

What it models
--------------
* **Device arrays** are :class:`ndarray`, a wrapper (not a NumPy subclass) of a NumPy view into a
  device allocation. Implicit conversion to NumPy raises CuPy's ``TypeError``; ``.get()`` and
  ``cupy.asnumpy`` are the explicit ways. NumPy functions and ufuncs on device arrays dispatch to
  this module as in CuPy (``__array_function__`` / ``__array_ufunc__``); a host NumPy array mixed
  into a device operation is refused.
* **Names**: only names listed in ``cupy_names.json`` (generated from the real wheel by
  ``gen_cupy_names.py``) resolve; a name CuPy lacks raises ``AttributeError``; a name CuPy has but
  this double does not implement raises ``NotImplementedError("fakecupy: ... not modelled")``
  when used.
* **Devices** (two by default) with identity, a thread-local current device, per-device current
  streams, per-device kernel modules; operands on a device other than the current one are refused.
* **Memory**: allocations come from the current allocator (``MemoryPool.malloc`` by default,
  ``cuda.using_allocator``), in 512-byte units, with per-stream free lists: a freed block is handed
  to the next allocation of the same size on the same stream, as CuPy's pool does -- so a CUDA
  graph that still writes a block after its arrays died corrupts whoever gets it next, as on a GPU.
  Fresh blocks are filled with 0xFF bytes (NaN, -1): nothing allocated is zero unless written.
  ``data.ptr`` is the block's host address (so the emulated kernels can follow pointer tables).
* **Streams, events, CUDA graphs**: while a stream captures, device work on it is recorded, not
  executed (a new array gets its shape, not its values); ``Graph.launch`` reruns the recorded work
  on the recorded buffers with the scalars as captured. Everything CuPy or CUDA refuse during a
  capture is refused (cuBLAS, host reads, H2D copies, synchronisation, data-dependent shapes,
  the legacy stream), and an illegal CUDA call invalidates the capture.
* **NCCL**: ``import cupy.cuda.nccl`` gives what a CuPy wheel without the NCCL library gives
  (``available = False`` and nothing else: cupy/cuda/nccl.py:12-19 (v14.2.0), checked with the
  wheel), or, with ``install(..., nccl=fakenccl)``, the strict NCCL double of tests/doubles/fakenccl.py,
  which finds device memory by address (:func:`block_at`) as NCCL does. ``cupy.cuda.nccl`` is never an
  attribute of ``cupy.cuda`` (CuPy does not import it: cupy/cuda/__init__.py:52-99 (v14.2.0)).
* **RawModule / RawKernel**: the CUDA source is compiled for the host by ``tests/doubles/emu.py``
  (once per source; "compiled" once per device, recorded with CuPy's effective options) and every
  launch runs the emulation after ``xcnn.cuda.loader.check_signature``. The emulation applies CuPy's
  ``-ftz=true`` to float32 kernels (see emu_cuda.h). Tests may force every launch's shape
  (``world().launch``) and build the kernels under AddressSanitizer/UBSan (``world().sanitize``).

Deliberately *not* refused, because CuPy allows it: a kernel from ``RawModule.get_function`` launched
with another device current (CuPy compiles it again for that device), synchronising an event that was
recorded before a capture began, waiting on another device's event. Modelled more strictly than
some machines: peer access (GPUs with it enabled warn and compute where the double refuses).

What it cannot show: timing and asynchrony (work runs when it is issued), cuBLAS numerics, CUDA's
``expf``/``logf`` (the host's libm runs instead), races between threads of a kernel (gemm.cu's are
checked by the ThreadSanitizer build in tests/cuda/test_gemm.py).

Use :func:`install` (a context manager taking pytest's ``monkeypatch``) to put a fresh double in
CuPy's place; :func:`world` gives the test-only inspection state (compiles, launches, pools, the
``capture_unsupported`` switch). Attributes for tests on CuPy's own objects are prefixed ``fake_``.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import sys
import threading
import types
import weakref
from pathlib import Path

import numpy as np

from doubles import emu as _emu
from xcnn import backend as _backend
from xcnn.cuda import loader as _kernels

NAMES = json.loads((Path(__file__).resolve().parent / "cupy_names.json").read_text())
assert NAMES["cupy_version"] == "14.2.0", NAMES["cupy_version"]

_SCALARS = (bool, int, float, complex)

# ------------------------------------------------------------------------------------------ errors


_RUNTIME_ERRORS = {  # the status names and texts CuPy 14.2.0 prints for these codes (checked with the wheel)
    1: ("cudaErrorInvalidValue", "invalid argument"),
    101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
    400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
    401: ("cudaErrorIllegalState", "the operation cannot be performed in the present state"),
    700: ("cudaErrorIllegalAddress", "an illegal memory access was encountered"),
    900: ("cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is capturing"),
    901: ("cudaErrorStreamCaptureInvalidated", "operation failed due to a previous error during capture"),
    906: ("cudaErrorStreamCaptureImplicit",
          "operation would make the legacy stream depend on a capturing blocking stream"),
    907: ("cudaErrorCapturedEvent", "operation not permitted on an event last recorded in a capturing stream"),
}


class CUDARuntimeError(RuntimeError):
    """``cupy.cuda.runtime.CUDARuntimeError``: a ``RuntimeError`` whose text is ``'<name>: <description>'``."""

    def __init__(self, status):
        self.status = int(status)
        name, text = _RUNTIME_ERRORS[self.status]
        super().__init__(f"{name}: {text}")

    def __reduce__(self):
        return (type(self), (self.status,))


_DRIVER_ERRORS = {
    1: ("CUDA_ERROR_INVALID_VALUE", "invalid argument"),
    500: ("CUDA_ERROR_NOT_FOUND", "named symbol not found"),
}


class CUDADriverError(RuntimeError):
    """``cupy.cuda.driver.CUDADriverError`` (kernel loading and launching go through the driver API)."""

    def __init__(self, status):
        self.status = int(status)
        name, text = _DRIVER_ERRORS[self.status]
        super().__init__(f"{name}: {text}")


def _not_modelled(what):
    return NotImplementedError(f"fakecupy: {what} is not modelled (CuPy 14.2 has it; add it to "
                               "tests/doubles/fakecupy.py if xcnn needs it)")


# ------------------------------------------------------------------------------------------ state


class _World:
    """Everything one installed double knows: devices, pools, modules, what ran. Test-facing."""

    def __init__(self, devices: int):
        self.devices = int(devices)
        #: make ``begin_capture`` fail the way CUDA does where a stream cannot be captured
        self.capture_unsupported = False
        #: ``(grid, block)`` forced on every kernel launch (None: what the caller asked for), to run the
        #: grid-stride loops with launch shapes far too small for the data
        self.launch = None
        #: build the emulated kernels with AddressSanitizer and UBSan (the process must preload libasan)
        self.sanitize = False
        self.tls = threading.local()
        self.stream_ptrs = itertools.count(0x5000, 0x10)
        self.blocks: "weakref.WeakSet[_Block]" = weakref.WeakSet()  # every device block, found by address
        self.streams: "weakref.WeakValueDictionary[int, Stream]" = weakref.WeakValueDictionary()
        #: every RawModule compile: ``(device id, source name, effective options)``
        self.compiles: list = []
        #: every kernel launch executed or captured: ``(device id, kernel name, grid, block)``
        self.launches: list = []
        #: names of every device operation issued (executed or captured), in order
        self.ops: list = []
        self.modules: dict = {}          # (device, source digest) -> emulated module
        self.null = self.ptds = None    # Stream.null / Stream.ptds, made below
        self.default_pool = None
        self.global_allocator = None
        self.graphs: list = []
        self.nccl = None                # what `import cupy.cuda.nccl` gives

    # thread-local: current device, its device-context stack, per-device stream stacks, allocator
    def _t(self):
        t = self.tls
        if not hasattr(t, "device"):
            t.device = 0
            t.device_stack = []
            t.streams = {d: [self.null] for d in range(self.devices)}
            t.stream_devices = []
            t.allocator = None
        return t


_W: _World | None = None


def world() -> _World:
    """The state of the installed double (test-only: compiles, launches, ops, ``capture_unsupported``)."""
    if _W is None:
        raise RuntimeError("fakecupy: no double installed (use fakecupy.install(monkeypatch))")
    return _W


def _current_device() -> int:
    return world()._t().device


def _set_device(i: int) -> None:
    i = int(i)
    if not 0 <= i < world().devices:
        raise CUDARuntimeError(101)
    world()._t().device = i


def _current_stream(device_id: int | None = None) -> "Stream":
    t = world()._t()
    d = t.device if device_id is None or device_id == -1 else int(device_id)
    if not 0 <= d < world().devices:
        raise CUDARuntimeError(101)
    return t.streams[d][-1]


# ------------------------------------------------------------------------------------------ memory

_UNIT = 512  # CuPy rounds every pool allocation up to 512 bytes: cupy/cuda/memory.pyx:1042-1046 (v14.2.0)


class _Block:
    """One block of device memory: a host byte buffer standing for it, and whose it is."""

    __slots__ = ("buf", "ptr", "size", "device_id", "pool", "arena", "dtype", "used", "__weakref__")

    def __init__(self, size, device_id, pool, arena):
        self.buf = np.empty(size, dtype=np.uint8)
        self.buf.fill(0xFF)  # fresh device memory holds no zeros you can rely on: NaN / -1 here
        self.ptr = int(self.buf.ctypes.data) if size else 0
        self.size, self.device_id, self.pool, self.arena = size, device_id, pool, arena
        # the dtype and byte size of the array it was last allocated for (what the NCCL double checks)
        self.dtype, self.used = None, size


class _Allocation:
    """An allocation in use (CuPy's ``PooledMemory``): alive while an array refers to it; when it dies
    its block goes back to the pool's free list for its stream, to be handed out again."""

    __slots__ = ("block", "__weakref__")

    def __init__(self, block):
        self.block = block
        if block.pool is not None and block.size:
            weakref.finalize(self, block.pool._free, block)

    @property
    def ptr(self):
        return self.block.ptr

    @property
    def size(self):
        return self.block.size

    @property
    def device_id(self):
        return self.block.device_id


class _Strict:
    """Attribute lookup of a CuPy object: a name the real class has but the double does not implement
    is 'not modelled'; any other unknown name is an AttributeError, as on the real object."""

    __slots__ = ()
    _cupy_class = ""

    def __getattr__(self, name):
        members = NAMES["classes"].get(self._cupy_class, {})
        if name in members and not name.startswith("__"):
            raise _not_modelled(f"{self._cupy_class}.{name}")
        raise AttributeError(f"'{self._cupy_class.rsplit('.', 1)[-1]}' object has no attribute '{name}'")


class MemoryPointer(_Strict):
    """``cupy.cuda.MemoryPointer``: an allocation and a byte offset into it."""

    _cupy_class = "cupy.cuda.MemoryPointer"

    def __init__(self, mem, offset):
        self.mem, self.offset = mem, int(offset)

    @property
    def ptr(self):
        return self.mem.ptr + self.offset if self.mem.size else 0

    @property
    def device_id(self):
        return self.mem.device_id

    @property
    def device(self):
        return Device(self.mem.device_id)

    def __int__(self):
        return self.ptr


class MemoryPool(_Strict):
    """``cupy.cuda.MemoryPool``: per device, per stream free lists of 512-byte-rounded blocks.

    A block is reused only for the same rounded size on the same stream (CuPy takes a best fit and
    may split a larger free block, cupy/cuda/memory.pyx:1364-1372 (v14.2.0), so the real pool reuses
    memory at least as eagerly as this one). Arenas are per stream: cupy/cuda/memory.pyx:1268-1291
    (v14.2.0)."""

    _cupy_class = "cupy.cuda.MemoryPool"

    def __init__(self, allocator=None):
        if allocator is not None:
            raise _not_modelled("MemoryPool(allocator=...)")
        self._free_blocks: dict = {}
        self._in_use: dict = {}  # device -> bytes
        self.fake_mallocs = 0    # fresh blocks (cudaMalloc), all devices

    def malloc(self, size):
        size = int(size)
        dev = _current_device()
        if size == 0:  # a zero-size allocation is no memory at all: cupy/cuda/memory.pyx:1358-1359 (v14.2.0)
            return MemoryPointer(_Allocation(_Block(0, dev, None, None)), 0)
        rounded = -(-size // _UNIT) * _UNIT
        arena = _current_stream().ptr
        free = self._free_blocks.get((dev, arena, rounded))
        if free:
            block = free.pop()
        else:
            _capture_check_malloc()
            block = _Block(rounded, dev, self, arena)
            world().blocks.add(block)
            self.fake_mallocs += 1
        block.dtype, block.used = None, block.size  # (an array's allocation says what it holds: _empty)
        self._in_use[dev] = self._in_use.get(dev, 0) + rounded
        return MemoryPointer(_Allocation(block), 0)

    def _free(self, block):
        self._in_use[block.device_id] -= block.size
        self._free_blocks.setdefault((block.device_id, block.arena, block.size), []).append(block)

    def used_bytes(self):
        return self._in_use.get(_current_device(), 0)

    def free_bytes(self):
        dev = _current_device()
        return sum(b.size for (d, _, _), bs in self._free_blocks.items() if d == dev for b in bs)

    def total_bytes(self):
        return self.used_bytes() + self.free_bytes()

    def n_free_blocks(self):
        dev = _current_device()
        return sum(len(bs) for (d, _, _), bs in self._free_blocks.items() if d == dev)

    def free_all_blocks(self, stream=None):
        dev = _current_device()
        for key in [k for k in self._free_blocks if k[0] == dev and (stream is None or k[1] == stream.ptr)]:
            del self._free_blocks[key]


def get_allocator():
    t = world()._t()
    if t.allocator is not None:
        return t.allocator
    return world().global_allocator or world().default_pool.malloc


def set_allocator(allocator=None):
    if world()._t().allocator is not None:  # cupy/cuda/memory.pyx:920-922 (v14.2.0)
        raise ValueError("Can't change the global allocator inside `using_allocator` context manager")
    if allocator is None:
        raise _not_modelled("the raw cudaMalloc allocator (set_allocator(None))")
    world().global_allocator = allocator


@contextlib.contextmanager
def using_allocator(allocator=None):
    """Thread-local allocator for the block (cupy/cuda/__init__.py:161-182 (v14.2.0))."""
    if allocator is None:
        raise _not_modelled("the raw cudaMalloc allocator (using_allocator(None))")
    t = world()._t()
    prev, t.allocator = t.allocator, allocator
    try:
        yield
    finally:
        t.allocator = prev


def alloc(size):
    mp = get_allocator()(int(size))
    if not isinstance(mp, MemoryPointer):
        raise _not_modelled("an allocator that does not come from cupy.cuda.MemoryPool")
    return mp


def pool_of(a) -> "MemoryPool | None":
    """Test helper: the pool that allocated ``a`` (a device array or a block of ``Graph.fake_blocks``)."""
    return a.pool if isinstance(a, _Block) else a._alloc.block.pool


def block_of(a) -> _Block:
    """Test helper: the device memory block of the device array ``a``."""
    return a._alloc.block


def block_at(ptr: int) -> "_Block | None":
    """The device memory block holding address ``ptr`` (in use or back in its pool), or None: what
    ``cudaPointerGetAttributes`` tells NCCL (tests/doubles/fakenccl.py)."""
    for b in list(world().blocks):
        if b.size and b.ptr <= ptr < b.ptr + b.size:
            return b
    return None


def in_use(block: _Block) -> bool:
    """False when ``block`` is back on its pool's free list (no array holds it)."""
    free = block.pool._free_blocks.get((block.device_id, block.arena, block.size), []) if block.pool else []
    return not any(b is block for b in free)


def stream_at(ptr: int) -> "Stream | None":
    """The live stream whose handle is ``ptr`` (not the legacy/per-thread default streams), or None."""
    return world().streams.get(int(ptr))


# ------------------------------------------------------------------------------------------ devices


class Device(_Strict):
    """``cupy.cuda.Device``: compares by id (cupy/cuda/device.pyx:353-357 (v14.2.0)) and, having no
    ``__hash__``, is unhashable like the Cython class (checked: ``hash(cupy.cuda.Device(0))`` raises
    ``TypeError`` in CuPy 14.2.0). ``with Device(i):`` pushes the current device on a thread-local
    stack (cupy/cuda/device.pyx:177-185 (v14.2.0))."""

    _cupy_class = "cupy.cuda.Device"
    __hash__ = None

    def __init__(self, device=None):
        self.id = _current_device() if device is None else int(device)

    def __int__(self):
        return self.id

    def __enter__(self):
        t = world()._t()
        t.device_stack.append(t.device)
        if self.id != t.device:
            try:
                _set_device(self.id)
            except BaseException:
                t.device_stack.pop()
                raise
        return self

    def __exit__(self, *exc):
        t = world()._t()
        t.device = t.device_stack.pop()
        return False

    def __repr__(self):
        return f"<CUDA Device {self.id}>"

    def use(self):
        _set_device(self.id)
        return self

    def synchronize(self):
        # CUDA refuses to synchronise a device while one of its streams captures ("It is also invalid to
        # ... synchronize a broader handle which encompasses an active stream capture, such as a device",
        # CUDA C++ Programming Guide, CUDA Graphs: prohibited operations); the capture is invalidated.
        for cap in list(_CAPTURES):
            if cap.device_id == self.id:
                cap.invalidate()
                raise CUDARuntimeError(900)

    @property
    def compute_capability(self):
        return "90"

    def __eq__(self, other):
        return isinstance(other, Device) and self.id == other.id

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        return self.id < other.id if isinstance(other, Device) else NotImplemented

    def __le__(self, other):
        return self.id <= other.id if isinstance(other, Device) else NotImplemented

    def __gt__(self, other):
        return self.id > other.id if isinstance(other, Device) else NotImplemented

    def __ge__(self, other):
        return self.id >= other.id if isinstance(other, Device) else NotImplemented


def get_device_id():
    return _current_device()


# ------------------------------------------------------------------------------------------ capture

_CAPTURES: "set[_Capture]" = set()


class _Capture:
    def __init__(self, stream, mode):
        self.stream, self.mode = stream, mode
        self.device_id = stream.device_id
        self.ops: list = []          # (name, work) in issue order
        self.blocks: set = set()     # device memory the recorded work reads or writes
        self.invalid = False

    def invalidate(self):
        self.invalid = True


def _capture_of(stream) -> "_Capture | None":
    """The capture that work issued on ``stream`` (the current one) joins, after CUDA's check that the
    legacy stream does not implicitly depend on a capturing blocking stream (cudaErrorStreamCaptureImplicit;
    CUDA C++ Programming Guide, CUDA Graphs: "Prohibited and Unhandled Operations")."""
    cap = stream._capture
    if cap is None and stream.ptr == 0:
        dev = _current_device()
        for other in list(_CAPTURES):
            if other.device_id == dev and not other.stream._non_blocking:
                other.invalidate()
                raise CUDARuntimeError(906)
    return cap


def _capture_check_malloc():
    """A fresh block (cudaMalloc) while the current stream captures: legal only in the relaxed mode CuPy
    chooses by default (cupy/cuda/stream.pyx:395-403 (v14.2.0)); the global and thread-local modes
    refuse such 'unsafe' calls (cudaThreadExchangeStreamCaptureMode, CUDA Runtime API)."""
    cap = _current_stream()._capture
    if cap is not None and cap.mode != _MODE_RELAXED:
        cap.invalidate()
        raise CUDARuntimeError(900)


def _host_read(stream=None):
    """A device-to-host copy on ``stream`` (default: the current one) -- refused while it captures:
    cupy/cuda/memory.pyx:715-719 (v14.2.0) (``get``, ``item``, ``float``, ``int``, ``bool``, ``repr``;
    ``__float__`` is ``float(self.get())``, cupy/_core/core.pyx:2048-2052 (v14.2.0))."""
    s = stream if stream is not None else _current_stream()
    if s._capture is not None:
        raise RuntimeError("the current stream is capturing, so D2H transfers are disallowed")


def _h2d(stream=None):
    """A host-to-device copy -- refused while the current stream captures: cupy/cuda/memory.pyx:617-621
    (v14.2.0)."""
    s = stream if stream is not None else _current_stream()
    if s._capture is not None:
        raise RuntimeError("the current stream is capturing, so H2D transfers are disallowed")


_CUBLAS_REFUSED = "calling cuBLAS API during stream capture is currently unsupported"


def _issue(name, work, arrays=(), *, cublas=False, run_in_capture=None, peer=True, touched=()):
    """Issue device work on the current stream of the current device.

    ``arrays`` are the device-array operands: each must live on the current device. Without peer
    access CuPy refuses: cupy/_core/_kernel.pyx:128-144 (v14.2.0) (elementwise, reduction and
    manipulation kernels preprocess every argument so, cupy/_core/_kernel.pyx:147-151 (v14.2.0)).
    ``cublas``: the work is a cuBLAS call, which CuPy refuses while the stream captures:
    cupy_backends/cuda/libs/cublas.pyx:642-651 (v14.2.0) (``setStream``, which every cuBLAS wrapper
    calls first). Outside a capture ``work()`` runs now; during one it is recorded, not run
    (``run_in_capture`` runs instead, e.g. to validate arguments); the blocks of ``arrays`` and
    ``touched`` are noted as the graph's. Returns True when it ran."""
    dev = _current_device()
    if peer:
        for a in arrays:
            _check_peer(a, dev)
    cap = _capture_of(_current_stream())
    if cublas and cap is not None:
        raise NotImplementedError(_CUBLAS_REFUSED)
    world().ops.append(name)
    if cap is None:
        work()
        return True
    if run_in_capture is not None:
        with np.errstate(all="ignore"):
            run_in_capture()
    cap.ops.append((name, work))
    cap.blocks.update(a._alloc.block for a in itertools.chain(arrays, touched) if a._alloc.size)
    return False


def _check_peer(a, dev):
    if a._alloc.device_id != dev and a._alloc.size:
        # cupy/_core/_kernel.pyx:128-144 (v14.2.0); this double models GPUs without peer access
        raise ValueError(
            f"The device where the array resides ({a._alloc.device_id}) is different from the current "
            f"device ({dev}). Peer access is unavailable between these devices.")


def _capturing() -> bool:
    return _current_stream()._capture is not None


# ------------------------------------------------------------------------------------------ streams

_MODE_GLOBAL, _MODE_THREAD_LOCAL, _MODE_RELAXED = 0, 1, 2  # runtime.streamCaptureMode* in CuPy 14.2.0


class Event(_Strict):
    """``cupy.cuda.Event``: made on the current device (cupy/cuda/stream.pyx:121-129 (v14.2.0))."""

    _cupy_class = "cupy.cuda.Event"

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        if interprocess and not disable_timing:  # cupy/cuda/stream.pyx:124-125 (v14.2.0)
            raise ValueError("Timing must be disabled for interprocess events")
        self.ptr = next(world().stream_ptrs)
        self.fake_device_id = _current_device()
        self.fake_captured = False

    def record(self, stream=None):
        s = stream if stream is not None else _current_stream()
        s._record(self)

    def synchronize(self):
        # "It is invalid to synchronize or query the execution status of ... a captured event"
        # (CUDA C++ Programming Guide, CUDA Graphs: prohibited operations)
        if self.fake_captured:
            raise CUDARuntimeError(907)

    @property
    def done(self):
        if self.fake_captured:
            raise CUDARuntimeError(907)
        return True


class Stream(_Strict):
    """``cupy.cuda.Stream``. A plain stream belongs to the device current at its creation
    (cupy/cuda/stream.pyx:494-514 (v14.2.0)); ``Stream.null`` (ptr 0) and ``Stream.ptds`` (ptr 2) have
    device_id -1 and act on whichever device is current."""

    _cupy_class = "cupy.cuda.Stream"
    null: "Stream" = None
    ptds: "Stream" = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        if null:
            self.ptr, self.device_id = 0, -1
        elif ptds:
            self.ptr, self.device_id = 2, -1
        else:
            self.ptr, self.device_id = next(world().stream_ptrs), _current_device()
            world().streams[self.ptr] = self
        self._non_blocking = bool(non_blocking) and not null and not ptds
        self._capture = None

    def _device(self):
        return _current_device() if self.device_id == -1 else self.device_id

    def __eq__(self, other):
        return isinstance(other, Stream) and self.ptr == other.ptr

    def __hash__(self):
        return self.ptr

    def __repr__(self):
        return f"<Stream {self.ptr} (device {self.device_id})>"

    def __enter__(self):
        # A stream of another device cannot be made current: cupy/cuda/stream.pyx:182-191 (v14.2.0),
        # called from __enter__ at cupy/cuda/stream.pyx:223 (v14.2.0).
        t = world()._t()
        cur = t.device
        dev = cur if self.device_id == -1 else self.device_id
        if dev != cur:
            raise RuntimeError(f"The device that the stream is created on ({dev}) does not match with the "
                               f"current device ({cur})")
        t.streams[dev].append(self)
        t.stream_devices.append(dev)
        return self

    def __exit__(self, *exc):
        t = world()._t()
        t.streams[t.stream_devices.pop()].pop()
        return False

    def use(self):
        t = world()._t()
        dev = t.device if self.device_id == -1 else self.device_id
        if dev != t.device:  # cupy/cuda/stream.pyx:261 (v14.2.0)
            raise RuntimeError(f"The device that the stream is created on ({dev}) does not match with the "
                               f"current device ({t.device})")
        t.streams[dev][-1] = self
        return self

    @property
    def is_non_blocking(self):
        return self._non_blocking

    @property
    def done(self):
        if self._capture is not None:
            self._capture.invalidate()
            raise CUDARuntimeError(900)
        return True

    def synchronize(self):
        # Synchronising a capturing stream is illegal and invalidates the capture (CUDA C++ Programming
        # Guide, CUDA Graphs: prohibited operations); so is the legacy stream waiting on a capturing
        # blocking stream.
        if self._capture is not None:
            self._capture.invalidate()
            raise CUDARuntimeError(900)
        if self.ptr == 0:
            _capture_of(self)

    def _record(self, event):
        # "event and stream must be on the same CUDA context" (cudaEventRecord, CUDA Runtime API):
        # cudaErrorInvalidResourceHandle otherwise.
        if event.fake_device_id != self._device():
            raise CUDARuntimeError(400)
        event.fake_captured = self._capture is not None

    def record(self, event=None):
        if event is None:
            event = Event()
        self._record(event)
        return event

    def wait_event(self, event):
        # waiting on an event of another device is legal (cudaStreamWaitEvent); with nothing running
        # asynchronously here the wait itself has nothing to do
        if event.fake_captured and self._capture is None:
            raise _not_modelled("a stream joining a capture by waiting on a captured event")

    def is_capturing(self):
        return self._capture is not None

    def begin_capture(self, mode=None):
        if self.ptr in (0, 1):  # cupy/cuda/stream.pyx:393-394 (v14.2.0)
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if mode is None:  # relaxed by default: cupy/cuda/stream.pyx:395-403 (v14.2.0)
            mode = _MODE_RELAXED
        if world().capture_unsupported:
            raise CUDARuntimeError(900)  # what CUDA answers where this stream cannot be captured
        if self._capture is not None:
            raise CUDARuntimeError(401)
        self._capture = _Capture(self, int(mode))
        if self.device_id == -1:
            self._capture.device_id = _current_device()
        _CAPTURES.add(self._capture)

    def end_capture(self):
        cap = self._capture
        if cap is None:
            raise CUDARuntimeError(401)
        self._capture = None
        _CAPTURES.discard(cap)
        if cap.invalid:
            raise CUDARuntimeError(901)
        graph = object.__new__(Graph)
        graph._init(cap.ops, cap.device_id, cap.blocks)
        world().graphs.append(graph)
        return graph


class Graph(_Strict):
    """``cupy.cuda.Graph``, made only by ``Stream.end_capture`` (cupy/cuda/graph.pyx:31-34 (v14.2.0)).
    Test-facing: ``fake_ops`` (names of the recorded device operations), ``fake_launches``,
    ``fake_blocks`` (the device memory blocks its operations read or write; see :func:`pool_of`)."""

    _cupy_class = "cupy.cuda.Graph"

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("currently this class cannot be initiated by the user and must be "
                                  "created via stream capture")

    def _init(self, ops, device_id, blocks=()):
        self._ops = list(ops)
        self.fake_blocks = frozenset(blocks)
        self.fake_device_id = device_id
        self.fake_launches = 0
        self.fake_uploads = 0

    @property
    def fake_ops(self):
        return [name for name, _ in self._ops]

    def _stream(self, stream):
        s = stream if stream is not None else _current_stream()
        if s._device() != self.fake_device_id:
            raise _not_modelled("launching or uploading a CUDA graph on a stream of another device")
        return s

    def launch(self, stream=None):
        s = self._stream(stream)
        self.fake_launches += 1
        ops = self._ops

        def replay():
            for _, work in ops:
                work()

        cap = _capture_of(s) if s is _current_stream() else s._capture
        world().ops.append("graph")
        if cap is not None:  # a graph launched into a capture becomes a node of the new graph
            cap.ops.append(("graph", replay))
        else:
            replay()

    def upload(self, stream=None):
        self._stream(stream)
        self.fake_uploads += 1


def get_current_stream(device_id=-1):
    return _current_stream(device_id)


# ------------------------------------------------------------------------------------------ arrays


def _owner(a):
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


class _Flags:
    def __init__(self, buf, alloc):
        self.c_contiguous = bool(buf.flags.c_contiguous)
        self.f_contiguous = bool(buf.flags.f_contiguous)
        self.owndata = buf.size == 0 or buf.ctypes.data == alloc.ptr and buf.nbytes == alloc.size

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name]


def _empty(shape, dtype=float, order="C"):
    """A new device array on the current device, from the current allocator (contents: whatever the
    block held -- 0xFF bytes when fresh)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    mp = alloc(nbytes)
    raw = mp.mem.block.buf
    mp.mem.block.dtype, mp.mem.block.used = dtype, nbytes
    if order not in ("C", "F"):
        raise ValueError(f"order not understood: {order!r}")
    buf = np.ndarray(shape, dtype=dtype, buffer=raw if nbytes else np.empty(0, np.uint8), order=order) \
        if nbytes else np.ndarray(shape, dtype=dtype)
    return ndarray._wrap(buf, mp.mem)


def _bufs(xs):
    return tuple(x._buf if isinstance(x, ndarray) else x for x in xs)


def _new_result(name, fn, operands, *, cublas=False, order="C"):
    """A device operation producing a new array: ``fn(*buffers)`` computes it with NumPy. Eagerly the
    result is written into a fresh device array; in a capture only its shape and dtype are taken
    (nothing executes) and the write is recorded for replays."""
    arrays = [x for x in operands if isinstance(x, ndarray)]
    dev = _current_device()
    for a in arrays:
        _check_peer(a, dev)
    if cublas and _capture_of(_current_stream()) is not None:
        raise NotImplementedError(_CUBLAS_REFUSED)
    bufs = _bufs(operands)
    capturing = _capturing()
    with np.errstate(all="ignore") if capturing else contextlib.nullcontext():
        res = np.asarray(fn(*bufs))
    out = _empty(res.shape, res.dtype, order="F" if order == "F" and res.ndim > 1 else "C")
    ob = out._buf
    if capturing:  # only the shape was needed; the values come from replays
        def work():
            ob[...] = fn(*bufs)

        _issue(name, work, arrays, cublas=cublas, touched=[out])
    else:
        _issue(name, lambda: ob.__setitem__(Ellipsis, res), arrays, cublas=cublas)
    return out


def _into(name, fn, out, operands, *, cublas=False):
    """A device operation writing into the existing array ``out``: ``fn(*buffers, out_buffer)``."""
    arrays = [x for x in operands if isinstance(x, ndarray)] + [out]
    bufs, ob = _bufs(operands), out._buf
    _issue(name, lambda: fn(*bufs, ob), arrays, cublas=cublas,
           run_in_capture=lambda: fn(*bufs, np.empty_like(ob)))
    return out


def _view_or_copy(name, src, view):
    """``view`` computed by NumPy from ``src._buf``: a view of the same block needs no device work; a copy
    is a device operation (recorded as such)."""
    if _owner(view) is _owner(src._buf):
        return ndarray._wrap(view, src._alloc)
    raise AssertionError(f"fakecupy: {name} made a copy where a view was expected")


class ndarray(_Strict):
    """``cupy.ndarray`` (``cupy._core.core.ndarray``): device memory, never a NumPy array."""

    _cupy_class = "cupy.ndarray"
    __slots__ = ("_buf", "_alloc", "__weakref__")
    __array_priority__ = 100  # cupy/_core/core.pyx:594 (v14.2.0)

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise _not_modelled("ndarray(memptr=..., strides=...)")
        new = _empty(shape, dtype, order)
        self._buf, self._alloc = new._buf, new._alloc

    @classmethod
    def _wrap(cls, buf, alloc):
        obj = object.__new__(cls)
        obj._buf, obj._alloc = buf, alloc
        return obj

    # -------------------------------------------------- attributes
    shape = property(lambda self: self._buf.shape)
    dtype = property(lambda self: self._buf.dtype)
    strides = property(lambda self: self._buf.strides)
    size = property(lambda self: self._buf.size)
    ndim = property(lambda self: self._buf.ndim)
    itemsize = property(lambda self: self._buf.itemsize)
    nbytes = property(lambda self: self._buf.nbytes)

    @property
    def flags(self):
        return _Flags(self._buf, self._alloc)

    @property
    def data(self):
        offset = self._buf.ctypes.data - self._alloc.ptr if self._buf.size and self._alloc.size else 0
        return MemoryPointer(self._alloc, offset)

    @property
    def device(self):  # cupy/_core/core.pyx:2093-2096 (v14.2.0): the device of its memory
        return Device(self._alloc.device_id)

    @property
    def T(self):
        return self.transpose()

    # -------------------------------------------------- refusing implicit conversion

    def __array__(self, dtype=None, copy=None):
        # cupy/_core/core.pyx:1803-1809 (v14.2.0)
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    # -------------------------------------------------- host reads

    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            raise _not_modelled("ndarray.get(out=...)")
        if self.size == 0:  # an empty array needs no copy: cupy/_core/core.pyx:2170-2171 (v14.2.0)
            return np.ndarray(self.shape, dtype=self.dtype)
        _host_read(stream=stream)
        return np.array(self._buf, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError("Shape or dtype mismatch")
        _h2d(stream)
        self._buf[...] = arr

    def item(self):
        if self.size != 1:  # cupy/_core/core.pyx:689-692 (v14.2.0)
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self.get().item()

    def tolist(self):
        return self.get().tolist()

    def __float__(self):
        return float(self.get())

    def __int__(self):
        return int(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):  # cupy/_core/core.pyx:1529-1541 (v14.2.0)
        if self.size == 1:
            return bool(self.get())
        if self.size == 0:
            return False
        raise ValueError("The truth value of an array with more than one element is ambiguous. "
                         "Use a.any() or a.all()")

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, spec):
        return format(self.get(), spec)

    # -------------------------------------------------- NumPy dispatch, as CuPy does it

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # cupy/_core/core.pyx:1969-2026 (v14.2.0): the CuPy ufunc of the same name, if CuPy has one,
        # with every operand a scalar or an array (a NumPy array is then refused by the CuPy ufunc)
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = out[0]
        if method not in ("__call__", "outer", "at", "reduce", "accumulate", "reduceat"):
            return NotImplemented
        try:
            func = getattr(_MODULE, ufunc.__name__)
        except AttributeError:
            return NotImplemented
        if method != "__call__":
            func = getattr(func, method)
        inout = inputs + ((kwargs["out"],) if "out" in kwargs else ())
        for x in inout:
            if type(x) not in _SCALARS and not isinstance(x, (ndarray, np.ndarray, np.generic)):
                return NotImplemented
        if ufunc.__name__ in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
            inputs = tuple(x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x for x in inputs)
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        # cupy/_core/core.pyx:2028-2044 (v14.2.0): the CuPy function of the same module path and name
        try:
            module = functools.reduce(getattr, func.__module__.split(".")[1:], _MODULE)
            cupy_func = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        if cupy_func is func:
            return NotImplemented
        for t in types_:
            if not issubclass(t, (ndarray, np.ndarray)):
                return NotImplemented
        return cupy_func(*args, **kwargs)

    # -------------------------------------------------- views and copies

    def reshape(self, *shape, order="C", copy=None):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if copy:
            raise _not_modelled("ndarray.reshape(copy=True)")
        view = self._buf.reshape(shape, order=order)
        if _owner(view) is _owner(self._buf):
            return ndarray._wrap(view, self._alloc)
        if copy is False:
            raise ValueError("Unable to avoid copy while reshaping.")
        return _new_result("reshape-copy", lambda b: b.reshape(shape, order=order), (self,))

    def ravel(self, order="C"):
        return self.reshape(-1, order=order)

    def flatten(self, order="C"):
        return _new_result("copy", lambda b: b.flatten(order), (self,))

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        view = self._buf.transpose() if not axes else self._buf.transpose(tuple(axes))
        return _view_or_copy("transpose", self, view)

    def swapaxes(self, axis1, axis2):
        return _view_or_copy("swapaxes", self, self._buf.swapaxes(axis1, axis2))

    def squeeze(self, axis=None):
        return _view_or_copy("squeeze", self, self._buf.squeeze(axis))

    def view(self, dtype=None, type=None):
        if type is not None:
            raise _not_modelled("ndarray.view(type=...)")
        if dtype is None:
            return ndarray._wrap(self._buf.view(), self._alloc)
        return ndarray._wrap(self._buf.view(dtype), self._alloc)

    def copy(self, order="C"):
        if self._alloc.device_id != _current_device():
            # copied across devices onto the current one: cupy/_core/core.pyx:882-913 (v14.2.0)
            src = self._buf
            out = _empty(self.shape, self.dtype)
            ob = out._buf
            _issue("copy-peer", lambda: ob.__setitem__(Ellipsis, src), [out])
            return out
        return _new_result("copy", lambda b: np.array(b, order=order, copy=True), (self,), order=order)

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = np.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        kw = {} if casting is None else {"casting": casting}
        return _new_result("astype", lambda b: b.astype(dtype, order="C", **kw), (self,))

    def fill(self, value):
        if isinstance(value, ndarray):
            if value.shape != ():
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            v = value._buf
            _issue("fill", lambda: self._buf.__setitem__(Ellipsis, v), [self, value])
            return
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        v, b = value[()], self._buf
        _issue("fill", lambda: b.fill(v), [self])

    # -------------------------------------------------- indexing

    def __getitem__(self, key):
        key, arrays, host = _index(key, self.shape)
        if _is_basic(key):
            view = self._buf[key]
            if isinstance(view, np.ndarray):
                return ndarray._wrap(view, self._alloc)
            # a scalar index of every axis: CuPy returns a 0-d view
            return ndarray._wrap(self._buf[key + (Ellipsis,)] if isinstance(key, tuple)
                                 else self._buf[key, ...], self._alloc)
        if host:
            _h2d()
        fn = _gather_fn(key)
        return _new_result("gather", lambda b, *ix: b[fn(b.shape, ix)], (self, *arrays))

    def __setitem__(self, key, value):
        key, arrays, host = _index(key, self.shape)
        if isinstance(value, np.ndarray):
            host = True
        elif not isinstance(value, ndarray) and type(value) not in _SCALARS and not isinstance(value, np.generic):
            value = np.asarray(value)  # lists: an implicit upload, as core.array would do
            host = True
        if host:
            _h2d()
        fn = _gather_fn(key)
        b = self._buf
        vb = value._buf if isinstance(value, ndarray) else value
        ix_bufs = tuple(a._buf for a in arrays)
        operands = [self, *arrays] + ([value] if isinstance(value, ndarray) else [])

        def work():
            b[fn(b.shape, ix_bufs)] = vb

        def check():
            np.empty_like(b)[fn(b.shape, ix_bufs)] = vb

        _issue("scatter", work, operands, run_in_capture=check)

    def take(self, indices, axis=None, out=None):
        return take(self, indices, axis, out)

    # -------------------------------------------------- reductions (0-d device arrays, as CuPy)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduce("sum", lambda b, **k: np.sum(b, axis=axis, dtype=dtype, keepdims=keepdims, **k), self, out)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduce("prod", lambda b, **k: np.prod(b, axis=axis, dtype=dtype, keepdims=keepdims, **k), self, out)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        # With CuPy's default accelerator (CUB, cupy/_core/_accelerator.pyx:50-52 (v14.2.0)) a mean is a
        # CUB sum and a true_divide in place: two device operations, cupy/_core/_routines_statistics.pyx:
        # 148-154 (v14.2.0); the dtypes as at :132-146 (v14.2.0).
        if out is not None or self.size == 0:
            return _reduce("mean", lambda b, **k: np.mean(b, axis=axis, dtype=dtype, keepdims=keepdims, **k),
                           self, out)
        dtype_sum = dtype_out = dtype
        if dtype is None and self.dtype.char not in "dD":
            if self.dtype.kind in "iub":
                dtype_sum = dtype_out = np.float64
            elif self.dtype.char == "e":
                dtype_sum, dtype_out = np.float32, np.float16
        elif dtype is not None and np.dtype(dtype).kind in "iub":
            dtype_sum, dtype_out = np.float64, dtype
        result = self.sum(axis=axis, dtype=dtype_sum, keepdims=keepdims)
        _UFUNCS["true_divide"](result, self.size // max(result.size, 1), out=result, casting="unsafe")
        if dtype_out is not None and np.dtype(dtype_out) != result.dtype:
            result = result.astype(dtype_out)
        return result

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return _reduce("var", lambda b, **k: np.var(b, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims, **k),
                       self, out)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return _reduce("std", lambda b, **k: np.std(b, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims, **k),
                       self, out)

    def max(self, axis=None, out=None, keepdims=False):
        return _reduce("max", lambda b, **k: np.max(b, axis=axis, keepdims=keepdims, **k), self, out)

    def min(self, axis=None, out=None, keepdims=False):
        return _reduce("min", lambda b, **k: np.min(b, axis=axis, keepdims=keepdims, **k), self, out)

    def argmax(self, axis=None, out=None, dtype=None, keepdims=False):
        return _reduce("argmax", lambda b, **k: _arg(np.argmax, b, axis, dtype, keepdims, **k), self, out)

    def argmin(self, axis=None, out=None, dtype=None, keepdims=False):
        return _reduce("argmin", lambda b, **k: _arg(np.argmin, b, axis, dtype, keepdims, **k), self, out)

    def any(self, axis=None, out=None, keepdims=False):
        return _reduce("any", lambda b, **k: np.any(b, axis=axis, keepdims=keepdims, **k), self, out)

    def all(self, axis=None, out=None, keepdims=False):
        return _reduce("all", lambda b, **k: np.all(b, axis=axis, keepdims=keepdims, **k), self, out)

    def nonzero(self):
        return nonzero(self)

    def dot(self, b, out=None):
        return dot(self, b, out)

    def clip(self, min=None, max=None, out=None):
        return clip(self, min, max, out)

    # -------------------------------------------------- operators (through the ufuncs, as CuPy)

    def __matmul__(self, other):
        return matmul(self, other) if isinstance(other, ndarray) else np.matmul(self, other)

    def __rmatmul__(self, other):
        return np.matmul(other, self)

    def __neg__(self):
        return np.negative(self)

    def __pos__(self):
        return np.positive(self)

    def __abs__(self):
        return np.absolute(self)

    def __invert__(self):
        return np.invert(self)

    def __eq__(self, other):
        if other is None or type(other).__eq__ is object.__eq__:  # cupy/_core/core.pyx:1503-1509 (v14.2.0)
            return zeros(self.shape, dtype=np.bool_)
        return np.equal(self, other)

    def __ne__(self, other):
        if other is None or type(other).__eq__ is object.__eq__:
            return ones(self.shape, dtype=np.bool_)
        return np.not_equal(self, other)

    __hash__ = None


def _binop(ufunc):
    def op(self, other):
        return ufunc(self, other)

    def rop(self, other):
        return ufunc(other, self)

    def iop(self, other):
        return ufunc(self, other, out=(self,))

    return op, rop, iop


for _name, _uf in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
                   ("floordiv", np.floor_divide), ("mod", np.remainder), ("pow", np.power),
                   ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor),
                   ("lshift", np.left_shift), ("rshift", np.right_shift)]:
    _op, _rop, _iop = _binop(_uf)
    setattr(ndarray, f"__{_name}__", _op)
    setattr(ndarray, f"__r{_name}__", _rop)
    setattr(ndarray, f"__i{_name}__", _iop)
for _name, _uf in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)]:
    setattr(ndarray, f"__{_name}__", _binop(_uf)[0])
ndarray.__module__ = "cupy"


def _arg(fn, b, axis, dtype, keepdims, out=None):
    r = fn(b, axis=axis, keepdims=keepdims)
    if dtype is not None:
        r = np.asarray(r).astype(dtype)
    if out is not None:
        out[...] = r
        return out
    return r


def _reduce(name, fn, a, out):
    if out is not None:
        if not isinstance(out, ndarray):
            raise TypeError(f"Unsupported type {type(out)}")  # cupy/_core/_scalar.pyx:344 (v14.2.0)
        return _into(name, lambda b, o: fn(b, out=o), out, (a,))
    return _new_result(name, fn, (a,))


# ------------------------------------------------------------------------------------------ indexing


def _index(key, shape):
    """Normalise an index: device arrays stay device arrays (returned in ``arrays``), host arrays and
    lists become NumPy arrays that would be uploaded (``host``); a boolean mask needs the number of its
    True entries on the host -- a D2H copy: cupy/_core/_routines_indexing.pyx:802 (v14.2.0)."""
    items = key if isinstance(key, tuple) else (key,)
    arrays, host, out = [], False, []
    for k in items:
        if isinstance(k, ndarray):
            if k.dtype == np.bool_:
                if k.size:
                    _host_read()
            arrays.append(k)
            out.append(_ArrayRef(len(arrays) - 1, k.dtype))
        elif isinstance(k, (np.ndarray, list)):
            k = np.asarray(k)
            host = True
            out.append(k)
        else:
            out.append(k)
    return (tuple(out) if isinstance(key, tuple) else out[0]), arrays, host


class _ArrayRef:
    def __init__(self, i, dtype):
        self.i, self.dtype = i, dtype


def _is_basic(key):
    items = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer)) and not isinstance(k, bool)
               for k in items)


def _gather_fn(key):
    """``fn(shape, index buffers) -> NumPy key`` for an advanced index. Integer index arrays wrap around
    as in CuPy ("CuPy wraps around them", cupy/_core/core.pyx:1843-1844 (v14.2.0)) when the key maps
    its items to axes one by one (no Ellipsis/None); otherwise NumPy's bounds check applies."""
    items = key if isinstance(key, tuple) else (key,)
    plain = all(k is not Ellipsis and k is not None for k in items)
    as_tuple = isinstance(key, tuple)

    def fn(shape, ix):
        out = []
        for axis, k in enumerate(items):
            v = ix[k.i] if isinstance(k, _ArrayRef) else k
            if plain and isinstance(v, np.ndarray) and v.dtype.kind in "iu" and axis < len(shape) and shape[axis]:
                v = v % shape[axis]
            out.append(v)
        return tuple(out) if as_tuple else out[0]

    return fn


# ------------------------------------------------------------------------------------------ ufuncs


def _operand(x, dev):
    """An operand of a CuPy kernel: a device array on the current device, or a Python/NumPy scalar;
    anything else (a NumPy array, a list) is refused: cupy/_core/_kernel.pyx:147-156 (v14.2.0) ->
    cupy/_core/_scalar.pyx:344 (v14.2.0)."""
    if isinstance(x, ndarray):
        _check_peer(x, dev)
        return x
    if type(x) in _SCALARS or isinstance(x, np.generic):
        return x
    raise TypeError(f"Unsupported type {type(x)}")


class ufunc(_Strict):
    """``cupy.ufunc``: ``__call__(*args, out=None, dtype=None, casting='same_kind')``; any other keyword
    is refused (NumPy's ``where=`` included): cupy/_core/_kernel.pyx:1268-1277 (v14.2.0)."""

    _cupy_class = "cupy.ufunc"

    def __init__(self, *args, **kwargs):
        raise _not_modelled("defining a cupy.ufunc")

    @classmethod
    def _of(cls, np_ufunc):
        self = object.__new__(cls)
        self._np = np_ufunc
        self.__name__ = self.name = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nin + np_ufunc.nout
        return self

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def __call__(self, *args, **kwargs):
        out = kwargs.pop("out", None)
        if "_where" in kwargs:
            raise _not_modelled("ufunc(_where=...)")
        dtype = kwargs.pop("dtype", None)
        casting = kwargs.pop("casting", "same_kind")
        if kwargs:
            raise TypeError("Wrong arguments %s" % kwargs)
        if not self.nin <= len(args) <= self.nargs:  # cupy/_core/_kernel.pyx:1280-1286 (v14.2.0)
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                            f"{self.nargs} (with outputs), but given {len(args)}.")
        in_args, out_args = args[:self.nin], args[self.nin:]
        if out is not None:
            if out_args:
                raise ValueError("Cannot specify 'out' as both a positional and keyword argument")
            out_args = tuple(out) if isinstance(out, tuple) else (out,)
        if self.nout != 1:
            raise _not_modelled(f"the {self.nout}-output ufunc {self.name}")
        dev = _current_device()
        in_args = tuple(_operand(x, dev) for x in in_args)
        kw = {"casting": casting, **({"dtype": dtype} if dtype is not None else {})}
        f = self._np
        if out_args and out_args[0] is not None:
            o = _operand(out_args[0], dev)
            if not isinstance(o, ndarray):
                # cupy/_core/_kernel.pyx:661-663 (v14.2.0)
                raise TypeError("Output arguments type must be cupy.ndarray")
            return _into(self.name, lambda *bs: f(*bs[:-1], out=bs[-1], **kw), o, in_args)
        return _new_result(self.name, lambda *bs: f(*bs, **kw), in_args)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        f = self._np
        return _reduce(f"{self.name}.reduce",
                       lambda b, **k: f.reduce(b, axis=axis, dtype=dtype, keepdims=keepdims, **k), array, out)

    def accumulate(self, array, axis=0, dtype=None, out=None):
        f = self._np
        return _reduce(f"{self.name}.accumulate", lambda b, **k: f.accumulate(b, axis=axis, dtype=dtype, **k),
                       array, out)

    def outer(self, A, B, **kwargs):
        if kwargs:
            raise _not_modelled(f"{self.name}.outer keywords")
        dev = _current_device()
        f = self._np
        return _new_result(f"{self.name}.outer", f.outer, (_operand(A, dev), _operand(B, dev)))

    def at(self, a, indices, b=None):
        dev = _current_device()
        if not isinstance(a, ndarray):
            raise TypeError(f"Unsupported type {type(a)}")
        key, arrays, host = _index(indices, a.shape)
        if host:
            _h2d()
        fn = _gather_fn(key)
        f, ab = self._np, a._buf
        ix = tuple(x._buf for x in arrays)
        bb = _operand(b, dev)._buf if isinstance(b, ndarray) else b
        args = () if b is None else (bb,)
        _issue(f"{self.name}.at", lambda: f.at(ab, fn(ab.shape, ix), *args),
               [a, *arrays] + ([b] if isinstance(b, ndarray) else []))


_UFUNCS = {n: ufunc._of(getattr(np, n)) for n, e in NAMES["modules"]["cupy"].items()
           if e["kind"] == "ufunc" and isinstance(getattr(np, n, None), np.ufunc)}


# ------------------------------------------------------------------------------------------ functions


def _need_device(x, arg="a"):
    """A Cython-typed ``_ndarray_base`` parameter: anything else is a TypeError from Cython
    (e.g. cupy/_core/core.pyx:3221 (v14.2.0), ``ascontiguousarray(_ndarray_base a, dtype=None)``)."""
    if not isinstance(x, ndarray):
        raise TypeError(f"Argument '{arg}' has incorrect type (expected cupy._core.core._ndarray_base, "
                        f"got {type(x).__module__ + '.' if type(x).__module__ != 'builtins' else ''}"
                        f"{type(x).__name__})")
    return x


def empty(shape, dtype=float, order="C"):
    return _empty(shape, dtype, order)


def _filled(name, shape, dtype, value, order="C"):
    a = _empty(shape, dtype, order)
    b = a._buf
    _issue(name, lambda: b.fill(value), [a])
    return a


def zeros(shape, dtype=float, order="C"):
    return _filled("memset", shape, dtype, 0, order)


def ones(shape, dtype=float, order="C"):
    return _filled("fill", shape, dtype, 1, order)


def full(shape, fill_value, dtype=None, order="C"):
    if isinstance(fill_value, ndarray):
        raise _not_modelled("full() with a device fill value")
    dtype = np.asarray(fill_value).dtype if dtype is None else dtype
    return _filled("fill", shape, dtype, fill_value, order)


def _like(a, dtype, shape):
    return (a.shape if shape is None else shape), (a.dtype if dtype is None else dtype)


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    if subok is not None:  # cupy/_creation/basic.py (v14.2.0): 'subok is not supported yet'
        raise TypeError("subok is not supported yet")
    return empty(*_like(prototype, dtype, shape))


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    if subok is not None:
        raise TypeError("subok is not supported yet")
    return zeros(*_like(a, dtype, shape))


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    if subok is not None:
        raise TypeError("subok is not supported yet")
    return ones(*_like(a, dtype, shape))


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    if subok is not None:
        raise TypeError("subok is not supported yet")
    s, d = _like(a, dtype, shape)
    return full(s, fill_value, d)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if subok:
        raise NotImplementedError
    if isinstance(obj, ndarray):
        # cupy/_core/core.pyx:2844-2857 (v14.2.0): same device -> astype; another -> copy to the current one
        if obj._alloc.device_id == _current_device():
            a = obj.astype(obj.dtype if dtype is None else dtype, copy=bool(copy))
        else:
            a = obj.copy().astype(obj.dtype if dtype is None else dtype, copy=False)
        if ndmin > a.ndim:
            a = a.reshape((1,) * (ndmin - a.ndim) + a.shape)
        return a
    if isinstance(obj, (list, tuple)) and any(isinstance(x, ndarray) for x in obj):
        raise _not_modelled("array() of a sequence of device arrays")
    host = np.array(obj, dtype=dtype, ndmin=ndmin)
    if host.dtype == object:
        raise ValueError("Unsupported dtype object")
    _h2d()  # cupy/cuda/memory.pyx:617-621 (v14.2.0)
    out = _empty(host.shape, host.dtype)
    out._buf[...] = host
    world().ops.append("h2d")
    return out


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    return array(a, dtype=dtype, copy=bool(copy), order=order, blocking=blocking)


def ascontiguousarray(a, dtype=None):
    # cupy/_core/core.pyx:3221-3239 (v14.2.0): the array itself when already C-contiguous of that dtype
    _need_device(a)
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    if dtype == a.dtype and a._buf.flags.c_contiguous:
        return a.ravel() if a.ndim == 0 else a
    return _new_result("copy", lambda b: np.ascontiguousarray(b, dtype=dtype), (a,))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    return np.asarray(a, order=order)


def copy(a, order="K"):
    return _need_device(a).copy(order="C" if order == "K" else order)


def arange(start, stop=None, step=1, dtype=None):
    return _new_result("arange", lambda: np.arange(start, stop, step, dtype=dtype), ())


def eye(N, M=None, k=0, dtype=float, order="C"):
    return _new_result("eye", lambda: np.eye(N, M, k, dtype=dtype), ())


def _device_operands(seq):
    dev = _current_device()
    return [_operand(x, dev) for x in seq]


def concatenate(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    # every input goes through the argument preprocessing: cupy/_core/_routines_manipulation.pyx:663 (v14.2.0)
    arrs = _device_operands(tup)
    if not arrs:
        raise ValueError("Cannot concatenate from empty tuple")
    if any(not isinstance(x, ndarray) for x in arrs):
        raise TypeError("Only cupy arrays can be concatenated")
    n = len(arrs)
    kw = {"casting": casting, **({"dtype": dtype} if dtype is not None else {})}
    if out is not None:
        return _into("concatenate", lambda *bs: np.concatenate(bs[:n], axis=axis, out=bs[n], **kw),
                     _need_device(out, "out"), arrs)
    return _new_result("concatenate", lambda *bs: np.concatenate(bs, axis=axis, **kw), arrs)


def stack(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    arrs = _device_operands(tup)
    n = len(arrs)
    kw = {"casting": casting, **({"dtype": dtype} if dtype is not None else {})}
    if out is not None:
        return _into("stack", lambda *bs: np.stack(bs[:n], axis=axis, out=bs[n], **kw), _need_device(out, "out"), arrs)
    return _new_result("stack", lambda *bs: np.stack(bs, axis=axis, **kw), arrs)


def take(a, indices, axis=None, out=None):
    """cupy/_core/_routines_indexing.pyx:843-895 (v14.2.0): indices that are not a device array are
    uploaded (an H2D copy); ``out`` must match in dtype and shape; indices wrap around."""
    _need_device(a)
    if not isinstance(indices, ndarray) and not np.isscalar(indices):
        _h2d()
        indices = np.asarray(indices, dtype=int)
    ax = axis
    ishape = indices.shape if isinstance(indices, (ndarray, np.ndarray)) else ()
    shape = a._buf.take(np.zeros(ishape, dtype=np.intp), axis=ax).shape

    def fn(b, ix, o=None):
        return np.take(b, ix, axis=ax, mode="wrap", **({"out": o} if o is not None else {}))

    operands = (a, indices)
    if out is None:
        return _new_result("take", fn, operands)
    _need_device(out, "out")
    if out.dtype != a.dtype:
        raise TypeError("Output dtype mismatch")
    if out.shape != shape:
        raise ValueError("Output shape mismatch")
    return _into("take", lambda b, ix, o: fn(b, ix, o), out, operands)


def where(condition, x=None, y=None):
    if x is None and y is None:
        return nonzero(condition)
    dev = _current_device()
    ops = tuple(_operand(v, dev) for v in (condition, x, y))
    return _new_result("where", np.where, ops)


def nonzero(a):
    """The number of nonzero entries is read on the host: cupy/_core/_routines_indexing.pyx:123 (v14.2.0)."""
    _need_device(a)
    if a.size:
        _host_read()
    res = np.nonzero(a._buf)
    outs = []
    for r in res:
        o = _empty(r.shape, r.dtype)
        o._buf[...] = r
        outs.append(o)
    world().ops.append("nonzero")
    return tuple(outs)


def count_nonzero(a, axis=None):
    return _new_result("count_nonzero", lambda b: np.asarray(np.count_nonzero(b, axis=axis), dtype=np.intp),
                       (_need_device(a),))


def clip(a, a_min=None, a_max=None, out=None):
    dev = _current_device()
    ops = tuple(_operand(v, dev) if v is not None else None for v in (a, a_min, a_max))
    if out is not None:
        return _into("clip", lambda b, lo, hi, o: np.clip(b, lo, hi, out=o), _need_device(out, "out"), ops)
    return _new_result("clip", lambda b, lo, hi: np.clip(b, lo, hi), ops)


def _reduction_fn(name):
    if name in ("max", "min", "any", "all"):
        def fn(a, axis=None, out=None, keepdims=False):
            return getattr(_need_device(a), name)(axis=axis, out=out, keepdims=keepdims)
    else:
        def fn(a, axis=None, dtype=None, out=None, keepdims=False):
            return getattr(_need_device(a), name)(axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    fn.__name__ = name
    return fn


def argmax(a, axis=None, dtype=None, out=None, keepdims=False):
    return _need_device(a).argmax(axis=axis, out=out, dtype=dtype, keepdims=keepdims)


def argmin(a, axis=None, dtype=None, out=None, keepdims=False):
    return _need_device(a).argmin(axis=axis, out=out, dtype=dtype, keepdims=keepdims)


def reshape(a, newshape, order="C", *, copy=None):
    return _need_device(a).reshape(newshape, order=order, copy=copy)


def transpose(a, axes=None):
    return _need_device(a).transpose(axes)


def ravel(a, order="C"):
    return _need_device(a).ravel(order)


def squeeze(a, axis=None):
    return _need_device(a).squeeze(axis)


def expand_dims(a, axis):
    return _view_or_copy("expand_dims", _need_device(a), np.expand_dims(a._buf, axis))


def broadcast_to(array, shape):
    return _view_or_copy("broadcast_to", _need_device(array), np.broadcast_to(array._buf, shape))


def may_share_memory(a, b, max_work=None):
    if not (isinstance(a, ndarray) and isinstance(b, ndarray)):
        return False
    return a._alloc.block is b._alloc.block and bool(np.may_share_memory(a._buf, b._buf))


def shares_memory(a, b, max_work=None):
    if not (isinstance(a, ndarray) and isinstance(b, ndarray)):
        return False
    return a._alloc.block is b._alloc.block and bool(np.shares_memory(a._buf, b._buf))


def result_type(*arrays_and_dtypes):
    return np.result_type(*(x.dtype if isinstance(x, ndarray) else x for x in arrays_and_dtypes))


def shape(a):
    return tuple(a.shape) if isinstance(a, ndarray) else np.shape(a)


def ndim(a):
    return a.ndim if isinstance(a, ndarray) else np.ndim(a)


def size(a, axis=None):
    return (a.size if axis is None else a.shape[axis]) if isinstance(a, ndarray) else np.size(a, axis)


def get_array_module(*args):
    return _MODULE if any(isinstance(a, ndarray) for a in args) else np


def get_default_memory_pool():
    return world().default_pool


def array_equal(a1, a2, equal_nan=False):
    return _new_result("array_equal", lambda x, y: np.asarray(np.array_equal(x, y, equal_nan=equal_nan)),
                       (_need_device(a1), _need_device(a2)))


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    dev = _current_device()
    return _new_result("allclose", lambda x, y: np.asarray(np.allclose(x, y, rtol, atol, equal_nan)),
                       (_operand(a, dev), _operand(b, dev)))


# ------------------------------------------------------------------------------------------ cuBLAS


def _uses_cublas(a, b, out_size, batched):
    """Whether CuPy reaches cuBLAS for this product: float and complex products of non-empty operands,
    except a single-element result (CUB or a reduction kernel instead) --
    cupy/_core/_routines_linalg.pyx:557-575 (v14.2.0), integer kernels at :615-621, cuBLAS at :630 and
    :775 (2-D) and :1005-1060 (batched)."""
    kind = np.promote_types(a.dtype, b.dtype).kind
    if kind not in "fc" or not a.size or not b.size:
        return False
    return batched or out_size != 1


def _matmul_shape(ash, bsh):
    a2 = (1,) + ash if len(ash) == 1 else ash
    b2 = bsh + (1,) if len(bsh) == 1 else bsh
    if a2[-1] != b2[-2]:
        raise ValueError(f"shapes ({','.join(map(str, ash))}) and ({','.join(map(str, bsh))}) not aligned")
    shape = np.broadcast_shapes(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    if len(ash) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(bsh) == 1:
        shape = shape[:-1]
    return shape


def _dot_shape(ash, bsh):
    if ash[-1] != bsh[-1 if len(bsh) == 1 else -2]:
        raise ValueError("Axis dimension mismatch")
    return ash[:-1] + bsh[:-2] + bsh[-1:]


def _tensordot_shape(ash, bsh, axes):
    if isinstance(axes, int):
        ax_a, ax_b = list(range(len(ash) - axes, len(ash))), list(range(axes))
    else:
        ax_a, ax_b = ([axes[0]] if isinstance(axes[0], int) else list(axes[0]),
                      [axes[1]] if isinstance(axes[1], int) else list(axes[1]))
    ax_a = [x % len(ash) for x in ax_a]
    ax_b = [x % len(bsh) for x in ax_b]
    return tuple(d for i, d in enumerate(ash) if i not in ax_a) + tuple(d for i, d in enumerate(bsh) if i not in ax_b)


def matmul(*args, out=None, **kwargs):
    """``cupy.matmul`` is a generalised ufunc (``matmul(*args, axes, axis, keepdims, casting, dtype,
    signature, order, out)``); the double models ``matmul(a, b, out=None)``."""
    if kwargs or len(args) != 2:
        raise _not_modelled(f"matmul with {len(args)} positional arguments and keywords {sorted(kwargs)}")
    a, b = args
    _need_device(a, "a")
    _need_device(b, "b")
    if a.ndim == 0 or b.ndim == 0:  # cupy/_core/_routines_linalg.pyx:853 (v14.2.0)
        raise ValueError("Scalar operands are not allowed, use '*' instead")
    shape = _matmul_shape(a.shape, b.shape)
    cublas = _uses_cublas(a, b, int(np.prod(shape)), max(a.ndim, b.ndim) > 2)
    if out is not None:
        _need_device(out, "out")
        return _into("matmul", lambda x, y, o: np.matmul(x, y, out=o), out, (a, b), cublas=cublas)
    return _new_result("matmul", np.matmul, (a, b), cublas=cublas)


def dot(a, b, out=None):
    _need_device(a, "a")
    _need_device(b, "b")
    if a.ndim == 0 or b.ndim == 0:  # a product with a scalar is a multiply: cupy/_core/_routines_linalg.pyx:490-491
        return _UFUNCS["multiply"](a, b, out=out)
    cublas = _uses_cublas(a, b, int(np.prod(_dot_shape(a.shape, b.shape))), False)
    if out is not None:
        _need_device(out, "out")
        return _into("dot", lambda x, y, o: np.dot(x, y, out=o), out, (a, b), cublas=cublas)
    return _new_result("dot", np.dot, (a, b), cublas=cublas)


def tensordot(a, b, axes=2):
    _need_device(a, "a")
    _need_device(b, "b")
    if a.ndim == 0 or b.ndim == 0:
        return _UFUNCS["multiply"](a, b)
    cublas = _uses_cublas(a, b, int(np.prod(_tensordot_shape(a.shape, b.shape, axes))), False)
    return _new_result("tensordot", lambda x, y: np.tensordot(x, y, axes), (a, b), cublas=cublas)


def inner(a, b):
    _need_device(a, "a")
    _need_device(b, "b")
    if a.ndim == 0 or b.ndim == 0:
        return _UFUNCS["multiply"](a, b)
    cublas = _uses_cublas(a, b, int(np.prod(a.shape[:-1] + b.shape[:-1])), False)
    return _new_result("inner", np.inner, (a, b), cublas=cublas)


# ------------------------------------------------------------------------------------------ kernels

#: CuPy appends -ftz=true after the caller's options for every NVRTC compile (the last occurrence
#: wins, so a caller cannot switch it off): cupy/cuda/compiler.py:667 (v14.2.0)
CUPY_APPENDED_OPTIONS = ("-ftz=true",)


def _source_name(code):
    """The kernels/ file whose text ``code`` is (so the emulation builds it once), else a digest."""
    for f in _kernels.kernel_files():
        if _kernels.kernel_source(f) == code:
            return f
    return "src_" + hashlib.sha1(code.encode()).hexdigest()[:12]


def _module_for(code, options, device_id):
    """The module of ``code`` for ``device_id``, compiled on first use (memoised per device:
    cupy/_core/raw.pyx:540-541 (v14.2.0)); every compile is recorded in ``world().compiles``."""
    w = world()
    key = (device_id, hashlib.sha1(code.encode()).hexdigest(), options, w.sanitize)
    mod = w.modules.get(key)
    if mod is None:
        name = _source_name(code)
        mod = _emu.build(name, sanitize=w.sanitize) if name.endswith(".cu") else \
            _emu.build(source=code, sanitize=w.sanitize)
        w.modules[key] = mod
        w.compiles.append((device_id, name, tuple(options) + CUPY_APPENDED_OPTIONS))
    return mod


class RawKernel(_Strict):
    """``cupy.RawKernel``. Compiled lazily for the device current at each launch and cached per device
    (cupy/_core/raw.pyx:110-131 (v14.2.0)): a kernel obtained with device 0 current and launched with
    device 1 current is compiled again for device 1 -- CuPy allows that."""

    _cupy_class = "cupy.RawKernel"

    def __init__(self, code, name, options=(), backend="nvrtc", *, translate_cucomplex=False,
                 enable_cooperative_groups=False, jitify=None):
        _typed("code", code, str)
        _typed("name", name, str)
        _typed("options", options, tuple)
        self.code, self.name, self.options, self.backend = code, name, options, backend
        self.file_path = None
        self.name_expressions = None

    def _function(self):
        mod = _module_for(self.code, self.options, _current_device())
        if self.name not in mod.sigs:
            raise CUDADriverError(500)  # cuModuleGetFunction: named symbol not found
        return mod

    def __call__(self, grid, block, args, **kwargs):
        # Function.__call__(self, tuple grid, tuple block, args, size_t shared_mem=0, stream=None, ...):
        # cupy/cuda/function.pyx:142 (v14.2.0)
        shared_mem = kwargs.pop("shared_mem", 0)
        if kwargs:
            raise _not_modelled(f"RawKernel keywords {sorted(kwargs)}")
        _typed("grid", grid, tuple)
        _typed("block", block, tuple)
        grid3 = tuple(max(1, int(g)) for g in (grid + (1, 1))[:3])  # cupy/cuda/function.pyx:144-150 (v14.2.0)
        block3 = tuple(max(1, int(b)) for b in (block + (1, 1))[:3])
        if int(shared_mem) < 0:
            raise OverflowError("can't convert negative value to size_t")
        if block3[0] * block3[1] * block3[2] > 1024 or grid3[0] > 2**31 - 1 or max(grid3[1:]) > 65535:
            raise CUDADriverError(1)  # cuLaunchKernel: more than the device's limits
        if grid3[1:] != (1, 1) or block3[1:] != (1, 1):
            raise _not_modelled("2-D and 3-D launch shapes in the kernel emulation")
        mod = self._function()
        dev = _current_device()
        unwrapped, arrays = [], []
        for a in args:
            if isinstance(a, ndarray):
                if a._alloc.device_id != dev and a._alloc.size:
                    # RawKernel launches do no device check (cupy/cuda/function.pyx:92-104 (v14.2.0)); a
                    # kernel on this device dereferencing another GPU's memory without peer access faults:
                    # an asynchronous cudaErrorIllegalAddress that poisons the context. Raised here, at launch.
                    raise CUDARuntimeError(700)
                arrays.append(a)
                unwrapped.append(a._buf)
            elif isinstance(a, np.ndarray):
                if a.size != 1:  # cupy/cuda/function.pyx:65-78 (v14.2.0)
                    raise TypeError(
                        f"You are trying to pass a numpy.ndarray of shape {a.shape} as a kernel parameter. "
                        "Only numpy.ndarrays of size one can be passed by value. If you meant to pass a "
                        "pointer to __global__ memory, you need to pass a cupy.ndarray instead.")
                unwrapped.append(a)
            else:
                unwrapped.append(a)
        unwrapped = tuple(unwrapped)
        _kernels.check_signature(self.name, mod.sigs[self.name], unwrapped)
        name, g, b = self.name, grid3[0], block3[0]
        if world().launch is not None:
            g, b = world().launch
        world().launches.append((dev, name, g, b))
        _issue(f"kernel:{name}", lambda: mod.launch(name, g, b, unwrapped), arrays, peer=False)

    @property
    def kernel(self):
        return self._function()


def _typed(arg, value, typ):
    """A Cython-typed parameter (``str``, ``tuple``): ``None`` passes, another type is a TypeError."""
    if value is not None and not isinstance(value, typ):
        raise TypeError(f"Argument '{arg}' has incorrect type (expected {typ.__name__}, got {type(value).__name__})")


class RawModule(_Strict):
    """``cupy.RawModule(*, code=None, path=None, options=(), ...)`` (cupy/_core/raw.pyx:364-367
    (v14.2.0)): every parameter is keyword-only and Cython-typed (``options`` a ``tuple``); nothing is
    compiled until a kernel is needed. ``get_function`` compiles for the current device and looks the
    kernel up (cupy/_core/raw.pyx:487-499 (v14.2.0))."""

    _cupy_class = "cupy.RawModule"

    def __init__(self, *, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=None):
        _typed("code", code, str)
        _typed("path", path, str)
        _typed("options", options, tuple)
        if (code is None) == (path is None):  # cupy/_core/raw.pyx:368-371 (v14.2.0)
            raise TypeError("Exactly one of `code` and `path` keyword arguments must be given.")
        if path is not None:
            raise _not_modelled("RawModule(path=...)")
        if name_expressions is not None:
            raise _not_modelled("RawModule(name_expressions=...)")
        self.code, self.options, self.backend = code, options, backend
        self.file_path, self.name_expressions = None, None

    def get_function(self, name):
        _typed("name", name, str)
        ker = RawKernel(self.code, name, self.options, self.backend)
        ker._function()
        return ker

    def compile(self, log_stream=None):
        _module_for(self.code, self.options, _current_device())


# ------------------------------------------------------------------------------------------ random


class Generator(_Strict):
    """``cupy.random.Generator`` from ``default_rng`` (its numbers are NumPy's, not CuPy's XORWOW stream;
    each draw is a device operation on the device current at the draw)."""

    _cupy_class = "cupy.random.Generator"

    def __init__(self, bit_generator):
        if not isinstance(bit_generator, _Seed):
            raise _not_modelled("cupy.random bit generators")
        self._rng = np.random.default_rng(bit_generator.seed)

    def _draw(self, name, fn, out):
        rng = self._rng
        if out is not None:
            return _into(f"random.{name}", lambda o: o.__setitem__(Ellipsis, fn(rng, o.shape)), _need_device(out, "out"), ())
        shape = np.asarray(fn(np.random.default_rng(0), None)).shape
        res = _empty(shape, np.asarray(fn(np.random.default_rng(0), None)).dtype)
        rb = res._buf
        _issue(f"random.{name}", lambda: rb.__setitem__(Ellipsis, fn(rng, None)), [res])
        return res

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return self._draw("standard_normal", lambda r, s: r.standard_normal(size if s is None else s, dtype=dtype), out)

    def random(self, size=None, dtype=np.float64, out=None):
        return self._draw("random", lambda r, s: r.random(size if s is None else s, dtype=dtype), out)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return self._draw("integers", lambda r, s: r.integers(low, high, size, dtype=dtype, endpoint=endpoint), None)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return self._draw("uniform", lambda r, s: r.uniform(low, high, size).astype(dtype), None)


class _Seed:
    def __init__(self, seed):
        self.seed = seed


def default_rng(seed=None):
    return Generator(_Seed(seed))


# ------------------------------------------------------------------------------------------ names


def _stub(qualname, kind):
    """A name CuPy has that the double does not implement."""
    if kind in ("module", "lazy"):
        return _Namespace(qualname, {})

    def unmodelled(*args, **kwargs):
        raise _not_modelled(qualname)

    unmodelled.__name__ = qualname.rsplit(".", 1)[-1]
    unmodelled.__qualname__ = qualname
    return unmodelled


class _Namespace(types.ModuleType):
    """A CuPy (sub)module: modelled names first, then names CuPy has (NumPy's own objects where CuPy
    re-exports them; 'not modelled' stubs otherwise); any other name is an AttributeError."""

    def __init__(self, qualname, impl, real_name=None):
        super().__init__(qualname)
        self._qualname, self._real = qualname, real_name or qualname
        self._names = NAMES["modules"].get(qualname)
        self.__dict__.update(impl)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        entry = None if self._names is None else self._names.get(name)
        if self._names is None:  # a submodule whose names were not recorded: all 'not modelled'
            raise _not_modelled(f"{self._qualname}.{name}")
        if entry is None:
            raise AttributeError(f"module '{self._real}' has no attribute '{name}'")
        if entry["kind"] == "numpy":
            np_ns = functools.reduce(getattr, self._qualname.split(".")[1:], np)
            value = getattr(np_ns, name)
        elif entry["kind"] == "constant" and "value" in entry:
            value = entry["value"]
        elif entry["kind"] == "constant":
            raise _not_modelled(f"{self._qualname}.{name}")
        else:
            value = _stub(f"{self._qualname}.{name}", entry["kind"])
        setattr(self, name, value)
        return value

    def __dir__(self):
        return sorted(set(self._names or ()) | set(k for k in self.__dict__ if not k.startswith("_")))


_MODULE: "_Namespace | None" = None


def _runtime_namespace():
    def getDeviceCount():
        return world().devices

    def getDevice():
        return _current_device()

    def setDevice(device):
        _set_device(device)

    def deviceSynchronize():
        Device().synchronize()

    def streamIsCapturing(stream):
        return any(c.stream.ptr == int(stream) for c in _CAPTURES)

    def getDeviceProperties(device):
        if not 0 <= int(device) < world().devices:
            raise CUDARuntimeError(101)
        return {"name": f"fakecupy device {int(device)} (NumPy double of an H200)".encode(), "major": 9,
                "minor": 0, "multiProcessorCount": 132, "totalGlobalMem": 141 * 2**30}

    impl = dict(getDeviceCount=getDeviceCount, getDevice=getDevice, setDevice=setDevice,
                deviceSynchronize=deviceSynchronize, streamIsCapturing=streamIsCapturing,
                getDeviceProperties=getDeviceProperties, runtimeGetVersion=lambda: 13000,
                driverGetVersion=lambda: 13000, CUDARuntimeError=CUDARuntimeError,
                streamCaptureModeGlobal=_MODE_GLOBAL, streamCaptureModeThreadLocal=_MODE_THREAD_LOCAL,
                streamCaptureModeRelaxed=_MODE_RELAXED, streamLegacy=1, streamPerThread=2)
    return _Namespace("cupy.cuda.runtime", impl, real_name="cupy_backends.cuda.api.runtime")


def _reductions():
    return {n: _reduction_fn(n) for n in ("sum", "prod", "mean", "max", "min", "any", "all")} | \
        {"amax": _reduction_fn("max"), "amin": _reduction_fn("min")}


#: what ``cupy/cuda/nccl.py`` leaves when the NCCL library does not load (checked: cupy-cuda13x 14.2.0 alone)
_NO_NCCL_NAMES = {"_environment": {"kind": "module"}, "annotations": {"kind": "constant"},
                  "available": {"kind": "constant", "value": False}}


def _nccl_namespace(nccl):
    """``cupy.cuda.nccl``: the NCCL double's names (``nccl.IMPL``) where CuPy has them, or the module of
    a CuPy without the NCCL library."""
    if nccl is None:
        ns = _Namespace("cupy.cuda.nccl", {"available": False})
        ns._names = _NO_NCCL_NAMES
        return ns
    unknown = [n for n in nccl.IMPL if n not in NAMES["modules"]["cupy.cuda.nccl"]]
    assert not unknown, f"the NCCL double models names CuPy 14.2 lacks: {unknown}"
    return _Namespace("cupy.cuda.nccl", dict(nccl.IMPL))


def make(devices: int = 2, nccl=None) -> _Namespace:
    """A fresh double with ``devices`` GPUs (and a fresh world: nothing compiled, nothing allocated);
    ``nccl``: the NCCL double behind ``cupy.cuda.nccl`` (None: a CuPy without the NCCL library)."""
    global _W, _MODULE
    _W = _World(devices)
    _W.nccl = _nccl_namespace(nccl)
    _CAPTURES.clear()
    Stream.null = Stream(null=True)
    Stream.ptds = Stream(ptds=True)
    _W.null, _W.ptds = Stream.null, Stream.ptds
    _W.default_pool = MemoryPool()
    runtime = _runtime_namespace()
    driver = _Namespace("cupy.cuda.driver", {"CUDADriverError": CUDADriverError})
    cuda = _Namespace("cupy.cuda", dict(
        Device=Device, Stream=Stream, Event=Event, Graph=Graph, MemoryPool=MemoryPool, MemoryPointer=MemoryPointer,
        runtime=runtime, driver=driver, get_current_stream=get_current_stream, using_allocator=using_allocator,
        get_allocator=get_allocator, set_allocator=set_allocator, alloc=alloc, get_device_id=get_device_id,
        is_available=lambda: True))
    random = _Namespace("cupy.random", {"default_rng": default_rng, "Generator": Generator})
    impl = dict(_UFUNCS)
    impl.update(_reductions())
    impl.update(
        __version__=NAMES["cupy_version"], ndarray=ndarray, ufunc=ufunc, cuda=cuda, random=random,
        RawModule=RawModule, RawKernel=RawKernel, empty=empty, zeros=zeros, ones=ones, full=full,
        empty_like=empty_like, zeros_like=zeros_like, ones_like=ones_like, full_like=full_like, array=array,
        asarray=asarray, ascontiguousarray=ascontiguousarray, asnumpy=asnumpy, copy=copy, arange=arange, eye=eye,
        concatenate=concatenate, stack=stack, take=take, where=where, nonzero=nonzero,
        count_nonzero=count_nonzero, clip=clip, argmax=argmax, argmin=argmin, reshape=reshape,
        transpose=transpose, ravel=ravel, squeeze=squeeze, expand_dims=expand_dims, broadcast_to=broadcast_to,
        shape=shape, ndim=ndim, size=size, may_share_memory=may_share_memory, shares_memory=shares_memory, result_type=result_type,
        get_array_module=get_array_module, get_default_memory_pool=get_default_memory_pool,
        array_equal=array_equal, allclose=allclose, matmul=matmul, dot=dot, tensordot=tensordot, inner=inner)
    unknown = [n for n in impl if n not in NAMES["modules"]["cupy"]]
    assert not unknown, f"fakecupy models names CuPy 14.2 lacks: {unknown}"
    _MODULE = _Namespace("cupy", impl)
    return _MODULE


class _SetAttr:
    """``monkeypatch.setattr`` for code without pytest (a subprocess), undone on exit."""

    def __init__(self):
        self.undo = []

    def setattr(self, obj, name, value):
        self.undo.append((lambda o=obj, n=name, v=getattr(obj, name): setattr(o, n, v)))
        setattr(obj, name, value)

    def setitem(self, mapping, key, value):
        self.undo.append((lambda m=mapping, k=key, had=key in mapping, v=mapping.get(key):
                          m.__setitem__(k, v) if had else m.pop(k, None)))
        mapping[key] = value


@contextlib.contextmanager
def installed(*, devices: int = 2, sanitize: bool = False, nccl=None):
    """:func:`install` outside pytest, e.g. in the sanitizer subprocess or an MPI rank."""
    patch = _SetAttr()
    try:
        with install(patch, devices, nccl=nccl) as cp:
            world().sanitize = sanitize
            yield cp
    finally:
        for undo in reversed(patch.undo):
            undo()


@contextlib.contextmanager
def install(monkeypatch, devices: int = 2, nccl=None):
    """Put a fresh double in CuPy's place (``xcnn.backend._CUPY``) for the duration, and make
    ``import cupy.cuda.nccl`` give its NCCL module (``nccl``: tests/doubles/fakenccl.py, or None for a
    CuPy without NCCL); xcnn's kernel caches are cleared on the way in and out. Yields ``cupy``."""
    cp = make(devices, nccl)
    monkeypatch.setattr(_backend, "_CUPY", cp)
    monkeypatch.setattr(_backend, "_CUPY_TRIED", True)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", world().nccl)
    _kernels.clear_cache()
    try:
        yield cp
    finally:
        _CAPTURES.clear()
        _kernels.clear_cache()
