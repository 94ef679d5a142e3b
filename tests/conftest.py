"""Selects the CPU implementation for tests parameterised over a ``cpu-numba``/``cpu-numpy`` backend."""
from __future__ import annotations

import pytest

from xcnn import cpu_kernels


@pytest.fixture(autouse=True)
def _cpu_implementation(request):
    spec = getattr(request.node, "callspec", None)
    name = None
    if spec is not None:
        for key in ("backend", "backend_name"):
            v = spec.params.get(key)
            if isinstance(v, str) and v.startswith("cpu-"):
                name = v[4:]
    if name is None:
        yield
        return
    with cpu_kernels.use(name):
        yield
