"""`prunekit targets`: list the device profiles prunekit can predict latency for."""

from __future__ import annotations

import typer
from rich.table import Table

from prunekit.cli.app import app, emit_json, handle_errors, ui


@app.command("targets")
@handle_errors
def targets_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """List shipped and user device profiles: runtime, precision, provenance and coverage.

    User profiles live in $PRUNEKIT_PROFILE_DIR (default ~/.config/prunekit/profiles) and
    shadow shipped ones of the same name. Make a new one with `prunekit profile`.
    """
    from prunekit.latency.profile import list_profiles, shipped_dir, user_dir

    rows = list_profiles()
    if json_out:
        emit_json(
            {
                "targets": [r.model_dump() for r in rows],
                "user_dir": str(user_dir()),
                "shipped_dir": str(shipped_dir()),
            }
        )
        return
    table = Table(title="prunekit targets")
    for col in ("name", "runtime", "precision", "batch", "threads", "provenance", "coverage", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if r.error:
            table.add_row(r.name, "", "", "", "", "[red]unreadable[/]", r.error, r.source)
            continue
        name = r.name + (f" ({', '.join(r.aliases)})" if r.aliases else "")
        prov = r.provenance + (f": {r.device_model}" if r.device_model else "")
        cov = f"{r.signatures} layer signatures; models: {', '.join(r.models) or '-'}"
        table.add_row(
            name, r.runtime, r.precision, str(r.batch_size), str(r.threads or "-"), prov, cov, r.source
        )
    console = ui(json_out)
    console.print(table)
    console.print(f"user profiles: {user_dir()}   shipped: {shipped_dir()}")
