"""Shipping a run, in one direction: torch -> ONNX -> (TensorRT engine), and ONNX Runtime inference.

- `onnx`: `to_onnx`, the one torch -> ONNX function (fast for timing, release for files that ship).
- `base`: the export format table (`FORMATS`, `get_format`, `list_formats`) and the one verb,
  `export(run, format, **options)`, which also records what it wrote in RUN/export.json.
- `formats/`: one file per format (`onnx`: RUN/dense.onnx + RUN/pruned.onnx, parity-checked;
  `engine`: TensorRT engines built from those files). A new format is one new file there.
- `parity`: ONNX Runtime vs PyTorch on real images; `trtexec`: RUN/build_engine.sh.
- `ort_model`: `load_checked_onnx`, and `OrtClassifier`, an exported model callable like a PyTorch one.

This package's __init__ imports nothing, so `prunekit.deploy.onnx` stays importable from any layer.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "export": "prunekit.deploy.base",
    "get_format": "prunekit.deploy.base",
    "list_formats": "prunekit.deploy.base",
    "register_format": "prunekit.deploy.base",
    "FORMATS": "prunekit.deploy.base",
    "to_onnx": "prunekit.deploy.onnx",
    "OrtClassifier": "prunekit.deploy.ort_model",
    "load_checked_onnx": "prunekit.deploy.ort_model",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunekit.deploy' has no attribute {name!r}")
