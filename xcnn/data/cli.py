"""``python -m xcnn.data fetch|info``: fetch and inspect the MNIST-family datasets."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .datasets import load
from .fetch import fetch
from .specs import DATASETS
from .store import dataset_dir

def _cli():
    import typer

    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Fetch and inspect the MNIST-family datasets.")

    def fail(e: Exception, code: int = 1):
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code)

    def check_name(name: str) -> None:
        if name not in DATASETS:
            fail(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}", 2)

    @app.command("fetch")
    def fetch_cmd(name: str = typer.Argument(..., help="mnist or fashion-mnist"),
                  data_dir: Path = typer.Option(None, "--data-dir", help="root holding <dataset>/"),
                  source: Path = typer.Option(None, "--source",
                                              help="directory to copy the IDX files from")):
        """Put the dataset's verified IDX files in the cache."""
        check_name(name)
        try:
            d = fetch(name, data_dir, source=source)
        except (DataError, OSError) as e:
            fail(e)
        typer.echo(f"{name}: verified files in {d}")

    @app.command("info")
    def info_cmd(name: str = typer.Argument(..., help="mnist or fashion-mnist"),
                 data_dir: Path = typer.Option(None, "--data-dir", help="root holding <dataset>/")):
        """Show where the dataset is, its shapes and label counts (does not fetch)."""
        check_name(name)
        try:
            ds = load(name, data_dir, fetch_if_missing=False)
        except (DataError, OSError) as e:
            fail(e)
        typer.echo(f"{name}: {dataset_dir(name, data_dir)} (SHA-256 pins verified)")
        for split, x, y in (("train", ds.train_images, ds.train_labels),
                            ("test", ds.test_images, ds.test_labels)):
            counts = np.bincount(y, minlength=len(ds.classes))
            typer.echo(f"  {split}: images {x.shape} {x.dtype}, labels per class "
                       f"{counts.tolist()}")
        typer.echo(f"  classes: {', '.join(ds.classes)}")

    return app


def main(argv: list[str] | None = None) -> None:
    _cli()(args=argv, prog_name="python -m xcnn.data")


if __name__ == "__main__":
    main()
