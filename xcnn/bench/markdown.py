"""The benchmark's Markdown report (``bench-<device>.md``) from its JSON results. What the figures
mean and why a target is missed is analysis, kept with the measurements in ``benchmarks/``."""
from __future__ import annotations

from pathlib import Path

from .profile import format_profile
from .runners import GPU_IMAGES_PER_S

__all__ = ["write_markdown"]

#: the hand-written analysis of the CPU measurements, beside the generated report
ANALYSIS = "cpu-analysis.md"


def _fmt_bytes(b):
    return "-" if not b else f"{b / 2**20:.0f} MiB"


def write_markdown(path: Path, res: dict) -> None:
    m = res["runs"][0]["machine"]
    lines = [f"# xcnn vs PyTorch training speed ({res['device']})", "",
         f"Measured {res['started']} with `{res['command']}` ({res['seconds']:.0f} s in all).", "",
         "Seconds per 60,000-image epoch, extrapolated from timed training steps after a warm-up "
         f"(~{res['spec']['images']} images per repeat, up to {res['spec']['repeats']} repeats, xcnn and "
         "PyTorch alternating in one process on the same synthetic MNIST-shaped data, same initial "
         "weights, SGD lr 0.1, momentum 1e-3, weight decay 1e-3, softmax cross-entropy). "
         "Ratio = xcnn / PyTorch (median of repeats; lower is better for xcnn). Threads: "
         f"OpenBLAS, PyTorch and xcnn's own CPU paths each get {res['spec']['threads']}. PyTorch is optional: "
         "`pip install torch==2.13.0` (the CPU-only wheel is `torch==2.13.0+cpu`).", "",
         f"Machine: {m.get('cpu')}, {m.get('cores')} cores; NumPy {m.get('numpy')} with {m.get('blas')}; "
         f"PyTorch {m.get('torch')}; xcnn CPU kernels: {m.get('cpu_kernels', 'numpy')}.", ""]
    for run in res["runs"]:
        lines += [f"## {run['label']}", ""]
        if run["torch_skipped"]:
            lines += [f"PyTorch part skipped: {run['torch_skipped']}", ""]
        lines += ["| model | batch | xcnn s/epoch (min / median) | torch s/epoch (min / median) | ratio median (min) "
              "| xcnn img/s | target | met |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in run["rows"]:
            x = r["xcnn"]
            t = r.get("torch")
            tt = f"{t['epoch_s_min']:.2f} / {t['epoch_s_median']:.2f}" if t else "-"
            ratio = f"{r['ratio_median']:.2f} ({r['ratio_min']:.2f})" if t else "-"
            tgt = f"<= {r['target']:.1f}" if t and r.get("target") else "-"
            met = ("yes" if r["met"] else "**no**") if t else "-"
            lines.append(f"| {r['model']} | {r['batch']} | {x['epoch_s_min']:.2f} / {x['epoch_s_median']:.2f} | {tt} "
                     f"| {ratio} | {x['images_per_s']:,.0f} | {tgt} | {met} |")
            for key, label in (("xcnn-kernels", "eager, our GEMM kernels"), ("xcnn-graph", "--cuda-graph")):
                if key not in r:
                    continue
                gx = r[key]
                gr = f"{r[f'ratio_{key[5:]}_median']:.2f}" if t else "-"
                note = (f" (capture failed: {r['graph_failed']}; eager steps)"
                        if key == "xcnn-graph" and r.get("graph_failed") else "")
                lines.append(f"| {r['model']}, {label}{note} | {r['batch']} | {gx['epoch_s_min']:.2f} / "
                         f"{gx['epoch_s_median']:.2f} | {tt} | {gr} | {gx['images_per_s']:,.0f} | | |")
        lines += ["", f"Load average at start of this run: {run['machine'].get('loadavg')}.", ""]
    if res.get("memory"):
        lines += ["## Peak memory", "", "Peak RSS (VmHWM) of a fresh process that builds the network and trains one full "
              "60,000-image epoch (fewer steps only if the epoch ran past 90 s).", "",
              "| framework | model | batch | peak RSS | RSS before training | steps done | seconds |",
              "|---|---|---:|---:|---:|---:|---:|"]
        for r in res["memory"]:
            if "skipped" in r:
                lines.append(f"| {r.get('framework', '?')} | | | skipped: {r['skipped']} | | |")
                continue
            lines.append(f"| {r['framework']} | {r['model']} | {r['batch']} | {_fmt_bytes(r['peak_rss_bytes'])} | "
                     f"{_fmt_bytes(r['peak_rss_before_training_bytes'])} | {r['steps_done']}/{r['steps']} "
                     f"| {r['seconds']:.2f} |")
        lines.append("")
    first = res["runs"][0]
    if any("torch" in r for r in first["rows"]):
        met = [f"{r['model']} @ {r['batch']}" for r in first["rows"] if r.get("met")]
        missed = [f"{r['model']} @ {r['batch']} ({min(r['ratio_median'], r.get('ratio_graph_median', 9e9), r.get('ratio_kernels_median', 9e9)):.2f} "
                  f"> {r['target']:.1f})"
                  for r in first["rows"] if "torch" in r and r.get("target") and not r.get("met")]
        lines += ["## Targets (default environment, median ratio)", "",
              f"- met: {', '.join(met) or 'none'}", f"- not met: {', '.join(missed) or 'none'}"]
        if res["device"].startswith("cuda"):
            big = [r for r in first["rows"] if r["model"] == "seed-cnn" and r["batch"] == 1024]
            if big:
                ips = max(big[0].get(k, {}).get("images_per_s", 0) for k in ("xcnn", "xcnn-graph", "xcnn-kernels"))
                lines.append(f"- seed-cnn training images/s at batch 1024: {ips:,.0f} (target >= "
                         f"{GPU_IMAGES_PER_S:,}: {'met' if ips >= GPU_IMAGES_PER_S else '**not met**'})")
        xm = [r for r in res.get("memory", []) if r.get("framework") == "xcnn" and "peak_rss_bytes" in r]
        if xm:
            ok = xm[0]["peak_rss_bytes"] < 2**30
            lines.append(f"- peak RSS of an xcnn seed-cnn epoch at batch {xm[0]['batch']}: "
                     f"{_fmt_bytes(xm[0]['peak_rss_bytes'])} ({'under' if ok else '**over**'} 1 GiB)")
        if missed and not res["device"].startswith("cuda"):
            lines += ["", f"Why the missed targets are missed: [{ANALYSIS}]({ANALYSIS}) (measurements and profiles)."]
        lines.append("")
    profiles = [p for run in res["runs"] for p in run.get("profiles", [])]
    if profiles:
        lines += ["## Profile (xcnn, default environment)", "",
              "Exclusive wall time per op family (timers synchronise around every wrapped call, "
              "so the total runs a little slower than the table above).", "", "```"]
        lines += [format_profile(p) for p in profiles] + ["```", ""]
    lines += ["## Machine", ""]
    for k, v in m.items():
        lines.append(f"- {k}: {v}")
    if res.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    lines.append("")
    path.write_text("\n".join(lines))
