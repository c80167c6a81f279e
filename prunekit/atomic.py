"""Atomic artifact writes: write to a temporary file in the same folder, fsync, rename.

A reader (or a killed run) therefore sees either the previous complete file or the new one,
never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prunekit.errors import PrunekitError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`.

    The caller writes the temporary file (with any library); on an exception it is removed and
    `path` is untouched.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts are ordinary files
    except OSError as exc:
        raise PrunekitError(
            f"cannot write to {target.parent}: {exc.strerror or exc}",
            "choose a writable output folder with --out",
        ) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        # again: a writer may have replaced the file (safetensors writes a new 0600 one)
        os.chmod(tmp, (0o666 | (os.stat(tmp).st_mode & 0o111)) & ~_umask())  # keep an executable bit set
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PrunekitError(
            f"writing {target} failed: {exc.strerror or exc}; the previous version is intact",
            "free disk space or choose another output folder",
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write `data` to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write `text` (UTF-8) to `path`."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write `obj` as indented JSON (NaN/inf are refused: JSON has none)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")
