"""Tasks as plug-ins: what a model predicts, the data it learns from, and how it is scored.

    classification.py   torchvision / timm / factory classifiers, accuracy (the default)
    detection/          torchvision single-stage detectors, shapes / COCO / VOC, mAP

A task owns its model builders, its `--data` specs, its objective (the loss the shared training
loop minimises, carried by the DataBundle) and its metrics. `compress`, `runs.load_run`, `eval`
and the settings look the task up here (`resolve_task`) and never name one; `--task` chooses it,
else the task that owns the model's name does (a torchvision detector -> detection).
"""

from prunekit.tasks.registry import TASKS, Task, get_task, register_task, resolve_task

# The built-in tasks register themselves on import.
from prunekit.tasks import classification, detection  # noqa: E402, F401, I001  isort: skip

__all__ = ["TASKS", "Task", "get_task", "register_task", "resolve_task"]
