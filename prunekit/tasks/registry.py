"""The task registry: one table of tasks, filled by `@register_task` (see prunekit.tasks)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from prunekit.data import DataBundle
from prunekit.errors import PrunekitError


class Task(ABC):
    """One task. Subclass, set the class attributes, implement the methods, `@register_task`."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    default_model: ClassVar[str] = ""
    default_data: ClassVar[str] = ""
    metric: ClassVar[str] = ""  # the headline metric key in report.json (accuracy, map)
    data_help: ClassVar[str] = ""
    # The goal of a compress that names none (no --prune-ratio / --latency-budget / --latency-ms /
    # --target): CompressSettings fields, e.g. a latency budget on this machine. Empty: ratio 0.5.
    main_job: ClassVar[dict[str, Any]] = {}
    # Training settings (pretrain_epochs, epochs, batch_size) where this task's differ from the
    # CompressSettings defaults; a value the user gives always wins.
    train_defaults: ClassVar[dict[str, Any]] = {}

    def owns_model(self, name: str) -> bool:
        """Whether a model name belongs to this task without --task (e.g. a torchvision detector)."""
        return False

    @abstractmethod
    def build_model(self, name: str, num_classes: int) -> nn.Module:
        """The untrained network pruning, latency and ONNX see."""

    @abstractmethod
    def load_data(self, spec: str, input_size: int | None, num_classes: int | None) -> DataBundle:
        """The `--data` spec as train / val sets (with the task's collate and objective)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, data: DataBundle, device: torch.device) -> dict[str, Any]:
        """Validation metrics of `model` (report.json `dense` / `pruned`)."""

    def check_parity(self, model: nn.Module, onnx_bytes: bytes, images: torch.Tensor, atol: float,
                     rtol: float) -> dict[str, Any] | None:
        """The task's own ONNX Runtime vs PyTorch comparison (the fields of a deploy.parity.Parity),
        or None for the classifier's (logits and top-1)."""
        return None

    def export_extras(self, model: nn.Module, onnx_bytes: bytes, images: torch.Tensor) -> dict[str, tuple[bytes, dict]]:
        """Further deployable files next to RUN/pruned.onnx, {file name: (bytes, record)} (e.g. a
        detector's network with its box decoding and NMS appended); none by default."""
        return {}

    def robustness(self, models: dict[str, Any], data: DataBundle, options: Any) -> dict[str, Any] | None:
        """The task's own robustness evaluation for `prunekit eval` (options: robustness EvalOptions),
        or None for the classifier's suite (accuracy, R_C, mCE, PGD, certification)."""
        return None

    def evaluate_exported(self, run: Any, data: DataBundle, dense_onnx: Any, pruned_onnx: Any, corruptions: Any,
                          severities: Any, seed: int, limit: int | None, threads: int) -> dict[str, Any] | None:
        """`check`'s accuracy of the exported files in the task's own metric (keys clean / corrupted /
        r_c per model, as the classifier's), or None for the classifier's."""
        return None

    def check_method(self, method: str) -> None:
        """Raise ValueError when a method cannot run on this task (say why); every method runs by default."""
        return None


TASKS: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: add one instance of `cls` to TASKS."""
    if not cls.name or cls.name in TASKS and type(TASKS[cls.name]).__qualname__ != cls.__qualname__:
        raise ValueError(f"task {cls.name!r} has no name or is already registered")
    TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> Task:
    """The registered task `name`; a one-line error listing the choices otherwise."""
    if name not in TASKS:
        raise PrunekitError(f"--task: unknown task {str(name)[:40]!r}", f"choose one of {', '.join(TASKS)}")
    return TASKS[name]


def resolve_task(task: str | None, model: str | None = None) -> Task:
    """`--task` if given, else the task owning `model`'s name, else classification."""
    if task:
        return get_task(task)
    if model:
        for t in TASKS.values():
            if t.owns_model(model):
                return t
    return TASKS["classification"]

