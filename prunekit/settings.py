"""Validated settings of a `compress` run (the `settings` object in report.json).

Validation happens before any data is read or any training starts, and every failure is a
PrunekitError that names the offending option. The settings common to every run are fields of
`CompressSettings`; a method's own options live in `method_options`, validated by that method's
options model (prunekit.methods), so this module knows no method by name.

Run folders written before method options moved there hold every method's options as flat keys
(`prune_steps`, `rho_max`, `csam_tau`, ...): `upgrade_settings_dict` reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from prunekit.errors import PrunekitError
from prunekit.methods import METHODS, get_method, options_error

# SAM/ASAM radius when neither --rho nor the method gives one (ASAM radii are relative to |w|).
DEFAULT_RHO = {"sgd": 0.05, "sam": 0.05, "asam": 0.5}
# Method options that were flat keys of the settings before they moved to `method_options`.
LEGACY_METHOD_KEYS = (
    "prune_steps", "prune_every", "warmup_epochs", "rho_min", "rho_max", "mask_epochs", "mask_lr", "csam_mu",
    "csam_eta", "csam_tau", "lambda_stab", "lambda_ratio", "lambda_consist", "score_epochs", "score_lr",
    "s2ap_rho", "pgd_eps", "pgd_train_steps",
)


TRAIN_KEYS = ("pretrain_epochs", "epochs", "batch_size")  # a task may default them (Task.train_defaults)


class CompressSettings(BaseModel):
    """Everything that determines a compress run's result."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # --task (None: the task owning --model's name, else classification); --model / --data left
    # out take the task's defaults (prunekit.tasks)
    task: str | None = None
    model: str = "resnet18"
    data: str = "digits"
    num_classes: int | None = None
    input_size: int | None = None
    weights: str | None = None
    method: str = "magnitude"
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
    # measured in the loop (prunekit.select.verify): time the selected candidate, correct, select again
    verify: bool = False
    verify_tries: int = 4
    measure_cmd: str | None = None
    measure_timeout: float = 600.0
    # end-to-end calibration of the model's predictions on sampled pruned copies (prunekit.latency.subnets)
    subnets: int = 6
    # the method's own options, validated by its options model (defaults filled in)
    method_options: dict[str, Any] = Field(default_factory=dict)
    _options: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        from prunekit.tasks import TASKS, resolve_task

        task = values.get("task")
        if task is not None and task not in TASKS:
            raise ValueError(f"--task: unknown task {str(task)[:40]!r}; choose one of {', '.join(TASKS)}")
        owner = resolve_task(task, values.get("model"))
        values = dict(values)
        for key, default in (("model", owner.default_model), ("data", owner.default_data)):
            if values.get(key) is None:
                values[key] = default
        for key in TRAIN_KEYS:  # left out (None): the task's own, else the field's default
            if values.get(key) is None:
                if key in owner.train_defaults:
                    values[key] = owner.train_defaults[key]
                else:
                    values.pop(key, None)
        return values

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown method {v[:60]!r}; choose one of {', '.join(METHODS)}")
        return v

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
    def _non_negative(cls, v: float | None) -> float | None:
        if v is not None and not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"must be a finite number >= 0, got {v}")
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
        if self.goal_is_latency and self.target is None:
            raise ValueError("a latency budget needs --target (the device profile to measure it on)")
        if self.goal_is_latency and self.prune_ratio is not None:
            raise ValueError("give either a latency budget or --prune-ratio, not both")
        if (self.verify or self.measure_cmd) and self.latency_budget is None:
            raise ValueError("--verify / --measure-cmd check a --latency-budget (a ratio measured against the "
                             "dense model) on --target")
        if not 1 <= self.verify_tries <= 20:
            raise ValueError(f"--verify-tries must be between 1 and 20, got {self.verify_tries}")
        if not 0 <= self.subnets <= 64:
            raise ValueError(f"--subnets must be between 0 and 64, got {self.subnets}")
        if not (self.measure_timeout > 0 and math.isfinite(self.measure_timeout)):
            raise ValueError(f"--measure-timeout must be a positive number of seconds, got {self.measure_timeout}")
        if self.measure_cmd is not None and "{onnx}" not in self.measure_cmd and "{onnx_name}" not in self.measure_cmd:
            raise ValueError("--measure-cmd must contain {onnx} (or {onnx_name}): where the candidate file goes")
        method = get_method(self.method)
        try:
            options = method.Options.model_validate(self.method_options)
        except ValidationError as exc:
            raise ValueError(options_error(exc, method.name)) from None
        if method.needs_latency_goal and not (self.goal_is_latency and self.target is not None):
            raise ValueError(
                f"method '{method.name}' prunes to a latency goal and needs --target and "
                "--latency-budget (or --latency-ms)"
            )
        method.check(options, self)
        from prunekit.tasks import resolve_task

        resolve_task(self.task, self.model).check_method(method.name)
        self.method_options = options.model_dump()
        self._options = options
        return self

    @property
    def options(self) -> Any:
        """The method's validated options (an instance of its options model)."""
        return self._options

    @property
    def finetune(self) -> tuple[str, float]:
        """(optimizer, rho) for fine-tuning: the flags, else the method's defaults, else SGD
        (rho: 0.5 for ASAM, 0.05 otherwise; the AdaSAP paper's ASAM rho 2.0 is --rho 2.0)."""
        default_opt, default_rho = get_method(self.method).finetune_defaults(self.options)
        opt = self.finetune_optimizer or default_opt
        if self.rho is not None:
            rho = self.rho
        elif opt == default_opt and default_rho is not None:
            rho = default_rho
        else:
            rho = DEFAULT_RHO[opt]
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


