"""The one training/evaluation loop every stage shares (pretrain, warm-up, fine-tune, mask search).

- deterministic: the batch order and the RNG of epoch e depend only on (seed, e), so a run resumed
  from its epoch checkpoint ends with the same weights as an uninterrupted one;
- checkpoints written atomically after every epoch, loaded with `weights_only=True`;
- AMP on CUDA; DistributedDataParallel when launched by torchrun (only rank 0 writes);
- optimizers: SGD, or SAM / ASAM through `prunekit.optim.sam.SAM`, or whatever an optimizer
  factory builds (a method's own SAM variant); optional adversarial examples;
- a step hook lets a caller act between steps (scheduled pruning) on one continuous optimizer and
  LR schedule: it may hand back a new optimizer for changed parameters, and the LR schedule goes
  on where it was.

This module knows nothing about pruning methods.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from prunekit import distributed as dist_utils
from prunekit.atomic import atomic_path
from prunekit.data import DataBundle
from prunekit.errors import PrunekitError
from prunekit.interrupts import raise_if_requested
from prunekit.progress import progress_bar

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

OPTIMIZERS = ("sgd", "sam", "asam")


class Objective(Protocol):
    """What a model is trained to minimise on a data bundle's batches (`DataBundle.objective`).

    `loss(model, x, out, y)`: the loss of outputs `out = model(x)` for targets `y` (`model` is the
    bare module, also under DDP); `correct(out, y)`: how many samples are right, for the train
    accuracy in the log (None: the task has no such count, and the log has no accuracy)."""

    def to_device(self, y: Any, device: torch.device) -> Any: ...

    def count(self, y: Any) -> int: ...

    def loss(self, model: nn.Module, x: torch.Tensor, out: torch.Tensor, y: Any) -> torch.Tensor: ...

    def correct(self, out: torch.Tensor, y: Any) -> int | None: ...


class CrossEntropy:
    """The classifier's objective: cross-entropy of logits against class labels."""

    def to_device(self, y: torch.Tensor, device: torch.device) -> torch.Tensor:
        return y.to(device, non_blocking=True)

    def count(self, y: torch.Tensor) -> int:
        return len(y)

    def loss(self, model: nn.Module, x: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> int | None:
        return int((out.argmax(1) == y).sum())


CROSS_ENTROPY = CrossEntropy()


def objective_of(data: DataBundle) -> Objective:
    """The data's objective (a detection bundle's box losses), cross-entropy by default."""
    return getattr(data, "objective", None) or CROSS_ENTROPY


@dataclass
class TrainConfig:
    """Hyper-parameters of one training stage."""

    epochs: int
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    optimizer: str = "sgd"
    rho: float = 0.05
    sam_every: int = 1
    amp: bool = True
    seed: int = 0
    max_steps_per_epoch: int | None = None
    # Train exactly this many steps in total (as many epochs as that takes), instead of `epochs`.
    max_steps: int | None = None
    # Train in this process only, even under torchrun (used inside rank 0's pruning decisions).
    local: bool = False

    def validate(self) -> None:
        if self.epochs < 0:
            raise PrunekitError(f"epochs must be >= 0, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise PrunekitError(f"learning rate must be a positive number, got {self.lr}")
        if self.batch_size < 1:
            raise PrunekitError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise PrunekitError(f"unknown optimizer '{self.optimizer}'", f"use one of {', '.join(OPTIMIZERS)}")
        if not (self.rho >= 0 and math.isfinite(self.rho)):
            raise PrunekitError(f"--rho must be >= 0, got {self.rho}")
        if self.sam_every < 1:
            raise PrunekitError(f"--sam-every must be >= 1, got {self.sam_every}")
        if self.max_steps is not None and self.max_steps < 0:
            raise PrunekitError(f"max_steps must be >= 0, got {self.max_steps}")


@dataclass
class TrainLog:
    """What a stage did, epoch by epoch (goes into report.json)."""

    stage: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


OptimizerFactory = Callable[[nn.Module, TrainConfig], torch.optim.Optimizer]
# step_hook(steps_done, optimizer) runs after every optimizer step (gradients of that step are still
# in .grad for plain SGD). It may change the model (e.g. remove channels) and then returns the
# optimizer to go on with (built over the new parameters); None keeps the current one.
StepHook = Callable[[int, torch.optim.Optimizer], "torch.optim.Optimizer | None"]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD, or SAM/ASAM (one radius `cfg.rho`) wrapping SGD, for the trainable parameters of `model`
    (ASAM scales weights only, as its reference implementation)."""
    params = [p for p in model.parameters() if p.requires_grad]
    base = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return base
    from prunekit.optim.sam import SAM, weights_of

    return SAM(params, base, rho=cfg.rho, adaptive=cfg.optimizer == "asam", every=cfg.sam_every,
               scaled=weights_of(model))


def base_optimizer(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer that steps (SAM wraps one); LR schedulers attach to it."""
    return getattr(opt, "base_optimizer", opt)



def _continue_schedule(
    scheduler: torch.optim.lr_scheduler.CosineAnnealingLR, old: torch.optim.Optimizer, new: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """The LR schedule of `old`, attached to `new` at the same position and learning rate."""
    new_base, old_base = base_optimizer(new), base_optimizer(old)
    if len(new_base.param_groups) != len(old_base.param_groups):
        raise ValueError("a step hook's optimizer must have as many parameter groups as the one it replaces")
    for g_new, g_old in zip(new_base.param_groups, old_base.param_groups, strict=True):
        g_new["initial_lr"] = g_old.get("initial_lr", g_old["lr"])
    state = scheduler.state_dict()
    fresh = torch.optim.lr_scheduler.CosineAnnealingLR(new_base, T_max=state["T_max"], eta_min=state["eta_min"])
    fresh.load_state_dict(state)
    for g_new, g_old in zip(new_base.param_groups, old_base.param_groups, strict=True):
        g_new["lr"] = g_old["lr"]
    return fresh


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[object]:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def fit(
    model: nn.Module,
    data: DataBundle,
    cfg: TrainConfig,
    *,
    stage: str,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    device: torch.device | None = None,
    attack: Attack | None = None,
    quiet: bool = False,
    optimizer_factory: OptimizerFactory | None = None,
    step_hook: StepHook | None = None,
) -> TrainLog:
    """Train `model` in place for `cfg.epochs` epochs (or `cfg.max_steps` steps); checkpoint after
    each epoch.

    With `resume`, continues from `checkpoint_dir/<stage>.pt` if it exists (the caller must pass a
    model of the same architecture). `attack(model, x, y)` replaces inputs by adversarial ones.
    `optimizer_factory(model, cfg)` builds the optimizer (default `make_optimizer`: SGD / SAM /
    ASAM by `cfg.optimizer`). `step_hook` (see `StepHook`) runs after every step; a stage with a
    step hook that changes the model cannot be checkpointed, so it takes no `checkpoint_dir`.
    """
    cfg.validate()
    if step_hook is not None and checkpoint_dir is not None:
        raise ValueError("a stage with a step hook is not checkpointed: pass checkpoint_dir=None")
    device = device or dist_utils.device_for_rank()
    log = TrainLog(stage=stage)
    if cfg.epochs == 0 if cfg.max_steps is None else cfg.max_steps == 0:
        return log
    model.to(device)
    distributed = dist_utils.is_distributed() and not cfg.local
    train_model: nn.Module = model
    if distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    factory = optimizer_factory or make_optimizer
    optimizer = factory(model, cfg)
    objective = objective_of(data)
    loader = data.loader("train", cfg.batch_size, seed=cfg.seed, distributed=distributed)
    steps_per_epoch = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    if cfg.max_steps is None:
        epochs, total_steps = cfg.epochs, cfg.epochs * steps_per_epoch
    else:  # an empty training set trains nothing, as with epochs
        epochs = math.ceil(cfg.max_steps / steps_per_epoch) if steps_per_epoch else 0
        total_steps = cfg.max_steps if steps_per_epoch else 0
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(base_optimizer(optimizer), T_max=max(1, total_steps))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ckpt_path = checkpoint_dir / f"{stage}.pt" if checkpoint_dir else None

    start_epoch = 0
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        from prunekit.models import load_state_dict_strict

        load_state_dict_strict(model, state["model"], f"checkpoint {ckpt_path}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if use_amp and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"])
        log.epochs = list(state.get("log", []))
        log.resumed_from_epoch = start_epoch

    done = start_epoch * steps_per_epoch
    with progress_bar(disable=quiet) as progress:
        task = progress.add_task(stage, total=total_steps - done, info="")
        for epoch in range(start_epoch, epochs):
            torch.manual_seed(cfg.seed * 7919 + epoch)
            loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            train_model.train()
            total_loss, correct, seen = 0.0, 0, 0
            counted = True
            for step, (x, y) in enumerate(loader):
                if step >= steps_per_epoch or done >= total_steps:
                    break
                raise_if_requested()
                x, y = x.to(device, non_blocking=True), objective.to_device(y, device)
                if attack is not None:
                    x = attack(model, x, y)
                    train_model.train()
                loss, logits = train_step(train_model, optimizer, scaler, x, y, use_amp, device,
                                          objective=objective, bare=model)
                scheduler.step()
                done += 1
                n = objective.count(y)
                total_loss += loss * n
                right = objective.correct(logits, y)
                counted = counted and right is not None
                correct += right or 0
                seen += n
                if step_hook is not None:
                    replacement = step_hook(done, optimizer)
                    if replacement is not None and replacement is not optimizer:
                        scheduler = _continue_schedule(scheduler, optimizer, replacement)
                        optimizer = replacement
                        train_model.train()
                progress.update(task, advance=1, info=f"epoch {epoch + 1}/{epochs} loss {loss:.3f}")
            sums = [total_loss, float(correct), float(seen)]
            if distributed:
                sums = dist_utils.all_reduce_sum(sums, device)
            entry = {"epoch": epoch + 1, "loss": sums[0] / max(sums[2], 1)}
            if counted:
                entry["train_accuracy"] = sums[1] / max(sums[2], 1)
            log.epochs.append(entry)
            if ckpt_path is not None and (dist_utils.is_main() or cfg.local):
                save_checkpoint(
                    ckpt_path,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict() if use_amp else {},
                        "epoch": epoch + 1,
                        "log": log.epochs,
                    },
                )
            if distributed:
                dist_utils.barrier()
    if distributed:
        # BatchNorm running statistics are per rank; end with rank 0's so every rank holds one model.
        dist_utils.broadcast_buffers(model)
    return log


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    y: torch.Tensor,
    use_amp: bool,
    device: torch.device,
    objective: Objective | None = None,
    bare: nn.Module | None = None,
) -> tuple[float, torch.Tensor]:
    """One optimisation step on (x, y); SAM-style optimizers get their ascent pass here.
    Returns (loss, logits). `objective` (default cross-entropy) gets `bare`, the module `model`
    wraps under DDP."""
    optimizer.zero_grad(set_to_none=True)
    objective = objective or CROSS_ENTROPY
    bare = bare if bare is not None else model
    if hasattr(optimizer, "first_step"):
        return _sam_step(model, optimizer, scaler, x, y, use_amp, device, objective, bare)
    with _autocast(device, use_amp):
        logits = model(x)
        loss = objective.loss(bare, x, logits, y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach()), logits.detach()


