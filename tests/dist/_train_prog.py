"""``python -m xcnn.train`` (its command line, unchanged) with test-only substitutions, one process per rank.

    python tests/dist/_train_prog.py [--synthetic N,M] [--fake-gpus K] [--fail-rank R --fail-step S]
                                     [--report PATH] -- <xcnn.train arguments>

--synthetic N,M   the synthetic 10-class problem of tests/helpers.py (N training, M test images) instead
                  of a dataset (for machines without MNIST)
--fake-gpus K     CuPy replaced by the strict double (tests/doubles/fakecupy.py) with K fake GPUs, and the
                  NCCL double (tests/doubles/fakenccl.py) behind ``cupy.cuda.nccl``
--fail-rank R --fail-step S   the optimizer of rank R raises at its S-th step (a failure on one rank)
--report PATH     this rank writes the NCCL double's call counts to PATH.<rank>.json
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import pytest


def main(argv):
    split = argv.index("--")
    opts, train_args = argv[:split], argv[split + 1:]
    get = lambda name: opts[opts.index(name) + 1] if name in opts else None  # noqa: E731
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    nccl = None
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        if get("--synthetic"):
            from helpers import synthetic  # noqa: PLC0415

            n, m = (int(v) for v in get("--synthetic").split(","))
            arrays = synthetic(n, m)
            mp.setattr("xcnn.train.loop._load_data", lambda cfg: arrays)
        if get("--fake-gpus"):
            from doubles import fakecupy, fakenccl  # noqa: PLC0415

            from xcnn.cpu import config as cpu_config  # noqa: PLC0415

            nccl = fakenccl
            stack.enter_context(cpu_config.using(kernels="numpy"))
            stack.enter_context(fakecupy.install(mp, devices=int(get("--fake-gpus")), nccl=fakenccl))
        if get("--fail-rank") is not None and int(get("--fail-rank")) == rank:
            from xcnn.nn.optim import SGD  # noqa: PLC0415

            real, limit = SGD.step, int(get("--fail-step"))

            def failing_step(self):
                if self.steps + 1 >= limit:
                    raise RuntimeError(f"injected failure at step {self.steps + 1}")
                return real(self)

            mp.setattr(SGD, "step", failing_step)
        from xcnn.train.cli import main as train_main  # noqa: PLC0415

        try:
            train_main(train_args)
        finally:
            if get("--report") and nccl is not None:
                with open(f"{get('--report')}.{rank}.json", "w") as fh:
                    json.dump(vars(nccl.calls), fh)


if __name__ == "__main__":
    main(sys.argv[1:])
