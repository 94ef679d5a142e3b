"""The report (python -m xcnn.report --quick) and feature-map CLI (python -m xcnn.visualize): every file,
the table's numbers, and feature maps checked against an independent NumPy forward pass."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xcnn import data
from xcnn.network import load_checkpoint
from xcnn.report import app as report_app
from xcnn.visualize import app as visualize_app

runner = CliRunner()

NETS = ("seed-cnn", "mlp2", "mlp1")
PARAMS = {"seed-cnn": "4,330", "mlp2": "396,210", "mlp1": "318,010"}


@pytest.fixture(scope="module")
def mnist():
    return data.load("mnist")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick report, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("report")
    res = runner.invoke(report_app, ["--quick", "--device", "cpu", "--runs", str(root / "runs"),
                                     "--out", str(root / "out")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return root


# --------------------------------------------------------------------------- #
# An independent forward pass: naive loops, float64
# --------------------------------------------------------------------------- #

def conv_naive(x, w, b, pad):
    """(N, C, H, W) * (O, C, KH, KW) -> (N, O, H', W'), stride 1, zero padding ``pad``: explicit loops
    over the kernel offsets (cross-correlation, as every CNN library means by convolution)."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    xp[:, :, pad:pad + H, pad:pad + W] = x
    OH, OW = H + 2 * pad - KH + 1, W + 2 * pad - KW + 1
    y = np.zeros((N, O, OH, OW))
    for o in range(O):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    y[:, o] += w[o, c, i, j] * xp[:, c, i:i + OH, j:j + OW]
        y[:, o] += b[o]
    return y


