"""Export format `engine`: TensorRT engines built from the run's ONNX files.

Builds RUN/<name>.engine plus RUN/<name>.engine.json (TensorRT version, GPU, precision, shapes:
an engine only runs on the GPU model and TensorRT version that built it) with prunekit's one
TensorRT builder (`prunekit.runtimes.tensorrt.build_serialized_engine`), sharing a timing cache
(RUN/timing.cache) between builds. It always (re)writes RUN/build_engine.sh for the same options
first, so that where TensorRT or a GPU is missing the user can still build on the device with
trtexec. INT8 on a plain ONNX is calibrated on the run's TRAINING images (validation stays an
honest test).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.atomic import write_bytes, write_json
from prunekit.deploy.base import ExportFormat, export, register_format
from prunekit.deploy.formats.onnx import target_profile
from prunekit.errors import MissingDependencyError, PrunekitError
from prunekit.runtimes.tensorrt import EngineOptions, build_serialized_engine, require_tensorrt

INT8_HELP = (
    "INT8 with TensorRT 10: implicit calibration is deprecated since TensorRT 10.1; the recommended "
    "path is explicit quantization, an ONNX with Q/DQ nodes (e.g. from NVIDIA ModelOpt), which is "
    "built as is. For a plain ONNX, prunekit calibrates with IInt8EntropyCalibrator2 on training "
    "images while the installed TensorRT still provides it (and writes <name>.calib, which "
    "build_engine.sh passes to trtexec --calib); otherwise it stops with an error."
)


@dataclass
class EngineResult:
    """What the engine export wrote."""

    engines: dict[str, str]
    sidecars: dict[str, str]
    build_script: str
    timing_cache: str
    info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rich(self) -> Any:
        from rich.console import Group

        lines = [f"{name}: {path} (TensorRT {self.info[name]['tensorrt']}, {self.info[name]['gpu']}, "
                 f"{self.info[name]['precision']}, input {self.info[name]['input']['opt']})"
                 for name, path in self.engines.items()]
        lines.append(f"timing cache: {self.timing_cache}; trtexec equivalent: {self.build_script}")
        return Group(*lines)


def calibration_batches(settings: dict[str, Any], batch: int, n_images: int) -> list[np.ndarray]:
    """Calibration images from the run's TRAINING split (validation stays an honest test)."""
    from prunekit.data import load_data

    data = load_data(str(settings["data"]), int(settings["input_size"]), int(settings["num_classes"]))
    out: list[np.ndarray] = []
    for x, _ in data.loader("train", batch_size=batch, shuffle=True, seed=0):
        if len(x) < batch:
            break
        out.append(x.numpy().astype(np.float32))
        if len(out) * batch >= n_images:
            break
    if not out:
        raise PrunekitError(f"no calibration images: the training split of {settings['data']} has fewer than {batch}")
    return out


def build_one(trt: Any, onnx_path: Path, engine_path: Path, options: EngineOptions, cache_path: Path,
              calib: tuple[dict[str, Any], int] | None = None) -> dict[str, Any]:
    """Build one engine from `onnx_path` and write it with its JSON sidecar and the timing cache."""
    calibration = None
    if calib is not None:
        settings, n_images = calib

        def calibration(batch: int) -> list[np.ndarray]:
            return calibration_batches(settings, batch, n_images)

    built = build_serialized_engine(
        trt, onnx_path, options,
        timing_cache=cache_path.read_bytes() if cache_path.is_file() else b"",
        calibration=calibration, calibration_cache=engine_path.with_suffix(".calib"), label=str(onnx_path),
    )
    write_bytes(engine_path, built.serialized)
    write_bytes(cache_path, built.timing_cache)
    info = {"engine": engine_path.name, "onnx": onnx_path.name, **built.info, "timing_cache": cache_path.name}
    write_json(engine_path.with_name(engine_path.name + ".json"), info)
    return info


