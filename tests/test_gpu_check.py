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


def _module():
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_graph_timings_and_gpu_targets(monkeypatch):
    """The --cuda-graph timing rows (on the NumPy stand-in of tests/test_step.py) and how the GPU
    targets are judged: the better of the eager and graph steps, and a failed capture is reported."""
    from test_step import use_fake_graphs

    gc = _module()
    use_fake_graphs(monkeypatch)
    rows = gc.epoch_timings("cpu", [4], 2, cuda_graph=True)
    assert {r["framework"] for r in rows} == {"xcnn", "xcnn --cuda-graph"} and all(r["epoch_s"] > 0 for r in rows)
    graph = [r for r in rows if r["framework"] == "xcnn --cuda-graph"]
    assert len(graph) == 2 and all(r["graph_failed"] is None and r["graph_replays"] >= 3 for r in graph)

    def row(fw, batch, epoch_s, **kw):
        return {"device": "cuda:0", "framework": fw, "model": "seed-cnn", "batch": batch, "epoch_s": epoch_s, **kw}

    text = "\n".join(gc.gpu_targets([row("xcnn", 50, 0.9), row("xcnn --cuda-graph", 50, 0.3),
                                     row("torch 2.11 + cuDNN", 50, 0.6), row("xcnn", 1024, 0.1),
                                     row("xcnn --cuda-graph", 1024, 0.05, graph_failed="boom")]))
    assert "batch 50, xcnn: 1.50x" in text and "batch 50, xcnn --cuda-graph: 0.50x" in text
    assert "target <= 1.0: met (best 0.50)" in text
    assert "batch 1024: 1,200,000 images/s (target >= 1,000,000: met)" in text
    assert "capture FAILED for seed-cnn @ 1024 (boom)" in text
    text = "\n".join(gc.gpu_targets([row("xcnn", 50, 0.9), row("torch 2.11 + cuDNN", 50, 0.6)]))
    assert "NOT met (best 1.50)" in text and "1024 images/s on the GPU: not measured" in text


def test_training_runs_through_the_trainer_and_report(tmp_path, monkeypatch):
    """The real-MNIST part, run here on the CPU with synthetic data in place of MNIST (eager, and the
    graph step on its NumPy stand-in), and its table in the report."""
    from test_step import use_fake_graphs
    from test_train import synthetic

    from xcnn import trainer

    gc = _module()
    use_fake_graphs(monkeypatch)
    monkeypatch.setattr(trainer, "_load_data", lambda c: synthetic(300, 100))
    rows = gc.training_runs("cpu", tmp_path, batches=(50,), epochs=2)
    assert [(r["batch"], r["cuda_graph"]) for r in rows] == [(50, False), (50, True)]
    assert all(r["status"] == "completed" and r["test_acc"] > 0.5 and r["images_per_s"] > 0 for r in rows)
    assert rows[1]["same_weights_as_eager"] is True
    env = {"python": "3", "gpu_usable": False}
    report = {"started": "now", "dry_run": False, "environment": env, "install": {"skipped": "x"},
              "pytest": {"skipped": "x"}, "layers": [], "epochs": [], "training": rows, "skipped_parts": [],
              "seconds": 1.0}
    gc.write_report(tmp_path / "r", report)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Real MNIST training, 2 epochs per run" in md and "| cpu | 50 | yes |" in md and "| yes |" in md


def test_missing_mnist_is_named_without_fetching(tmp_path):
    """The GPU machine has no network: a missing dataset must be reported, never fetched."""
    reason = _module()._mnist_missing(tmp_path)
    assert reason.startswith("DataError") and "mnist not found" in reason
    assert not (tmp_path / "mnist").exists()  # nothing downloaded or written
