"""The export format table: one verb, a record per format in export.json, a new format is one class."""

from __future__ import annotations

import json

import pytest

from prunekit.deploy.base import (
    FORMATS,
    ExportFormat,
    export,
    get_format,
    list_formats,
    read_exports,
    register_format,
)
from prunekit.errors import PrunekitError


class ToyResult:
    def __init__(self, path):
        self.path = path

    def to_dict(self):
        return {"file": self.path.name}

    def rich(self):
        return f"wrote {self.path}"


class ToyFormat(ExportFormat):
    name = "toy"
    summary = "a text file naming the run"

    def export(self, run_path, **options):
        path = run_path / "model.toy"
        path.write_text(f"{run_path.name} {sorted(k for k, v in options.items() if v is not None)}\n")
        return ToyResult(path)


@pytest.fixture
def toy():
    register_format(ToyFormat)
    yield
    del FORMATS["toy"]


def test_builtin_formats_and_unknown():
    assert {"onnx", "engine"} <= set(list_formats())
    with pytest.raises(PrunekitError, match="unknown --format 'tflite'"):
        get_format("tflite")


def test_a_registered_format_runs_through_the_cli_and_is_recorded(cli, toy, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "export.json").write_text(json.dumps({"format": "prunekit-export/1", "opset": 18}))  # an old record
    result = cli(["export", str(run), "--format", "toy", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"file": "model.toy"}
    assert (run / "model.toy").read_text().startswith("run ")
    record = json.loads((run / "export.json").read_text())
    assert record["format"] == "prunekit-export/2"
    assert record["exports"]["toy"] == {"file": "model.toy"}
    assert record["exports"]["onnx"]["opset"] == 18  # the format-1 record is kept, as the ONNX export
    export(run, "toy")
    assert set(read_exports(run)) == {"onnx", "toy"}
    help_text = " ".join(cli(["export", "--help"]).stdout.split())
    assert "onnx:" in help_text and "engine:" in help_text  # --format help comes from the table
