"""The strict CuPy double (tests/doubles/fakecupy.py) itself: one test per refusal it models, citing the
CuPy 14.2.0 source line (or CUDA rule) the refusal comes from, and the happy paths xcnn relies on."""
from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest

from doubles import emu as _emu
from doubles import fakecupy as fc

needs_cxx = pytest.mark.skipif(not _emu.have_compiler(), reason=f"no C++ compiler ({_emu.CXX}) for the kernel emulation")

SCALE = r'''
extern "C" __global__ void scale_f32(const float* __restrict__ x, float* __restrict__ y, long long total, float a) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        y[i] = a * x[i];
}
'''


@pytest.fixture
def cp(monkeypatch):
    with fc.install(monkeypatch) as mod:
        yield mod


@pytest.fixture
def stream(cp):
    """A non-blocking stream made current (what xcnn's graph step captures on)."""
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        yield s


@pytest.fixture
def capturing(cp, stream):
    """Inside a capture on the current stream; ends it (ignoring a refusal that invalidated it)."""
    stream.begin_capture()
    yield stream
    if stream.is_capturing():
        try:
            stream.end_capture()
        except fc.CUDARuntimeError:
            pass


def _arr(cp, *shape, dtype=np.float32):
    return cp.asarray(np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape))


# ====================================================================================== refusals

# -------------------------------------------------------------------- arrays are not NumPy arrays

@pytest.mark.parametrize("convert", [np.asarray, np.array, np.ascontiguousarray, lambda a: np.zeros(4) + a.__array__()])
def test_implicit_conversion_to_numpy_is_refused(cp, convert):
    """cupy/_core/core.pyx:1803-1809 (v14.2.0): ``__array__`` raises; ``.get()`` is the explicit way."""
    a = _arr(cp, 4)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        convert(a)
    assert not isinstance(a, np.ndarray)
    np.testing.assert_array_equal(a.get(), np.arange(4))
    np.testing.assert_array_equal(cp.asnumpy(a), np.arange(4))


def test_device_array_has_no_host_buffer(cp):
    """CuPy's ndarray has no ``ctypes`` and no buffer protocol (checked with cupy-cuda13x 14.2.0)."""
    a = _arr(cp, 4)
    with pytest.raises(AttributeError, match="ctypes"):
        a.ctypes  # noqa: B018
    with pytest.raises(TypeError):
        memoryview(a)


@pytest.mark.parametrize("op", [
    lambda a, h: a + h, lambda a, h: h + a, lambda a, h: np.add(a, h), lambda a, h: np.maximum(h, a),
    lambda a, h: np.multiply(a, 2, out=h), lambda a, h: a.__iadd__(h),
])
def test_host_array_in_a_device_ufunc_is_refused(cp, op):
    """A NumPy array reaches the CuPy ufunc through ``__array_ufunc__`` (cupy/_core/core.pyx:1999-2026
    (v14.2.0)) and is refused as a kernel argument: cupy/_core/_kernel.pyx:147-156 (v14.2.0) ->
    cupy/_core/_scalar.pyx:344 (v14.2.0)."""
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        op(_arr(cp, 4), np.ones(4, np.float32))


def test_host_array_in_a_device_function_is_refused(cp):
    """Cython-typed array parameters refuse NumPy arrays (``ascontiguousarray(_ndarray_base a, ...)``,
    cupy/_core/core.pyx:3221 (v14.2.0); ``matmul`` likewise, checked with the wheel), and concatenate
    preprocesses every input as a kernel argument (cupy/_core/_routines_manipulation.pyx:663 (v14.2.0))."""
    a = _arr(cp, 2, 2)
    with pytest.raises(TypeError, match="Argument 'a' has incorrect type"):
        cp.ascontiguousarray(np.ones(3))
    with pytest.raises(TypeError, match="Argument 'a' has incorrect type"):
        np.ones((2, 2), np.float32) @ a
    with pytest.raises(TypeError, match="Unsupported type"):
        np.concatenate([a, np.ones((2, 2), np.float32)])


def test_numpy_where_keyword_is_refused_by_cupy_ufuncs(cp):
    """CuPy's ufunc takes ``out``, ``dtype`` and ``casting`` only: cupy/_core/_kernel.pyx:1268-1277 (v14.2.0)."""
    a = _arr(cp, 3)
    with pytest.raises(TypeError, match="Wrong arguments"):
        np.add(a, 1, where=a > 0)


