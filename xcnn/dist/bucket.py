"""Each rank's share of a global batch, and the flat buffer the gradients live in.

**The batch split.** ``--batch-size B`` stays the *global* batch. A batch of ``n`` samples (``n = B``,
or fewer for the last batch of an epoch) is cut into contiguous shares in rank order, and when ``n``
does not divide by the number of ranks ``N`` the first ``n mod N`` ranks take one sample more
(:func:`share`): B = 50 on 3 ranks is 17 + 17 + 16. A rank whose share is empty (a last batch smaller
than ``N``) contributes zeros. Each rank computes the mean gradient ``g_r`` of its ``n_r`` samples and
weights it by ``n_r / n``; the sum over ranks is ``sum_r (n_r / n) g_r = (1/n) sum_i grad_i``, the
single-process mean gradient exactly (in exact arithmetic; in floating point the summation order
differs, so results agree to rounding: a relative 1e-9 after an epoch in float64 is tested).

**The bucket.** Every parameter's gradient is a view of one contiguous buffer per (dtype, device)
(:class:`GradientBucket`): the layers' backward passes write straight into it (they write gradients
in place), one in-place multiply weights it, one all-reduce sums it, and the optimizer reads the
views. Copying the gradients in and out instead would cost two passes over the parameters and, on a
GPU, two kernel launches per tensor per step (measured and modelled in ``benchmarks/scaling.md``).
A gradient array replaced behind the bucket's back (a checkpoint load, ``.to()``) is noticed at the
next step by identity and re-attached.
"""
from __future__ import annotations

import numpy as np

from ..backend import device_of, zeros_like

__all__ = ["share", "GradientBucket"]


def share(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous slice ``[lo, hi)`` of ``n`` items split over ``size`` ranks: the
    first ``n % size`` ranks get ``n // size + 1`` items, the others ``n // size``."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"share: need 0 <= rank < size, got rank {rank} of {size}")
    base, extra = divmod(int(n), size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class GradientBucket:
    """One flat buffer per (dtype, device) with a slot for every parameter, in parameter order.

    :meth:`attach` makes the parameters' gradients views of their slots (what a training step uses);
    :meth:`pack` copies a parameter field (``"grad"`` or ``"data"``) in and :meth:`unpack` copies it
    back out (the broadcast of rank 0's weights)."""

    def __init__(self, params):
        self.params = list(params)
        groups: dict[tuple, list] = {}
        for p in self.params:
            groups.setdefault((np.dtype(p.data.dtype).str, str(device_of(p.data))), []).append(p)
        self.groups = []  # (buffer, [(param, lo, hi), ...])
        for plist in groups.values():
            slots, off = [], 0
            for p in plist:
                slots.append((p, off, off + int(p.data.size)))
                off += int(p.data.size)
            self.groups.append((zeros_like(plist[0].data, shape=(off,)), slots))
        self._views: list | None = None

    @property
    def buffers(self) -> list:
        return [buf for buf, _ in self.groups]

    @property
    def nbytes(self) -> int:
        return sum(int(buf.nbytes) for buf in self.buffers)

    def pack(self, field: str = "grad") -> None:
        for buf, slots in self.groups:
            for p, lo, hi in slots:
                buf[lo:hi] = getattr(p, field).reshape(-1)

    def unpack(self, field: str = "grad") -> None:
        for buf, slots in self.groups:
            for p, lo, hi in slots:
                dst = getattr(p, field)
                dst[...] = buf[lo:hi].reshape(dst.shape)

    def zero(self) -> None:
        for buf in self.buffers:
            buf.fill(0)

    def attach(self) -> None:
        """Make every gradient a view of its slot, keeping its values."""
        for buf, slots in self.groups:
            for p, lo, hi in slots:
                view = buf[lo:hi].reshape(p.data.shape)
                view[...] = p.grad
                p.grad = view
        self._views = [p.grad for p in self.params]

    def attached(self) -> bool:
        """True while every gradient is still the view :meth:`attach` made (identity, no device work)."""
        return self._views is not None and all(p.grad is v for p, v in zip(self.params, self._views))

    def scale(self, factor: float) -> None:
        """Multiply every slot by ``factor``, in place (one pass, one launch per buffer)."""
        for buf in self.buffers:
            buf *= buf.dtype.type(factor)
