"""The applications built on the library: ``evaluate`` (a checkpoint on a test set), ``predict``
(your own digit images), ``visualize`` (feature maps of any layer), ``report`` (the lab report's
whole experiment), ``export`` and ``import_onnx`` (ONNX out and in, on :mod:`xcnn.interop`) and
``demo`` (the live draw-a-digit page, a package of its own). Each runs as ``python -m xcnn.<name>``."""
