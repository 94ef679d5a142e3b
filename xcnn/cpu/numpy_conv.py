"""Convolution on the CPU with NumPy: im2col + one GEMM, in cache-sized blocks.

Column layout: ``col (C*KH*KW, N*OH*OW)``, row ``(c*KH + kh)*KW + kw``, column ``(n*OH + oh)*OW + ow``
holds ``x_padded[n, c, oh*SH + kh, ow*SW + kw]``. The convolution is ``W (O, C*KH*KW) @ col``,
whose ``(O, N*OH*OW)`` result is the output in CNHW memory order, handed back as an NCHW view.

Stride 1 takes "row columns" (:mod:`.numpy_rowconv`); other strides fill and multiply the columns
a chunk of samples at a time, so each chunk is still in cache when the GEMM reads it. Threads own
disjoint samples; their partial weight gradients are summed in range order.
``g`` is the geometry ``(KH, KW, SH, SW, PH, PW, OH, OW)``.
"""
from __future__ import annotations

import numpy as np

from .blocking import block_samples, chunk_samples, sum_in_order
from .gemm import gemm
from .numpy_rowconv import RowColumns, conv2d_backward_rows, conv2d_forward_rows
from .threads import parallel
from .workspace import scratch

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]


def _window_view(xpad_cnhw, KH, KW, SH, SW, OH, OW):
    """Strided view ``(C, KH, KW, N, OH, OW)`` of a padded CNHW buffer (no copy)."""
    C, N, Hp, Wp = xpad_cnhw.shape
    sC, sN, sH, sW = xpad_cnhw.strides
    return np.lib.stride_tricks.as_strided(
        xpad_cnhw, shape=(C, KH, KW, N, OH, OW),
        strides=(sC, sH, sW, sN, sH * SH, sW * SW), writeable=False,
    )


def _pad(x, PH, PW, ws):
    """Copy ``x (N, C, H, W)`` into a reused zero-bordered CNHW buffer ``(C, N, H+2PH, W+2PW)``."""
    N, C, H, W = x.shape
    # The border is written once (zeros) and never touched again.
    xpad = scratch(ws, "im2col_pad", (C, N, H + 2 * PH, W + 2 * PW), x.dtype)
    xpad[:, :, PH:PH + H, PW:PW + W] = x.transpose(1, 0, 2, 3)
    return xpad


def _fill(col6, win, n0, n1):
    """Columns of samples ``n0:n1``: copy the strided window view into the column buffer."""
    np.copyto(col6[:, :, :, n0:n1], win[:, :, :, n0:n1])


def _col2im_add(dpad, c6, SH, SW):
    """``dpad (C, n, Hp, Wp) +=`` the fold of columns ``c6 (C, KH, KW, n, OH, OW)``: KH*KW slice additions."""
    _, KH, KW, _, OH, OW = c6.shape
    for kh in range(KH):
        hs = slice(kh, kh + SH * (OH - 1) + 1, SH)
        for kw in range(KW):
            dpad[:, :, hs, kw:kw + SW * (OW - 1) + 1:SW] += c6[:, kh, kw]


def im2col(x, g, ws=None):
    KH, KW, SH, SW, PH, PW, OH, OW = g
    N, C = x.shape[:2]
    xpad = _pad(x, PH, PW, ws)
    col = scratch(ws, "im2col_col", (C * KH * KW, N * OH * OW), x.dtype)
    _fill(col.reshape(C, KH, KW, N, OH, OW), _window_view(xpad, KH, KW, SH, SW, OH, OW), 0, N)
    return col


def col2im(col, x_shape, g, ws=None):
    KH, KW, SH, SW, PH, PW, OH, OW = g
    N, C, H, W = x_shape
    dpad = scratch(ws, "col2im_pad", (C, N, H + 2 * PH, W + 2 * PW), col.dtype, zero=True)
    _col2im_add(dpad, col.reshape(C, KH, KW, N, OH, OW), SH, SW)
    return dpad[:, :, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3)


