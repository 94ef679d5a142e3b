"""The one loader of ``kernels/*.cu``: finds the sources, compiles each file once per
(file, options, device) into a ``cupy.RawModule``, and hands out its ``RawKernel`` s.

Sources are looked up in the installed package (``xcnn/cuda/kernels/*.cu``, shipped as package
data from the top-level ``kernels/`` folder) and then in a source checkout (``kernels/``);
``XCNN_KERNELS_DIR`` overrides both. Kernel signatures are parsed from the source so every launch can be checked against
them: CuPy passes a Python ``int`` as a 64-bit value, so a kernel expecting ``int`` would read
garbage -- :func:`check_args` refuses that before the launch (here and in the CPU emulation).
"""
from __future__ import annotations

import os
import re
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..backend import cupy_or_none

__all__ = [
    "DEFAULT_OPTIONS", "KernelArgError", "kernels_dir", "kernel_path", "kernel_source",
    "kernel_files", "kernel_signatures", "parse_signatures", "check_args", "check_signature",
    "get_module", "get_kernel", "clear_cache",
]

#: NVRTC options for every module; CuPy adds the architecture itself.
DEFAULT_OPTIONS: tuple[str, ...] = ("--std=c++17",)

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (_HERE / "kernels", _HERE.parent.parent / "kernels")  # installed wheel, then source checkout


class KernelArgError(TypeError):
    """A launch argument does not match the kernel's C signature."""


def kernels_dir() -> Path:
    """The directory holding the ``.cu`` sources (installed package data, else the checkout)."""
    env = os.environ.get("XCNN_KERNELS_DIR")
    candidates = (Path(env),) if env else _CANDIDATES
    for d in candidates:
        if d.is_dir() and any(d.glob("*.cu")):
            return d
    raise FileNotFoundError(
        "xcnn: CUDA kernel sources not found; looked in "
        + ", ".join(str(d) for d in candidates)
        + ". Reinstall xcnn (the wheel ships them as package data) or set XCNN_KERNELS_DIR."
    )


def kernel_files() -> list[str]:
    """Names of the kernel source files, e.g. ``['im2col.cu', 'pool.cu']``."""
    return sorted(p.name for p in kernels_dir().glob("*.cu"))


def kernel_path(file: str) -> Path:
    """Path of one kernel source file (``file`` is a bare name such as ``'pool.cu'``)."""
    if Path(file).name != file or not file.endswith(".cu"):
        raise ValueError(f"kernel file must be a bare '*.cu' name, got {file!r}")
    p = kernels_dir() / file
    if not p.is_file():
        raise FileNotFoundError(f"xcnn: no kernel source {file!r} in {p.parent} (have {kernel_files()})")
    return p


@lru_cache(maxsize=None)
def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def kernel_source(file: str) -> str:
    """The CUDA C source of ``file`` (read once per process)."""
    return _read(str(kernel_path(file)))


# ---------------------------------------------------------------- signatures and argument checks

_KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_SCALARS = {
    "int": np.int32, "unsigned int": np.uint32, "long long": np.int64,
    "unsigned long long": np.uint64, "float": np.float32, "double": np.float64,
}
_POINTEES = {"float": np.float32, "double": np.float64, "int": np.int32, "long long": np.int64}


def _parse_param(text: str, where: str) -> tuple[str, str]:
    """``'const float* __restrict__ x'`` -> ``('float*', 'x')``."""
    toks = text.replace("*", " * ").split()
    if len(toks) < 2:
        raise ValueError(f"{where}: cannot parse parameter {text!r}")
    name = toks[-1]
    typ = [t for t in toks[:-1] if t not in ("const", "__restrict__", "volatile")]
    stars = typ.count("*")
    base = " ".join(t for t in typ if t != "*")
    if stars > 1 or (stars == 0 and base not in _SCALARS) or (stars == 1 and base not in _POINTEES):
        raise ValueError(f"{where}: unsupported parameter type in {text!r}")
    return base + "*" * stars, name


def parse_signatures(source: str, where: str = "<source>") -> dict[str, list[tuple[str, str]]]:
    """``{kernel name: [(C type, parameter name), ...]}`` for every ``extern "C" __global__`` kernel."""
    out = {}
    for m in _KERNEL_RE.finditer(source):
        params = [p.strip() for p in m.group(2).split(",") if p.strip()]
        out[m.group(1)] = [_parse_param(p, f"{where}:{m.group(1)}") for p in params]
    return out


