"""GPU implementations of the ops (called by :mod:`xcnn.ops` with CuPy arrays whose device is
current, inputs already validated): our kernels for im2col/col2im, a convolution's bias and NCHW
layout, pooling, ReLU's backward, softmax cross-entropy and the SGD update; the GEMMs through
:mod:`.gemm` (cuBLAS, or our own kernels where a CUDA graph is captured). No op synchronises with
the host.

Shapes: x (N, C, H, W); col (C*KH*KW, N*OH*OW); pooled y, argmax (N, C, OH, OW); ``g`` is the
geometry ``(KH, KW, SH, SW, PH, PW, OH, OW)``.
"""
from __future__ import annotations

import numpy as np

from . import gemm
from .launch import BLOCK, MAX_GRID, cupy, ints, launch, suffix

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "max_pool2d_forward", "max_pool2d_backward", "relu_forward", "relu_backward", "linear_forward",
           "linear_backward", "softmax_xent", "sgd_update", "sgd_table_key"]


def _geom(op, N, C, H, W, g):
    KH, KW, SH, SW, PH, PW, OH, OW = g
    return ints(op, N=N, C=C, H=H, W=W, KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW, OH=OH, OW=OW)


#: Largest element count of a launch whose index arithmetic may be 32-bit: an index, plus one grid's
#: stride of the grid-stride loop, must stay below 2^31.
INDEX32_LIMIT = 2**31 - 1 - MAX_GRID * BLOCK


def _run(op, file, kernel, inputs, outputs, geom, index32=True):
    """Allocate ``outputs`` (``(shape, dtype)`` pairs), launch ``file:kernel_<f32|f64>`` with
    ``(*inputs, *outputs, total, *geom)`` -- one thread per element of the first output, the argument
    order all these kernels share -- and return the outputs. The ``_i32`` twin runs when every array
    of the launch is small enough for 32-bit indices (kernels' own arithmetic; same results)."""
    cp = cupy()
    sfx = suffix(op, inputs[0])
    outs = [cp.empty(shape, dtype=dtype) for shape, dtype in outputs]
    total = outs[0].size
    if index32 and max(a.size for a in (*inputs, *outs)) <= INDEX32_LIMIT:
        sfx = "i32_" + sfx
    launch(file, f"{kernel}_{sfx}", total, (*inputs, *outs, np.int64(total), *geom))
    return outs


def im2col(x, g, ws=None):
    """Columns ``(C*KH*KW, N*OH*OW)`` of ``x (N, C, H, W)``."""
    x = cupy().ascontiguousarray(x)
    N, C, H, W = x.shape
    KH, KW, _, _, _, _, OH, OW = g
    (col,) = _run("im2col", "im2col.cu", "im2col", (x,), [((C * KH * KW, N * OH * OW), x.dtype)],
                  _geom("im2col", N, C, H, W, g))
    return col


def col2im(col, x_shape, g, ws=None):
    """Fold ``col`` back to ``x_shape``, summing overlaps (a gather: one thread per image element)."""
    N, C, H, W = x_shape
    (dx,) = _run("col2im", "im2col.cu", "col2im", (cupy().ascontiguousarray(col),), [((N, C, H, W), col.dtype)],
                 _geom("col2im", N, C, H, W, g))
    return dx


def _conv_output(y2, bias, N, OH, OW):
    """``(N, O, OH, OW)`` from a convolution GEMM's ``y2 (O, N*OH*OW)`` plus ``bias (O,)``, in one pass."""
    O = y2.shape[0]
    (y,) = _run("conv_output", "im2col.cu", "conv_output", (y2, cupy().ascontiguousarray(bias)),
                [((N, O, OH, OW), y2.dtype)], ints("conv_output", N=N, O=O, P=OH * OW))
    return y


def conv2d_forward(x, weight, bias, g, ws=None):
    """``(y, col)``: im2col, one GEMM for the whole batch, then bias and NCHW layout in one kernel."""
    cp = cupy()
    N = x.shape[0]
    O = weight.shape[0]
    OH, OW = g[6], g[7]
    col = im2col(x, g)
    y2 = gemm.matmul(weight.reshape(O, -1), col)  # (O, N*OH*OW): one GEMM for the whole batch
    if bias is not None:
        return _conv_output(y2, bias, N, OH, OW), col
    return cp.ascontiguousarray(y2.reshape(O, N, OH, OW).transpose(1, 0, 2, 3)), col


