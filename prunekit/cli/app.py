"""The Typer application and the plumbing every command shares.

Commands are thin: parse options, call one library function, print a rich table or one JSON
object (`--json`). User errors (PrunekitError) become one line on stderr and exit code 2;
Ctrl-C becomes one line and exit code 130.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from prunekit.errors import PrunekitError

app = typer.Typer(
    name="prunekit",
    help=(
        "Compress trained PyTorch vision models for a named device: latency-budgeted, "
        "sharpness-aware structured pruning, ONNX/TensorRT export, and an on-target check "
        "that can gate CI."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Human output goes to stderr when --json is given, so stdout holds exactly one JSON object.
console = Console(stderr=False)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def ui(json_out: bool) -> Console:
    """The console for human-readable output: stderr in --json mode, stdout otherwise."""
    return err_console if json_out else console


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (the whole machine-readable result of a command)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def handle_errors(fn: F) -> F:
    """Turn PrunekitError into `error: ...` + exit 2 and Ctrl-C into exit 130, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from prunekit import interrupts

        interrupts.install()
        try:
            return fn(*args, **kwargs)
        except PrunekitError as exc:
            err_console.print(Text.assemble(("error: ", "bold red"), exc.one_line()), highlight=False, soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from None
        except OSError as exc:
            # File-system trouble the library did not anticipate (a name too long, a full disk...).
            name = str(exc.filename or "")
            name = name if len(name) <= 80 else name[:77] + "..."
            what = exc.strerror or type(exc).__name__
            err_console.print(Text.assemble(("error: ", "bold red"), what + (f": {name}" if name else "")),
                              highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            err_console.print(
                "[bold yellow]interrupted:[/] stopped; rerun the same command with --resume to continue",
                highlight=False,
            )
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]
