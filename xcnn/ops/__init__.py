"""Pure array ops with explicit forward and backward passes, on NumPy and CuPy arrays alike.

Each op validates its inputs once, then the dispatcher (:mod:`._dispatch`) picks the
implementation from the arrays -- CUDA kernels for CuPy arrays (with their GPU made current), the
compiled CPU kernels or NumPy for host arrays. Nothing outside this package decides NumPy vs CuPy.

Shapes use one set of names: N (batch), C (channels), H, W, KH, KW (window), SH, SW (stride),
PH, PW (padding), OH, OW (output). Images are NCHW.
"""
from ..cpu.workspace import Workspace
from ._dispatch import BACKENDS, profile_hook, set_profile_hook
from .conv import ConvCache, col2im, conv2d_backward, conv2d_forward, im2col
from .elementwise import (relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, tanh_backward,
                          tanh_forward)
from .geometry import conv_geometry, conv_output_size, pair, pool_geometry
from .linear import linear_backward, linear_forward
from .loss import euclidean_loss, log_softmax, one_hot, softmax, softmax_cross_entropy
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from .update import adam_update, sgd_prepare, sgd_update

__all__ = [
    "Workspace", "BACKENDS", "set_profile_hook", "profile_hook",
    "pair", "conv_output_size", "conv_geometry", "pool_geometry",
    "ConvCache", "im2col", "col2im", "conv2d_forward", "conv2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward", "max_pool2d_backward",
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "linear_forward", "linear_backward",
    "softmax", "log_softmax", "softmax_cross_entropy", "euclidean_loss", "one_hot",
    "sgd_update", "sgd_prepare", "adam_update",
]