def conv2d_backward(dy, col, x_shape, weight, g, need_dx, need_bias, ws=None, dw_out=None, db_out=None):
    """``(dx or None, dweight, dbias or None)``; ``dw_out``/``db_out`` (a layer's gradient arrays, C-contiguous,
    of dy's dtype) receive the GEMM and the sum directly, saving two copy kernels."""
    O = weight.shape[0]
    dy2 = dy.transpose(1, 0, 2, 3).reshape(O, -1)  # a copy kernel when dy is NCHW
    dw = gemm.matmul(dy2, col, trans_b=True, out=None if dw_out is None else dw_out.reshape(O, -1))
    dw = dw_out if dw_out is not None else dw.reshape(weight.shape)
    db = None
    if need_bias:
        db = dy2.sum(axis=1, out=db_out) if db_out is not None else dy2.sum(axis=1)
    dx = col2im(gemm.matmul(weight.reshape(O, -1), dy2, trans_a=True), x_shape, g) if need_dx else None
    return dx, dw, db


def avg_pool2d_forward(x, g, ws=None):
    """Average pooling ``(N, C, H, W) -> (N, C, OH, OW)``, divisor KH*KW."""
    x = cupy().ascontiguousarray(x)
    N, C, H, W = x.shape
    (y,) = _run("avg_pool2d_forward", "pool.cu", "avg_pool_fwd", (x,), [((N, C, g[6], g[7]), x.dtype)],
                _geom("avg_pool2d_forward", N, C, H, W, g))
    return y


def avg_pool2d_backward(dy, x_shape, g, ws=None):
    N, C, H, W = x_shape
    (dx,) = _run("avg_pool2d_backward", "pool.cu", "avg_pool_bwd", (cupy().ascontiguousarray(dy),),
                 [((N, C, H, W), dy.dtype)], _geom("avg_pool2d_backward", N, C, H, W, g))
    return dx


def max_pool2d_forward(x, g, ws=None):
    """``(y, argmax)``, both ``(N, C, OH, OW)``; argmax int32 window offsets."""
    x = cupy().ascontiguousarray(x)
    N, C, H, W = x.shape
    shape = (N, C, g[6], g[7])
    y, argmax = _run("max_pool2d_forward", "pool.cu", "max_pool_fwd", (x,), [(shape, x.dtype), (shape, np.int32)],
                     _geom("max_pool2d_forward", N, C, H, W, g))
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape, g, ws=None):
    cp = cupy()
    N, C, H, W = x_shape
    (dx,) = _run("max_pool2d_backward", "pool.cu", "max_pool_bwd",
                 (cp.ascontiguousarray(dy), cp.ascontiguousarray(argmax)), [((N, C, H, W), dy.dtype)],
                 _geom("max_pool2d_backward", N, C, H, W, g))
    return dx


def relu_forward(x):
    return cupy().maximum(x, 0)


def relu_backward(dy, y):
    """``dy * (y > 0)`` in one launch (a product, so NaN/inf in dy propagate as on the CPU)."""
    cp = cupy()
    (dx,) = _run("relu_backward", "activation.cu", "relu_bwd", (cp.ascontiguousarray(dy), cp.ascontiguousarray(y)),
                 [(y.shape, y.dtype)], (), index32=False)  # no index arithmetic to narrow
    return dx


def linear_forward(x, weight, bias):
    return gemm.matmul(x, weight, trans_b=True, bias=bias)


def linear_backward(dy, x, weight, dw_out, db_out, need_dx):
    gemm.matmul(dy, x, trans_a=True, out=dw_out)
    if db_out is not None:
        dy.sum(axis=0, out=db_out)
    return gemm.matmul(dy, weight) if need_dx else None


