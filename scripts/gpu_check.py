#!/usr/bin/env python
"""One-shot GPU check: install, probe what only a real GPU can say (cuBLAS during stream capture,
our GEMM kernels in a graph, float32 flush-to-zero, the loss's ulps against the host's libm), run
the whole test suite with the GPU visible, time the hot ops and the seed CNN on CPU vs GPU (eager
with cuBLAS, eager with our GEMM kernels, ``--cuda-graph``; PyTorch + cuDNN when it imports), train
2 real MNIST epochs through the trainer eagerly and with ``--cuda-graph`` (which must replay and end
on the eager run's weights, bit for bit), and write ``report.md`` + ``report.json`` into OUTDIR with
a verdict; the exit status is 1 when any check of the verdict fails. Needs no network. Sized for a
7-minute slot on a lent GPU (the test suite is cut at ``--pytest-timeout``, 240 s; the rest is our
estimate of about a minute on a fast GPU -- not yet measured: no GPU has been lent to us so far).

    python scripts/gpu_check.py OUTDIR            # on a GPU machine
    python scripts/gpu_check.py OUTDIR --dry-run  # anywhere: skips every GPU part, says so

Dry mode is also chosen automatically when no GPU is usable (the reason is recorded).
The GPU machine has no network: tests that train on MNIST read it from ``.xcnn-data/mnist``
when that folder exists (copy ``../shared/data/mnist/*.gz`` there and name ``.xcnn-data`` in
the device tool's ``carry``); ``$XCNN_DATA`` wins when set.
Timings use synthetic MNIST-shaped data (1x28x28, 10 classes): speed does not depend on
pixel values. Per-epoch times are measured over a few steps and scaled to 60,000 images.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # works before (or without) the editable install

import numpy as np  # noqa: E402

EPOCH_IMAGES = 60000


def _sh(cmd, timeout, cwd=ROOT, env=None):
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, f"timed out after {timeout}s\n{(e.stdout or b'')[-4000:]!r}"
    return {"cmd": " ".join(map(str, cmd)), "rc": rc, "seconds": round(time.perf_counter() - t0, 1),
            "tail": out[-4000:]}


def environment():
    """:func:`xcnn.machine.describe` (the GPU's name and CUDA versions when one is usable, PyTorch's
    version), and whether the GPU is usable -- if not, why."""
    from xcnn import backend, machine

    reason = backend.gpu_unavailable_reason()
    info = machine.describe("cuda" if reason is None else None, torch=True)
    info["cupy"] = getattr(backend.cupy_or_none(), "__version__", None)
    info["gpu_usable"] = reason is None
    info["gpu_unavailable_reason"] = reason
    if info.get("torch"):
        import torch  # noqa: PLC0415

        info["torch_cuda"] = bool(torch.cuda.is_available())
    return info


def _timeit(fn, sync, repeats):
    fn()
    sync()  # warm-up (and kernel compilation) outside the measurement
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


LAYERS = [  # (name, N-independent shape (C, H, W), op, kwargs)
    ("conv5x5 1->4 p2 @28x28", (1, 28, 28), "conv", dict(O=4, k=5, p=2)),
    ("conv3x3 4->8 p1 @14x14", (4, 14, 14), "conv", dict(O=8, k=3, p=1)),
    ("avgpool2 @4x28x28", (4, 28, 28), "avg", dict(k=2)),
    ("maxpool2 @4x28x28", (4, 28, 28), "max", dict(k=2)),
]


def layer_timings(device, batches, repeats):
    """Median forward and backward seconds of the conv/pool ops in the seed CNN's shapes."""
    from xcnn import ops as F
    from xcnn.backend import get_device

    dev = get_device(device)
    rows = []
    for N in batches:
        rng = np.random.default_rng(0)
        for name, (C, H, W), op, kw in LAYERS:
            x = dev.asarray(rng.standard_normal((N, C, H, W)).astype(np.float32))
            if op == "conv":
                w = dev.asarray(rng.standard_normal((kw["O"], C, kw["k"], kw["k"])).astype(np.float32))
                b = dev.asarray(np.zeros(kw["O"], np.float32))
                y, cache = F.conv2d_forward(x, w, b, 1, kw["p"])
                dy = dev.xp.ones_like(y)
                fwd = lambda: F.conv2d_forward(x, w, b, 1, kw["p"])  # noqa: E731
                bwd = lambda: F.conv2d_backward(dy, cache, w)  # noqa: E731
            elif op == "avg":
                y = F.avg_pool2d_forward(x, kw["k"])
                dy = dev.xp.ones_like(y)
                fwd = lambda: F.avg_pool2d_forward(x, kw["k"])  # noqa: E731
                bwd = lambda: F.avg_pool2d_backward(dy, x.shape, kw["k"])  # noqa: E731
            else:
                y, arg = F.max_pool2d_forward(x, kw["k"])
                dy = dev.xp.ones_like(y)
                fwd = lambda: F.max_pool2d_forward(x, kw["k"])  # noqa: E731
                bwd = lambda: F.max_pool2d_backward(dy, arg, x.shape, kw["k"])  # noqa: E731
            rows.append({"device": device, "batch": N, "layer": name,
                         "forward_ms": 1e3 * _timeit(fwd, dev.synchronize, repeats),
                         "backward_ms": 1e3 * _timeit(bwd, dev.synchronize, repeats)})
    return rows


