"""Optional features and the packages they need: one clear message when an extra is not installed.

The default install stays numpy, matplotlib and typer. ONNX export/import need the ``onnx`` extra,
the live demo page the ``demo`` extra; :func:`require` imports such a package or says how to get it.
"""
from __future__ import annotations

import importlib

from .errors import MissingExtraError

__all__ = ["MissingExtraError", "require"]


def require(module: str, extra: str, feature: str):
    """Import ``module`` or raise :class:`~xcnn.errors.MissingExtraError` naming ``feature`` and the
    install command (one line, so a command-line tool can print it as is)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{feature} needs the '{module}' package ({type(exc).__name__}: {exc}) — "
                                f"install the extra: pip install 'xcnn[{extra}]'") from None
