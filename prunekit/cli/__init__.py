"""Command-line interface. Each command lives in its own module and registers on `app`."""

from __future__ import annotations

from prunekit.cli import check, compress, eval, export, measure, profile, targets  # noqa: F401  (registration)
from prunekit.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app()