def test_numpy_function_cupy_lacks_is_a_type_error(cp):
    """``__array_function__`` answers NotImplemented when CuPy has no function of that name
    (cupy/_core/core.pyx:2028-2034 (v14.2.0)), so NumPy raises TypeError; a function CuPy has but the
    double does not implement says so instead of silently running NumPy's."""
    a = _arr(cp, 4)
    with pytest.raises(TypeError, match="no implementation found"):
        np.insert(a, 0, 1.0)  # CuPy 14.2 has no insert
    with pytest.raises(NotImplementedError, match="fakecupy: cupy.sort is not modelled"):
        np.sort(a)


# -------------------------------------------------------------------- names

def test_only_cupy_names_resolve(cp):
    """The module resolves the names of cupy_names.json only (generated from CuPy 14.2.0)."""
    with pytest.raises(AttributeError, match="module 'cupy' has no attribute 'ctypes'"):
        cp.ctypes  # noqa: B018
    with pytest.raises(AttributeError, match="module 'cupy.cuda' has no attribute 'Foo'"):
        cp.cuda.Foo  # noqa: B018
    with pytest.raises(AttributeError, match="cupy_backends.cuda.api.runtime' has no attribute 'cudaMalloc'"):
        cp.cuda.runtime.cudaMalloc  # noqa: B018
    with pytest.raises(AttributeError):
        cp.random.permutation_of  # noqa: B018
    assert cp.float32 is np.float32 and cp.pi == np.pi and cp.newaxis is None  # NumPy's own objects in CuPy
    assert cp.__version__ == "14.2.0"


def test_names_cupy_has_but_the_double_lacks_say_so(cp):
    with pytest.raises(NotImplementedError, match="fakecupy: cupy.einsum is not modelled"):
        cp.einsum("ij,jk", _arr(cp, 2, 2), _arr(cp, 2, 2))
    with pytest.raises(NotImplementedError, match="cupy.random.permutation is not modelled"):
        cp.random.permutation(3)
    with pytest.raises(NotImplementedError, match="cupy.ndarray.cumsum is not modelled"):
        _arr(cp, 3).cumsum()
    with pytest.raises(AttributeError, match="'Generator' object has no attribute 'normal'"):
        cp.random.default_rng(0).normal()  # CuPy's Generator has no normal()


def test_every_modelled_name_and_signature_is_cupys(cp):
    """What the double implements exists in CuPy 14.2.0 with the same parameters (names and kinds), for
    every module-level name and every public method of the modelled classes; ``fake_*`` attributes are
    the double's own test hooks."""
    names = fc.NAMES
    #: where the double's signature differs on purpose
    differs = {"cupy.ufunc": "defining a ufunc is not modelled (its constructor says so)",
               "cupy.matmul": "a generalised ufunc in CuPy; the double models matmul(a, b, out=None)"}
    problems = []
    for ns_name, ns in [("cupy", cp), ("cupy.cuda", cp.cuda), ("cupy.random", cp.random),
                        ("cupy.cuda.runtime", cp.cuda.runtime)]:
        for n, v in vars(ns).items():
            if n.startswith("_"):
                continue
            entry = names["modules"][ns_name].get(n)
            if entry is None:
                problems.append(f"{ns_name}.{n} is not a CuPy name")
            elif "sig" in entry and callable(v) and not isinstance(v, fc.ufunc) and f"{ns_name}.{n}" not in differs:
                ours = _sig(v.__init__ if isinstance(v, type) else v)
                if ours is not None and ours != entry["sig"]:
                    problems.append(f"{ns_name}.{n}({ours}) but CuPy has ({entry['sig']})")
    classes = {fc.ndarray: "cupy.ndarray", fc.Stream: "cupy.cuda.Stream", fc.Device: "cupy.cuda.Device",
               fc.Event: "cupy.cuda.Event", fc.Graph: "cupy.cuda.Graph", fc.MemoryPool: "cupy.cuda.MemoryPool",
               fc.MemoryPointer: "cupy.cuda.MemoryPointer", fc.RawModule: "cupy.RawModule",
               fc.RawKernel: "cupy.RawKernel", fc.Generator: "cupy.random.Generator", fc.ufunc: "cupy.ufunc"}
    internal = {"__module__", "__qualname__", "__doc__", "__slots__", "__dict__", "__weakref__", "__hash__",
                "__init__", "__firstlineno__", "__static_attributes__", "__annotations__"}
    for cls, qual in classes.items():
        real = names["classes"][qual]
        for n, v in vars(cls).items():
            if n in internal or n.startswith("fake_") or (n.startswith("_") and not n.startswith("__")):
                continue
            if n not in real:
                problems.append(f"{qual}.{n} is not a CuPy name")
            elif callable(v) and "sig" in real[n] and not n.startswith("__"):
                ours = _sig(v)
                if ours is not None and ours != real[n]["sig"]:
                    problems.append(f"{qual}.{n}({ours}) but CuPy has ({real[n]['sig']})")
    assert not problems, "\n".join(problems)


