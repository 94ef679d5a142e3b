"""``python -m xcnn.data fetch|info``: fetch and inspect the MNIST-family datasets."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import exit_on_error
from .datasets import load
from .fetch import fetch
from .specs import DATASETS
from .store import locate

#: the dataset names as a choice: ``--help`` lists them and the parser refuses a typo
DatasetName = Enum("DatasetName", {n.replace("-", "_"): n for n in DATASETS}, type=str)

DATA_DIR_HELP = ("folder that holds <dataset>/ (e.g. mnist/), or the four IDX files themselves "
                 "(default: $XCNN_DATA, else ~/.cache/xcnn)")


def _cli():
    import typer

    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Fetch and inspect the MNIST-family datasets.")

    @app.command("fetch")
    def fetch_cmd(name: DatasetName = typer.Argument(..., help="the dataset"),
                  data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
                  source: Optional[Path] = typer.Option(None, "--source",
                                                        help="folder to copy the IDX files from")):
        """Put the dataset's verified IDX files in the cache."""
        with exit_on_error():
            d = fetch(name.value, data_dir, source=source)
        typer.echo(f"{name.value}: verified files in {d}")

    @app.command("info")
    def info_cmd(name: DatasetName = typer.Argument(..., help="the dataset"),
                 data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)):
        """Show where the dataset is, its shapes and label counts (does not fetch)."""
        with exit_on_error():
            ds = load(name.value, data_dir, fetch_if_missing=False)
        typer.echo(f"{name.value}: {locate(name.value, data_dir)} (SHA-256 pins verified)")
        for split, x, y in (("train", ds.train_images, ds.train_labels),
                            ("test", ds.test_images, ds.test_labels)):
            counts = np.bincount(y, minlength=len(ds.classes))
            typer.echo(f"  {split}: images {x.shape} {x.dtype}, labels per class "
                       f"{counts.tolist()}")
        typer.echo(f"  classes: {', '.join(ds.classes)}")

    return app


def main(argv: list[str] | None = None) -> None:
    from ..errors import run_app  # noqa: PLC0415

    run_app(_cli(), "python -m xcnn.data", argv)


if __name__ == "__main__":
    main()
