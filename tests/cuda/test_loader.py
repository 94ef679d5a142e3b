"""Compile checks for kernels/*.cu without a GPU, and the kernel loader's contract.

* nvcc: every file for sm_75, sm_80 and sm_90 with warnings as errors.
* NVRTC (what CuPy's RawModule uses), called through ctypes from the ``nvidia-cuda-nvrtc``
  wheel: our options plus ``-arch=compute_XX`` (PTX) and ``-arch=sm_XX`` (cubin), as CuPy
  passes one or the other; the PTX entry points must match the signatures we parse (so the
  argument checks of every launch check the real ABI).
* The loader finds the sources in a source checkout and inside a built wheel, and compiles
  each file once per (file, options, device).
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from xcnn.cuda import loader as K

ROOT = Path(__file__).resolve().parents[2]
FILES = K.kernel_files()
ARCHS = ["75", "80", "90"]


def test_sources_found_in_the_checkout():
    assert K.kernels_dir() == ROOT / "kernels"
    assert FILES == ["activation.cu", "gemm.cu", "im2col.cu", "loss.cu", "optim.cu", "pool.cu"]
    assert (ROOT / "xcnn" / "cuda" / "loader.py").is_file() and not (ROOT / "xcnn" / "kernels.py").exists()


#: Files whose emulation runs a block's threads with a real barrier (tests/doubles/emu_cuda.h), so they
#: may use shared memory and __syncthreads; everywhere else the threads run one after another.
BARRIER_FILES = {"gemm.cu"}
#: gemm.cu's kernels count in M, N, K (int, < 2^31 each) and address through 64-bit strides.
GEMM_INTS = {"M", "N", "K", "L", "S", "has_bias"}
GEMM_STRIDES = {"sa0", "sa1", "sb0", "sb1", "ldc"}


def _code(src):
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", src, flags=re.S)


@pytest.mark.parametrize("file", FILES)
def test_sources_follow_the_kernel_rules(file):
    """No #include (NVRTC), no atomics (results must not depend on timing), nothing the CPU emulation
    cannot run (shared memory and barriers only where it runs blocks with a barrier), f32+f64 of
    every kernel, 64-bit element counts and offsets."""
    from doubles import emu  # noqa: PLC0415

    code = _code(K.kernel_source(file))
    banned = ("#include", "atomic") if file in BARRIER_FILES else ("#include", "__shared__", "__syncthreads", "atomic")
    for word in banned:
        assert word not in code, f"{file} uses {word}"
    assert int(emu.uses_block_barrier(K.kernel_source(file))) == (1 if file in BARRIER_FILES else 0)
    names = set(K.kernel_signatures(file))
    assert names and all(n[:-4] + "_f32" in names and n[:-4] + "_f64" in names for n in names)
    for name, sig in K.kernel_signatures(file).items():
        if file == "gemm.cu":
            scalars = {p: t for t, p in sig if not t.endswith("*")}
            assert {"M", "N"} <= set(scalars), f"{name}: no M, N"
            for p, t in scalars.items():
                want = "long long" if p in GEMM_STRIDES else "int" if p in GEMM_INTS else None
                assert t == want, f"{name}: {t} {p} (strides are long long, counts int)"
        else:
            assert ("long long", "total") in sig, f"{name}: element count must be 64-bit"


def test_signature_parser():
    sigs = K.parse_signatures('extern "C" __global__ void k(const float* __restrict__ x, int* a, long long n, int m) {}')
    assert sigs == {"k": [("float*", "x"), ("int*", "a"), ("long long", "n"), ("int", "m")]}
    with pytest.raises(ValueError, match="unsupported"):
        K.parse_signatures('extern "C" __global__ void k(short s) {}')


# ----------------------------------------------------------------------------- nvcc

def _nvcc():
    nvcc = shutil.which("nvcc") or next(iter(glob.glob("/usr/local/cuda*/bin/nvcc")), None)
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    return nvcc


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("file", FILES)
def test_nvcc_compiles_without_warnings(file, arch, tmp_path):
    cmd = [_nvcc(), f"-arch=sm_{arch}", "-Werror", "all-warnings", "--cubin",
           "-o", str(tmp_path / "k.cubin"), str(K.kernel_path(file))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in (proc.stdout + proc.stderr).lower()


# ----------------------------------------------------------------------------- NVRTC via ctypes

def _find_libnvrtc():
    cands = []
    try:
        import nvidia  # namespace package of the nvidia-* wheels

        for base in nvidia.__path__:
            cands += sorted(glob.glob(os.path.join(base, "cu13", "lib", "libnvrtc.so.*")))
            cands += sorted(glob.glob(os.path.join(base, "cuda_nvrtc", "lib", "libnvrtc.so.*")))
    except ImportError:
        pass
    cands += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
    for c in cands:
        if "builtins" in c or ".alt." in c:
            continue
        try:
            # NVRTC dlopen()s its builtins by soname; load them first from the same directory,
            # since a wheel's lib/ is not on the loader path.
            for b in sorted(glob.glob(os.path.join(os.path.dirname(c), "libnvrtc-builtins.so.*"))):
                if ".alt." not in b:
                    ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(c), c
        except OSError:
            continue
    return None, None


class _NVRTC:
    def __init__(self, lib):
        self.lib = lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _ok(self, res, what, prog=None):
        if res != 0:
            msg = self.lib.nvrtcGetErrorString(res).decode()
            raise RuntimeError(f"{what}: {msg}\n{self.log(prog) if prog is not None else ''}")

    def version(self):
        a, b = ctypes.c_int(), ctypes.c_int()
        self._ok(self.lib.nvrtcVersion(ctypes.byref(a), ctypes.byref(b)), "nvrtcVersion")
        return a.value, b.value

    def log(self, prog):
        n = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
        buf = ctypes.create_string_buffer(n.value)
        self.lib.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")

    def compile(self, source, name, options):
        """Returns ``(log, ptx or None, cubin size or 0)``; raises with the log on failure."""
        prog = ctypes.c_void_p()
        self._ok(self.lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
                 "nvrtcCreateProgram")
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            self._ok(self.lib.nvrtcCompileProgram(prog, len(options), opts), f"compile {name} {options}", prog)
            log = self.log(prog)
            ptx, cubin = None, 0
            n = ctypes.c_size_t()
            if self.lib.nvrtcGetPTXSize(prog, ctypes.byref(n)) == 0 and n.value > 1:
                buf = ctypes.create_string_buffer(n.value)
                self._ok(self.lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
                ptx = buf.value.decode()
            if self.lib.nvrtcGetCUBINSize(prog, ctypes.byref(n)) == 0:
                cubin = n.value
            return log, ptx, cubin
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


@pytest.fixture(scope="module")
def nvrtc():
    lib, path = _find_libnvrtc()
    if lib is None:
        pytest.skip("NVRTC not found (pip install 'nvidia-cuda-nvrtc==13.0.*')")
    return _NVRTC(lib)


_PTX_BITS = {"int": 32, "unsigned int": 32, "float": 32, "long long": 64, "unsigned long long": 64, "double": 64}


def _ptx_entries(ptx):
    """``{entry name: [param bit widths]}`` from PTX text."""
    out = {}
    for m in re.finditer(r"\.entry\s+(\w+)\s*\(([^)]*)\)", ptx):
        out[m.group(1)] = [int(b) for b in re.findall(r"\.param\s+\.[a-z]+(\d+)", m.group(2))]
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("file", FILES)
def test_nvrtc_compiles_like_cupy_and_entries_match_signatures(nvrtc, file, arch):
    src = K.kernel_source(file)
    # PTX for a virtual architecture (CuPy's route when NVRTC cannot emit cubin for the device).
    log, ptx, _ = nvrtc.compile(src, file, [*K.DEFAULT_OPTIONS, f"-arch=compute_{arch}", "-ftz=true"])
    assert "warning" not in log.lower(), log
    entries = _ptx_entries(ptx)
    sigs = K.kernel_signatures(file)
    assert set(entries) == set(sigs), "extern \"C\" kernels in the PTX differ from the parsed signatures"
    for name, sig in sigs.items():
        want = [64 if t.endswith("*") else _PTX_BITS[t] for t, _ in sig]
        assert entries[name] == want, f"{name}: PTX params {entries[name]} but signature says {want}"
    # cubin for the real architecture (CuPy's usual route with NVRTC >= 11.1).
    log, _, cubin = nvrtc.compile(src, file, [*K.DEFAULT_OPTIONS, f"-arch=sm_{arch}"])
    assert "warning" not in log.lower(), log
    assert cubin > 0


def test_nvrtc_reports_errors(nvrtc):
    """The NVRTC check can fail: a kernel using an undeclared name is refused with a log."""
    with pytest.raises(RuntimeError, match="undefined|undeclared"):
        nvrtc.compile('extern "C" __global__ void k(float* x) { x[0] = nope; }', "bad.cu", ["-arch=compute_75"])


def test_nvrtc_is_the_13_0_series(nvrtc):
    assert nvrtc.version()[0] >= 12


# ----------------------------------------------------------------------------- loader caching

def test_get_kernel_compiles_once_per_file_options_and_device(cuda_emu):
    """On the CuPy double: one module per (file, options, device), whatever the number of launches."""
    from doubles import fakecupy  # noqa: PLC0415

    compiled = fakecupy.world().compiles
    start = len(compiled)
    k1 = K.get_kernel("pool.cu", "max_pool_fwd_f32")
    k2 = K.get_kernel("pool.cu", "max_pool_fwd_f32")
    K.get_kernel("pool.cu", "avg_pool_bwd_f64")
    assert k1 is k2 and len(compiled) == start + 1  # a second launch compiles nothing
    assert K.get_module("pool.cu") is K.get_module("pool.cu")
    K.get_kernel("im2col.cu", "im2col_f32")
    assert len(compiled) == start + 2
    K.get_kernel("pool.cu", "max_pool_fwd_f32", options=("--std=c++17", "-lineinfo"))
    assert len(compiled) == start + 3 and compiled[-1] == (0, "pool.cu", ("--std=c++17", "-lineinfo", "-ftz=true"))
    with pytest.raises(KeyError, match="no kernel"):
        K.get_kernel("pool.cu", "max_pool_fwd_f16")


def test_get_kernel_without_cupy_says_how_to_install(monkeypatch):
    monkeypatch.setattr(K, "cupy_or_none", lambda: None)
    with pytest.raises(RuntimeError, match="needs CuPy"):
        K.get_kernel("pool.cu", "max_pool_fwd_f32")


def test_missing_sources_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("XCNN_KERNELS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="kernel sources not found"):
        K.kernels_dir()


# ----------------------------------------------------------------------------- packaging

def _project_copy(tmp_path):
    """pyproject + package + kernels in a scratch dir (README stubbed if the checkout has none yet)."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copytree(ROOT / "xcnn", src / "xcnn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "kernels", src / "kernels")
    readme = ROOT / "README.md"
    if readme.exists():
        shutil.copy(readme, src)
    else:
        (src / "README.md").write_text("xcnn\n")
    return src


