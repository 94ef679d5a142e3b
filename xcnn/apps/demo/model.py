"""What the demo page shows for one drawing, computed without any web code (so it is testable alone).

A drawing arrives as the PNG the page's canvas made. It goes through exactly what
``python -m xcnn.predict`` does to an image file: :func:`xcnn.apps.predict.read_images` (grayscale,
alpha on white), :func:`xcnn.apps.predict.to_mnist` (inverted to light-on-dark, cropped, scaled to
20x20, centred by mass in 28x28) and :func:`xcnn.data.normalize`. The network then runs once in
eval mode (:func:`xcnn.viz.maps.activations`), giving the class probabilities and the feature maps
of every conv layer and of the activation right after it -- the report's section 6 figure.

Maps travel as bytes: each layer's maps share one colour scale (as in the report's figure), are
quantised to 0..255 on it and sent base64-encoded with the scale; the page colours them with the
same matplotlib colour maps the figure uses (``RdBu_r`` for signed maps, ``viridis`` otherwise).
"""
from __future__ import annotations

import base64
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ...backend import get_device
from ...data import normalize
from ...errors import ConfigError
from ...nn.models import load_model
from ...ops import softmax
from ...viz.maps import activations
from ..predict import ImageError, read_images, to_mnist

__all__ = ["DemoModel", "ImageError", "MAX_PNG_BYTES", "colormap_table", "quantise"]

#: the largest drawing accepted (a 280x280 canvas PNG is ~5-20 kB)
MAX_PNG_BYTES = 4 * 1024 * 1024
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ACTIVATIONS = ("ReLU", "Sigmoid", "Tanh")


def colormap_table(name: str) -> list[list[int]]:
    """256 RGB triples (0..255) sampled from matplotlib's colour map ``name``."""
    import matplotlib  # noqa: PLC0415  (xcnn.viz.figure has already chosen the Agg backend)

    rgb = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.rint(rgb * 255).astype(int).tolist()


def quantise(maps: np.ndarray) -> dict:
    """One layer's maps (C, H, W) on one colour scale, as the report's figure draws them: symmetric
    about zero with ``RdBu_r`` when any value is negative, else from 0 up with ``viridis``. Returns
    ``{"lo", "hi", "cmap", "data"}`` with ``data`` the base64 of uint8 levels ``(v - lo) / (hi - lo) * 255``."""
    maps = np.asarray(maps, dtype=np.float64)
    lo, hi = float(maps.min()), float(maps.max())
    if lo < 0:
        hi = max(-lo, hi)
        lo, cmap = -hi, "RdBu_r"
    else:
        cmap = "viridis"
    if hi <= lo:  # constant maps (a dead layer, or a blank drawing): keep an honest scale
        hi = lo + 1.0
    levels = np.clip(np.rint((maps - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    return {"lo": lo, "hi": hi, "cmap": cmap, "data": base64.b64encode(levels.tobytes()).decode("ascii")}


class DemoModel:
    """A checkpoint loaded once, and :meth:`analyse_png` for each drawing (thread-safe: one at a time,
    since a network's layers keep per-call buffers)."""

    def __init__(self, checkpoint, device="cpu"):
        self.device = get_device(device, quiet=True)
        self.net, ck = load_model(checkpoint, device=self.device)
        self.checkpoint = Path(checkpoint)
        self.input_shape = tuple(ck["meta"].get("input_shape", (1, 28, 28)))
        if self.input_shape != (1, 28, 28):
            raise ConfigError(f"{self.checkpoint}: the demo draws 28x28 digits, but {self.net.name!r} takes "
                              f"inputs of shape {self.input_shape}")
        self.net.output_shapes((1, 1, 28, 28))  # a ShapeError now rather than on the first drawing
        self._lock = threading.Lock()
        self.map_layers = self._map_layers()

    def _map_layers(self) -> list[str]:
        """Every conv layer and the activation right after it, in order."""
        names, layers = [], self.net.layers
        for i, layer in enumerate(layers):
            if type(layer).__name__ == "Conv2D":
                names.append(layer.name)
                if i + 1 < len(layers) and type(layers[i + 1]).__name__ in _ACTIVATIONS:
                    names.append(layers[i + 1].name)
        return names

    def info(self) -> dict:
        """What the page needs before the first drawing: the model, its map layers, the colour maps."""
        shapes = dict(zip((layer.name for layer in self.net.layers), self.net.output_shapes((1, 1, 28, 28))))
        kinds = {layer.name: type(layer).__name__ for layer in self.net.layers}
        classes = shapes[self.net.layers[-1].name][-1]
        return {"model": self.net.name, "checkpoint": self.checkpoint.name, "parameters": self.net.num_parameters(),
                "device": str(self.device), "classes": [str(i) for i in range(classes)],
                "layers": [{"name": n, "kind": kinds[n], "shape": list(shapes[n][1:])} for n in self.map_layers],
                "colormaps": {name: colormap_table(name) for name in ("viridis", "RdBu_r")}}

    def analyse_png(self, png: bytes) -> dict:
        """:meth:`analyse_image` of a PNG (the canvas), read by ``xcnn.predict``'s ``read_images`` from a file."""
        if len(png) > MAX_PNG_BYTES:
            raise ImageError(f"the drawing is {len(png):,} bytes; at most {MAX_PNG_BYTES:,} are accepted")
        if not png.startswith(_PNG_MAGIC):
            raise ImageError("the drawing is not a PNG image")
        with tempfile.TemporaryDirectory(prefix="xcnn-demo-") as tmp:
            path = os.path.join(tmp, "drawing.png")
            with open(path, "wb") as fh:
                fh.write(png)
            (_, img), = read_images(path)  # a PNG is one image
        return self.analyse_image(img)

    def analyse_image(self, img: np.ndarray) -> dict:
        """Probabilities and feature maps for a 2-D grayscale image in [0, 1]: ``{"prediction", "probabilities",
        "input", "layers": [{"name", "kind", "shape", "lo", "hi", "cmap", "data"}], "ms"}`` (``input``: the
        28x28 uint8 image the network saw, base64)."""
        t0 = time.perf_counter()
        digit = to_mnist(img)
        x = normalize(digit[None], self.net.dtype)
        with self._lock:
            acts = activations(self.net, x)
        p = softmax(acts[self.net.layers[-1].name][:1].astype(np.float64))[0]  # (in float64: sums to 1 closely)
        layers = []
        for name in self.map_layers:
            maps = acts[name][0]
            kind = next(type(layer).__name__ for layer in self.net.layers if layer.name == name)
            layers.append({"name": name, "kind": kind, "shape": list(maps.shape), **quantise(maps)})
        return {"prediction": int(p.argmax()), "probabilities": p.tolist(),
                "input": base64.b64encode(digit.tobytes()).decode("ascii"), "layers": layers,
                "ms": round(1000 * (time.perf_counter() - t0), 1)}
