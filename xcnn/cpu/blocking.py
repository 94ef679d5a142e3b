"""How the NumPy convolutions cut a batch: chunks whose GEMM stays off OpenBLAS's thread pool, blocks
whose columns stay in the L2 cache, and the order partial weight gradients are summed in."""
from __future__ import annotations

from . import config

__all__ = ["chunk_samples", "block_samples", "sum_in_order"]


def chunk_samples(rows: int, pixels: int, itemsize: int, out_rows: int = 1) -> int:
    """How many samples' columns (``rows`` x ``pixels`` each) fit in ``chunk_bytes`` and keep the
    chunk's GEMM (``out_rows`` x ``rows`` x samples*``pixels``) under ``serial_gemm_mnk``."""
    cfg = config.get()
    by_bytes = cfg.chunk_bytes // max(1, rows * pixels * itemsize)
    by_flops = (cfg.serial_gemm_mnk - 1) // max(1, out_rows * rows * pixels)
    return max(1, min(by_bytes, by_flops))


def block_samples(step: int, rows: int, pixels: int, itemsize: int) -> int:
    """A multiple of ``step`` samples whose columns fit in ``chunk_bytes`` (at least ``step``): im2col
    fills a block per call (per-call overhead), the GEMMs take it ``step`` samples at a time."""
    return step * max(1, config.get().chunk_bytes // max(1, step * rows * pixels * itemsize))


def sum_in_order(parts):
    """The threads' partial weight gradients summed in range order (into the first), so the result
    does not depend on thread timing."""
    total = parts[0]
    for p in parts[1:]:
        total += p
    return total
