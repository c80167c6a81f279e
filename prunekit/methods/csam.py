"""`csam`: C-SAM (arXiv 2601.20301), soft channel masks searched with mask-space sharpness losses.

The method: weights frozen, soft channel masks learned against mask noise and the corruption
suite, then binarised by top-k or by the latency knapsack (the deployed selection rule).

Building blocks:

C-SAM (arXiv 2601.20301) freezes the weights and learns soft masks C in [0, 1] per channel.
Sharpness is taken in mask space: masks are perturbed with uniform noise,
``C_xi = clip(C + xi, 0, 1)``, ``xi ~ U(-mu, mu)``, and the loss asks predictions to stay stable
under that noise and under an input transformation T(x):

    L = lambda_stab * L_stab + lambda_ratio * L_ratio + lambda_consist * L_consist + lambda_1 * ||C||_1

The consistency term compares the soft-mask network with the network under the binary mask that
will be deployed (top-k per group at the goal's widths, or the latency knapsack's widths).

This module knows nothing about how a mask reaches the network: ``csam_loss`` takes a
``forward(x, masks) -> logits`` callable (prunekit's pruning wrapper applies one mask vector per
channel group with forward hooks). Stability and ratio losses take probabilities; the
consistency loss takes logits (it needs log-probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.importance import LearnedImportance
from prunekit.methods.common import frozen_parameters, importance_scores, learned_scores
from prunekit.methods.registry import Method, MethodOptions, MethodResult, register_method
from prunekit.methods.ste import ste_binarize
from prunekit.pruning import PruningGraph
from prunekit.select import Goal, select

# Paper defaults.
LAMBDA_STAB = 5.0
LAMBDA_RATIO = 1.0
LAMBDA_CONSIST = 1.0
MU = 0.5
ETA = 1.0
TAU = 30.0
# Not given in the material we have; prunekit's choice. lambda_1 * ||C||_1 puts lambda_1 on the
# gradient of every mask entry: at initialisation (resnet18, digits, 50 % goal) 0.01 gives an L1
# gradient 0.27x the norm of the other terms' (per entry 0.01 vs their mean 0.015). The earlier
# lambda_1 * mean|C| gave 1e-4x: it did nothing.
LAMBDA_L1 = 0.01
MARGIN_EPS = 1e-6

MaskForward = Callable[[Tensor, Sequence[Tensor]], Tensor]
Binarizer = Callable[[Sequence[Tensor]], Sequence[Tensor]]


def topk_binarizer(widths: Sequence[int]) -> Binarizer:
    """The deployed binariser for masks of these widths: ones at each mask's top-k entries
    (k = its group's kept width), straight-through gradient."""
    ks = [int(k) for k in widths]

    def binarize(masks: Sequence[Tensor]) -> list[Tensor]:
        if len(masks) != len(ks):
            raise PrunekitError(f"{len(masks)} masks for {len(ks)} widths")
        return [ste_binarize(c, k=k) for c, k in zip(masks, ks, strict=True)]

    return binarize


def stability_loss(p1: Tensor, p2: Tensor, *more: Tensor) -> Tensor:
    """Prediction variance across mask samples: ``E_x E_xi ||p_xi(x) - mean_xi p(x)||_2^2``.

    Inputs: probabilities ``(batch, classes)`` from >= 2 mask samples. Squared L2 over classes,
    mean over samples and batch. For two samples this is ``||p1 - p2||^2 / 4`` per input.
    """
    probs = torch.stack((p1, p2, *more))  # (samples, batch, classes)
    centred = probs - probs.mean(dim=0, keepdim=True)
    return centred.pow(2).sum(dim=-1).mean()


def top2_margin(p: Tensor) -> Tensor:
    """``p_top1 - p_top2`` per row of ``(batch, classes)`` probabilities."""
    if p.shape[-1] < 2:
        raise PrunekitError("the top-2 margin needs at least two classes")
    top = p.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def ratio_loss(p_x: Tensor, p_tx: Tensor, eta: float = ETA, margin_eps: float = MARGIN_EPS) -> Tensor:
    """``mean softplus(||p(x) - p(Tx)||_inf / margin(p(x)) - eta)``.

    The prediction cannot flip while the sup-norm change stays below the top-2 margin, so the
    ratio is penalised once it exceeds ``eta``. The margin is clamped to ``margin_eps`` to keep the
    ratio finite when the top two classes tie.
    """
    change = (p_x - p_tx).abs().amax(dim=-1)
    ratio = change / top2_margin(p_x).clamp_min(margin_eps)
    return F.softplus(ratio - eta).mean()


def consistency_loss(logits_soft: Tensor, logits_binary: Tensor) -> Tensor:
    """``KL(p_soft || p_binary)`` averaged over the batch (soft-mask vs STE-binarised-mask predictions).

    Gradients flow into both sides: to the soft masks directly, and to the binarised ones through
    the straight-through estimator.
    """
    log_soft = F.log_softmax(logits_soft, dim=-1)
    log_bin = F.log_softmax(logits_binary, dim=-1)
    return (log_soft.exp() * (log_soft - log_bin)).sum(dim=-1).mean()


def l1_mask_loss(masks: Tensor | Sequence[Tensor]) -> Tensor:
    """``||C||_1``: the sum of absolute mask values over all entries (the paper's L1 term).

    A sum, not a mean: the gradient on every mask entry is ``lambda_1`` whatever the network's
    size (a mean divides it by the number of channels, thousands, and the term stops acting).
    """
    tensors = [masks] if isinstance(masks, Tensor) else list(masks)
    if not tensors:
        raise PrunekitError("l1_mask_loss needs at least one mask")
    return sum(t.abs().sum() for t in tensors)  # type: ignore[return-value]


def percentile_init(scores: Tensor, tau: float = TAU) -> Tensor:
    """Initial soft mask in [0, 1] from importance scores, scaled by a percentile instead of the max.

    ``C = clip(s / q, 0, 1)`` with ``q`` the ``(100 - tau)``-th percentile of the scores: the top
    ``tau`` % of channels start fully on (C = 1) and the rest in proportion to their score.
    ``tau = 0`` is plain max-scaling ("full-scaled"). Channel importances are heavy-tailed, so
    max-scaling puts most masks near 0; the attenuations multiply through the layers, the masked
    network's predictions collapse and the mask search starts from (and stays at) a degenerate
    point. Scaling by a percentile keeps the network close to the dense one at the start while
    still ordering the channels. Scores must be >= 0 (magnitude, |Taylor|); use it per layer or
    per channel group, since scales differ between layers.
    """
    if not 0 <= tau < 100:
        raise PrunekitError(f"tau must be in [0, 100), got {tau}", f"C-SAM's default is {TAU}")
    s = scores.detach().float()
    if s.numel() == 0:
        return s.clone()
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise PrunekitError("percentile_init needs finite scores >= 0", "use magnitude or |Taylor| scores")
    q = torch.quantile(s.reshape(-1), 1 - tau / 100)
    if bool(q <= 0):  # most scores are zero: keep the positive ones on
        return (s > 0).to(scores.dtype if scores.is_floating_point() else torch.float32)
    out = (s / q).clamp(0, 1)
    return out.to(scores.dtype) if scores.is_floating_point() else out


def perturb_masks(C: Tensor, mu: float = MU, generator: torch.Generator | None = None) -> Tensor:
    """``clip(C + xi, 0, 1)`` with ``xi ~ U(-mu, mu)`` elementwise (differentiable in ``C``)."""
    if not 0 <= mu < math.inf:
        raise PrunekitError(f"mask noise mu must be >= 0, got {mu}", f"C-SAM's default is {MU}")
    xi = (torch.rand(C.shape, generator=generator, device=C.device, dtype=C.dtype) * 2 - 1) * mu
    return (C + xi).clamp(0, 1)


@torch.no_grad()
def clamp_masks_(masks: Sequence[Tensor]) -> None:
    """Project masks back into [0, 1] in place (call after each optimizer step)."""
    for m in masks:
        m.clamp_(0, 1)


@dataclass(frozen=True)
class CSAMLossWeights:
    """Weights of the C-SAM loss terms (paper defaults; ``task`` adds cross-entropy, off by default)."""

    stab: float = LAMBDA_STAB
    ratio: float = LAMBDA_RATIO
    consist: float = LAMBDA_CONSIST
    l1: float = LAMBDA_L1
    task: float = 0.0

    def validate(self) -> None:
        for name in ("stab", "ratio", "consist", "l1", "task"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise PrunekitError(f"C-SAM loss weight {name} must be finite and >= 0, got {value}")


@dataclass
class CSAMLossTerms:
    """The combined loss (a graph tensor, for backward) and each term as a float (for logging)."""

    total: Tensor
    stability: float
    ratio: float
    consistency: float
    l1: float
    task: float


def csam_loss(
    forward: MaskForward,
    x: Tensor,
    tx: Tensor,
    masks: Sequence[Tensor],
    *,
    weights: CSAMLossWeights = CSAMLossWeights(),
    mu: float = MU,
    eta: float = ETA,
    binarize: Binarizer | None = None,
    targets: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> CSAMLossTerms:
    """The C-SAM objective for one batch.

    ``forward(inputs, masks) -> logits`` runs the frozen network with the given mask tensors (one
    per channel group, same order as ``masks``); ``tx`` is T(x) (corrupted / augmented x).
    Forward passes (skipped when their terms have weight 0):

    * ``x`` under two noisy masks C_xi1, C_xi2  -> L_stab(p1, p2)
    * ``tx`` under C_xi2                        -> L_ratio(p1, p_tx): original vs transformed input
      under an independent pair of mask samples
    * ``x`` under the soft C and under ``binarize(C)`` -> L_consist (KL soft || deployed binary)

    ``binarize`` maps the masks to their straight-through binary versions with the rule that
    will be deployed (`topk_binarizer(widths)`: the widths the goal's selection rule gives, top-k
    or the latency knapsack); the consistency term needs it. ``targets`` with
    ``weights.task > 0`` adds cross-entropy on the soft-mask logits.
    """
    weights.validate()
    if not masks:
        raise PrunekitError("csam_loss needs at least one mask")
    if weights.consist > 0 and binarize is None:
        raise PrunekitError("the C-SAM consistency loss needs the deployed binariser",
                            "pass binarize=topk_binarizer(widths) with the widths of the selection rule")
    zero = masks[0].new_zeros(())
    stab = ratio = consist = task = zero

    p1 = None
    if weights.stab > 0 or weights.ratio > 0:
        noisy1 = [perturb_masks(c, mu, generator) for c in masks]
        noisy2 = [perturb_masks(c, mu, generator) for c in masks]
        p1 = forward(x, noisy1).softmax(dim=-1)
        if weights.stab > 0:
            stab = stability_loss(p1, forward(x, noisy2).softmax(dim=-1))
        if weights.ratio > 0:
            ratio = ratio_loss(p1, forward(tx, noisy2).softmax(dim=-1), eta)
    logits_soft = None
    if weights.consist > 0 or (weights.task > 0 and targets is not None):
        logits_soft = forward(x, list(masks))
    if weights.consist > 0:
        consist = consistency_loss(logits_soft, forward(x, list(binarize(masks))))  # type: ignore[misc]
    if weights.task > 0 and targets is not None:
        task = F.cross_entropy(logits_soft, targets)
    l1 = l1_mask_loss(masks)
    total = (weights.stab * stab + weights.ratio * ratio + weights.consist * consist
             + weights.l1 * l1 + weights.task * task)
    return CSAMLossTerms(total, *(float(t.detach()) for t in (stab, ratio, consist, l1, task)))


# -- the method ---------------------------------------------------------------------------------
class CSAMOptions(MethodOptions):
    """C-SAM's options (paper defaults; lambda_l1 is prunekit's)."""

    mask_epochs: int = Field(1, ge=0, le=10_000, description="Epochs of soft-mask search with frozen weights.")
    mask_lr: float = Field(0.05, gt=0, description="Adam learning rate of the masks.")
    csam_mu: float = Field(MU, ge=0, le=1, description="Mask noise: C + U(-mu, mu), clipped to [0, 1].")
    csam_eta: float = Field(ETA, ge=0, description="Safety threshold of the ratio loss.")
    csam_tau: float = Field(TAU, ge=0, lt=100,
                            description="Percentile of the mask initialisation (top tau % start fully on).")
    lambda_stab: float = Field(LAMBDA_STAB, ge=0, description="Weight of the stability loss.")
    lambda_ratio: float = Field(LAMBDA_RATIO, ge=0, description="Weight of the margin-ratio loss.")
    lambda_consist: float = Field(LAMBDA_CONSIST, ge=0,
                                  description="Weight of the consistency (KL) loss between the soft masks and "
                                  "the deployed top-k / knapsack masks.")
    lambda_l1: float = Field(LAMBDA_L1, ge=0,
                             description="Weight of the L1 norm of the masks (the sum, so it acts on every "
                             "mask entry with this weight).")


@register_method
class CSAM(Method):
    name = "csam"
    help = ("C-SAM: weights frozen, soft channel masks learned against mask noise and the corruption suite, "
            "then binarised by top-k or the knapsack")
    Options = CSAMOptions

    def run(self, ctx: Any, model: nn.Module, goal: Goal) -> tuple[PruningGraph, MethodResult]:
        from prunekit.robustness.corruptions import CORRUPTIONS, corrupt

        s, o = ctx.settings, ctx.options
        graph = PruningGraph(model.cpu(), ctx.example, s.model)
        magnitude = importance_scores(ctx, graph, "magnitude")
        names = [g.name for g in graph.groups]
        masks = [percentile_init(magnitude[n], o.csam_tau).to(ctx.device).requires_grad_(True) for n in names]
        weights = CSAMLossWeights(stab=o.lambda_stab, ratio=o.lambda_ratio, consist=o.lambda_consist, l1=o.lambda_l1)
        gen = torch.Generator().manual_seed(s.seed)
        loader = ctx.data.loader("train", s.batch_size, seed=s.seed)
        history: list[dict[str, float]] = []

        def forward(x: Tensor, ms: Sequence[Tensor]) -> Tensor:
            with graph.masked(dict(zip(names, ms, strict=True))):
                return model(x)

        def deployed_widths() -> list[int]:
            """The widths the goal's selection gives for the current masks (on the CPU and with
            trainable weights, like the pruning itself)."""
            model.cpu()
            keep, _ = select(graph, learned_scores(dict(zip(names, masks, strict=True)), magnitude), goal)
            return [len(keep[n]) for n in names]

        opt = torch.optim.Adam(masks, lr=o.mask_lr)
        widths: list[int] = []
        for epoch in range(o.mask_epochs):
            if not widths or goal.kind == "latency":
                widths = deployed_widths()  # the knapsack's widths follow the masks, epoch by epoch
            binarize = topk_binarizer(widths)
            with frozen_parameters(model):
                model.to(ctx.device).eval()
                loader.sampler.set_epoch(epoch)
                sums = dict.fromkeys(("loss", "stability", "ratio", "consistency", "l1"), 0.0)
                batches = 0
                for i, (x, _y) in enumerate(loader):
                    x = x.to(ctx.device)
                    pick = int(torch.randint(len(CORRUPTIONS), (1,), generator=gen))
                    severity = int(torch.randint(1, 6, (1,), generator=gen))
                    tx = corrupt(x, CORRUPTIONS[pick], severity, seed=s.seed * 10_007 + epoch * 1_000 + i)
                    terms = csam_loss(forward, x, tx, masks, weights=weights, mu=o.csam_mu, eta=o.csam_eta,
                                      binarize=binarize)
                    opt.zero_grad(set_to_none=True)
                    terms.total.backward()
                    opt.step()
                    clamp_masks_(masks)
                    for key, value in (("loss", float(terms.total.detach())), ("stability", terms.stability),
                                       ("ratio", terms.ratio), ("consistency", terms.consistency), ("l1", terms.l1)):
                        sums[key] += value
                    batches += 1
                history.append({"epoch": epoch + 1, **{k: v / max(batches, 1) for k, v in sums.items()}})
        model.cpu()
        scores = LearnedImportance(learned_scores(dict(zip(names, masks, strict=True)), magnitude), "csam")(graph)
        keep, info = select(graph, scores, goal)
        graph.prune(keep)
        mean_mask = float(torch.cat([m.detach().cpu() for m in masks]).mean())
        return graph, MethodResult(self.name, steps=[info], details={
            "mask_epochs": o.mask_epochs, "mu": o.csam_mu, "eta": o.csam_eta, "tau": o.csam_tau,
            "lambda": {"stab": o.lambda_stab, "ratio": o.lambda_ratio, "consist": o.lambda_consist,
                       "l1": o.lambda_l1},
            "mean_mask": round(mean_mask, 4), "history": history})
