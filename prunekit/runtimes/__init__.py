"""Runtimes as a table: one file per runtime, one object each, looked up by name.

    from prunekit.runtimes import get_runtime, ModelRef, Execution
    rt = get_runtime(profile.runtime)             # "onnxruntime", "torch", "tensorrt", ...
    rt.require()                                  # one-line MissingDependencyError if absent here
    pair = rt.time_pair(ModelRef(onnx=dense_path), ModelRef(module=pruned), (1, 3, 224, 224),
                        Execution.of_profile(profile))   # warm blocks: see prunekit.latency.measure

Built in: `onnxruntime` (ONNX Runtime CPU), `torch` (PyTorch eager, CUDA events on a GPU),
`tensorrt` (TensorRT 10 engines built from ONNX). A new runtime (OpenVINO, an ONNX Runtime
CUDA execution provider, a remote device) is ONE new file in this folder: a `Runtime` subclass
decorated with `@register_runtime` (see `base.py`). Every module of this package is imported
here, so dropping the file in is enough; code outside the package can call `register_runtime`.
"""

from __future__ import annotations

import importlib
import pkgutil

from prunekit.errors import PrunekitError
from prunekit.runtimes.base import RUNTIMES, Execution, ModelRef, Runtime, as_ref, register_runtime

_HELPERS = {"base", "machine", "ort_session", "remote"}
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _HELPERS and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")


def get_runtime(name: str) -> Runtime:
    """The runtime registered as `name`; an unknown name is a one-line PrunekitError."""
    rt = RUNTIMES.get(str(name))
    if rt is None:
        raise PrunekitError(f"unknown runtime {name!r}", f"choose one of: {', '.join(sorted(RUNTIMES))}")
    return rt


def list_runtimes() -> list[str]:
    """Names of every registered runtime."""
    return sorted(RUNTIMES)

__all__ = [
    "RUNTIMES",
    "Execution",
    "ModelRef",
    "Runtime",
    "as_ref",
    "get_runtime",
    "list_runtimes",
    "register_runtime",
]
