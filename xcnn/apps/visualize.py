"""``python -m xcnn.visualize CHECKPOINT --layer conv1 --index 0 --index 7 --out DIR``: feature maps.

Draws the output of any conv, activation or pooling layer (by name) for chosen test images (indices
into the test set): one PNG per layer, one row per image, with the maps saved beside it as ``.npz``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from ..data.cli import DATA_DIR_HELP

from ..errors import ConfigError

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)


class VisualizeError(ConfigError):
    """A request that cannot be drawn (unknown layer, index out of range, ...)."""


def _run_dataset(checkpoint: Path, ck: dict) -> str:
    """The dataset a checkpoint was trained on: its own meta, else the run's config.json, else MNIST
    (epoch snapshots carry only their epoch number)."""
    cfg = ck["meta"].get("config") or {}
    if "dataset" in cfg:
        return cfg["dataset"]
    try:
        return json.loads((checkpoint.parent / "config.json").read_text()).get("dataset", "mnist")
    except (OSError, ValueError):
        return "mnist"


def visualize(checkpoint, layers: list[str], indices: list[int], out, *, dataset: str | None = None,
              data_dir=None) -> list[Path]:
    """Write ``<out>/<checkpoint stem>_<layer>.png`` (and ``.npz``) for each layer; returns the PNGs."""
    from .. import data  # noqa: PLC0415
    from ..io import atomic_save_npz  # noqa: PLC0415
    from ..nn.models import load_model  # noqa: PLC0415
    from ..viz.maps import feature_map_layers, feature_maps, plot_feature_maps  # noqa: PLC0415

    checkpoint, out = Path(checkpoint), Path(out)
    net, ck = load_model(checkpoint)
    valid = feature_map_layers(net)
    if not valid:
        raise VisualizeError(f"{net.name} has no feature-map layers (no conv, activation or pooling layer "
                             "before its first flatten)")
    for layer in layers:
        if layer not in valid:
            raise VisualizeError(f"unknown layer {layer!r} for feature maps; {net.name} has "
                                 f"{', '.join(valid)}")
    name = dataset or _run_dataset(checkpoint, ck)
    ds = data.load(name, data_dir=data_dir)
    n = len(ds.test_labels)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise VisualizeError(f"test index {bad[0]} is out of range: the {name} test set has {n} images (0..{n - 1})")
    epoch = ck["meta"].get("epoch")
    images, labels = ds.test_images[indices], ds.test_labels[indices]
    written = []
    for layer in layers:
        r = feature_maps(net, data.normalize(images, net.dtype), layer)
        C, H, W = r["maps"].shape[1:]
        when = f", after {epoch} epochs" if epoch is not None else ""
        stem = f"{checkpoint.stem}_{layer}"
        png = plot_feature_maps(images, r["maps"], labels=labels, pred=r["pred"], prob=r["prob"], indices=indices,
                                title=f"{net.name} ({checkpoint.name}{when})\n{layer}: {C} maps {H}×{W}",
                                path=out / f"{stem}.png", classes=list(ds.classes))
        atomic_save_npz(out / f"{stem}.npz", {"maps": r["maps"], "indices": np.asarray(indices), "labels": labels,
                                              "pred": r["pred"], "prob": r["prob"], "layer": np.asarray(layer)})
        written.append(png)
    return written


@app.command()
def main(
    checkpoint: Path = typer.Argument(..., help="a checkpoint or epoch snapshot written by python -m xcnn.train"),
    layer: List[str] = typer.Option(["conv1"], "--layer", help="layer name (repeat for several), e.g. relu1"),
    index: List[int] = typer.Option([0], "--index", help="test-set index of an image (repeat for several)"),
    out: Path = typer.Option(Path("feature_maps"), help="directory for the PNGs (and .npz arrays)"),
    dataset: Optional[str] = typer.Option(None, help="dataset (default: the one the run trained on)"),
    data_dir: Optional[str] = typer.Option(None, help=DATA_DIR_HELP),
):
    """Draw the feature maps of LAYER(s) of CHECKPOINT for the chosen test images."""
    from ..errors import exit_on_error  # noqa: PLC0415

    from ..io import check_output_dir  # noqa: PLC0415

    with exit_on_error(ValueError):
        check_output_dir(out, "--out")
        pngs = visualize(checkpoint, list(layer), list(index), out, dataset=dataset, data_dir=data_dir)
    for p in pngs:
        typer.echo(str(p))


def run(args=None):
    from ..errors import run_app  # noqa: PLC0415

    run_app(app, "python -m xcnn.visualize", args)
