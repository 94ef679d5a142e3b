"""The architecture, checked from the source (every import, including the ones inside functions):

* arrows go one way -- apps/bench -> train, interop -> nn, data, viz, dist -> ops -> cpu, cuda -> backend,
  io, extras -> errors (interop: ONNX export/import, above the networks it converts and below the apps,
  among them apps/demo, that use it; dist, data parallelism, is a service the trainer calls: it never
  imports train);
* the demo page (apps/demo: a web server) is a leaf: only its shim imports it;
* no import cycle between modules;
* nothing outside ops/, cpu/, cuda/ and backend.py names CuPy or decides NumPy vs CuPy;
* no module is much over 300 lines;
* no test module imports another test module.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "xcnn"

#: the level of each part of the package; a module may import its own part or a lower level only
LEVELS = {"errors": 0, "io": 1, "backend": 1, "extras": 1, "cpu": 2, "cuda": 2, "ops": 3, "nn": 4, "data": 4,
          "viz": 4, "machine": 4, "dist": 4, "train": 5, "interop": 5, "apps": 6, "bench": 6}
TOP = 7  # xcnn/__init__.py and the `python -m xcnn.<app>` shims
MAX_LINES = 320


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        yield ".".join(rel.parts).removesuffix(".__init__"), path


def _imports(name, path):
    """Absolute names of the xcnn modules ``name`` imports (top level or inside functions)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("xcnn")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("xcnn"):
                if node.module:
                    out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import ops` names a module
    return out


def _graph():
    mods = dict(_modules())
    return mods, {m: {i for i in _imports(m, p) if i in mods and i != m} for m, p in mods.items()}


def _part(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _level(module):
    part = _part(module)
    if part is None or part in ("evaluate", "predict", "visualize", "report", "export", "import_onnx", "demo"):
        return TOP
    return LEVELS[part]


def test_every_part_has_a_level():
    mods, _ = _graph()
    unknown = {_part(m) for m in mods} - set(LEVELS) - {None, "evaluate", "predict", "visualize", "report",
                                                         "export", "import_onnx", "demo"}
    assert not unknown, f"give these parts of the package a level in tests/test_layout.py: {unknown}"


def test_arrows_go_one_way():
    _, graph = _graph()
    bad = [f"{a} -> {b}" for a, deps in graph.items() for b in deps
           if _part(a) != _part(b) and _level(b) >= _level(a)]
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_the_demo_page_is_a_leaf():
    _, graph = _graph()
    bad = [f"{a} -> {b}" for a, deps in graph.items() for b in deps
           if b.startswith("xcnn.apps.demo") and not a.startswith("xcnn.apps.demo") and a != "xcnn.demo"]
    assert not bad, "only xcnn/demo.py may import the demo page:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    _, graph = _graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1 and not all(c == v or v.startswith(c + ".") or c.startswith(v + ".")
                                         for c in comp):
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    # a package's __init__ re-exporting its own modules is not a cycle between parts
    cycles = [c for c in cycles if len({_part(m) for m in c}) > 1 or not any(m.count(".") == 1 for m in c)]
    assert not cycles, f"import cycles: {cycles}"


def test_only_the_device_layers_know_cupy():
    allowed = {"backend", "cpu", "cuda", "ops"}
    offenders = []
    for name, path in _modules():
        if _part(name) in allowed:
            continue
        text = path.read_text()
        for needle in ("import cupy", "xp is np", "xp is not np", "cupy_or_none", "is_device_array("):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, "device decisions outside ops/cpu/cuda/backend:\n" + "\n".join(offenders)


def test_modules_are_small_enough_to_read_in_one_sitting():
    big = [f"{p.relative_to(ROOT)}: {n}" for _, p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_test_modules_do_not_import_each_other():
    tests = {p.stem for p in (ROOT / "tests").rglob("test_*.py")}
    bad = []
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.relative_to(ROOT)} imports {n}" for n in names if n.split(".")[-1] in tests]
    assert not bad, "\n".join(bad)