def softmax_xent(logits, labels):
    """``(loss_rows (N,), grad (N, K))`` of softmax cross-entropy against integer ``labels (N,)`` in one
    launch: ``loss_rows[i] = logsumexp(z_i) - z_i[label_i]``, ``grad = (softmax(z) - onehot) / N``. A
    label outside 0..K-1 gives a NaN row (never a stray read)."""
    cp = cupy()
    logits = cp.ascontiguousarray(logits)
    sfx = suffix("softmax_xent", logits)
    N, K = logits.shape
    (k,) = ints("softmax_xent", K=K)
    labels = cp.ascontiguousarray(labels, dtype=np.int64)
    loss_rows = cp.empty(N, dtype=logits.dtype)
    grad = cp.empty((N, K), dtype=logits.dtype)
    launch("loss.cu", f"softmax_xent_{sfx}", N, (logits, labels, loss_rows, grad, np.int64(N), k))
    return loss_rows, grad


# ------------------------------------------------------------------------------------------------- SGD
def _address(a) -> int:
    return int(a.data.ptr)


def sgd_table_key(params, grads, velocities) -> tuple:
    """``((param, grad, velocity addresses, size), ...)``: what the fused update's table encodes; the
    table stays valid while this key is unchanged."""
    return tuple((_address(p), _address(g), _address(v), int(p.size)) for p, g, v in zip(params, grads, velocities))


def _sgd_table(key):
    cp = cupy()
    ptrs = np.array([a for entry in key for a in entry[:3]], dtype=np.int64)
    offsets = np.zeros(len(key) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([entry[3] for entry in key])
    return cp.asarray(ptrs), cp.asarray(offsets), int(offsets[-1])


def device_hyper(state, like, lr, momentum, weight_decay):
    """``(lr, momentum, weight_decay)`` as a ``(3,)`` array of ``like``'s dtype on its device, which the
    update kernels read. Made once; when a value changes (a learning-rate schedule) only that entry is
    rewritten, by a tiny device-side fill: no host synchronisation, and a captured CUDA graph sees the
    new value on its next replay."""
    vals = (lr, momentum, weight_decay)
    h = state.get("hyper")
    if h is None or h.dtype != like.dtype or h.device != like.device:
        h = state["hyper"] = cupy().asarray(np.array(vals, dtype=like.dtype))
        state["hyper_vals"] = vals
    elif vals != state["hyper_vals"]:
        for i, (new, old) in enumerate(zip(vals, state["hyper_vals"])):
            if new != old:
                h[i] = new
        state["hyper_vals"] = vals
    return h


def sgd_update(params, grads, velocities, lr, momentum, weight_decay, state):
    """In place: ``v = v*momentum + g (+ p*weight_decay); p -= v*lr``, bit-identical to the CPU update.
    One launch for every tensor when they share a dtype and are C-contiguous (kernels/optim.cu,
    through a table of the tensors' addresses rebuilt only when an array is replaced), else one
    launch per tensor. Hyper-parameters are read on the device (graph-replay safe)."""
    arrays = [a for t in zip(params, grads, velocities) for a in t]
    dt = params[0].dtype
    if all(a.dtype == dt and a.flags.c_contiguous for a in arrays):
        key = sgd_table_key(params, grads, velocities)
        table = state.get("table")
        if table is None or table[0] != key:
            if len({entry[0] for entry in key}) != len(key):  # two entries updating one tensor would race
                raise ValueError("sgd_update: a parameter appears twice (tied weights); the fused update "
                                 "would race on it — pass each tensor once")
            table = state["table"] = (key, *_sgd_table(key))
        _, ptrs, offsets, total = table
        hyper = device_hyper(state, params[0], lr, momentum, weight_decay)
        (t,) = ints("sgd_update_multi", tensors=len(key))
        launch("optim.cu", f"sgd_update_multi_{suffix('sgd_update', params[0])}", total,
               (ptrs, offsets, t, np.int64(total), hyper))
        return
    cp = cupy()
    for p, g, v in zip(params, grads, velocities):  # mixed dtypes or a strided tensor: one launch each
        if not (p.flags.c_contiguous and v.flags.c_contiguous):
            raise ValueError("sgd_update: parameters and velocities must be C-contiguous on the GPU")
        hyper = device_hyper(state.setdefault(str(p.dtype), {}), p, lr, momentum, weight_decay)
        launch("optim.cu", f"sgd_update_{suffix('sgd_update', p)}", p.size,
               (p, cp.ascontiguousarray(g, dtype=p.dtype), v, np.int64(p.size), hyper))
