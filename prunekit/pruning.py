"""Structured channel pruning over torch-pruning's dependency graph (DepGraph), behind one small API.

torch-pruning finds which layers are coupled (residual adds, concats, depthwise convs, norms) and
removes channels consistently; this module adds what prunekit needs around it:

- `ChannelGroup`: one prunable group (a root layer's output channels and everything coupled to
  them), with the conv/linear layers whose input or output width it sets (the latency model's view);
- importance scores per group (magnitude L2, first-order Taylor);
- `PruningGraph.prune(keep)`: physical removal of everything not kept, recorded as a JSON-able
  history so a pruned model is saved as *base architecture + plan + safetensors weights*
  and rebuilt without unpickling any code (`rebuild_pruned`);
- channel masks applied through forward hooks (for C-SAM / S2AP mask search).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.importance import get_importance

PLAN_FORMAT = "prunekit-plan/1"


@dataclass
class ChannelGroup:
    """A set of coupled channels that must be pruned together, named after its root layer."""

    name: str
    width: int
    out_layers: list[str] = field(default_factory=list)
    in_layers: list[str] = field(default_factory=list)
    # (module, channel indices in that module, matching positions in the group) where a mask applies
    mask_points: list[tuple[nn.Module, list[int], list[int]]] = field(default_factory=list, repr=False)


def find_classifier(model: nn.Module, example_input: torch.Tensor) -> list[nn.Module]:
    """The layer(s) producing the model's logits: their output width is the class count, never pruned."""
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        for h in hooks:
            h.remove()
    return order[-1:] if order else []


