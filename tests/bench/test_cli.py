"""``python -m xcnn.bench`` (xcnn/bench/cli.py and the driver in worker.py): the quick run writes
the JSON results and the Markdown report; bad options are refused in one message, exit 2."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xcnn.bench.cli import main

ROOT = Path(__file__).resolve().parents[2]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_bench_quick_writes_json_and_markdown(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "xcnn.bench", "--quick", "--out", str(tmp_path), "--models", "seed-cnn,mlp1",
           "--batches", "8,16", "--profile"]
    if not HAS_TORCH:
        cmd.append("--no-torch")
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["bench-cpu.json", "bench-cpu.md"]
    res = json.loads((tmp_path / "bench-cpu.json").read_text())
    for key in ("started", "device", "spec", "command", "runs", "memory", "seconds"):
        assert key in res
    assert res["device"] == "cpu" and res["command"].startswith("python -m xcnn.bench --quick")
    run = res["runs"][0]
    m = run["machine"]
    for key in ("cpu", "cores", "numpy", "threads", "env", "platform", "cpu_kernels"):
        assert key in m
    assert "processor" not in m
    assert m["threads"] == 2 and m["env"]["OPENBLAS_NUM_THREADS"] == "2" and m["env"]["XCNN_NUM_THREADS"] == "2"
    if HAS_TORCH:
        assert run["torch_skipped"] is None and m["torch"]
    else:  # torch is never imported when the comparison is off; the results say why it is missing
        assert run["torch_skipped"] == "--no-torch given" and "torch" not in m
    assert [(r["model"], r["batch"]) for r in run["rows"]] == [("seed-cnn", 8), ("seed-cnn", 16),
                                                              ("mlp1", 8), ("mlp1", 16)]
    for r in run["rows"]:
        x = r["xcnn"]
        assert 0 < x["epoch_s_min"] <= x["epoch_s_median"] and x["images_per_s"] > 0
        assert len(x["epoch_s_all"]) == r["repeats"] >= 1
        if HAS_TORCH:
            assert r["torch"]["epoch_s_median"] > 0 and r["ratio_median"] > 0 and isinstance(r["met"], bool)
        else:
            assert "torch" not in r
    assert [(p["model"], p["batch"]) for p in run["profiles"]] == [(r["model"], r["batch"]) for r in run["rows"]]
    assert {o["op"] for o in run["profiles"][0]["ops"]} >= {"pooling", "optimizer", "convolution"}
    xm = [r for r in res["memory"] if r["framework"] == "xcnn"][0]
    assert xm["peak_rss_bytes"] >= xm["peak_rss_before_training_bytes"] > 0
    assert len(res["memory"]) == (2 if HAS_TORCH else 1)
    md = (tmp_path / "bench-cpu.md").read_text()
    assert "| model | batch |" in md and "Peak memory" in md and "## Machine" in md and "## Profile" in md


@pytest.mark.parametrize("args, message", [
    (["--models", "resnet"], "unknown ['resnet']; choose from seed-cnn"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "auto"], "--device must be cpu, cuda or cuda:N"),
    (["--batches", "8,x"], "invalid literal"),
])
def test_bad_options_exit_2_before_measuring(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(args + ["--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
