"""xcnn.cuda.probe on the CuPy double: every probe runs and reports what the double models -- CuPy
refusing cuBLAS during capture, our GEMMs replayed bit for bit, float32 subnormals flushed (the
emulation compiles *_f32 kernels as CuPy does, with -ftz=true), the loss within a few ulps of libm."""
from __future__ import annotations

from doubles import fakecupy

from xcnn.cuda.probe import probe


def test_probe_reports_what_the_double_models(cuda_emu):
    rep = probe()
    assert rep["cublas_in_capture"].startswith("refused:"), rep["cublas_in_capture"]
    g = rep["gemm_kernels_in_a_graph"]
    assert g == {"captured_and_replayed": True, "replay_equals_eager_bits": True,
                 "max_rel_err_vs_float64": g["max_rel_err_vs_float64"]}, g
    assert g["max_rel_err_vs_float64"] < 1e-5
    assert rep["ftz"] == {"float32_subnormal_mean": 0.0, "float32_flushed": True, "float64_kept": True}
    for dt, ulps in (("float32", 8), ("float64", 8)):
        assert rep["loss_vs_host_libm"][dt]["grad_finite"] is True
        assert rep["loss_vs_host_libm"][dt]["max_loss_ulps"] <= ulps, rep["loss_vs_host_libm"]


def test_a_failing_probe_is_reported_not_raised(cuda_emu):
    fakecupy.world().capture_unsupported = True  # every capture now fails, as on a driver without it
    rep = probe()
    assert "error" in rep["gemm_kernels_in_a_graph"] and "StreamCaptureUnsupported" in rep["gemm_kernels_in_a_graph"]["error"]
    assert rep["ftz"]["float32_flushed"] is True  # the other probes still ran