MODELS = ("seed-cnn", "mlp2")
KERNELS = "xcnn, our GEMM kernels"  # the eager step with XCNN_GPU_GEMM=kernels


def epoch_timings(device, batches, steps, use_torch=False, cuda_graph=None):
    """Seconds per 60,000-image epoch of seed-cnn and mlp2 from :func:`xcnn.bench.runners.measure` (the
    benchmark's runners, interleaved in one run): xcnn's training step, its ``--cuda-graph`` step
    and the eager step with our GEMM kernels in place of cuBLAS (both on CUDA, or when ``cuda_graph``
    is set) and, with ``use_torch``, the same network in PyTorch
    (cuDNN on CUDA); ``steps`` timed steps per repeat."""
    from xcnn.bench.runners import measure

    cuda = device.startswith("cuda")
    graph = cuda if cuda_graph is None else cuda_graph
    torch_name = None
    if use_torch:
        import torch  # noqa: PLC0415

        torch_name = f"torch {torch.__version__}" + (" + cuDNN" if cuda else "")
    rows = []
    for model, B in [(m, b) for m in MODELS for b in batches]:
        r = measure(model, B, device, images=steps * B, repeats=3, warmup=1, use_torch=use_torch, budget_s=20.0,
                    pause_s=0.2 if use_torch and not cuda else 0.0, cuda_graph=graph)
        for key, framework in (("xcnn", "xcnn"), ("xcnn-kernels", KERNELS), ("xcnn-graph", "xcnn --cuda-graph"),
                               ("torch", torch_name)):
            if key not in r:
                continue
            epoch_s = r[key]["epoch_s_median"]
            row = {"device": device, "framework": framework, "model": model, "batch": B,
                   "step_ms": 1e3 * epoch_s * B / EPOCH_IMAGES, "epoch_s": epoch_s,
                   "steps_measured": r["steps_per_repeat"] * r["repeats"]}
            if key == "xcnn-graph":
                row.update(graph_failed=r["graph_failed"], graph_replays=r["graph_replays"])
            rows.append(row)
    return rows


