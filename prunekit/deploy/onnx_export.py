"""ONNX export of a run's dense and pruned models, verified against PyTorch.

    load run -> torch.onnx.export (dynamo) -> onnxslim -> onnx.checker
             -> ONNX Runtime vs PyTorch on real validation images (parity) -> write both files

Both models are exported so that `check` can always time them side by side. Nothing is written
until both exports pass the checker and the parity test; then the files are renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from prunekit.atomic import atomic_path, write_json
from prunekit.deploy.ort_model import OrtClassifier
from prunekit.errors import PrunekitError
from prunekit.runs import LoadedRun, load_run, read_json

EXPORT_FORMAT = "prunekit-export/1"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18  # the dynamo exporter's native opset; lower ones go through onnx's version converter
MIN_OPSET, MAX_OPSET = 13, 23
PARITY_IMAGES = 64
# Parity tolerance on logits: |onnx - torch| <= ATOL + RTOL * max|torch logits|. Both sides compute in
# float32 (unit roundoff 6e-8); ONNX Runtime folds BatchNorm into the convs and reorders sums, which
# moves logits by 1e-8..1e-5 on the models tested here. 1e-3 of the logit range leaves ~100x headroom
# over that, while a real export bug (a wrong channel, a dropped BN, a mis-shaped reshape) changes
# logits by a large fraction of their range.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3
MIN_TOP1_AGREEMENT = 0.99
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for a single-file ONNX model


@dataclass
class Parity:
    """ONNX Runtime vs PyTorch on the same images."""

    images: int
    logit_scale: float  # max |PyTorch logit|: near 0 means the comparison says little (untrained model)
    max_abs_diff: float
    tolerance: float
    top1_agreement: float
    near_ties: int  # disagreements where PyTorch's top-2 margin is within the tolerance
    passed: bool


@dataclass
class ModelExport:
    """One exported model file and how it was made."""

    file: str
    exporter: str
    opset: int
    simplified: bool
    nodes: int
    bytes: int
    sha256: str
    input_shape: list[int | str]
    parity: Parity
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportResult:
    """What `export_onnx` wrote (RUN/export.json holds the same, and report.json["export"])."""

    run: str
    opset: int
    dynamic_batch: bool
    batch_size: int
    input_shape: list[int]
    parity_inputs: str
    models: dict[str, ModelExport]
    build_script: str
    target: str | None
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format": EXPORT_FORMAT, **d}


# ------------------------------------------------------------------------------ export of one model
@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """The dynamo exporter prints progress lines and logs warnings; keep stdout clean for --json."""
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def export_model(
    model: nn.Module, input_shape: tuple[int, int, int, int], opset: int = DEFAULT_OPSET, dynamic_batch: bool = False
) -> tuple[onnx.ModelProto, str, list[str]]:
    """Export `model` to an in-memory ONNX ModelProto with torch's dynamo exporter.

    Returns (model, exporter description, notes). Falls back to the TorchScript exporter only
    when the dynamo exporter fails, and says so in the notes.
    """
    model = model.eval().cpu()
    shape = tuple(input_shape)
    if dynamic_batch and shape[0] < 2:
        shape = (2, *shape[1:])  # an example batch of 1 would be specialised to a constant
    x = torch.rand(shape)
    notes: list[str] = []
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset}
    try:
        kwargs: dict[str, Any] = {}
        if dynamic_batch:
            # min 1: a batch axis exported from an example of size 1 must not be specialised away.
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, **names, **kwargs)
        proto = program.model_proto
        exporter = f"torch.onnx dynamo (torch {torch.__version__})"
    except Exception as exc:  # the exporter raises many types; the fallback is reported, not hidden
        notes.append(f"dynamo exporter failed ({_first_line(exc)}); used the TorchScript exporter")
        buf = io.BytesIO()
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
        try:
            with _quiet_exporter(), torch.no_grad():
                torch.onnx.export(model, (x,), buf, dynamo=False, dynamic_axes=axes, do_constant_folding=True, **names)
        except Exception as exc2:
            raise PrunekitError(
                f"ONNX export failed: dynamo exporter: {_first_line(exc)}; TorchScript exporter: {_first_line(exc2)}",
                "try another --opset, or report the model",
            ) from exc2
        proto = onnx.load_model_from_string(buf.getvalue())
        exporter = f"torch.onnx TorchScript (torch {torch.__version__})"
    got = model_opset(proto)
    if got != opset:
        notes.append(f"requested opset {opset}, the exporter produced opset {got}")
    return proto, exporter, notes


def model_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model imports."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return -1


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool, str | None]:
    """Simplify with onnxslim (constant folding, dead-node removal, fusions); keep the original on failure."""
    try:
        import onnxslim

        with _quiet_exporter():
            slim = onnxslim.slim(model)
        if not isinstance(slim, onnx.ModelProto):
            return model, False, "onnxslim returned no model"
        return slim, True, None
    except Exception as exc:  # a simplifier failure must not lose a valid export
        return model, False, f"onnxslim failed ({_first_line(exc)}); kept the unsimplified graph"


def finalize(model: onnx.ModelProto, metadata: dict[str, str]) -> bytes:
    """Attach metadata, run the full ONNX checker, and serialise."""
    del model.metadata_props[:]
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    if model.ByteSize() > MAX_PROTO_BYTES:
        raise PrunekitError("the exported model is larger than 2 GB, which a single ONNX file cannot hold")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise PrunekitError(f"the exported ONNX model fails onnx.checker: {_first_line(exc)}") from exc
    return model.SerializeToString()


# ------------------------------------------------------------------------------ parity
def parity_images(run: LoadedRun, n: int = PARITY_IMAGES) -> tuple[torch.Tensor, str]:
    """The first `n` validation images of the run's data (fixed order), or random images if absent."""
    from prunekit.data import load_data

    s = run.settings
    size = int(s["input_size"])
    try:
        data = load_data(str(s["data"]), size, int(s["num_classes"]))
        xs = []
        for x, _ in data.loader("val", batch_size=min(n, 256), shuffle=False):
            xs.append(x)
            if sum(len(b) for b in xs) >= n:
                break
        images = torch.cat(xs)[:n]
        return images, f"validation split of {s['data']} (first {len(images)} images)"
    except PrunekitError as exc:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(n, 3, size, size, generator=g)
        return images, f"random images in [0, 1]: validation data unavailable ({exc.message})"


