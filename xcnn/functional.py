"""Pure array ops with explicit forward and backward: im2col/col2im, convolution, pooling, losses.

Shapes use one set of names: N (batch), C (channels), H, W (input height, width),
KH, KW (window), SH, SW (stride), PH, PW (padding), OH, OW (output height, width).
Images are NCHW. Every function works on NumPy and CuPy arrays alike; the array module
comes from the arguments. On the GPU the hot spots go to our CUDA kernels
(:mod:`xcnn.cuda_ops`); on the CPU they are strided views and slice arithmetic, with no
Python loop over samples or output pixels.

Column layout (both devices): ``col`` has shape ``(C*KH*KW, N*OH*OW)`` -- one row per
(channel, kernel offset), one column per (sample, output pixel). A convolution is then
a single GEMM ``W(O, C*KH*KW) @ col`` whose result ``(O, N*OH*OW)`` is the output in
"CNHW" memory order; we hand it back as an NCHW *view*, so no transpose is copied.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import cpu_kernels as CK
from .backend import get_array_module

__all__ = [
    "pair", "conv_output_size", "pool_geometry", "conv_geometry", "Workspace",
    "im2col", "col2im", "conv2d_forward", "conv2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward", "max_pool2d_backward",
    "softmax", "log_softmax", "softmax_cross_entropy", "euclidean_loss", "relu_forward", "relu_backward",
    "matmul_cpu",
]


def pair(v, name: str = "value") -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``; refuses anything that is not one or two integers."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        a, b = v
    else:
        a = b = v
    for t in (a, b):
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {v!r} ({type(t).__name__})")
    return int(a), int(b)


def conv_output_size(size: int, k: int, s: int, p: int) -> int:
    """Output length of a sliding window: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * p - k) // s + 1


def _geometry(op: str, H: int, W: int, kernel_size, stride, padding, *, pool: bool):
    KH, KW = pair(kernel_size, "kernel_size")
    SH, SW = pair(stride, "stride")
    PH, PW = pair(padding, "padding")
    if KH < 1 or KW < 1:
        raise ValueError(f"{op}: kernel_size must be >= 1, got {(KH, KW)}")
    if SH < 1 or SW < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {(SH, SW)}")
    if PH < 0 or PW < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {(PH, PW)}")
    if pool and (2 * PH > KH or 2 * PW > KW):
        raise ValueError(
            f"{op}: padding {(PH, PW)} must be at most half the window {(KH, KW)}, "
            "or some windows would see only padding"
        )
    if KH > H + 2 * PH or KW > W + 2 * PW:
        raise ValueError(
            f"{op}: kernel {(KH, KW)} is larger than the padded input {(H + 2 * PH, W + 2 * PW)} "
            f"(input {(H, W)}, padding {(PH, PW)}); use a smaller kernel or more padding"
        )
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    if OH <= 0 or OW <= 0:  # pragma: no cover - excluded by the check above, kept as a guard
        raise ValueError(f"{op}: output size {(OH, OW)} is not positive")
    return KH, KW, SH, SW, PH, PW, OH, OW


def conv_geometry(H, W, kernel_size, stride=1, padding=0, op="conv2d"):
    """``(KH, KW, SH, SW, PH, PW, OH, OW)`` for a convolution, validated."""
    return _geometry(op, H, W, kernel_size, stride, padding, pool=False)


def pool_geometry(H, W, kernel_size, stride=None, padding=0, op="pool2d"):
    """``(KH, KW, SH, SW, PH, PW, OH, OW)`` for a pooling window (stride defaults to the window)."""
    return _geometry(op, H, W, kernel_size, kernel_size if stride is None else stride, padding, pool=True)


class Workspace:
    """Reusable scratch buffers keyed by name, so the big temporaries of a layer
    (padded input, columns) are allocated once and not per step."""

    def __init__(self):
        self._bufs: dict = {}

    def get(self, key, shape, dtype, xp, *, zero: bool = False):
        """A buffer of ``shape``/``dtype`` on ``xp``; fresh zeros when first made or reshaped.
        ``zero=True`` clears it on every call."""
        shape = tuple(int(s) for s in shape)
        buf = self._bufs.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype or get_array_module(buf) is not xp:
            buf = xp.zeros(shape, dtype=dtype)
            self._bufs[key] = buf
        elif zero:
            buf.fill(0)
        return buf

    def clear(self):
        self._bufs.clear()


def _get(ws, key, shape, dtype, xp, zero=False):
    if ws is None:
        return xp.zeros(shape, dtype=dtype)
    return ws.get(key, shape, dtype, xp, zero=zero)


def _cuda():
    from . import cuda_ops  # noqa: PLC0415  (only reached with CuPy arrays)

    return cuda_ops


#: the float dtypes our kernels (compiled CPU and CUDA) are built for
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _kernel_dtype(*arrays) -> bool:
    """The arrays share one dtype our kernels are built for (float32 or float64)."""
    dt = arrays[0].dtype
    return dt in _KERNEL_DTYPES and all(a.dtype == dt for a in arrays[1:])


