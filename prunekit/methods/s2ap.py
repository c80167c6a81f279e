"""S2AP building blocks: HYDRA-style learned scores with a sharpness-aware step in score space.

Adversarial pruning à la HYDRA learns an importance score per channel; the network runs with
``mask = top-k(scores)`` (straight-through, so the robust loss still sends gradients to every
score) and the scores are trained to minimise a robust (PGD) loss. S2AP (score-space
sharpness-aware adversarial pruning) replaces the plain score gradient with a SAM-style one:

    g  = grad L(s);   e = rho * g / ||g||   (global norm over all score tensors)
    g' = grad L(s + e);                      s <- optimizer step with g' (taken at s)

``loss_fn`` is any zero-argument callable returning the robust loss at the current scores
(prunekit's PGD loss in practice); nothing here depends on how it is computed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.methods.ste import ste_binarize
from prunekit.optim.sam import running_stats_frozen

_NORM_EPS = 1e-12


def topk_mask_ste(scores: Tensor, k: int) -> Tensor:
    """Binary mask of the ``k`` highest scores; gradient passes straight through to ``scores``."""
    return ste_binarize(scores, k=k)


class S2APStep(NamedTuple):
    """Losses of one score step: at the scores, and at the perturbed scores (their gap is the
    first-order score-space sharpness)."""

    loss: float
    perturbed_loss: float


def _grads(loss: Tensor, scores: Sequence[Tensor]) -> list[Tensor]:
    grads = torch.autograd.grad(loss, list(scores), allow_unused=True)
    return [torch.zeros_like(s) if g is None else g.detach() for s, g in zip(scores, grads, strict=True)]


def s2ap_score_step(
    scores: Sequence[Tensor],
    loss_fn: Callable[[], Tensor],
    optimizer: torch.optim.Optimizer,
    rho: float,
    model: nn.Module | None = None,
) -> S2APStep:
    """One sharpness-aware update of the score tensors (leaf tensors with ``requires_grad``).

    Evaluates ``loss_fn`` at the scores, moves them by ``e = rho * g / ||g||``, evaluates again,
    moves them back exactly, sets ``score.grad`` to the gradient taken at the perturbed point and
    calls ``optimizer.step()`` (which should own the scores). With ``model`` the second
    evaluation runs with BatchNorm running statistics frozen. ``rho = 0`` is the plain HYDRA
    step (one evaluation). Gradients are taken with ``torch.autograd.grad``, so other
    parameters' ``.grad`` are not touched.
    """
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho >= 0):
        raise PrunekitError(f"S2AP rho must be finite and >= 0, got {rho!r}")
    scores = list(scores)
    if not scores or not all(s.requires_grad for s in scores):
        raise PrunekitError("s2ap_score_step needs score tensors with requires_grad=True")
    loss = loss_fn()
    grads = _grads(loss, scores)
    loss_value = float(loss.detach())
    perturbed_value = loss_value
    if rho > 0:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        backup = [s.detach().clone() for s in scores]
        with torch.no_grad():
            for s, g in zip(scores, grads, strict=True):
                s.add_(g * (rho / (norm + _NORM_EPS)))
        try:
            with running_stats_frozen(model) if model is not None else contextlib.nullcontext():
                perturbed = loss_fn()
                grads = _grads(perturbed, scores)
            perturbed_value = float(perturbed.detach())
        finally:
            with torch.no_grad():
                for s, b in zip(scores, backup, strict=True):
                    s.copy_(b)
    for s, g in zip(scores, grads, strict=True):
        s.grad = g
    optimizer.step()
    return S2APStep(loss_value, perturbed_value)
