"""The benchmark's Markdown report (xcnn/bench/markdown.py) from hand-made results: the table rows,
the --cuda-graph rows and a failed capture, the targets judged (CPU per model, GPU per model and
batch, the images/s line), memory, profile and machine sections."""
from __future__ import annotations

from xcnn import machine
from xcnn.bench.markdown import write_markdown
from xcnn.bench.runners import GPU_TARGETS, TARGETS


def _summary(median, lo=None):
    return {"epoch_s_min": lo or median, "epoch_s_median": median, "epoch_s_all": [median],
            "images_per_s": 60000 / median}


def _row(model, batch, xcnn_s, torch_s=None, graph_s=None, target=None, graph_failed=None, kernels_s=None):
    r = {"model": model, "batch": batch, "steps_per_repeat": 2, "repeats": 1, "xcnn": _summary(xcnn_s)}
    if kernels_s is not None:
        r["xcnn-kernels"] = _summary(kernels_s)
    if graph_s is not None:
        r["xcnn-graph"] = _summary(graph_s)
        r["graph_failed"], r["graph_replays"] = graph_failed, 0 if graph_failed else 5
    if torch_s is not None:
        r["torch"] = _summary(torch_s)
        r["ratio_median"] = r["ratio_min"] = xcnn_s / torch_s
        best = r["ratio_median"]
        if graph_s is not None:
            r["ratio_graph_median"] = graph_s / torch_s
            best = min(best, r["ratio_graph_median"])
        if kernels_s is not None:
            r["ratio_kernels_median"] = kernels_s / torch_s
            best = min(best, r["ratio_kernels_median"])
        r["target"] = target
        r["met"] = target is not None and best <= target
    return r


def _result(device, rows, **kw):
    m = dict(machine.describe(device if device.startswith("cuda") else None), threads=2)
    res = {"device": device, "started": "now", "command": f"python -m xcnn.bench --device {device}", "seconds": 1,
           "spec": {"images": 16, "repeats": 2, "threads": 2}, "memory": [], "notes": [],
           "runs": [{"label": "Training speed", "torch_skipped": None, "machine": m, "rows": rows}]}
    res.update(kw)
    return res


def test_gpu_report_shows_the_graph_rows_and_the_gpu_targets(tmp_path):
    rows = [_row("seed-cnn", 50, 1.1, torch_s=1.0, graph_s=1.2, kernels_s=0.75, target=GPU_TARGETS[("seed-cnn", 50)]),
            _row("seed-cnn", 1024, 0.1, torch_s=0.05, graph_s=60000 / 2.5e6, target=None)]
    write_markdown(tmp_path / "b.md", _result("cuda", rows))
    md = (tmp_path / "b.md").read_text()
    assert md.startswith("# xcnn vs PyTorch training speed (cuda)")
    assert "| seed-cnn, --cuda-graph | 50 |" in md and "| 1.20 |" in md
    assert "| seed-cnn, eager, our GEMM kernels | 50 | 0.75 / 0.75 |" in md and "| 0.75 |" in md
    assert "- met: seed-cnn @ 50" in md  # by the kernels row: the better of the xcnn rows counts and "- not met: none" in md
    assert "images/s at batch 1024: 2,500,000 (target >= 1,000,000: met)" in md
    assert "Why the missed targets" not in md  # the CPU analysis link is for CPU reports


def test_a_failed_capture_and_a_missed_gpu_target_are_said(tmp_path):
    rows = [_row("seed-cnn", 50, 1.2, torch_s=1.0, graph_s=1.3, target=1.0, graph_failed="RuntimeError: boom"),
            _row("seed-cnn", 1024, 0.5, torch_s=0.4, graph_s=0.5, target=None, graph_failed="RuntimeError: boom")]
    write_markdown(tmp_path / "b.md", _result("cuda", rows))
    md = (tmp_path / "b.md").read_text()
    assert "| seed-cnn, --cuda-graph (capture failed: RuntimeError: boom; eager steps) | 50 |" in md
    assert "- met: none" in md and "- not met: seed-cnn @ 50 (1.20 > 1.0)" in md
    assert "images/s at batch 1024: 120,000 (target >= 1,000,000: **not met**)" in md


def test_cpu_report_tables_targets_memory_profile_and_machine(tmp_path):
    rows = [_row("seed-cnn", 50, 1.4, torch_s=2.8, target=TARGETS["seed-cnn"]),
            _row("mlp1", 1024, 0.37, torch_s=0.32, target=TARGETS["mlp1"])]
    memory = [{"framework": "xcnn", "model": "seed-cnn", "batch": 1024, "steps": 59, "steps_done": 59,
               "seconds": 1.5, "peak_rss_bytes": 300 * 2**20, "peak_rss_before_training_bytes": 100 * 2**20},
              {"framework": "torch", "skipped": "torch not importable"}]
    prof = {"model": "seed-cnn", "batch": 50, "steps": 2, "total_s": 0.01, "epoch_s": 6.0,
            "ops": [{"op": "convolution", "seconds": 0.006, "share": 0.6},
                    {"op": "other (layer checks, python, data)", "seconds": 0.004, "share": 0.4}]}
    res = _result("cpu", rows, memory=memory, notes=["a note"])
    res["runs"][0]["profiles"] = [prof]
    write_markdown(tmp_path / "b.md", res)
    md = (tmp_path / "b.md").read_text()
    assert "| model | batch |" in md
    assert "| seed-cnn | 50 | 1.40 / 1.40 | 2.80 / 2.80 | 0.50 (0.50) | 42,857 | <= 0.8 | yes |" in md
    assert "| mlp1 | 1024 | 0.37 / 0.37 | 0.32 / 0.32 | 1.16 (1.16) | 162,162 | <= 1.0 | **no** |" in md
    assert "- met: seed-cnn @ 50" in md and "- not met: mlp1 @ 1024 (1.16 > 1.0)" in md
    assert "Why the missed targets are missed: [cpu-analysis.md](cpu-analysis.md)" in md
    assert "Peak memory" in md and "| xcnn | seed-cnn | 1024 | 300 MiB | 100 MiB | 59/59 | 1.50 |" in md
    assert "| torch | | | skipped: torch not importable |" in md
    assert "- peak RSS of an xcnn seed-cnn epoch at batch 1024: 300 MiB (under 1 GiB)" in md
    assert "## Profile" in md and "seed-cnn batch 50: 2 steps" in md and "convolution" in md
    assert "## Machine" in md and f"- cpu: {machine.cpu_model()}" in md
    assert "## Notes" in md and "- a note" in md


def test_without_torch_the_table_has_xcnn_only_and_no_targets(tmp_path):
    res = _result("cpu", [_row("mlp1", 8, 2.0)])
    res["runs"][0]["torch_skipped"] = "--no-torch given"
    write_markdown(tmp_path / "b.md", res)
    md = (tmp_path / "b.md").read_text()
    assert "PyTorch part skipped: --no-torch given" in md
    assert "| mlp1 | 8 | 2.00 / 2.00 | - | - | 30,000 | - | - |" in md
    assert "## Targets" not in md
