"""L-infinity PGD adversarial examples and adversarial accuracy (Madry et al., 2018).

Used to report S2AP's robust accuracy and as the inner attack of adversarial fine-tuning. The
attack runs the model in eval mode (batch-norm statistics are not touched), freezes its
parameters while it runs and restores both the mode and every `requires_grad` flag afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.robustness.metrics import Loader, _limited

CIFAR_EPS = 8 / 255
CIFAR_STEPS = 10
CIFAR_STEP_SIZE = 2 / 255


def _check(eps: float, steps: int, step_size: float) -> None:
    if eps < 0:
        raise PrunekitError(
            f"PGD eps must be >= 0, got {eps}", "eps is an L-inf radius in [0, 1] pixel units, e.g. 8/255"
        )
    if steps < 0:
        raise PrunekitError(f"PGD steps must be >= 0, got {steps}")
    if step_size < 0:
        raise PrunekitError(f"PGD step size must be >= 0, got {step_size}")


@contextlib.contextmanager
def _frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients inside; the previous state is restored on exit."""
    modes = {m: m.training for m in model.modules()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float = CIFAR_EPS,
    steps: int = CIFAR_STEPS,
    step_size: float = CIFAR_STEP_SIZE,
    seed: int = 0,
    *,
    random_start: bool = True,
) -> torch.Tensor:
    """Untargeted L-inf PGD on cross-entropy: `steps` signed-gradient ascent steps of `step_size`
    from a uniform random start in the eps-ball, each projected onto the ball and onto [0, 1].

    `x` [B, 3, H, W] in [0, 1] and `y` [B] are moved to the model's device; the result is there,
    detached, with ``|x_adv - x| <= eps`` everywhere.
    """
    _check(eps, steps, step_size)
    p = next(model.parameters(), None)
    dev = p.device if p is not None else x.device
    x = x.detach().to(dev)
    y = y.to(dev)
    if eps == 0 or x.shape[0] == 0:
        return x.clone()
    lo = (x - eps).clamp(0.0, 1.0)
    hi = (x + eps).clamp(0.0, 1.0)
    if random_start:
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF)
        noise = torch.rand(x.shape, generator=gen, device=dev, dtype=x.dtype) * (2 * eps) - eps
        x_adv = torch.max(torch.min(x + noise, hi), lo)
    else:
        x_adv = x.clone()
    with _frozen_eval(model), torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.max(torch.min(x_adv, hi), lo)
    return x_adv.detach()


@dataclass
class AdversarialReport:
    """Clean and PGD accuracy on the same images, with the attack's settings."""

    clean_accuracy: float
    adversarial_accuracy: float
    n_images: int
    eps: float
    steps: int
    step_size: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def adversarial_accuracy(
    model: nn.Module,
    loader: Loader,
    eps: float = CIFAR_EPS,
    steps: int = CIFAR_STEPS,
    step_size: float = CIFAR_STEP_SIZE,
    seed: int = 0,
    *,
    limit: int | None = None,
    progress: Any = None,
) -> AdversarialReport:
    """Accuracy under `pgd_attack` (and clean accuracy) of `model` over `loader`.

    Each batch gets its own attack seed derived from `seed`, so the result is reproducible.
    """
    _check(eps, steps, step_size)
    clean = adv = total = 0
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    for b, (images, labels) in enumerate(_limited(loader, limit)):
        y = labels.to(dev)
        x_adv = pgd_attack(model, images, y, eps, steps, step_size, seed=seed * 1_000_003 + b)
        with _frozen_eval(model), torch.inference_mode():
            clean += int((model(images.to(dev)).argmax(1) == y).sum())
            adv += int((model(x_adv).argmax(1) == y).sum())
        total += images.shape[0]
        if progress is not None:
            progress(images.shape[0])
    if total == 0:
        raise PrunekitError("the evaluation data is empty", "check --data and --limit")
    return AdversarialReport(clean / total, adv / total, total, eps, steps, step_size, seed)
