"""What a real GPU does where the CuPy double and the emulation can only model it: a few seconds of
facts for ``scripts/gpu_check.py``.

* whether CuPy still refuses cuBLAS while a stream captures (why a graph step uses our GEMMs);
* whether our GEMM kernels capture, replay, and give the emulation's order of the sums (bit for bit
  against an eager launch of the same kernels);
* whether float32 kernels flush subnormals (CuPy appends ``-ftz=true``; the emulation models it);
* how far CUDA's ``expf``/``logf`` take the fused loss from the host's libm, in units in the last place.
"""
from __future__ import annotations

import numpy as np

from . import gemm, ops
from .launch import cupy

__all__ = ["probe"]


def _cublas_in_capture(cp):
    s = cp.cuda.Stream(non_blocking=True)
    a = cp.ones((64, 64), cp.float32)
    with s:
        a @ a
        s.synchronize()
        s.begin_capture()
        try:
            a @ a
            result = "captured (CuPy allowed cuBLAS during capture)"
        except NotImplementedError as exc:
            result = f"refused: {exc}"
        finally:
            try:
                s.end_capture()
            except Exception as exc:  # an invalidated capture: say so
                result += f" (end_capture: {type(exc).__name__}: {exc})"
    return result


def _gemm_graph(cp):
    """Our GEMM (a split-K product and a single pass) captured, replayed, and compared with eager launches."""
    rng = np.random.default_rng(0)
    a = cp.asarray(rng.standard_normal((4, 4 * 784)).astype(np.float32))
    b = cp.asarray(rng.standard_normal((25, 4 * 784)).astype(np.float32))
    x = cp.asarray(rng.standard_normal((256, 300)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((120, 300)).astype(np.float32))
    with gemm.using("kernels"):
        eager = (gemm.matmul(a, b, trans_b=True).get(), gemm.matmul(x, w, trans_b=True).get())
        s = cp.cuda.Stream(non_blocking=True)
        out1, out2 = cp.empty((4, 25), cp.float32), cp.empty((256, 120), cp.float32)
        with s:
            s.begin_capture()
            gemm.matmul(a, b, trans_b=True, out=out1)
            gemm.matmul(x, w, trans_b=True, out=out2)
            graph = s.end_capture()
            graph.upload(stream=s)
            out1.fill(0)
            out2.fill(0)
            graph.launch(stream=s)
            s.synchronize()
    same = bool(np.array_equal(out1.get(), eager[0]) and np.array_equal(out2.get(), eager[1]))
    ref = a.get().astype(np.float64) @ b.get().T.astype(np.float64)
    return {"captured_and_replayed": True, "replay_equals_eager_bits": same,
            "max_rel_err_vs_float64": float(np.abs(out1.get() - ref).max() / np.abs(ref).max())}


def _ftz(cp):
    tiny = np.float32(4e-39)  # subnormal in float32
    g = (2, 2, 2, 2, 0, 0, 1, 1)
    y32 = ops.avg_pool2d_forward(cp.full((1, 1, 2, 2), tiny, cp.float32), g).get()
    y64 = ops.avg_pool2d_forward(cp.full((1, 1, 2, 2), 4e-310, cp.float64), g).get()
    return {"float32_subnormal_mean": float(y32.ravel()[0]), "float32_flushed": bool(y32.ravel()[0] == 0),
            "float64_kept": bool(y64.ravel()[0] != 0)}


def _transcendentals(cp):
    """The fused softmax cross-entropy on the GPU against the same formula on the host, in ulps."""
    rng = np.random.default_rng(1)
    out = {}
    for dt in (np.float32, np.float64):
        z = (rng.standard_normal((256, 10)) * 5).astype(dt)
        y = rng.integers(0, 10, 256)
        rows, grad = (t.get() for t in ops.softmax_xent(cp.asarray(z), cp.asarray(y)))
        z64 = z.astype(np.float64)
        m = z64.max(1)
        lse = m + np.log(np.exp(z64 - m[:, None]).sum(1))
        ref = lse - z64[np.arange(256), y]
        # the loss is a difference of terms of the logits' size: count ulps at that size
        scale = np.maximum(np.abs(lse), np.abs(z64[np.arange(256), y])).astype(dt)
        ulp = np.spacing(np.maximum(scale, dt(1))).astype(np.float64)
        out[np.dtype(dt).name] = {"max_loss_ulps": float(np.max(np.abs(rows.astype(np.float64) - ref) / ulp)),
                                  "grad_finite": bool(np.isfinite(grad).all())}
    return out


def probe() -> dict:
    """Run every check on the current GPU; a failing check is reported, never raised."""
    cp = cupy()
    out = {"cupy": cp.__version__}
    for name, fn in (("cublas_in_capture", _cublas_in_capture), ("gemm_kernels_in_a_graph", _gemm_graph),
                     ("ftz", _ftz), ("loss_vs_host_libm", _transcendentals)):
        try:
            out[name] = fn(cp)
        except Exception as exc:  # one failing check must not hide the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
