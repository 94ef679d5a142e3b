"""CPU settings (xcnn/cpu/config.py): the implementation switch is explicit and its errors are clear."""
from __future__ import annotations

import subprocess
import sys

import pytest

from xcnn.cpu import config


def test_using_changes_settings_for_a_block_only():
    before = config.get()
    with config.using(threads=3, chunk_bytes=123) as c:
        assert c.threads == 3 and config.get().chunk_bytes == 123
    assert config.get() == before
    with pytest.raises(ValueError, match="is not a choice"):
        with config.using(kernels="fortran"):
            pass
    with pytest.raises(TypeError):
        with config.using(no_such_knob=1):
            pass


def _run(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_without_numba_the_numpy_path_runs_and_says_why():
    code = ("import sys; sys.modules['numba'] = None\n"
            "from xcnn.cpu import config\n"
            "assert not config.use_numba() and 'pip install numba' in config.numba_reason()\n"
            "import numpy as np; from xcnn import ops\n"
            "print(float(ops.relu_forward(np.array([[-1.0, 2.0]], np.float32)).sum()))\n")
    out = _run(code, {})
    assert out.returncode == 0 and out.stdout.strip() == "2.0", out.stderr
    forced = _run(code.replace("assert not config.use_numba() and", "config.use_numba(); assert"),
                  {"XCNN_CPU_KERNELS": "numba"})
    assert forced.returncode != 0 and "XCNN_CPU_KERNELS=numba, but numba is not importable" in forced.stderr
    bad = _run("from xcnn.cpu import config; config.get()", {"XCNN_CPU_KERNELS": "gpu"})
    assert bad.returncode != 0 and "XCNN_CPU_KERNELS='gpu' is not a choice" in bad.stderr
    threads = _run("from xcnn.cpu import config; print(config.get().threads)", {"XCNN_NUM_THREADS": "3"})
    assert threads.stdout.strip() == "3"
