"""Loading a dataset (verified, fetched first when missing) and preparing its images for a network."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import DataError
from .fetch import fetch
from .specs import FILES, fetch_hint, spec
from .store import find, load_verified, locate

__all__ = ["Dataset", "load", "normalize"]


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset. Images uint8 (N, 28, 28); labels uint8 (N,) indexing ``classes``."""

    name: str
    classes: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.train_images.shape}, "
                f"test={self.test_images.shape}, classes={len(self.classes)})")


def load(name: str, data_dir: str | os.PathLike | None = None, fetch_if_missing: bool = True,
         *, pins: Mapping[str, str] | None = None) -> Dataset:
    """Load a dataset from ``<root>/<name>/``, fetching it first if missing and allowed.

    Every file is checked against its SHA-256 pin on first use in the process.
    """
    sp = spec(name)
    pins = dict(sp.sha256 if pins is None else pins)
    directory = locate(name, data_dir)
    paths = {f: find(directory, f) for f in FILES}
    if any(p is None for p in paths.values()):
        if not fetch_if_missing:
            absent = ", ".join(f for f, p in paths.items() if p is None)
            raise DataError(f"{name} not found in {directory} (missing {absent}) — {fetch_hint(name)}"
                            + (f" --data-dir {data_dir}" if data_dir else "")
                            + ", or copy the four IDX files (raw or .gz) into one folder and pass it as --data-dir")
        fetch(name, data_dir, pins=pins)
        paths = {f: find(directory, f) for f in FILES}
    arrays = {f: load_verified(p, f, pins, name) for f, p in paths.items()}
    ds = Dataset(name=sp.name, classes=sp.classes,
                 train_images=arrays["train-images-idx3-ubyte"],
                 train_labels=arrays["train-labels-idx1-ubyte"],
                 test_images=arrays["t10k-images-idx3-ubyte"],
                 test_labels=arrays["t10k-labels-idx1-ubyte"])
    for split, x, y in (("train", ds.train_images, ds.train_labels),
                        ("test", ds.test_images, ds.test_labels)):
        if len(x) != len(y):
            raise DataError(f"{directory}: {split} has {len(x)} images but {len(y)} labels")
        if len(y) and int(y.max()) >= len(sp.classes):
            raise DataError(f"{directory}: {split} label {int(y.max())} is out of range "
                            f"for {len(sp.classes)} classes")
    return ds


# --------------------------------------------------------------------------- #
# Preprocessing and batches
# --------------------------------------------------------------------------- #

def normalize(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 pixels (N, H, W) -> ``images / 255 - 0.5`` as (N, 1, H, W) in ``dtype``.

    Zero-centred to [-0.5, 0.5], as in the report; no per-dataset mean/std, so the
    same transform applies to any split. (N, C, H, W) input keeps its channels.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"normalize: expected uint8 pixels, got {images.dtype} "
                         "(already normalised?)")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise ValueError(f"normalize: expected (N, H, W) or (N, C, H, W), got {images.shape}")
    x = images.astype(dtype)
    x /= 255
    x -= 0.5
    return x
