"""scripts/gpu_check.py: the dry mode a CPU-only CI runs (report files appear and say the GPU parts
were skipped), and its GPU parts run on the CuPy double (tests/doubles/fakecupy.py): the eager and
--cuda-graph epoch timings and training runs, reported honestly whether the graph replayed or
capture failed; how the GPU targets are judged; a missing MNIST named, never fetched."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from doubles import fakecupy
from helpers import synthetic

from xcnn.backend import gpu_available

ROOT = Path(__file__).resolve().parents[2]
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
    assert {r["model"] for r in rep["epochs"] if r["framework"] == "xcnn"} == {"seed-cnn", "mlp2"}
    assert not rep.get("errors"), rep.get("errors")
    assert "## Errors" not in md
    return rep, md


def test_dry_run_writes_reports_and_skips_gpu_parts(tmp_path):
    proc = _run(tmp_path / "r", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DRY RUN" in proc.stderr
    rep, md = _check_dry_report(tmp_path / "r")
    assert rep["dry_reason"] == "--dry-run given"
    assert any(r.get("framework") == "xcnn" and r["epoch_s"] > 0 for r in rep["epochs"])
    assert "Real MNIST training runs: skipped (dry run)" in md


@pytest.mark.skipif(gpu_available(), reason="a GPU is usable here, so the check would not fall back to dry mode")
def test_no_gpu_means_dry_mode_automatically(tmp_path):
    proc = _run(tmp_path / "r", "--skip-install", "--skip-pytest")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep, md = _check_dry_report(tmp_path / "r")
    assert rep["dry_reason"] == rep["environment"]["gpu_unavailable_reason"] and rep["dry_reason"]
    assert rep["dry_reason"] in md


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_graph_timings_replay_on_the_cupy_double(cuda_emu):
    """The GPU timing rows on the CuPy double: eager with cuBLAS, eager with our GEMM kernels, and the
    --cuda-graph step, which must capture and replay -- what it reports is what the double launched."""
    gc = _module()
    n0 = len(fakecupy.world().graphs)
    rows = gc.epoch_timings("cuda", [4], 2, cuda_graph=True)
    launched = sum(c.fake_launches for c in fakecupy.world().graphs[n0:])
    assert {r["framework"] for r in rows} == {"xcnn", gc.KERNELS, "xcnn --cuda-graph"}
    assert all(r["epoch_s"] > 0 for r in rows)
    assert {(r["model"], r["batch"]) for r in rows} == {("seed-cnn", 4), ("mlp2", 4)}
    graph = [r for r in rows if r["framework"] == "xcnn --cuda-graph"]
    assert len(graph) == 2 and all(r["graph_failed"] is None and r["graph_replays"] >= 3 for r in graph)
    assert sum(r["graph_replays"] for r in graph) == launched
    assert "FAILED" not in "\n".join(gc.gpu_targets(rows))


def test_a_refused_capture_is_reported_and_fails_the_verdict(cuda_emu):
    gc = _module()
    fakecupy.world().capture_unsupported = True
    rows = gc.epoch_timings("cuda", [4], 1, cuda_graph=True)
    graph = [r for r in rows if r["framework"] == "xcnn --cuda-graph"]
    assert all(r["graph_replays"] == 0 and "StreamCaptureUnsupported" in r["graph_failed"] for r in graph)
    assert "--cuda-graph capture FAILED for seed-cnn @ 4" in "\n".join(gc.gpu_targets(rows))
    report = {"dry_run": False, "pytest": {"rc": 0}, "epochs": rows}
    bad = gc.verdict(report)
    assert len(bad) == 2 and all("did not replay" in b for b in bad)
    assert gc.verdict(dict(report, dry_run=True)) == []  # a dry run judges nothing


def test_verdict_names_each_failure():
    gc = _module()
    ok_run = {"cuda_graph": True, "batch": 50, "graph_failed": None, "graph_replays": 10, "same_weights_as_eager": True}
    report = {"dry_run": False, "pytest": {"rc": 0}, "epochs": [], "training": [ok_run],
              "probe": {"ftz": {"float32_flushed": True}, "gemm_kernels_in_a_graph": {"replay_equals_eager_bits": True}}}
    assert gc.verdict(report) == []
    report["pytest"] = {"rc": 1}
    report["training"] = [dict(ok_run, same_weights_as_eager=False)]
    report["probe"]["ftz"] = {"error": "CUDARuntimeError: boom"}
    report["probe"]["gemm_kernels_in_a_graph"]["replay_equals_eager_bits"] = False
    assert gc.verdict(report) == ["test suite: rc 1", "probe ftz: CUDARuntimeError: boom",
                                  "probe: a replayed GEMM graph differs from the eager launches",
                                  "--cuda-graph training @ 50 ended on other weights than the eager run"]


def test_gpu_targets_judge_the_better_of_eager_and_graph_steps():
    gc = _module()

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
    assert "FAILED" not in text
    cpu_only = [dict(row("xcnn", 50, 0.9), device="cpu"), dict(row("torch 2.11", 50, 0.6), device="cpu")]
    text = "\n".join(gc.gpu_targets(cpu_only))  # CPU rows never count towards the GPU targets
    assert "not measured (no GPU or no torch)" in text and "not measured (no GPU)" in text


@pytest.fixture
def synthetic_mnist(monkeypatch):
    """The trainer reads a small synthetic problem in place of MNIST."""
    from xcnn.train import loop

    monkeypatch.setattr(loop, "_load_data", lambda cfg: synthetic(300, 100))


def _report(tmp_path, gc, rows):
    env = {"python": "3", "gpu_usable": False}
    report = {"started": "now", "dry_run": False, "environment": env, "install": {"skipped": "x"},
              "pytest": {"skipped": "x"}, "layers": [], "epochs": [], "training": rows, "skipped_parts": [],
              "seconds": 1.0}
    gc.write_report(tmp_path / "r", report)
    return (tmp_path / "r" / "report.md").read_text()


def test_training_runs_through_the_trainer_and_report(tmp_path, synthetic_mnist):
    """The real-MNIST part's eager runs, here on the CPU with synthetic data in place of MNIST."""
    gc = _module()
    rows = gc.training_runs("cpu", tmp_path, batches=(50, 100), graph_modes=(False,), epochs=2)
    assert [(r["batch"], r["cuda_graph"]) for r in rows] == [(50, False), (100, False)]
    assert all(r["status"] == "completed" and r["test_acc"] > 0.5 and r["images_per_s"] > 0 for r in rows)
    assert all("same_weights_as_eager" not in r and "graph_replays" not in r for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cpu-b100-eager", "cpu-b50-eager"]
    md = _report(tmp_path, gc, rows)
    assert "## Real MNIST training, 2 epochs per run" in md
    assert "| cpu | 50 | no |" in md and "| cpu | 100 | no |" in md and "| - |" in md


def test_graph_training_runs_replay_and_match_the_eager_weights(tmp_path, cuda_emu, synthetic_mnist):
    """Eager (our GEMM kernels) and --cuda-graph runs through the trainer on the CuPy double: the graph
    replays every step after the warm-up, the weights are the same bit for bit, the report says so."""
    gc = _module()
    rows = gc.training_runs("cuda", tmp_path, batches=(50,), epochs=2)
    assert [(r["batch"], r["cuda_graph"]) for r in rows] == [(50, False), (50, True)]
    assert all(r["status"] == "completed" and r["test_acc"] > 0.5 and r["images_per_s"] > 0 for r in rows)
    eager, graph = rows
    assert graph["same_weights_as_eager"] is True and "graph_replays" not in eager
    metrics = json.loads((tmp_path / "cuda-b50-graph" / "metrics.json").read_text())["cuda_graph"]
    assert (graph["graph_replays"], graph["graph_failed"]) == (metrics["replays"], metrics["capture_failed"])
    assert graph["graph_failed"] is None and graph["graph_replays"] == 2 * 6 - 2  # 12 steps, 2 of them warm-up
    md = _report(tmp_path, gc, rows)
    assert "| cuda | 50 | no |" in md and "| yes |" in md
    assert f"| cuda | 50 | yes, {graph['graph_replays']} replays |" in md


def test_report_of_a_graph_run_whose_capture_failed(tmp_path):
    gc = _module()
    row = {"device": "cuda", "batch": 50, "cuda_graph": True, "status": "completed", "epochs": 2,
           "last_epoch_train_s": 1.0, "images_per_s": 60000.0, "test_acc": 0.98, "graph_replays": 0,
           "graph_failed": "RuntimeError: cuBLAS during capture", "same_weights_as_eager": True}
    md = _report(tmp_path, gc, [row])
    assert "| cuda | 50 | capture FAILED (RuntimeError: cuBLAS during capture): eager steps | 1.00 | 60,000 |" in md
    md = _report(tmp_path, gc, [dict(row, graph_failed=None, graph_replays=10, same_weights_as_eager=False)])
    assert "| cuda | 50 | yes, 10 replays |" in md and "| **NO** |" in md


def test_missing_mnist_is_named_without_fetching(tmp_path):
    """The GPU machine has no network: a missing dataset must be reported, never fetched."""
    reason = _module()._mnist_missing(tmp_path)
    assert reason.startswith("DataError") and "mnist not found" in reason
    assert not (tmp_path / "mnist").exists()  # nothing downloaded or written


def test_report_run_replays_and_is_judged(tmp_path, cuda_emu, synthetic_mnist):
    """The report's run (here 2 epochs of the synthetic problem): the report's settings with --cuda-graph,
    its replays and training seconds read back from the trainer, the 10 s target judged."""
    gc = _module()
    r = gc.report_run("cuda", tmp_path, epochs=2)
    assert r["status"] == "completed" and r["epochs"] == 2 and r["graph_failed"] is None
    assert r["graph_replays"] == 2 * 6 - 2 and r["train_seconds"] > 0 and r["met"] == (r["train_seconds"] < 10)
    report = {"dry_run": False, "pytest": {"rc": 0}, "epochs": [], "report_run": r}
    assert gc.verdict(report) == []
    assert gc.verdict(dict(report, report_run=dict(r, graph_replays=0, graph_failed="boom"))) == [
        "the report's 30-epoch --cuda-graph run did not replay (boom)"]
