"""GPU implementations behind :mod:`xcnn.functional` (called only with CuPy arrays).

Each public op is a thin wrapper over a private ``_op(xp, launch, ...)`` that allocates the
output, builds the kernel's argument tuple and calls ``launch(file, name, total, args)``.
On the GPU ``xp`` is CuPy and ``launch`` starts a ``RawKernel``; the CPU emulation tests pass
NumPy and a launcher that runs the same ``.cu`` files compiled as C++, so they check these
very argument lists. Scalars are explicit NumPy types matching the C signature (``int`` ->
``np.int32``, ``long long`` -> ``np.int64``). No op synchronises with the host.

Shapes: x (N, C, H, W); col (C*KH*KW, N*OH*OW); pooled y, argmax (N, C, OH, OW);
SGD: parameter, gradient and velocity of one shape, hyper (3,) = (lr, momentum, weight_decay);
softmax cross-entropy: logits and gradient (N, K), labels (N,) int64, per-row losses (N,).
"""
from __future__ import annotations

import numpy as np

from . import kernels as _kernels
from .backend import cupy_or_none

__all__ = [
    "BLOCK", "MAX_GRID", "launch_config", "im2col", "col2im", "avg_pool_forward", "avg_pool_backward",
    "max_pool_forward", "max_pool_backward", "conv_output", "relu_backward", "sgd_update", "sgd_table", "sgd_update_multi", "softmax_xent",
]

BLOCK = 256
#: Cap on blocks per launch; the grid-stride loops cover anything beyond it.
MAX_GRID = 65535 * 4

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_I32_MAX = 2**31 - 1