def _method_keys() -> set[str]:
    """Keys that are some method's option (never a common setting's name)."""
    keys = set(LEGACY_METHOD_KEYS)
    for method in METHODS.values():
        keys.update(method.Options.model_fields)
    return keys - set(CompressSettings.model_fields)


def split_flat_options(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(common settings, method options) from one flat mapping (the pre-`method_options` form).

    Keys of the chosen method's options go to its options; options of other methods are
    dropped (they never affected a run of this method); anything else stays common (and is
    refused by validation if it is unknown).
    """
    common = {k: v for k, v in values.items() if k != "method_options"}
    method = common.get("method", CompressSettings.model_fields["method"].default)
    own = set(METHODS[method].Options.model_fields) if method in METHODS else set()
    options = dict(values.get("method_options") or {})
    for key in _method_keys() & set(common):
        value = common.pop(key)
        if key in own and key not in options:
            options[key] = value
    return common, options


def make_settings(**kwargs: Any) -> CompressSettings:
    """Build CompressSettings, turning pydantic's report into one line naming the CLI flag.

    Method options go in `method_options={...}`; given as flat keyword arguments (the older
    form, e.g. `make_settings(method="adasap", rho_max=2.0)`) they are accepted too, and those of
    other methods are ignored.
    """
    common, options = split_flat_options(kwargs)
    try:
        return CompressSettings(**common, method_options=options)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        field = loc[0] if loc else ""
        flag = _FLAG.get(field, f"--{field.replace('_', '-')}") if field else "options"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        raise PrunekitError(f"{flag}: {msg}" if field else msg) from None


GOAL_FLAGS = ("prune_ratio", "latency_budget", "latency_ms", "target")


def main_job_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fill what the command line left out (None): with no goal flag at all, the task's main job
    (classification: `--target local --latency-budget 0.5 --verify`); `--method` halp for a
    latency goal, magnitude otherwise; `--verify` off unless the main job turns it on."""
    from prunekit.tasks import resolve_task

    out = {**dict.fromkeys(GOAL_FLAGS), **values}
    if all(out[k] is None for k in GOAL_FLAGS):
        main = resolve_task(out.get("task"), out.get("model")).main_job
        out.update({k: v for k, v in main.items() if out.get(k) is None})
    if out.get("method") is None:
        out["method"] = "halp" if out.get("latency_budget") is not None or out.get("latency_ms") is not None \
            else "magnitude"
    if out.get("verify") is None:
        out["verify"] = False
    return out


_ADDED_LATER = ("verify", "verify_tries", "measure_cmd", "measure_timeout", "task", "subnets")


def upgrade_settings_dict(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored settings dict (run.json / report.json) in the current form: flat method keys of
    older runs moved into `method_options`, other methods' keys dropped. Unvalidated: keys a run
    folder added (num_classes, input_size resolved) are kept as they are."""
    # Settings added later (measured in the loop) take their defaults in older run folders.
    later = {k: f.default for k, f in CompressSettings.model_fields.items() if k in _ADDED_LATER}
    stored = {**later, **stored}
    if "method_options" in stored and not (_method_keys() & set(stored)):
        return dict(stored)
    common, options = split_flat_options(stored)
    method = METHODS.get(str(common.get("method", "magnitude")))
    if method is not None:
        try:  # with the defaults filled in, as a new run stores them
            options = method.Options.model_validate(options).model_dump()
        except ValidationError:
            pass  # left as stored: validation of the settings names the bad key
    return {**common, "method_options": options}


def settings_from_dict(stored: Mapping[str, Any]) -> CompressSettings:
    """Validated settings from a stored dict, old flat form included."""
    return make_settings(**upgrade_settings_dict(stored))
