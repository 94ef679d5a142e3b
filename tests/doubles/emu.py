"""Run kernels/*.cu on the CPU: compile them as C++ with tests/doubles/emu_cuda.h and launch them
through ctypes. Kernels without shared memory run block by block and thread by thread on one host
thread, like the GPU would (sequentially); a file that uses ``__shared__`` or ``__syncthreads``
(gemm.cu) runs each block's threads as fibers that a real barrier holds back until the whole block
has reached it, blocks one after another, or optionally as concurrent OS threads (see emu_cuda.h).

Single-precision kernels (``*_f32``) run with the x86 flush-to-zero and denormals-are-zero modes
on, as CuPy compiles every kernel with ``-ftz=true`` (cupy/cuda/compiler.py appends it after the
caller's options): float32 subnormal inputs and results are flushed like on the GPU.

A launch takes the very argument tuple that :mod:`xcnn.cuda.ops` hands to ``RawKernel`` and
checks it against the kernel's C signature first (:func:`xcnn.cuda.loader.check_signature`), so a
Python int where the kernel says ``int`` is refused here just as it would misbehave on a GPU.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


from xcnn.cuda import loader as K

HEADER = Path(__file__).resolve().parent / "emu_cuda.h"
CXX = os.environ.get("CXX", "g++")
# -Wno-unknown-pragmas: the host compiler ignores CUDA's `#pragma unroll`.
FLAGS = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", "-shared", "-fPIC", "-pthread"]
SANITIZE = ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", "-shared", "-fPIC",
            "-pthread"]
#: A whole program under ThreadSanitizer, which cannot be preloaded into Python (emu_tsan_gemm.cpp).
TSAN = ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=thread", "-Wall", "-Wextra",
        "-Werror", "-Wno-unknown-pragmas", "-pthread"]

_CTYPES = {"int": ctypes.c_int32, "unsigned int": ctypes.c_uint32, "long long": ctypes.c_int64,
           "unsigned long long": ctypes.c_uint64, "float": ctypes.c_float, "double": ctypes.c_double}
_CDECL = {"int": "int", "unsigned int": "unsigned int", "long long": "long long",
          "unsigned long long": "unsigned long long", "float": "float", "double": "double"}

_BUILD_DIR: str | None = None
_MODULES: dict = {}
#: every emulated launch, in order: ``(file, kernel name, grid, block, args)``
LAUNCHES: list = []


def have_compiler() -> bool:
    return shutil.which(CXX) is not None


def _build_dir() -> str:
    global _BUILD_DIR
    if _BUILD_DIR is None:
        _BUILD_DIR = tempfile.mkdtemp(prefix="xcnn_emu_")
        atexit.register(shutil.rmtree, _BUILD_DIR, True)
    return _BUILD_DIR


def uses_block_barrier(source: str) -> bool:
    """Whether a kernel source needs the block-threads emulation (shared memory or barriers),
    comments aside."""
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.S)
    return "__syncthreads" in code or "__shared__" in code


def launcher_source(source_path: str, sigs: dict, block_threads: int = 0) -> str:
    """C++ that includes the kernel file and exports ``emu_launch_<name>(grid, block, void** args)``
    for each kernel (arguments passed by address, as with ``cuLaunchKernel``). ``block_threads``:
    0 runs every thread in turn, 1 runs a block's threads as fibers and 2 as OS threads, both
    with a real ``__syncthreads`` barrier (the modes of emu_cuda.h). ``*_f32`` kernels run under
    ``emu_ftz`` (CuPy's ``-ftz=true``)."""
    out = [f"#define EMU_BLOCK_THREADS {block_threads}", f'#include "{HEADER}"', f'#include "{source_path}"', ""]
    for name, sig in sigs.items():
        call = ", ".join(f"*({_CDECL.get(t, t)}*)a[{i}]" for i, (t, _) in enumerate(sig))
        ftz = "true" if name.endswith("_f32") else "false"
        if block_threads:
            out.append(
                f'extern "C" void emu_launch_{name}(unsigned int grid, unsigned int block, void** a) {{\n'
                f"    emu_launch_block_threads(grid, block, [a] {{ emu_ftz flush({ftz}); {name}({call}); }});\n}}\n"
            )
            continue
        out.append(
            f'extern "C" void emu_launch_{name}(unsigned int grid, unsigned int block, void** a) {{\n'
            f"    emu_ftz flush({ftz});\n"
            f"    gridDim.x = grid; gridDim.y = gridDim.z = 1; blockDim.x = block; blockDim.y = blockDim.z = 1;\n"
            f"    for (unsigned int b = 0; b < grid; ++b) {{\n"
            f"        for (unsigned int t = 0; t < block; ++t) {{\n"
            f"            blockIdx.x = b; blockIdx.y = blockIdx.z = 0; threadIdx.x = t; threadIdx.y = threadIdx.z = 0;\n"
            f"            {name}({call});\n"
            f"        }}\n    }}\n}}\n"
        )
    return "\n".join(out)


class EmuModule:
    """One ``.cu`` file compiled for the host; :meth:`launch` mirrors ``kernel((grid,), (block,), args)``."""

    def __init__(self, source_path: str, sigs: dict, so_path: str, file: str, block_threads: int = 0):
        self.file, self.sigs, self.so_path, self.block_threads = file, sigs, so_path, block_threads
        self.lib = ctypes.CDLL(so_path)
        self.launches: list = []
        for name in sigs:
            fn = getattr(self.lib, f"emu_launch_{name}")
            fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
            fn.restype = None

    def launch(self, name: str, grid: int, block: int, args: tuple) -> None:
        K.check_signature(name, self.sigs[name], args)
        if not (grid >= 1 and block >= 1):
            raise ValueError(f"{name}: invalid launch configuration grid={grid}, block={block}")
        vals = []
        for a, (ctype, _) in zip(args, self.sigs[name]):
            vals.append(ctypes.c_void_p(a.ctypes.data) if ctype.endswith("*") else _CTYPES[ctype](a.item()))
        argv = (ctypes.c_void_p * len(vals))(*[ctypes.addressof(v) for v in vals])
        self.launches.append((name, grid, block, args))
        LAUNCHES.append((self.file, name, grid, block, args))
        getattr(self.lib, f"emu_launch_{name}")(grid, block, argv)


def build(file: str | None = None, *, source: str | None = None, sanitize: bool = False,
          os_threads: bool = False) -> EmuModule:
    """Compile ``kernels/<file>`` (or a literal ``source``) for the host, once per process. A source
    with ``__shared__`` or ``__syncthreads`` runs a block's threads as fibers, or with ``os_threads``
    as concurrent OS threads (about 30x slower per barrier)."""
    if source is None:
        path = str(K.kernel_path(file))
        text = K.kernel_source(file)
    else:
        text = source
        digest = hashlib.sha1(text.encode()).hexdigest()[:12]
        path = os.path.join(_build_dir(), f"src_{digest}.cu")
        Path(path).write_text(text)
        file = file or f"src_{digest}.cu"
    flags = SANITIZE if sanitize else FLAGS
    threads = (2 if os_threads else 1) if uses_block_barrier(text) else 0
    key = (path, hashlib.sha1(text.encode()).hexdigest(), tuple(flags), threads)
    mod = _MODULES.get(key)
    if mod is None:
        sigs = K.parse_signatures(text, file)
        tag = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
        cpp = os.path.join(_build_dir(), f"launch_{tag}.cpp")
        so = os.path.join(_build_dir(), f"emu_{tag}.so")
        Path(cpp).write_text(launcher_source(path, sigs, threads))
        proc = subprocess.run([CXX, *flags, "-o", so, cpp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"emulation build of {file} failed:\n{proc.stderr}")
        mod = EmuModule(path, sigs, so, file, threads)
        _MODULES[key] = mod
    return mod
