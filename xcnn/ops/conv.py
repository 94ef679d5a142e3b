"""Convolution: im2col/col2im and the 2-D convolution's forward and backward.

``x (N, C, H, W)``, ``weight (O, C, KH, KW)``, ``bias (O,)`` or None, ``y (N, O, OH, OW)``.
Column layout (every backend): ``col (C*KH*KW, N*OH*OW)``; row ``(c*KH + kh)*KW + kw``, column
``(n*OH + oh)*OW + ow`` holds ``x_padded[n, c, oh*SH + kh, ow*SW + kw]``.
"""
from __future__ import annotations

from ..cpu import numba_ops as _nb
from ..cpu import numpy_conv as _np
from ..cuda import ops as _cu
from . import _check
from ._dispatch import Op
from .geometry import conv_geometry

__all__ = ["ConvCache", "im2col", "col2im", "conv2d_forward", "conv2d_backward"]

_IM2COL = Op("im2col", numpy=_np.im2col, cuda=_cu.im2col)
_COL2IM = Op("col2im", numpy=_np.col2im, cuda=_cu.col2im)
_FORWARD = Op("conv2d_forward", numpy=_np.conv2d_forward, cuda=_cu.conv2d_forward, numba=_nb.conv2d_forward,
              numba_accepts=lambda x, w, b, g, ws: g[2] == 1 and g[3] == 1)  # the kernels do stride 1
_BACKWARD = Op("conv2d_backward", numpy=_np.conv2d_backward, cuda=_cu.conv2d_backward, numba=_nb.conv2d_backward)


class ConvCache:
    """What :func:`conv2d_backward` needs from :func:`conv2d_forward`: the backend that ran it, its
    data (columns, a padded input, or the input itself), the input's shape and the geometry.

    Buffers in it may belong to the workspace the forward was given: it is valid until the next
    forward with the same workspace (a layer gives its training forwards a workspace of their own,
    so evaluation in between cannot touch it)."""

    __slots__ = ("backend", "data", "x_shape", "geometry")

    def __init__(self, backend, data, x_shape, geometry):
        self.backend, self.data, self.x_shape, self.geometry = backend, data, tuple(x_shape), geometry


def _image(op, x):
    _check.floats(op, x=x)
    return _check.ndim(op, "x", x, 4, "(N, C, H, W)")


def im2col(x, kernel_size, stride=1, padding=0, ws=None):
    """Unfold ``x (N, C, H, W)`` into columns ``(C*KH*KW, N*OH*OW)`` (zero outside the input)."""
    N, C, H, W = _image("im2col", x)
    g = conv_geometry(H, W, kernel_size, stride, padding, "im2col")
    return _IM2COL([x], x, g, ws)


def col2im(col, x_shape, kernel_size, stride=1, padding=0, ws=None):
    """Fold columns ``(C*KH*KW, N*OH*OW)`` back to ``x_shape``, summing overlaps: the adjoint of
    :func:`im2col`."""
    N, C, H, W = _check.image_shape("col2im", x_shape)
    g = conv_geometry(H, W, kernel_size, stride, padding, "col2im")
    KH, KW, _, _, _, _, OH, OW = g
    _check.floats("col2im", col=col)
    _check.shape("col2im", "columns", col, (C * KH * KW, N * OH * OW))
    return _COL2IM([col], col, (N, C, H, W), g, ws)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, ws=None):
    """``(y, cache)``: ``y (N, O, OH, OW) = conv(x, weight) + bias``; ``cache`` for :func:`conv2d_backward`."""
    _check.floats("conv2d_forward", x=x, weight=weight, bias=bias)
    N, C, H, W = _check.ndim("conv2d_forward", "x", x, 4, "(N, C, H, W)")
    O, Cw, KH, KW = _check.ndim("conv2d_forward", "weight", weight, 4, "(O, C, KH, KW)")
    if Cw != C:
        _check.shape("conv2d_forward", "x", x, (N, Cw, H, W))
    if bias is not None:
        _check.shape("conv2d_forward", "bias", bias, (O,))
    g = conv_geometry(H, W, (KH, KW), stride, padding)
    args = (x, weight, bias, g, ws)
    name, where = _FORWARD.backend([x, weight, bias], args)
    y, data = _FORWARD.run(name, where, *args)
    return y, ConvCache(name, data, (N, C, H, W), g)


def conv2d_backward(dy, cache, weight, need_dx=True, need_bias=True, ws=None, dw_out=None, db_out=None):
    """Gradients of :func:`conv2d_forward`: ``(dx or None, dweight, dbias or None)``. When given,
    ``dw_out``/``db_out`` (arrays of the weight's and bias's shape) receive the gradients and are
    returned."""
    if not isinstance(cache, ConvCache):
        raise TypeError(f"conv2d_backward: cache must be what conv2d_forward returned, got {type(cache).__name__}")
    N, C, H, W = cache.x_shape
    O = weight.shape[0]
    _check.floats("conv2d_backward", dy=dy, weight=weight, dw_out=dw_out, db_out=db_out)
    _check.shape("conv2d_backward", "dy", dy, (N, O, cache.geometry[6], cache.geometry[7]))
    if dw_out is not None:
        _check.shape("conv2d_backward", "dw_out", dw_out, weight.shape)
    if db_out is not None:
        _check.shape("conv2d_backward", "db_out", db_out, (O,))
    arrays = [dy, weight, dw_out, db_out]
    name, where = _BACKWARD.backend(arrays, ())
    if (name == "cuda") != (cache.backend == "cuda"):
        raise ValueError("conv2d_backward: dy is on another device than the forward ran on — "
                         "run backward on the forward's device")
    if name == "cuda":
        dw_gpu = dw_out if dw_out is not None and dw_out.flags.c_contiguous else None
        db_gpu = db_out if need_bias else None
        dx, dw, db = _BACKWARD.run("cuda", where, dy, cache.data, cache.x_shape, weight, cache.geometry, need_dx,
                                   need_bias, ws, dw_gpu, db_gpu)
    else:
        dx, dw, db = _BACKWARD.run(cache.backend, where, dy, cache.data, cache.x_shape, weight, cache.geometry,
                                   need_dx, need_bias, ws)
    if dw_out is not None and dw is not dw_out:
        dw_out[...] = dw
        dw = dw_out
    if db_out is not None and db is not None and db is not db_out:
        db_out[...] = db
        db = db_out
    return dx, dw, db
