"""A network's architecture as plain JSON, so a checkpoint can rebuild any network, not only a preset.

A *layer spec* is a dict holding the layer's type, its name and its constructor arguments::

    {"type": "Conv2D", "name": "conv1", "in_channels": 1, "out_channels": 4,
     "kernel_size": [5, 5], "stride": [1, 1], "padding": [2, 2], "bias": true}

:func:`layer_spec` describes a layer, :func:`build_layers` builds fresh layers from specs (weights
are placeholders until a checkpoint's parameters are loaded), and :func:`save_network` writes a
checkpoint whose ``meta["architecture"]`` holds the specs. :func:`xcnn.nn.models.load_model`
rebuilds from that list when a checkpoint carries one (an imported ONNX model, say), and from the
preset name otherwise, so older checkpoints keep loading.

Why a table here rather than a method on every layer: the layers stay free of serialisation
concerns, and the whole format (what is saved, what is accepted back) reads in one place.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sigmoid, Tanh
from .network import Network

__all__ = ["ArchitectureError", "LAYER_TYPES", "layer_spec", "network_architecture", "build_layers",
           "build_network", "save_network"]


class ArchitectureError(ConfigError):
    """A layer that cannot be described, or a spec that cannot be built."""


#: type name -> (class, constructor arguments a spec carries besides "type" and "name")
LAYER_TYPES = {
    "Conv2D": (Conv2D, ("in_channels", "out_channels", "kernel_size", "stride", "padding", "bias")),
    "Linear": (Linear, ("in_features", "out_features", "bias")),
    "ReLU": (ReLU, ()),
    "Sigmoid": (Sigmoid, ()),
    "Tanh": (Tanh, ()),
    "AvgPool2D": (AvgPool2D, ("kernel_size", "stride", "padding")),
    "MaxPool2D": (MaxPool2D, ("kernel_size", "stride", "padding")),
    "Flatten": (Flatten, ()),
}

#: layers whose constructor takes ``dtype`` and ``rng`` (they own parameters)
_WITH_PARAMETERS = ("Conv2D", "Linear")


def _json_value(v):
    if isinstance(v, tuple):
        return [int(t) for t in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    return int(v)


def layer_spec(layer) -> dict:
    """``{"type", "name", <constructor arguments>}`` of an xcnn layer, JSON-ready."""
    kind = type(layer).__name__
    entry = LAYER_TYPES.get(kind)
    if entry is None or type(layer) is not entry[0]:
        raise ArchitectureError(f"cannot describe layer {layer!r} of type {kind}: an architecture holds only "
                                f"{', '.join(LAYER_TYPES)}")
    spec = {"type": kind, "name": layer.name}
    for arg in entry[1]:
        spec[arg] = (layer.bias is not None) if arg == "bias" else _json_value(getattr(layer, arg))
    return spec


def network_architecture(net) -> list[dict]:
    """The layer specs of every layer of ``net``, in order."""
    return [layer_spec(layer) for layer in net.layers]


def build_layers(specs, *, dtype=np.float32) -> list:
    """Fresh layers from a list of specs (parameters in ``dtype``, values to be loaded afterwards)."""
    if not isinstance(specs, (list, tuple)) or not specs:
        raise ArchitectureError(f"an architecture is a non-empty list of layer specs, got {type(specs).__name__}")
    rng = np.random.default_rng(0)  # placeholder weights: deterministic, overwritten by load_state_dict
    layers = []
    for i, spec in enumerate(specs):
        where = f"architecture layer {i}"
        if not isinstance(spec, dict) or "type" not in spec:
            raise ArchitectureError(f"{where}: expected a dict with a 'type', got {spec!r}")
        kind = spec["type"]
        if kind not in LAYER_TYPES:
            raise ArchitectureError(f"{where}: unknown layer type {kind!r}; known types: {', '.join(LAYER_TYPES)}")
        cls, args = LAYER_TYPES[kind]
        given = set(spec) - {"type", "name"}
        missing, extra = sorted(set(args) - given), sorted(given - set(args))
        if missing or extra:
            raise ArchitectureError(f"{where} ({kind}): missing arguments {missing}, unexpected {extra}")
        kwargs = {a: tuple(spec[a]) if isinstance(spec[a], list) else spec[a] for a in args}
        if kind in _WITH_PARAMETERS:
            kwargs.update(dtype=dtype, rng=rng)
        try:
            layers.append(cls(**kwargs, name=spec.get("name")))
        except (TypeError, ValueError) as exc:
            raise ArchitectureError(f"{where} ({kind}): {exc}") from None
    return layers


def build_network(specs, *, name: str = "network", dtype=np.float32) -> Network:
    """A :class:`~xcnn.nn.network.Network` built from ``specs``."""
    layers = build_layers(specs, dtype=dtype)
    try:
        return Network(layers, name=name)
    except (TypeError, ValueError) as exc:
        raise ArchitectureError(f"architecture of {name!r}: {exc}") from None


def save_network(net, path, optimizer=None, meta: dict | None = None):
    """``net.save`` with ``meta["architecture"]`` filled in, so :func:`xcnn.nn.models.load_model` can
    rebuild the network whatever it is. Returns the path written (atomically)."""
    return net.save(path, optimizer, meta={**(meta or {}), "architecture": network_architecture(net)})
