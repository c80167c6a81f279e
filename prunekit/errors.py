"""User-facing errors: one line, a fix, exit code 2 at the CLI."""

from __future__ import annotations


class PrunekitError(Exception):
    """An error caused by the user's input or environment, reported without a traceback.

    `hint` says how to fix it; the CLI prints ``error: <message> (<hint>)`` and exits 2.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class MissingDependencyError(PrunekitError):
    """An optional package (TensorRT, timm, ...) or hardware (a GPU) is not available."""
