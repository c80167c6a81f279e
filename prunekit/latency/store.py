"""Profile files: where they live, reading them, listing them, and saving them safely.

Shipped profiles are in `profiles/` (a checkout) or `prunekit/_profiles` (a wheel); user profiles
in $PRUNEKIT_PROFILE_DIR (default ~/.config/prunekit/profiles) shadow them by name. Saving takes
a file lock, re-reads the file and merges what another writer added meanwhile, then writes
atomically: two `prunekit profile` processes extending one file keep both writers' entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from filelock import FileLock
from pydantic import ValidationError

import prunekit
from prunekit.atomic import write_text
from prunekit.errors import PrunekitError
from prunekit.latency.schema import SCHEMA_VERSION, Profile, ProfileSummary, TableEntry


def shipped_dir() -> Path:
    """Profiles shipped with prunekit: `prunekit/_profiles` in a wheel, `profiles/` in a checkout."""
    inside = Path(prunekit.__file__).parent / "_profiles"
    if inside.is_dir():
        return inside
    return Path(prunekit.__file__).resolve().parent.parent / "profiles"


def user_dir() -> Path:
    """User profiles: $PRUNEKIT_PROFILE_DIR, default ~/.config/prunekit/profiles."""
    env = os.environ.get("PRUNEKIT_PROFILE_DIR")
    return Path(env).expanduser() if env else Path("~/.config/prunekit/profiles").expanduser()


LOCAL = "local"  # ONNX Runtime on this machine's CPU, profiled lazily (prunekit.latency.local)
LOCAL_THREADS = 1


def local_key(threads: int = LOCAL_THREADS) -> str:
    """What identifies this machine's local profile: CPU model, ONNX Runtime version, threads."""
    import onnxruntime

    from prunekit.runtimes.machine import cpu_model

    cpu = cpu_model()
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:40] or "cpu"
    digest = hashlib.sha1(f"{cpu}|{onnxruntime.__version__}|{threads}".encode()).hexdigest()[:8]
    return f"{slug}-ort{onnxruntime.__version__}-t{threads}-{digest}"


def local_profile_path(threads: int = LOCAL_THREADS) -> Path:
    """This machine's `local` profile file (in the user profile folder)."""
    return user_dir() / f"{LOCAL}-{local_key(threads)}.json"


def _profile_files() -> list[tuple[str, Path]]:
    """(source, path) of every profile file; user files first so they shadow shipped ones."""
    out: list[tuple[str, Path]] = []
    for source, folder in (("user", user_dir()), ("shipped", shipped_dir())):
        if folder.is_dir():
            out.extend((source, p) for p in sorted(folder.glob("*.json")))
    return out


def _format_validation(exc: ValidationError, path: Path | str) -> PrunekitError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<top level>"
    more = f" (+{exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return PrunekitError(
        f"malformed profile {path}: field {loc!r}: {err.get('msg', 'invalid')}{more}",
        "fix or delete the file, or re-measure it with `prunekit profile`",
    )


