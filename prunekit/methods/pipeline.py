"""The select + remove stage for every `--method`, on top of the building blocks.

    magnitude / taylor  one-shot importance -> selection rule -> removal
    halp                Taylor importance, pruned on a schedule with SGD steps in between, each step
                        a latency knapsack over the target profile (HALP)
    adasap              warm-up with per-channel SAM/ASAM radii from importance, then scheduled
                        pruning (magnitude + ratio = AdaSAP_P; knapsack when a target is given =
                        AdaSAP_L) with adaptive SAM steps in between (fine-tuning: uniform ASAM)
    csam                frozen weights; soft channel masks learned with the C-SAM losses against
                        the corruption suite; masks binarised by top-k or by the knapsack
    s2ap                per-channel scores learned against a PGD robust loss with a sharpness-aware
                        step in score space (HYDRA-style top-k masks); adversarial fine-tuning

Every method ends the same way: a score per channel of every group, turned into a keep-set by the
selection rule (`Goal`): a channel / MACs ratio, or a latency goal on a profile.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.pruning import PruningGraph, count_macs_params, kept_width, select_by_ratio
from prunekit.select.schedule import exponential_schedule


@dataclass
class Goal:
    """What the selection must reach: a ratio of channels / MACs, or a latency on a profile."""

    kind: str  # "ratio" | "latency"
    ratio: float = 0.5
    ratio_of: str = "channels"
    round_to: int = 8
    profile: Any = None
    input_shape: tuple[int, int, int, int] = (1, 3, 32, 32)
    target_ms: float | None = None
    dense_ms: float | None = None


@dataclass
class MethodResult:
    """What the stage reports about itself (goes into report.json under `method`)."""

    name: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps, **self.details}


# -- selection rule -----------------------------------------------------------------------------
def select(
    graph: PruningGraph,
    scores: dict[str, torch.Tensor],
    goal: Goal,
    point: float | None = None,
    original_widths: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Keep-set for `goal`, or for an intermediate `point` on the way to it (a latency in ms for
    latency goals, a kept fraction of the original widths for ratio goals)."""
    if goal.kind == "latency":
        from prunekit.select.latency import select_for_latency

        target = float(goal.target_ms if point is None else point)  # type: ignore[arg-type]
        sel = select_for_latency(graph, scores, goal.profile, goal.input_shape, target, round_to=goal.round_to)
        return sel.keep, {"target_ms": round(target, 5), "predicted_ms": round(sel.predicted_ms, 5)}
    keep_frac = final_point(graph, scores, goal) if point is None else point
    widths0 = original_widths or graph.widths()
    keep: dict[str, torch.Tensor] = {}
    for name, s in scores.items():
        k = min(kept_width(widths0[name], keep_frac, goal.round_to), len(s))
        keep[name] = torch.topk(s.float(), k).indices.sort().values
    return keep, {"keep_fraction": round(keep_frac, 5)}


def final_point(graph: PruningGraph, scores: dict[str, torch.Tensor], goal: Goal) -> float:
    """The goal as a schedule end point: latency in ms, or the kept fraction of channels."""
    if goal.kind == "latency":
        return float(goal.target_ms)  # type: ignore[arg-type]
    if goal.ratio_of == "macs":
        return 1.0 - _channel_ratio_for_macs(graph, scores, 1.0 - goal.ratio, goal.round_to)
    return 1.0 - goal.ratio


def _channel_ratio_for_macs(graph: PruningGraph, scores: dict[str, torch.Tensor], macs_fraction: float,
                            round_to: int) -> float:
    """Uniform channel ratio (bisection) whose pruned model has <= macs_fraction of the MACs."""
    dense_macs, _ = count_macs_params(graph.model, graph.example_input)

    def macs_at(r: float) -> float:
        trial = copy.deepcopy(graph.model).cpu()
        g = PruningGraph(trial, graph.example_input, graph.model_name)
        g.prune(select_by_ratio(scores, r, round_to=round_to))
        return count_macs_params(trial, graph.example_input)[0] / dense_macs

    lo, hi = 0.0, 0.99
    for _ in range(12):
        mid = (lo + hi) / 2
        if macs_at(mid) <= macs_fraction:
            hi = mid
        else:
            lo = mid
    return hi


