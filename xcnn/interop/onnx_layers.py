"""How each ONNX op of a layer chain becomes an xcnn layer spec and its weights: the ``_op_<Op>`` methods
of the importer's converter (:mod:`.onnx_convert`), which refuse every attribute xcnn has no
equivalent for, naming the node.
"""
from __future__ import annotations

import numpy as np

from . import OnnxImportError
from .onnx_constants import BATCH

__all__ = ["LayerOps"]

_ACTIVATIONS = {"Relu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "Tanh"}


class LayerOps:
    """The per-op half of the converter. It relies on the converter's ``_const`` (a constant input),
    ``_add`` (append a spec and its weights), ``_advance`` (check the spec against the current
    activation's shape and move on), and its ``act``, ``shape``, ``specs``, ``params``, ``notes``,
    ``last`` and ``static_batch``."""

    def _window(self, node, where, attrs, *, kernel=None):
        """``(kernel, stride, padding)`` of a Conv or pooling node, refusing what xcnn cannot do."""
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if auto_pad not in ("NOTSET", ""):
            raise OnnxImportError(f"{where}: auto_pad={auto_pad} is not supported; export with explicit pads")
        k = tuple(attrs.get("kernel_shape", kernel or ()))
        if kernel is not None and k != tuple(kernel):
            raise OnnxImportError(f"{where}: kernel_shape {list(k)} does not match the weight's {list(kernel)}")
        if len(k) != 2:
            raise OnnxImportError(f"{where}: only 2-D windows are supported, got kernel_shape {list(k)}")
        dil = list(attrs.get("dilations", [1, 1]))
        if any(d != 1 for d in dil):
            raise OnnxImportError(f"{where}: dilations {dil} are not supported (xcnn windows are undilated)")
        if attrs.get("ceil_mode", 0):
            raise OnnxImportError(f"{where}: ceil_mode=1 is not supported (xcnn floors output sizes)")
        strides = tuple(attrs.get("strides", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
            raise OnnxImportError(f"{where}: pads {pads} are not symmetric; xcnn pads both sides alike "
                                  "(top = bottom, left = right)")
        return [int(v) for v in k], [int(v) for v in strides], [int(pads[0]), int(pads[1])]

    # -- layers -------------------------------------------------------------------
    def _op_Conv(self, node, where, attrs):
        w = self._const(node, where, 1, "weight")
        b = self._const(node, where, 2, "bias", optional=True)
        if w.ndim != 4:
            raise OnnxImportError(f"{where}: only 2-D convolutions are supported (weight shape {list(w.shape)})")
        if attrs.get("group", 1) != 1:
            raise OnnxImportError(f"{where}: group={attrs['group']} is not supported (xcnn convolutions are dense)")
        if b is not None and b.shape != (w.shape[0],):
            raise OnnxImportError(f"{where}: bias of shape {list(b.shape)} for {w.shape[0]} output channels")
        kernel, stride, padding = self._window(node, where, attrs, kernel=w.shape[2:])
        spec = {"type": "Conv2D", "name": None, "in_channels": int(w.shape[1]), "out_channels": int(w.shape[0]),
                "kernel_size": kernel, "stride": stride, "padding": padding, "bias": b is not None}
        self._add(spec, {"weight": w, "bias": b})
        self._advance(node, where, spec)

    def _linear(self, node, where, weight, bias):
        if len(self.shape) != 2:
            raise OnnxImportError(f"{where}: multiplies a {len(self.shape)}-D tensor of shape "
                                  f"{list(self.shape)}; xcnn's Linear takes (N, features) -- flatten first")
        spec = {"type": "Linear", "name": None, "in_features": int(weight.shape[1]),
                "out_features": int(weight.shape[0]), "bias": bias is not None}
        self._add(spec, {"weight": weight, "bias": bias})
        self._advance(node, where, spec)
        self.last = (len(self.specs) - 1, self.act)

    def _op_Gemm(self, node, where, attrs):
        B = self._const(node, where, 1, "weight (B)")
        C = self._const(node, where, 2, "bias (C)", optional=True)
        if attrs.get("transA", 0):
            raise OnnxImportError(f"{where}: transA=1 is not supported (xcnn's Linear takes x as (N, in))")
        if B.ndim != 2:
            raise OnnxImportError(f"{where}: B must be a matrix, got shape {list(B.shape)}")
        w = B if attrs.get("transB", 0) else B.T
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        if alpha != 1.0:
            w = w * alpha
            self.notes.append(f"{where}: alpha={alpha} folded into the weight")
        bias = None
        if C is not None:
            out = w.shape[0]
            if C.size not in (1, out) or (C.ndim == 2 and C.shape[0] != 1) or C.ndim > 2:
                raise OnnxImportError(f"{where}: C of shape {list(C.shape)} is not a bias of {out} outputs "
                                      f"(xcnn needs (), ({out},) or (1, {out}))")
            bias = np.broadcast_to(C.reshape(-1), (out,))
            if beta != 1.0:
                bias = bias * beta
                self.notes.append(f"{where}: beta={beta} folded into the bias")
        self._linear(node, where, np.ascontiguousarray(w), None if bias is None else np.ascontiguousarray(bias))

    def _op_MatMul(self, node, where, attrs):
        B = self._const(node, where, 1, "weight")
        if B.ndim != 2:
            raise OnnxImportError(f"{where}: the weight must be a matrix, got shape {list(B.shape)}")
        self._linear(node, where, np.ascontiguousarray(B.T), None)

    def _op_Add(self, node, where, attrs):
        other = node.input[1] if node.input[0] == self.act else node.input[0]
        if other not in self.consts or self.last is None or self.last[1] != self.act \
                or self.params[self.last[0]]["bias"] is not None:
            raise OnnxImportError(f"unsupported op Add in {where}: xcnn imports an Add only as the bias of the "
                                  "MatMul (or bias-free Gemm) right before it")
        i = self.last[0]
        out = self.specs[i]["out_features"]
        c = self.consts[other]
        if c.size not in (1, out) or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
            raise OnnxImportError(f"{where}: adds a constant of shape {list(c.shape)}, not a bias of {out} outputs")
        self.specs[i]["bias"] = True
        self.params[i]["bias"] = np.ascontiguousarray(np.broadcast_to(c.reshape(-1), (out,)))
        self.act = node.output[0]
        self.last = None

    def _activation(self, node, where, attrs):
        spec = {"type": _ACTIVATIONS[node.op_type], "name": None}
        self._add(spec)
        self._advance(node, where, spec)

    _op_Relu = _op_Sigmoid = _op_Tanh = _activation

    def _op_AveragePool(self, node, where, attrs):
        kernel, stride, padding = self._window(node, where, attrs)
        if any(padding) and not attrs.get("count_include_pad", 0):
            raise OnnxImportError(f"{where}: count_include_pad=0 with pads {padding} is not supported (xcnn "
                                  "averages over the whole window, padding counted as zeros)")
        spec = {"type": "AvgPool2D", "name": None, "kernel_size": kernel, "stride": stride, "padding": padding}
        self._add(spec)
        self._advance(node, where, spec)

    def _op_MaxPool(self, node, where, attrs):
        if len(node.output) > 1 and node.output[1]:
            raise OnnxImportError(f"{where}: its Indices output is not supported")
        kernel, stride, padding = self._window(node, where, attrs)
        spec = {"type": "MaxPool2D", "name": None, "kernel_size": kernel, "stride": stride, "padding": padding}
        self._add(spec)
        self._advance(node, where, spec)

    def _op_Flatten(self, node, where, attrs):
        axis = int(attrs.get("axis", 1))
        if axis < 0:
            axis += len(self.shape)
        if axis != 1:
            raise OnnxImportError(f"{where}: axis={attrs.get('axis')} is not supported (xcnn flattens from axis 1)")
        spec = {"type": "Flatten", "name": None}
        self._add(spec)
        self._advance(node, where, spec)

    def _op_Reshape(self, node, where, attrs):
        target = list(self._const(node, where, 1, "target shape").reshape(-1))
        dims = self.shape
        features = int(np.prod(dims[1:]))

        def resolve(i, v):  # -> BATCH, an int, or "infer"
            if v is BATCH:
                return BATCH
            v = int(v)
            if v == 0 and not attrs.get("allowzero", 0):
                return dims[i] if i < len(dims) else v
            if v == -1:
                return "infer"
            if i == 0 and self.static_batch is not None and v == self.static_batch:
                return BATCH
            return v

        r = [resolve(i, v) for i, v in enumerate(target)]
        flat = len(r) == 2 and ((r[0] is BATCH and r[1] in (features, "infer"))
                                or (r[0] == "infer" and r[1] == features))
        if not flat:
            shown = [str(v) for v in target]
            raise OnnxImportError(f"{where}: reshapes {list(map(str, dims))} to [{', '.join(shown)}]; xcnn reads a "
                                  "Reshape only as a flatten to (N, C*H*W)")
        self.notes.append(f"{where}: read as a Flatten")
        if len(dims) == 2:  # already flat: nothing to do
            self.act = node.output[0]
            return
        spec = {"type": "Flatten", "name": None}
        self._add(spec)
        self._advance(node, where, spec)

    def _passthrough(self, node, where, attrs):
        if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
            raise OnnxImportError(f"{where}: its mask output is not supported")
        self.notes.append(f"{where}: dropped (a no-op at inference)")
        self._advance(node, where, None)

    _op_Identity = _op_Dropout = _passthrough
