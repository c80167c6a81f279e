"""Build the model to compress: torchvision names, `timm:` names, or `package.module:factory`.

Weights are loaded only from tensors (`safetensors` or `torch.load(weights_only=True)`), never by
unpickling code.
"""

from __future__ import annotations

import importlib
import inspect
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from prunekit.errors import MissingDependencyError, PrunekitError


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model's dense architecture: everything a saved run needs, no pickled code."""

    name: str
    num_classes: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "num_classes": self.num_classes}


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's classification model builders."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_model(name: str, num_classes: int = 1000) -> nn.Module:
    """Build an untrained model by name.

    `name` is a torchvision classification model (`resnet18`), `timm:<name>` when timm is
    installed, or `package.module:factory` (a callable taking `num_classes=`).
    """
    if num_classes < 1:
        raise PrunekitError(f"--num-classes must be >= 1, got {num_classes}")
    if name.startswith("timm:"):
        return _build_timm(name[5:], num_classes)
    if ":" in name:
        return _build_factory(name, num_classes)
    if name not in torchvision_classifiers():
        close = [m for m in torchvision_classifiers() if name.lower()[:4] in m][:8]
        raise PrunekitError(
            f"unknown model '{name}'",
            "use a torchvision classification model name"
            + (f" such as {', '.join(close)}" if close else " (e.g. resnet18, mobilenet_v2)")
            + ", timm:<name>, or package.module:factory",
        )
    builder = torchvision.models.get_model_builder(name)
    kwargs: dict[str, object] = {"weights": None, "num_classes": num_classes}
    params = inspect.signature(builder).parameters
    if "aux_logits" in params or name in ("googlenet", "inception_v3"):
        # Auxiliary heads return tuples in training mode; a deployable classifier has one output.
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    model = builder(**kwargs)
    return model


def _build_timm(name: str, num_classes: int) -> nn.Module:
    try:
        import timm
    except ImportError as exc:
        raise MissingDependencyError(
            f"model 'timm:{name}' needs timm, which is not installed", "pip install 'prunekit[timm]'"
        ) from exc
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    except RuntimeError as exc:
        raise PrunekitError(f"timm does not know model '{name}'", "see timm.list_models()") from exc


def _build_factory(spec: str, num_classes: int) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PrunekitError(
            f"cannot import '{module_name}' for model '{spec}': {exc}",
            "make sure the module is on PYTHONPATH",
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise PrunekitError(f"'{spec}' is not a callable model factory", "use package.module:function")
    try:
        model = factory(num_classes=num_classes)
    except Exception as exc:  # user code: any failure is reported, not traced back
        raise PrunekitError(
            f"model factory '{spec}' failed: {type(exc).__name__}: {str(exc)[:160]}",
            "the factory must accept num_classes= and return an nn.Module",
        ) from exc
    if not isinstance(model, nn.Module):
        raise PrunekitError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or a torch file, refusing anything that needs unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise PrunekitError(f"weights file not found: {path}", "check the --weights path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise PrunekitError(
                f"corrupt safetensors file {path}: {exc}", "re-export or re-download the weights"
            ) from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for bad files
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL " in text:
            raise PrunekitError(
                f"refusing to load {path}: it contains pickled Python objects, which could run code",
                "save only tensors: torch.save(model.state_dict(), path) or safetensors",
            ) from exc
        raise PrunekitError(
            f"cannot read weights file {path}: corrupt, truncated or not a PyTorch file",
            "check the file, or re-save it with torch.save(model.state_dict(), path)",
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PrunekitError(
            f"{path} does not hold a state dict of tensors", "save it with torch.save(model.state_dict(), path)"
        )
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model`, naming the first missing, unexpected or mis-shaped key on failure."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key '{missing[0]}' (+{len(missing) - 1} more)")
        if unexpected:
            parts.append(f"unexpected key '{unexpected[0]}' (+{len(unexpected) - 1} more)")
        raise PrunekitError(
            f"{source} does not match the model: {'; '.join(parts)}",
            "check --model and --num-classes match the checkpoint",
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise PrunekitError(
                f"{source} does not match the model: '{key}' has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(value.shape)}",
                "check --model and --num-classes match the checkpoint",
            )
    # A tensors-only file carries no module versions; modules that check theirs when loading
    # (torchvision's MNASNet) get the ones of the architecture being loaded into.
    tensors = OrderedDict(state)
    tensors._metadata = getattr(own, "_metadata", OrderedDict())  # type: ignore[attr-defined]
    model.load_state_dict(tensors, strict=True)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a weights file into `model` safely and strictly."""
    load_state_dict_strict(model, read_state_dict(path), f"weights file {path}")


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