def _compiled(*arrays) -> bool:
    """Take the compiled CPU kernels (:mod:`xcnn.cpu_kernels`): they are on, and the (host) arrays
    share one float32/float64 dtype. Anything else keeps the NumPy path."""
    return _kernel_dtype(*arrays) and CK.active()


def _window_view(xpad_cnhw, KH, KW, SH, SW, OH, OW):
    """Strided view ``(C, KH, KW, N, OH, OW)`` of a padded CNHW buffer (no copy)."""
    C, N, Hp, Wp = xpad_cnhw.shape
    sC, sN, sH, sW = xpad_cnhw.strides
    return np.lib.stride_tricks.as_strided(
        xpad_cnhw, shape=(C, KH, KW, N, OH, OW),
        strides=(sC, sH, sW, sN, sH * SH, sW * SW), writeable=False,
    )


#: Bytes of column data the CPU convolution fills and multiplies at a time: a chunk of samples whose
#: columns stay in the L2 cache between im2col writing them and the GEMM reading them.
CHUNK_BYTES = 1 << 20


#: Largest ``M*N*K`` of one CPU convolution GEMM. The conv GEMMs are skinny (M = out_channels) and
#: memory-bound: a second BLAS thread gains them nothing, while OpenBLAS hands any GEMM with
#: ``M*N*K >= 2 * 65536 * 4`` to its thread pool, whose hand-off costs ~10x on a machine whose
#: other core is busy. Chunks below this size run on the calling thread.
SERIAL_GEMM_MNK = 1 << 19


def _chunk_samples(rows: int, pixels: int, itemsize: int, out_rows: int = 1) -> int:
    """How many samples' columns (``rows`` x ``pixels`` each) fit in :data:`CHUNK_BYTES` and keep
    the chunk's GEMM (``out_rows`` x ``rows`` x samples*``pixels``) under :data:`SERIAL_GEMM_MNK`."""
    by_bytes = CHUNK_BYTES // max(1, rows * pixels * itemsize)
    by_flops = (SERIAL_GEMM_MNK - 1) // max(1, out_rows * rows * pixels)
    return max(1, min(by_bytes, by_flops))


