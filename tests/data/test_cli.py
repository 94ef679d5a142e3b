"""``python -m xcnn.data fetch|info`` (xcnn/data/cli.py): one-line errors with the right exit
codes, a fetch from a source folder and the info it then shows; the module runs as a script."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from doubles.fakewheel import synthetic_mnist
from helpers import run_main

from xcnn import data
from xcnn.data import specs
from xcnn.data.cli import main

REPO = Path(__file__).resolve().parents[2]


def _cli(args, capsys):
    """Run the command in this process: (exit status, stdout, stderr)."""
    return run_main(main, args, capsys)


def test_cli_errors_are_one_line(tmp_path, no_ambient_data, capsys):
    code, out, err = _cli(["info", "mnist", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and "python -m xcnn.data fetch mnist" in err
    code, out, err = _cli(["fetch", "cifar"], capsys)  # the parser refuses a name not in the choices
    assert code == 2 and "'cifar' is not one of" in err and "fashion-mnist" in err
    code, out, err = _cli(["fetch", "fashion-mnist", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "apt-get install dataset-fashion-mnist" in err


def test_cli_fetch_and_info(tmp_path, no_ambient_data, monkeypatch, capsys, write_dataset):
    images, labels = synthetic_mnist()
    pins = write_dataset(tmp_path / "src", images, labels, 8)
    monkeypatch.setitem(data.DATASETS, "fashion-mnist",
                        specs.Spec("fashion-mnist", data.DATASETS["fashion-mnist"].classes, pins))
    code, out, err = _cli(["fetch", "fashion-mnist", "--data-dir", str(tmp_path / "c"),
                           "--source", str(tmp_path / "src")], capsys)
    assert code == 0, err
    assert f"verified files in {tmp_path / 'c' / 'fashion-mnist'}" in out
    code, out, err = _cli(["info", "fashion-mnist", "--data-dir", str(tmp_path / "c")], capsys)
    assert code == 0, err
    assert "(8, 28, 28)" in out and "(4, 28, 28)" in out
    counts = [int((labels[:8] == k).sum()) for k in range(10)]
    assert f"labels per class {counts}" in out  # the train split's counts
    assert "Ankle boot" in out


def test_module_runs_as_script(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), XCNN_DATA=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "xcnn.data", "info", "fashion-mnist"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: fashion-mnist not found")