def conv2d_forward(x, weight, bias, g, ws=None):
    """``(y, cache)``: a :class:`RowColumns` for stride 1, else the column buffer."""
    KH, KW, SH, SW, PH, PW, OH, OW = g
    if SH == 1 and SW == 1:
        return conv2d_forward_rows(x, weight, bias, g, ws)
    N, C = x.shape[:2]
    O = weight.shape[0]
    P = OH * OW
    xpad = _pad(x, PH, PW, ws)
    win = _window_view(xpad, KH, KW, SH, SW, OH, OW)
    col = scratch(ws, "im2col_col", (C * KH * KW, N * P), x.dtype)
    col6 = col.reshape(C, KH, KW, N, OH, OW)
    y2 = np.empty((O, N * P), dtype=x.dtype)
    w2 = weight.reshape(O, -1)
    b2 = None if bias is None else bias.reshape(O, 1)
    step = min(N, chunk_samples(C * KH * KW, P, col.itemsize, O))
    block = min(N, block_samples(step, C * KH * KW, P, col.itemsize))

    def run(t, lo, hi):  # samples lo:hi, a block at a time (threads own disjoint samples)
        for b0 in range(lo, hi, block):
            b1 = min(hi, b0 + block)
            _fill(col6, win, b0, b1)
            for n0 in range(b0, b1, step):
                n1 = min(b1, n0 + step)
                out = y2[:, n0 * P:n1 * P]
                gemm(w2, col[:, n0 * P:n1 * P], out)
                if b2 is not None:
                    out += b2

    parallel(run, N, block, col.size // 4)  # a column element is cheap: weigh it 1/4
    return y2.reshape(O, N, OH, OW).transpose(1, 0, 2, 3), col


def conv2d_backward(dy, cache, x_shape, weight, g, need_dx, need_bias, ws=None):
    """``(dx or None, dweight, dbias or None)`` from :func:`conv2d_forward`'s cache."""
    if isinstance(cache, RowColumns):
        return conv2d_backward_rows(dy, cache, weight, need_dx, need_bias, ws)
    col = cache
    KH, KW, SH, SW, PH, PW, OH, OW = g
    N, C, H, W = x_shape
    O = weight.shape[0]
    dy2 = dy.transpose(1, 0, 2, 3).reshape(O, -1)  # free when dy came from our CNHW layout
    db = dy2.sum(axis=1) if need_bias else None
    # Chunks of samples, as in the forward. dW accumulates over chunks; each chunk's dcol is folded
    # into dx while still in cache, so no full-size dcol is ever allocated.
    P, R = OH * OW, C * KH * KW
    dt = dy.dtype
    w2t = weight.reshape(O, R).T
    step = min(N, chunk_samples(R, P, col.itemsize, O))
    dpad = scratch(ws, "col2im_pad", (C, N, H + 2 * PH, W + 2 * PW), dt, zero=True) if need_dx else None
    block = min(N, block_samples(step, R, P, col.itemsize))

    def run(t, lo, hi):  # samples lo:hi; each thread sums its own dW and folds into its own samples
        dw = np.zeros((O, R), dtype=dt)
        part = np.empty((O, R), dtype=dt)
        dcol = scratch(ws, f"conv_dcol{t}", (R, block * P), dt) if need_dx else None
        for b0 in range(lo, hi, block):
            b1 = min(hi, b0 + block)
            for n0 in range(b0, b1, step):
                n1 = min(b1, n0 + step)
                cols = slice(n0 * P, n1 * P)
                gemm(dy2[:, cols], col[:, cols].T, part)
                dw += part
                if need_dx:
                    gemm(w2t, dy2[:, cols], dcol[:, (n0 - b0) * P:(n1 - b0) * P])
            if need_dx:  # fold the block's columns while they are still in cache
                dc = dcol[:, :(b1 - b0) * P]
                _col2im_add(dpad[:, b0:b1], dc.reshape(C, KH, KW, b1 - b0, OH, OW), SH, SW)
        return dw

    dw = sum_in_order(parallel(run, N, block, col.size // 4))  # a column element is cheap: weigh it 1/4
    dx = dpad[:, :, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3) if need_dx else None
    return dx, dw.reshape(weight.shape), db
