"""The checkpoint file: weights (and optimizer state, and JSON ``meta``) in one uncompressed ``.npz``,
written atomically, read with pickling disabled; loading restores every array bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..io import atomic_save_npz, load_npz

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint"]

FORMAT = "xcnn-checkpoint-1"


def save_checkpoint(path, network_name: str, params: dict, optim: dict | None = None, meta: dict | None = None) -> Path:
    """Write host arrays ``params`` (and ``optim``) with ``meta`` to ``path`` atomically."""
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"optim/{k}": v for k, v in (optim or {}).items()})
    arrays["__meta__"] = np.array(json.dumps({"format": FORMAT, "network": network_name, "meta": meta or {}}))
    return atomic_save_npz(path, arrays)


def load_checkpoint(path) -> dict:
    """Read a checkpoint into ``{"params": {...}, "optim": {...}, "meta": {...}, "network": name}``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist — train one with `python -m xcnn.train`")
    try:
        raw = load_npz(path)
        info = json.loads(str(raw.pop("__meta__")))
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable xcnn checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} has format {info.get('format')!r}, expected {FORMAT!r}")
    params = {k[len("param/"):]: v for k, v in raw.items() if k.startswith("param/")}
    optim = {k[len("optim/"):]: v for k, v in raw.items() if k.startswith("optim/")}
    for name, v in params.items():
        if v.dtype.kind != "f":
            raise CheckpointError(f"checkpoint {str(path)!r}: parameter {name} has dtype {v.dtype}, not floating "
                                  "point — the file was not written by xcnn; retrain or use another checkpoint")
        if not np.isfinite(v).all():
            bad = int(v.size - np.isfinite(v).sum())
            raise CheckpointError(f"checkpoint {str(path)!r}: parameter {name} holds {bad} non-finite value(s) "
                                  "(NaN or inf; a diverged run) — use an earlier snapshot (epoch_NNN.npz) or "
                                  "retrain with a lower --lr")
    return {"params": params, "optim": optim, "meta": info.get("meta", {}), "network": info.get("network")}
