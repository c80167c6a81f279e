"""Exported ONNX classifiers: load-and-verify, and an ONNX Runtime model callable like a PyTorch one.

`check` evaluates the *exported file*, not the PyTorch model it came from, so the accuracy it
reports is the accuracy of what ships. `OrtClassifier` makes that file look like a logits
function (Tensor NCHW in [0, 1] -> Tensor logits) for the robustness suite and `evaluate`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import torch

from prunekit.errors import PrunekitError
from prunekit.runtimes.ort_session import ort_session


def load_checked_onnx(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Read an ONNX file and run `onnx.checker` on it; any damage is a one-line PrunekitError."""
    p = Path(path)
    hint = "re-export it with `prunekit export RUN --format onnx`"
    if not p.is_file():
        raise PrunekitError(f"ONNX file not found: {p}", hint)
    try:
        model = onnx.load_model_from_string(p.read_bytes())
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # protobuf DecodeError, ValidationError, shape-inference errors, ...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise PrunekitError(f"{p} is not a valid ONNX model: {reason}", hint) from None
    if len(model.graph.input) != 1 or len(model.graph.output) < 1:
        raise PrunekitError(f"{p} must have exactly one image input and a logits output", hint)
    return model


def static_batch(model: onnx.ModelProto) -> int | None:
    """The fixed batch size of the model's image input, or None when the batch axis is dynamic."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if not dims:
        return None
    d0 = dims[0]
    return int(d0.dim_value) if d0.HasField("dim_value") and d0.dim_value > 0 else None


def input_hw(model: onnx.ModelProto) -> tuple[int, int] | None:
    """(height, width) of the image input when fixed in the graph."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[2:]):
        return None
    return int(dims[2].dim_value), int(dims[3].dim_value)


class OrtClassifier:
    """An ONNX classifier run by ONNX Runtime on the CPU, called like a PyTorch model.

    A static-batch model (the default export) is fed in chunks of its batch size, the last
    chunk padded with zeros and cut back, so any number of images can be evaluated.
    """

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int = 1) -> None:
        self.session = ort_session(model, threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        first = inp.shape[0] if inp.shape else None
        self.batch = first if isinstance(first, int) and first > 0 else None

    def run(self, images: np.ndarray) -> np.ndarray:
        """Logits for a float32 NCHW array (any number of images)."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        if self.batch is None:
            return self.session.run(None, {self.input_name: images})[0]
        n, b = images.shape[0], self.batch
        outs = []
        for start in range(0, n, b):
            chunk = images[start:start + b]
            m = chunk.shape[0]
            if m < b:
                chunk = np.concatenate([chunk, np.zeros((b - m, *chunk.shape[1:]), dtype=np.float32)])
            outs.append(self.session.run(None, {self.input_name: chunk})[0][:m])
        return np.concatenate(outs) if outs else np.zeros((0,), dtype=np.float32)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x.detach().cpu().float().numpy()))
