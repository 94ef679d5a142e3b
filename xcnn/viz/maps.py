"""What a network computes: the outputs of its layers, feature maps with the prediction, and the
learned kernels (the report's figures 7-22). Every figure function saves a PNG and returns what it
drew, so tests can check the pixels' source against an independent computation."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import ops
from ..backend import to_host
from .figure import plt, save_figure

__all__ = ["activations", "feature_map_layers", "feature_maps", "plot_feature_maps", "plot_kernels",
           "first_of_classes"]

#: layers whose output is an (N, C, H, W) stack of maps
MAP_KINDS = ("Conv2D", "ReLU", "Sigmoid", "Tanh", "AvgPool2D", "MaxPool2D")


def feature_map_layers(net) -> list[str]:
    """Names of the layers of ``net`` whose outputs are feature maps, in order (conv, activation, pool
    layers before the first Flatten)."""
    names = []
    for layer in net.layers:
        if type(layer).__name__ == "Flatten":
            break
        if type(layer).__name__ in MAP_KINDS:
            names.append(layer.name)
    return names


def activations(net, x, upto: str | None = None) -> dict:
    """Outputs of every layer of ``net`` (eval mode) for input ``x``, as host arrays keyed by layer name,
    stopping after layer ``upto`` (all layers when None). The training flag is restored afterwards."""
    names = [layer.name for layer in net.layers]
    if upto is not None and upto not in names:
        raise ValueError(f"unknown layer {upto!r}; {net.name} has {', '.join(names)}")
    was = net.training
    net.eval()
    try:
        out = {}
        h = net.device.asarray(x)
        for layer in net.layers:
            h = layer.forward(h)
            out[layer.name] = to_host(h)
            if layer.name == upto:
                break
        return out
    finally:
        net.train(was)


def first_of_classes(labels, classes) -> list[int]:
    """Index of the first image of each class in ``classes`` (deterministic choice of examples)."""
    labels = np.asarray(labels)
    idx = []
    for c in classes:
        hits = np.flatnonzero(labels == c)
        if not len(hits):
            raise ValueError(f"no image of class {c} in the {len(labels)} labels")
        idx.append(int(hits[0]))
    return idx


def feature_maps(net, x, layer: str) -> dict:
    """Feature maps of ``layer`` plus the prediction for normalised images ``x (N, 1, H, W)``:
    ``{"maps": (N, C, H, W), "pred": (N,), "prob": (N,), "probs": (N, K)}`` (float64 probabilities)."""
    acts = activations(net, x)
    if layer not in acts:
        raise ValueError(f"unknown layer {layer!r}; {net.name} has {', '.join(acts)}")
    maps = acts[layer]
    if maps.ndim != 4:
        raise ValueError(f"layer {layer!r} of {net.name} outputs shape {maps.shape}, not feature maps; "
                         f"choose one of {', '.join(feature_map_layers(net))}")
    probs = ops.softmax(acts[net.layers[-1].name].astype(np.float64))
    pred = probs.argmax(axis=1)
    return {"maps": maps, "pred": pred, "prob": probs[np.arange(len(pred)), pred], "probs": probs}


def plot_feature_maps(images_u8, maps, *, labels, pred, prob, indices, title: str, path,
                      classes=None) -> Path:
    """One row per image: the image, then its C maps on one colour scale shared along the row
    (with a colorbar); the row title says the true and predicted class and its probability."""
    images_u8, maps = np.asarray(images_u8), np.asarray(maps)
    n, C = maps.shape[:2]
    classes = classes or [str(i) for i in range(10)]
    cell = 1.25 if C <= 4 else 1.05
    fig = plt.figure(figsize=(cell * (C + 1) + 0.9, (cell + 0.55) * n + 0.5), layout="constrained")
    fig.suptitle(title, fontsize=11.5 if C <= 4 else 12, fontweight="bold")
    rows = fig.subfigures(n, 1)
    rows = np.atleast_1d(rows)
    for r in range(n):
        sub = rows[r]
        ok = int(pred[r]) == int(labels[r])
        sub.suptitle(f"test image #{indices[r]}, label {classes[int(labels[r])]}: predicted "
                     f"{classes[int(pred[r])]} (p = {prob[r]:.2f})" + ("" if ok else "  — wrong"),
                     fontsize=9.5, color="black" if ok else "tab:red")
        axes = sub.subplots(1, C + 1, gridspec_kw={"wspace": 0.06})
        axes[0].imshow(images_u8[r], cmap="gray", vmin=0, vmax=255)
        axes[0].set_xlabel("input", fontsize=8)
        lo, hi = float(maps[r].min()), float(maps[r].max())
        if lo < 0:  # signed maps (conv outputs): diverging colours, zero in the middle
            hi = max(-lo, hi)
            lo, cmap = -hi, "RdBu_r"
        else:  # after ReLU / pooling of ReLU: 0 is dark
            cmap = "viridis"
        if hi <= lo:  # a dead row (all maps constant): keep a visible, honest scale
            hi = lo + 1.0
        for c in range(C):
            im = axes[c + 1].imshow(maps[r, c], cmap=cmap, vmin=lo, vmax=hi)
            axes[c + 1].set_xlabel(f"map {c + 1}", fontsize=8)
        for a in axes:
            a.set_xticks([])
            a.set_yticks([])
        # the input is drawn on its own grey scale: frame it so it reads as different from the maps
        for s in axes[0].spines.values():
            s.set_edgecolor("0.5")
        cb = sub.colorbar(im, ax=list(axes[1:]), shrink=0.9, aspect=12, pad=0.01)
        cb.ax.tick_params(labelsize=7)
    return save_figure(fig, path)


def plot_kernels(kernels: dict, path, title: str = "first-layer kernels") -> Path:
    """Rows = labelled kernel stacks ``{label: (C_out, 1, KH, KW)}``, one diverging colour scale
    symmetric about zero shared by every kernel, so growth and sign changes are comparable."""
    labels = list(kernels)
    ks = [np.asarray(kernels[k])[:, 0] for k in labels]
    C = ks[0].shape[0]
    vmax = max(float(np.abs(k).max()) for k in ks) or 1.0
    fig, axes = plt.subplots(len(ks), C, figsize=(1.6 * C + 1.2, 1.75 * len(ks) + 0.6), squeeze=False,
                             layout="constrained")
    fig.suptitle(title, fontsize=12, fontweight="bold")
    for r, (label, k) in enumerate(zip(labels, ks)):
        for c in range(C):
            a = axes[r, c]
            im = a.imshow(k[c], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            a.set_xticks([])
            a.set_yticks([])
            if r == 0:
                a.set_title(f"kernel {c + 1}", fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    return save_figure(fig, path)
