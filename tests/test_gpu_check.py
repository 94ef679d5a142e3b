"""scripts/gpu_check.py in dry mode (what a CPU-only CI can run): report files appear and say
the GPU parts were skipped. Tiny batches keep it to a few seconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xcnn.backend import gpu_available

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _run(out, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(SCRIPT), str(out), "--batches", "4", "--steps", "1", *extra],
                          env=env, capture_output=True, text=True, timeout=300)


def _check_dry_report(out: Path):
    md = (out / "report.md").read_text()
    rep = json.loads((out / "report.json").read_text())
    assert rep["dry_run"] is True
    assert "DRY RUN: GPU parts skipped" in md
    assert rep["install"] == {"skipped": "dry run"} and "skipped" in rep["pytest"]
    assert "SKIPPED: dry run" in md
    assert rep["layers"] and {r["device"] for r in rep["layers"]} == {"cpu"}
    assert {r["layer"] for r in rep["layers"]} >= {"conv5x5 1->4 p2 @28x28", "maxpool2 @4x28x28"}
    assert all(r["forward_ms"] > 0 and r["backward_ms"] > 0 for r in rep["layers"])
    assert rep["epochs"] and all(r["device"] == "cpu" for r in rep["epochs"])
    assert not rep.get("errors"), rep.get("errors")
    return rep, md


def test_dry_run_writes_reports_and_skips_gpu_parts(tmp_path):
    proc = _run(tmp_path / "r", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DRY RUN" in proc.stderr
    rep, md = _check_dry_report(tmp_path / "r")
    assert rep["dry_reason"] == "--dry-run given"
    assert any(r.get("framework") == "xcnn" and r["epoch_s"] > 0 for r in rep["epochs"])


@pytest.mark.skipif(gpu_available(), reason="a GPU is usable here, so the check would not fall back to dry mode")
def test_no_gpu_means_dry_mode_automatically(tmp_path):
    proc = _run(tmp_path / "r", "--skip-install", "--skip-pytest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep, md = _check_dry_report(tmp_path / "r")
    assert rep["dry_reason"] == rep["environment"]["gpu_unavailable_reason"] and rep["dry_reason"]
    assert rep["dry_reason"] in md
