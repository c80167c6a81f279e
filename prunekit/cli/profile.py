"""`prunekit profile`: placeholder (being written; this file will be replaced)."""

from __future__ import annotations

import typer

from prunekit.cli.app import app, handle_errors
from prunekit.errors import PrunekitError


@app.command()
@handle_errors
def profile(json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
    """Not available in this build yet."""
    raise PrunekitError("prunekit profile is not available in this build yet")
