"""The applications built on the library: ``evaluate`` (a checkpoint on a test set), ``predict``
(your own digit images), ``visualize`` (feature maps of any layer) and ``report`` (the lab report's
whole experiment). Each runs as ``python -m xcnn.<name>``."""
