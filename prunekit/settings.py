"""Validated settings of a `compress` run (the `settings` object in report.json).

Validation happens before any data is read or any training starts, and every failure is a
PrunekitError that names the offending option.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from prunekit.errors import PrunekitError

METHODS = ("magnitude", "taylor", "halp", "adasap", "csam", "s2ap")
FINETUNE_OPTIMIZERS = ("sgd", "sam", "asam")


class CompressSettings(BaseModel):
    """Everything that determines a compress run's result."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = "resnet18"
    data: str = "digits"
    num_classes: int | None = None
    input_size: int | None = None
    weights: str | None = None
    method: Literal["magnitude", "taylor", "halp", "adasap", "csam", "s2ap"] = "magnitude"
    prune_ratio: float | None = None
    ratio_of: Literal["channels", "macs"] = "channels"
    round_to: int = 8
    target: str | None = None
    latency_budget: float | None = None
    latency_ms: float | None = None
    pretrain_epochs: int = 3
    epochs: int = 3
    lr: float = 0.05
    batch_size: int = 64
    seed: int = 0
    finetune_optimizer: Literal["sgd", "sam", "asam"] = "sgd"
    rho: float = 0.05
    sam_every: int = 1
    method_options: dict[str, Any] = {}

    @field_validator("prune_ratio")
    @classmethod
    def _ratio(cls, v: float | None) -> float | None:
        if v is not None and not (0.0 < v < 1.0):
            raise ValueError(f"must be in (0, 1) (the fraction removed), got {v}")
        return v

    @field_validator("latency_budget")
    @classmethod
    def _budget(cls, v: float | None) -> float | None:
        if v is not None and not (0.0 < v <= 1.0):
            raise ValueError(f"must be in (0, 1] (a fraction of the dense model's latency), got {v}")
        return v

    @field_validator("latency_ms", "lr")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ValueError(f"must be a positive finite number, got {v}")
        return v

    @field_validator("rho")
    @classmethod
    def _rho(cls, v: float) -> float:
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"must be >= 0, got {v}")
        return v

    @field_validator("pretrain_epochs", "epochs")
    @classmethod
    def _epochs(cls, v: int) -> int:
        if not 0 <= v <= 10_000:
            raise ValueError(f"must be between 0 and 10000, got {v}")
        return v

    @field_validator("batch_size", "round_to", "sam_every")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        if not 1 <= v <= 1_000_000:
            raise ValueError(f"must be >= 1, got {v}")
        return v

    @field_validator("num_classes")
    @classmethod
    def _classes(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 1_000_000:
            raise ValueError(f"must be >= 1, got {v}")
        return v

    @field_validator("input_size")
    @classmethod
    def _size(cls, v: int | None) -> int | None:
        if v is not None and not 8 <= v <= 1024:
            raise ValueError(f"must be between 8 and 1024, got {v}")
        return v

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        if not 0 <= v < 2**31:
            raise ValueError(f"must be between 0 and 2^31-1, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CompressSettings:
        if self.latency_budget is not None and self.latency_ms is not None:
            raise ValueError("give either --latency-budget or --latency-ms, not both")
        has_latency_goal = self.latency_budget is not None or self.latency_ms is not None
        if has_latency_goal and self.target is None:
            raise ValueError("a latency budget needs --target (the device profile to measure it on)")
        if has_latency_goal and self.prune_ratio is not None:
            raise ValueError("give either a latency budget or --prune-ratio, not both")
        if self.method == "halp" and self.target is None:
            raise ValueError("method 'halp' prunes to a latency budget and needs --target and --latency-budget")
        if self.method == "halp" and not has_latency_goal:
            raise ValueError("method 'halp' needs --latency-budget or --latency-ms")
        return self

    @property
    def goal_is_latency(self) -> bool:
        return self.latency_budget is not None or self.latency_ms is not None

    @property
    def effective_prune_ratio(self) -> float:
        return 0.5 if self.prune_ratio is None else self.prune_ratio


_FLAG = {
    "num_classes": "--num-classes",
    "input_size": "--input-size",
    "prune_ratio": "--prune-ratio",
    "ratio_of": "--ratio-of",
    "round_to": "--round-to",
    "latency_budget": "--latency-budget",
    "latency_ms": "--latency-ms",
    "pretrain_epochs": "--pretrain-epochs",
    "batch_size": "--batch-size",
    "finetune_optimizer": "--finetune-optimizer",
    "sam_every": "--sam-every",
}


def make_settings(**kwargs: Any) -> CompressSettings:
    """Build CompressSettings, turning pydantic's report into one line naming the CLI flag."""
    try:
        return CompressSettings(**kwargs)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        field = loc[0] if loc else ""
        flag = _FLAG.get(field, f"--{field.replace('_', '-')}") if field else "options"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        raise PrunekitError(f"{flag}: {msg}" if field else msg) from None