def build_engine(
    run_path: str | Path,
    target: str | None = None,
    *,
    fp16: bool | None = None,
    int8: bool = False,
    workspace_mb: int | None = None,
    dla_core: int | None = None,
    timing_cache: str | None = None,
    max_batch: int | None = None,
    models: tuple[str, ...] = ("pruned", "dense"),
    calibration_images: int = 512,
    opset: int | None = None,
    dynamic_batch: bool | None = None,
) -> EngineResult:
    """Build RUN/<model>.engine (+ .engine.json) for each model with TensorRT, from RUN/<model>.onnx.

    Exports the ONNX files first (through `prunekit.deploy.export`) when the run has none, or when
    `dynamic_batch` is given and the existing files have the other kind of batch axis.
    """
    from prunekit.deploy.ort_model import input_hw, load_checked_onnx, static_batch
    from prunekit.deploy.trtexec import write_build_script
    from prunekit.runs import RunFolder, load_run

    folder = RunFolder(Path(run_path))
    run = load_run(folder.path)  # validates the folder (exists, finished)
    onnx_kw: dict[str, Any] = {"target": target}
    if opset is not None:
        onnx_kw["opset"] = opset
    if not all(folder.file(f"{m}.onnx").exists() for m in models):
        export(folder.path, "onnx", dynamic_batch=bool(dynamic_batch), **onnx_kw)
    protos = {m: load_checked_onnx(folder.file(f"{m}.onnx")) for m in models}
    if dynamic_batch is not None and any((static_batch(p) is None) != dynamic_batch for p in protos.values()):
        export(folder.path, "onnx", dynamic_batch=dynamic_batch, **onnx_kw)
        protos = {m: load_checked_onnx(folder.file(f"{m}.onnx")) for m in models}
    first = protos[models[0]]
    batch = static_batch(first)
    hw = input_hw(first) or (int(run.settings["input_size"]),) * 2
    profile = target_profile(target or run.settings.get("target"))
    opt_batch = batch or (profile.batch_size if profile is not None else 1)
    options = EngineOptions.for_target(
        profile, dynamic_batch=batch is None, batch=opt_batch, fp16=fp16, int8=int8, workspace_mb=workspace_mb,
        dla_core=dla_core, max_batch=max_batch, timing_cache=timing_cache,
    )
    extras = engine_extras(folder.path) if batch == 1 and "pruned" in models else ()
    script = write_build_script(folder.path, options, (3, *hw), (*models, *extras))
    try:
        trt = require_tensorrt()
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"{exc.message}; wrote {script} with the equivalent trtexec commands",
            "copy the run folder to the target device and run build_engine.sh there (engines are not portable)",
        ) from None
    cache_path = folder.file(options.timing_cache) if not Path(options.timing_cache).is_absolute() \
        else Path(options.timing_cache)
    engines, sidecars, info = {}, {}, {}
    for m in (*models, *extras):  # extras: e.g. a detector's network + decoding + TensorRT's NMS plugin
        engine_path = folder.file(f"{m}.engine")
        info[m] = build_one(trt, folder.file(f"{m}.onnx"), engine_path, options, cache_path,
                            calib=(run.settings, calibration_images))
        engines[m] = str(engine_path)
        sidecars[m] = str(engine_path) + ".json"
    return EngineResult(engines, sidecars, str(script), str(cache_path), info)


def engine_extras(run_dir: Path) -> tuple[str, ...]:
    """Names (without .onnx) of further ONNX files the ONNX export wrote for TensorRT (its record
    marks them `engine`: a detector's file ending in TensorRT's NMS plugin), present in the folder."""
    from prunekit.deploy.base import read_exports

    extras = read_exports(run_dir).get("onnx", {}).get("extras", {}) or {}
    return tuple(Path(f).stem for f, rec in extras.items()
                 if isinstance(rec, dict) and rec.get("engine") and (run_dir / f).is_file())


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The JSON sidecar of an engine (what built it), or {} if absent."""
    import json

    p = Path(str(engine_path) + ".json")
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


@register_format
class EngineFormat(ExportFormat):
    name = "engine"
    summary = "TensorRT engines RUN/<model>.engine built from the ONNX files (needs TensorRT and an NVIDIA GPU)"
    status = "building TensorRT engines"

    def export(self, run_path: Path, **options: Any) -> EngineResult:
        return build_engine(run_path, **options)