def avgpool_naive(x):
    N, C, H, W = x.shape
    y = np.zeros((N, C, H // 2, W // 2))
    for i in range(H // 2):
        for j in range(W // 2):
            y[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(2, 3))
    return y


def seed_cnn_naive(params, images_u8):
    """Every layer output of the report's CNN, from the checkpoint's raw arrays."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    x = images_u8.astype(np.float64)[:, None] / 255 - 0.5
    out = {"conv1": conv_naive(x, p["conv1.weight"], p["conv1.bias"], 2)}
    out["relu1"] = np.maximum(out["conv1"], 0)
    out["pool1"] = avgpool_naive(out["relu1"])
    out["conv2"] = conv_naive(out["pool1"], p["conv2.weight"], p["conv2.bias"], 1)
    out["relu2"] = np.maximum(out["conv2"], 0)
    out["pool2"] = avgpool_naive(out["relu2"])
    z = out["pool2"].reshape(len(x), -1) @ p["fc1.weight"].T + p["fc1.bias"]  # weight is (out, in)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out["probs"] = e / e.sum(axis=1, keepdims=True)
    return out


# --------------------------------------------------------------------------- #
# The report
# --------------------------------------------------------------------------- #

def test_quick_report_writes_every_file(quick):
    out = quick / "out"
    expected = ["report.md", "table.md", "table.csv", "curves_comparison.png", "kernels_conv1.png"]
    expected += [f"curves_{n}_{k}.png" for n in NETS for k in ("iteration", "epoch")]
    expected += [f"maps_{layer}_epoch{e:03d}.{ext}" for layer in ("relu1", "relu2") for e in (0, 1, 2)
                 for ext in ("png", "npz")]
    for f in expected:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
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
    import csv

    with open(quick / "out" / "table.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [r["network"] for r in csv_rows] == list(NETS)
    for r in csv_rows:
        m = json.loads((quick / "runs" / f"{r['network']}-quick" / "metrics.json").read_text())
        assert int(r["parameters"]) == m["parameters"] == int(PARAMS[r["network"]].replace(",", ""))
        assert float(r["test accuracy (final)"]) == round(100 * m["final_test_acc"], 2)


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_saved_feature_maps_equal_an_independent_forward_pass(quick, mnist, epoch):
    params = load_checkpoint(quick / "runs" / "seed-cnn-quick" / f"epoch_{epoch:03d}.npz")["params"]
    first = None
    for layer in ("relu1", "relu2"):
        saved = np.load(quick / "out" / f"maps_{layer}_epoch{epoch:03d}.npz")
        idx = saved["indices"]
        # the first test image of each class 1, 2, 3, 4
        assert list(mnist.test_labels[idx]) == [1, 2, 3, 4]
        for i, c in zip(idx, (1, 2, 3, 4)):
            assert not (mnist.test_labels[:i] == c).any()
        ref = seed_cnn_naive(params, mnist.test_images[idx])
        want = {"relu1": (4, 28, 28), "relu2": (8, 14, 14)}[layer]
        assert saved["maps"].shape == (4,) + want
        np.testing.assert_allclose(saved["maps"], ref[layer], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(saved["pred"], ref["probs"].argmax(axis=1))
        np.testing.assert_allclose(saved["prob"], ref["probs"].max(axis=1), rtol=1e-4, atol=1e-5)
        first = first or saved["maps"].std()
    assert first > 0  # not a blank figure


def test_reuse_picks_up_finished_runs_and_refuses_mismatches(quick, tmp_path):
    runs = quick / "runs"
    stamp = {n: (runs / f"{n}-quick" / "checkpoint.npz").stat().st_mtime_ns for n in NETS}
    res = runner.invoke(report_app, ["--quick", "--reuse", "--device", "cpu", "--runs", str(runs),
                                     "--out", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    assert "reusing" in res.output
    assert {n: (runs / f"{n}-quick" / "checkpoint.npz").stat().st_mtime_ns for n in NETS} == stamp
    assert (tmp_path / "again" / "table.md").read_text() == (quick / "out" / "table.md").read_text()
    # an existing run without --reuse, and a run with other settings: one clear line, exit 2
    res = runner.invoke(report_app, ["--quick", "--device", "cpu", "--runs", str(runs), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--reuse" in res.output and "Traceback" not in res.output
    res = runner.invoke(report_app, ["--quick", "--reuse", "--epochs-cnn", "4", "--device", "cpu",
                                     "--runs", str(runs), "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "epochs" in res.output and "other settings" in res.output


def test_reuse_resumes_an_unfinished_run(quick, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(quick / "runs", runs)
    m_path = runs / "mlp1-quick" / "metrics.json"
    m = json.loads(m_path.read_text())
    m["status"] = "interrupted"
    m_path.write_text(json.dumps(m))
    res = runner.invoke(report_app, ["--quick", "--reuse", "--device", "cpu", "--runs", str(runs),
                                     "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "mlp1: resuming" in res.output
    assert json.loads(m_path.read_text())["status"] == "completed"
    # a run that says "running" and was written moments ago is left alone
    m["status"] = "running"
    m_path.write_text(json.dumps(m))
    res = runner.invoke(report_app, ["--quick", "--reuse", "--device", "cpu", "--runs", str(runs),
                                     "--out", str(tmp_path / "out2")])
    assert res.exit_code == 2 and "training right now" in res.output


# --------------------------------------------------------------------------- #
# python -m xcnn.visualize
# --------------------------------------------------------------------------- #

def test_visualize_draws_any_layer_equal_to_the_independent_forward(quick, mnist, tmp_path):
    ck = quick / "runs" / "seed-cnn-quick" / "checkpoint.npz"
    res = runner.invoke(visualize_app, [str(ck), "--layer", "conv1", "--layer", "pool2", "--index", "0",
                                        "--index", "7", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    ref = seed_cnn_naive(load_checkpoint(ck)["params"], mnist.test_images[[0, 7]])
    for layer in ("conv1", "pool2"):
        assert (tmp_path / f"checkpoint_{layer}.png").is_file()
        saved = np.load(tmp_path / f"checkpoint_{layer}.npz")
        np.testing.assert_allclose(saved["maps"], ref[layer], rtol=1e-4, atol=1e-4)
    assert ref["conv1"].min() < 0  # conv1 is signed: the check covers more than ReLU outputs


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "does not exist"),
    (["{bad}"], "not a readable xcnn checkpoint"),
    (["{ck}", "--layer", "fc1"], "conv1, relu1, pool1, conv2, relu2, pool2"),
    (["{ck}", "--layer", "nope"], "unknown layer 'nope'"),
    (["{ck}", "--index", "10000"], "out of range"),
    (["{ck}", "--index=-1"], "out of range"),
])
def test_visualize_errors_are_one_line_with_exit_code_2(quick, tmp_path, args, message):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    fill = {"missing": tmp_path / "none.npz", "bad": bad, "ck": quick / "runs" / "seed-cnn-quick" / "checkpoint.npz"}
    argv = [a.format(**fill) for a in args] + ["--out", str(tmp_path / "o")]
    res = runner.invoke(visualize_app, argv)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")
