"""Where the time goes (xcnn/bench/profile.py): read through the dispatcher's hook
(``xcnn.ops.profile_hook``) -- every op family of a seed-cnn and an MLP step is reported, the times
add up to the total, and no function is patched, not even while the profile runs."""
from __future__ import annotations

import contextlib
import importlib
import sys

import numpy as np
import pytest

from xcnn import ops
from xcnn.bench.runners import HYPER, XcnnRunner, synthetic_batches
from xcnn.cpu import config as cpu_config

profile_mod = importlib.import_module("xcnn.bench.profile")  # the module (it exports a function of that name)

CONV, POOL, ACT, GEMM, LOSS, OPT = ("convolution", "pooling", "elementwise (activations)",
                                    "GEMM (linear, incl. bias)", "loss (softmax CE)", "optimizer")
#: the op families a training step of each preset runs (seed-cnn: conv, ReLU, avg-pool, linear)
FAMILIES = {"seed-cnn": {CONV, POOL, ACT, GEMM, LOSS, OPT}, "mlp1": {ACT, GEMM, LOSS, OPT}}
OTHER = "other (layer checks, python, data)"


def _ops_of_a_step(model, batch):
    """The op names a training step calls, seen through a hook of our own."""
    seen = []

    @contextlib.contextmanager
    def hook(op, backend):
        seen.append(op)
        yield

    r = XcnnRunner(model, batch, "cpu", HYPER, synthetic_batches(model, batch, n=1))
    r.step()
    with ops.profile_hook(hook):
        r.step()
    return seen


@pytest.mark.parametrize("model", ["seed-cnn", "mlp1"])
def test_every_op_family_is_reported_and_the_times_add_up(model):
    threads = cpu_config.get().threads
    p = profile_mod.profile(model, 8, "cpu", steps=3)
    assert cpu_config.get().threads == threads  # one thread while profiling, restored afterwards
    assert (p["model"], p["batch"], p["steps"]) == (model, 8, 3)
    names = [r["op"] for r in p["ops"]]
    assert len(names) == len(set(names)) and names[-1] == OTHER
    assert set(names[:-1]) == FAMILIES[model]
    # each op the step calls belongs to a family (none is reported under its raw name)
    called = _ops_of_a_step(model, 8)
    assert {profile_mod.FAMILIES[op] for op in called} == FAMILIES[model]
    for r in p["ops"][:-1]:
        assert r["seconds"] > 0 and r["share"] == pytest.approx(r["seconds"] / p["total_s"])
    seconds = [r["seconds"] for r in p["ops"][:-1]]
    assert seconds == sorted(seconds, reverse=True)
    assert p["ops"][-1]["seconds"] >= 0  # the ops' times are inside the total
    assert sum(r["seconds"] for r in p["ops"]) == pytest.approx(p["total_s"], rel=1e-9)
    assert sum(r["share"] for r in p["ops"]) == pytest.approx(1.0, rel=1e-9)
    assert p["epoch_s"] == pytest.approx(p["total_s"] / 3 * 60000 / 8)
    text = profile_mod.format_profile(p)
    assert text.splitlines()[0].startswith(f"{model} batch 8: 3 steps in")
    for name in names:
        assert name in text


def _functions():
    """Every function, class and method of xcnn's loaded modules (and NumPy's top level), by identity."""
    snap = {}
    for modname, mod in list(sys.modules.items()):
        if not (modname == "xcnn" or modname.startswith("xcnn.") or modname == "numpy"):
            continue
        for name, obj in list(vars(mod).items()):
            if callable(obj):
                snap[(modname, name)] = obj
            if isinstance(obj, type) and obj.__module__ == modname:
                for attr, val in list(vars(obj).items()):
                    if callable(val) or isinstance(val, (staticmethod, classmethod, property)):
                        snap[(modname, name, attr)] = val
    return snap


def _changed(before, after):
    return sorted(str(k) for k in before.keys() | after.keys() if before.get(k) is not after.get(k))


def test_no_function_is_patched_even_while_profiling(monkeypatch):
    during = []

    class Spy(profile_mod._Timer):
        """The profiler's own timer, also taking a snapshot at its first call (mid-profile)."""

        def __call__(self, op, backend):
            if not during:
                during.append(_changed(before, _functions()))
            during.append(op)
            return super().__call__(op, backend)

    monkeypatch.setattr(profile_mod, "_Timer", Spy)
    before = _functions()
    assert len(before) > 500
    assert ops.set_profile_hook(None) is None  # no hook installed before
    p = profile_mod.profile("seed-cnn", 4, "cpu", steps=2)
    assert during and during[0] == [], f"patched while profiling: {during[0]}"
    assert {profile_mod.FAMILIES[op] for op in during[1:]} == FAMILIES["seed-cnn"]
    assert _changed(before, _functions()) == []
    assert ops.set_profile_hook(None) is None  # and removed afterwards
    assert {r["op"] for r in p["ops"]} >= FAMILIES["seed-cnn"]


def test_the_timer_charges_a_nested_op_once_to_the_outer_family(monkeypatch):
    ticks = iter(np.arange(0.0, 100.0))
    monkeypatch.setattr(profile_mod.time, "perf_counter", lambda: float(next(ticks)))  # one tick per read
    syncs = []
    timer = profile_mod._Timer(lambda: syncs.append(1))
    with timer("conv2d_forward", "numpy"):
        with timer("relu_forward", "numpy"):  # an op inside an op: already covered by the outer one
            pass
    with timer("sgd_update", "numpy"):
        pass
    assert timer.totals == {CONV: 1.0, OPT: 1.0} and timer.depth == 0
    assert len(syncs) == 4  # the device is synchronised around each outer op only