# -- the stage ----------------------------------------------------------------------------------
def run_method(ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
    """Select and physically remove channels of `model` (in place) with `ctx.settings.method`."""
    method = ctx.settings.method
    runner: Callable[[Any, nn.Module, Goal], tuple[PruningGraph, MethodResult]] = {
        "magnitude": _one_shot,
        "taylor": _one_shot,
        "halp": _scheduled,
        "adasap": _adasap,
        "csam": _csam,
        "s2ap": _s2ap,
    }[method]
    return runner(ctx, model, goal)


def _importance(ctx: Any, graph: PruningGraph, kind: str, seed_offset: int = 0) -> dict[str, torch.Tensor]:
    s = ctx.settings
    batches = ctx.data.loader("train", s.batch_size, seed=s.seed + seed_offset) if kind == "taylor" else None
    graph.model.to(ctx.device)
    scores = graph.importance(kind, batches=batches)
    graph.model.cpu()
    return scores


def _one_shot(ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
    graph = PruningGraph(model.cpu(), ctx.example, ctx.settings.model)
    scores = _importance(ctx, graph, ctx.settings.method)
    keep, info = select(graph, scores, goal)
    graph.prune(keep)
    return graph, MethodResult(ctx.settings.method, steps=[info])


def _scheduled(
    ctx: Any,
    model: nn.Module,
    goal: Goal,
    importance: str = "taylor",
    optimizer: str = "sgd",
    adaptive_radii: tuple[float, float] | None = None,
    name: str | None = None,
) -> tuple[PruningGraph, MethodResult]:
    """Prune in `prune_steps` steps along the exponential schedule, training `prune_every`
    iterations between steps (HALP / AdaSAP)."""
    from prunekit.train import fit

    s = ctx.settings
    graph = PruningGraph(model.cpu(), ctx.example, s.model)
    widths0 = graph.widths()
    result = MethodResult(name or s.method, details={"prune_steps": s.prune_steps, "prune_every": s.prune_every})
    points: list[float] = []
    for r in range(1, s.prune_steps + 1):
        scores = _importance(ctx, graph, importance, seed_offset=r)
        if not points:  # AdaSAP's exponential decay from the dense model to the goal
            start = float(goal.dense_ms) if goal.kind == "latency" else 1.0  # type: ignore[arg-type]
            points = exponential_schedule(start, final_point(graph, scores, goal), s.prune_steps)
        keep, info = select(graph, scores, goal, points[r - 1], widths0)
        graph.prune(keep)
        info["step"] = r
        result.steps.append(info)
        if r < s.prune_steps and s.prune_every > 0:
            cfg = ctx.train_config(1, optimizer=optimizer)
            cfg.max_steps_per_epoch = s.prune_every
            cfg.seed = s.seed + 1000 * r
            cfg.adaptive_radii = adaptive_radii
            cfg.local = True  # rank 0 decides alone under DDP; the others wait for the broadcast
            fit(graph.model, ctx.data, cfg, stage=f"prune-step-{r}", device=ctx.device, quiet=True)
            graph.model.cpu()
    return graph, result


def _adasap(ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
    from prunekit.train import fit

    s = ctx.settings
    radii = (s.rho_min, s.rho_max)
    warm = None
    if s.warmup_epochs > 0:
        cfg = ctx.train_config(s.warmup_epochs, optimizer="asam")
        cfg.adaptive_radii = radii
        cfg.local = True
        warm = fit(model, ctx.data, cfg, stage="adasap-warmup", checkpoint_dir=ctx.folder.checkpoints,
                   resume=ctx.resume, device=ctx.device, quiet=ctx.quiet)
    variant = "AdaSAP_L" if goal.kind == "latency" else "AdaSAP_P"
    graph, result = _scheduled(ctx, model, goal, importance="magnitude", optimizer="asam",
                               adaptive_radii=radii, name="adasap")
    result.details.update(variant=variant, rho_min=s.rho_min, rho_max=s.rho_max, warmup_epochs=s.warmup_epochs)
    if warm is not None:
        result.details["warmup"] = warm.to_dict()
    return graph, result


def _group_scores_from_masks(masks: dict[str, torch.Tensor], magnitude: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Learned mask / score values, with magnitude (scaled tiny) only to break exact ties."""
    out = {}
    for g, m in masks.items():
        mag = magnitude[g].float()
        out[g] = m.detach().float().cpu() + 1e-6 * mag / (mag.max() + 1e-12)
    return out


def _csam(ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
    from prunekit.methods.csam import CSAMLossWeights, clamp_masks_, csam_loss, percentile_init
    from prunekit.robustness.corruptions import CORRUPTIONS, corrupt

    s = ctx.settings
    graph = PruningGraph(model.cpu(), ctx.example, s.model)
    magnitude = graph.importance("magnitude")
    names = [g.name for g in graph.groups]
    masks = [percentile_init(magnitude[n], s.csam_tau).to(ctx.device).requires_grad_(True) for n in names]
    weights = CSAMLossWeights(stab=s.lambda_stab, ratio=s.lambda_ratio, consist=s.lambda_consist)
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    model.to(ctx.device).eval()
    opt = torch.optim.Adam(masks, lr=s.mask_lr)
    gen = torch.Generator().manual_seed(s.seed)
    loader = ctx.data.loader("train", s.batch_size, seed=s.seed)
    history: list[dict[str, float]] = []

    def forward(x: torch.Tensor, ms: list[torch.Tensor]) -> torch.Tensor:
        with graph.masked(dict(zip(names, ms, strict=True))):
            return model(x)

    try:
        for epoch in range(s.mask_epochs):
            loader.sampler.set_epoch(epoch)
            for i, (x, _y) in enumerate(loader):
                x = x.to(ctx.device)
                pick = int(torch.randint(len(CORRUPTIONS), (1,), generator=gen))
                severity = int(torch.randint(1, 6, (1,), generator=gen))
                tx = corrupt(x, CORRUPTIONS[pick], severity, seed=s.seed * 10_007 + epoch * 1_000 + i)
                terms = csam_loss(forward, x, tx, masks, weights=weights, mu=s.csam_mu, eta=s.csam_eta)
                opt.zero_grad(set_to_none=True)
                terms.total.backward()
                opt.step()
                clamp_masks_(masks)
            history.append({"epoch": epoch + 1, "loss": float(terms.total.detach()), "stability": terms.stability,
                            "ratio": terms.ratio, "consistency": terms.consistency, "l1": terms.l1})
    finally:
        for p, flag in zip(model.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
    model.cpu()
    scores = _group_scores_from_masks(dict(zip(names, masks, strict=True)), magnitude)
    keep, info = select(graph, scores, goal)
    graph.prune(keep)
    mean_mask = float(torch.cat([m.detach().cpu() for m in masks]).mean())
    return graph, MethodResult("csam", steps=[info], details={
        "mask_epochs": s.mask_epochs, "mu": s.csam_mu, "eta": s.csam_eta, "tau": s.csam_tau,
        "lambda": {"stab": s.lambda_stab, "ratio": s.lambda_ratio, "consist": s.lambda_consist},
        "mean_mask": round(mean_mask, 4), "history": history})


def _s2ap(ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
    from prunekit.methods.s2ap import s2ap_score_step, topk_mask_ste
    from prunekit.robustness.pgd import pgd_attack

    s = ctx.settings
    graph = PruningGraph(model.cpu(), ctx.example, s.model)
    magnitude = graph.importance("magnitude")
    # Widths from the goal (magnitude scores); which channels fill them is what S2AP learns.
    keep0, info = select(graph, magnitude, goal)
    widths = {g: len(k) for g, k in keep0.items()}
    names = [g.name for g in graph.groups]
    scores = [(magnitude[n] / (magnitude[n].max() + 1e-12)).to(ctx.device).requires_grad_(True) for n in names]
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    model.to(ctx.device).eval()
    opt = torch.optim.SGD(scores, lr=s.score_lr, momentum=0.9)
    loader = ctx.data.loader("train", s.batch_size, seed=s.seed)
    history: list[dict[str, float]] = []

    class Masked(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
            ms = {n: topk_mask_ste(sc, widths[n]) for n, sc in zip(names, scores, strict=True)}
            with graph.masked(ms):
                return model(x)

    masked = Masked()
    try:
        for epoch in range(s.score_epochs):
            loader.sampler.set_epoch(epoch)
            total, perturbed, n = 0.0, 0.0, 0
            for i, (x, y) in enumerate(loader):
                x, y = x.to(ctx.device), y.to(ctx.device)
                x_adv = pgd_attack(masked, x, y, eps=s.pgd_eps, steps=s.pgd_train_steps,
                                   step_size=2.5 * s.pgd_eps / max(s.pgd_train_steps, 1), seed=s.seed + i)
                step = s2ap_score_step(scores, lambda x_adv=x_adv, y=y: F.cross_entropy(masked(x_adv), y), opt,
                                       s.s2ap_rho)
                total += step.loss
                perturbed += step.perturbed_loss
                n += 1
            history.append({"epoch": epoch + 1, "robust_loss": total / max(n, 1),
                            "perturbed_loss": perturbed / max(n, 1)})
    finally:
        for p, flag in zip(model.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
    model.cpu()
    learned = _group_scores_from_masks(dict(zip(names, scores, strict=True)), magnitude)
    keep = {g: torch.topk(learned[g], widths[g]).indices.sort().values for g in names}
    changed = sum(int((torch.isin(keep[g], keep0[g].to(keep[g].device)) == 0).sum()) for g in names)
    graph.prune(keep)
    info["channels_changed_vs_magnitude"] = changed
    return graph, MethodResult("s2ap", steps=[info], details={
        "score_epochs": s.score_epochs, "rho": s.s2ap_rho, "pgd_eps": s.pgd_eps,
        "pgd_train_steps": s.pgd_train_steps, "history": history})
