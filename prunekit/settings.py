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
    finetune_optimizer: Literal["sgd", "sam", "asam"] | None = None
    rho: float | None = None
    sam_every: int = 1
    # scheduled pruning (halp, adasap)
    prune_steps: int = 4
    prune_every: int = 30
    # adasap
    warmup_epochs: int = 1
    rho_min: float = 0.01
    rho_max: float = 0.5  # paper: 2.0 (ASAM); measured to wreck small models here, see README
    # csam
    mask_epochs: int = 1
    mask_lr: float = 0.05
    csam_mu: float = 0.5
    csam_eta: float = 1.0
    csam_tau: float = 30.0
    lambda_stab: float = 5.0
    lambda_ratio: float = 1.0
    lambda_consist: float = 1.0
    # s2ap
    score_epochs: int = 1
    score_lr: float = 0.1
    s2ap_rho: float = 0.05
    pgd_eps: float = 8 / 255
    pgd_train_steps: int = 3

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

    @field_validator("rho", "rho_min", "rho_max", "s2ap_rho", "lambda_stab", "lambda_ratio", "lambda_consist",
                     "csam_eta", "pgd_eps")
    @classmethod
    def _non_negative(cls, v: float | None) -> float | None:
        if v is not None and not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"must be a finite number >= 0, got {v}")
        return v

    @field_validator("mask_lr", "score_lr")
    @classmethod
    def _lr(cls, v: float) -> float:
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"must be a positive finite number, got {v}")
        return v

    @field_validator("csam_mu")
    @classmethod
    def _mu(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"must be in [0, 1] (masks live in [0, 1]), got {v}")
        return v

    @field_validator("csam_tau")
    @classmethod
    def _tau(cls, v: float) -> float:
        if not 0.0 <= v < 100.0:
            raise ValueError(f"must be a percentile in [0, 100), got {v}")
        return v

    @field_validator("pretrain_epochs", "epochs", "warmup_epochs", "mask_epochs", "score_epochs", "prune_every")
    @classmethod
    def _epochs(cls, v: int) -> int:
        if not 0 <= v <= 10_000:
            raise ValueError(f"must be between 0 and 10000, got {v}")
        return v

    @field_validator("batch_size", "round_to", "sam_every", "prune_steps", "pgd_train_steps")
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
        if self.rho_min > self.rho_max:
            raise ValueError(f"--rho-min ({self.rho_min}) must not exceed --rho-max ({self.rho_max})")
        if self.pgd_eps > 1.0:
            raise ValueError(f"--pgd-eps is in [0, 1] pixel units, got {self.pgd_eps}")
        return self

    @property
    def finetune(self) -> tuple[str, float]:
        """(optimizer, rho) for fine-tuning: the flags, else the method's default (ASAM rho 0.5 for
        AdaSAP, SGD otherwise; the paper's ASAM rho 2.0 is available with --rho 2.0)."""
        opt = self.finetune_optimizer or ("asam" if self.method == "adasap" else "sgd")
        rho = self.rho if self.rho is not None else (0.5 if opt == "asam" else 0.05)
        return opt, rho

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
for _name in ("prune_steps", "prune_every", "warmup_epochs", "rho_min", "rho_max", "mask_epochs", "mask_lr",
              "csam_mu", "csam_eta", "csam_tau", "lambda_stab", "lambda_ratio", "lambda_consist", "score_epochs",
              "score_lr", "s2ap_rho", "pgd_eps", "pgd_train_steps"):
    _FLAG[_name] = "--" + _name.replace("_", "-")


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
