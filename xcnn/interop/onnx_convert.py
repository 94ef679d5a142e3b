"""The converter behind :func:`xcnn.interop.onnx_import.convert`: walks an ONNX graph node by node,
keeping the current activation and its shape; each op of the chain becomes an xcnn layer spec (see
:mod:`xcnn.nn.architecture`) with its weights (:mod:`.onnx_layers`), and the shape arithmetic on
the way is evaluated on constants (:mod:`.onnx_constants`). What is supported and what is refused
is listed in :mod:`.onnx_import`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError
from ..extras import require
from ..nn.architecture import ArchitectureError, build_layers, build_network
from . import OnnxImportError
from .onnx_constants import BATCH, SHAPE_OPS, evaluate
from .onnx_layers import LayerOps

__all__ = ["Imported", "SUPPORTED_OPS", "convert"]

SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", "Add", "Relu", "Sigmoid", "Tanh", "AveragePool", "MaxPool",
                 "Flatten", "Reshape", "Identity", "Dropout")


@dataclass
class Imported:
    """The result of :func:`convert`: the network, the (C, H, W) input it was built for, and notes on
    what was folded or dropped (a Dropout, a Reshape read as a flatten, Gemm's alpha ...)."""

    network: object
    input_shape: tuple
    notes: list = field(default_factory=list)


def _onnx():
    return require("onnx", "onnx", "ONNX import")


class _Converter(LayerOps):
    def __init__(self, model):
        self.onnx = onnx = _onnx()
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.graph = model.graph
        self.consts = {t.name: self.numpy_helper.to_array(t) for t in self.graph.initializer}
        if len(self.graph.sparse_initializer):
            raise OnnxImportError("sparse initializers are not supported")
        self.specs: list[dict] = []   # layer specs, in order
        self.params: list[dict] = []  # their weights: {"weight": ..., "bias": ...}
        self.notes: list[str] = []
        self.last = None              # (spec index, tensor name) of the last Linear made, for a bias Add

    # -- the graph's input ----------------------------------------------------
    def read_input(self):
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(self.graph.output) != 1:
            raise OnnxImportError(f"xcnn imports graphs with one input and one output, this one has inputs "
                                  f"{[i.name for i in inputs]} and outputs {[o.name for o in self.graph.output]}")
        inp = inputs[0]
        tensor = inp.type.tensor_type
        elem = {1: np.float32, 11: np.float64}.get(tensor.elem_type)
        if elem is None:
            raise OnnxImportError(f"input {inp.name!r} has element type "
                                  f"{self.onnx.TensorProto.DataType.Name(tensor.elem_type)}; xcnn networks are "
                                  "float32 or float64")
        self.dtype = np.dtype(elem)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if len(dims) not in (2, 4) or any(d is None or d < 1 for d in dims[1:]):
            shown = [d if d is not None else "?" for d in dims]
            raise OnnxImportError(f"input {inp.name!r} has shape {shown}; xcnn needs (N, C, H, W) or (N, F) "
                                  "with every dimension but the batch fixed")
        self.static_batch = dims[0]  # None when symbolic
        if len(dims) == 4:
            self.input_shape = tuple(dims[1:])
        else:
            F = dims[1]
            side = math.isqrt(F)
            self.input_shape = (1, side, side) if side * side == F else (F, 1, 1)
            self._add({"type": "Flatten", "name": None})
            self.notes.append(f"input {inp.name!r} is (N, {F}): read as images {self.input_shape} behind a Flatten")
        self.act = inp.name
        self.shape = (BATCH, *dims[1:])  # the current activation's shape (batch symbolic)
        self.output = self.graph.output[0].name

    # -- helpers ----------------------------------------------------------------
    def _add(self, spec, params=None):
        self.specs.append(spec)
        self.params.append(params or {})

    def _attrs(self, node) -> dict:
        return {a.name: self.helper.get_attribute_value(a) for a in node.attribute}

    def _const(self, node, where, i, label, *, optional=False):
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if optional:
                return None
            raise OnnxImportError(f"{where}: needs its input {i} ({label})")
        if name not in self.consts:
            raise OnnxImportError(f"{where}: its {label} {name!r} is computed at run time; xcnn needs it "
                                  "to be a constant (an initializer)")
        return self.consts[name]

    def _advance(self, node, where, spec):
        """Check that ``spec`` takes the current activation and move on to its output."""
        if spec is not None:
            try:
                (layer,) = build_layers([spec], dtype=self.dtype)
                self.shape = (BATCH, *layer.output_shape((1, *self.shape[1:]))[1:])
            except (ArchitectureError, ShapeError) as exc:
                raise OnnxImportError(f"{where}: {exc}") from None
        self.act = node.output[0]

    # -- one node -----------------------------------------------------------------
    def node(self, k, node):
        op = node.op_type
        where = f"node {node.name!r} ({op})" if node.name else f"node #{k} ({op})"
        if node.domain not in ("", "ai.onnx"):
            raise OnnxImportError(f"unsupported op {node.domain}.{op} in {where}: xcnn imports only standard "
                                  f"ONNX ops ({', '.join(SUPPORTED_OPS)})")
        if self.act not in node.input:
            return self._constant_node(node, where)
        if op == "Shape":
            return self._shape_of_activation(node)
        if list(node.input).count(self.act) != 1 or (node.input[0] != self.act and op != "Add"):
            raise OnnxImportError(f"{where} reads the activation {self.act!r} in an unsupported position")
        attrs = self._attrs(node)
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise OnnxImportError(f"unsupported op {op} in {where}; xcnn imports {', '.join(SUPPORTED_OPS)}")
        handler(node, where, attrs)

    # -- constants: shape arithmetic ------------------------------------------------
    def _shape_of_activation(self, node):
        attrs = self._attrs(node)
        batch = BATCH if self.static_batch is None else self.static_batch
        dims = [batch, *self.shape[1:]]
        start, end = attrs.get("start", 0), attrs.get("end", len(dims))
        self.consts[node.output[0]] = np.array(dims[start:end], dtype=object)

    def _constant_node(self, node, where):
        op = node.op_type
        for name in node.input:
            if name and name not in self.consts:
                if op in SUPPORTED_OPS or op in SHAPE_OPS:
                    raise OnnxImportError(f"{where} reads {name!r}, which is neither a constant nor the current "
                                          f"activation {self.act!r}: xcnn imports a single chain of layers (no "
                                          "branches or skip connections)")
                raise OnnxImportError(f"unsupported op {op} in {where}; xcnn imports {', '.join(SUPPORTED_OPS)}")
        if op not in SHAPE_OPS:
            raise OnnxImportError(f"unsupported op {op} in {where}; xcnn imports {', '.join(SUPPORTED_OPS)} "
                                  f"(and evaluates {', '.join(SHAPE_OPS)} on constants)")
        ins = [self.consts[n] if n else None for n in node.input]
        try:
            self.consts[node.output[0]] = evaluate(op, self._attrs(node), ins, opset=self.opset, onnx=self.onnx)
        except (IndexError, KeyError, TypeError, ValueError) as exc:  # a malformed shape computation
            raise OnnxImportError(f"{where}: cannot evaluate it on its constants ({type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None

    # -- the result ---------------------------------------------------------------------
    def finish(self, name):
        if self.act != self.output:
            raise OnnxImportError(f"the graph's output {self.output!r} is not the end of its layer chain "
                                  f"(the chain ends at {self.act!r})")
        if not self.specs:
            raise OnnxImportError("the graph holds no layer xcnn can represent")
        try:
            net = build_network(self.specs, name=name, dtype=self.dtype)
        except ArchitectureError as exc:  # pragma: no cover - every spec was built once in _advance
            raise OnnxImportError(str(exc)) from None
        for layer, params in zip(net.layers, self.params):
            for key in ("weight", "bias"):
                if params.get(key) is not None:
                    p = getattr(layer, key)
                    p.data[...] = np.asarray(params[key], dtype=self.dtype).reshape(p.data.shape)
        return net


def convert(model, *, name: str | None = None) -> Imported:
    """Convert a checked ``onnx.ModelProto`` (see :func:`read_model`) into an :class:`Imported`."""
    conv = _Converter(model)
    conv.read_input()
    for k, node in enumerate(conv.graph.node):
        conv.node(k, node)
    props = {p.key: p.value for p in model.metadata_props}
    name = name or props.get("xcnn.network") or model.graph.name or "onnx-model"
    return Imported(conv.finish(name), conv.input_shape, conv.notes)
