"""Run the double's rules as scenarios on real CuPy (on a GPU) and on the double, and compare.

The double is only as good as its agreement with CuPy. On a machine with a GPU and cupy-cuda13x 14.2.0:

    python3 tests/doubles/conformance.py --real   > real.json     # needs a GPU (two for the *_2gpu rows)
    python3 tests/doubles/conformance.py --double > double.json   # anywhere (the kernel rows need g++)
    python3 tests/doubles/conformance.py --compare real.json double.json

Each scenario prints ``ok: <value>`` or the exception's type and the start of its message (capture
scenarios: the body's outcome and ``end_capture``'s); ``--compare`` lists the scenarios whose first 60
characters differ -- a different exception type, value or message start (some messages differ only
cosmetically, e.g. Python's wording of a positional-argument error; read the listed pairs).
Expected differences: ``peer_access_2gpu`` where the GPUs have peer access (CuPy then warns and computes;
the double models GPUs without it), and ``kernel_other_device_2gpu`` (a fault CUDA reports later,
at the next synchronisation, not at the launch).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SCALE = r'''
extern "C" __global__ void scale_f32(const float* __restrict__ x, float* __restrict__ y, long long total, float a) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        y[i] = a * x[i];
}
'''

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def _outcome(fn):
    try:
        return f"ok: {fn()}"
    except Exception as exc:  # noqa: BLE001 - the outcome is the point
        return f"{type(exc).__name__}: {exc}"[:100]


def _captured(cp, body):
    """Run ``body(cp)`` inside a capture on a fresh non-blocking stream made current, always end the
    capture, and report both outcomes."""
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        first = _outcome(lambda: body(cp))
        end = _outcome(lambda: type(s.end_capture()).__name__)
    return f"body {first} || end_capture {end}"


@scenario
def implicit_conversion(cp):
    return np.asarray(cp.ones(3))


@scenario
def host_array_in_ufunc(cp):
    return cp.ones(3) + np.ones(3)


@scenario
def numpy_where_keyword(cp):
    a = cp.ones(3)
    return np.add(a, 1, where=a > 0)


@scenario
def numpy_function_dispatch(cp):
    r = np.concatenate([cp.ones(2), cp.zeros(1)])
    return f"{type(r).__module__}.{type(r).__name__} {r.get().tolist()}"


@scenario
def reduction_is_0d_device_array(cp):
    r = cp.arange(4).sum()
    return f"{type(r).__name__} shape={r.shape} {int(r)}"


@scenario
def ascontiguousarray_host(cp):
    return cp.ascontiguousarray(np.ones(3))


@scenario
def capture_cublas_matmul(cp):
    a = cp.ones((8, 8), cp.float32)
    return _captured(cp, lambda cp: (a @ a).shape)


@scenario
def capture_int_matmul(cp):
    a = cp.ones((8, 8), cp.int64)
    return _captured(cp, lambda cp: (a @ a).shape)


@scenario
def capture_vector_dot(cp):
    v = cp.ones(8, cp.float32)
    return _captured(cp, lambda cp: (v @ v).shape)


@scenario
def capture_host_read(cp):
    a = cp.ones(())
    return _captured(cp, lambda cp: float(a))


@scenario
def capture_empty_get(cp):
    a = cp.ones(0)
    return _captured(cp, lambda cp: a.get().shape)


@scenario
def capture_h2d(cp):
    return _captured(cp, lambda cp: cp.asarray(np.ones(3)).shape)


@scenario
def capture_stream_synchronize(cp):
    return _captured(cp, lambda cp: cp.cuda.get_current_stream().synchronize())


@scenario
def capture_device_synchronize(cp):
    return _captured(cp, lambda cp: cp.cuda.Device().synchronize())


@scenario
def capture_captured_event_synchronize(cp):
    return _captured(cp, lambda cp: cp.cuda.get_current_stream().record().synchronize())


@scenario
def capture_boolean_mask(cp):
    a = cp.ones(4)
    return _captured(cp, lambda cp: a[a > 0].shape)


@scenario
def capture_nonzero(cp):
    a = cp.ones(4)
    return _captured(cp, lambda cp: len(cp.nonzero(a)))


@scenario
def capture_legacy_stream(cp):
    cp.cuda.Stream.null.begin_capture()


@scenario
def capture_legacy_work_with_blocking_stream(cp):
    s = cp.cuda.Stream()  # blocking
    s.begin_capture()
    first = _outcome(lambda: cp.zeros(3).shape)  # on the legacy stream, the current one
    end = _outcome(lambda: type(s.end_capture()).__name__)
    return f"body {first} || end_capture {end}"


@scenario
def capture_global_mode_malloc(cp):
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture(mode=cp.cuda.runtime.streamCaptureModeGlobal)
        first = _outcome(lambda: cp.empty(123457 * 1024, cp.uint8).shape)  # a size no pool block has
        end = _outcome(lambda: type(s.end_capture()).__name__)
    return f"body {first} || end_capture {end}"


@scenario
def graph_replay(cp):
    a = cp.zeros(3)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        a += 1
        g = s.end_capture()
        before = a.get().tolist()
        g.launch()
        g.launch()
        s.synchronize()
    return f"before={before} after={a.get().tolist()}"


@scenario
def graph_constructor(cp):
    return cp.cuda.Graph()


@scenario
def pool_reuses_freed_block(cp):
    a = cp.zeros(1000, cp.float32)
    ptr = a.data.ptr
    del a
    return cp.empty(1000, cp.float32).data.ptr == ptr


@scenario
def device_is_hashable(cp):
    return hash(cp.cuda.Device(0))


@scenario
def device_equality(cp):
    return (cp.cuda.Device(0) == cp.cuda.Device(0), cp.cuda.Device(0) != cp.cuda.Device(0))


@scenario
def rawmodule_options_list(cp):
    return cp.RawModule(code=SCALE, options=["--std=c++17"])


@scenario
def rawmodule_positional_code(cp):
    return cp.RawModule(SCALE)


def _kernel(cp):
    return cp.RawModule(code=SCALE, options=("--std=c++17",)).get_function("scale_f32")


@scenario
def rawkernel_grid_list(cp):
    x = cp.ones(4, cp.float32)
    return _kernel(cp)([1], (32,), (x, x, np.int64(4), np.float32(2)))


@scenario
def rawkernel_numpy_array_argument(cp):
    y = cp.ones(4, cp.float32)
    return _kernel(cp)((1,), (32,), (np.ones(4, np.float32), y, np.int64(4), np.float32(2)))


@scenario
def rawkernel_block_too_large(cp):
    x = cp.ones(4, cp.float32)
    return _kernel(cp)((1,), (2048,), (x, x, np.int64(4), np.float32(2)))


@scenario
def rawkernel_missing_name(cp):
    return cp.RawModule(code=SCALE).get_function("nope")


@scenario
def rawkernel_zero_grid(cp):
    x, y = cp.arange(4, dtype=cp.float32), cp.zeros(4, cp.float32)
    _kernel(cp)((0,), (32,), (x, y, np.int64(4), np.float32(2)))
    return y.get().tolist()


def _two(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        raise RuntimeError("SKIP: one GPU")


@scenario
def peer_access_2gpu(cp):
    _two(cp)
    with cp.cuda.Device(1):
        b = cp.ones(3)
    return (b + 1).get().tolist()


@scenario
def stream_other_device_2gpu(cp):
    _two(cp)
    with cp.cuda.Device(1):
        s = cp.cuda.Stream()
    with s:
        return "entered"


@scenario
def event_record_other_device_2gpu(cp):
    _two(cp)
    with cp.cuda.Device(1):
        s = cp.cuda.Stream()
    return s.record()


@scenario
def kernel_other_device_2gpu(cp):
    _two(cp)
    k = _kernel(cp)
    with cp.cuda.Device(1):
        x = cp.ones(4, cp.float32)
    y = cp.zeros(4, cp.float32)
    k((1,), (32,), (x, y, np.int64(4), np.float32(2)))
    cp.cuda.Device().synchronize()
    return y.get().tolist()


def run(cp) -> dict:
    out = {}
    for name, fn in SCENARIOS.items():
        val = _outcome(lambda: fn(cp))
        out[name] = val[4:] if val.startswith("ok: body ") else val
    return out


def main(argv) -> int:
    if argv[:1] == ["--compare"]:
        a, b = (json.loads(Path(p).read_text()) for p in argv[1:3])
        diff = 0
        for name in a:
            x, y = a[name], b.get(name, "(missing)")
            if "SKIP" in x or "SKIP" in y:
                continue
            if x[:60] != y[:60]:
                diff += 1
                print(f"{name}\n  {argv[1]}: {x}\n  {argv[2]}: {y}")
        print(f"{diff} of {len(a)} scenarios differ")
        return 1 if diff else 0
    if argv[:1] == ["--real"]:
        import cupy as cp  # noqa: PLC0415
    elif argv[:1] == ["--double"]:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from doubles import fakecupy  # noqa: PLC0415

        cp = fakecupy.make()
    else:
        print(__doc__)
        return 2
    print(json.dumps(run(cp), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
