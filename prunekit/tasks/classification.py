"""Classification: prunekit's original task (models.py builders, data.py specs, top-1 accuracy)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.data import SPEC_HELP, DataBundle, load_data
from prunekit.models import build_model
from prunekit.tasks.registry import Task, register_task
from prunekit.train import evaluate


@register_task
class Classification(Task):
    name = "classification"
    help = "image classifiers: torchvision / timm / factory models, accuracy"
    default_model = "resnet18"
    default_data = "digits"
    metric = "accuracy"
    data_help = SPEC_HELP
    # Bare `prunekit compress` shows the product's point: half the latency, measured on this CPU.
    main_job = {"target": "local", "latency_budget": 0.5, "verify": True}

    def build_model(self, name: str, num_classes: int) -> nn.Module:
        return build_model(name, num_classes)

    def load_data(self, spec: str, input_size: int | None, num_classes: int | None) -> DataBundle:
        return load_data(spec, input_size, num_classes)

    def evaluate(self, model: nn.Module, data: DataBundle, device: torch.device) -> dict[str, Any]:
        acc = evaluate(model, data.loader("val", 256, shuffle=False), device)
        return {"accuracy": round(acc, 6)}