def launch_config(total: int, block: int = BLOCK, max_grid: int = MAX_GRID) -> tuple[int, int]:
    """``(grid, block)`` for ``total`` elements: one thread per element up to ``max_grid`` blocks."""
    return max(1, min(-(-int(total) // block), max_grid)), block


def _gpu_launch(file: str, name: str, total: int, args: tuple) -> None:
    _kernels.check_args(file, name, args)
    grid, block = launch_config(total)
    _kernels.get_kernel(file, name)((grid,), (block,), args)


def _suffix(op: str, a) -> str:
    try:
        return _SUFFIX[np.dtype(a.dtype)]
    except KeyError:
        raise TypeError(f"{op}: CUDA kernels support float32 and float64 only, got {a.dtype}") from None


def _ints(op: str, **vals) -> list:
    """The geometry as ``np.int32`` scalars (the kernels take C ``int``), range-checked
    before anything is allocated."""
    out = []
    for k, v in vals.items():
        v = int(v)
        if not 0 <= v <= _I32_MAX:
            raise ValueError(f"{op}: {k}={v} does not fit the kernels' 32-bit int")
        out.append(np.int32(v))
    return out


def _geom(op, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    return _ints(op, N=N, C=C, H=H, W=W, KH=KH, KW=KW, SH=SH, SW=SW, PH=PH, PW=PW, OH=OH, OW=OW)


def _run(launch, file, name, total, args):
    if total > 0:  # an empty batch launches nothing (a zero-block grid is invalid)
        launch(file, name, int(total), args)


def _image(op, xp, x):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected an NCHW array (N, C, H, W), got shape {tuple(x.shape)}")
    return xp.ascontiguousarray(x)


# ------------------------------------------------------------------ implementations (xp-generic)

def _launch_op(xp, launch, op, file, kernel, inputs, outputs, geom):
    """Allocate ``outputs`` (``(shape, dtype)`` pairs), launch ``file:kernel_<f32|f64>`` with
    ``(*inputs, *outputs, total, *geom)`` -- one thread per element of the first output, the
    argument order all these kernels share -- and return the outputs."""
    sfx = _suffix(op, inputs[0])
    outs = [xp.empty(shape, dtype=dtype) for shape, dtype in outputs]
    total = outs[0].size
    _run(launch, file, f"{kernel}_{sfx}", total, (*inputs, *outs, np.int64(total), *geom))
    return outs


def _im2col(xp, launch, x, KH, KW, SH, SW, PH, PW, OH, OW):
    x = _image("im2col", xp, x)
    N, C, H, W = x.shape
    geom = _geom("im2col", N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    (col,) = _launch_op(xp, launch, "im2col", "im2col.cu", "im2col", (x,),
                              [((C * KH * KW, N * OH * OW), x.dtype)], geom)
    return col


def _col2im(xp, launch, col, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    col = xp.ascontiguousarray(col)
    if tuple(col.shape) != (C * KH * KW, N * OH * OW):
        raise ValueError(f"col2im: expected columns {(C * KH * KW, N * OH * OW)}, got {tuple(col.shape)}")
    geom = _geom("col2im", N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    (dx,) = _launch_op(xp, launch, "col2im", "im2col.cu", "col2im", (col,), [((N, C, H, W), col.dtype)], geom)
    return dx


def _avg_pool_forward(xp, launch, x, KH, KW, SH, SW, PH, PW, OH, OW):
    x = _image("avg_pool_forward", xp, x)
    N, C, H, W = x.shape
    geom = _geom("avg_pool_forward", N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    (y,) = _launch_op(xp, launch, "avg_pool_forward", "pool.cu", "avg_pool_fwd", (x,),
                            [((N, C, OH, OW), x.dtype)], geom)
    return y


def _avg_pool_backward(xp, launch, dy, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    dy = xp.ascontiguousarray(dy)
    if tuple(dy.shape) != (N, C, OH, OW):
        raise ValueError(f"avg_pool_backward: expected dy {(N, C, OH, OW)}, got {tuple(dy.shape)}")
    geom = _geom("avg_pool_backward", N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    (dx,) = _launch_op(xp, launch, "avg_pool_backward", "pool.cu", "avg_pool_bwd", (dy,),
                             [((N, C, H, W), dy.dtype)], geom)
    return dx


def _max_pool_forward(xp, launch, x, KH, KW, SH, SW, PH, PW, OH, OW):
    x = _image("max_pool_forward", xp, x)
    N, C, H, W = x.shape
    geom = _geom("max_pool_forward", N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    y, argmax = _launch_op(xp, launch, "max_pool_forward", "pool.cu", "max_pool_fwd", (x,),
                                 [((N, C, OH, OW), x.dtype), ((N, C, OH, OW), np.int32)], geom)
    return y, argmax


def _max_pool_backward(xp, launch, dy, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    dy = xp.ascontiguousarray(dy)
    if np.dtype(argmax.dtype).kind not in "iu":
        raise TypeError(f"max_pool_backward: argmax must be an integer array, got {argmax.dtype}")
    argmax = xp.ascontiguousarray(argmax, dtype=np.int32)
    if tuple(dy.shape) != (N, C, OH, OW) or tuple(argmax.shape) != (N, C, OH, OW):
        raise ValueError(
            f"max_pool_backward: expected dy and argmax {(N, C, OH, OW)}, got {tuple(dy.shape)} and {tuple(argmax.shape)}"
        )
    geom = _geom("max_pool_backward", N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    (dx,) = _launch_op(xp, launch, "max_pool_backward", "pool.cu", "max_pool_bwd", (dy, argmax),
                             [((N, C, H, W), dy.dtype)], geom)
    return dx


def _sgd_update(xp, launch, p, g, v, hyper):
    """In place: ``v = v*momentum + g (+ p*weight_decay); p -= v*lr`` with ``hyper = (lr, momentum,
    weight_decay)`` read on the device. Every array must be C-contiguous (they are updated in place)."""
    sfx = _suffix("sgd_update", p)
    if not (p.shape == g.shape == v.shape) or tuple(hyper.shape) != (3,):
        raise ValueError(f"sgd_update: parameter {tuple(p.shape)}, gradient {tuple(g.shape)} and velocity "
                         f"{tuple(v.shape)} must share a shape, hyper must be (3,), got {tuple(hyper.shape)}")
    _run(launch, "optim.cu", f"sgd_update_{sfx}", p.size, (p, g, v, np.int64(p.size), hyper))


def _conv_output(xp, launch, y2, bias, N, OH, OW):
    """``(N, O, OH, OW)`` from a convolution GEMM's ``y2 (O, N*OH*OW)`` plus ``bias (O,)``, in one pass."""
    y2 = xp.ascontiguousarray(y2)
    O = y2.shape[0]
    if tuple(y2.shape) != (O, N * OH * OW) or tuple(bias.shape) != (O,) or bias.dtype != y2.dtype:
        raise ValueError(f"conv_output: expected y2 (O, N*OH*OW) = {(O, N * OH * OW)} and bias ({O},) of "
                         f"{y2.dtype}, got {tuple(y2.shape)} and {tuple(bias.shape)} of {bias.dtype}")
    geom = _ints("conv_output", N=N, O=O, P=OH * OW)
    (y,) = _launch_op(xp, launch, "conv_output", "im2col.cu", "conv_output",
                            (y2, xp.ascontiguousarray(bias)), [((N, O, OH, OW), y2.dtype)], geom)
    return y


def _relu_backward(xp, launch, dy, y):
    """``dy * (y > 0)`` in one pass (same shape and dtype)."""
    if dy.shape != y.shape or dy.dtype != y.dtype:
        raise ValueError(f"relu_backward: dy {tuple(dy.shape)} {dy.dtype} and y {tuple(y.shape)} {y.dtype} differ")
    (dx,) = _launch_op(xp, launch, "relu_backward", "activation.cu", "relu_bwd",
                             (xp.ascontiguousarray(dy), xp.ascontiguousarray(y)), [(y.shape, y.dtype)], ())
    return dx


def _address(a) -> int:
    """Where ``a``'s first element lives: ``a.data.ptr`` on CuPy, ``a.ctypes.data`` on NumPy (the
    kernel emulation) and stand-ins."""
    ptr = getattr(getattr(a, "data", None), "ptr", None)
    return int(ptr) if ptr is not None else int(a.ctypes.data)


def sgd_table_key(params, grads, velocities) -> tuple:
    """``((param, grad, velocity addresses, size), ...)``: what :func:`sgd_table` encodes; a network's
    table stays valid while this key is unchanged."""
    return tuple((_address(p), _address(g), _address(v), int(p.size)) for p, g, v in zip(params, grads, velocities))


def _sgd_table(xp, key):
    ptrs = np.array([a for entry in key for a in entry[:3]], dtype=np.int64)
    offsets = np.zeros(len(key) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([entry[3] for entry in key])
    return xp.asarray(ptrs), xp.asarray(offsets), int(offsets[-1])


def _sgd_update_multi(xp, launch, table, offsets, total, hyper):
    """Every tensor of a :func:`sgd_table` in one launch: the update of :func:`_sgd_update`, element
    for element. The caller guarantees the tensors are C-contiguous, of ``hyper``'s dtype, and alive."""
    sfx = _suffix("sgd_update_multi", hyper)
    tensors = int(offsets.shape[0]) - 1
    if tuple(table.shape) != (3 * tensors,) or tuple(hyper.shape) != (3,):
        raise ValueError(f"sgd_update_multi: a table of {3 * tensors} addresses and hyper (3,) expected, got "
                         f"{tuple(table.shape)} and {tuple(hyper.shape)}")
    (t,) = _ints("sgd_update_multi", tensors=tensors)
    _run(launch, "optim.cu", f"sgd_update_multi_{sfx}", total, (table, offsets, t, np.int64(total), hyper))


def _softmax_xent(xp, launch, logits, labels):
    """``(loss_rows (N,), grad (N, K))`` of softmax cross-entropy against integer ``labels (N,)``:
    ``loss_rows[i] = logsumexp(z_i) - z_i[label_i]``, ``grad = (softmax(z) - onehot) / N``."""
    if logits.ndim != 2 or labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"softmax_xent: expected logits (N, K) and labels (N,), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    if np.dtype(labels.dtype).kind not in "iu":
        raise TypeError(f"softmax_xent: labels must be integers, got {labels.dtype}")
    logits = xp.ascontiguousarray(logits)
    sfx = _suffix("softmax_xent", logits)
    N, K = logits.shape
    (k,) = _ints("softmax_xent", K=K)
    labels = xp.ascontiguousarray(labels, dtype=np.int64)
    loss_rows = xp.empty(N, dtype=logits.dtype)
    grad = xp.empty((N, K), dtype=logits.dtype)
    _run(launch, "loss.cu", f"softmax_xent_{sfx}", N, (logits, labels, loss_rows, grad, np.int64(N), k))
    return loss_rows, grad


# ------------------------------------------------------------------ public GPU entry points

def _cp():
    cp = cupy_or_none()
    if cp is None:  # pragma: no cover - functional.py only calls us with CuPy arrays
        raise RuntimeError("xcnn.cuda_ops needs CuPy")
    return cp


def im2col(x, KH, KW, SH, SW, PH, PW, OH, OW):
    """Columns ``(C*KH*KW, N*OH*OW)`` of ``x (N, C, H, W)`` (see :func:`xcnn.functional.im2col`)."""
    return _im2col(_cp(), _gpu_launch, x, KH, KW, SH, SW, PH, PW, OH, OW)


def col2im(col, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    """Fold ``col (C*KH*KW, N*OH*OW)`` back to ``(N, C, H, W)``, summing overlaps (a gather)."""
    return _col2im(_cp(), _gpu_launch, col, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)


def avg_pool_forward(x, KH, KW, SH, SW, PH, PW, OH, OW):
    """Average pooling ``(N, C, H, W) -> (N, C, OH, OW)``, divisor KH*KW."""
    return _avg_pool_forward(_cp(), _gpu_launch, x, KH, KW, SH, SW, PH, PW, OH, OW)


def avg_pool_backward(dy, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    """Gradient of average pooling: ``dy (N, C, OH, OW) -> dx (N, C, H, W)``."""
    return _avg_pool_backward(_cp(), _gpu_launch, dy, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)


def max_pool_forward(x, KH, KW, SH, SW, PH, PW, OH, OW):
    """Max pooling: ``(y, argmax)``, both ``(N, C, OH, OW)``; argmax int32 window offsets."""
    return _max_pool_forward(_cp(), _gpu_launch, x, KH, KW, SH, SW, PH, PW, OH, OW)


def max_pool_backward(dy, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW):
    """Gradient of max pooling: each ``dy`` goes to its recorded argmax, ``-> (N, C, H, W)``."""
    return _max_pool_backward(_cp(), _gpu_launch, dy, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)


def sgd_update(p, g, v, hyper):
    """One fused SGD step on the GPU, in place (see :func:`_sgd_update`); bit-identical to the
    NumPy update in :class:`xcnn.optim.SGD`."""
    _sgd_update(_cp(), _gpu_launch, p, g, v, hyper)


def softmax_xent(logits, labels):
    """Per-row softmax cross-entropy losses and the gradient of their mean, in one launch
    (see :func:`_softmax_xent`)."""
    return _softmax_xent(_cp(), _gpu_launch, logits, labels)


def sgd_table(key, like):
    """Device arrays ``(addresses, offsets)`` and the element count for :func:`sgd_update_multi`,
    built from a :func:`sgd_table_key` on ``like``'s device (one small upload, when the key changes)."""
    with like.device:
        return _sgd_table(_cp(), key)


def sgd_update_multi(table, offsets, total, hyper):
    """One fused SGD step for all of a network's parameters, in one launch (see :func:`_sgd_update_multi`)."""
    _sgd_update_multi(_cp(), _gpu_launch, table, offsets, total, hyper)


def conv_output(y2, bias, N, OH, OW):
    """A convolution's NCHW output from its GEMM result and bias, in one launch."""
    return _conv_output(_cp(), _gpu_launch, y2, bias, N, OH, OW)


def relu_backward(dy, y):
    """ReLU's input gradient ``dy * (y > 0)`` in one launch."""
    return _relu_backward(_cp(), _gpu_launch, dy, y)
