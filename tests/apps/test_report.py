"""The report (``python -m xcnn.report --quick``, xcnn/apps/report.py): every file, the table's
numbers against the runs' metrics, feature maps against an independent forward pass, and picking
up (or refusing) runs already there."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import weights
from typer.testing import CliRunner

from xcnn.apps.report import app as report_app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

NETS = ("seed-cnn", "mlp2", "mlp1")
PARAMS = {"seed-cnn": "4,330", "mlp2": "396,210", "mlp1": "318,010"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, data_args):
    """One quick report, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("report")
    res = runner.invoke(report_app, ["--quick", "--device", "cpu", "--runs", str(root / "runs"),
                                     "--out", str(root / "out"), *data_args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return root


def test_quick_report_writes_every_file(quick):
    out = quick / "out"
    expected = ["report.md", "table.md", "table.csv", "curves_comparison.png", "kernels_conv1.png"]
    expected += [f"curves_{n}_{k}.png" for n in NETS for k in ("iteration", "epoch")]
    expected += [f"maps_{layer}_epoch{e:03d}.{ext}" for layer in ("relu1", "relu2") for e in (0, 1, 2)
                 for ext in ("png", "npz")]
    for f in expected:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)  # and nothing else (no temp files)
    md = (out / "report.md").read_text()
    for f in expected:
        if f.endswith(".png"):
            assert f"]({f})" in md, f"report.md does not embed {f}"
    for word in ("Quick run", "stand in", "python -m xcnn.report", "NumPy", "cores", "python -m xcnn.train"):
        assert word in md, word


def test_table_has_the_three_networks_with_their_parameter_counts_and_run_accuracies(quick):
    lines = [ln for ln in (quick / "out" / "table.md").read_text().splitlines() if ln.startswith("| ")]
    header, rows = [c.strip() for c in lines[0].strip("|").split("|")], lines[1:]
    assert len(rows) == 3
    cells = {r.strip("|").split("|")[0].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows}
    assert list(cells) == list(NETS)
    col = {name: header.index(name) for name in header}
    for n in NETS:
        m = json.loads((quick / "runs" / f"{n}-quick" / "metrics.json").read_text())
        row = cells[n]
        assert row[col["parameters"]] == PARAMS[n]
        assert row[col["test accuracy (final)"]] == f"{100 * m['final_test_acc']:.2f} %"
        reach = next((h["epoch"] for h in m["history"] if h["test_acc"] >= 0.98), None)
        assert row[col["epochs to reach 98 %"]] == (str(reach) if reach else "—")
    ref = {n: cells[n][col["report: test accuracy"]] for n in NETS}
    assert ref["seed-cnn"].startswith("98.54") and ref["mlp2"].startswith("98.33") and ref["mlp1"].startswith("98.00")
    with open(quick / "out" / "table.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [r["network"] for r in csv_rows] == list(NETS)
    for r in csv_rows:
        m = json.loads((quick / "runs" / f"{r['network']}-quick" / "metrics.json").read_text())
        assert int(r["parameters"]) == m["parameters"] == int(PARAMS[r["network"]].replace(",", ""))
        assert float(r["test accuracy (final)"]) == round(100 * m["final_test_acc"], 2)


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_saved_feature_maps_equal_an_independent_forward_pass(quick, mnist, seed_cnn_reference, epoch):
    params = weights(quick / "runs" / "seed-cnn-quick" / f"epoch_{epoch:03d}.npz")
    first = None
    for layer in ("relu1", "relu2"):
        saved = np.load(quick / "out" / f"maps_{layer}_epoch{epoch:03d}.npz")
        idx = saved["indices"]
        # the first test image of each class 1, 2, 3, 4
        assert list(mnist.test_labels[idx]) == [1, 2, 3, 4]
        for i, c in zip(idx, (1, 2, 3, 4)):
            assert not (mnist.test_labels[:i] == c).any()
        ref = seed_cnn_reference(params, mnist.test_images[idx])
        want = {"relu1": (4, 28, 28), "relu2": (8, 14, 14)}[layer]
        assert saved["maps"].shape == (4,) + want
        np.testing.assert_allclose(saved["maps"], ref[layer], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(saved["pred"], ref["probs"].argmax(axis=1))
        np.testing.assert_allclose(saved["prob"], ref["probs"].max(axis=1), rtol=1e-4, atol=1e-5)
        assert int(saved["epoch"]) == epoch and str(saved["layer"]) == layer
        first = first or saved["maps"].std()
    assert first > 0  # not a blank figure


def test_reuse_picks_up_finished_runs_and_refuses_mismatches(quick, data_args, tmp_path):
    runs = quick / "runs"
    stamp = {n: (runs / f"{n}-quick" / "checkpoint.npz").stat().st_mtime_ns for n in NETS}
    res = runner.invoke(report_app, ["--quick", "--reuse", "--device", "cpu", "--runs", str(runs),
                                     "--out", str(tmp_path / "again"), *data_args])
    assert res.exit_code == 0, res.output
    assert "reusing" in res.output
    assert {n: (runs / f"{n}-quick" / "checkpoint.npz").stat().st_mtime_ns for n in NETS} == stamp
    assert (tmp_path / "again" / "table.md").read_text() == (quick / "out" / "table.md").read_text()
    # an existing run without --reuse, and a run with other settings: one clear line, exit 2
    res = runner.invoke(report_app, ["--quick", "--device", "cpu", "--runs", str(runs), "--out", str(tmp_path / "x"),
                                     *data_args])
    assert res.exit_code == 2 and "--reuse" in res.output and "Traceback" not in res.output
    res = runner.invoke(report_app, ["--quick", "--reuse", "--epochs-cnn", "4", "--device", "cpu",
                                     "--runs", str(runs), "--out", str(tmp_path / "y"), *data_args])
    assert res.exit_code == 2 and "epochs" in res.output and "other settings" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_reuse_resumes_an_unfinished_run(quick, data_args, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(quick / "runs", runs)
    m_path = runs / "mlp1-quick" / "metrics.json"
    m = json.loads(m_path.read_text())
    m["status"] = "interrupted"
    m_path.write_text(json.dumps(m))
    res = runner.invoke(report_app, ["--quick", "--reuse", "--device", "cpu", "--runs", str(runs),
                                     "--out", str(tmp_path / "out"), *data_args])
    assert res.exit_code == 0, res.output
    assert "mlp1: resuming" in res.output
    assert json.loads(m_path.read_text())["status"] == "completed"
    # a run that says "running" and was written moments ago is left alone
    m["status"] = "running"
    m_path.write_text(json.dumps(m))
    res = runner.invoke(report_app, ["--quick", "--reuse", "--device", "cpu", "--runs", str(runs),
                                     "--out", str(tmp_path / "out2"), *data_args])
    assert res.exit_code == 2 and "training right now" in res.output


def test_too_few_cnn_epochs_for_the_snapshots_is_refused(tmp_path):
    res = runner.invoke(report_app, ["--quick", "--epochs-cnn", "1", "--device", "cpu", "--runs",
                                     str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--epochs-cnn 1 is too few" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_python_m_xcnn_report_runs_the_app(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "xcnn.report", "--quick", "--epochs-cnn", "1", "--device", "cpu",
                        "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith("error: --epochs-cnn 1 is too few")
