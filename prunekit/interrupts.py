"""Ctrl-C that cannot be lost.

Python raises KeyboardInterrupt wherever the main thread happens to be; if that is a finalizer
(`__del__`, a weakref callback) the exception is printed and swallowed, and a long run would go
on. The CLI installs `on_sigint`, which also records the request; the training loop calls
`raise_if_requested()` between steps, so the run stops at the next step at the latest.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def on_sigint(_signum: int, _frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT through `on_sigint` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is threading.main_thread():
        _requested.clear()
        signal.signal(signal.SIGINT, on_sigint)


def raise_if_requested() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed and the first raise got lost."""
    if _requested.is_set():
        raise KeyboardInterrupt
