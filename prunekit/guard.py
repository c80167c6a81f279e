"""Bounded resources for graph building and pruning: a wall-clock and a memory ceiling.

Tracing a model into torch-pruning's dependency graph can run away on architectures it does not
understand (Swin grew to 23.8 GB before the kernel killed it). `guarded(what, model_name)` runs
a block under a watchdog thread that samples the process's resident memory and the elapsed time;
past either limit it raises `ResourceLimitExceeded` in the guarded thread, which leaves the block
as a one-line `PrunekitError` naming the model and what to do.

Limits come from, in order: `use_limits(...)` around the call (a context variable, so threads and
nested calls see their own), the environment (`PRUNEKIT_MAX_GRAPH_SECONDS`,
`PRUNEKIT_MAX_MEMORY_GB`), then the defaults: 300 s, and 75 % of physical memory, never more than
what was resident at the start plus 90 % of the memory then available (so one prunekit process
cannot push a shared machine into the OOM killer).

The exception is delivered between Python bytecodes (`PyThreadState_SetAsyncExc`): a single long
C call (one huge convolution) finishes first. It derives from BaseException so that the
`except Exception` of library code inside the block cannot swallow it.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prunekit.errors import PrunekitError

ENV_SECONDS = "PRUNEKIT_MAX_GRAPH_SECONDS"
ENV_MEMORY = "PRUNEKIT_MAX_MEMORY_GB"
DEFAULT_SECONDS = 300.0
DEFAULT_MEMORY_FRACTION = 0.75
AVAILABLE_FRACTION = 0.9
SAMPLE_SECONDS = 0.05
GB = 1024**3


class ResourceLimitExceeded(BaseException):
    """Raised asynchronously in the guarded thread by the watchdog (never seen outside `guarded`)."""


@dataclass(frozen=True)
class ResourceLimits:
    """Wall-clock seconds and resident-memory GB a guarded block may use (None: the default)."""

    max_seconds: float | None = None
    max_memory_gb: float | None = None

    def __post_init__(self) -> None:
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise PrunekitError(f"max graph seconds must be > 0, got {self.max_seconds}")
        if self.max_memory_gb is not None and not self.max_memory_gb > 0:
            raise PrunekitError(f"max memory must be > 0 GB, got {self.max_memory_gb}")

    @classmethod
    def from_env(cls) -> ResourceLimits:
        """Limits from PRUNEKIT_MAX_GRAPH_SECONDS / PRUNEKIT_MAX_MEMORY_GB (unset: defaults)."""
        return cls(_env_float(ENV_SECONDS), _env_float(ENV_MEMORY))

    def seconds(self) -> float:
        return float(self.max_seconds) if self.max_seconds is not None else DEFAULT_SECONDS

    def memory_bytes(self) -> int:
        """The resident-memory ceiling in bytes, resolved against this machine now."""
        if self.max_memory_gb is not None:
            return int(self.max_memory_gb * GB)
        total = _meminfo("MemTotal")
        ceiling = int(total * DEFAULT_MEMORY_FRACTION) if total else 16 * GB
        available = _meminfo("MemAvailable")
        if available:
            ceiling = min(ceiling, rss_bytes() + int(available * AVAILABLE_FRACTION))
        return ceiling


_scoped: contextvars.ContextVar[ResourceLimits | None] = contextvars.ContextVar("prunekit_limits", default=None)


@contextlib.contextmanager
def use_limits(limits: ResourceLimits) -> Iterator[None]:
    """Run the block with `limits` for every guarded call inside it (e.g. from CLI options)."""
    token = _scoped.set(limits)
    try:
        yield
    finally:
        _scoped.reset(token)


def current_limits() -> ResourceLimits:
    """The limits a guarded call made now would use: scoped, else the environment, else defaults."""
    scoped = _scoped.get()
    if scoped is None:
        return ResourceLimits.from_env()
    env = ResourceLimits.from_env()
    return ResourceLimits(
        scoped.max_seconds if scoped.max_seconds is not None else env.max_seconds,
        scoped.max_memory_gb if scoped.max_memory_gb is not None else env.max_memory_gb,
    )


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise PrunekitError(f"{name}={raw!r} is not a number", f"set {name} to a positive number") from exc
    if not value > 0:
        raise PrunekitError(f"{name}={raw!r} must be > 0", f"set {name} to a positive number")
    return value


def _meminfo(key: str) -> int:
    """A /proc/meminfo field in bytes (0 where there is no /proc)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class _Watchdog(threading.Thread):
    def __init__(self, target_thread: int, seconds: float, memory: int) -> None:
        super().__init__(name="prunekit-guard", daemon=True)
        self.target_thread, self.seconds, self.memory = target_thread, seconds, memory
        self.started_at = time.monotonic()
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.fired: str | None = None  # "time" | "memory"
        self.peak = rss_bytes()
        self.elapsed = 0.0

    def run(self) -> None:
        while not self.stop_event.wait(SAMPLE_SECONDS):
            rss = rss_bytes()
            self.peak = max(self.peak, rss)
            self.elapsed = time.monotonic() - self.started_at
            reason = "time" if self.elapsed > self.seconds else "memory" if rss > self.memory else None
            if reason is None:
                continue
            with self.lock:
                if self.stop_event.is_set():
                    return
                self.fired = reason
                _raise_in(self.target_thread, ResourceLimitExceeded)
            return

    def stop(self) -> None:
        with self.lock:
            self.stop_event.set()
            if self.fired is not None:
                _raise_in(self.target_thread, None)  # cancel a delivery still pending
        self.join()


@contextlib.contextmanager
def guarded(what: str, model_name: str, limits: ResourceLimits | None = None) -> Iterator[None]:
    """Run the block under the wall-clock and memory ceilings; past one, a one-line PrunekitError.

    `what` says what the block does ("building the dependency graph"), for the message.
    """
    limits = limits or current_limits()
    seconds, memory = limits.seconds(), limits.memory_bytes()
    dog = _Watchdog(threading.get_ident(), seconds, memory)
    dog.start()
    exceeded = False
    try:
        try:
            yield
        finally:
            try:
                dog.stop()
            except ResourceLimitExceeded:
                exceeded = True
    except ResourceLimitExceeded:
        exceeded = True
    if exceeded or dog.fired is not None:
        raise _limit_error(what, model_name, dog, seconds, memory)


def _limit_error(what: str, model_name: str, dog: _Watchdog, seconds: float, memory: int) -> PrunekitError:
    if dog.fired == "time":
        return PrunekitError(
            f"{what} for model '{model_name}' passed the {seconds:g} s limit",
            f"raise it with {ENV_SECONDS}=<seconds>, use a smaller --input-size, or report the model",
        )
    return PrunekitError(
        f"{what} for model '{model_name}' passed the memory ceiling of {memory / GB:.1f} GB "
        f"({dog.peak / GB:.1f} GB resident after {dog.elapsed:.0f} s)",
        f"raise it with {ENV_MEMORY}=<GB> if the machine has the memory, use a smaller --input-size, "
        "or report the model",
    )
