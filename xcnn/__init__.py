"""xcnn: a from-scratch convolutional network library (NumPy on CPU, CuPy + CUDA kernels on GPU).

The everyday names are here::

    import xcnn
    net = xcnn.build_model("seed-cnn", device="cpu")
    opt = xcnn.SGD(net.parameters(), lr=0.1, momentum=1e-3, weight_decay=1e-3)

The layers of the package: :mod:`xcnn.backend` (devices) -> :mod:`xcnn.cpu` / :mod:`xcnn.cuda`
(implementations) -> :mod:`xcnn.ops` (the ops and their dispatcher) -> :mod:`xcnn.nn` (layers,
losses, network, optimizers, presets, architectures) -> :mod:`xcnn.train` (the loop) and
:mod:`xcnn.interop` (ONNX export and import) -> :mod:`xcnn.apps` and :mod:`xcnn.bench`;
:mod:`xcnn.data`, :mod:`xcnn.viz` and :mod:`xcnn.dist` (data parallelism, which the trainer calls)
to the side.
"""
__version__ = "0.1.0"

from .backend import Device, get_device
from .errors import CheckpointError, ConfigError, DataError, DeviceError, ShapeError, XcnnError
from .nn import (SGD, Adam, AvgPool2D, Conv2D, Euclidean, Flatten, Layer, Linear, MaxPool2D, Network, Parameter,
                 ReLU, Sigmoid, SoftmaxCrossEntropy, Tanh, build_model, load_model)

__all__ = ["__version__", "Device", "get_device", "XcnnError", "ConfigError", "DataError", "CheckpointError",
           "DeviceError", "ShapeError", "Layer", "Parameter", "Conv2D", "Linear", "ReLU", "Sigmoid", "Tanh",
           "AvgPool2D", "MaxPool2D", "Flatten", "SoftmaxCrossEntropy", "Euclidean", "Network", "SGD", "Adam",
           "build_model", "load_model"]
