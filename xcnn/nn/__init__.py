"""The network: layers (parameters, forward, backward), losses, the sequential network, optimizers,
the model presets and architectures (the layer specs a checkpoint can carry). No device logic lives
here: the math is in :mod:`xcnn.ops`, which takes the array module -- and the GPU -- from the arrays."""
from .architecture import ArchitectureError, build_network, network_architecture, save_network
from .layer import Layer, Parameter
from .layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sigmoid, Tanh
from .losses import Euclidean, SoftmaxCrossEntropy
from .models import PRESETS, build_model, load_model
from .network import Network
from .optim import SGD, Adam, Optimizer, get_optimizer

__all__ = ["Layer", "Parameter", "Conv2D", "Linear", "ReLU", "Sigmoid", "Tanh", "AvgPool2D", "MaxPool2D",
           "Flatten", "SoftmaxCrossEntropy", "Euclidean", "Network", "SGD", "Adam", "Optimizer", "get_optimizer",
           "PRESETS", "build_model", "load_model", "ArchitectureError", "build_network", "network_architecture",
           "save_network"]
