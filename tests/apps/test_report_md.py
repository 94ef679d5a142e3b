"""The report's pieces (xcnn/apps/report_md.py) from hand-made run metrics: table 3 as Markdown and
CSV, the epoch that reaches 98 %, the curves copied (drawn first when a run lacks them), and a
missing snapshot refused. The whole report is tested end to end in test_report.py."""
from __future__ import annotations

import csv
import io

import pytest

from xcnn.apps import report_md
from xcnn.apps.report_md import ReportError
from xcnn.errors import ConfigError
from xcnn.train.metrics import EPOCH_FIELDS, ITER_FIELDS, write_csv


def _metrics(accs, parameters, device="cpu", seconds=(1.0, 3.0)):
    history = [{"epoch": i + 1, "test_acc": a, "train_seconds": s} for i, (a, s) in enumerate(zip(accs, seconds))]
    return {"parameters": parameters, "epochs_done": len(accs), "final_test_acc": accs[-1],
            "best_test_acc": max(accs), "mean_train_seconds_per_epoch": sum(seconds[:len(accs)]) / len(accs),
            "device": device, "history": history}


METRICS = {"seed-cnn": _metrics([0.9712, 0.98504], 4330), "mlp2": _metrics([0.97, 0.9649], 396210),
           "mlp1": _metrics([0.95, 0.96], 318010, device="cuda:0")}


def test_epochs_to_reach():
    h = [{"epoch": 1, "test_acc": 0.97}, {"epoch": 2, "test_acc": 0.98}, {"epoch": 3, "test_acc": 0.99}]
    assert report_md.epochs_to_reach(h) == 2
    assert report_md.epochs_to_reach(h, 0.985) == 3
    assert report_md.epochs_to_reach(h, 0.995) is None and report_md.epochs_to_reach([]) is None


def test_table_rows_markdown_and_csv():
    rows = report_md.table_rows(METRICS)
    assert [r["network"] for r in rows] == ["seed-cnn", "mlp2", "mlp1"]
    cnn = rows[0]
    assert cnn["parameters"] == 4330 and cnn["epochs"] == 2 and cnn["device"] == "cpu"
    assert cnn["test accuracy (final)"] == 98.5 and cnn["test accuracy (best)"] == 98.5
    assert cnn["seconds per epoch"] == 2.0 and cnn["epochs to reach 98 %"] == 2
    assert rows[1]["test accuracy (final)"] == 96.49 and rows[1]["test accuracy (best)"] == 97.0
    assert rows[1]["epochs to reach 98 %"] == ""
    md = report_md.table_markdown(rows).splitlines()
    assert [c.strip() for c in md[0].strip("|").split("|")] == report_md.TABLE_COLUMNS
    assert len(md) == 5 and md[1].count("|") == len(report_md.TABLE_COLUMNS) + 1
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in md[2:]]
    col = {c: i for i, c in enumerate(report_md.TABLE_COLUMNS)}
    assert cells[0][col["parameters"]] == "4,330" and cells[1][col["parameters"]] == "396,210"
    assert cells[0][col["test accuracy (final)"]] == "98.50 %" and cells[1][col["test accuracy (final)"]] == "96.49 %"
    assert cells[0][col["epochs to reach 98 %"]] == "2" and cells[1][col["epochs to reach 98 %"]] == "—"
    assert cells[0][col["seconds per epoch"]] == "2.0" and cells[2][col["device"]] == "cuda:0"
    assert cells[0][col["report: test accuracy"]] == "98.54 % (30 epochs)"
    assert cells[1][col["report: seconds per epoch"]] == "~8 (NumPy + Cython)"
    back = list(csv.DictReader(io.StringIO(report_md.table_csv(rows))))
    assert list(back[0]) == report_md.CSV_COLUMNS
    assert [r["network"] for r in back] == ["seed-cnn", "mlp2", "mlp1"]
    assert back[0]["parameters"] == "4330" and back[0]["test accuracy (final)"] == "98.5"
    assert back[1]["epochs to reach 98 %"] == "" and back[2]["report: epochs"] == "40"


def test_a_pipe_in_a_cell_does_not_break_the_markdown_table():
    rows = report_md.table_rows({"mlp1": METRICS["mlp1"]})
    rows[0]["structure"] = "a|b"
    line = report_md.table_markdown(rows).splitlines()[2]
    assert "a\\|b" in line and line.replace("\\|", "").count("|") == len(report_md.TABLE_COLUMNS) + 1


def test_copy_curves_draws_missing_curves_and_copies_them(tmp_path):
    run = tmp_path / "run"
    write_csv(run / "metrics_iter.csv", [{"iteration": i, "epoch": i / 10, "train_loss": 2.0 / (i + 1),
                                          "train_acc": 0.1 + i / 40} for i in range(1, 21)], ITER_FIELDS)
    write_csv(run / "metrics_epoch.csv", [{"epoch": e, "iteration": 10 * e, "lr": 0.1, "train_loss": 1.0 / e,
                                           "train_acc": 0.5, "test_loss": 1.2 / e, "test_acc": 0.6, "train_seconds": 1,
                                           "eval_seconds": 0.1, "images_per_second": 100} for e in (1, 2)],
              EPOCH_FIELDS)
    out = tmp_path / "out"
    written = report_md.copy_curves(run, "mlp1", out)
    assert [p.name for p in written] == ["curves_mlp1_iteration.png", "curves_mlp1_epoch.png"]
    for p, src in zip(written, ("curves_iteration.png", "curves_epoch.png")):
        assert p.read_bytes() == (run / src).read_bytes() and p.read_bytes()[:4] == b"\x89PNG"


def test_a_missing_snapshot_is_refused(tmp_path, mnist_dir):
    with pytest.raises(ReportError, match=r"epoch_005.npz is missing.*--save-epochs") as e:
        report_md.map_figures(tmp_path / "run", tmp_path / "out", (5,), data_dir=mnist_dir)
    assert isinstance(e.value, ConfigError)
    assert not (tmp_path / "out").exists()
