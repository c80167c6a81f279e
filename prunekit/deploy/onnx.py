"""The one torch -> ONNX function of prunekit: `to_onnx`.

Everything that needs an ONNX graph of a PyTorch model comes here: latency prediction and
profiling (`exporter="fast"`), `prunekit export` and `check` (`exporter="release"`), TensorRT
(which builds on the ONNX file).

- `fast`: torch's TorchScript exporter (`dynamo=False`). Several times faster than dynamo, and
  the same Conv/BN/Relu graph that ONNX Runtime then fuses: the right tool when the graph is only
  timed or priced, up to 8 times per pruning step.
- `release`: torch's dynamo exporter (falling back to TorchScript, said in the notes), onnxslim
  simplification, metadata, and the full `onnx.checker`: the file that ships.

This module imports nothing else of prunekit's pipeline, so every layer can use it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from prunekit.errors import PrunekitError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FAST_OPSET = 17
DEFAULT_OPSET = 18  # the dynamo exporter's native opset; lower ones go through onnx's version converter
MIN_OPSET, MAX_OPSET = 13, 23
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for a single-file ONNX model
Exporter = Literal["fast", "release"]


@dataclass
class OnnxExport:
    """An exported model: the serialized ONNX and how it was made."""

    data: bytes
    exporter: str
    opset: int
    nodes: int
    simplified: bool = False
    notes: list[str] = field(default_factory=list)

    def proto(self) -> Any:
        """The model as an onnx.ModelProto (parsed on demand)."""
        import onnx

        return onnx.load_model_from_string(self.data)


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters print progress lines and log warnings; keep stdout clean for --json."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield sink
    finally:
        logger.setLevel(level)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (exporter errors run to pages)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch.export colours its messages
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def model_opset(model: Any) -> int:
    """The default-domain opset an onnx.ModelProto imports."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return -1


def _torchscript(model: nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with _quiet(), torch.no_grad():
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)
    return buf.getvalue()


def _dynamo(model: nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool) -> Any:
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        # min 1: a batch axis exported from an example of size 1 must not be specialised away.
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], **kwargs)
    return program.model_proto


def simplify(model: Any) -> tuple[Any, bool, str | None]:
    """Simplify with onnxslim (constant folding, dead-node removal, fusions); keep the original on failure."""
    import onnx

    try:
        import onnxslim

        with _quiet():
            slim = onnxslim.slim(model)
        if not isinstance(slim, onnx.ModelProto):
            return model, False, "onnxslim returned no model"
        return slim, True, None
    except Exception as exc:  # a simplifier failure must not lose a valid export
        return model, False, f"onnxslim failed ({first_line(exc)}); kept the unsimplified graph"


def finalize(model: Any, metadata: dict[str, str]) -> bytes:
    """Attach metadata, run the full ONNX checker, and serialise."""
    import onnx

    del model.metadata_props[:]
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    if model.ByteSize() > MAX_PROTO_BYTES:
        raise PrunekitError("the exported model is larger than 2 GB, which a single ONNX file cannot hold")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise PrunekitError(f"the exported ONNX model fails onnx.checker: {first_line(exc)}") from exc
    return model.SerializeToString()


def to_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    exporter: Exporter = "fast",
    opset: int | None = None,
    dynamic_batch: bool = False,
    simplify_graph: bool | None = None,
    metadata: dict[str, str] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> OnnxExport:
    """Export `model` (put in eval mode for the export, restored after) at `input_shape` to ONNX.

    `exporter="fast"` (TorchScript, opset 17, no checker) is for timing and prediction;
    `exporter="release"` (dynamo with a TorchScript fallback, onnxslim unless
    `simplify_graph=False`, `metadata`, full onnx.checker) is for files that ship. Input and
    output are named `input` and `logits`. `path`, when given, receives the bytes atomically.
    Any exporter failure is a one-line PrunekitError.
    """
    if exporter not in ("fast", "release"):
        raise PrunekitError(f"unknown ONNX exporter {exporter!r}", "use fast or release")
    opset = int(opset if opset is not None else (FAST_OPSET if exporter == "fast" else DEFAULT_OPSET))
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise PrunekitError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    was_training = model.training
    model.eval()
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    shape = tuple(int(d) for d in input_shape)
    if dynamic_batch and shape[0] < 2:
        shape = (2, *shape[1:])  # an example batch of 1 would be specialised to a constant
    x = torch.rand(shape, device=device) if exporter == "release" else torch.zeros(shape, device=device)
    notes: list[str] = []
    try:
        if exporter == "fast":
            try:
                data = _torchscript(model, x, opset, dynamic_batch)
            except Exception as exc:
                raise PrunekitError(f"ONNX export for timing failed: {first_line(exc)}") from exc
            out = OnnxExport(data, f"torch.onnx TorchScript (torch {torch.__version__})", opset, -1)
        else:
            out = _release(model, x, opset, dynamic_batch, simplify_graph is not False, metadata or {}, notes)
    finally:
        model.train(was_training)
    if path is not None:
        from prunekit.atomic import write_bytes

        write_bytes(path, out.data)
    return out


def _release(model: nn.Module, x: torch.Tensor, opset: int, dynamic_batch: bool, slim: bool,
             metadata: dict[str, str], notes: list[str]) -> OnnxExport:
    import onnx

    try:
        proto = _dynamo(model, x, opset, dynamic_batch)
        exporter = f"torch.onnx dynamo (torch {torch.__version__})"
    except Exception as exc:  # the exporter raises many types; the fallback is reported, not hidden
        notes.append(f"dynamo exporter failed ({first_line(exc)}); used the TorchScript exporter")
        try:
            proto = onnx.load_model_from_string(_torchscript(model, x, opset, dynamic_batch))
        except Exception as exc2:
            raise PrunekitError(
                f"ONNX export failed: dynamo exporter: {first_line(exc)}; TorchScript exporter: {first_line(exc2)}",
                "try another --opset, or report the model",
            ) from exc2
        exporter = f"torch.onnx TorchScript (torch {torch.__version__})"
    got = model_opset(proto)
    if got != opset:
        notes.append(f"requested opset {opset}, the exporter produced opset {got}")
    simplified = False
    if slim:
        proto, simplified, note = simplify(proto)
        if note:
            notes.append(note)
    data = finalize(proto, metadata)
    return OnnxExport(data, exporter, model_opset(proto), len(proto.graph.node), simplified, notes)
