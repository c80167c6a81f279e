"""`s2ap`: S2AP, HYDRA-style learned channel scores with a sharpness-aware step in score space.

The method: per-channel scores learned against a PGD robust loss (weights frozen, BatchNorm in
training mode as in training), the widths from the goal, the channels with the largest |score|
(as HYDRA ranks them); then adversarial fine-tuning.

Building blocks:

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
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.importance import LearnedImportance
from prunekit.methods.common import frozen_parameters, importance_scores, learned_scores
from prunekit.methods.registry import Attack, Method, MethodOptions, MethodResult, register_method
from prunekit.methods.ste import ste_binarize
from prunekit.optim.sam import running_stats_frozen
from prunekit.pruning import PruningGraph
from prunekit.select import Goal, select

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


# -- the method ---------------------------------------------------------------------------------
class S2APOptions(MethodOptions):
    """S2AP's options."""

    score_epochs: int = Field(1, ge=0, le=10_000, description="Epochs of importance-score search against the PGD loss.")
    score_lr: float = Field(0.1, gt=0, description="SGD learning rate of the scores.")
    s2ap_rho: float = Field(0.05, ge=0, description="Radius of the sharpness step in score space (0: plain HYDRA).")
    pgd_eps: float = Field(8 / 255, ge=0, le=1,
                           description="L-inf radius of the PGD attack used for training, in [0, 1] pixel units.")
    pgd_train_steps: int = Field(3, ge=1, le=1_000_000,
                                 description="PGD steps per batch during score search and adversarial fine-tuning.")


def score_mask(scores: Tensor, k: int) -> Tensor:
    """HYDRA's mask: ones at the ``k`` largest |scores| (straight-through, so the gradient reaches
    the scores through |.|). A large negative score is as important as a large positive one."""
    return topk_mask_ste(scores.abs(), k)


def keep_by_score(scores: dict[str, Tensor], widths: dict[str, int]) -> dict[str, Tensor]:
    """Channels kept per group: the ``widths[g]`` largest |scores|, sorted."""
    return {g: torch.topk(sc.detach().abs().float(), widths[g]).indices.sort().values for g, sc in scores.items()}


class _Masked(nn.Module):
    """The frozen model under the score masks (a module holding the model, so PGD's eval-mode
    switch reaches the model's BatchNorms)."""

    def __init__(self, model: nn.Module, graph: PruningGraph, names: list[str], scores: list[Tensor],
                 widths: dict[str, int]) -> None:
        super().__init__()
        self.model = model
        self._graph, self._names, self._scores, self._widths = graph, names, scores, widths

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        ms = {n: score_mask(sc, self._widths[n]) for n, sc in zip(self._names, self._scores, strict=True)}
        with self._graph.masked(ms):
            return self.model(x)


@register_method
class S2AP(Method):
    name = "s2ap"
    help = ("S2AP: per-channel scores learned against a PGD robust loss with a sharpness-aware step in "
            "score space (HYDRA masks by |score|), then adversarial fine-tuning")
    Options = S2APOptions

    def finetune_attack(self, options: Any, settings: Any) -> Attack | None:
        from prunekit.robustness.pgd import pgd_attack

        eps, steps, seed = options.pgd_eps, options.pgd_train_steps, settings.seed

        def attack(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
            return pgd_attack(model, x, y, eps=eps, steps=steps, step_size=2.5 * eps / steps, seed=seed)

        return attack

    def run(self, ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
        from prunekit.robustness.pgd import pgd_attack

        s, o = ctx.settings, ctx.options
        graph = PruningGraph(model.cpu(), ctx.example, s.model)
        magnitude = importance_scores(ctx, graph, "magnitude")
        # Widths from the goal (magnitude scores); which channels fill them is what S2AP learns.
        keep0, info = select(graph, magnitude, goal)
        widths = {g: len(k) for g, k in keep0.items()}
        names = [g.name for g in graph.groups]
        scores = [(magnitude[n] / (magnitude[n].max() + 1e-12)).to(ctx.device).requires_grad_(True) for n in names]
        loader = ctx.data.loader("train", s.batch_size, seed=s.seed)
        history: list[dict[str, float]] = []
        masked = _Masked(model, graph, names, scores, widths)
        with frozen_parameters(model):
            # BatchNorm in training mode, as in training (HYDRA); the perturbed pass of each
            # sharpness step leaves the running statistics alone, PGD runs in eval mode.
            model.to(ctx.device).train()
            opt = torch.optim.SGD(scores, lr=o.score_lr, momentum=0.9)
            for epoch in range(o.score_epochs):
                loader.sampler.set_epoch(epoch)
                total, perturbed, n = 0.0, 0.0, 0
                for i, (x, y) in enumerate(loader):
                    x, y = x.to(ctx.device), y.to(ctx.device)
                    x_adv = pgd_attack(masked, x, y, eps=o.pgd_eps, steps=o.pgd_train_steps,
                                       step_size=2.5 * o.pgd_eps / max(o.pgd_train_steps, 1), seed=s.seed + i)
                    step = s2ap_score_step(scores, lambda x_adv=x_adv, y=y: F.cross_entropy(masked(x_adv), y), opt,
                                           o.s2ap_rho, model=model)
                    total += step.loss
                    perturbed += step.perturbed_loss
                    n += 1
                history.append({"epoch": epoch + 1, "robust_loss": total / max(n, 1),
                                "perturbed_loss": perturbed / max(n, 1)})
        model.cpu().eval()
        learned = LearnedImportance(
            learned_scores({n: sc.detach().abs() for n, sc in zip(names, scores, strict=True)}, magnitude), "s2ap")(graph)
        keep = keep_by_score(learned, widths)
        changed = sum(int((torch.isin(keep[g], keep0[g].to(keep[g].device)) == 0).sum()) for g in names)
        graph.prune(keep)
        info["channels_changed_vs_magnitude"] = changed
        return graph, MethodResult(self.name, steps=[info], details={
            "score_epochs": o.score_epochs, "rho": o.s2ap_rho, "pgd_eps": o.pgd_eps,
            "pgd_train_steps": o.pgd_train_steps, "history": history})
