"""Channel importance as callables, comparable across groups (so a knapsack can trade layers).

An importance is an object with `name`, `needs_data` and
`__call__(graph, batches=None) -> {group name: scores[width]}` (higher = keep), the way
Torch-Pruning passes `Importance` objects to its pruners. Every score here is on one scale for
the whole model, never normalised per group: HALP's knapsack picks channels across layers by
their values, and a per-group normalisation (each group's mean = 1) would make every layer look
equally important.

- `magnitude` (data-free): the channel's output scale times the weight that consumes it,
  `|output_c| * ||W_next[:, c]||_2`. Behind a BatchNorm the output scale is
  `sqrt(gamma_c^2 + beta_c^2)` (the BN output is unit-variance times gamma, shifted by beta);
  without one it is the L2 norm of the producing weights. A channel whose BN is scaled down
  100x scores 100x lower, whatever layer it is in; a channel nobody reads scores 0.
- `taylor` / `halp` (data): HALP's group Taylor score (Molchanov et al. 2019, as NVlabs/HALP
  computes it): per batch, in training mode,
  `|sum over the group's BatchNorms of gamma * dL/dgamma + beta * dL/dbeta|` per channel
  (`|sum over the group's producing layers of w * dL/dw|` where the group has no BN), averaged
  over batches. It estimates the loss change from removing the channel: the same unit in every
  layer. `TaylorAccumulator` collects it during training (HALP accumulates it over the
  iterations of each pruning interval).
- `LearnedImportance`: scores learned by a method (C-SAM masks, S2AP scores), passed through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch_pruning as tp
from torch import nn

from prunekit.errors import PrunekitError

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Scores = dict[str, torch.Tensor]


class Importance(Protocol):
    """What selection rules consume: per-channel scores of every group of a pruning graph."""

    name: str
    needs_data: bool

    def __call__(self, graph: Any, batches: Batches | None = None) -> Scores: ...


@dataclass
class _Member:
    """One layer of a group: its module, its channel indices and their positions in the group."""

    module: nn.Module
    role: str  # "bn" | "out" (produces the channels) | "in" (consumes them)
    idxs: torch.Tensor
    pos: torch.Tensor


def group_members(graph: Any) -> dict[str, list[_Member]]:
    """For every group of `graph` (a PruningGraph), the BN / producing / consuming layers it couples."""
    out: dict[str, list[_Member]] = {}
    for name, group in graph._tp_groups.items():
        members: list[_Member] = []
        seen: set[tuple[int, str]] = set()
        for item in group:
            dep = item.dep
            mod = dep.target.module
            if not isinstance(mod, nn.Module):
                continue
            is_out = graph.dg.is_out_channel_pruning_fn(dep.handler) or dep.handler in (
                tp.prune_depthwise_conv_out_channels,
            )
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                if not is_out or not mod.affine:
                    continue
                role = "bn"
            elif isinstance(mod, (nn.Conv2d, nn.Linear)):
                is_dw = isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == mod.out_channels
                role = "out" if (is_out or is_dw) else "in"
                if role == "in" and isinstance(mod, nn.Conv2d) and mod.groups > 1:
                    continue  # grouped consumers: their input slice is not one column per channel
            else:
                continue
            key = (id(mod), role)
            if key in seen:
                continue
            seen.add(key)
            members.append(_Member(mod, role, torch.as_tensor([int(i) for i in item.idxs], dtype=torch.long),
                                   torch.as_tensor([int(i) for i in item.root_idxs], dtype=torch.long)))
        out[name] = members
    return out


def _scatter(width: int, pos: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    full = torch.zeros(width, dtype=torch.float64)
    full.index_add_(0, pos, values.detach().double().cpu())
    return full


def _rows(weight: torch.Tensor, idxs: torch.Tensor) -> torch.Tensor:
    return weight.detach().index_select(0, idxs.to(weight.device)).flatten(1)


def _cols(weight: torch.Tensor, idxs: torch.Tensor) -> torch.Tensor:
    return weight.detach().index_select(1, idxs.to(weight.device)).transpose(0, 1).flatten(1)


class MagnitudeImportance:
    """Data-free: output scale (BN gamma/beta, else producing weights) x consuming weights' L2 norm."""

    name = "magnitude"
    needs_data = False

    def __call__(self, graph: Any, batches: Batches | None = None) -> Scores:
        scores: Scores = {}
        for name, members in group_members(graph).items():
            width = graph.group(name).width
            bn = torch.zeros(width, dtype=torch.float64)
            produce = torch.zeros(width, dtype=torch.float64)
            consume_sq = torch.zeros(width, dtype=torch.float64)
            has_bn = has_consumer = False
            for m in members:
                if m.role == "bn":
                    g = m.module.weight.detach().index_select(0, m.idxs.to(m.module.weight.device))
                    b = m.module.bias.detach().index_select(0, m.idxs.to(m.module.bias.device))
                    bn += _scatter(width, m.pos, torch.sqrt(g.double() ** 2 + b.double() ** 2))
                    has_bn = True
                elif m.role == "out":
                    produce += _scatter(width, m.pos, _rows(m.module.weight, m.idxs).double().norm(dim=1))
                else:
                    consume_sq += _scatter(width, m.pos, (_cols(m.module.weight, m.idxs).double() ** 2).sum(1))
                    has_consumer = True
            scale = bn if has_bn else produce
            s = scale * consume_sq.sqrt() if has_consumer else scale
            scores[name] = torch.nan_to_num(s.float(), nan=0.0)
        return scores


