"""C-SAM building blocks: soft channel masks searched with mask-space sharpness losses.

C-SAM (arXiv 2601.20301) freezes the weights and learns soft masks C in [0, 1] per channel.
Sharpness is taken in mask space: masks are perturbed with uniform noise,
``C_xi = clip(C + xi, 0, 1)``, ``xi ~ U(-mu, mu)``, and the loss asks predictions to stay stable
under that noise and under an input transformation T(x):

    L = lambda_stab * L_stab + lambda_ratio * L_ratio + lambda_consist * L_consist + lambda_1 * L1(C)

This module knows nothing about how a mask reaches the network: ``csam_loss`` takes a
``forward(x, masks) -> logits`` callable (prunekit's pruning wrapper applies one mask vector per
channel group with forward hooks). Stability and ratio losses take probabilities; the
consistency loss takes logits (it needs log-probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from prunekit.errors import PrunekitError
from prunekit.methods.ste import ste_binarize

# Paper defaults.
LAMBDA_STAB = 5.0
LAMBDA_RATIO = 1.0
LAMBDA_CONSIST = 1.0
MU = 0.5
ETA = 1.0
TAU = 30.0
# Not given in the material we have; prunekit's choice (L1 is a mean, so this is per-mask-entry).
LAMBDA_L1 = 0.01
MARGIN_EPS = 1e-6

MaskForward = Callable[[Tensor, Sequence[Tensor]], Tensor]


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
    """Mean absolute mask value over all entries (the L1 norm divided by the number of entries).

    Dividing by the count keeps ``lambda_1`` meaningful for any network size.
    """
    tensors = [masks] if isinstance(masks, Tensor) else list(masks)
    if not tensors:
        raise PrunekitError("l1_mask_loss needs at least one mask")
    total = sum(t.abs().sum() for t in tensors)
    return total / sum(t.numel() for t in tensors)


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
    binarize: Callable[[Tensor], Tensor] | None = None,
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
    * ``x`` under the soft C and under ``binarize(C)`` -> L_consist (KL soft || binary)

    ``binarize`` maps one mask to its straight-through binary version (default: threshold 0.5;
    pass a top-k binariser with the target widths). ``targets`` with ``weights.task > 0`` adds
    cross-entropy on the soft-mask logits.
    """
    weights.validate()
    if not masks:
        raise PrunekitError("csam_loss needs at least one mask")
    binarize = binarize or (lambda c: ste_binarize(c, threshold=0.5))
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
        consist = consistency_loss(logits_soft, forward(x, [binarize(c) for c in masks]))
    if weights.task > 0 and targets is not None:
        task = F.cross_entropy(logits_soft, targets)
    l1 = l1_mask_loss(masks)
    total = (weights.stab * stab + weights.ratio * ratio + weights.consist * consist
             + weights.l1 * l1 + weights.task * task)
    return CSAMLossTerms(total, *(float(t.detach()) for t in (stab, ratio, consist, l1, task)))