def training_runs(device, out_root, batches=(50, 1024), graph_modes=(False, True), epochs=2, data_dir=None,
                  train_limit=None):
    """Real MNIST training through the trainer (``python -m xcnn.train``'s code path): seconds of the
    last epoch's training steps, test accuracy, and for a ``--cuda-graph`` run how many steps replayed
    the graph (or why capture failed: the run then trained eagerly) and whether it ended with the
    same weights as the eager one, bit for bit. On CUDA the eager run uses our GEMM kernels, as the
    graph step does (cuBLAS cannot be captured), so the two sum in the same order."""
    import contextlib  # noqa: PLC0415

    from xcnn.nn.serialize import load_checkpoint
    from xcnn.train import RunConfig, fit

    rows, final = [], {}
    for batch in batches:
        for graph in graph_modes:
            out = Path(out_root) / f"{device.replace(':', '')}-b{batch}-{'graph' if graph else 'eager'}"
            cfg = RunConfig(device=device, epochs=epochs, batch_size=batch, out=str(out), data_dir=data_dir,
                            cuda_graph=graph, log_every=100, train_limit=train_limit)
            if device.startswith("cuda"):
                from xcnn.cuda import gemm  # noqa: PLC0415

                scope = gemm.using("kernels")
            else:
                scope = contextlib.nullcontext()
            with scope:
                res = fit(cfg, log=lambda *a: None)
            last = res.history[-1]
            final[(batch, graph)] = load_checkpoint(out / "checkpoint.npz")["params"]
            row = {"device": device, "batch": batch, "cuda_graph": graph, "status": res.status, "epochs": epochs,
                   "last_epoch_train_s": last["train_seconds"], "images_per_s": last["images_per_second"],
                   "test_acc": last["test_acc"]}
            if graph:  # what the run's metrics say the graph did
                g = json.loads((out / "metrics.json").read_text()).get("cuda_graph") or {}
                row.update(graph_replays=g.get("replays"), graph_failed=g.get("capture_failed"))
            if graph and (batch, False) in final:
                a, b = final[(batch, False)], final[(batch, True)]
                row["same_weights_as_eager"] = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
            rows.append(row)
    return rows


def report_run(device, out_root, data_dir=None, train_limit=None, epochs=30):
    """The report's run (seed-cnn, 30 epochs, batch 50, the report's SGD) with ``--cuda-graph``:
    the target is under 10 s of training time (the sum of the epochs' training steps)."""
    from xcnn.train import RunConfig, fit

    out = Path(out_root) / "report-run"
    cfg = RunConfig(device=device, epochs=epochs, batch_size=50, out=str(out), data_dir=data_dir, cuda_graph=True,
                    log_every=10**9, train_limit=train_limit)
    res = fit(cfg, log=lambda *a: None)
    g = json.loads((out / "metrics.json").read_text()).get("cuda_graph") or {}
    train_s = sum(h["train_seconds"] for h in res.history)
    return {"device": device, "epochs": len(res.history), "status": res.status, "train_seconds": train_s,
            "final_test_acc": res.history[-1]["test_acc"], "best_test_acc": max(h["test_acc"] for h in res.history),
            "graph_replays": g.get("replays"), "graph_failed": g.get("capture_failed"), "target_s": 10.0,
            "met": train_s < 10.0}


def _mnist_missing(data_dir):
    """``None`` when MNIST loads from ``data_dir`` (or the default places) without fetching, else why not."""
    from xcnn import data  # noqa: PLC0415

    try:
        data.load("mnist", data_dir, fetch_if_missing=False)
    except Exception as exc:  # DataError: missing or corrupt
        return f"{type(exc).__name__}: {exc}"
    return None


def _guard(report, key, fn, *a):
    try:
        return fn(*a)
    except Exception as exc:  # one failing part must not lose the rest of the report
        report.setdefault("errors", []).append(f"{key}: {type(exc).__name__}: {exc}")
        return []


