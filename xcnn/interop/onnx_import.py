"""Build an xcnn network from an ONNX graph: a chain of the ops xcnn's layers compute.

=====================================  =============================================================
ONNX                                   xcnn
=====================================  =============================================================
``Conv`` (2-D, group 1, no dilation)   ``Conv2D`` (symmetric pads only)
``Gemm``                               ``Linear``; ``transB`` either way, ``alpha``/``beta`` folded
                                       into the weight and bias; ``transA=1`` is refused
``MatMul`` (+ ``Add`` of a bias)       ``Linear`` (weight = B^T; the bias from the ``Add`` after it)
``Relu``, ``Sigmoid``, ``Tanh``        ``ReLU``, ``Sigmoid``, ``Tanh``
``AveragePool``                        ``AvgPool2D`` (``count_include_pad=1``, or no padding at all)
``MaxPool``                            ``MaxPool2D``
``Flatten`` (axis 1)                   ``Flatten``
``Reshape`` to (N, C*H*W)              ``Flatten``: its target shape may be a constant or the small
                                       ``Shape -> Gather -> Unsqueeze -> Concat`` graph torch emits
                                       for ``x.view(x.size(0), -1)``; it is evaluated symbolically
                                       (the batch size stays a symbol) and must equal a flatten
``Identity``, ``Dropout``              nothing (inference no-ops)
=====================================  =============================================================

Anything else is refused with an error naming the op and the node; so are attributes xcnn has no
equivalent for (dilations, groups, ``ceil_mode=1``, ``count_include_pad=0`` with padding,
``auto_pad`` other than ``NOTSET``, asymmetric pads). The graph must be one chain from its one
input (N, C, H, W) -- or (N, F), read as a one-channel image behind a ``Flatten`` -- to its one
output. The network is float32 or float64, as the graph's input.
"""
from __future__ import annotations

from pathlib import Path

from ..extras import require
from . import OnnxImportError
from .onnx_convert import SUPPORTED_OPS, Imported, convert

__all__ = ["OnnxImportError", "Imported", "SUPPORTED_OPS", "read_model", "convert", "import_onnx"]


def _onnx():
    return require("onnx", "onnx", "ONNX import")


def _first_line(exc) -> str:
    """``Type: first line of the message`` (a one-line error, whatever the library said)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def read_model(source):
    """An ``onnx.ModelProto`` from a path, bytes or a model, checked by ``onnx.checker``."""
    onnx = _onnx()
    if isinstance(source, onnx.ModelProto):
        model = source
    elif isinstance(source, (bytes, bytearray)):
        try:
            model = onnx.load_from_string(bytes(source))
        except Exception as exc:
            raise OnnxImportError(f"not a readable ONNX model ({_first_line(exc)})") from None
    else:
        path = Path(source)
        if not path.is_file():
            raise OnnxImportError(f"ONNX model {str(path)!r} does not exist")
        try:
            model = onnx.load(str(path))
        except Exception as exc:
            raise OnnxImportError(f"{str(path)!r} is not a readable ONNX model ({_first_line(exc)})") from None
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise OnnxImportError(f"the ONNX model is not valid: {_first_line(exc).split(': ', 1)[-1]}") from None
    return model


def import_onnx(source, *, name: str | None = None):
    """An xcnn :class:`~xcnn.nn.network.Network` computing the ONNX model ``source`` (path, bytes or model)."""
    return convert(read_model(source), name=name).network
