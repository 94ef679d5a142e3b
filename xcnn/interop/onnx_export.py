"""Export an xcnn network to ONNX: one ONNX node per layer, weights as initializers.

=============  =====================================================================================
xcnn layer     ONNX node (opset 17 by default; any opset from 13 to the installed ``onnx``'s newest)
=============  =====================================================================================
``Conv2D``     ``Conv`` (weight OIHW, optional bias, ``pads`` = padding on both sides, group 1)
``Linear``     ``Gemm`` with ``transB=1`` (xcnn keeps the weight as (out, in), as ONNX's B^T)
``ReLU``...    ``Relu``, ``Sigmoid``, ``Tanh``
``AvgPool2D``  ``AveragePool`` with ``count_include_pad=1`` (xcnn divides by the whole window,
               padding counted as zeros) and ``ceil_mode=0`` (xcnn floors the output size)
``MaxPool2D``  ``MaxPool``, ``ceil_mode=0`` (ONNX pads max pooling with -inf, as xcnn does)
``Flatten``    ``Flatten`` with ``axis=1`` (C order, as xcnn flattens)
=============  =====================================================================================

The graph has one input ``image`` (batch, C, H, W) and one output ``logits`` (batch, classes); the
batch dimension is symbolic, so any batch size runs. Every intermediate tensor is named after its
layer and carries its shape, which ``onnx.checker`` (``full_check``: shape inference included) checks
against ONNX's own shape arithmetic. Float32 networks export as float32 models and float64 ones as
float64 models; ONNX Runtime's CPU provider has no float64 ``Conv`` or ``AveragePool`` kernel, so
pass ``dtype="float32"`` to run a float64 conv network there.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..backend import to_host
from ..errors import ShapeError
from ..extras import require
from ..io import atomic_write_bytes
from ..nn.architecture import network_architecture
from ..nn.layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sigmoid, Tanh
from . import ExportError

__all__ = ["ExportError", "OPSET", "INPUT_NAME", "OUTPUT_NAME", "to_onnx", "export_onnx"]

OPSET = 17
MIN_OPSET = 13  # Gemm, Sigmoid, Tanh and Flatten took their current form in opset 13
INPUT_NAME, OUTPUT_NAME, BATCH = "image", "logits", "batch"
_ACTIVATIONS = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh"}


def _onnx():
    return require("onnx", "onnx", "ONNX export")


def _check_input_shape(input_shape) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if len(shape) != 3 or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
        raise ExportError(f"input_shape must be (C, H, W) with positive ints, got {input_shape!r}")
    return tuple(int(d) for d in shape)


def to_onnx(net, *, input_shape=(1, 28, 28), dtype=None, opset: int = OPSET):
    """The ``onnx.ModelProto`` of ``net`` for inputs of shape (batch, *input_shape*) (not yet checked)."""
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    if not net.layers:
        raise ExportError(f"network {net.name!r} has no layers")
    dtype = np.dtype(net.dtype if dtype is None else dtype)
    if dtype not in (np.float32, np.float64):
        raise ExportError(f"dtype must be float32 or float64, got {dtype}")
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"opset must be an int from {MIN_OPSET} to {newest} (the installed onnx's newest), "
                          f"got {opset!r}")
    input_shape = _check_input_shape(input_shape)
    try:
        shapes = net.output_shapes((1, *input_shape))
    except ShapeError as exc:
        shown = ", ".join(map(str, input_shape))
        raise ExportError(f"network {net.name!r} does not take inputs of shape (batch, {shown}): {exc}; "
                          "pass the shape it takes as input_shape=(C, H, W)") from None
    elem = helper.np_dtype_to_tensor_dtype(dtype)

    def value(name, shape):
        return helper.make_tensor_value_info(name, elem, [BATCH, *shape[1:]])

    def constant(name, array):
        return numpy_helper.from_array(np.ascontiguousarray(to_host(array), dtype=dtype), name)

    def weighted_inputs(x, layer):
        """A Conv or Gemm node's inputs: ``x``, the weight and the bias if any (their initialisers go to ``inits``)."""
        ins = [x, f"{layer.name}.weight"]
        inits.append(constant(ins[1], layer.weight.data))
        if layer.bias is not None:
            ins.append(f"{layer.name}.bias")
            inits.append(constant(ins[2], layer.bias.data))
        return ins

    nodes, inits, infos = [], [], []
    x = INPUT_NAME
    for i, (layer, shape) in enumerate(zip(net.layers, shapes)):
        y = OUTPUT_NAME if i == len(net.layers) - 1 else layer.name
        kind = type(layer)
        if kind is Conv2D:
            ins = weighted_inputs(x, layer)
            ph, pw = layer.padding
            node = helper.make_node("Conv", ins, [y], name=layer.name, kernel_shape=list(layer.kernel_size),
                                    strides=list(layer.stride), pads=[ph, pw, ph, pw], dilations=[1, 1], group=1)
        elif kind is Linear:
            node = helper.make_node("Gemm", weighted_inputs(x, layer), [y], name=layer.name, transB=1)
        elif kind in _ACTIVATIONS:
            node = helper.make_node(_ACTIVATIONS[kind], [x], [y], name=layer.name)
        elif kind in (AvgPool2D, MaxPool2D):
            ph, pw = layer.padding
            window = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride), pads=[ph, pw, ph, pw],
                          ceil_mode=0)
            if kind is AvgPool2D:
                node = helper.make_node("AveragePool", [x], [y], name=layer.name, count_include_pad=1, **window)
            else:
                node = helper.make_node("MaxPool", [x], [y], name=layer.name, **window)
        elif kind is Flatten:
            node = helper.make_node("Flatten", [x], [y], name=layer.name, axis=1)
        else:
            raise ExportError(f"layer {layer.name!r} ({type(layer).__name__}) has no ONNX export")
        nodes.append(node)
        if y != OUTPUT_NAME:
            infos.append(value(y, shape))
        x = y

    graph = helper.make_graph(nodes, net.name, [value(INPUT_NAME, (1, *input_shape))], [value(OUTPUT_NAME, shapes[-1])],
                              initializer=inits, value_info=infos,
                              doc_string=f"xcnn network {net.name!r}: {len(net.layers)} layers, "
                                         f"{net.num_parameters():,} parameters")
    opsets = [helper.make_opsetid("", int(opset))]
    from .. import __version__  # noqa: PLC0415  (the package's version, read when a model is made)

    model = helper.make_model(graph, opset_imports=opsets, producer_name="xcnn", producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(model, {"xcnn.network": net.name,
                                   "xcnn.architecture": json.dumps(network_architecture(net)),
                                   "xcnn.input_shape": json.dumps(list(input_shape))})
    return model


def export_onnx(net, path, *, input_shape=(1, 28, 28), dtype=None, opset: int = OPSET) -> Path:
    """Write ``net`` as an ONNX model to ``path`` atomically, after ``onnx.checker.check_model`` (full
    check, shape inference included) has passed; returns the path."""
    onnx = _onnx()
    model = to_onnx(net, input_shape=input_shape, dtype=dtype, opset=opset)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:  # pragma: no cover - a bug
        raise ExportError(f"the exported model of {net.name!r} fails onnx.checker: {exc}") from None
    return atomic_write_bytes(path, model.SerializeToString())