def _sig(f):
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return None
    if params and params[0].name == "self":
        params = params[1:]
    out, star = [], False
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            out.append("*" + p.name)
            star = True
        elif p.kind is p.VAR_KEYWORD:
            out.append("**" + p.name)
        elif p.kind is p.KEYWORD_ONLY and not star:
            out += ["*", p.name]
            star = True
        else:
            out.append(p.name)
    return ", ".join(out)


def test_cupy_device_is_unhashable_and_compares_by_id(cp):
    """``Device.__richcmp__`` compares ids (cupy/cuda/device.pyx:353-357 (v14.2.0)) and the Cython class
    defines no ``__hash__`` (checked: ``hash(cupy.cuda.Device(0))`` raises TypeError in 14.2.0)."""
    assert cp.cuda.Device(1) == cp.cuda.Device(1) and cp.cuda.Device(0) != cp.cuda.Device(1)
    assert not (cp.cuda.Device(0) != cp.cuda.Device(0))
    with pytest.raises(TypeError, match="unhashable"):
        {cp.cuda.Device(0): 1}


# -------------------------------------------------------------------- devices

def test_operand_on_another_device_is_refused(cp):
    """No peer access modelled: cupy/_core/_kernel.pyx:128-144 (v14.2.0)."""
    with cp.cuda.Device(1):
        b = _arr(cp, 3)
    a = _arr(cp, 3)
    for op in (lambda: a + b, lambda: b * 2, lambda: b.sum(), lambda: cp.take(b, cp.arange(2)),
               lambda: cp.concatenate([a, b]), lambda: a.__setitem__(slice(None), b)):
        with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)\. "
                                             r"Peer access is unavailable"):
            op()
    with cp.cuda.Device(1):
        np.testing.assert_array_equal((b * 2).get(), [0, 2, 4])


def test_explicit_copies_across_devices_are_allowed(cp):
    """``asarray``/``copy`` of another device's array copy it to the current device
    (cupy/_core/core.pyx:2854-2857 and :882-913 (v14.2.0)); host reads work from any device."""
    with cp.cuda.Device(1):
        b = _arr(cp, 3)
    c = cp.asarray(b)
    assert c.device.id == 0 and b.device.id == 1 and c.data.ptr != b.data.ptr
    np.testing.assert_array_equal((c + 1).get(), [1, 2, 3])
    assert float(b[2]) == 2.0


def test_stream_of_another_device_cannot_be_made_current(cp):
    """cupy/cuda/stream.pyx:182-191 (v14.2.0), from ``__enter__`` (:223)."""
    with cp.cuda.Device(1):
        s1 = cp.cuda.Stream(non_blocking=True)
    assert s1.device_id == 1
    with pytest.raises(RuntimeError, match=r"The device that the stream is created on \(1\) does not match "
                                           r"with the current device \(0\)"):
        with s1:
            pass
    with cp.cuda.Device(1), s1:
        assert cp.cuda.get_current_stream() == s1
    assert cp.cuda.get_current_stream() == cp.cuda.Stream.null and cp.cuda.get_current_stream(1) == cp.cuda.Stream.null


def test_event_recorded_on_a_stream_of_another_device_is_refused(cp):
    """"event and stream must be on the same CUDA context" (cudaEventRecord, CUDA Runtime API)."""
    with cp.cuda.Device(1):
        s1 = cp.cuda.Stream()
    with pytest.raises(fc.CUDARuntimeError, match="cudaErrorInvalidResourceHandle"):
        s1.record()
    with cp.cuda.Device(1):
        ev = s1.record()
    cp.cuda.Stream().wait_event(ev)  # waiting on another device's event is legal


def test_entering_a_device_that_does_not_exist_is_refused(cp):
    assert cp.cuda.runtime.getDeviceCount() == 2
    with pytest.raises(fc.CUDARuntimeError, match="cudaErrorInvalidDevice"):
        with cp.cuda.Device(2):
            pass
    assert cp.cuda.Device().id == 0


