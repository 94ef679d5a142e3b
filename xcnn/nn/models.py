"""Model presets. Weights are drawn on the host from ``seed`` (so CPU and GPU start identical).

================  ============================================================  ==========  ===========================
preset            structure                                                      parameters  initialisation
================  ============================================================  ==========  ===========================
``seed-cnn``      conv5x5 1->4 p2, ReLU, avgpool2, conv3x3 4->8 p1, ReLU,         4,330       the report's: conv N(0,1),
                  avgpool2, flatten 392, linear 392->10                                      linear N(0, 0.1^2), bias 0
``mlp2``          784-400-200-10, ReLU                                            396,210     the report's framework:
                                                                                             linear N(0, 0.1^2), bias 0
``mlp1``          784-400-10, ReLU                                                318,010     as mlp2
``lenet5``        conv5x5 1->6 p2, ReLU, maxpool2, conv5x5 6->16, ReLU,           61,706      He (N(0, 2/fan_in)), bias 0
                  maxpool2, 400-120-84-10 with ReLU
================  ============================================================  ==========  ===========================
"""
from __future__ import annotations

import numpy as np

from ..backend import get_device
from ..errors import CheckpointError, ConfigError
from .architecture import ArchitectureError, build_network
from .layers import AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU
from .network import Network
from .serialize import load_checkpoint

__all__ = ["PRESETS", "build_model", "load_model", "PARAMETER_COUNTS"]

PARAMETER_COUNTS = {"seed-cnn": 4330, "mlp2": 396210, "mlp1": 318010, "lenet5": 61706}


# The report's framework drew conv weights N(0, 1) and linear weights N(0, 0.1^2); ``None`` = He.
REPORT_STD = {"conv": 1.0, "linear": 0.1}
INITS = ("report", "he")


def _std(init, kind):
    return REPORT_STD[kind] if init == "report" else None


def _seed_cnn(rng, dtype, init):
    return [
        Conv2D(1, 4, 5, padding=2, weight_std=_std(init, "conv"), rng=rng, dtype=dtype),
        ReLU(),
        AvgPool2D(2),
        Conv2D(4, 8, 3, padding=1, weight_std=_std(init, "conv"), rng=rng, dtype=dtype),
        ReLU(),
        AvgPool2D(2),
        Flatten(),
        Linear(392, 10, weight_std=_std(init, "linear"), rng=rng, dtype=dtype),
    ]


def _mlp(sizes, rng, dtype, init):
    layers = [Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b, weight_std=_std(init, "linear"), rng=rng, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return layers


def _lenet5(rng, dtype, init):
    c, f = _std(init, "conv"), _std(init, "linear")
    return [
        Conv2D(1, 6, 5, padding=2, weight_std=c, rng=rng, dtype=dtype), ReLU(), MaxPool2D(2),
        Conv2D(6, 16, 5, weight_std=c, rng=rng, dtype=dtype), ReLU(), MaxPool2D(2),
        Flatten(),
        Linear(400, 120, weight_std=f, rng=rng, dtype=dtype), ReLU(),
        Linear(120, 84, weight_std=f, rng=rng, dtype=dtype), ReLU(),
        Linear(84, 10, weight_std=f, rng=rng, dtype=dtype),
    ]


#: name -> (description, builder(rng, dtype, init), default initialisation)
PRESETS = {
    "seed-cnn": ("the report's CNN", _seed_cnn, "report"),
    "mlp2": ("784-400-200-10 MLP", lambda rng, dt, init: _mlp([784, 400, 200, 10], rng, dt, init), "report"),
    "mlp1": ("784-400-10 MLP", lambda rng, dt, init: _mlp([784, 400, 10], rng, dt, init), "report"),
    "lenet5": ("LeNet-5-style CNN with max pooling", _lenet5, "he"),
}


def build_model(name: str, *, dtype=np.float32, seed: int = 0, device="cpu", init: str | None = None) -> Network:
    """Build preset ``name`` (see the module table) with weights drawn from ``seed``, on ``device``.

    ``init``: ``"report"`` (conv N(0, 1), linear N(0, 0.1^2)), ``"he"`` (N(0, 2/fan_in)), or
    ``None`` for the preset's default (the report's for the report's networks, He for lenet5).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown model {name!r} — choose one of {', '.join(PRESETS)}")
    init = PRESETS[name][2] if init is None else init
    if init not in INITS:
        raise ConfigError(f"unknown initialisation {init!r} — use 'report' or 'he'")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ConfigError(f"build_model: dtype must be float32 or float64, got {dtype}")
    rng = np.random.default_rng(seed)
    net = Network(PRESETS[name][1](rng, dtype, init), name=name)
    return _move(net, device)


def _move(net, device):
    dev = get_device(device)
    return net if dev.kind == "cpu" else net.to(dev)


def load_model(path, *, device="cpu"):
    """Rebuild the network a checkpoint was saved from and load its weights; returns ``(net, checkpoint)``
    where ``checkpoint`` is :func:`~xcnn.nn.serialize.load_checkpoint`'s dict (``meta`` holds the run
    config). The network is built and loaded on the host, then moved to ``device`` once.

    The network comes from ``meta["architecture"]`` when the checkpoint carries one (see
    :mod:`xcnn.nn.architecture`), else from the preset it was saved from, so checkpoints written
    before architectures were saved load as they always did."""
    ck = load_checkpoint(path)
    name = ck.get("network")
    dtype = next(iter(ck["params"].values())).dtype if ck["params"] else np.float32
    if "architecture" in ck["meta"]:
        try:
            net = build_network(ck["meta"]["architecture"], name=name or "network", dtype=dtype)
        except ArchitectureError as exc:
            raise CheckpointError(f"checkpoint {str(path)!r}: {exc}") from None
    elif name in PRESETS:
        net = build_model(name, dtype=dtype, device="cpu")
    else:
        raise CheckpointError(f"checkpoint {str(path)!r} was saved from network {name!r}, which is not a preset "
                              f"({', '.join(PRESETS)}) and carries no architecture — save such a network "
                              "with xcnn.nn.architecture.save_network")
    net.load_state_dict(ck["params"])
    return _move(net, device), ck
