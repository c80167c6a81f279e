"""The one rich progress bar of prunekit's long-running work (training, profiling, check)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from prunekit import distributed as dist_utils


def progress_bar(console: Console | None = None, disable: bool = False, transient: bool = False) -> Progress:
    """A progress bar on stderr (or `console`): description, bar, done/total, an `info` field, time.

    Tasks must be added with an `info=` field (may be empty). Only rank 0 of a distributed job
    draws it.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        disable=disable or not dist_utils.is_main(),
        transient=transient,
    )
