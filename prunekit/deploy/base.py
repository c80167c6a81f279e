"""The export format table and the one verb, `export(run, format, **options)`.

A format is one file in `prunekit/deploy/formats/` holding an `ExportFormat` subclass decorated
with `@register_format` (the Ultralytics exporter-table idea): `onnx` (RUN/dense.onnx +
RUN/pruned.onnx, parity-checked) and `engine` (TensorRT engines built from those ONNX files).
`export` runs one, then records what it wrote in RUN/export.json under the format's name. It
never rewrites report.json: that file is compress's.

Every format takes the same options, so the CLI passes them through without knowing formats:
`target`, `opset`, `dynamic_batch` (None: the format's default), and the TensorRT build options
`fp16`, `int8`, `workspace_mb`, `dla_core`, `max_batch`, `timing_cache` (the ONNX format writes
them into RUN/build_engine.sh).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path
from typing import Any, Protocol, TypeVar

from prunekit.atomic import write_json
from prunekit.errors import PrunekitError

EXPORT_FORMAT = "prunekit-export/2"
EXPORT_FORMAT_V1 = "prunekit-export/1"  # before 2: the ONNX export's record alone
EXPORT_JSON = "export.json"


class ExportResult(Protocol):
    """What a format's export returns: a JSON record and a rich rendering of it."""

    def to_dict(self) -> dict[str, Any]: ...

    def rich(self) -> Any: ...


class ExportFormat:
    """Base class of an export format (see the module doc for the options every format takes)."""

    name: str = ""
    summary: str = ""  # one line, for --help
    status: str = "exporting"  # what the CLI shows while it runs

    def export(self, run_path: Path, **options: Any) -> ExportResult:
        raise NotImplementedError


FORMATS: dict[str, ExportFormat] = {}
F = TypeVar("F", bound=type[ExportFormat])


def register_format(cls: F) -> F:
    """Class decorator: put one instance of an ExportFormat subclass in the table under `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    FORMATS[cls.name] = cls()
    return cls


_discovered = False


def _discover() -> None:
    """Import every module of prunekit.deploy.formats once (each registers its format)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module("prunekit.deploy.formats")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def get_format(name: str) -> ExportFormat:
    """The format registered as `name`; an unknown name is a one-line PrunekitError."""
    _discover()
    fmt = FORMATS.get(str(name))
    if fmt is None:
        raise PrunekitError(f"unknown --format {name!r}", f"use one of: {', '.join(sorted(FORMATS))}")
    return fmt


def list_formats() -> list[str]:
    """Names of every registered format."""
    _discover()
    return sorted(FORMATS)


def export(run: str | os.PathLike[str], format: str = "onnx", **options: Any) -> ExportResult:
    """Export a finished run in `format` and record it in RUN/export.json (the one export verb)."""
    fmt = get_format(format)
    result = fmt.export(Path(run), **options)
    record_export(Path(run), fmt.name, result.to_dict())
    return result


def read_exports(run: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """What RUN/export.json says was exported, per format ({} when nothing was; reads format 1)."""
    from prunekit.runs import read_json

    path = Path(run) / EXPORT_JSON
    if not path.is_file():
        return {}
    obj = read_json(path, "export record")
    if obj.get("format") == EXPORT_FORMAT_V1:
        return {"onnx": obj}
    exports = obj.get("exports")
    if obj.get("format") != EXPORT_FORMAT or not isinstance(exports, dict):
        raise PrunekitError(f"{path} is not a prunekit export record (format {obj.get('format')!r})",
                            "delete it and export again")
    return exports


def record_export(run: Path, name: str, record: dict[str, Any]) -> Path:
    """Put `record` in RUN/export.json under `name`, keeping the other formats' records."""
    try:
        exports = read_exports(run)
    except PrunekitError:
        exports = {}  # a damaged record is replaced by what was just written
    exports[name] = record
    path = run / EXPORT_JSON
    write_json(path, {"format": EXPORT_FORMAT, "exports": exports})
    return path