def _sam_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    y: torch.Tensor,
    use_amp: bool,
    device: torch.device,
    objective: Objective = CROSS_ENTROPY,
    bare: nn.Module | None = None,
) -> tuple[float, torch.Tensor]:
    """SAM/ASAM: ascent pass at w (local gradient, no DDP all-reduce), descent pass at w + eps.

    With `sam_every > 1` most steps skip the ascent pass and re-apply the last perturbation, so
    they cost one forward/backward like SGD.
    """
    from prunekit.optim.sam import ascent_context, running_stats_frozen

    bare = bare if bare is not None else model
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    if optimizer.needs_ascent_pass():  # type: ignore[attr-defined]
        with ascent_context(model), _autocast(device, use_amp):
            logits = model(x)
            loss = objective.loss(bare, x, logits, y)
        scaler.scale(loss).backward()
        optimizer.first_step()  # type: ignore[attr-defined]
        # BatchNorm statistics come from the first pass only.
        with running_stats_frozen(model), _autocast(device, use_amp):
            loss2 = objective.loss(bare, x, model(x), y)
        scaler.scale(loss2).backward()
    else:
        optimizer.first_step()  # type: ignore[attr-defined]
        with _autocast(device, use_amp):
            logits = model(x)
            loss = objective.loss(bare, x, logits, y)
        scaler.scale(loss).backward()
    optimizer.second_step(scaler=scaler if use_amp else None)  # type: ignore[attr-defined]
    return float(loss.detach()), logits.detach()


@torch.no_grad()
def evaluate(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | None = None,
) -> float:
    """Top-1 accuracy (fraction 0..1) of `model` (a module or any logits function) over `batches`."""
    device = device or torch.device("cpu")
    if isinstance(model, nn.Module):
        model.to(device).eval()
    correct, seen = 0, 0
    for x, y in batches:
        logits = model(x.to(device))
        correct += int((logits.argmax(1).cpu() == y).sum())
        seen += len(y)
    if seen == 0:
        raise PrunekitError("the validation set is empty", "check --data")
    return correct / seen


def save_checkpoint(path: Path, state: dict[str, object]) -> None:
    """Atomically write a training checkpoint (tensors and plain values only)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, object]:
    """Read a checkpoint written by `save_checkpoint`, refusing pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle payloads, unrelated files
        raise PrunekitError(
            f"cannot resume: checkpoint {path} is unreadable or unsafe ({str(exc).splitlines()[0][:160]})",
            "delete it to restart that stage, or run without --resume",
        ) from exc