class PruningGraph:
    """A model plus its dependency graph; prunes the model in place."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor, model_name: str = "model") -> None:
        self.model = model
        self.example_input = example_input
        self.model_name = model_name
        self.ignored = find_classifier(model, example_input)
        was_training = model.training
        model.eval()
        try:
            self.dg = tp.DependencyGraph().build_dependency(
                model, example_inputs=example_input, verbose=False
            )
            self.refresh()
        except PrunekitError:
            raise
        except Exception as exc:  # torch-pruning raises many error types for untraceable graphs
            raise PrunekitError(
                f"model '{model_name}' cannot be traced for structured pruning by torch-pruning "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})",
                "use a supported architecture (most torchvision CNNs work; ShuffleNetV2, Swin, RAFT do not)",
            ) from exc
        finally:
            model.train(was_training)
        if not self.groups:
            raise PrunekitError(
                f"model '{model_name}' has no prunable channel groups",
                "prunekit prunes Conv2d/Linear output channels; this model has none outside the classifier",
            )
        self.history: list[list[object]] = []

    # -- structure -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute the groups from the current (possibly pruned) model."""
        names = {m: n for n, m in self.model.named_modules()}
        self.modules = {n: m for m, n in names.items()}
        self.groups: list[ChannelGroup] = []
        self._tp_groups: dict[str, tp.dependency.Group] = {}
        for group in self.dg.get_all_groups(ignored_layers=list(self.ignored)):
            root = group[0].dep.target.module
            name = names[root]
            cg = ChannelGroup(name=name, width=len(group[0].idxs))
            bn_points, layer_points = [], []
            for item in group:
                dep, idxs = item.dep, list(item.idxs)
                mod = dep.target.module
                if not isinstance(mod, nn.Module) or mod not in names:
                    continue
                is_out = self.dg.is_out_channel_pruning_fn(dep.handler) or dep.handler in (
                    tp.prune_depthwise_conv_out_channels,
                )
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    is_dw = isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == mod.out_channels
                    if is_out or is_dw:
                        if names[mod] not in cg.out_layers:
                            cg.out_layers.append(names[mod])
                            layer_points.append((mod, idxs, [int(i) for i in item.root_idxs]))
                    elif names[mod] not in cg.in_layers:
                        cg.in_layers.append(names[mod])
                elif is_out and isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    bn_points.append((mod, idxs, [int(i) for i in item.root_idxs]))
            # Masks act after normalisation (a mask before a BatchNorm would be normalised away).
            cg.mask_points = bn_points or layer_points
            self.groups.append(cg)
            self._tp_groups[name] = group

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def widths(self) -> dict[str, int]:
        """Current width of every group."""
        return {g.name: g.width for g in self.groups}

    # -- importance ------------------------------------------------------------------------------
    def importance(
        self,
        kind: str = "magnitude",
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        max_batches: int = 8,
    ) -> dict[str, torch.Tensor]:
        """Per-channel importance of every group (higher = keep), on one scale for the whole model.

        A shortcut for `prunekit.importance.get_importance(kind)(self, batches)`; see that module
        for the definitions (magnitude: output scale x consuming weights; taylor / halp: HALP's
        BN Taylor score).
        """
        options: dict[str, object] = {}
        if kind in ("taylor", "halp"):
            options = {"max_batches": max_batches, "loss_fn": loss_fn}
        return get_importance(kind, **options)(self, batches)

    # -- removal ---------------------------------------------------------------------------------
    def prune(self, keep: dict[str, torch.Tensor | list[int]]) -> None:
        """Physically remove, in every named group, the channels not listed in `keep[name]`."""
        for name, kept in keep.items():
            g = self.group(name)
            kept_set = {int(i) for i in (kept.tolist() if isinstance(kept, torch.Tensor) else kept)}
            if not kept_set:
                raise PrunekitError(f"group '{name}' would keep no channels", "keep at least one channel per group")
            if any(i < 0 or i >= g.width for i in kept_set):
                raise PrunekitError(f"group '{name}': kept channel index out of range 0..{g.width - 1}")
            self._remove(g, [i for i in range(g.width) if i not in kept_set])
        self.refresh()

    def _remove(self, g: ChannelGroup, remove: list[int]) -> None:
        if not remove:
            return
        root = self.modules[g.name]
        pruner = self.dg.get_pruner_of_module(root)
        tp_group = self.dg.get_pruning_group(root, pruner.prune_out_channels, remove)
        if not self.dg.check_pruning_group(tp_group):
            raise PrunekitError(f"torch-pruning refused to prune group '{g.name}' to {g.width - len(remove)} channels")
        tp_group.prune(record_history=False)
        g.width -= len(remove)
        self.history.append([g.name, True, sorted(remove)])

    def plan(self) -> dict[str, object]:
        """The JSON-able pruning plan: replaying it on the dense base model gives this architecture."""
        return {
            "format": PLAN_FORMAT,
            "history": [[n, bool(o), [int(i) for i in idx]] for n, o, idx in self.history],
            "widths": self.widths(),
        }

    # -- masks (C-SAM / S2AP) --------------------------------------------------------------------
    @contextlib.contextmanager
    def masked(self, masks: dict[str, torch.Tensor]) -> Iterator[None]:
        """Multiply each group's channels by `masks[name]` (shape [width]) during forward passes.

        The masks are read at call time, so they may be tensors that require grad or be replaced
        in place between forward passes.
        """
        handles = []
        for g in self.groups:
            if g.name not in masks:
                continue
            for module, idxs, root_idxs in g.mask_points:
                handles.append(module.register_forward_hook(_mask_hook(masks, g.name, idxs, root_idxs)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def _mask_hook(
    masks: dict[str, torch.Tensor], name: str, idxs: list[int], root_idxs: list[int]
) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor]:
    idx_t = torch.tensor(idxs, dtype=torch.long)
    root_t = torch.tensor(root_idxs, dtype=torch.long)

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        mask = masks[name]
        full = torch.ones(output.shape[1], dtype=output.dtype, device=output.device)
        full = full.index_put((idx_t.to(output.device),), mask.to(output.dtype)[root_t.to(mask.device)].to(output.device))
        shape = [1, -1] + [1] * (output.dim() - 2)
        return output * full.view(shape)

    return hook


def apply_plan(model: nn.Module, plan: dict[str, object], example_input: torch.Tensor, model_name: str) -> nn.Module:
    """Replay a saved plan on a freshly built dense model (in place), giving the pruned architecture."""
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise PrunekitError(f"not a prunekit plan (expected format {PLAN_FORMAT})", "re-run prunekit compress")
    history = plan.get("history")
    if not isinstance(history, list):
        raise PrunekitError("plan has no 'history' list", "re-run prunekit compress")
    graph = PruningGraph(model, example_input, model_name)
    for entry in history:
        try:
            name, _is_out, removed = entry
            g = graph.group(str(name))
            remove = sorted({int(i) for i in removed})
        except (KeyError, TypeError, ValueError) as exc:
            raise PrunekitError(f"plan entry {str(entry)[:80]} does not match model '{model_name}'") from exc
        if remove and (remove[0] < 0 or remove[-1] >= g.width or len(remove) >= g.width):
            raise PrunekitError(f"plan entry for '{name}' removes channels the model does not have")
        graph._remove(g, remove)
    graph.refresh()
    expected = plan.get("widths")
    if isinstance(expected, dict) and expected != graph.widths():
        diff = next(k for k in set(expected) | set(graph.widths()) if expected.get(k) != graph.widths().get(k))
        raise PrunekitError(f"replayed plan gives a different width for '{diff}' than recorded")
    return model


def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on `example_input`, counted by torch-pruning."""
    was_training = model.training
    macs, params = tp.utils.count_ops_and_params(model.eval(), example_input)
    model.train(was_training)
    return int(macs), int(params)


def select_by_ratio(
    scores: dict[str, torch.Tensor], ratio: float, round_to: int = 1, min_keep: int = 1
) -> dict[str, torch.Tensor]:
    """Uniform selection: keep the top (1 - ratio) of each group's channels by score.

    `ratio` is the fraction of *channels* removed per group; widths are rounded to a multiple of
    `round_to` where the group is wider than `round_to`.
    """
    if not 0.0 <= ratio < 1.0:
        raise PrunekitError(f"prune ratio must be in [0, 1), got {ratio}")
    return {
        name: torch.topk(s, min(kept_width(len(s), 1.0 - ratio, round_to, min_keep), len(s))).indices.sort().values
        for name, s in scores.items()
    }


def kept_width(width: int, keep_fraction: float, round_to: int = 1, min_keep: int = 1) -> int:
    """Channels kept of `width` at `keep_fraction`, rounded to a multiple of `round_to` where the
    group is wider than `round_to` (never below `min_keep`, never above `width`)."""
    k = max(min_keep, int(round(width * keep_fraction)))
    if round_to > 1 and width > round_to:
        k = max(round_to, int(round(k / round_to)) * round_to)
    return min(k, width)
