"""Run an ONNX model in ONNX Runtime (CPU) and measure how far its outputs are from an xcnn network's.

The measure is relative to each sample's largest logit: ``max_ij |ort_ij - xcnn_ij| / max_j |xcnn_ij|``.
Element-wise relative error means nothing for a logit near zero, whose rounding error is set by the
size of the terms summed into it, not by its own size; the row's largest logit is that size.
Float32 agreement is expected within 1e-5 (float32's epsilon is 1.2e-7; convolutions and GEMMs
that sum a few hundred terms in another order differ by a few epsilons of the largest term).
"""
from __future__ import annotations

import numpy as np

from ..backend import to_host
from ..extras import require

__all__ = ["TOLERANCE", "run_onnxruntime", "relative_error", "compare"]

#: agreement expected between ONNX Runtime and xcnn, per dtype, relative to each row's largest logit
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def run_onnxruntime(model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Outputs of the ONNX model ``model`` (path, bytes or ModelProto) for ``x``, in batches."""
    ort = require("onnxruntime", "onnx", "checking against ONNX Runtime")
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, (bytes, bytearray)):
        model = str(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: its warnings about unused initializers are not ours to fix
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outs)


def relative_error(actual, reference) -> float:
    """``max |actual - reference|`` per row, over that row's largest ``|reference|``; the worst row."""
    a = np.asarray(actual, np.float64).reshape(len(actual), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    scale = np.maximum(np.abs(r).max(axis=1), np.finfo(np.float64).tiny)
    return float((np.abs(a - r).max(axis=1) / scale).max())


def compare(model, net, input_shape, *, n: int = 64, seed: int = 0) -> dict:
    """Run ``n`` random inputs in [-0.5, 0.5] (xcnn's normalised pixel range) through ONNX Runtime and
    ``net``; returns ``{"error", "tolerance", "ok", "n", "same_argmax"}``."""
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, (n, *input_shape)).astype(net.dtype)
    ours = to_host(net.predict(net.device.asarray(x)))
    theirs = run_onnxruntime(model, x)
    err = relative_error(theirs, ours)
    tol = TOLERANCE[np.dtype(net.dtype)]
    same = bool(ours.ndim != 2 or (ours.argmax(1) == theirs.argmax(1)).all())
    return {"error": err, "tolerance": tol, "ok": err <= tol, "n": n, "same_argmax": same}