def check_parity(model: nn.Module, onnx_bytes: bytes, images: torch.Tensor) -> Parity:
    """Compare ONNX Runtime logits with PyTorch logits on `images`."""
    with torch.no_grad():
        ref = model.eval().cpu()(images).float().numpy()
    got = OrtClassifier(onnx_bytes, threads=1).run(images.numpy())
    if got.shape != ref.shape:
        raise PrunekitError(f"exported model returns shape {list(got.shape)}, PyTorch {list(ref.shape)}")
    diff = float(np.abs(got - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    tol = PARITY_ATOL + PARITY_RTOL * scale
    top_ref, top_got = ref.argmax(1), got.argmax(1)
    agree = top_ref == top_got
    srt = np.sort(ref, axis=1)
    margin = srt[:, -1] - srt[:, -2] if ref.shape[1] > 1 else np.full(len(ref), np.inf)
    ties = int(np.sum(~agree & (margin <= tol)))
    agreement = float(agree.mean()) if len(agree) else 1.0
    # Near-ties (top-2 margin within the numeric tolerance) may flip either way in float32.
    effective = float((agree | (margin <= tol)).mean()) if len(agree) else 1.0
    passed = bool(np.isfinite(diff) and diff <= tol and effective >= MIN_TOP1_AGREEMENT)
    return Parity(len(images), scale, diff, tol, agreement, ties, passed)


# ------------------------------------------------------------------------------ the export stage
def export_onnx(
    run_path: str | Path,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    target: str | None = None,
    batch_size: int | None = None,
    n_parity: int = PARITY_IMAGES,
    engine_options: dict[str, Any] | None = None,
) -> ExportResult:
    """Write RUN/dense.onnx and RUN/pruned.onnx (+ export.json, report.json["export"], build_engine.sh).

    `target` (default: the run's --target) sets the static batch size (the profile's) and the
    precision of the trtexec command in build_engine.sh; `engine_options` (fp16, int8, workspace_mb,
    dla_core, max_batch, timing_cache) override the script's defaults. A parity failure is a PrunekitError and
    leaves the run folder as it was.
    """
    import onnxruntime
    import onnxslim

    from prunekit.deploy.tensorrt_build import EngineOptions, write_build_script

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise PrunekitError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    run = load_run(run_path)
    profile = _profile(target or run.settings.get("target"))
    batch = int(batch_size or (profile.batch_size if profile is not None else 1))
    if batch < 1:
        raise PrunekitError(f"batch size must be >= 1, got {batch}")
    EngineOptions.for_target(profile, dynamic_batch=dynamic_batch, batch=batch, **(engine_options or {}))
    size = int(run.settings["input_size"])
    shape = (batch, 3, size, size)
    images, inputs_desc = parity_images(run, n_parity)

    exported: dict[str, tuple[bytes, ModelExport]] = {}
    for which, model in (("dense", run.dense), ("pruned", run.pruned)):
        proto, exporter, notes = export_model(model, shape, opset, dynamic_batch)
        proto, simplified, note = simplify(proto)
        if note:
            notes.append(note)
        data = finalize(proto, {
            "prunekit.model": str(run.settings["model"]),
            "prunekit.variant": which,
            "prunekit.input": "float32 NCHW RGB in [0, 1]",
            "prunekit.num_classes": str(run.settings["num_classes"]),
        })
        parity = check_parity(model, data, images)
        if parity.logit_scale < PARITY_ATOL:
            notes.append(f"logits are near zero (max {parity.logit_scale:.2g}): an untrained model; "
                         "the parity check says little about it")
        if not parity.passed:
            raise PrunekitError(
                f"{which} model: ONNX Runtime disagrees with PyTorch (max |diff| {parity.max_abs_diff:.3g}, "
                f"tolerance {parity.tolerance:.3g}; top-1 agreement {parity.top1_agreement:.3f}, "
                f"need {MIN_TOP1_AGREEMENT}); nothing was written",
                "try another --opset, or report the model",
            )
        in_shape: list[int | str] = ["batch" if dynamic_batch else batch, 3, size, size]
        exported[which] = (data, ModelExport(
            file=f"{which}.onnx", exporter=exporter, opset=model_opset(proto), simplified=simplified,
            nodes=len(proto.graph.node), bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
            input_shape=in_shape, parity=parity, notes=notes,
        ))

    folder = run.folder
    with atomic_path(folder.file("dense.onnx")) as a, atomic_path(folder.file("pruned.onnx")) as b:
        a.write_bytes(exported["dense"][0])
        b.write_bytes(exported["pruned"][0])
    options = EngineOptions.for_target(profile, dynamic_batch=dynamic_batch, batch=batch, **(engine_options or {}))
    script = write_build_script(folder.path, options, input_chw=(3, size, size))
    result = ExportResult(
        run=str(folder.path), opset=opset, dynamic_batch=dynamic_batch, batch_size=batch,
        input_shape=list(shape), parity_inputs=inputs_desc,
        models={k: v[1] for k, v in exported.items()}, build_script=script.name,
        target=profile.name if profile is not None else None,
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxslim": onnxslim.__version__,
                  "onnxruntime": onnxruntime.__version__},
    )
    record = result.to_dict()
    write_json(folder.file("export.json"), record)
    report = read_json(folder.report_json, "report")
    report["export"] = {k: v for k, v in record.items() if k != "format"}
    write_json(folder.report_json, report)
    return result


def _profile(name: str | None) -> Any:
    if not name:
        return None
    from prunekit.latency.profile import load_profile

    return load_profile(str(name))