@lru_cache(maxsize=None)
def kernel_signatures(file: str) -> dict[str, list[tuple[str, str]]]:
    """Parsed signatures of the kernels in ``file`` (see :func:`parse_signatures`)."""
    return parse_signatures(kernel_source(file), file)


def check_args(file: str, name: str, args: tuple) -> None:
    """Refuse launch arguments that do not match the C signature of ``file:name``.

    Pointers must be C-contiguous arrays of the pointee's dtype; each scalar must already be
    the NumPy type of its C type (``np.int32`` for ``int``, ``np.int64`` for ``long long``, ...):
    a bare Python int would reach the GPU as 64 bits.
    """
    sigs = kernel_signatures(file)
    if name not in sigs:
        raise KeyError(f"no kernel {name!r} in {file} (have {sorted(sigs)})")
    check_signature(name, sigs[name], args)


def check_signature(name: str, sig: list[tuple[str, str]], args: tuple) -> None:
    """:func:`check_args` against an already parsed signature ``[(C type, name), ...]``."""
    if len(args) != len(sig):
        raise KernelArgError(f"{name}: expected {len(sig)} arguments, got {len(args)}")
    for i, (a, (ctype, pname)) in enumerate(zip(args, sig)):
        if ctype.endswith("*"):
            want = np.dtype(_POINTEES[ctype[:-1]])
            dt, flags = getattr(a, "dtype", None), getattr(a, "flags", None)
            if dt is None or flags is None or getattr(a, "ndim", None) is None:
                raise KernelArgError(f"{name}: argument {i} ({ctype} {pname}) must be an array, got {type(a).__name__}")
            if dt != want:
                raise KernelArgError(f"{name}: argument {i} ({ctype} {pname}) must have dtype {want}, got {dt}")
            if not flags.c_contiguous:
                raise KernelArgError(f"{name}: argument {i} ({ctype} {pname}) must be C-contiguous")
        else:
            want_t = _SCALARS[ctype]
            if type(a) is not want_t:
                raise KernelArgError(
                    f"{name}: argument {i} ({ctype} {pname}) must be {want_t.__name__}, got "
                    f"{type(a).__name__} (a Python int is passed as 64 bits; wrap it explicitly)"
                )


# ---------------------------------------------------------------- compiling and caching

_LOCK = threading.Lock()
_MODULES: dict = {}
_KERNELS: dict = {}


def _cupy():
    cp = cupy_or_none()
    if cp is None:
        raise RuntimeError("xcnn.cuda needs CuPy: pip install 'xcnn[cuda13]' (driver >= 580, sm_75+) or 'xcnn[cuda12]'")
    return cp


def get_module(file: str, options: tuple[str, ...] = DEFAULT_OPTIONS):
    """The ``cupy.RawModule`` of ``file`` on the current device, built on first use and cached."""
    cp = _cupy()
    options = tuple(options)
    key = (file, options, cp.cuda.runtime.getDevice())
    mod = _MODULES.get(key)
    if mod is None:
        with _LOCK:
            mod = _MODULES.get(key)
            if mod is None:
                mod = cp.RawModule(code=kernel_source(file), options=options, name_expressions=None)
                _MODULES[key] = mod
    return mod


def get_kernel(file: str, name: str, options: tuple[str, ...] = DEFAULT_OPTIONS):
    """The ``RawKernel`` ``name`` from ``file`` on the current device (compiled once per process)."""
    options = tuple(options)
    key = (file, name, options, _cupy().cuda.runtime.getDevice())
    k = _KERNELS.get(key)
    if k is None:
        if name not in kernel_signatures(file):
            raise KeyError(f"no kernel {name!r} in {file} (have {sorted(kernel_signatures(file))})")
        k = get_module(file, options).get_function(name)
        _KERNELS[key] = k
    return k


def clear_cache() -> None:
    """Forget compiled modules (tests; CuPy's disk cache still avoids recompiling)."""
    with _LOCK:
        _MODULES.clear()
        _KERNELS.clear()