@needs_cxx
def test_kernel_arguments_on_another_device_fault(cp):
    """RawKernel launches check no device (cupy/cuda/function.pyx:92-104 (v14.2.0)): a kernel reading
    another GPU's memory without peer access faults with cudaErrorIllegalAddress (asynchronously, on a
    GPU; at launch here)."""
    k = cp.RawModule(code=SCALE, options=("--std=c++17",)).get_function("scale_f32")
    with cp.cuda.Device(1):
        x = _arr(cp, 4)
    y = cp.empty(4, cp.float32)
    with pytest.raises(fc.CUDARuntimeError, match="cudaErrorIllegalAddress"):
        k((1,), (32,), (x, y, np.int64(4), np.float32(2)))


# -------------------------------------------------------------------- RawModule / RawKernel

def test_rawmodule_parameters_are_keyword_only_and_typed(cp):
    """``RawModule.__init__(self, *, str code=None, str path=None, tuple options=(), ...)``:
    cupy/_core/raw.pyx:364-367 (v14.2.0); exactly one of code and path: :368-371 (v14.2.0)."""
    with pytest.raises(TypeError, match=r"Argument 'options' has incorrect type \(expected tuple, got list\)"):
        cp.RawModule(code=SCALE, options=["--std=c++17"])
    with pytest.raises(TypeError, match="positional"):
        cp.RawModule(SCALE)
    with pytest.raises(TypeError, match="expected str, got bytes"):
        cp.RawModule(code=SCALE.encode())
    with pytest.raises(TypeError, match="Exactly one of `code` and `path`"):
        cp.RawModule()


@needs_cxx
def test_rawkernel_launch_arguments_are_checked(cp):
    """``Function.__call__(self, tuple grid, tuple block, args, ...)`` (cupy/cuda/function.pyx:142
    (v14.2.0)); a NumPy array argument must have one element (:65-78); more than 1,024 threads per block
    is beyond the device (cuLaunchKernel: invalid argument); and every launch passes
    ``xcnn.kernels.check_signature`` (a Python int where the kernel takes ``float``, say)."""
    from xcnn.cuda.loader import KernelArgError  # noqa: PLC0415

    k = cp.RawModule(code=SCALE, options=("--std=c++17",)).get_function("scale_f32")
    x, y = _arr(cp, 4), cp.empty(4, cp.float32)
    with pytest.raises(TypeError, match="Argument 'grid' has incorrect type"):
        k([1], (32,), (x, y, np.int64(4), np.float32(2)))
    with pytest.raises(TypeError, match="numpy.ndarray of shape \\(4,\\) as a kernel parameter"):
        k((1,), (32,), (np.ones(4, np.float32), y, np.int64(4), np.float32(2)))
    with pytest.raises(fc.CUDADriverError, match="CUDA_ERROR_INVALID_VALUE"):
        k((1,), (2048,), (x, y, np.int64(4), np.float32(2)))
    with pytest.raises(KernelArgError, match="must be float32, got int"):
        k((1,), (32,), (x, y, np.int64(4), 2))
    with pytest.raises(fc.CUDADriverError, match="named symbol not found"):
        cp.RawModule(code=SCALE).get_function("nope")
    k((0,), (32,), (x, y, np.int64(4), np.float32(2)))  # a zero grid is clamped to 1: cupy/cuda/function.pyx:149-150 (v14.2.0)
    np.testing.assert_array_equal(y.get(), [0, 2, 4, 6])


# -------------------------------------------------------------------- stream capture

@pytest.mark.parametrize("gemm", [
    lambda a: a @ a, lambda a: np.matmul(a, a), lambda a: a.dot(a), lambda a: np.dot(a, a[:, 0]),
    lambda a: np.tensordot(a, a, 1), lambda a: np.inner(a, a), lambda a: np.matmul(a, a, out=a[...]),
    lambda a: np.matmul(a.reshape(1, 3, 3), a.reshape(1, 3, 3)),
])
def test_cublas_is_refused_during_capture(cp, capturing, gemm):
    """cupy_backends/cuda/libs/cublas.pyx:642-651 (v14.2.0): ``setStream`` raises while the stream
    captures, and every cuBLAS wrapper calls it first; float products of non-empty operands reach cuBLAS
    (cupy/_core/_routines_linalg.pyx:557-575, :615-630 (v14.2.0))."""
    a = cp.zeros((3, 3), cp.float32)
    with pytest.raises(NotImplementedError, match="calling cuBLAS API during stream capture is currently unsupported"):
        gemm(a)


def test_products_that_skip_cublas_are_captured(cp, capturing):
    """Integer products use CuPy's own kernel (cupy/_core/_routines_linalg.pyx:615-621 (v14.2.0)), a
    one-element result a reduction (:566-575), a scalar operand a multiply (:490-491)."""
    i = cp.zeros((3, 3), cp.int64)
    v = cp.zeros(3, cp.float32)
    i @ i
    v @ v
    cp.dot(v, cp.zeros((), cp.float32))


