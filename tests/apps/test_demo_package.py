"""Packaging: a built wheel ships the demo page (HTML, JS, CSS) and the new subpackages, and the installed
server finds its page inside the installed package, not in this checkout."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from helpers import ROOT

STATIC = sorted(p.name for p in (ROOT / "xcnn" / "apps" / "demo" / "static").iterdir())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src)
    shutil.copytree(ROOT / "xcnn", src / "xcnn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "kernels", src / "kernels")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp / "out"), str(src)], capture_output=True, text=True)
    if proc.returncode != 0 and "invalid command 'bdist_wheel'" in proc.stdout + proc.stderr:
        pytest.skip("cannot build a wheel offline: setuptools without bdist_wheel (needs setuptools>=70.1)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = (tmp / "out").glob("xcnn-*.whl")
    return whl


def test_wheel_ships_the_page_and_the_new_packages(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert STATIC == ["demo.css", "demo.js", "index.html"]
    assert {f"xcnn/apps/demo/static/{f}" for f in STATIC} <= names
    shipped = {n for n in names if n.endswith(".py")}
    for folder in ("interop", "apps/demo"):  # every module of the new packages, and their shims
        for path in (ROOT / "xcnn" / folder).glob("*.py"):
            assert f"xcnn/{folder}/{path.name}" in shipped, path
    for module in ("xcnn/nn/architecture.py", "xcnn/extras.py", "xcnn/export.py", "xcnn/import_onnx.py",
                   "xcnn/demo.py", "xcnn/apps/export.py", "xcnn/apps/import_onnx.py"):
        assert module in shipped, module
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Provides-Extra: onnx" in text and "Provides-Extra: demo" in text
    requires = [ln for ln in text.splitlines() if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    assert sorted(r.split()[1].split(">")[0] for r in requires) == ["matplotlib", "numpy", "typer"]


def test_installed_server_finds_its_page_in_the_package(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import json, xcnn.apps.demo.server as s; "
            "print(json.dumps({'static': str(s.STATIC), 'files': sorted(p.name for p in s.STATIC.iterdir())}))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["static"] == str(site / "xcnn" / "apps" / "demo" / "static") and info["files"] == STATIC
    for f in STATIC:
        assert (site / "xcnn" / "apps" / "demo" / "static" / f).read_bytes() == \
            (ROOT / "xcnn" / "apps" / "demo" / "static" / f).read_bytes()