def gpu_targets(rows) -> list[str]:
    """The issue's GPU targets, judged from the epoch rows: seed-cnn at batch 50 no slower than
    PyTorch+cuDNN, and >= 1,000,000 training images/s at batch 1024."""
    def find(fw, batch):
        for r in rows:
            if "skipped" not in r and r.get("model", "seed-cnn") == "seed-cnn" and r["batch"] == batch \
                    and r["device"].startswith("cuda") and (r["framework"] == fw or fw == "torch"
                                                            and r["framework"].startswith("torch")):
                return r
        return None

    out = ["", "## GPU targets (seed-cnn; the best of xcnn's eager and --cuda-graph steps counts)", ""]
    theirs = find("torch", 50)
    best = None
    for fw in ("xcnn", KERNELS, "xcnn --cuda-graph"):
        ours = find(fw, 50)
        if ours and theirs:
            ratio = ours["epoch_s"] / theirs["epoch_s"]
            best = ratio if best is None else min(best, ratio)
            out.append(f"- batch 50, {fw}: {ratio:.2f}x PyTorch+cuDNN's time per epoch")
    if best is not None:
        out.append(f"- batch 50 target <= 1.0: {'met' if best <= 1 else 'NOT met'} (best {best:.2f})")
    else:
        out.append("- batch 50 vs PyTorch+cuDNN: not measured (no GPU or no torch)")
    bigs = [r for r in (find("xcnn", 1024), find(KERNELS, 1024), find("xcnn --cuda-graph", 1024)) if r]
    if bigs:
        ips = max(EPOCH_IMAGES / r["epoch_s"] for r in bigs)
        out.append(f"- batch 1024: {ips:,.0f} images/s (target >= 1,000,000: {'met' if ips >= 1e6 else 'NOT met'})")
    else:
        out.append("- batch 1024 images/s on the GPU: not measured (no GPU)")
    failed = [r for r in rows if r.get("graph_failed")]
    for r in failed:
        out.append(f"- --cuda-graph capture FAILED for {r['model']} @ {r['batch']} ({r['graph_failed']}); "
                   "that row ran eager steps")
    return out


def verdict(report) -> list[str]:
    """What failed, one line each (empty: everything the check could run passed). On a real GPU a
    ``--cuda-graph`` row or run that did not replay is a failure, as are a failing test suite, a
    probe that raised, a graph run whose weights differ from the eager run's, and a part that raised."""
    if report["dry_run"]:
        return []
    bad = []
    if report["pytest"].get("rc", 0) != 0:
        bad.append(f"test suite: rc {report['pytest']['rc']}")
    for name, r in (report.get("probe") or {}).items():
        if isinstance(r, dict) and "error" in r:
            bad.append(f"probe {name}: {r['error']}")
    g = (report.get("probe") or {}).get("gemm_kernels_in_a_graph") or {}
    if g.get("replay_equals_eager_bits") is False:
        bad.append("probe: a replayed GEMM graph differs from the eager launches")
    for r in report.get("epochs", []):
        if r.get("framework") == "xcnn --cuda-graph" and r["device"].startswith("cuda") \
                and (r.get("graph_failed") or not r.get("graph_replays")):
            bad.append(f"--cuda-graph timing of {r['model']} @ {r['batch']} did not replay "
                       f"({r.get('graph_failed') or 'no replays'})")
    for r in report.get("training", []):
        if r["cuda_graph"] and (r.get("graph_failed") or not r.get("graph_replays")):
            bad.append(f"--cuda-graph training @ {r['batch']} did not replay ({r.get('graph_failed') or 'no replays'})")
        if r.get("same_weights_as_eager") is False:
            bad.append(f"--cuda-graph training @ {r['batch']} ended on other weights than the eager run")
    rr = report.get("report_run")
    if rr and (rr.get("graph_failed") or not rr.get("graph_replays")):
        bad.append(f"the report's 30-epoch --cuda-graph run did not replay ({rr.get('graph_failed') or 'no replays'})")
    bad += [f"error: {e}" for e in report.get("errors", [])]
    return bad


