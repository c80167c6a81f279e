"""Pruning methods as plug-ins: one file per method, registered in one table.

    magnitude.py  taylor.py  halp.py  adasap.py  csam.py  s2ap.py

Each file holds the method's options model, its runner and its building blocks, and registers
a `Method` with `@register_method`. The CLI, the settings and the report read everything they
need (name, help, options, defaults) from `METHODS`; nothing outside a method's file names it.
A method decides *what* to score and *when* to prune; `prunekit.select` decides *how many*
channels each group keeps. See registry.py for how to write one and how plug-ins are loaded.
"""

from prunekit.methods.registry import (
    ENTRY_POINT_GROUP,
    METHODS,
    PLUGIN_ENV,
    Method,
    MethodContext,
    MethodOptions,
    MethodResult,
    NoOptions,
    get_method,
    list_methods,
    load_plugins,
    option_flag,
    options_error,
    register_method,
)

# The built-in methods register themselves on import, in this order (the CLI lists them so).
from prunekit.methods import magnitude, taylor, halp, adasap, csam, s2ap  # noqa: E402, F401, I001  isort: skip

__all__ = [
    "ENTRY_POINT_GROUP",
    "METHODS",
    "PLUGIN_ENV",
    "Method",
    "MethodContext",
    "MethodOptions",
    "MethodResult",
    "NoOptions",
    "get_method",
    "list_methods",
    "load_plugins",
    "option_flag",
    "options_error",
    "register_method",
]
