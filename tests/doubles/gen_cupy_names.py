"""Write tests/doubles/cupy_names.json: the names real CuPy has, for the strict double
(tests/doubles/fakecupy.py), which resolves no other name.

Run it with the CuPy the double models (it imports without a GPU or driver), from any directory:

    python3 -m venv /tmp/cupyvenv && /tmp/cupyvenv/bin/pip install cupy-cuda13x==14.2.0 nvidia-nccl-cu13
    /tmp/cupyvenv/bin/python tests/doubles/gen_cupy_names.py            # rewrites the JSON
    /tmp/cupyvenv/bin/python tests/doubles/gen_cupy_names.py --check    # exit 1 if it is stale

``cupy.cuda.nccl`` (imported, as CuPy never imports it itself) offers its names only where the NCCL
library loads, hence nvidia-nccl-cu13 above (any version: the names are CuPy's binding); without it
the script stops rather than record a CuPy without NCCL.

For every namespace below it records each name of ``dir()`` with its kind (``numpy`` when CuPy
re-exports NumPy's very object, ``module``, ``class``, ``ufunc``, ``function``, ``constant`` at module
level, ``lazy`` for a name a module imports on first use that cannot be imported here; ``method`` /
``property`` / ``attribute`` on classes) and, for callables, the parameter names
and kinds of the signature (from ``inspect.signature``, else from the first docstring line that
Cython's ``embedsignature`` writes). Nothing here needs a device.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
from pathlib import Path

OUT = Path(__file__).resolve().parent / "cupy_names.json"
VERSION = "14.2.0"

#: module-like namespaces (attributes of the package) and classes whose members are recorded
MODULES = ["cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.random", "cupy.linalg", "cupy.fft",
           "cupy.cuda.nccl"]  # (last: importing it adds `nccl` to cupy.cuda, which `import cupy` does not)
#: submodules that are imported, not looked up as attributes (cupy/cuda/__init__.py does not import them)
IMPORTED = {"cupy.cuda.nccl"}
CLASSES = ["cupy.ndarray", "cupy.ufunc", "cupy.cuda.Device", "cupy.cuda.Stream", "cupy.cuda.Event",
           "cupy.cuda.Graph", "cupy.cuda.MemoryPool", "cupy.cuda.MemoryPointer", "cupy.RawModule",
           "cupy.RawKernel", "cupy.random.Generator", "cupy.cuda.runtime.CUDARuntimeError",
           "cupy.cuda.nccl.NcclCommunicator", "cupy.cuda.nccl.NcclError"]
#: module bookkeeping that every Python module has; not part of CuPy's API
_SKIP = {"__builtins__", "__cached__", "__file__", "__loader__", "__spec__", "__path__", "__package__",
         "__doc__", "__name__", "__getattr__", "__dir__", "__test__", "__pyx_capi__"}

#: signatures Cython's embedded docstring gets wrong: ``RawModule.__init__(self, *, str code=None, ...)``
#: (cupy/_core/raw.pyx:364 (v14.2.0)) is documented as ``RawModule(str code=None, *, ...)``; checked:
#: ``cupy.RawModule('src')`` raises "__init__() takes exactly 0 positional arguments (1 given)"; likewise
#: ``RawKernel.__init__(self, str code, str name, tuple options=(), str backend='nvrtc', *, ...)``
#: (cupy/_core/raw.pyx:61-63 (v14.2.0); checked: a fifth positional argument is a TypeError)
_SIG_FIXES = {"cupy.RawModule": "*, code, path, options, backend, translate_cucomplex, enable_cooperative_groups, "
                                "name_expressions, jitify",
              "cupy.RawKernel": "code, name, options, backend, *, translate_cucomplex, enable_cooperative_groups, jitify"}

_PARAM = re.compile(r"^\s*(?:[A-Za-z_][\w.\[\], ]*\s+)?(\*{0,2}\s*[A-Za-z_]\w*)\s*(?:=.*)?$")


def _resolve(dotted):
    import importlib  # noqa: PLC0415

    parts = dotted.split(".")
    known = next((m for m in IMPORTED if dotted == m or dotted.startswith(m + ".")), None)
    obj = importlib.import_module(known or parts[0])
    for p in parts[len(known.split(".")) if known else 1:]:
        obj = getattr(obj, p)
    return obj


def _split_top(text):
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def _params_from_doc(obj):
    """``[[name, kind], ...]`` from a Cython ``name(self, str code=None, *, tuple options=())`` line."""
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    if not doc:
        return None
    m = re.match(r"^[\w.]*\((.*)\)(?:\s*->.*)?$", doc[0].strip())
    if not m:
        return None
    params, kw_only = [], False
    for tok in _split_top(m.group(1)):
        tok = tok.strip()
        if tok == "*":
            kw_only = True
            continue
        if tok == "/":
            continue
        pm = _PARAM.match(tok)
        if not pm:
            return None
        name = pm.group(1).replace(" ", "")
        if name.startswith("**"):
            params.append([name[2:], "VAR_KEYWORD"])
        elif name.startswith("*"):
            params.append([name[1:], "VAR_POSITIONAL"])
            kw_only = True
        else:
            params.append([name, "KEYWORD_ONLY" if kw_only else "POSITIONAL_OR_KEYWORD"])
    if params and params[0][0] == "self":
        params = params[1:]
    return params


def _params(obj):
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return _params_from_doc(obj)
    out = [[p.name, p.kind.name] for p in sig.parameters.values()]
    if out == [["args", "VAR_POSITIONAL"], ["kwargs", "VAR_KEYWORD"]] or out[:1] == [["self", "POSITIONAL_ONLY"]]:
        return _params_from_doc(obj) or out  # a Cython slot: the docstring has the real one
    return out


def _sig(params):
    """``[[name, kind], ...]`` as Python's parameter syntax without defaults, e.g. ``'a, dtype, *, copy'``;
    a leading ``self`` is dropped."""
    if params and params[0][0] == "self":
        params = params[1:]
    out, star = [], False
    for i, (name, kind) in enumerate(params):
        if kind == "VAR_POSITIONAL":
            out.append("*" + name)
            star = True
        elif kind == "VAR_KEYWORD":
            out.append("**" + name)
        elif kind == "KEYWORD_ONLY" and not star:
            out += ["*", name]
            star = True
        else:
            out.append(name)
        if kind == "POSITIONAL_ONLY" and (i + 1 == len(params) or params[i + 1][1] != "POSITIONAL_ONLY"):
            out.append("/")
    return ", ".join(out)


def _lazy_names(ns):
    """Names a module provides through its module-level ``__getattr__`` (``cupy.random.Generator``,
    ``cupy.cuda.cublas``, ...), which ``dir()`` lists only once they were first used: the string
    literals its source compares ``key`` with."""
    getattr_ = ns.__dict__.get("__getattr__")
    if not inspect.isfunction(getattr_):
        return []
    return re.findall(r"key\s*==\s*['\"](\w+)['\"]", inspect.getsource(getattr_))


def _module_entry(ns_name, ns, name):
    import numpy  # noqa: PLC0415

    obj = getattr(ns, name)
    np_ns = numpy
    for part in ns_name.split(".")[1:]:
        np_ns = getattr(np_ns, part, None)
    entry = {}
    if np_ns is not None and getattr(np_ns, name, object()) is obj and not isinstance(obj, types.ModuleType):
        entry["kind"] = "numpy"
    elif isinstance(obj, types.ModuleType):
        entry["kind"] = "module"
    elif isinstance(obj, type):
        entry["kind"] = "class"
    elif type(obj).__name__ == "ufunc":
        entry["kind"] = "ufunc"
    elif callable(obj):
        entry["kind"] = "function"
    else:
        entry["kind"] = "constant"
        if isinstance(obj, (bool, int, float, str)) or obj is None:
            entry["value"] = obj
    if entry["kind"] in ("function", "class", "ufunc"):
        target = obj.__init__ if entry["kind"] == "class" and not _params_from_doc(obj) else obj
        params = _params_from_doc(obj) if entry["kind"] == "class" else _params(target)
        if params is None and entry["kind"] == "class":
            params = _params(obj)
        if params is not None:
            entry["sig"] = _sig(params)
        fix = _SIG_FIXES.get(f"{ns_name}.{name}")
        if fix is not None:
            entry["sig"] = fix
    return entry


def _class_entry(cls, name):
    raw = inspect.getattr_static(cls, name)
    kind = type(raw).__name__
    if isinstance(raw, (property, types.GetSetDescriptorType, types.MemberDescriptorType)) \
            or kind in ("getset_descriptor", "member_descriptor"):
        return {"kind": "property"}
    if callable(raw) or isinstance(raw, (classmethod, staticmethod)):
        entry = {"kind": "method"}
        params = _params(getattr(cls, name))
        if params is not None:
            entry["sig"] = _sig(params)
        return entry
    return {"kind": "attribute"}


def generate() -> dict:
    import cupy  # noqa: PLC0415
    import numpy  # noqa: PLC0415

    if cupy.__version__ != VERSION:
        sys.exit(f"this list models CuPy {VERSION}; the imported CuPy is {cupy.__version__}")
    out = {"cupy_version": cupy.__version__, "numpy_version": numpy.__version__,
           "regenerate": "tests/doubles/gen_cupy_names.py", "modules": {}, "classes": {}}
    for ns_name in MODULES:
        ns = _resolve(ns_name)
        if ns_name == "cupy.cuda.nccl" and not ns.available:
            sys.exit("cupy.cuda.nccl found no NCCL library: pip install nvidia-nccl-cu13 beside this CuPy")
        entries = {}
        for n in sorted(set(dir(ns)) | set(_lazy_names(ns))):
            if n in _SKIP:
                continue
            try:
                entries[n] = _module_entry(ns_name, ns, n)
            except Exception as exc:  # a lazy name whose import needs CUDA libraries absent here
                entries[n] = {"kind": "lazy", "import_error": type(exc).__name__}
        out["modules"][ns_name] = entries
    for cls_name in CLASSES:
        cls = _resolve(cls_name)
        out["classes"][cls_name] = {n: _class_entry(cls, n) for n in sorted(dir(cls))}
    return out


def dumps(data: dict) -> str:
    """JSON with one line per name, so a CuPy upgrade shows up as a readable diff."""
    lines = ["{"]
    scalars = [k for k in sorted(data) if not isinstance(data[k], dict)]
    for k in scalars:
        lines.append(f"  {json.dumps(k)}: {json.dumps(data[k])},")
    groups = [k for k in sorted(data) if isinstance(data[k], dict)]
    for gi, group in enumerate(groups):
        lines.append(f"  {json.dumps(group)}: {{")
        spaces = sorted(data[group])
        for si, space in enumerate(spaces):
            lines.append(f"    {json.dumps(space)}: {{")
            names = sorted(data[group][space])
            for ni, name in enumerate(names):
                comma = "," if ni + 1 < len(names) else ""
                lines.append(f"      {json.dumps(name)}: {json.dumps(data[group][space][name], sort_keys=True)}{comma}")
            lines.append("    }" + ("," if si + 1 < len(spaces) else ""))
        lines.append("  }" + ("," if gi + 1 < len(groups) else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    args = ap.parse_args()
    text = dumps(generate())
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs from CuPy {VERSION}: regenerate it")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
