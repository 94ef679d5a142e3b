"""The benchmark's driver and its measuring child process: the child's environment sets the thread
counts (``OPENBLAS_NUM_THREADS`` must be set before NumPy loads), so every measurement runs in a
fresh process; results go to ``OUT/bench-<device>.json`` and ``.md``."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from .markdown import write_markdown
from .memory import peak_rss
from .profile import format_profile, profile
from .runners import BATCHES, MODELS, measure

__all__ = ["worker", "run_benchmark", "MALLOC_ENV", "THREAD_VARS"]

#: glibc settings of the ``--malloc-variant`` run: big temporaries stay in the heap, not mmap'd per step
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XCNN_NUM_THREADS")


def _torch_usable(device, threads) -> Optional[str]:
    """``None`` when torch imports (and has CUDA for a cuda device), else why not."""
    try:
        import torch  # noqa: PLC0415
    except Exception as exc:
        return f"torch not importable ({type(exc).__name__}: {exc}); pip install torch==2.13.0"
    torch.set_num_threads(threads)
    if not device.startswith("cpu") and not torch.cuda.is_available():
        return "torch has no usable CUDA"
    return None


def worker(spec: dict) -> dict:
    """Run in the child: the timings (and, asked for, one peak-RSS measurement)."""
    threads = spec["threads"]
    if spec.get("rss"):  # xcnn's peak is measured without torch ever imported
        fw, model, batch = spec["rss"]
        no_torch = _torch_usable(spec["device"], threads) if fw == "torch" else None
        if no_torch:
            return {"framework": fw, "skipped": no_torch}
        return peak_rss(fw, model, batch, spec["device"], spec.get("rss_steps"))
    import numpy as np  # noqa: PLC0415

    no_torch = _torch_usable(spec["device"], threads) if spec["torch"] else "--no-torch given"
    from .. import machine  # noqa: PLC0415

    info = dict(machine.describe(spec["device"], torch=no_torch is None), threads=threads)
    out = {"machine": info, "torch_skipped": no_torch, "rows": [], "profiles": []}
    with np.errstate(over="ignore", invalid="ignore"):
        for model in spec["models"]:
            for batch in spec["batches"]:
                out["rows"].append(measure(model, batch, spec["device"], images=spec["images"],
                                           repeats=spec["repeats"], warmup=spec["warmup"],
                                           use_torch=no_torch is None, budget_s=spec["budget_s"],
                                           cuda_graph=spec.get("cuda_graph", False)))
                print(_row_line(out["rows"][-1]), file=sys.stderr, flush=True)
        if spec.get("profile"):
            for model in spec["models"]:
                for batch in spec["batches"]:
                    p = profile(model, batch, spec["device"], max(2, math.ceil(spec["images"] / batch)))
                    out["profiles"].append(p)
                    print(format_profile(p), file=sys.stderr, flush=True)
    return out


def _row_line(r) -> str:
    s = f"{r['model']:>8} batch {r['batch']:>5}: xcnn {r['xcnn']['epoch_s_median']:7.2f} s/epoch"
    for key, label in (("xcnn-kernels", "xcnn+kernels"), ("xcnn-graph", "xcnn+graph")):
        if key in r:
            s += f", {label} {r[key]['epoch_s_median']:7.2f} s/epoch"
    if "torch" in r:
        s += f", torch {r['torch']['epoch_s_median']:7.2f} s/epoch, ratio {r['ratio_median']:.2f}"
    return s


def _child_env(threads, extra=None):
    env = dict(os.environ)
    for k in THREAD_VARS:
        env[k] = str(threads)
    env.update(extra or {})
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _run_child(spec, env, timeout):
    p = subprocess.run([sys.executable, "-m", "xcnn.bench", "worker", json.dumps(spec)], env=env,
                       stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark worker failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_benchmark(*, device="cpu", threads=2, quick=False, out=Path("benchmarks"), models=MODELS,
                  batches=BATCHES, profile_mode=False, malloc_variant=False, memory=True, use_torch=True,
                  repeats=None, images=None, command=None, cuda_graph=None) -> dict:
    t0 = time.perf_counter()
    if cuda_graph is None:
        cuda_graph = device.startswith("cuda")
    spec = {"device": device, "threads": threads, "models": list(models), "batches": list(batches),
            "cuda_graph": bool(cuda_graph),
            "images": images or (200 if quick else 6000), "repeats": repeats or (2 if quick else 5),
            "warmup": 1 if quick else 3, "torch": use_torch, "profile": profile_mode,
            "budget_s": 5.0 if quick else 20.0}
    variants = [("default environment", {})]
    if malloc_variant:
        variants.append(("with " + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items()), MALLOC_ENV))
    res = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device, "spec": spec,
           "command": command or "python -m xcnn.bench", "runs": [], "memory": [], "notes": []}
    for label, extra in variants:
        run = _run_child(dict(spec, profile=profile_mode and not extra), _child_env(threads, extra), timeout=1200)
        run["label"] = f"Training speed, {label}"
        run["env_extra"] = extra
        res["runs"].append(run)
    if memory and device == "cpu":
        mb = 1024 if not quick else min(batches)
        mm = "seed-cnn"
        for fw in (("xcnn", "torch") if use_torch else ("xcnn",)):
            mspec = dict(spec, rss=[fw, mm, mb])
            if quick:
                mspec["rss_steps"] = 2
            res["memory"].append(_run_child(mspec, _child_env(threads), timeout=600))
    env0 = res["runs"][0]["machine"]["env"]
    if any(k.startswith("OPENBLAS_CORETYPE") or k.startswith("OPENBLAS_L2") for k in env0):
        res["notes"].append(f"OpenBLAS tuning variables are set in this environment ({env0}); "
                            "results are reported as measured with them.")
    res["seconds"] = time.perf_counter() - t0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench-{device}.json").write_text(json.dumps(res, indent=2))
    write_markdown(out / f"bench-{device}.md", res)
    return res
