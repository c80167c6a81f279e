"""The run folder: where `compress` writes, and what `export`, `check` and `eval` read.

Layout (see export/README.md): run.json (status + settings), checkpoints/, dense.safetensors,
plan.json, pruned.safetensors, report.json; later dense.onnx / pruned.onnx / check.json.
Every file is written atomically; a run is *finished* when run.json says so and report.json exists.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from prunekit.atomic import atomic_path, write_json
from prunekit.errors import PrunekitError

RUN_FORMAT = "prunekit-run/1"
DEFAULT_ROOT = Path("export")


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, turning any damage into a one-line error."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PrunekitError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PrunekitError(f"{what} {path} is unreadable or not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise PrunekitError(f"{what} {path} must hold a JSON object")
    return obj


@dataclass
class RunFolder:
    """Paths and status of one run folder."""

    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def report_json(self) -> Path:
        return self.path / "report.json"

    @property
    def plan_json(self) -> Path:
        return self.path / "plan.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.run_json.exists()

    def state(self) -> dict[str, Any]:
        return read_json(self.run_json, "run state") if self.run_json.exists() else {}

    def is_finished(self) -> bool:
        return self.state().get("status") == "finished" and self.report_json.exists()

    def stages_done(self) -> list[str]:
        return list(self.state().get("stages_done", []))

    def check_settings(
        self, settings: dict[str, Any], upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> None:
        """Refuse to continue (or reuse) the run in this folder with other settings than its own.

        `upgrade` brings the saved settings to the current form first (older run folders)."""
        saved = self.state().get("settings", {})
        if not isinstance(saved, dict):
            raise PrunekitError(f"{self.run_json} has no usable settings", "use --force to start over")
        if upgrade is not None:
            saved = upgrade(saved)
        # How candidates are timed (--measure-cmd, its timeout) may be fixed before resuming.
        free = ("resume", "force", "json", "measure_cmd", "measure_timeout")
        diff = [k for k in settings if k not in free and saved.get(k) != settings[k]]
        if diff:
            raise PrunekitError(
                f"cannot resume {self.path}: setting '{diff[0]}' differs from the run in it "
                f"({saved.get(diff[0])!r} vs {settings[diff[0]]!r})",
                "rerun with the same options, or use --force to start over",
            )

    def open(
        self,
        settings: dict[str, Any],
        *,
        resume: bool,
        force: bool,
        upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> bool:
        """Prepare the folder for a run with `settings`. Returns True when resuming.

        Refuses to overwrite a finished run without `force` (compress returns a finished run's
        report on `resume` before getting here), and to silently restart an unfinished one
        without `resume` or `force`.
        """
        if self.path.exists() and not self.path.is_dir():
            raise PrunekitError(f"output path {self.path} exists and is not a folder", "choose another --out")
        if self.exists() or (self.path.exists() and any(self.path.iterdir())):
            if force:
                shutil.rmtree(self.path)
            elif resume and self.exists() and not self.is_finished():
                self.check_settings(settings, upgrade)
                self.remove_stale_temporaries()
                return True
            elif self.is_finished():
                raise PrunekitError(
                    f"{self.path} already holds a finished run",
                    "use --resume to get its report, --force to overwrite it or --out for a new folder",
                )
            elif self.exists():
                raise PrunekitError(
                    f"{self.path} holds an unfinished run", "use --resume to continue it or --force to start over"
                )
            else:
                raise PrunekitError(f"{self.path} is not empty and is not a prunekit run", "choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(
            self.run_json, {"format": RUN_FORMAT, "status": "running", "stages_done": [], "settings": settings}
        )
        return False

    def remove_stale_temporaries(self) -> None:
        """Delete the temporary files a killed run left (never a finished artifact: those were renamed)."""
        for tmp in self.path.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def mark(self, stage: str) -> None:
        state = self.state()
        done = list(state.get("stages_done", []))
        if stage not in done:
            done.append(stage)
        state["stages_done"] = done
        write_json(self.run_json, state)

    def finish(self, report: dict[str, Any]) -> None:
        write_json(self.report_json, report)
        state = self.state()
        state["status"] = "finished"
        write_json(self.run_json, state)


def save_weights(model: nn.Module, path: Path) -> None:
    """Atomically write a model's state dict as safetensors (no pickled code), readable like the
    JSON files (0666 minus the umask: atomic_path)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


@dataclass
class LoadedRun:
    """A finished run rebuilt from its folder: the dense and pruned models and the report."""

    folder: RunFolder
    settings: dict[str, Any]
    report: dict[str, Any]
    dense: nn.Module
    pruned: nn.Module
    plan: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        s = int(self.settings["input_size"])
        return (1, 3, s, s)


def load_run(path: str | Path) -> LoadedRun:
    """Rebuild both models of a finished run: base architecture + plan + safetensors weights."""
    from prunekit.models import load_weights
    from prunekit.pruning import apply_plan
    from prunekit.tasks import resolve_task

    folder = RunFolder(Path(path))
    if not folder.path.is_dir():
        raise PrunekitError(f"run folder not found: {folder.path}", "pass the folder prunekit compress wrote")
    if not folder.exists():
        raise PrunekitError(f"{folder.path} is not a prunekit run folder (no run.json)")
    if not folder.is_finished():
        raise PrunekitError(
            f"run {folder.path} is not finished", "resume it with prunekit compress ... --resume --out " + str(folder.path)
        )
    state = folder.state()
    settings = state.get("settings")
    if not isinstance(settings, dict) or "model" not in settings or "input_size" not in settings:
        raise PrunekitError(f"{folder.run_json} has no usable settings", "re-run prunekit compress")
    report = read_json(folder.report_json, "report")
    plan = read_json(folder.plan_json, "pruning plan")
    num_classes = int(settings["num_classes"])
    size = int(settings["input_size"])
    example = torch.zeros(1, 3, size, size)
    build_model = resolve_task(settings.get("task"), str(settings["model"])).build_model
    dense = build_model(str(settings["model"]), num_classes)
    load_weights(dense, folder.file("dense.safetensors"))
    pruned = apply_plan(build_model(str(settings["model"]), num_classes), plan, example, str(settings["model"]))
    load_weights(pruned, folder.file("pruned.safetensors"))
    return LoadedRun(folder, settings, report, dense.eval(), pruned.eval(), plan)