def read_profile_file(path: Path) -> Profile:
    """Parse and validate one profile file; errors name the file and the bad field."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PrunekitError(f"profile file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise PrunekitError(
            f"malformed profile {path}: not valid JSON (line {exc.lineno}: {exc.msg})",
            "fix or delete the file",
        ) from None
    except UnicodeDecodeError:
        raise PrunekitError(f"malformed profile {path}: not UTF-8 text", "fix or delete the file") from None
    except OSError as exc:
        raise PrunekitError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    if not isinstance(raw, dict):
        raise PrunekitError(f"malformed profile {path}: the top level must be a JSON object")
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise PrunekitError(
            f"malformed profile {path}: field 'schema_version': {version} is not supported",
            f"this prunekit reads schema version {SCHEMA_VERSION}",
        )
    try:
        prof = Profile.model_validate(raw)
    except ValidationError as exc:
        raise _format_validation(exc, path) from None
    prof._source = Path(path)
    return prof


def find_profile_path(name: str) -> Path | None:
    """The file that defines target `name` (by name, alias or file stem), user dir first."""
    files = _profile_files()
    for _, p in files:
        if p.stem == name:
            return p
    for _, p in files:
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(raw, dict) and (raw.get("name") == name or name in (raw.get("aliases") or [])):
            return p
    return None


def known_targets() -> list[str]:
    """Names of every profile that can be found (user and shipped)."""
    names: list[str] = []
    for _, p in _profile_files():
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
            n = raw.get("name", p.stem) if isinstance(raw, dict) else p.stem
        except (OSError, json.JSONDecodeError):
            n = p.stem
        if n not in names:
            names.append(n)
    return names


def load_profile(name_or_path: str | os.PathLike[str]) -> Profile:
    """Load a profile by target name, alias, or file path.

    Looks in $PRUNEKIT_PROFILE_DIR (default ~/.config/prunekit/profiles), then in the profiles
    shipped with prunekit. Unknown names raise PrunekitError listing the known targets.
    """
    text = str(name_or_path)
    as_path = Path(text).expanduser()
    if text.endswith(".json") or os.sep in text or as_path.is_file():
        if not as_path.is_file():
            raise PrunekitError(
                f"profile file {as_path} does not exist",
                f"known targets: {', '.join(known_targets()) or 'none'}",
            )
        return read_profile_file(as_path)
    if text == LOCAL:
        path = local_profile_path()
        if not path.is_file():
            raise PrunekitError(
                "this machine has no local profile yet",
                "`prunekit compress --target local ...` measures it on first use "
                "(or `prunekit profile --target local --model <MODEL>`)",
            )
        return read_profile_file(path)
    path = find_profile_path(text)
    if path is None:
        known = ", ".join(known_targets()) or "none"
        raise PrunekitError(
            f"unknown target {text!r}; known targets: {known}",
            f"measure a new one with `prunekit profile --target {text} --runtime onnxruntime --model <MODEL>`",
        )
    return read_profile_file(path)


def list_profiles() -> list[ProfileSummary]:
    """A summary of every shipped and user profile (a broken file is listed with its error)."""
    out: list[ProfileSummary] = []
    seen: set[str] = set()
    for source, path in _profile_files():
        try:
            p = read_profile_file(path)
        except PrunekitError as exc:
            out.append(ProfileSummary(name=path.stem, source=source, path=str(path), error=exc.one_line()))
            continue
        shadowed = p.name in seen
        seen.add(p.name)
        out.append(
            ProfileSummary(
                name=p.name,
                aliases=p.aliases,
                runtime=p.runtime,
                precision=p.precision,
                batch_size=p.batch_size,
                threads=p.threads,
                provenance=p.provenance.kind,
                device_model=p.provenance.device_model,
                signatures=len(p.table),
                models=sorted(p.models),
                source=source + (" (shadowed by user profile)" if shadowed else ""),
                path=str(path),
            )
        )
    return out


# --------------------------------------------------------------------- saving
def merge_profiles(ours: Profile, theirs: Profile) -> Profile:
    """`ours` plus whatever `theirs` (e.g. another process's save) has that ours lacks."""
    merged = ours.model_copy(deep=True)
    for sig, entry in theirs.table.items():
        mine = merged.table.get(sig)
        if mine is None:
            merged.table[sig] = entry
            continue
        cells = entry.cells() | mine.cells()
        depthwise = mine.cout is None
        cand = _complete(cells, depthwise, mine.dtype)
        if cand is not None:
            merged.table[sig] = cand
    for key, rec in theirs.models.items():
        merged.models.setdefault(key, rec)
    for key, samples in theirs.constant.samples.items():
        if key not in merged.constant.samples:
            merged.constant.samples[key] = samples
    for key, cost in theirs.constant.ops.items():
        merged.constant.ops.setdefault(key, cost)
    merged._source = ours._source
    return merged


def _complete(cells: dict[tuple[int, int], float], depthwise: bool, dtype: str) -> TableEntry | None:
    """A table entry from `cells` if they form a full grid (else None)."""
    if depthwise:
        return TableEntry.from_cells(cells, True, dtype)
    cin = sorted({a for a, _ in cells})
    cout = sorted({b for _, b in cells})
    if len(cells) != len(cin) * len(cout):
        return None
    return TableEntry.from_cells(cells, False, dtype)


def save_profile(profile: Profile, path: str | os.PathLike[str]) -> Path:
    """Write `profile` to `path` atomically, merging entries another writer saved meanwhile.

    Two processes profiling different models into the same file both keep their entries:
    the write happens under a file lock, after re-reading and merging what is on disk.
    """
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(_lock_path(target)), timeout=120):
        merged = profile
        if target.is_file():
            try:
                on_disk = read_profile_file(target)
            except PrunekitError:
                on_disk = None
            if on_disk is not None:
                merged = merge_profiles(profile, on_disk)
        write_text(target, merged.to_json())
    merged._source = target
    return target


def _lock_path(target: Path) -> Path:
    """A lock file for `target` outside its folder (no stray files next to shipped profiles)."""
    import hashlib
    import tempfile

    folder = Path(tempfile.gettempdir()) / "prunekit-locks"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(target.resolve()).encode()).hexdigest()[:16]
    return folder / f"{target.name}.{digest}.lock"
