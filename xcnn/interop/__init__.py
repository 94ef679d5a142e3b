"""Interchange with other frameworks: ONNX export (:mod:`.onnx_export`) and import (:mod:`.onnx_import`,
built on :mod:`.onnx_convert`, :mod:`.onnx_layers` and :mod:`.onnx_constants`), and the comparison
with ONNX Runtime (:mod:`.runtime`).

All of it needs the ``onnx`` extra (``pip install 'xcnn[onnx]'``); importing this package needs
nothing. It sits above :mod:`xcnn.nn` (networks, layers, architectures) and below :mod:`xcnn.apps`.
"""
from ..errors import CheckpointError, ConfigError

__all__ = ["ExportError", "OnnxImportError"]


class ExportError(ConfigError):
    """A network, input shape, dtype or opset that cannot be exported to ONNX."""


class OnnxImportError(CheckpointError):
    """An ONNX model that cannot be read, or that xcnn cannot represent (with the op and node at fault)."""
