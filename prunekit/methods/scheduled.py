"""Scheduled pruning (HALP, AdaSAP): prune in R steps on the exponential schedule toward the goal,
training `prune_every` iterations between steps, on ONE optimizer and ONE learning-rate schedule.

As in HALP's code, training does not restart at each pruning step: `train.fit` runs the
(R - 1) x prune_every iterations as one stage (one cosine LR schedule), and a step hook prunes
after every `prune_every` iterations. Torch-Pruning replaces the pruned parameters, so the hook
builds the optimizer again over the surviving parameters and carries their SGD momentum over:
the momentum buffers are pruned exactly like the weights (on a shadow copy of the model pruned
with the same keep-sets), and the LR schedule goes on where it was.

With a data-driven importance and plain SGD (HALP), the Taylor score is accumulated over the
iterations of each pruning interval (`prunekit.importance.TaylorAccumulator`), as HALP does; the
first step, before any training, scores a few training batches.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from prunekit.importance import TaylorAccumulator
from prunekit.methods.common import importance_scores
from prunekit.methods.registry import MethodOptions, MethodResult
from prunekit.pruning import PruningGraph
from prunekit.select import Goal, exponential_schedule, final_point, select
from prunekit.train import OptimizerFactory, TrainConfig, base_optimizer, fit, make_optimizer


class ScheduleOptions(MethodOptions):
    """Options of every scheduled method."""

    prune_steps: int = Field(4, ge=1, le=1_000_000, description="Pruning steps on the exponential schedule toward the goal.")
    prune_every: int = Field(30, ge=0, le=10_000, description="Training iterations between pruning steps (0: none).")


class MomentumCarrier:
    """Prunes a model's SGD momentum buffers exactly as its weights: a shadow copy of the model
    holds the buffers in place of the parameters and is pruned with the same keep-sets."""

    def __init__(self, graph: PruningGraph) -> None:
        self.graph = graph
        shadow = copy.deepcopy(graph.model).cpu()
        self.shadow = PruningGraph(shadow, graph.example_input, graph.model_name)

    def prune(self, keep: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None) -> dict[str, torch.Tensor]:
        """Prune the real graph with `keep` (model on the CPU) and return the pruned momentum
        buffer of every parameter that had one, by parameter name."""
        buffers: dict[str, torch.Tensor] = {}
        if optimizer is not None:
            state = base_optimizer(optimizer).state
            for name, p in self.graph.model.named_parameters():
                buf = state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buffers[name] = buf
        with torch.no_grad():
            for name, p in self.shadow.model.named_parameters():
                p.copy_(buffers[name].detach().cpu() if name in buffers else torch.zeros_like(p))
        self.graph.prune(keep)
        self.shadow.prune(keep)
        return {n: p.detach().clone() for n, p in self.shadow.model.named_parameters() if n in buffers}


def with_momentum(optimizer: torch.optim.Optimizer, model: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    """Give the (new) optimizer of `model` the carried momentum buffers, by parameter name."""
    state = base_optimizer(optimizer).state
    for name, p in model.named_parameters():
        if name in buffers and buffers[name].shape == p.shape:
            state[p]["momentum_buffer"] = buffers[name].to(device=p.device, dtype=p.dtype)


def run_schedule(
    ctx: Any,
    model: nn.Module,
    goal: Goal,
    *,
    name: str,
    importance: str,
    optimizer: str = "sgd",
    optimizer_factory: OptimizerFactory | None = None,
) -> tuple[PruningGraph, MethodResult]:
    """Prune in `prune_steps` steps along the exponential schedule from the dense model to `goal`,
    training `prune_every` iterations between steps with `optimizer` (built by
    `optimizer_factory` when given) as one continuous training stage."""
    o, s = ctx.options, ctx.settings
    steps, every = o.prune_steps, o.prune_every
    graph = PruningGraph(model.cpu(), ctx.example, s.model)
    widths0 = graph.widths()
    result = MethodResult(name, details={"prune_steps": steps, "prune_every": every})
    points: list[float] = []
    accumulate = importance in ("taylor", "halp") and optimizer == "sgd" and every > 0
    acc: list[TaylorAccumulator] = []

    def prune_step(r: int, opt: torch.optim.Optimizer | None, carrier: MomentumCarrier | None) -> dict[str, torch.Tensor]:
        if acc and acc[0].count > 0:
            scores = acc[0].scores()
        else:
            scores = importance_scores(ctx, graph, importance, seed_offset=r)
        if not points:  # AdaSAP's exponential decay from the dense model to the goal
            points.extend(exponential_schedule(goal.start_point, final_point(graph, scores, goal), steps))
        keep, info = select(graph, scores, goal, points[r - 1], widths0)
        buffers: dict[str, torch.Tensor] = {}
        if carrier is None:
            graph.prune(keep)
        else:
            buffers = carrier.prune(keep, opt)
        info["step"] = r
        result.steps.append(info)
        return buffers

    prune_step(1, None, None)
    if steps == 1:
        return graph, result
    if every == 0:
        for r in range(2, steps + 1):
            prune_step(r, None, None)
        return graph, result

    carrier = MomentumCarrier(graph)
    factory = optimizer_factory or make_optimizer
    cfg: TrainConfig = ctx.train_config(1, optimizer=optimizer)
    cfg.max_steps = (steps - 1) * every
    cfg.seed = s.seed + 1000
    cfg.local = True  # rank 0 decides alone under DDP; the others wait for the broadcast
    if accumulate:
        acc.append(TaylorAccumulator(graph))

    def hook(done: int, opt: torch.optim.Optimizer) -> torch.optim.Optimizer | None:
        if accumulate:
            acc[0].update()  # this step's gradients are still in .grad (plain SGD)
        if done % every:
            return None
        graph.model.cpu()
        buffers = prune_step(done // every + 1, opt, carrier)
        graph.model.to(ctx.device)
        if accumulate:
            acc[0] = TaylorAccumulator(graph)
        new = factory(graph.model, cfg)
        with_momentum(new, graph.model, buffers)
        return new

    fit(graph.model, ctx.data, cfg, stage="prune-schedule", device=ctx.device, quiet=True,
        optimizer_factory=factory, step_hook=hook)
    graph.model.cpu()
    return graph, result
