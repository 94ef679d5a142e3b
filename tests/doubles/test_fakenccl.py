"""The NCCL double (tests/doubles/fakenccl.py) in one process: it answers every call that needs no GPU
exactly as CuPy 14.2's ``cupy.cuda.nccl`` does (recorded from the real binding in nccl_outcomes.json),
it resolves CuPy's names only, and without it ``import cupy.cuda.nccl`` is what a CuPy wheel without
the NCCL library gives. (Its rules across processes are tested under mpirun in tests/dist.)"""
from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from doubles import fakecupy as fc
from doubles import fakenccl, gen_nccl_outcomes
from xcnn.cuda import nccl as xcnn_nccl

RECORDED = json.loads((Path(__file__).resolve().parent / "nccl_outcomes.json").read_text())


@pytest.fixture
def nccl(monkeypatch):
    with fc.install(monkeypatch, nccl=fakenccl):
        yield importlib.import_module("cupy.cuda.nccl")


@pytest.mark.parametrize("name", sorted(gen_nccl_outcomes.SCENARIOS))
def test_the_double_answers_as_cupys_binding_does(nccl, name):
    """Argument conversion (``bytes commId``, ``intptr_t``, ``size_t``, ``int``), the NULL handle of a
    communicator that was never initialised, the error texts: the same type, status and message."""
    assert RECORDED["cupy_version"] == "14.2.0"
    assert gen_nccl_outcomes.outcome(gen_nccl_outcomes.SCENARIOS[name], nccl) == RECORDED["outcomes"][name]


def test_every_scenario_was_recorded():
    assert set(RECORDED["outcomes"]) == set(gen_nccl_outcomes.SCENARIOS)


def test_only_cupys_names_resolve_with_cupys_signatures(nccl):
    names = fc.NAMES["modules"]["cupy.cuda.nccl"]
    for n, v in vars(nccl).items():
        if not n.startswith("_"):
            assert n in names, f"cupy.cuda.nccl.{n} is not a CuPy name"
    assert _sig(nccl.NcclCommunicator.__init__) == names["NcclCommunicator"]["sig"]
    assert _sig(nccl.NcclError.__init__) == names["NcclError"]["sig"] == "status"
    assert _sig(nccl.get_unique_id) == names["get_unique_id"]["sig"]
    real = fc.NAMES["classes"]["cupy.cuda.nccl.NcclCommunicator"]
    for n, v in vars(fakenccl.NcclCommunicator).items():
        if n.startswith("_"):
            continue
        assert n in real, f"NcclCommunicator.{n} is not a CuPy name"
        if callable(v):
            assert _sig(v) == real[n]["sig"], n
    with pytest.raises(NotImplementedError, match="cupy.cuda.nccl.groupStart is not modelled"):
        nccl.groupStart()
    with pytest.raises(AttributeError, match="module 'cupy.cuda.nccl' has no attribute 'ncclBroadcast'"):
        nccl.ncclBroadcast  # noqa: B018


def _sig(f):
    params = list(inspect.signature(f).parameters.values())
    return ", ".join(p.name for p in params if p.name != "self")


def test_without_the_nccl_library_cupy_cuda_nccl_only_says_so(monkeypatch):
    """A CuPy wheel without NCCL imports ``cupy.cuda.nccl`` with ``available = False`` and nothing else
    (cupy/cuda/nccl.py:12-19 (v14.2.0)); xcnn says what to install. It is never an attribute of cupy.cuda."""
    with fc.install(monkeypatch) as cp:
        mod = importlib.import_module("cupy.cuda.nccl")
        assert mod.available is False
        with pytest.raises(AttributeError, match="has no attribute 'NcclCommunicator'"):
            mod.NcclCommunicator  # noqa: B018
        with pytest.raises(AttributeError, match="module 'cupy.cuda' has no attribute 'nccl'"):
            cp.cuda.nccl  # noqa: B018
        assert xcnn_nccl.binding() is mod
        assert "pip install nvidia-nccl-cu13" in xcnn_nccl.unavailable_reason()
    with fc.install(monkeypatch, nccl=fakenccl):
        assert xcnn_nccl.unavailable_reason() is None


def test_device_memory_is_found_by_address(monkeypatch):
    """What NCCL asks CUDA about a pointer: the block it lies in (a view's address too), its device, and
    whether the pool has it back; host memory and unknown streams are nobody's."""
    with fc.install(monkeypatch, devices=2) as cp:
        a = cp.zeros(100)
        with cp.cuda.Device(1):
            b = cp.zeros(3, dtype=np.float32)
            s = cp.cuda.Stream()
        assert fc.block_at(a.data.ptr) is fc.block_of(a) and fc.block_at(a[40:].data.ptr) is fc.block_of(a)
        assert fc.block_of(a).dtype == np.float64 and fc.block_of(a).used == 800
        assert fc.block_at(b.data.ptr).device_id == 1 and fc.block_of(b).dtype == np.float32
        assert fc.block_at(np.zeros(4).ctypes.data) is None
        assert fc.stream_at(s.ptr) is s and fc.stream_at(0) is None and s.device_id == 1
        block = fc.block_of(a)
        assert fc.in_use(block)
        del a
        assert fc.block_at(block.ptr) is block and not fc.in_use(block)
