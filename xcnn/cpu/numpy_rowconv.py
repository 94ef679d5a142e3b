"""Stride-1 convolution on "row columns" (NumPy): a column spans a whole padded row (``Wp`` wide; the
last ``Wp - OW`` outputs of each row are junk and dropped), so each (offset, sample) row of columns
is one contiguous run of the padded input -- a fast copy instead of ``OH`` short ones. Columns exist
only a block at a time (in cache); the backward rebuilds them from the padded input it keeps."""
from __future__ import annotations

import numpy as np

from . import config
from .blocking import block_samples, sum_in_order
from .gemm import gemm
from .threads import parallel
from .workspace import scratch

__all__ = ["RowColumns", "conv2d_forward_rows", "conv2d_backward_rows"]


class RowColumns:
    """What the backward needs from :func:`conv2d_forward_rows`: the zero-padded input (CNHW, one
    spare zero row) instead of its columns. It lives in the workspace the forward was given: valid
    until the next forward with that workspace."""

    __slots__ = ("xpad", "x_shape", "KH", "KW", "PH", "PW", "OH", "OW")

    def __init__(self, xpad, x_shape, KH, KW, PH, PW, OH, OW):
        self.xpad, self.x_shape = xpad, tuple(x_shape)
        self.KH, self.KW, self.PH, self.PW, self.OH, self.OW = KH, KW, PH, PW, OH, OW

    def windows(self):
        """Strided view ``(C, KH, KW, N, OH*Wp)``: for kernel offset (kh, kw) and sample n, the
        ``OH*Wp`` input values starting at ``(kh, kw)`` -- one contiguous run per row of columns."""
        C, N, Hp1, Wp = self.xpad.shape
        flat = self.xpad.reshape(C, N, Hp1 * Wp)
        sC, sN, s1 = flat.strides
        return np.lib.stride_tricks.as_strided(flat, shape=(C, self.KH, self.KW, N, self.OH * Wp),
                                               strides=(sC, Wp * s1, s1, sN, s1), writeable=False)


def _row_blocks(R, O, L, itemsize, N):
    """``(step, block)`` in samples (at most ``N``): a GEMM chunk under ``serial_gemm_mnk``, and a
    multiple of it whose ``R x block*L`` columns fit in ``chunk_bytes``."""
    step = min(N, max(1, (config.get().serial_gemm_mnk - 1) // max(1, O * R * L)))
    return step, min(N, block_samples(step, R, L, itemsize))


def _fold_rows(dflat, dc5, offs, L):
    """``dflat (C, n, (Hp+1)*Wp) +=`` the row-columns ``dc5 (C, KH, KW, n, L)``: one contiguous-run
    addition per kernel offset (the col2im of the row layout)."""
    for kh, kw, off in offs:
        dflat[:, :, off:off + L] += dc5[:, kh, kw]


def conv2d_forward_rows(x, weight, bias, g, ws):
    KH, KW, _, _, PH, PW, OH, OW = g
    N, C, H, W = x.shape
    O = weight.shape[0]
    Wp = W + 2 * PW
    L = OH * Wp
    R = C * KH * KW
    # The border (and the spare last row, read only by junk outputs) is zero from creation on.
    xpad = scratch(ws, "conv_xpad", (C, N, H + 2 * PH + 1, Wp), x.dtype)
    xpad[:, :, PH:PH + H, PW:PW + W] = x.transpose(1, 0, 2, 3)
    cache = RowColumns(xpad, x.shape, KH, KW, PH, PW, OH, OW)
    win = cache.windows()
    y2 = np.empty((O, N, OH, Wp), dtype=x.dtype)
    y2f = y2.reshape(O, N * L)
    w2 = weight.reshape(O, R)
    b2 = None if bias is None else bias.reshape(O, 1)
    step, block = _row_blocks(R, O, L, x.itemsize, N)

    def run(t, lo, hi):
        colb = scratch(ws, f"conv_rowcol{t}", (R, block * L), x.dtype)
        for b0 in range(lo, hi, block):
            b1 = min(hi, b0 + block)
            nb = b1 - b0
            cb = colb[:, :nb * L]
            np.copyto(cb.reshape(C, KH, KW, nb, L), win[:, :, :, b0:b1])
            for n0 in range(0, nb, step):
                n1 = min(nb, n0 + step)
                out = y2f[:, (b0 + n0) * L:(b0 + n1) * L]
                gemm(w2, cb[:, n0 * L:n1 * L], out)
                if b2 is not None:
                    out += b2

    parallel(run, N, block, R * N * L // 64)  # measured: threads pay off only for big convs
    return y2[:, :, :, :OW].transpose(1, 0, 2, 3), cache


def conv2d_backward_rows(dy, cache, weight, need_dx, need_bias, ws):
    """Per block: rebuild the row-columns, widen dy to ``Wp`` (junk columns zero, so they add
    nothing), dW += dy @ cols.T, dcols = W.T @ dy folded back with ``KH*KW`` contiguous-run additions."""
    N, C, H, W = cache.x_shape
    KH, KW, PH, PW, OH, OW = cache.KH, cache.KW, cache.PH, cache.PW, cache.OH, cache.OW
    O = weight.shape[0]
    Hp, Wp = H + 2 * PH, W + 2 * PW
    L = OH * Wp
    R = C * KH * KW
    dt = dy.dtype
    win = cache.windows()
    w2t = weight.reshape(O, R).T
    step, block = _row_blocks(R, O, L, cache.xpad.itemsize, N)
    db = dy.sum(axis=(0, 2, 3)) if need_bias else None
    if need_dx:
        dpad = scratch(ws, "col2im_rowpad", (C, N, Hp + 1, Wp), dt, zero=True)
        dflat = dpad.reshape(C, N, (Hp + 1) * Wp)
    offs = [(kh, kw, kh * Wp + kw) for kh in range(KH) for kw in range(KW)]

    def run(t, lo, hi):
        dw = np.zeros((O, R), dtype=dt)
        part = np.empty((O, R), dtype=dt)
        colb = scratch(ws, f"conv_rowcol{t}", (R, block * L), cache.xpad.dtype)
        dyw = scratch(ws, f"conv_rowdy{t}", (O, block, OH, Wp), dt)  # junk columns stay zero
        dcolb = scratch(ws, f"conv_rowdcol{t}", (R, block * L), dt) if need_dx else None
        for b0 in range(lo, hi, block):
            b1 = min(hi, b0 + block)
            nb = b1 - b0
            cb = colb[:, :nb * L]
            np.copyto(cb.reshape(C, KH, KW, nb, L), win[:, :, :, b0:b1])
            dyw[:, :nb, :, :OW] = dy[b0:b1].transpose(1, 0, 2, 3)
            dyf = dyw[:, :nb].reshape(O, nb * L)
            for n0 in range(0, nb, step):
                n1 = min(nb, n0 + step)
                cs = slice(n0 * L, n1 * L)
                gemm(dyf[:, cs], cb[:, cs].T, part)
                dw += part
                if need_dx:
                    gemm(w2t, dyf[:, cs], dcolb[:, cs])
            if need_dx:
                _fold_rows(dflat[:, b0:b1], dcolb[:, :nb * L].reshape(C, KH, KW, nb, L), offs, L)
        return dw

    dw = sum_in_order(parallel(run, N, block, R * N * L // 64))
    dx = dpad[:, :, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3) if need_dx else None
    return dx, dw.reshape(weight.shape), db