@pytest.mark.parametrize("read", [
    lambda a: a.get(), lambda a: a.item(), lambda a: float(a), lambda a: int(a), lambda a: bool(a),
    lambda a: repr(a), lambda a: a.tolist(), lambda a: cp_asnumpy(a),
])
def test_host_reads_are_refused_during_capture(cp, capturing, read):
    """cupy/cuda/memory.pyx:715-719 (v14.2.0): D2H copies on a capturing stream; ``float()`` etc. are
    ``.get()`` (cupy/_core/core.pyx:2048-2052 (v14.2.0))."""
    a = cp.zeros((), cp.float32)
    with pytest.raises(RuntimeError, match="the current stream is capturing, so D2H transfers are disallowed"):
        read(a)


def cp_asnumpy(a):
    return fc._MODULE.asnumpy(a)


def test_empty_array_get_needs_no_copy_during_capture(cp, capturing):
    """An empty array returns without a copy: cupy/_core/core.pyx:2170-2171 (v14.2.0)."""
    assert cp.zeros(0).get().shape == (0,)


@pytest.mark.parametrize("upload", [
    lambda cp, a: cp.asarray(np.ones(3)), lambda cp, a: cp.array([1, 2]), lambda cp, a: cp.take(a, [0, 1]),
    lambda cp, a: a.__setitem__(slice(None), np.ones(3, np.float32)), lambda cp, a: a.set(np.ones(3, np.float32)),
])
def test_host_to_device_copies_are_refused_during_capture(cp, upload):
    """cupy/cuda/memory.pyx:617-621 (v14.2.0); ``take`` uploads host indices
    (cupy/_core/_routines_indexing.pyx:858 (v14.2.0))."""
    a = cp.zeros(3, cp.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        with pytest.raises(RuntimeError, match="the current stream is capturing, so H2D transfers are disallowed"):
            upload(cp, a)
        s.end_capture()


@pytest.mark.parametrize("sync", [lambda cp, s: s.synchronize(), lambda cp, s: cp.cuda.Device().synchronize(),
                                  lambda cp, s: cp.cuda.runtime.deviceSynchronize()])
def test_synchronising_a_capture_is_refused_and_invalidates_it(cp, sync):
    """"It is invalid to synchronize ... a stream which is being captured ... or a device" (CUDA C++
    Programming Guide, CUDA Graphs, prohibited operations): cudaErrorStreamCaptureUnsupported, and the
    capture is invalidated (cudaErrorStreamCaptureInvalidated at its end)."""
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        with pytest.raises(fc.CUDARuntimeError, match="cudaErrorStreamCaptureUnsupported"):
            sync(cp, s)
        with pytest.raises(fc.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated"):
            s.end_capture()


def test_synchronising_a_captured_event_is_refused(cp, capturing):
    """A captured event cannot be synchronised (CUDA: cudaErrorCapturedEvent); one recorded before the
    capture can."""
    before = cp.cuda.Event()
    before.record(cp.cuda.Stream())
    before.synchronize()
    ev = capturing.record()
    with pytest.raises(fc.CUDARuntimeError, match="cudaErrorCapturedEvent"):
        ev.synchronize()


@pytest.mark.parametrize("op", [lambda a: a[a > 0], lambda a: a.__setitem__(a > 0, 1), lambda a: a.nonzero(),
                                lambda a: np.nonzero(a), lambda a: fc._MODULE.where(a > 0)])
def test_data_dependent_shapes_are_refused_during_capture(cp, capturing, op):
    """The number of True entries is read on the host: boolean masks at
    cupy/_core/_routines_indexing.pyx:802 (v14.2.0), ``nonzero`` at :123 (v14.2.0)."""
    a = cp.zeros(4, cp.float32)
    with pytest.raises(RuntimeError, match="D2H transfers are disallowed"):
        op(a)


def test_capture_on_the_legacy_stream_is_refused(cp):
    """cupy/cuda/stream.pyx:393-394 (v14.2.0)."""
    with pytest.raises(RuntimeError, match=r"cannot capture on the default \(legacy\) stream"):
        cp.cuda.Stream.null.begin_capture()


def test_legacy_stream_work_while_a_blocking_stream_captures_is_refused(cp):
    """The legacy stream would implicitly wait on a capturing blocking stream
    (cudaErrorStreamCaptureImplicit; CUDA C++ Programming Guide, CUDA Graphs); a non-blocking one is fine."""
    blocking = cp.cuda.Stream()
    blocking.begin_capture()
    with pytest.raises(fc.CUDARuntimeError, match="cudaErrorStreamCaptureImplicit"):
        cp.zeros(3)
    with pytest.raises(fc.CUDARuntimeError, match="cudaErrorStreamCaptureInvalidated"):
        blocking.end_capture()
    quiet = cp.cuda.Stream(non_blocking=True)
    quiet.begin_capture()
    cp.zeros(3)  # on the legacy stream, not captured
    assert quiet.end_capture().fake_ops == []


def test_capture_unsupported_switch(cp):
    """Where a stream cannot be captured CUDA answers cudaErrorStreamCaptureUnsupported at the start."""
    fc.world().capture_unsupported = True
    with pytest.raises(fc.CUDARuntimeError, match="cudaErrorStreamCaptureUnsupported"):
        cp.cuda.Stream(non_blocking=True).begin_capture()


def test_fresh_memory_in_a_strict_capture_mode_is_refused(cp):
    """CuPy captures in relaxed mode (cupy/cuda/stream.pyx:395-403 (v14.2.0)) because the pool may
    cudaMalloc during a capture; the global mode refuses such calls."""
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture(mode=cp.cuda.runtime.streamCaptureModeGlobal)
        with pytest.raises(fc.CUDARuntimeError, match="cudaErrorStreamCaptureUnsupported"):
            cp.empty(1000)
        with pytest.raises(fc.CUDARuntimeError, match="Invalidated"):
            s.end_capture()
        s.begin_capture()
        cp.empty(1000)  # relaxed: the pool may grow
        s.end_capture()


def test_graphs_come_only_from_capture(cp):
    """cupy/cuda/graph.pyx:31-34 (v14.2.0)."""
    with pytest.raises(NotImplementedError, match="must be created via stream capture"):
        cp.cuda.Graph()


def test_set_allocator_inside_using_allocator_is_refused(cp):
    """cupy/cuda/memory.pyx:920-922 (v14.2.0)."""
    with cp.cuda.using_allocator(cp.cuda.MemoryPool().malloc):
        with pytest.raises(ValueError, match="Can't change the global allocator inside `using_allocator`"):
            cp.cuda.set_allocator(cp.cuda.MemoryPool().malloc)


def test_take_checks_its_output(cp):
    """cupy/_core/_routines_indexing.pyx:884-887 (v14.2.0)."""
    a = _arr(cp, 4, 2)
    with pytest.raises(TypeError, match="Output dtype mismatch"):
        cp.take(a, cp.arange(2), axis=0, out=cp.empty((2, 2), cp.float64))
    with pytest.raises(ValueError, match="Output shape mismatch"):
        cp.take(a, cp.arange(2), axis=0, out=cp.empty((3, 2), cp.float32))


# ====================================================================================== happy paths

def test_arrays_know_their_device_memory_and_layout(cp):
    a = _arr(cp, 3, 4)
    b = cp.empty((3, 4), cp.float32)
    assert a.device == cp.cuda.Device(0) and a.device.id == 0
    assert a.data.ptr != b.data.ptr and a.data.ptr == a.data.ptr
    assert a[1].data.ptr == a.data.ptr + 16 and a[:, 1].data.ptr == a.data.ptr + 4
    assert a.flags.c_contiguous and not a.T.flags.c_contiguous and a.T.flags.f_contiguous
    assert (a.shape, a.strides, a.size, a.ndim, a.dtype) == ((3, 4), (16, 4), 12, 2, np.float32)
    assert a.T.shape == (4, 3) and a.reshape(4, 3).data.ptr == a.data.ptr
    assert a.transpose(1, 0).shape == (4, 3) and a.astype(np.float64).dtype == np.float64
    assert a.astype(np.float32, copy=False) is a


def test_reductions_return_0d_device_arrays_and_host_reads_work(cp):
    a = _arr(cp, 2, 3)
    s, m, mx, am = a.sum(), a.mean(), a.max(), a.argmax()
    assert all(isinstance(v, fc.ndarray) and v.shape == () for v in (s, m, mx, am))
    assert float(s) == 15.0 and m.item() == 2.5 and int(mx) == 5 and int(am) == 5
    np.testing.assert_array_equal(a.argmax(axis=1).get(), [2, 2])
    np.testing.assert_array_equal(a.sum(axis=0).get(), [3, 5, 7])
    assert bool(a[0, 1]) and not bool(a[0, 0])


def test_numpy_functions_dispatch_to_the_double(cp):
    """``__array_function__``/``__array_ufunc__`` as in CuPy: results stay on the device."""
    a = _arr(cp, 2, 3)
    for r in (np.sum(a), np.exp(a), np.concatenate([a, a]), np.maximum(a, 1), a + 1, 2.0 * a, np.sqrt(a),
              np.tanh(a), np.log(a + 1), np.where(a > 2, a, 0), np.take(a, cp.arange(1), axis=0)):
        assert isinstance(r, fc.ndarray)
    assert np.may_share_memory(a, a[0]) and not np.may_share_memory(a, a.copy())
    assert np.result_type(a, np.float64) == np.float64 and np.shape(a) == (2, 3)
    np.testing.assert_allclose(np.exp(a).get(), np.exp(np.arange(6).reshape(2, 3)), rtol=1e-6)


def test_indexing(cp):
    """Basic indexing makes views; integer arrays gather and wrap around out-of-range indices as CuPy
    does (cupy/_core/core.pyx:1843-1844 (v14.2.0)); boolean masks work outside a capture."""
    a = _arr(cp, 4, 2)
    v = a[1:3]
    v[...] = -1
    np.testing.assert_array_equal(a.get()[1:3], -1)
    np.testing.assert_array_equal(a[cp.asarray([0, 5])].get(), [[0, 1], [-1, -1]])  # 5 wraps to 1
    np.testing.assert_array_equal(a[a < 0].get(), [-1] * 4)
    a[cp.arange(2), cp.asarray([1, 0])] = 9
    assert a[0, 1].item() == 9 and a[1, 0].item() == 9


def test_memory_pools_tag_arrays_and_reuse_freed_blocks(cp):
    """Per-stream free lists (cupy/cuda/memory.pyx:1268-1291, :1352-1372 (v14.2.0)): a freed block is the
    next same-size allocation on that stream; ``using_allocator`` picks the pool (cupy/cuda/__init__.py:
    161-182 (v14.2.0))."""
    default = cp.get_default_memory_pool()
    a = cp.zeros(100, cp.float32)
    assert fc.pool_of(a) is default and default.used_bytes() == 512
    ptr = a.data.ptr
    del a
    b = cp.empty(100, cp.float32)
    assert b.data.ptr == ptr and np.isnan(b.get()).sum() == 0  # the old block, old contents (zeros)
    private = cp.cuda.MemoryPool()
    with cp.cuda.using_allocator(private.malloc):
        c = cp.empty(100, cp.float32)
    assert fc.pool_of(c) is private and c.data.ptr != ptr
    assert np.isnan(c.get()).all()  # fresh device memory holds no zeros you can rely on
    s = cp.cuda.Stream()
    del b
    with s:
        assert cp.empty(100, cp.float32).data.ptr != ptr  # another stream's arena


def test_device_contexts_nest_and_are_thread_local(cp):
    seen = []
    with cp.cuda.Device(1):
        assert cp.cuda.Device().id == 1 and cp.zeros(1).device.id == 1
        with cp.cuda.Device(0):
            assert cp.cuda.runtime.getDevice() == 0
            t = threading.Thread(target=lambda: seen.append(cp.cuda.Device().id))
            t.start()
            t.join()
        assert cp.cuda.Device().id == 1
    assert cp.cuda.Device().id == 0 and seen == [0]


@needs_cxx
def test_modules_compile_per_device_with_cupys_options(cp):
    """Each device compiles its own module (cupy/_core/raw.pyx:540-541 (v14.2.0)); a kernel fetched with
    device 0 current and launched on device 1 is compiled for device 1 (cupy/_core/raw.pyx:110-131
    (v14.2.0)); CuPy appends -ftz=true after the caller's options (cupy/cuda/compiler.py:667 (v14.2.0))."""
    mod = cp.RawModule(code=SCALE, options=("--std=c++17",))
    k = mod.get_function("scale_f32")
    assert fc.world().compiles == [(0, fc._source_name(SCALE), ("--std=c++17", "-ftz=true"))]
    mod.get_function("scale_f32")
    assert len(fc.world().compiles) == 1
    with cp.cuda.Device(1):
        x, y = _arr(cp, 5), cp.empty(5, cp.float32)
        k((1,), (2,), (x, y, np.int64(5), np.float32(3)))
        np.testing.assert_array_equal(y.get(), [0, 3, 6, 9, 12])
    assert [c[0] for c in fc.world().compiles] == [0, 1]
    assert fc.world().launches[-1] == (1, "scale_f32", 1, 2)


@needs_cxx
def test_graph_replay_equals_eager_and_capture_executes_nothing(cp):
    """Capture records without executing (arrays made during it have their shape, not their values);
    each replay reruns the work on the recorded memory, with Python scalars as captured and device
    values (a 0-d learning rate here) as they are at the replay."""
    k = cp.RawModule(code=SCALE, options=("--std=c++17",)).get_function("scale_f32")
    x = _arr(cp, 6)
    lr = cp.asarray(np.float32(0.5))
    acc = cp.zeros((), cp.float32)
    idx = cp.arange(0, 6, 2)

    def body():
        y = cp.empty_like(x)
        k((1,), (4,), (x, y, np.int64(6), np.float32(2)))
        g = cp.take(y, idx) * lr
        x[idx] -= g
        acc[...] += g.sum()
        return y

    ref_x, ref_acc = x.get(), acc.get()
    ref = []
    for _ in range(2):  # eager reference on copies
        y = 2 * ref_x
        g = y[::2] * 0.5
        ref_x[::2] -= g
        ref_acc = ref_acc + g.sum()
        ref.append((ref_x.copy(), ref_acc))
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        before = x.get()
        s.begin_capture()
        y = body()
        graph = s.end_capture()
        np.testing.assert_array_equal(x.get(), before)  # nothing ran
        assert acc.item() == 0 and np.isnan(y.get()).all()
        for want_x, want_acc in ref:
            graph.launch(stream=s)
            np.testing.assert_array_equal(x.get(), want_x)
            assert acc.item() == pytest.approx(want_acc)
    assert graph.fake_launches == 2 and graph.fake_ops[0] == "kernel:scale_f32"
    assert fc.block_of(y) in graph.fake_blocks and fc.block_of(x) in graph.fake_blocks


def test_a_graph_writing_freed_memory_corrupts_its_next_owner(cp):
    """Why xcnn's graph step allocates from a private pool: after the arrays of a capture die, CuPy's pool
    hands their blocks to the next allocation of that size and stream, which every replay then
    overwrites. From a private pool nobody else allocates, so nothing is handed out."""
    src = cp.ones(64, cp.float32)
    s = cp.cuda.Stream(non_blocking=True)

    def capture():
        s.begin_capture()
        t = src * 3  # a temporary of the graph
        del t
        return s.end_capture()

    with s:
        graph = capture()
        victim = cp.zeros(64, cp.float32)  # gets the temporary's block
        graph.launch()
        assert victim.get()[0] == 3.0  # corrupted
        pool = cp.cuda.MemoryPool()
        with cp.cuda.using_allocator(pool.malloc):
            graph = capture()
        safe = cp.zeros(64, cp.float32)
        graph.launch()
        assert safe.get()[0] == 0.0 and all(fc.pool_of(b) is pool for b in graph.fake_blocks if b is not fc.block_of(src))


def test_streams_events_and_graph_upload(cp):
    s = cp.cuda.Stream(non_blocking=True)
    caller = cp.cuda.get_current_stream()
    s.wait_event(caller.record())
    with s:
        assert cp.cuda.get_current_stream() is s and s.is_non_blocking
        a = cp.zeros(2)
        s.begin_capture()
        a += 1
        g = s.end_capture()
        g.upload(stream=s)
        g.launch()
    caller.wait_event(s.record())
    s.synchronize()
    assert a.get().tolist() == [1.0, 1.0] and g.fake_uploads == 1


def test_graph_launch_inside_a_capture_becomes_a_node(cp):
    a = cp.zeros(1)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        a += 1
        inner = s.end_capture()
        s.begin_capture()
        inner.launch()
        inner.launch()
        outer = s.end_capture()
        outer.launch()
    assert a.item() == 2.0 and outer.fake_ops == ["graph", "graph"]


def test_device_random_generator(cp):
    g = cp.random.default_rng(3)
    x = g.standard_normal((2, 3), dtype=np.float32)
    assert isinstance(x, fc.ndarray) and x.dtype == np.float32 and x.shape == (2, 3)
    assert not np.array_equal(x.get(), g.standard_normal((2, 3), dtype=np.float32).get())
    np.testing.assert_array_equal(cp.random.default_rng(3).standard_normal((2, 3), dtype=np.float32).get(), x.get())


def test_install_puts_the_double_in_cupys_place(monkeypatch):
    from xcnn import backend  # noqa: PLC0415

    with fc.install(monkeypatch, devices=3) as cp:
        assert backend.cupy_or_none() is cp and backend.gpu_available(2) and not backend.gpu_available(3)
        d = backend.get_device("cuda:2")
        a = d.asarray(np.ones(3))
        assert backend.is_device_array(a) and backend.device_of(a) == d
        np.testing.assert_array_equal(backend.to_host(a), np.ones(3))
