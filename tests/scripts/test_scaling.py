"""scripts/scaling.py (a benchmark, not a test): the committed page is what the script writes from the
committed measurements (``--reuse`` models and writes again without measuring), and its model's
inputs are the current code's: the presets' sizes and the operation counts of a step."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from xcnn.nn.models import build_model

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def test_the_committed_page_is_the_scripts_output_from_the_committed_measurements(tmp_path):
    shutil.copy(BENCH / "scaling.json", tmp_path / "scaling.json")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "scaling.py"), "--reuse", "--out",
                          str(tmp_path / "scaling.json")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "scaling.md").read_text() == (BENCH / "scaling.md").read_text()
    assert json.loads((tmp_path / "scaling.json").read_text()) == json.loads((BENCH / "scaling.json").read_text())
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def test_the_model_uses_the_presets_sizes_and_the_steps_operation_counts():
    data = json.loads((BENCH / "scaling.json").read_text())
    for name, facts in data["measured"]["models"].items():
        net = build_model(name)
        assert facts["parameters"] == net.num_parameters()
        assert facts["grad_bytes_f32"] == 4 * net.num_parameters() and facts["tensors"] == len(net.parameters())
    # the counts tests/train/test_step.py::test_device_operations_per_training_step pins on the CuPy double
    assert data["model"]["gpu_step"]["ops_per_step"] == {"seed-cnn": 38, "lenet5": 50, "mlp2": 26}