def _block_samples(step: int, rows: int, pixels: int, itemsize: int) -> int:
    """A multiple of ``step`` samples whose columns fit in :data:`CHUNK_BYTES` (at least ``step``):
    im2col fills a block per call (per-call overhead), the GEMMs take it ``step`` samples at a time."""
    return step * max(1, CHUNK_BYTES // max(1, step * rows * pixels * itemsize))


def _default_threads() -> int:
    try:
        n = int(os.environ.get("XCNN_NUM_THREADS", "0"))
    except ValueError:
        n = 0
    return n if n > 0 else max(1, min(os.cpu_count() or 1, 8))


#: Threads the CPU paths split a batch over (``$XCNN_NUM_THREADS``, else the core count, at most 8).
#: NumPy and OpenBLAS release the GIL inside each call, and every thread works on its own samples.
CPU_THREADS = _default_threads()
#: Below this many elements an op runs on the calling thread: a hand-off to a pool thread costs
#: ~100 us of wall time in CPython, more than splitting a smaller op saves (measured on 2 cores).
PARALLEL_MIN_ELEMENTS = 1 << 18
#: when a GEMM last went to OpenBLAS's thread pool (``time.perf_counter()``; read by :mod:`xcnn.cpu_kernels`)
LAST_THREADED_GEMM = [float("-inf")]
_POOL: dict = {}
_POOL_LOCK = threading.Lock()


def _executor(n):
    with _POOL_LOCK:
        ex = _POOL.get(n)
        if ex is None:
            ex = _POOL[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="xcnn-cpu")
        return ex


def _split_work(n_chunks: int, elements: int):
    """How many threads to use for ``n_chunks`` independent chunks touching ``elements`` in all."""
    return max(1, min(CPU_THREADS, n_chunks if elements >= PARALLEL_MIN_ELEMENTS else 1))


def _parallel(fn, N: int, step: int, elements: int):
    """Run ``fn(t, n0, n1)`` over contiguous sample ranges (multiples of ``step``) of ``range(N)``,
    one range per thread ``t``; the caller runs range 0. Returns the results in range order."""
    n_chunks = -(-N // step)
    T = _split_work(n_chunks, elements)
    if T == 1:
        return [fn(0, 0, N)]
    per = -(-n_chunks // T)
    bounds = [(t, t * per * step, min(N, (t + 1) * per * step)) for t in range(T)]
    return _run_bounds(fn, [b for b in bounds if b[1] < b[2]])


def _run_bounds(fn, bounds):
    """``fn(t, n0, n1)`` for each ``(t, n0, n1)`` of ``bounds``: the first on the calling thread, the
    rest on xcnn's thread pool. Returns the results in ``bounds`` order."""
    futs = [_executor(CPU_THREADS).submit(fn, *b) for b in bounds[1:]]
    first = fn(*bounds[0])
    return [first] + [f.result() for f in futs]


def _im2col_pad(x, PH, PW, ws):
    """Copy ``x (N, C, H, W)`` into a reused zero-bordered CNHW buffer ``(C, N, H+2PH, W+2PW)``."""
    N, C, H, W = x.shape
    # The border is written once (zeros) and never touched again.
    xpad = _get(ws, "im2col_pad", (C, N, H + 2 * PH, W + 2 * PW), x.dtype, np)
    xpad[:, :, PH:PH + H, PW:PW + W] = x.transpose(1, 0, 2, 3)
    return xpad


def _im2col_fill(col6, win, n0, n1):
    """Columns of samples ``n0:n1``: copy the strided window view into the column buffer."""
    np.copyto(col6[:, :, :, n0:n1], win[:, :, :, n0:n1])


def im2col(x, kernel_size, stride=1, padding=0, ws=None):
    """Unfold ``x (N, C, H, W)`` into columns ``(C*KH*KW, N*OH*OW)``.

    Row ``(c*KH + kh)*KW + kw``, column ``(n*OH + oh)*OW + ow`` holds
    ``x_padded[n, c, oh*SH + kh, ow*SW + kw]`` (zero outside the input).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    KH, KW, SH, SW, PH, PW, OH, OW = conv_geometry(H, W, kernel_size, stride, padding, "im2col")
    if xp is not np:
        return _cuda().im2col(x, KH, KW, SH, SW, PH, PW, OH, OW)
    xpad = _im2col_pad(x, PH, PW, ws)
    col = _get(ws, "im2col_col", (C * KH * KW, N * OH * OW), x.dtype, np)
    _im2col_fill(col.reshape(C, KH, KW, N, OH, OW), _window_view(xpad, KH, KW, SH, SW, OH, OW), 0, N)
    return col


def col2im(col, x_shape, kernel_size, stride=1, padding=0, ws=None):
    """Fold columns ``(C*KH*KW, N*OH*OW)`` back to ``(N, C, H, W)``, summing overlaps.

    The adjoint of :func:`im2col`. On the CPU it is KH*KW strided slice additions
    (one per kernel offset); on the GPU a gather kernel (one thread per input element).
    """
    xp = get_array_module(col)
    N, C, H, W = x_shape
    KH, KW, SH, SW, PH, PW, OH, OW = conv_geometry(H, W, kernel_size, stride, padding, "col2im")
    if col.shape != (C * KH * KW, N * OH * OW):
        raise ValueError(f"col2im: expected columns {(C * KH * KW, N * OH * OW)}, got {tuple(col.shape)}")
    if xp is not np:
        return _cuda().col2im(col, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    dpad = _get(ws, "col2im_pad", (C, N, H + 2 * PH, W + 2 * PW), col.dtype, np, zero=True)
    _col2im_add(dpad, col.reshape(C, KH, KW, N, OH, OW), SH, SW)
    return dpad[:, :, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3)


def conv2d_forward(x, weight, bias, stride=1, padding=0, ws=None):
    """``y (N, O, OH, OW) = conv(x (N, C, H, W), weight (O, C, KH, KW)) + bias (O,)``.

    Returns ``(y, col)``; ``col`` is what :func:`conv2d_backward` needs. ``y`` is an NCHW
    view of a CNHW buffer (no transpose copied); ``bias`` may be ``None``.
    """
    xp = get_array_module(x, weight, bias)
    N = x.shape[0]
    O = weight.shape[0]
    KH, KW = weight.shape[2:]
    _, _, SH, SW, PH, PW, OH, OW = conv_geometry(x.shape[2], x.shape[3], (KH, KW), stride, padding)
    if xp is not np:
        col = im2col(x, (KH, KW), (SH, SW), (PH, PW), ws=ws)
        y2 = weight.reshape(O, -1) @ col  # (O, N*OH*OW): one GEMM for the whole batch
        if bias is not None and _kernel_dtype(y2, bias):
            return _cuda().conv_output(y2, bias, N, OH, OW), col  # bias + NCHW layout in one kernel
        if bias is not None:
            y2 += bias.reshape(O, 1)
        return xp.ascontiguousarray(y2.reshape(O, N, OH, OW).transpose(1, 0, 2, 3)), col
    if SH == 1 and SW == 1 and _compiled(x, weight, *(() if bias is None else (bias,))):
        return CK.conv2d_forward(x, weight, bias, PH, PW, OH, OW)
    if SH == 1 and SW == 1 and ROW_COLUMNS:
        return _conv2d_forward_rows(x, weight, bias, KH, KW, PH, PW, OH, OW, ws)
    # CPU, strided: the same single column buffer and output layout, but filled and multiplied a chunk
    # of samples at a time, so each chunk's columns are still in cache when the GEMM reads them.
    C = x.shape[1]
    P = OH * OW
    xpad = _im2col_pad(x, PH, PW, ws)
    win = _window_view(xpad, KH, KW, SH, SW, OH, OW)
    col = _get(ws, "im2col_col", (C * KH * KW, N * P), x.dtype, np)
    col6 = col.reshape(C, KH, KW, N, OH, OW)
    y2 = np.empty((O, N * P), dtype=np.result_type(weight.dtype, x.dtype))
    w2 = weight.reshape(O, -1)
    b2 = None if bias is None else bias.reshape(O, 1)
    step = min(N, _chunk_samples(C * KH * KW, P, col.itemsize, O))

    block = min(N, _block_samples(step, C * KH * KW, P, col.itemsize))

    def run(t, lo, hi):  # samples lo:hi, a block at a time (threads own disjoint samples)
        for b0 in range(lo, hi, block):
            b1 = min(hi, b0 + block)
            _im2col_fill(col6, win, b0, b1)
            for n0 in range(b0, b1, step):
                n1 = min(b1, n0 + step)
                out = y2[:, n0 * P:n1 * P]
                _gemm(w2, col[:, n0 * P:n1 * P], out)
                if b2 is not None:
                    out += b2

    _parallel(run, N, block, col.size // 4)  # a column element is cheap: weigh it 1/4
    return y2.reshape(O, N, OH, OW).transpose(1, 0, 2, 3), col


#: Stride-1 CPU convolutions use row-columns (:class:`RowColumns`); False selects the strided path.
ROW_COLUMNS = True


class RowColumns:
    """What :func:`conv2d_backward` needs from a stride-1 CPU :func:`conv2d_forward`: the zero-padded
    input (CNHW, one spare zero row) instead of its columns, which are rebuilt a cache-sized block at a
    time. Like the columns it replaces, it lives in the layer's workspace: valid until the next forward."""

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
    """``(step, block)`` in samples (at most ``N``): a GEMM chunk under :data:`SERIAL_GEMM_MNK`, and a
    multiple of it whose ``R x block*L`` columns fit in :data:`CHUNK_BYTES`."""
    step = min(N, max(1, (SERIAL_GEMM_MNK - 1) // max(1, O * R * L)))
    return step, min(N, _block_samples(step, R, L, itemsize))


def _copy_block(dst, src):
    """Rebuild a block of row-columns (a named function so ``--profile`` counts it as im2col)."""
    np.copyto(dst, src)


def _conv2d_forward_rows(x, weight, bias, KH, KW, PH, PW, OH, OW, ws):
    """Stride-1 CPU convolution on "row columns": a column spans a whole padded row (``Wp`` wide,
    the last ``Wp - OW`` outputs of each row are junk and dropped), so each (offset, sample) row of
    columns is one contiguous run of the padded input -- a fast copy instead of ``OH`` short ones.
    Columns exist only a block at a time (in cache); the backward rebuilds them from ``xpad``."""
    N, C, H, W = x.shape
    O = weight.shape[0]
    Hp, Wp = H + 2 * PH, W + 2 * PW
    L = OH * Wp
    R = C * KH * KW
    dt = np.result_type(weight.dtype, x.dtype)
    # The border (and the spare last row, read only by junk outputs) is zero from creation on.
    xpad = _get(ws, "conv_xpad", (C, N, Hp + 1, Wp), x.dtype, np)
    xpad[:, :, PH:PH + H, PW:PW + W] = x.transpose(1, 0, 2, 3)
    cache = RowColumns(xpad, x.shape, KH, KW, PH, PW, OH, OW)
    win = cache.windows()
    y2 = np.empty((O, N, OH, Wp), dtype=dt)
    y2f = y2.reshape(O, N * L)
    w2 = weight.reshape(O, R)
    b2 = None if bias is None else bias.reshape(O, 1)
    step, block = _row_blocks(R, O, L, x.itemsize, N)

    def run(t, lo, hi):
        colb = _get(ws, f"conv_rowcol{t}", (R, block * L), x.dtype, np)
        for b0 in range(lo, hi, block):
            b1 = min(hi, b0 + block)
            nb = b1 - b0
            cb = colb[:, :nb * L]
            _copy_block(cb.reshape(C, KH, KW, nb, L), win[:, :, :, b0:b1])
            for n0 in range(0, nb, step):
                n1 = min(nb, n0 + step)
                out = y2f[:, (b0 + n0) * L:(b0 + n1) * L]
                _gemm(w2, cb[:, n0 * L:n1 * L], out)
                if b2 is not None:
                    out += b2

    _parallel(run, N, block, R * N * L // 64)  # measured: threads pay off only for big convs
    return y2[:, :, :, :OW].transpose(1, 0, 2, 3), cache


def _conv2d_backward_rows(dy, cache, weight, need_dx, need_bias, ws):
    """Gradients for :func:`_conv2d_forward_rows`: per block, rebuild the row-columns, widen dy to
    ``Wp`` (junk columns zero, so they add nothing), dW += dy @ cols.T, dcols = W.T @ dy folded back
    with ``KH*KW`` contiguous-run additions."""
    N, C, H, W = cache.x_shape
    KH, KW, PH, PW, OH, OW = cache.KH, cache.KW, cache.PH, cache.PW, cache.OH, cache.OW
    O = weight.shape[0]
    if tuple(dy.shape) != (N, O, OH, OW):
        raise ValueError(f"conv2d_backward: expected dy {(N, O, OH, OW)}, got {tuple(dy.shape)}")
    Hp, Wp = H + 2 * PH, W + 2 * PW
    L = OH * Wp
    R = C * KH * KW
    dt = np.result_type(dy.dtype, cache.xpad.dtype, weight.dtype)
    win = cache.windows()
    w2t = weight.reshape(O, R).T
    step, block = _row_blocks(R, O, L, cache.xpad.itemsize, N)
    db = dy.sum(axis=(0, 2, 3)) if need_bias else None
    if need_dx:
        dpad = _get(ws, "col2im_rowpad", (C, N, Hp + 1, Wp), dt, np, zero=True)
        dflat = dpad.reshape(C, N, (Hp + 1) * Wp)
    offs = [(kh, kw, kh * Wp + kw) for kh in range(KH) for kw in range(KW)]

    def run(t, lo, hi):
        dw = np.zeros((O, R), dtype=dt)
        part = np.empty((O, R), dtype=dt)
        colb = _get(ws, f"conv_rowcol{t}", (R, block * L), cache.xpad.dtype, np)
        dyw = _get(ws, f"conv_rowdy{t}", (O, block, OH, Wp), dt, np)  # junk columns stay zero
        dcolb = _get(ws, f"conv_rowdcol{t}", (R, block * L), dt, np) if need_dx else None
        for b0 in range(lo, hi, block):
            b1 = min(hi, b0 + block)
            nb = b1 - b0
            cb = colb[:, :nb * L]
            _copy_block(cb.reshape(C, KH, KW, nb, L), win[:, :, :, b0:b1])
            dyw[:, :nb, :, :OW] = dy[b0:b1].transpose(1, 0, 2, 3)
            dyf = dyw[:, :nb].reshape(O, nb * L)
            for n0 in range(0, nb, step):
                n1 = min(nb, n0 + step)
                cs = slice(n0 * L, n1 * L)
                _gemm(dyf[:, cs], cb[:, cs].T, part)
                dw += part
                if need_dx:
                    _gemm(w2t, dyf[:, cs], dcolb[:, cs])
            if need_dx:
                _fold_rows(dflat[:, b0:b1], dcolb[:, :nb * L].reshape(C, KH, KW, nb, L), offs, L)
        return dw

    dw = _sum_in_order(_parallel(run, N, block, R * N * L // 64))
    dx = dpad[:, :, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3) if need_dx else None
    return dx, dw.reshape(weight.shape), db


def _sum_in_order(parts):
    """The threads' partial weight gradients summed in range order (into the first), so the result
    does not depend on thread timing."""
    total = parts[0]
    for p in parts[1:]:
        total += p
    return total


def _fold_rows(dflat, dc5, offs, L):
    """``dflat (C, n, (Hp+1)*Wp) +=`` the row-columns ``dc5 (C, KH, KW, n, L)``: one contiguous-run
    addition per kernel offset (the col2im of the row layout)."""
    for kh, kw, off in offs:
        dflat[:, :, off:off + L] += dc5[:, kh, kw]


def _gemm(a, b, out):
    """``out[...] = a @ b`` (a named function so ``--profile`` can time the GEMMs alone)."""
    np.matmul(a, b, out=out)


def _skinny(M, N, K):
    """A GEMM that is memory-bound (one side at most 32 wide) and big enough for OpenBLAS to thread."""
    return min(M, N, K) <= 32 and M * N * K >= SERIAL_GEMM_MNK


def matmul_cpu(a, b, out=None, accumulate_k=True):
    """``a (M, K) @ b (K, N)`` on NumPy arrays; a skinny product is cut into pieces under
    :data:`SERIAL_GEMM_MNK` (along M, else along K with the partial products summed) so it runs
    on the calling thread. ``out`` (M, N), when given, receives the result."""
    M, K = a.shape
    N = b.shape[1]
    if out is None:
        out = np.empty((M, N), dtype=np.result_type(a.dtype, b.dtype))
    if not _skinny(M, N, K):
        if M * N * K >= SERIAL_GEMM_MNK:
            LAST_THREADED_GEMM[0] = time.perf_counter()
        np.matmul(a, b, out=out)
        return out
    if M >= K or not accumulate_k:  # rows are independent: split M
        step = max(1, (SERIAL_GEMM_MNK - 1) // max(1, N * K))
        for m0 in range(0, M, step):
            np.matmul(a[m0:m0 + step], b, out=out[m0:m0 + step])
        return out
    step = max(1, (SERIAL_GEMM_MNK - 1) // max(1, M * N))  # split the inner dimension, sum the parts
    part = np.empty_like(out)
    np.matmul(a[:, :step], b[:step], out=out)
    for k0 in range(step, K, step):
        np.matmul(a[:, k0:k0 + step], b[k0:k0 + step], out=part)
        out += part
    return out


def conv2d_backward(dy, col, x_shape, weight, stride=1, padding=0, need_dx=True, need_bias=True, ws=None,
                    dw_out=None, db_out=None):
    """Gradients of :func:`conv2d_forward`: returns ``(dx or None, dweight, dbias or None)``.

    On the GPU ``dw_out``/``db_out`` (a layer's gradient arrays) receive the GEMM and the sum
    directly, saving two copy kernels; elsewhere the caller copies what is returned."""
    if isinstance(col, CK.DirectCache):  # from the compiled stride-1 CPU forward
        get_array_module(dy, weight)
        return CK.conv2d_backward(dy, col, weight, need_dx, need_bias)
    if isinstance(col, RowColumns):  # from the stride-1 CPU forward
        get_array_module(dy, weight)
        return _conv2d_backward_rows(dy, col, weight, need_dx, need_bias, ws)
    xp = get_array_module(dy, col, weight)
    O, C, KH, KW = weight.shape
    dy2 = dy.transpose(1, 0, 2, 3).reshape(O, -1)  # free when dy came from our CNHW layout
    if xp is not np:
        direct = dw_out is not None and dw_out.flags.c_contiguous and dw_out.dtype == dy2.dtype == col.dtype
        if direct:
            xp.matmul(dy2, col.T, out=dw_out.reshape(O, -1))
            dw = dw_out
        else:
            dw = (dy2 @ col.T).reshape(weight.shape)
        db = None
        if need_bias:
            db = dy2.sum(axis=1, out=db_out) if db_out is not None and db_out.dtype == dy2.dtype else dy2.sum(axis=1)
        dx = None
        if need_dx:
            dcol = weight.reshape(O, -1).T @ dy2
            dx = col2im(dcol, x_shape, (KH, KW), stride, padding, ws=ws)
        return dx, dw, db
    db = dy2.sum(axis=1) if need_bias else None
    # CPU: chunks of samples, as in the forward. dW accumulates over chunks; each chunk's dcol
    # is folded into dx while still in cache, so no full-size dcol is ever allocated.
    N, _, H, W = x_shape
    KH, KW, SH, SW, PH, PW, OH, OW = conv_geometry(H, W, (KH, KW), stride, padding, "conv2d_backward")
    P, R = OH * OW, C * KH * KW
    if col.shape != (R, N * P) or dy2.shape != (O, N * P):
        raise ValueError(f"conv2d_backward: columns {tuple(col.shape)} and gradient {tuple(dy.shape)} do not fit "
                         f"input {tuple(x_shape)} and weight {tuple(weight.shape)}")
    dt = np.result_type(dy.dtype, col.dtype, weight.dtype)
    w2t = weight.reshape(O, R).T
    step = min(N, _chunk_samples(R, P, col.itemsize, O))
    if need_dx:
        dpad = _get(ws, "col2im_pad", (C, N, H + 2 * PH, W + 2 * PW), dt, np, zero=True)

    block = min(N, _block_samples(step, R, P, col.itemsize))

    def run(t, lo, hi):  # samples lo:hi; each thread sums its own dW and folds into its own samples
        dw = np.zeros((O, R), dtype=dt)
        part = np.empty((O, R), dtype=dt)
        if need_dx:
            dcol = _get(ws, f"conv_dcol{t}", (R, block * P), dt, np)
        for b0 in range(lo, hi, block):
            b1 = min(hi, b0 + block)
            for n0 in range(b0, b1, step):
                n1 = min(b1, n0 + step)
                cols = slice(n0 * P, n1 * P)
                _gemm(dy2[:, cols], col[:, cols].T, part)
                dw += part
                if need_dx:
                    _gemm(w2t, dy2[:, cols], dcol[:, (n0 - b0) * P:(n1 - b0) * P])
            if need_dx:  # fold the block's columns while they are still in cache
                dc = dcol[:, :(b1 - b0) * P]
                _col2im_add(dpad[:, b0:b1], dc.reshape(C, KH, KW, b1 - b0, OH, OW), SH, SW)
        return dw

    dw = _sum_in_order(_parallel(run, N, block, col.size // 4))  # a column element is cheap: weigh it 1/4
    dx = dpad[:, :, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3) if need_dx else None
    return dx, dw.reshape(weight.shape), db


def _col2im_add(dpad, c6, SH, SW):
    """``dpad (C, n, Hp, Wp) +=`` the fold of columns ``c6 (C, KH, KW, n, OH, OW)``: KH*KW slice additions."""
    _, KH, KW, _, OH, OW = c6.shape
    for kh in range(KH):
        hs = slice(kh, kh + SH * (OH - 1) + 1, SH)
        for kw in range(KW):
            dpad[:, :, hs, kw:kw + SW * (OW - 1) + 1:SW] += c6[:, kh, kw]


def _pad_input(x, PH, PW, fill, ws, key):
    """Copy ``x`` into a padded buffer filled with ``fill`` (returns ``x`` itself when no padding).
    The border keeps ``fill`` across reuses, so each fill value needs its own ``key``."""
    if PH == 0 and PW == 0:
        return x
    N, C, H, W = x.shape
    xpad = _get(ws, key, (N, C, H + 2 * PH, W + 2 * PW), x.dtype, np)
    if fill != 0:
        xpad.fill(fill)
    xpad[:, :, PH:PH + H, PW:PW + W] = x
    return xpad


def _offsets(KH, KW, SH, SW, OH, OW):
    """For each window offset, the (rows, cols) slices of the padded input it reads."""
    for kh in range(KH):
        for kw in range(KW):
            yield kh * KW + kw, (slice(kh, kh + SH * (OH - 1) + 1, SH), slice(kw, kw + SW * (OW - 1) + 1, SW))


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ws=None):
    """Average pooling ``(N, C, H, W) -> (N, C, OH, OW)``; padding counts as zeros in the mean
    (divisor is always KH*KW, like PyTorch's default ``count_include_pad=True``)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    KH, KW, SH, SW, PH, PW, OH, OW = pool_geometry(H, W, kernel_size, stride, padding, "avg_pool2d")
    if xp is not np:
        return _cuda().avg_pool_forward(x, KH, KW, SH, SW, PH, PW, OH, OW)
    if _compiled(x):
        return CK.avg_pool2d_forward(x, KH, KW, SH, SW, PH, PW, OH, OW)
    xpad = _pad_input(x, PH, PW, 0, ws, "pool_pad_zero")
    # Window offsets summed in row-major order (the CUDA kernel's order too: results agree bit for bit),
    # split over threads by samples; y keeps the input's memory order (CNHW after a conv): no transpose.
    y = np.empty_like(x, shape=(N, C, OH, OW))
    scale = x.dtype.type(1.0 / (KH * KW))
    wins = [w for _, w in _offsets(KH, KW, SH, SW, OH, OW)]

    def run(t, lo, hi):
        out = y[lo:hi]
        xs = xpad[lo:hi]
        np.copyto(out, xs[:, :, wins[0][0], wins[0][1]])
        for hs, wsl in wins[1:]:
            out += xs[:, :, hs, wsl]
        out *= scale

    _parallel(run, N, 1, x.size)
    return y


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, ws=None):
    """Gradient of :func:`avg_pool2d_forward` w.r.t. its input, shape ``x_shape``."""
    xp = get_array_module(dy)
    N, C, H, W = x_shape
    KH, KW, SH, SW, PH, PW, OH, OW = pool_geometry(H, W, kernel_size, stride, padding, "avg_pool2d")
    if xp is not np:
        return _cuda().avg_pool_backward(dy, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    if _compiled(dy):
        return CK.avg_pool2d_backward(dy, x_shape, KH, KW, SH, SW, PH, PW)
    scale = dy.dtype.type(1.0 / (KH * KW))
    if SH == KH and SW == KW and PH == 0 and PW == 0 and OH * KH == H and OW * KW == W:
        # Non-overlapping windows tiling the input: every input pixel gets exactly one value.
        # dx keeps dy's memory order (CNHW when dy came from a conv's col2im), so the conv
        # below reads it as its (O, N*OH*OW) matrix without a transpose copy.
        dx = np.empty_like(dy, shape=tuple(x_shape))

        def run(t, lo, hi):
            for _, (hs, wsl) in _offsets(KH, KW, SH, SW, OH, OW):
                np.multiply(dy[lo:hi], scale, out=dx[lo:hi, :, hs, wsl])

        _parallel(run, N, 1, dx.size)
        return dx
    g = dy * scale
    dpad = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dy.dtype)
    for _, (hs, wsl) in _offsets(KH, KW, SH, SW, OH, OW):
        dpad[:, :, hs, wsl] += g
    return dpad[:, :, PH:PH + H, PW:PW + W]


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, ws=None):
    """Max pooling ``(N, C, H, W) -> (N, C, OH, OW)``; returns ``(y, argmax)``.

    ``argmax`` (int32, same shape as ``y``) is the winning offset ``kh*KW + kw`` inside
    each window. Ties go to the *first* maximum in row-major window order; padding is -inf
    and never wins (padding is at most half the window, so every window sees input).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    KH, KW, SH, SW, PH, PW, OH, OW = pool_geometry(H, W, kernel_size, stride, padding, "max_pool2d")
    if xp is not np:
        return _cuda().max_pool_forward(x, KH, KW, SH, SW, PH, PW, OH, OW)
    if _compiled(x):
        return CK.max_pool2d_forward(x, KH, KW, SH, SW, PH, PW, OH, OW)
    xpad = _pad_input(x, PH, PW, -np.inf, ws, "pool_pad_ninf")
    y = None
    arg = np.zeros((N, C, OH, OW), dtype=np.int32)
    for k, (hs, wsl) in _offsets(KH, KW, SH, SW, OH, OW):
        win = xpad[:, :, hs, wsl]
        if y is None:
            y = win.copy()
            continue
        better = win > y  # strict: an equal later value never replaces the first maximum
        np.copyto(y, win, where=better)
        arg[better] = k
    return y, arg


def max_pool2d_backward(dy, argmax, x_shape, kernel_size, stride=None, padding=0, ws=None):
    """Gradient of :func:`max_pool2d_forward`: each output's gradient goes to its recorded argmax."""
    xp = get_array_module(dy, argmax)
    N, C, H, W = x_shape
    KH, KW, SH, SW, PH, PW, OH, OW = pool_geometry(H, W, kernel_size, stride, padding, "max_pool2d")
    if xp is not np:
        return _cuda().max_pool_backward(dy, argmax, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)
    if _compiled(dy):
        return CK.max_pool2d_backward(dy, argmax, x_shape, KH, KW, SH, SW, PH, PW)
    dpad = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dy.dtype)
    zero = dy.dtype.type(0)
    for k, (hs, wsl) in _offsets(KH, KW, SH, SW, OH, OW):
        dpad[:, :, hs, wsl] += np.where(argmax == k, dy, zero)
    return dpad[:, :, PH:PH + H, PW:PW + W]


def relu_forward(x):
    """``max(x, 0)`` elementwise (a new array, in ``x``'s memory order)."""
    xp = get_array_module(x)
    if xp is not np:
        return xp.maximum(x, 0)
    if _compiled(x):
        return CK.relu_forward(x)
    y = np.empty_like(x)
    _parallel(lambda t, lo, hi: np.maximum(x[lo:hi], 0, out=y[lo:hi]), x.shape[0], 1, x.size)
    return y


def relu_backward(dy, y):
    """Gradient of :func:`relu_forward` given its output ``y``: ``dy * (y > 0)`` (0 at exactly 0)."""
    xp = get_array_module(dy, y)
    if xp is not np:
        if dy.shape == y.shape and _kernel_dtype(dy, y):
            return _cuda().relu_backward(dy, y)  # one kernel instead of a comparison and a product
        return dy * (y > 0)
    if _compiled(dy, y):
        return CK.relu_backward(dy, y)
    dx = np.empty_like(y, dtype=np.result_type(dy.dtype, y.dtype))

    def run(t, lo, hi):
        np.multiply(dy[lo:hi], y[lo:hi] > 0, out=dx[lo:hi])

    _parallel(run, y.shape[0], 1, y.size)
    return dx


def log_softmax(z):
    """Row-wise ``log softmax`` of ``z (N, K)``, stable for any magnitude (log-sum-exp)."""
    xp = get_array_module(z)
    m = z.max(axis=1, keepdims=True)
    s = z - m
    return s - xp.log(xp.exp(s).sum(axis=1, keepdims=True))


def softmax(z):
    """Row-wise softmax of ``z (N, K)``."""
    xp = get_array_module(z)
    e = xp.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def _one_hot_or_check(target, N, K, xp, dtype):
    """``(N, K)`` float targets from integer labels ``(N,)`` or one-hot/probability rows ``(N, K)``."""
    if target.ndim == 1:
        if target.shape[0] != N:
            raise ValueError(f"softmax_cross_entropy: expected {N} labels, got {target.shape[0]}")
        if target.dtype.kind not in "iu":
            raise TypeError(f"softmax_cross_entropy: integer labels expected, got dtype {target.dtype}")
        t = xp.zeros((N, K), dtype=dtype)
        t[xp.arange(N), target] = 1
        return t
    if target.shape != (N, K):
        raise ValueError(f"softmax_cross_entropy: expected labels (N,) or one-hot {(N, K)}, got {tuple(target.shape)}")
    return target.astype(dtype, copy=False)


def softmax_cross_entropy(logits, target):
    """Mean cross-entropy of ``softmax(logits (N, K))`` against integer labels ``(N,)`` or one-hot ``(N, K)``.

    Returns ``(loss, dlogits)``: a 0-d array (kept on the device) and the gradient
    ``(softmax - onehot) / N``.
    """
    xp = get_array_module(logits, target)
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: expected logits (N, K), got {tuple(logits.shape)}")
    N, K = logits.shape
    if target.ndim == 1 and target.dtype.kind in "iu" and target.shape[0] == N:
        if xp is not np and _kernel_dtype(logits):  # one fused kernel (kernels/loss.cu)
            rows, grad = _cuda().softmax_xent(logits, target)
            return rows.mean(), grad
        lsm = log_softmax(logits)
        loss = -lsm[xp.arange(N), target].mean()
        grad = xp.exp(lsm)
        grad[xp.arange(N), target] -= 1
    else:
        t = _one_hot_or_check(target, N, K, xp, logits.dtype)
        lsm = log_softmax(logits)
        loss = -(t * lsm).sum() / N
        grad = xp.exp(lsm) - t
    grad *= logits.dtype.type(1.0 / max(N, 1))  # an empty batch: an empty gradient, not a ZeroDivisionError
    return loss, grad


def euclidean_loss(pred, target):
    """Caffe's Euclidean loss ``sum((pred - target)**2) / (2N)`` over a batch of N rows.

    Returns ``(loss, dpred)`` with ``dpred = (pred - target) / N``.
    """
    get_array_module(pred, target)
    if pred.shape != target.shape:
        raise ValueError(f"euclidean_loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    N = pred.shape[0]
    diff = pred - target.astype(pred.dtype, copy=False)
    loss = (diff * diff).sum() / (2 * N)
    return loss, diff * pred.dtype.type(1.0 / N)
