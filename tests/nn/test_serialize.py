"""The checkpoint file (xcnn/nn/serialize.py): refusals of missing, broken and mismatched files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from xcnn.errors import CheckpointError
from xcnn.nn import SGD, build_model
from xcnn.nn.serialize import FORMAT, load_checkpoint, save_checkpoint


def test_bad_checkpoints_are_refused_clearly(tmp_path):
    net = build_model("seed-cnn")
    with pytest.raises(CheckpointError, match="does not exist"):
        net.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable xcnn checkpoint"):
        net.load(tmp_path / "junk.npz")
    build_model("mlp1").save(tmp_path / "mlp.npz")
    with pytest.raises(CheckpointError, match="does not fit network"):
        net.load(tmp_path / "mlp.npz")
    net.save(tmp_path / "noopt.npz")
    with pytest.raises(CheckpointError, match="no optimizer state"):
        net.load(tmp_path / "noopt.npz", SGD(net.parameters()))
    bad = {k: np.zeros((3, 3), np.float32) for k in net.state_dict()}
    with pytest.raises(CheckpointError, match="has shape"):
        net.load_state_dict(bad)


def test_the_file_holds_plain_arrays_and_json_meta(tmp_path):
    net = build_model("seed-cnn", seed=1)
    path = save_checkpoint(tmp_path / "c.npz", "seed-cnn", net.state_dict(), {"steps": np.array(3)}, {"epoch": 2})
    with np.load(path, allow_pickle=False) as z:
        info = json.loads(str(z["__meta__"]))
    assert info == {"format": FORMAT, "network": "seed-cnn", "meta": {"epoch": 2}}
    ck = load_checkpoint(path)
    assert ck["network"] == "seed-cnn" and ck["meta"] == {"epoch": 2} and int(ck["optim"]["steps"]) == 3
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(ck["params"][k], v)


def test_a_foreign_format_is_refused(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, __meta__=np.array(json.dumps({"format": "other-1"})))
    with pytest.raises(CheckpointError, match="has format 'other-1'"):
        load_checkpoint(path)
