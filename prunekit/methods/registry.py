"""The method registry: one table of pruning methods, filled by `@register_method` (timm-style).

A method is one file that defines an options model and a `Method` subclass::

    class ToyOptions(MethodOptions):
        toy_strength: float = Field(1.0, ge=0, description="How hard the toy prunes.")

    @register_method
    class Toy(Method):
        name = "toy"
        help = "keeps the channels with the largest toy score"
        Options = ToyOptions

        def run(self, ctx, model, goal):
            graph = PruningGraph(model.cpu(), ctx.example, ctx.settings.model)
            keep, info = select(graph, my_scores(graph), goal)
            graph.prune(keep)
            return graph, MethodResult(self.name, steps=[info])

The CLI builds `--method` and one flag per options field from this table (field `toy_strength`
-> `--toy-strength`, its description -> the help text), the settings validate the options with
the model, and `report.json` records them under `settings.method_options`.

Plug-ins outside this package are imported by `load_plugins()` (the CLI calls it at start-up):
every module named in `PRUNEKIT_PLUGINS` (comma-separated) and every entry point of the group
`prunekit.methods`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.pruning import PruningGraph

PLUGIN_ENV = "PRUNEKIT_PLUGINS"
ENTRY_POINT_GROUP = "prunekit.methods"

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class MethodOptions(BaseModel):
    """Base of every method's options: unknown keys and NaN / inf are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())


class NoOptions(MethodOptions):
    """A method without options of its own."""


class MethodContext(Protocol):
    """What a method may use of the run (compress.RunContext implements it).

    settings: the run's CompressSettings (model, seed, batch_size, lr, ...); options: the
    method's validated options; data: the DataBundle; device; example: an input tensor on the
    CPU; folder: the RunFolder (checkpoints/); resume / quiet: flags of the run.
    """

    settings: Any
    data: Any
    device: torch.device
    example: torch.Tensor
    folder: Any
    resume: bool
    quiet: bool

    @property
    def options(self) -> Any: ...

    def train_config(self, epochs: int, optimizer: str = "sgd", lr: float | None = None) -> Any: ...

    def log(self, message: str) -> None: ...


@dataclass
class MethodResult:
    """What a method reports about itself (goes into report.json under `method`)."""

    name: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps, **self.details}


class Method:
    """A pruning method: what to score and when to prune. Subclass, set the class attributes,
    implement `run`, decorate with `@register_method`."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    Options: ClassVar[type[MethodOptions]] = NoOptions
    needs_latency_goal: ClassVar[bool] = False  # refuse to run without --target + a latency budget

    def finetune_defaults(self, options: Any) -> tuple[str, float | None]:
        """(optimizer, rho) used for fine-tuning when --finetune-optimizer / --rho are not given
        (rho None: the optimizer's own default)."""
        return "sgd", None

    def finetune_attack(self, options: Any, settings: Any) -> Attack | None:
        """An attack that makes fine-tuning adversarial (inputs replaced by attack(model, x, y)),
        or None for ordinary fine-tuning. `settings`: the run's CompressSettings (seed, ...)."""
        return None

    def check(self, options: Any, settings: Any) -> None:
        """Refuse combinations of options and run settings the method cannot honour
        (raise ValueError naming the flags); called when the settings are validated."""

    def run(self, ctx: MethodContext, model: nn.Module, goal: Any) -> tuple[PruningGraph, MethodResult]:
        """Select and physically remove channels of `model` (in place) for `goal`."""
        raise NotImplementedError


METHODS: dict[str, Method] = {}

M = TypeVar("M", bound=type[Method])


def register_method(cls: M) -> M:
    """Class decorator: add one instance of `cls` to `METHODS` under `cls.name`."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError("register_method decorates a subclass of prunekit.methods.Method")
    name = cls.name
    if not name or not name.replace("_", "").replace("-", "").isalnum() or name != name.lower():
        raise ValueError(f"method name {name!r} must be a lower-case identifier")
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, BaseModel)):
        raise TypeError(f"method {name!r}: Options must be a pydantic model (subclass MethodOptions)")
    existing = METHODS.get(name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise ValueError(f"method {name!r} is already registered by {type(existing).__module__}")
    METHODS[name] = cls()
    return cls


def list_methods() -> list[str]:
    """Registered method names, in registration order (built-ins first)."""
    return list(METHODS)


def get_method(name: str) -> Method:
    """The registered method `name`; a one-line error listing the choices otherwise."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise PrunekitError(
            f"--method: unknown method {str(name)[:60]!r}", f"choose one of {', '.join(METHODS)}"
        ) from None


def option_flag(field_name: str) -> str:
    """The CLI flag of an options field: `rho_max` -> `--rho-max`."""
    return "--" + field_name.replace("_", "-")


def options_error(exc: ValidationError, method: str) -> str:
    """One line naming the CLI flag for the first error of an options model's validation."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return msg
    if err.get("type") == "extra_forbidden":
        return f"{option_flag(loc[0])}: not an option of method '{method}'"
    return f"{option_flag(loc[0])}: {msg}"


def load_plugins(environ: dict[str, str] | None = None) -> list[str]:
    """Import the plug-in modules named in PRUNEKIT_PLUGINS and the `prunekit.methods` entry
    points, so their `@register_method` classes join the table. A plug-in that fails to import
    is reported on stderr and skipped (the rest of prunekit keeps working). Returns the loaded
    module / entry point names."""
    env = os.environ if environ is None else environ
    loaded: list[str] = []
    for module in [m.strip() for m in env.get(PLUGIN_ENV, "").split(",") if m.strip()]:
        try:
            importlib.import_module(module)
            loaded.append(module)
        except Exception as exc:  # a broken plug-in must not break the CLI
            _warn(f"plug-in {module!r} from {PLUGIN_ENV} not loaded: {type(exc).__name__}: {exc}")
    try:
        from importlib.metadata import entry_points

        eps = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001 - broken distribution metadata: no entry-point plug-ins
        eps = []
    for ep in eps:
        try:
            obj = ep.load()
            if isinstance(obj, type) and issubclass(obj, Method) and obj.name not in METHODS:
                register_method(obj)
            loaded.append(ep.name)
        except Exception as exc:
            _warn(f"plug-in entry point {ep.name!r} not loaded: {type(exc).__name__}: {exc}")
    return loaded


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message.splitlines()[0][:300]}\n")

