"""The CUDA kernels under AddressSanitizer and UBSan (emulated on the host, through the GPU ops on
the CuPy double), and proof that the harness bites on broken kernels."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from doubles import emu

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not emu.have_compiler(), reason=f"no C++ compiler ({emu.CXX}) for the emulation")


def _run_sanitized(mode):
    libasan = subprocess.run([emu.CXX, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip(f"{emu.CXX} has no AddressSanitizer runtime (libasan.so not found)")
    env = dict(os.environ, LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0", XCNN_CPU_KERNELS="numpy",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(ROOT / "tests" / "doubles" / "emu_asan_cases.py"), mode], env=env,
                          capture_output=True, text=True, timeout=600)


def test_kernels_under_address_and_undefined_behaviour_sanitizers():
    """Fixed shapes (incl. 1x1 images, padding 3, tiny grids) with -fsanitize=address,undefined."""
    proc = _run_sanitized("cases")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sanitized emulation OK" in proc.stdout
    assert int(proc.stdout.split(":")[1].split()[0]) > 500


@pytest.mark.parametrize("mode, report", [("oob", "heap-buffer-overflow"), ("overflow", "signed integer overflow")])
def test_the_harness_catches_broken_kernels(mode, report):
    """The harness must be able to fail: an off-by-one write and an int overflow both abort."""
    proc = _run_sanitized(mode)
    assert proc.returncode != 0, "a broken kernel ran clean under the sanitizers"
    assert report in proc.stderr, proc.stderr[-2000:]