def _check_installed_tree(site: Path):
    """Import xcnn from ``site`` only (not the checkout) and read every kernel source through the loader."""
    code = (
        "import sys, json; from xcnn.cuda import loader as K; "
        "print(json.dumps({'dir': str(K.kernels_dir()), 'files': K.kernel_files(), "
        "'src': {f: K.kernel_source(f) for f in K.kernel_files()}}))"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("XCNN_KERNELS_DIR", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=site, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import json

    info = json.loads(proc.stdout)
    assert Path(info["dir"]) == site / "xcnn" / "cuda" / "kernels"
    assert info["files"] == FILES
    for f in FILES:
        assert info["src"][f] == (ROOT / "kernels" / f).read_text()


def test_wheel_ships_kernel_sources(tmp_path):
    pytest.importorskip("setuptools")
    import setuptools

    major, minor = (int(v) for v in setuptools.__version__.split(".")[:2])
    has_wheel = (major, minor) >= (70, 1)
    try:
        import wheel  # noqa: F401  (older setuptools build wheels through it)

        has_wheel = True
    except ImportError:
        pass
    if not has_wheel:
        pytest.skip(f"cannot build a wheel offline: setuptools {setuptools.__version__} without the 'wheel' package")
    src = _project_copy(tmp_path)
    out = tmp_path / "whl"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("xcnn-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert {f"xcnn/cuda/kernels/{f}" for f in FILES} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(site)
    _check_installed_tree(site)


def test_build_py_ships_kernel_sources(tmp_path):
    """The same packaging check through setuptools' build_py alone (needs no 'wheel' package)."""
    pytest.importorskip("setuptools")
    src = _project_copy(tmp_path)
    lib = tmp_path / "lib"
    proc = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib", str(lib)],
        cwd=src, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_installed_tree(lib)