def write_report(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    env = report["environment"]
    L = [f"# xcnn GPU check ({report['started']})", ""]
    if report["dry_run"]:
        L += [f"**DRY RUN: GPU parts skipped** -- {report['dry_reason']}", ""]
    bad = verdict(report)
    L += ["## Verdict", ""]
    if report["dry_run"]:
        L += ["Not judged: dry run.", ""]
    else:
        L += (["**FAILED:**", ""] + [f"- {b}" for b in bad] if bad else ["Every check passed."]) + [""]
    L += ["## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()] + [""]
    if report.get("probe"):
        L += ["## What only the GPU can say (xcnn.cuda.probe)", "", "```",
              json.dumps(report["probe"], indent=2, default=str), "```", ""]
    for key, title in (("install", "Editable install"), ("pytest", "Test suite")):
        r = report[key]
        L += [f"## {title}", ""]
        if "skipped" in r:
            L += [f"SKIPPED: {r['skipped']}", ""]
        else:
            L += [f"`{r['cmd']}` -> rc {r['rc']} in {r['seconds']} s", "", "```", r["tail"][-1500:], "```", ""]
    L += ["## Per-layer timings (median ms)", "", "| device | batch | layer | forward | backward |", "|---|---|---|---|---|"]
    L += [f"| {r['device']} | {r['batch']} | {r['layer']} | {r['forward_ms']:.3f} | {r['backward_ms']:.3f} |"
          for r in report["layers"]]
    L += ["", "## Seconds per 60,000-image epoch (scaled from a few steps)", "",
          "| framework | model | device | batch | ms/step | s/epoch | images/s |", "|---|---|---|---|---|---|---|"]
    for r in report["epochs"]:
        if "skipped" in r:
            L.append(f"| xcnn | - | {r['device']} | - | SKIPPED: {r['skipped']} | | |")
        else:
            L.append(f"| {r['framework']} | {r.get('model', 'seed-cnn')} | {r['device']} | {r['batch']} | "
                     f"{r['step_ms']:.2f} | {r['epoch_s']:.2f} | {EPOCH_IMAGES / r['epoch_s']:,.0f} |")
    if report.get("training"):
        L += ["", f"## Real MNIST training, {report['training'][0]['epochs']} epochs per run (the trainer's code path)",
              "", "| device | batch | --cuda-graph | last epoch: train s | images/s | test acc | same weights as eager |",
              "|---|---|---|---|---|---|---|"]
        for r in report["training"]:
            same = {True: "yes", False: "**NO**"}.get(r.get("same_weights_as_eager"), "-")
            graph = "no"
            if r["cuda_graph"]:
                graph = (f"capture FAILED ({r['graph_failed']}): eager steps" if r.get("graph_failed")
                         else f"yes, {r.get('graph_replays')} replays")
            L.append(f"| {r['device']} | {r['batch']} | {graph} | "
                     f"{r['last_epoch_train_s']:.2f} | {r['images_per_s']:,.0f} | {r['test_acc']:.4f} | {same} |")
    L += gpu_targets(report["epochs"])
    r = report.get("report_run")
    if r:
        L.append(f"- the report's run (seed-cnn, {r['epochs']} epochs, batch 50, --cuda-graph, "
                 f"{r['graph_replays']} replays): {r['train_seconds']:.1f} s of training (target < 10 s: "
                 f"{'met' if r['met'] else 'NOT met'}); test accuracy {r['final_test_acc']:.4f} final, "
                 f"{r['best_test_acc']:.4f} best")
    L += [""] + [f"- {s}" for s in report["skipped_parts"]]
    if report.get("errors"):
        L += ["", "## Errors", ""] + [f"- {e}" for e in report["errors"]]
    L += ["", f"Total time: {report['seconds']:.1f} s", ""]
    (out / "report.md").write_text("\n".join(L))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="skip every GPU part (also automatic without a GPU)")
    ap.add_argument("--skip-install", action="store_true")
    ap.add_argument("--skip-pytest", action="store_true")
    ap.add_argument("--pytest-timeout", type=int, default=240)
    ap.add_argument("--steps", type=int, default=None, help="training steps timed per configuration")
    ap.add_argument("--batches", type=int, nargs="+", default=[50, 1024], help="batch sizes to time")
    ap.add_argument("--report-run-cap", type=float, default=60.0,
                    help="run the report's 30-epoch --cuda-graph run only if projected under this many seconds")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "skipped_parts": []}
    env = environment()
    report["environment"] = env
    dry = args.dry_run or not env["gpu_usable"]
    report["dry_run"] = dry
    report["dry_reason"] = ("--dry-run given" if args.dry_run else env["gpu_unavailable_reason"]) if dry else None
    if dry:
        print(f"gpu_check: DRY RUN, GPU parts skipped: {report['dry_reason']}", file=sys.stderr)
        report["skipped_parts"].append("GPU timings, GPU test run and PyTorch cuDNN timings: skipped (dry run)")

    if dry or args.skip_install:
        report["install"] = {"skipped": "dry run" if dry else "--skip-install"}
    else:
        report["install"] = _sh([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                                 "-e", "."], timeout=120)
    if dry or args.skip_pytest:
        report["pytest"] = {"skipped": "dry run (run pytest directly on a CPU machine)" if dry else "--skip-pytest"}
    else:
        envp = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        if "XCNN_DATA" not in envp and (ROOT / ".xcnn-data").is_dir():
            envp["XCNN_DATA"] = str(ROOT / ".xcnn-data")  # carried MNIST: the machine cannot fetch it
        report["pytest"] = _sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                f"--junitxml={args.outdir.resolve() / 'pytest.xml'}"],
                               timeout=args.pytest_timeout, env=envp)

    steps = args.steps or (2 if dry else 10)
    repeats = 2 if dry else 10
    batches = args.batches
    devices = ["cpu"] if dry else ["cpu", "cuda"]
    if not dry:
        from xcnn.cuda.probe import probe  # noqa: PLC0415

        report["probe"] = _guard(report, "probe", probe) or {}
    report["layers"] = []
    report["epochs"] = []
    for d in devices:
        report["layers"] += _guard(report, f"layers/{d}", layer_timings, d, batches, repeats)
        use_torch = bool(env.get("torch")) and (d == "cpu" or bool(env.get("torch_cuda")))
        report["epochs"] += _guard(report, f"epochs/{d}", epoch_timings, d, batches, steps, use_torch)
    if not env.get("torch"):
        report["skipped_parts"].append(f"PyTorch timings: skipped (torch not importable: {env.get('torch_note')})")
    data_dir = os.environ.get("XCNN_DATA") or (str(ROOT / ".xcnn-data") if (ROOT / ".xcnn-data").is_dir() else None)
    if dry:
        report["skipped_parts"].append("Real MNIST training runs: skipped (dry run)")
    elif (missing := _mnist_missing(data_dir)) is not None:
        report["skipped_parts"].append(f"Real MNIST training runs: skipped ({missing}; the GPU machine has no "
                                       "network: copy ../shared/data/mnist/*.gz into .xcnn-data/mnist/ and carry it)")
    else:
        import tempfile  # noqa: PLC0415

        with tempfile.TemporaryDirectory(prefix="xcnn-gpu-check-") as tmp:
            report["training"] = _guard(report, "training/cuda", training_runs, "cuda", tmp, (50, 1024), (False, True),
                                        2, data_dir)
            # the full 30-epoch run only when the 2-epoch graph run says it fits the slot
            g50 = [r for r in report["training"] if r["batch"] == 50 and r["cuda_graph"]]
            projected = 30 * g50[0]["last_epoch_train_s"] if g50 else None
            if projected is not None and projected <= args.report_run_cap:
                report["report_run"] = _guard(report, "report_run", report_run, "cuda", tmp, data_dir) or None
            else:
                report["skipped_parts"].append(
                    f"The report's 30-epoch run: skipped (projected {projected if projected is None else round(projected)}"
                    f" s of training > --report-run-cap {args.report_run_cap} s, or no 2-epoch graph run)")
    report["seconds"] = time.perf_counter() - t0
    write_report(args.outdir, report)
    print(f"gpu_check: wrote {args.outdir / 'report.md'} and report.json in {report['seconds']:.1f} s")
    bad = verdict(report)
    for b in bad:
        print(f"gpu_check: FAILED: {b}", file=sys.stderr)
    return 1 if bad or report.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
