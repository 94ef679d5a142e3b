"""The shape arithmetic in front of a ``Reshape``, evaluated on constants while importing an ONNX graph.

Exporters compute a flatten's target shape at run time: torch's ``x.view(x.size(0), -1)`` becomes
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``. The importer evaluates those small graphs here,
on NumPy arrays, with the batch size kept as the symbol :data:`BATCH` (an object-dtype entry), so a
``Reshape`` can be recognised as a flatten whatever the batch size.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BATCH", "SHAPE_OPS", "evaluate"]

#: ops evaluated on constants (the shape arithmetic in front of a Reshape), never on the data
SHAPE_OPS = ("Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Identity")


class _Batch:
    """The symbolic batch size inside evaluated shape arithmetic."""

    def __repr__(self):
        return "N"


BATCH = _Batch()


def evaluate(op: str, attrs: dict, ins: list, *, opset: int, onnx) -> np.ndarray:
    """The output of shape op ``op`` (one of :data:`SHAPE_OPS`) with attributes ``attrs`` on the
    constant inputs ``ins`` (None for an omitted optional input); ``onnx`` is the onnx module."""
    if op == "Constant":
        (key, value), = attrs.items()
        out = onnx.numpy_helper.to_array(value) if key == "value" else np.array(value)
    elif op == "Shape":
        out = np.array(ins[0].shape, dtype=np.int64)[attrs.get("start", 0):attrs.get("end", ins[0].ndim)]
    elif op == "Gather":
        out = np.take(ins[0], ins[1].astype(np.int64), axis=attrs.get("axis", 0))
    elif op in ("Unsqueeze", "Squeeze"):
        axes = attrs.get("axes") if opset < 13 else (ins[1] if len(ins) > 1 and ins[1] is not None else None)
        if op == "Unsqueeze":
            out = ins[0]
            for a in sorted(int(a) % (ins[0].ndim + len(axes)) for a in axes):
                out = np.expand_dims(out, a)
        else:
            out = np.squeeze(ins[0], axis=None if axes is None else tuple(int(a) for a in axes))
    elif op == "Concat":
        out = np.concatenate([np.atleast_1d(a) for a in ins], axis=attrs["axis"])
    elif op == "Cast":
        out = ins[0] if ins[0].dtype == object else ins[0].astype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]))
    elif op == "Slice":
        data, starts, ends = ins[0], ins[1], ins[2]
        axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
        steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        index = [slice(None)] * data.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            index[int(a)] = slice(int(s), int(e), int(st))
        out = data[tuple(index)]
    elif op == "Identity":
        out = ins[0]
    else:
        raise ValueError(f"{op} is not a shape op ({', '.join(SHAPE_OPS)})")
    return np.asarray(out)
