"""SAM and ASAM as a wrapper around any torch optimizer.

One SAM step is two forward/backward passes:

1. the *ascent pass* at the current weights w gives g; ``first_step()`` moves to w + eps with
   ``eps = rho * T^2 g / ||T g||`` (T = 1 for SAM, T = |w| + eta for ASAM);
2. the *descent pass* at w + eps gives the sharpness-aware gradient; ``second_step()`` puts w
   back and lets the base optimizer step with that gradient.

ASAM's scaling T applies to the parameters in ``scaled`` (default: all of them). The reference
ASAM implementation scales weights only and leaves biases at T = 1; ``weights_of(model)`` gives
that set (parameters named ``*.weight``: conv / linear weights and norm scales), and prunekit's
optimizers pass it.

The radius ``rho`` is either one float (the norm is taken over all perturbed parameters, as in
SAM/ASAM), or per parameter / per output channel (AdaSAP): a mapping ``parameter -> radius``
where the radius is a float (norm over that tensor) or a 1-D tensor with one radius per output
channel (dim 0; the norm is taken per channel). A callable returning either form is evaluated
at every ascent pass, so radii can follow importance scores that change during training.

Cheaper variant (``every=k > 1``; prunekit's own, not from the SAM / ASAM papers): the ascent pass
runs only on every k-th step; on the other steps ``first_step()`` re-applies the last perturbation
``eps`` unchanged (no gradient needed), so those steps cost one forward/backward. Training loops
ask ``needs_ascent_pass()``::

    optimizer.zero_grad()
    if sam.needs_ascent_pass():
        with ascent_context(model):                 # DDP: no all-reduce for the ascent pass
            loss_fn(model(x), y).backward()
        sam.first_step()                            # perturb, zero grads
        with running_stats_frozen(model):           # BatchNorm stats only from the first pass
            loss_fn(model(x), y).backward()
    else:
        sam.first_step()                            # re-apply the last eps, no grads needed
        loss_fn(model(x), y).backward()
    sam.second_step()                               # restore w, base step, zero grads

``sam.step(closure, model=model, scaler=scaler)`` does exactly this.

AMP (GradScaler): scale both losses as usual (``scaler.scale(loss).backward()``). ``eps`` is
homogeneous of degree 0 in g, so ``first_step()`` gives the same perturbation from scaled and
unscaled gradients: do NOT call ``scaler.unscale_`` before ``first_step()`` (GradScaler allows
one ``unscale_`` per optimizer per update and the descent pass needs it; if you must see the
unscaled ascent gradient, divide by ``scaler.get_scale()`` by hand). Parameters (channels) whose
scaled gradient overflowed get no perturbation. Pass the scaler to ``second_step(scaler=scaler)``: it restores
the weights first (always, even when the scaler then skips the update) and then calls
``scaler.step(base_optimizer)`` and ``scaler.update()``.

DDP: run the ascent pass under ``ascent_context(model)`` (``model.no_sync()`` for a
DistributedDataParallel module) so gradients are all-reduced once per step, in the descent
pass; each worker perturbs with its own local gradient (m-sharpness, as in the SAM paper).

LR schedulers: attach them to the base optimizer (torch schedulers require a
``torch.optim.Optimizer``); ``SAM.param_groups`` is the base optimizer's list.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from prunekit.errors import PrunekitError

ASAM_ETA = 0.01  # ASAM's default offset in T = |w| + eta
_NORM_EPS = 1e-12

Radius = float | Tensor
RadiusMap = Mapping[Tensor, Radius]
RhoSpec = float | RadiusMap | Callable[[], float | RadiusMap]


def channel_perturbation(
    weight: Tensor, grad: Tensor, radii: Radius, *, adaptive: bool, eta: float = ASAM_ETA
) -> Tensor:
    """Per-output-channel perturbation ``eps_i = rho_i * T_i^2 g_i / ||T_i g_i||``.

    Channel i is ``weight[i]`` (dim 0; a 0-d or 1-d tensor has one element per channel).
    ``radii`` is a float (same radius for every channel) or a tensor of shape ``(C,)``.
    T is ``|w| + eta`` when ``adaptive`` (ASAM) and the identity otherwise (SAM).
    Channels whose gradient is not finite (an AMP overflow) get eps = 0.
    """
    return coupled_channel_perturbation([weight], [grad], radii, adaptive=[adaptive], eta=eta)[0]


def coupled_channel_perturbation(
    weights: list[Tensor], grads: list[Tensor], radii: Radius, *, adaptive: list[bool], eta: float = ASAM_ETA
) -> list[Tensor]:
    """Per-channel perturbation of tensors that share their output channels (dim 0), e.g. a conv's
    weight and the BatchNorm gamma / beta after it: channel i of all of them is one neuron, whose
    perturbation has norm ``rho_i`` over all its entries together:

        eps_i = rho_i * T_i^2 g_i / ||T_i g_i||,   the norm over the neuron's entries in every tensor

    ``adaptive[k]``: ASAM's T = |w| + eta for tensor k (else T = 1). One tensor: `channel_perturbation`.
    """
    if not weights:
        return []
    channels = 1 if weights[0].dim() == 0 else weights[0].shape[0]
    tgs, ts = [], []
    for w, g, flag in zip(weights, grads, adaptive, strict=True):
        if (1 if w.dim() == 0 else w.shape[0]) != channels:
            raise PrunekitError("coupled tensors must have the same number of output channels (dim 0)")
        t = w.detach().abs() + eta if flag else None
        tgs.append((g.detach() * t if t is not None else g.detach()).reshape(channels, -1))
        ts.append(t)
    device = tgs[0].device
    sq = sum(tg.to(device).pow(2).sum(dim=1) for tg in tgs)
    norms = torch.sqrt(sq)
    scale = _radii_tensor(radii, channels, tgs[0]) / (norms + _NORM_EPS)
    finite = torch.isfinite(norms)
    out = []
    for w, tg, t in zip(weights, tgs, ts, strict=True):
        numerator = tg * t.reshape(channels, -1) if t is not None else tg
        eps = numerator * scale.to(tg.device)[:, None]
        eps = torch.where(finite.to(tg.device)[:, None], eps, torch.zeros_like(eps))
        out.append(eps.reshape(w.shape))
    return out


def global_perturbation(
    weights: list[Tensor],
    grads: list[Tensor],
    rho: float,
    *,
    adaptive: bool,
    eta: float = ASAM_ETA,
    scaled: list[bool] | None = None,
) -> list[Tensor]:
    """SAM/ASAM perturbation with one radius: ``eps = rho * T^2 g / ||T g||``, norm over all tensors.

    With ``adaptive``, T = |w| + eta for the tensors whose ``scaled`` flag is True (all when
    None) and T = 1 for the others (ASAM's reference code: biases unscaled). Returns all zeros
    when any gradient is not finite (an AMP overflow step).
    """
    if not weights:
        return []
    flags = [adaptive and (scaled is None or bool(scaled[i])) for i in range(len(weights))]
    tgs = [
        g.detach() * (w.detach().abs() + eta) if flag else g.detach()
        for w, g, flag in zip(weights, grads, flags, strict=True)
    ]
    device = tgs[0].device
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(tg).to(device) for tg in tgs]))
    scale = rho / (norm + _NORM_EPS)
    finite = torch.isfinite(norm)
    out = []
    for w, tg, flag in zip(weights, tgs, flags, strict=True):
        eps = (tg * (w.detach().abs() + eta) if flag else tg) * scale.to(tg.device)
        out.append(torch.where(finite.to(tg.device), eps, torch.zeros_like(eps)))
    return out


def weights_of(model: nn.Module) -> list[Tensor]:
    """The parameters ASAM's reference implementation scales by T = |w| + eta: those named
    ``*.weight`` (conv / linear weights, norm scales), not biases."""
    return [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "weight"]


def _radii_tensor(radii: Radius, channels: int, like: Tensor) -> Tensor:
    if isinstance(radii, Tensor):
        r = radii.detach().to(device=like.device, dtype=like.dtype).reshape(-1)
        if r.numel() == 1:
            return r.expand(channels)
        if r.numel() != channels:
            raise PrunekitError(
                f"per-channel radius has {r.numel()} entries, the parameter has {channels} output channels",
                "give one radius per output channel (dim 0) or a single float",
            )
        return r
    return torch.full((channels,), float(radii), device=like.device, dtype=like.dtype)


def _check_radius(value: Any, what: str) -> None:
    if isinstance(value, Tensor):
        bad = not bool(torch.isfinite(value).all()) or bool((value < 0).any())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        bad = not math.isfinite(value) or value < 0
    else:
        raise PrunekitError(f"{what} must be a float or a tensor of radii, got {type(value).__name__}")
    if bad:
        raise PrunekitError(
            f"{what} must be finite and >= 0", "SAM's rho is a radius, e.g. 0.05 (SAM) or 2.0 (ASAM)"
        )


def _check_rho_spec(rho: Any) -> None:
    if callable(rho) and not isinstance(rho, Tensor):
        return  # checked at every ascent pass, when it is evaluated
    if isinstance(rho, Mapping):
        for value in rho.values():
            _check_radius(value, "rho")
        return
    if isinstance(rho, Tensor):
        raise PrunekitError("a tensor rho must be given per parameter", "pass {parameter: radii} instead")
    _check_radius(rho, "rho")


class SAM:
    """Sharpness-aware wrapper around ``base_optimizer`` (SAM, or ASAM with ``adaptive=True``).

    ``params``: the parameters to perturb (None: every parameter of the base optimizer).
    ``rho``: float radius, ``{parameter: float | per-output-channel tensor}`` (parameters missing
    from the mapping are not perturbed), or a zero-argument callable returning either, evaluated
    at each ascent pass. ``eta``: ASAM's offset in ``T = |w| + eta``. ``every``: run the ascent
    pass every ``every`` steps and re-use the last perturbation in between (prunekit's own cheaper
    variant, not from a paper). ``scaled``: the parameters ASAM's T = |w| + eta applies to (None:
    all; ``weights_of(model)``: weights only, as ASAM's reference code). ``coupled``: groups of
    parameters whose output channels are the same neurons (a conv weight, the BatchNorm gamma and
    beta after it); with per-channel radii each neuron is perturbed with one norm over the group,
    using the radii given for the group's first parameter.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | None,
        base_optimizer: torch.optim.Optimizer,
        rho: RhoSpec = 0.05,
        adaptive: bool = False,
        eta: float = ASAM_ETA,
        every: int = 1,
        scaled: Iterable[Tensor] | None = None,
        coupled: Iterable[Sequence[Tensor]] = (),
    ) -> None:
        if not isinstance(base_optimizer, torch.optim.Optimizer):
            raise PrunekitError(
                f"base_optimizer must be a torch.optim.Optimizer, got {type(base_optimizer).__name__}"
            )
        _check_rho_spec(rho)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise PrunekitError(f"every must be an integer >= 1, got {every!r}", "1 = full SAM on every step")
        if not math.isfinite(eta) or eta < 0:
            raise PrunekitError(f"eta must be finite and >= 0, got {eta}")
        self.base_optimizer = base_optimizer
        if params is None:
            params = [p for group in base_optimizer.param_groups for p in group["params"]]
        self.params: list[Tensor] = list(params)
        self.rho = rho
        self.adaptive = adaptive
        self.eta = eta
        self.every = every
        self._scaled: set[int] | None = None if scaled is None else {id(p) for p in scaled}
        self.coupled: list[list[Tensor]] = [list(group) for group in coupled]
        self.step_count = 0  # completed steps (second_step calls)
        self.ascent_passes = 0  # perturbations computed from a fresh gradient
        self._eps: dict[Tensor, Tensor] = {}
        self._backup: dict[Tensor, Tensor] = {}
        self._perturbed = False

    # --- optimizer-like surface -------------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base_optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base_optimizer.state_dict(), "step_count": self.step_count,
                "ascent_passes": self.ascent_passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state["base"])
        self.step_count = int(state["step_count"])
        self.ascent_passes = int(state.get("ascent_passes", 0))
        self._eps.clear()  # the next step recomputes the perturbation

    def set_rho(self, rho: RhoSpec) -> None:
        """Change the radius (validated); takes effect at the next ascent pass."""
        _check_rho_spec(rho)
        self.rho = rho

    def reset(self) -> None:
        """Forget the remembered perturbation so the next step runs a fresh ascent pass."""
        self._eps.clear()

    @property
    def perturbed(self) -> bool:
        """True between ``first_step()`` and ``second_step()`` / ``restore()``."""
        return self._perturbed

    # --- the two steps ----------------------------------------------------------------------
    def needs_ascent_pass(self) -> bool:
        """Whether this step needs the extra ascent forward/backward before ``first_step()``.

        True on every step with ``every=1``; with ``every=k`` on steps 0, k, 2k, ... and whenever
        there is no usable remembered perturbation (first step, after ``reset()``, or when a
        parameter changed shape, e.g. after channels were removed).
        """
        if self.every == 1 or not self._eps or self.step_count % self.every == 0:
            return True
        return any(p not in self._eps or self._eps[p].shape != p.shape for p in self.params)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Move the weights to ``w + eps`` and remember ``eps``.

        On an ascent step ``eps`` comes from the current gradients (of the ascent pass); otherwise
        the last ``eps`` is re-used and no gradient is needed.
        """
        if self._perturbed:
            raise RuntimeError("SAM.first_step() called twice without second_step()/restore()")
        if self.needs_ascent_pass():
            self._eps = self._compute_eps()
            self.ascent_passes += 1
        for p, e in self._eps.items():
            self._backup[p] = p.detach().clone()
            p.add_(e)
        self._perturbed = True
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Put the weights back to where ``first_step()`` found them."""
        for p, w in self._backup.items():
            p.copy_(w)
        self._backup.clear()
        self._perturbed = False
        if self.every == 1:
            self._eps.clear()  # never re-used: free the memory

    def second_step(self, zero_grad: bool = True, scaler: torch.amp.GradScaler | None = None) -> None:
        """Restore the weights, then step the base optimizer with the gradient taken at ``w + eps``.

        With an AMP ``scaler`` this calls ``scaler.step(base_optimizer)`` and ``scaler.update()``.
        """
        if not self._perturbed:
            raise RuntimeError("SAM.second_step() called without first_step()")
        self.restore()
        if scaler is None:
            self.base_optimizer.step()
        else:
            scaler.step(self.base_optimizer)
            scaler.update()
        self.step_count += 1
        if zero_grad:
            self.zero_grad()

    def step(
        self,
        closure: Callable[[], Any],
        *,
        model: nn.Module | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> Any:
        """One full step. ``closure`` runs forward + backward (scaled, with AMP) and returns the loss.

        Zeroes gradients first. With ``model``: the ascent pass runs under ``ascent_context(model)``
        and the second pass with BatchNorm running statistics frozen. Returns the loss of the
        first pass run this step (the unperturbed loss on ascent steps).
        """
        self.zero_grad()
        if self.needs_ascent_pass():
            with ascent_context(model):
                loss = closure()
            self.first_step(zero_grad=True)
            with running_stats_frozen(model) if model is not None else contextlib.nullcontext():
                try:
                    closure()
                except BaseException:
                    self.restore()
                    raise
        else:
            self.first_step(zero_grad=True)
            try:
                loss = closure()
            except BaseException:
                self.restore()
                raise
        self.second_step(zero_grad=True, scaler=scaler)
        return loss

    # --- internals --------------------------------------------------------------------------
    def _compute_eps(self) -> dict[Tensor, Tensor]:
        rho = self.rho() if callable(self.rho) and not isinstance(self.rho, Tensor) else self.rho
        _check_rho_spec(rho)
        with_grad = [p for p in self.params if p.grad is not None]
        if not with_grad:
            raise RuntimeError("SAM ascent step without gradients: run the ascent forward/backward first")
        if isinstance(rho, Mapping):
            out: dict[Tensor, Tensor] = {}
            grads = {id(p) for p in with_grad}
            for group in self.coupled:  # neurons spread over several tensors: one norm per neuron
                members = [p for p in group if id(p) in grads and p in rho]
                if not members or any(p in out for p in members):
                    continue
                eps = coupled_channel_perturbation(
                    members, [p.grad for p in members], rho[members[0]],
                    adaptive=[self.adaptive and self._is_scaled(p) for p in members], eta=self.eta)
                out.update(zip(members, eps, strict=True))
            for p in with_grad:
                if p in rho and p not in out:
                    out[p] = channel_perturbation(p, p.grad, rho[p], adaptive=self.adaptive and self._is_scaled(p),
                                                  eta=self.eta)
            return out
        eps = global_perturbation(with_grad, [p.grad for p in with_grad], float(rho), adaptive=self.adaptive,
                                  eta=self.eta, scaled=[self._is_scaled(p) for p in with_grad])
        return dict(zip(with_grad, eps, strict=True))

    def _is_scaled(self, p: Tensor) -> bool:
        return self._scaled is None or id(p) in self._scaled


def ascent_context(model: nn.Module | None) -> contextlib.AbstractContextManager[Any]:
    """``model.no_sync()`` for a DistributedDataParallel model, a null context otherwise.

    Run SAM's ascent forward/backward inside it so DDP all-reduces gradients only in the
    descent pass (the one the optimizer steps with).
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def disable_running_stats(model: nn.Module) -> None:
    """Stop BatchNorm layers from updating running statistics (momentum 0), remembering the state.

    Use for SAM's second forward pass so the statistics follow the unperturbed weights only.
    """
    for m in model.modules():
        if isinstance(m, _BatchNorm) and not hasattr(m, "_prunekit_momentum"):
            m._prunekit_momentum = m.momentum
            nbt = m.num_batches_tracked
            m._prunekit_batches = nbt.detach().clone() if nbt is not None else None
            m.momentum = 0.0


def enable_running_stats(model: nn.Module) -> None:
    """Undo ``disable_running_stats`` (momentum and batch counter restored)."""
    for m in model.modules():
        if isinstance(m, _BatchNorm) and hasattr(m, "_prunekit_momentum"):
            m.momentum = m._prunekit_momentum
            if m._prunekit_batches is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(m._prunekit_batches)
            del m._prunekit_momentum
            del m._prunekit_batches


@contextlib.contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Context manager form of ``disable_running_stats`` / ``enable_running_stats``."""
    disable_running_stats(model)
    try:
        yield
    finally:
        enable_running_stats(model)
