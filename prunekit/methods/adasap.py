"""AdaSAP building blocks: per-channel perturbation radii from importance, and the perturbation.

AdaSAP (arXiv 2306.14306) warms a network up for pruning with a SAM/ASAM step whose radius is
chosen per output channel ("neuron"): channels likely to be pruned (low importance) get a large
radius so they settle in flat regions, important ones a small radius. The printed Eq. 2-3 are
garbled (as printed, rho_i = -alpha_i * s_i would be negative for positive scores); the text's
intent, implemented here, is the linear map of the min-max normalised score

    rho_i = rho_max - (s_i - s_min) / (s_max - s_min) * (rho_max - rho_min)

so the least important channel gets rho_max and the most important rho_min. The perturbation
per channel is ``eps_i = rho_i * T^2 g_i / ||T g_i||`` (T = |w| + eta for ASAM, identity for SAM),
computed by ``prunekit.optim.sam.channel_perturbation``; feed the radii to
``prunekit.optim.SAM(rho={param: radii})`` or ``rho=radius_fn(...)`` to recompute them each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from prunekit.errors import PrunekitError
from prunekit.optim.sam import ASAM_ETA, channel_perturbation

# Paper defaults (Section 4, "Hyperparameters"): ASAM is the main setting; with plain SAM the
# paper lowers rho_max to 0.1 and fine-tunes with rho 0.05.
RHO_MIN = 0.01
RHO_MAX_ASAM = 2.0
FINETUNE_RHO_ASAM = 2.0
RHO_MAX_SAM = 0.1
FINETUNE_RHO_SAM = 0.05
PRUNE_EVERY = 30  # iterations between pruning steps
WARMUP_EPOCHS = 10


@dataclass(frozen=True)
class AdaSAPHyperparams:
    """AdaSAP settings; ``for_optimizer('asam' | 'sam')`` gives the paper's defaults."""

    adaptive: bool = True
    rho_min: float = RHO_MIN
    rho_max: float = RHO_MAX_ASAM
    finetune_rho: float = FINETUNE_RHO_ASAM
    eta: float = ASAM_ETA
    prune_every: int = PRUNE_EVERY

    @classmethod
    def for_optimizer(cls, name: str) -> AdaSAPHyperparams:
        if name == "asam":
            return cls()
        if name == "sam":
            return cls(adaptive=False, rho_max=RHO_MAX_SAM, finetune_rho=FINETUNE_RHO_SAM)
        raise PrunekitError(f"AdaSAP runs with 'sam' or 'asam', got {name!r}")

    def validate(self) -> None:
        _check_range(self.rho_min, self.rho_max)
        if not self.finetune_rho >= 0:
            raise PrunekitError(f"fine-tune rho must be >= 0, got {self.finetune_rho}")
        if self.prune_every < 1:
            raise PrunekitError(f"prune_every must be >= 1, got {self.prune_every}")


def _check_range(rho_min: float, rho_max: float) -> None:
    if not (0 <= rho_min <= rho_max) or rho_max == float("inf"):
        raise PrunekitError(
            f"AdaSAP needs 0 <= rho_min <= rho_max < inf, got rho_min={rho_min}, rho_max={rho_max}",
            f"paper defaults: rho_min {RHO_MIN}, rho_max {RHO_MAX_ASAM} (ASAM) or {RHO_MAX_SAM} (SAM)",
        )


def channel_radii(scores: Tensor, rho_min: float = RHO_MIN, rho_max: float = RHO_MAX_ASAM) -> Tensor:
    """Radius per channel, linear in the min-max normalised score, reversed.

    Lowest score -> ``rho_max``, highest -> ``rho_min``; all radii lie in ``[rho_min, rho_max]``.
    When all scores are equal there is no ranking and every channel gets the midpoint.
    The result is detached (radii are not trained).
    """
    _check_range(rho_min, rho_max)
    s = scores.detach().to(torch.float32 if not scores.is_floating_point() else scores.dtype)
    if s.numel() == 0:
        return s.clone()
    if not bool(torch.isfinite(s).all()):
        raise PrunekitError("importance scores contain NaN or inf", "check the importance criterion")
    lo, hi = s.min(), s.max()
    if bool(hi == lo):
        return torch.full_like(s, (rho_min + rho_max) / 2)
    normalised = (s - lo) / (hi - lo)
    return (rho_max - normalised * (rho_max - rho_min)).clamp(rho_min, rho_max)


def adaptive_perturbation(
    weight: Tensor, grad: Tensor, radii: Tensor | float, adaptive: bool = True, eta: float = ASAM_ETA
) -> Tensor:
    """``eps_i = rho_i * T^2 g_i / ||T g_i||`` per output channel i (dim 0 of ``weight``).

    T = ``|w| + eta`` when ``adaptive`` (ASAM), identity otherwise (SAM). Same shape as ``weight``.
    """
    return channel_perturbation(weight, grad, radii, adaptive=adaptive, eta=eta)


def magnitude_scores(weight: Tensor) -> Tensor:
    """L2 norm of each output channel (dim 0) of ``weight``: AdaSAP's default score psi."""
    w = weight.detach()
    return torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1) if w.dim() else w.abs().reshape(1)


def radii_for_parameters(
    scores: Mapping[Tensor, Tensor],
    rho_min: float = RHO_MIN,
    rho_max: float = RHO_MAX_ASAM,
    per_layer: bool = False,
) -> dict[Tensor, Tensor]:
    """``{parameter: per-channel radii}`` for ``SAM(rho=...)`` from ``{parameter: per-channel scores}``.

    With ``per_layer=False`` (the paper: s_min / s_max over the network) scores are normalised
    over all parameters together, so they must be comparable across layers; with
    ``per_layer=True`` each parameter's scores are normalised on their own.
    """
    params = list(scores)
    if not params:
        return {}
    if per_layer:
        return {p: channel_radii(scores[p], rho_min, rho_max) for p in params}
    flat = torch.cat([scores[p].detach().reshape(-1).float().cpu() for p in params])
    radii = channel_radii(flat, rho_min, rho_max)
    out: dict[Tensor, Tensor] = {}
    start = 0
    for p in params:
        n = scores[p].numel()
        out[p] = radii[start : start + n].to(device=p.device, dtype=p.dtype)
        start += n
    return out


def radius_fn(
    params: Iterable[Tensor],
    rho_min: float = RHO_MIN,
    rho_max: float = RHO_MAX_ASAM,
    score: Callable[[Tensor], Tensor] = magnitude_scores,
    per_layer: bool = False,
) -> Callable[[], dict[Tensor, Tensor]]:
    """A callable for ``SAM(rho=...)`` that rescores ``params`` with ``score`` at every ascent pass.

    AdaSAP recomputes s_min / s_max "at each gradient step"; this does that for scores that are a
    function of the parameter itself (magnitude by default). For coupled channels (a conv and its
    BatchNorm) build the mapping yourself and use ``radii_for_parameters``.
    """
    plist = list(params)
    _check_range(rho_min, rho_max)

    def compute() -> dict[Tensor, Tensor]:
        return radii_for_parameters({p: score(p) for p in plist}, rho_min, rho_max, per_layer)

    return compute
