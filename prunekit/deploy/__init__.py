"""Shipping a run: ONNX export with parity checks, TensorRT engines, and ONNX Runtime inference.

- `onnx_export`: `export_onnx(run)` writes RUN/dense.onnx and RUN/pruned.onnx, verified against PyTorch.
- `tensorrt_build`: `build_engine(run, target)` (TensorRT Python API) and RUN/build_engine.sh (trtexec).
- `ort_model`: `load_checked_onnx`, and `OrtClassifier`, an exported model callable like a PyTorch one.
"""

from prunekit.deploy.onnx_export import ExportResult, export_onnx
from prunekit.deploy.ort_model import OrtClassifier, load_checked_onnx
from prunekit.deploy.tensorrt_build import EngineOptions, EngineResult, build_engine, write_build_script

__all__ = [
    "EngineOptions",
    "EngineResult",
    "ExportResult",
    "OrtClassifier",
    "build_engine",
    "export_onnx",
    "load_checked_onnx",
    "write_build_script",
]
