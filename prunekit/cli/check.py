"""`prunekit check`: placeholder until the export/check capability lands (issue 5)."""

from __future__ import annotations

from pathlib import Path

import typer

from prunekit.cli.app import app, handle_errors
from prunekit.errors import PrunekitError


@app.command()
@handle_errors
def check(
    run: Path = typer.Argument(..., help="Run folder written by prunekit compress."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Not available in this build yet: ONNX/TensorRT export and the on-target check (issue 5)."""
    raise PrunekitError("prunekit check is not available in this build yet", "see the README's roadmap")
