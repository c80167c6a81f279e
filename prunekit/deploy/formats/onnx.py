"""Export format `onnx`: RUN/dense.onnx and RUN/pruned.onnx, verified against PyTorch.

    load run -> to_onnx(exporter="release"): dynamo -> onnxslim -> onnx.checker
             -> ONNX Runtime vs PyTorch on real validation images (parity) -> write both files
             -> RUN/build_engine.sh (the trtexec commands for the device)

Both models are exported so that `check` can always time them side by side. Nothing is written
until both exports pass the checker and the parity test; then the files are renamed into place.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from prunekit.deploy.base import ExportFormat, register_format
from prunekit.deploy.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, to_onnx
from prunekit.deploy.parity import (
    MIN_TOP1_AGREEMENT,
    PARITY_ATOL,
    PARITY_IMAGES,
    PARITY_RTOL,
    Parity,
    check_parity,
    parity_images,
)
from prunekit.errors import PrunekitError

RECORD_FORMAT = "prunekit-export/1"  # the ONNX record's own layout (inside export.json's "exports")


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
class OnnxExportResult:
    """What `export_onnx` wrote (RUN/export.json holds the same under "onnx")."""

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
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)  # further files (a detector's NMS file)

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, **asdict(self)}

    def rich(self) -> Any:
        """A table of both files (size, nodes, parity) and the notes."""
        from rich.console import Group
        from rich.table import Table

        batch = "dynamic batch" if self.dynamic_batch else f"static batch {self.batch_size}"
        t = Table(title=f"ONNX export of {self.run} (opset {self.opset}, {batch})")
        for col in ("model", "size", "nodes", "max |onnx - torch|", "tolerance", "top-1 agreement"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for m in self.models.values():
            t.add_row(m.file, f"{m.bytes / 1e6:.2f} MB", str(m.nodes), f"{m.parity.max_abs_diff:.2e}",
                      f"{m.parity.tolerance:.1e}", f"{100 * m.parity.top1_agreement:.1f} %")
        lines: list[Any] = [t, f"parity inputs: {self.parity_inputs}"]
        for name, m in self.models.items():
            lines += [f"[yellow]note ({name}):[/] {note}" for note in m.notes]
        for file, rec in self.extras.items():
            lines.append(f"{file}: " + ", ".join(f"{k} {v}" for k, v in rec.items() if k in
                                                 ("agreement", "detections_compared", "max_box_diff_px", "outputs")))
        lines.append(f"exporter: {self.models['pruned'].exporter}; TensorRT build script: "
                     f"{Path(self.run) / self.build_script}")
        return Group(*lines)


def export_onnx(
    run_path: str | Path,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool | None = False,
    target: str | None = None,
    batch_size: int | None = None,
    n_parity: int = PARITY_IMAGES,
    **engine_options: Any,
) -> OnnxExportResult:
    """Write RUN/dense.onnx and RUN/pruned.onnx (+ RUN/build_engine.sh); return what was written.

    `target` (default: the run's --target) sets the static batch size (the profile's) and the
    precision of the trtexec command in build_engine.sh; `engine_options` (fp16, int8, workspace_mb,
    dla_core, max_batch, timing_cache) override the script's defaults. A parity failure is a
    PrunekitError and leaves the run folder as it was. Use `prunekit.deploy.export(run, "onnx")`
    to also record the export in RUN/export.json.
    """
    import onnx
    import onnxruntime
    import onnxslim

    from prunekit.atomic import atomic_path
    from prunekit.deploy.trtexec import write_build_script
    from prunekit.runs import load_run
    from prunekit.runtimes.tensorrt import EngineOptions

    dynamic = bool(dynamic_batch)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise PrunekitError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    run = load_run(run_path)
    profile = target_profile(target or run.settings.get("target"))
    batch = int(batch_size or (profile.batch_size if profile is not None else 1))
    if batch < 1:
        raise PrunekitError(f"batch size must be >= 1, got {batch}")
    options = EngineOptions.for_target(profile, dynamic_batch=dynamic, batch=batch, **_engine_flags(engine_options))
    size = int(run.settings["input_size"])
    shape = (batch, 3, size, size)
    images, inputs_desc = parity_images(run, n_parity)
    from prunekit.tasks import resolve_task

    task = resolve_task(run.settings.get("task"), str(run.settings["model"]))

    exported: dict[str, tuple[bytes, ModelExport]] = {}
    for which, model in (("dense", run.dense), ("pruned", run.pruned)):
        meta = {
            "prunekit.model": str(run.settings["model"]),
            "prunekit.variant": which,
            "prunekit.input": "float32 NCHW RGB in [0, 1]",
            "prunekit.num_classes": str(run.settings["num_classes"]),
        }
        out = to_onnx(model.cpu(), shape, exporter="release", opset=opset, dynamic_batch=dynamic, metadata=meta)
        notes = list(out.notes)
        own = task.check_parity(model, out.data, images, PARITY_ATOL, PARITY_RTOL)  # a detector's boxes / scores
        parity = Parity(**own) if own is not None else check_parity(model, out.data, images)
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
        in_shape: list[int | str] = ["batch" if dynamic else batch, 3, size, size]
        exported[which] = (out.data, ModelExport(
            file=f"{which}.onnx", exporter=out.exporter, opset=out.opset, simplified=out.simplified,
            nodes=out.nodes, bytes=len(out.data), sha256=hashlib.sha256(out.data).hexdigest(),
            input_shape=in_shape, parity=parity, notes=notes,
        ))

    extras: dict[str, tuple[bytes, dict]] = {}
    if batch == 1 and not dynamic:  # e.g. a detector's network + box decoding + NMS in one file
        extras = task.export_extras(run.pruned, exported["pruned"][0], images)
    folder = run.folder
    with atomic_path(folder.file("dense.onnx")) as a, atomic_path(folder.file("pruned.onnx")) as b:
        a.write_bytes(exported["dense"][0])
        b.write_bytes(exported["pruned"][0])
    for file, (data, _) in extras.items():
        with atomic_path(folder.file(file)) as x:
            x.write_bytes(data)
    for_engine = tuple(Path(f).stem for f, (_, rec) in extras.items() if rec.get("engine"))
    script = write_build_script(folder.path, options, input_chw=(3, size, size), models=("pruned", "dense", *for_engine))
    return OnnxExportResult(
        run=str(folder.path), opset=opset, dynamic_batch=dynamic, batch_size=batch,
        input_shape=list(shape), parity_inputs=inputs_desc,
        models={k: v[1] for k, v in exported.items()}, build_script=script.name,
        target=profile.name if profile is not None else None,
        versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxslim": onnxslim.__version__,
                  "onnxruntime": onnxruntime.__version__},
        extras={f: {"file": f, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest(), **rec}
                for f, (d, rec) in extras.items()},
    )


ENGINE_FLAGS = ("fp16", "int8", "workspace_mb", "dla_core", "max_batch", "timing_cache")


def _engine_flags(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(ENGINE_FLAGS))
    if unknown:
        raise PrunekitError(f"unknown export option(s): {', '.join(unknown)}")
    return {k: v for k, v in options.items() if not (k == "int8" and v is None)}


def target_profile(name: str | None) -> Any:
    """The target's profile, or None when no target is named."""
    if not name:
        return None
    from prunekit.latency.store import load_profile

    return load_profile(str(name))


@register_format
class OnnxFormat(ExportFormat):
    name = "onnx"
    summary = ("RUN/dense.onnx + RUN/pruned.onnx (torch dynamo exporter, onnxslim, onnx.checker), checked "
               "against PyTorch on validation images, and RUN/build_engine.sh")
    status = "exporting and verifying dense and pruned models"

    def export(self, run_path: Path, **options: Any) -> OnnxExportResult:
        return export_onnx(run_path, **options)
