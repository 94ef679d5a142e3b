"""The applications built on the library: ``evaluate`` (a checkpoint on a test set), ``predict``
(your own digit images), ``visualize`` (feature maps of any layer), ``report`` (the lab report's
whole experiment), and ``export`` and ``import_onnx`` (ONNX out and in, on :mod:`xcnn.interop`).
Each runs as ``python -m xcnn.<name>``."""