class TaylorAccumulator:
    """HALP's group Taylor score, accumulated batch by batch from the gradients already in `.grad`.

    Call `update()` after each backward pass (in training mode), `scores()` at a pruning step.
    """

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.members = group_members(graph)
        self.total: Scores = {}
        self.count = 0

    def update(self) -> None:
        """Add |sum_BN gamma*dgamma + beta*dbeta| (else |sum w*dw| of producing layers) of this batch."""
        batch: Scores = {}
        for name, members in self.members.items():
            width = self.graph.group(name).width
            bns = [m for m in members if m.role == "bn" and m.module.weight.grad is not None]
            acc = torch.zeros(width, dtype=torch.float64)
            if bns:
                for m in bns:
                    w, b = m.module.weight, m.module.bias
                    i = m.idxs.to(w.device)
                    term = (w.detach() * w.grad).index_select(0, i)
                    if b is not None and b.grad is not None:
                        term = term + (b.detach() * b.grad).index_select(0, i)
                    acc += _scatter(width, m.pos, term)
            else:
                for m in members:
                    w = m.module.weight
                    if m.role != "out" or w.grad is None:
                        continue
                    acc += _scatter(width, m.pos, _rows(w * w.grad, m.idxs).sum(1))
            batch[name] = acc.abs()
        if any(torch.isnan(v).any() or torch.isinf(v).any() for v in batch.values()):
            return  # HALP skips a batch whose gradients overflowed (AMP)
        for name, v in batch.items():
            self.total[name] = self.total.get(name, torch.zeros_like(v)) + v
        self.count += 1

    def scores(self) -> Scores:
        if self.count == 0:
            raise PrunekitError("taylor importance saw no gradients", "give it at least one training batch")
        return {n: (v / self.count).float() for n, v in self.total.items()}


class TaylorImportance:
    """HALP's group Taylor score over up to `max_batches` training batches (training-mode BN)."""

    name = "taylor"
    needs_data = True

    def __init__(self, max_batches: int = 8,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 objective: Any = None) -> None:
        self.max_batches = max_batches
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        # A data bundle's objective (prunekit.train.Objective: a detector's box losses) replaces loss_fn.
        self.objective = objective

    def __call__(self, graph: Any, batches: Batches | None = None) -> Scores:
        if batches is None:
            raise PrunekitError("taylor importance needs training batches")
        model: nn.Module = graph.model
        device = next(model.parameters()).device
        # Training-mode forward passes move BN running statistics: keep the model as it was.
        buffers = {k: v.detach().clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
        was_training = model.training
        acc = TaylorAccumulator(graph)
        model.train()
        try:
            for i, (x, y) in enumerate(batches):
                if i >= self.max_batches:
                    break
                model.zero_grad(set_to_none=True)
                x = x.to(device)
                if self.objective is not None:
                    loss = self.objective.loss(model, x, model(x), self.objective.to_device(y, device))
                else:
                    loss = self.loss_fn(model(x), y.to(device))
                loss.backward()
                acc.update()
        finally:
            model.zero_grad(set_to_none=True)
            model.load_state_dict(buffers, strict=False)
            model.train(was_training)
        return acc.scores()


class LearnedImportance:
    """Scores a method learned (C-SAM masks, S2AP scores), as an importance."""

    needs_data = False

    def __init__(self, scores: Scores, name: str = "learned") -> None:
        self.name = name
        self._scores = {k: v.detach().float().cpu() for k, v in scores.items()}

    def __call__(self, graph: Any, batches: Batches | None = None) -> Scores:
        missing = [g.name for g in graph.groups if g.name not in self._scores]
        if missing:
            raise PrunekitError(f"learned importance has no scores for group '{missing[0]}'")
        return dict(self._scores)


IMPORTANCES: dict[str, Callable[[], Importance]] = {
    "magnitude": MagnitudeImportance,
    "taylor": TaylorImportance,
    "halp": TaylorImportance,
}


def get_importance(name: str, **options: Any) -> Importance:
    """The importance registered as `name` (magnitude | taylor | halp)."""
    if name not in IMPORTANCES:
        raise PrunekitError(f"unknown importance '{name}'", f"use one of {', '.join(IMPORTANCES)}")
    return IMPORTANCES[name](**options)
