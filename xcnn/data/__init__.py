"""MNIST-family datasets: verified IDX files, a local cache, fetching, loading and normalisation.

    python -m xcnn.data fetch mnist [--data-dir DIR]
    python -m xcnn.data info mnist

``idx`` is the file format, ``specs`` the datasets and their SHA-256 pins, ``store`` where files
live and how they are verified, ``fetch`` where missing files come from, ``datasets`` loading.
"""
from ..errors import DataError
from .datasets import Dataset, load, normalize
from .fetch import fetch
from .idx import read_idx, write_idx
from .specs import DATASETS, FILES
from .store import data_root, dataset_dir

__all__ = ["DataError", "Dataset", "DATASETS", "FILES", "read_idx", "write_idx", "data_root", "dataset_dir",
           "fetch", "load", "normalize"]
