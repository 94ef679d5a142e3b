"""Bad input to ``python -m xcnn.export``, ``xcnn.import_onnx`` and ``xcnn.demo``, as tests/test_bad_input.py
tries it on the other commands: each case runs the real entry point (the shim's ``run``) in this
process and asserts exit status 2, exactly one line ``error: ...`` on stderr naming the problem, no
traceback, nothing on stdout, and every file that existed before still there with the same bytes
(and nothing half-written)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from xcnn.apps import export as export_app
from xcnn.apps import import_onnx as import_app
from xcnn.apps.demo import server as demo_app
from xcnn.nn.architecture import save_network
from xcnn.nn.layers import Flatten, Linear
from xcnn.nn.models import build_model
from xcnn.nn.network import Network
from helpers import run_main, snapshot

MAINS = {"export": export_app.run, "import": import_app.run, "demo": demo_app.run}
NEEDS = {"export": ("onnx",), "import": ("onnx",), "demo": ("starlette", "uvicorn")}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A folder with a checkpoint, a non-preset 8x8 RGB network, a file that is no checkpoint, an ONNX
    model with an op xcnn lacks, a file that is no ONNX model, and a read-only folder."""
    monkeypatch.chdir(tmp_path)
    build_model("mlp1", seed=0).save(tmp_path / "good.npz")
    save_network(Network([Flatten(), Linear(3 * 8 * 8, 10)], name="rgb8"), tmp_path / "rgb8.npz",
                 meta={"input_shape": [3, 8, 8]})
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    (tmp_path / "garbage.onnx").write_bytes(b"\x00not a protobuf at all" * 3)
    (tmp_path / "afile").write_text("I am a file\n")
    try:
        from onnx import TensorProto, helper

        g = helper.make_graph([helper.make_node("LeakyRelu", ["x"], ["y"], name="act7")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 4, 4])])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        (tmp_path / "leaky.onnx").write_bytes(model.SerializeToString())
    except ImportError:
        pass
    def served(*a, **k):  # a case that got as far as serving would otherwise serve forever
        raise AssertionError("the demo started serving")

    monkeypatch.setattr(demo_app, "_server", served)
    (tmp_path / "ro").mkdir()
    real = os.access  # read-only, as the kernel answers for such a folder (root's chmod would not refuse)
    top = str((tmp_path / "ro").resolve())
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False
                        if mode & os.W_OK and str(Path(p).resolve()).startswith(top) else real(p, mode, *a, **k))
    return tmp_path


CASES = [
    # (id, tool, argv, words the one line must hold, needs the tool's extra)
    ("export-no-args", "export", [], "Missing argument 'checkpoint'", False),
    ("export-missing", "export", ["none.npz", "o.onnx"], "does not exist", False),
    ("export-garbage", "export", ["garbage.npz", "o.onnx"], "not a readable xcnn checkpoint", False),
    ("export-out-dir", "export", ["good.npz", "."], "is a directory", False),
    ("export-out-under-file", "export", ["good.npz", "afile/o.onnx"], "is a file", False),
    ("export-read-only", "export", ["good.npz", "ro/o.onnx"], "is not writable", False),
    ("export-dtype", "export", ["good.npz", "o.onnx", "--dtype", "float16"], "float32 or float64", False),
    ("export-shape-text", "export", ["good.npz", "o.onnx", "--input-shape", "1,2"], "C,H,W", True),
    ("export-shape-net", "export", ["good.npz", "o.onnx", "--input-shape", "1,20,20"], "does not take inputs", True),
    ("export-opset", "export", ["good.npz", "o.onnx", "--opset", "3"], "opset must be an int from 13", True),
    ("export-opset-text", "export", ["good.npz", "o.onnx", "--opset", "x"], "Invalid value for '--opset'", False),
    ("import-no-args", "import", [], "Missing argument 'model'", False),
    ("import-missing", "import", ["none.onnx", "o.npz"], "does not exist", True),
    ("import-garbage", "import", ["garbage.onnx", "o.npz"], "not a readable ONNX model", True),
    ("import-unsupported", "import", ["leaky.onnx", "o.npz"], "unsupported op LeakyRelu in node 'act7'", True),
    ("import-out-dir", "import", ["leaky.onnx", "."], "is a directory", False),
    ("import-read-only", "import", ["leaky.onnx", "ro/o.npz"], "is not writable", False),
    ("import-flag", "import", ["--bogus"], "No such option: --bogus", False),
    ("demo-missing", "demo", ["none.npz"], "does not exist", True),
    ("demo-garbage", "demo", ["garbage.npz"], "not a readable xcnn checkpoint", True),
    ("demo-device", "demo", ["good.npz", "--device", "tpu"], "tpu", True),
    ("demo-port-text", "demo", ["good.npz", "--port", "abc"], "Invalid value for '--port'", False),
    ("demo-port-range", "demo", ["good.npz", "--port", "99999"], "cannot listen on 127.0.0.1:99999", True),
    ("demo-not-28x28", "demo", ["rgb8.npz", "--port", "0"], "draws 28x28 digits", True),
]


def _run(tool, argv, capsys):
    return run_main(MAINS[tool], argv, capsys)


@pytest.mark.parametrize("tool, argv, said, needs_extra", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_in_one_line_and_nothing_lost(world, capsys, tool, argv, said, needs_extra):
    if needs_extra:
        for module in NEEDS[tool]:
            pytest.importorskip(module, reason=f"needs the extra with {module}")
    before = snapshot(world)
    code, out, err = _run(tool, argv, capsys)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and said in err, err
    assert "Traceback" not in err and out == ""
    assert snapshot(world) == before  # nothing lost, nothing half-written


@pytest.mark.parametrize("tool, module, extra", [("export", "onnx", "onnx"), ("import", "onnx", "onnx"),
                                                 ("demo", "starlette", "demo")])
def test_without_the_extra_the_command_names_it(world, capsys, monkeypatch, tool, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # what a plain install looks like to `import module`
    argv = {"export": ["good.npz", "o.onnx"], "import": ["garbage.onnx", "o.npz"], "demo": ["good.npz"]}[tool]
    before = snapshot(world)
    code, out, err = _run(tool, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and f"pip install 'xcnn[{extra}]'" in err, err
    assert out == "" and snapshot(world) == before


def test_an_unwritable_file_system_is_one_line(world, capsys, monkeypatch):
    """A write that fails anyway (a full disk) is the file system's own error, in one line, naming the file."""
    pytest.importorskip("onnx", reason="needs the [onnx] extra")
    import xcnn.interop.onnx_export as ex

    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(ex, "atomic_write_bytes", full_disk)
    before = snapshot(world)
    code, out, err = _run("export", ["good.npz", "o.onnx"], capsys)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err and "o.onnx" in err, err
    assert out == "" and snapshot(world) == before
