"""Structured channel pruning over torch-pruning's dependency graph (DepGraph), behind one small API.

torch-pruning finds which layers are coupled (residual adds, concats, depthwise convs, norms) and
removes channels consistently; this module adds what prunekit needs around it:

- `ChannelGroup`: one prunable group (a root layer's output channels and everything coupled to
  them), with the conv/linear layers whose input or output width it sets (the latency model's view);
- importance scores per group (magnitude L2, first-order Taylor);
- `PruningGraph.prune(keep)`: physical removal of everything not kept, recorded as a JSON-able
  history so a pruned model is saved as *base architecture + plan + safetensors weights*
  and rebuilt without unpickling any code (`rebuild_pruned`);
- channel masks applied through forward hooks (for C-SAM / S2AP mask search);
- what torch-pruning cannot do alone (`prunekit.structures`): attention heads, grouped convs,
  channel shuffles, channels-last reshapes. A group whose channels must go in units (whole heads,
  the same position in every conv group) says so in `ChannelGroup.step` / `units`, and `prune`
  only ever removes whole units;
- bounded resources (`prunekit.guard`): building the graph and pruning run under a wall-clock and
  memory ceiling and end in a one-line error instead of running the machine out of memory.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from prunekit import structures
from prunekit.errors import PrunekitError
from prunekit.guard import guarded
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
    # Channels go in units of `step` (1: any channel alone). A conv with G groups keeps G, so each
    # unit is one position in every conv group (step = G); an attention head is a unit of head_dim
    # channels. Kept widths are multiples of `step`; `units` lists the units (None when step == 1).
    step: int = 1
    units: list[list[int]] | None = field(default=None, repr=False)


def find_classifier(model: nn.Module, example_input: torch.Tensor) -> list[nn.Module]:
    """The layer(s) producing the model's logits: their output width is the class count, never pruned.

    A model with an `output_layers()` method (prunekit.tasks.detection.DetectorNet) names them itself."""
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
    declared = getattr(model, "output_layers", None)
    if callable(declared):  # a network that names its own output layers (a detector's box/class convs)
        return list(declared())
    return order[-1:] if order else []


@contextlib.contextmanager
def _layer_stack(model: nn.Module) -> Iterator[list[str]]:
    """The names of the modules whose forward is running; after an exception, the last one is the
    layer it was raised in (an error can name it)."""
    names = {m: n for n, m in model.named_modules()}
    stack: list[str] = []

    def enter(mod: nn.Module, _args: object) -> None:
        stack.append(names.get(mod, type(mod).__name__))

    def leave(mod: nn.Module, _args: object, _out: object) -> None:
        if stack:
            stack.pop()

    handles = [h for m in model.modules() if m is not model
               for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def _in_layer(stack: list[str]) -> str:
    return f" in layer '{stack[-1]}'" if stack else ""


def _runs_on(model: nn.Module, example_input: torch.Tensor, model_name: str) -> list[nn.Module]:
    """`find_classifier`, failing in one line when the model does not run on the example input."""
    try:
        with _layer_stack(model) as stack:
            return find_classifier(model, example_input)
    except Exception as exc:  # the model's own checks (ViT: "Wrong image height!") or shape errors
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise PrunekitError(
            f"model '{model_name}' does not run on an input of shape {list(example_input.shape)}{_in_layer(stack)} "
            f"({type(exc).__name__}: {text})",
            "check --input-size: ViT and MaxViT need 224, Inception v3 at least 75",
        ) from exc


class _Graph(tp.DependencyGraph):
    """torch-pruning's graph, with channel shuffles found right after tracing (before its index
    mapping misreads their reshapes)."""

    shuffles: set[object]

    def _trace(self, *args: object, **kwargs: object) -> dict[object, object]:
        self.module2node = super()._trace(*args, **kwargs)
        self.shuffles = structures.channel_shuffles(self)
        return self.module2node

    def build_dependency(self, *args: object, **kwargs: object) -> _Graph:
        super().build_dependency(*args, **kwargs)
        structures.fix_splits(self)
        tp.dependency.index_mapping.update_index_mapping(self)
        return self


class PruningGraph:
    """A model plus its dependency graph; prunes the model in place.

    Attention blocks are converted first (`structures.prepare`); graph building runs under the
    resource guard (`prunekit.guard`), as does every `prune`.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, model_name: str = "model") -> None:
        self.model = model
        self.example_input = example_input
        self.model_name = model_name
        self.fixed: dict[str, str] = {}  # groups that must stay whole -> why
        was_training = model.training
        stack: list[str] = []
        try:
            with guarded("building the dependency graph", model_name):
                structures.prepare(model)
                self.ignored = _runs_on(model, example_input, model_name)
                with _layer_stack(model) as stack:
                    self._build()
                stack.clear()  # a failure after tracing is in no layer
                self.refresh()
        except PrunekitError:
            raise
        except Exception as exc:  # torch-pruning raises many error types for untraceable graphs
            raise PrunekitError(
                f"model '{model_name}' cannot be traced for structured pruning by torch-pruning{_in_layer(stack)} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})",
                "use a supported architecture (README 'Model coverage' lists what prunes)",
            ) from exc
        finally:
            model.train(was_training)
        if not self.groups:
            why = f" ({next(iter(self.fixed.values()))})" if self.fixed else ""
            raise PrunekitError(
                f"model '{model_name}' has no prunable channel groups{why}",
                "prunekit prunes Conv2d/Linear output channels; this model has none outside the classifier",
            )
        self.history: list[list[object]] = []

    # -- structure -------------------------------------------------------------------------------
    def _build(self) -> None:
        was_training = self.model.training
        self.model.eval()
        try:
            # A network whose forward has data-dependent steps (a two-stage detector's NMS'd
            # proposals) names a static path through the same layers for tracing.
            static = getattr(self.model, "trace_forward", None)
            kwargs = {"forward_fn": lambda m, x: m.trace_forward(x)} if callable(static) else {}
            with structures.tracing(self.model):
                self.dg = _Graph().build_dependency(self.model, example_inputs=self.example_input, verbose=False,
                                                    **kwargs)
        finally:
            self.model.train(was_training)

    def _kinds_changed(self) -> bool:
        """Whether a layer changed kind under pruning (a x2 depthwise-multiplier conv pruned to
        depthwise): the graph's couplings were built for the old kind and must be rebuilt."""
        return any(
            isinstance(m, nn.Conv2d) and node.type != tp.ops.module2type(m)
            for m, node in self.dg.module2node.items()
        )

    def refresh(self) -> None:
        """Recompute the groups from the current (possibly pruned) model."""
        names = {m: n for n, m in self.model.named_modules()}
        self.modules = {n: m for m, n in names.items()}
        self.groups: list[ChannelGroup] = []
        self._tp_groups: dict[str, tp.dependency.Group] = {}
        self.fixed = {}
        heads = structures.head_linears(self.model)
        values = {id(a.v) for a in heads.values()}
        for group in self.dg.get_all_groups(ignored_layers=list(self.ignored)):
            root = group[0].dep.target.module
            name = names[root]
            cg = ChannelGroup(name=name, width=len(group[0].idxs))
            bn_points: dict[nn.Module, tuple] = {}
            layer_points, v_points = [], []
            constrained = []
            shuffled = False
            misread = ""
            for item in group:
                dep, idxs = item.dep, list(item.idxs)
                shuffled = shuffled or dep.target in self.dg.shuffles
                mod = dep.target.module
                if not isinstance(mod, nn.Module) or mod not in names:
                    continue
                roots = [int(i) for i in item.root_idxs]
                is_out = self.dg.is_out_channel_pruning_fn(dep.handler) or dep.handler in (
                    tp.prune_depthwise_conv_out_channels,
                )
                if idxs and max(idxs) >= _channels(mod, is_out, idxs):
                    misread = misread or names[mod]
                key = structures.unit_key(mod, is_out, heads)
                if key is not None:
                    constrained.append((key, idxs, roots))
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    is_dw = isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == mod.out_channels
                    if is_out or is_dw:
                        if names[mod] not in cg.out_layers:
                            cg.out_layers.append(names[mod])
                            layer_points.append((mod, idxs, roots))
                            if id(mod) in values:
                                v_points.append((mod, idxs, roots))
                    elif names[mod] not in cg.in_layers:
                        cg.in_layers.append(names[mod])
                elif is_out and isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    bn_points[mod] = (mod, idxs, roots)
            reason = self._set_units(cg, constrained, shuffled)
            if misread:
                reason = f"torch-pruning maps its channels past the width of '{misread}' (a reshape it misreads)"
            if reason:
                self.fixed[name] = reason
                continue
            cg.mask_points = v_points or self._mask_points(layer_points, bn_points)
            self.groups.append(cg)
            self._tp_groups[name] = group

    def _mask_points(self, producers: list[tuple], norms: dict[nn.Module, tuple]) -> list[tuple]:
        """Where a group's mask applies: after the BatchNorm a producer feeds alone (a mask before
        it would be normalised away), else on the producer's output. A BatchNorm that reads the
        group's channels next to other consumers (a pre-norm) is not a mask point: the others
        would see the unmasked channels. An attention head is silenced through its values."""
        points, seen = [], set()
        for mod, idxs, roots in producers:
            after = [n.module for n in self.dg.module2node[mod].outputs]
            point = norms[after[0]] if len(after) == 1 and after[0] in norms else (mod, idxs, roots)
            if id(point[0]) not in seen:
                seen.add(id(point[0]))
                points.append(point)
        return points

    @staticmethod
    def _set_units(cg: ChannelGroup, constrained: list, shuffled: bool) -> str | None:
        """Set `cg.step` / `cg.units`; return why the group must stay whole, or None."""
        if shuffled:
            return "its channels pass a channel shuffle, which couples them with other groups"
        if not constrained:
            return None
        units = structures.channel_units(cg.width, constrained)
        if len(units) < 2:
            return "grouped layers leave no smaller valid width"
        sizes = {len(u) for u in units}
        if len(sizes) > 1:
            return "grouped layers of different group widths couple its channels unevenly"
        step = sizes.pop()
        if step > 1:
            cg.step, cg.units = step, units
        return None

    def pool_units(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scores with every unit's channels set to the unit's mean, so that a top-k with k a
        multiple of `step` keeps whole units (groups without units are returned unchanged)."""
        out = dict(scores)
        for g in self.groups:
            if g.units and g.name in scores:
                s = scores[g.name].clone().float()
                for u in g.units:
                    s[u] = s[u].mean()
                out[g.name] = s
        return out

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
        """Physically remove, in every named group, the channels not listed in `keep[name]`.

        In a group with units (`step` > 1) whole units are kept: the `len(keep) / step` (rounded,
        at least one) units holding most of the kept channels. Afterwards the model must still run
        on the example input, or this is a PrunekitError naming the model.
        """
        with guarded("pruning", self.model_name):
            for name, kept in keep.items():
                if name in self.fixed:
                    raise PrunekitError(f"group '{name}' of model '{self.model_name}' cannot be pruned: {self.fixed[name]}")
                g = self.group(name)
                kept_set = {int(i) for i in (kept.tolist() if isinstance(kept, torch.Tensor) else kept)}
                if not kept_set:
                    raise PrunekitError(f"group '{name}' would keep no channels", "keep at least one channel per group")
                if any(i < 0 or i >= g.width for i in kept_set):
                    raise PrunekitError(f"group '{name}': kept channel index out of range 0..{g.width - 1}")
                kept_set = legal_keep(g, kept_set)
                self._remove(g, [i for i in range(g.width) if i not in kept_set])
            self.refresh()
            self.check_runs()

    def _remove(self, g: ChannelGroup, remove: list[int]) -> None:
        if not remove:
            return
        root = self.modules[g.name]
        pruner = self.dg.get_pruner_of_module(root)
        tp_group = self.dg.get_pruning_group(root, pruner.prune_out_channels, remove)
        if not self.dg.check_pruning_group(tp_group):
            raise PrunekitError(
                f"torch-pruning refused to prune group '{g.name}' of model '{self.model_name}' "
                f"to {g.width - len(remove)} channels (a layer it couples would keep none)",
                "keep more channels in that group",
            )
        dropped = self._heads_removed(tp_group)
        try:
            tp_group.prune(record_history=False)
        except Exception as exc:  # an index torch-pruning mapped wrongly: the model is now unusable
            text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise PrunekitError(
                f"torch-pruning failed to prune group '{g.name}' of model '{self.model_name}' "
                f"({type(exc).__name__}: {text})",
                "report the model; this architecture's channel coupling is not understood yet",
            ) from exc
        for attn, heads in dropped:
            attn.drop_heads(heads)
        structures.refresh_attributes(self.model)
        if self._kinds_changed():
            self._build()
        g.width -= len(remove)
        self.history.append([g.name, True, sorted(remove)])

    def _heads_removed(self, tp_group: tp.dependency.Group) -> list[tuple[structures.HeadAttention, list[int]]]:
        """The attention heads a removal takes out (read from the channels it removes from q)."""
        owners = {id(a.q): a for a in structures.attention_blocks(self.model).values()}
        out = []
        for item in tp_group:
            attn = owners.get(id(item.dep.target.module))
            if attn is not None and self.dg.is_out_channel_pruning_fn(item.dep.handler):
                out.append((attn, sorted({int(i) // attn.head_dim for i in item.idxs})))
        return out

    def check_runs(self) -> None:
        """Run the model once on the example input: pruning must leave a model that still works."""
        was_training = self.model.training
        try:
            with torch.no_grad():
                self.model.eval()(self.example_input.to(next(self.model.parameters()).device))
        except Exception as exc:  # any failure here is a pruning bug for this architecture
            text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise PrunekitError(
                f"pruning left model '{self.model_name}' unable to run ({type(exc).__name__}: {text})",
                "report the model; prune it with fewer groups or use a supported architecture",
            ) from exc
        finally:
            self.model.train(was_training)

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
                handles.append(module.register_forward_hook(
                    _mask_hook(masks, g.name, idxs, root_idxs, _channel_dim(module))))
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def _channels(module: nn.Module, is_out: bool, idxs: list[int]) -> int:
    """How many channels a layer has on the side a group item prunes (the item's own width when
    the layer is not one whose width is known here)."""
    if isinstance(module, nn.Conv2d):
        return module.out_channels if is_out else module.in_channels
    if isinstance(module, nn.Linear):
        return module.out_features if is_out else module.in_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    return max(idxs) + 1


def _channel_dim(module: nn.Module) -> int:
    """Where a layer's output keeps its channels: dim 1 for convs and BatchNorm (N, C, H, W),
    the last dim for Linear / LayerNorm (tokens or channels-last)."""
    return 1 if isinstance(module, (nn.Conv2d, nn.modules.batchnorm._BatchNorm)) else -1


def _mask_hook(
    masks: dict[str, torch.Tensor], name: str, idxs: list[int], root_idxs: list[int], dim: int = 1
) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor]:
    idx_t = torch.tensor(idxs, dtype=torch.long)
    root_t = torch.tensor(root_idxs, dtype=torch.long)

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        mask = masks[name]
        full = torch.ones(output.shape[dim], dtype=output.dtype, device=output.device)
        full = full.index_put((idx_t.to(output.device),), mask.to(output.dtype)[root_t.to(mask.device)].to(output.device))
        shape = [1] * output.dim()
        shape[dim] = -1
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
    with guarded("replaying the pruning plan", model_name):
        for entry in history:
            try:
                name, _is_out, removed = entry
                g = graph.group(str(name))
                remove = sorted({int(i) for i in removed})
            except (KeyError, TypeError, ValueError) as exc:
                raise PrunekitError(f"plan entry {str(entry)[:80]} does not match model '{model_name}'") from exc
            if remove and (remove[0] < 0 or remove[-1] >= g.width or len(remove) >= g.width):
                raise PrunekitError(f"plan entry for '{name}' removes channels the model does not have")
            if g.units and set(remove) != legal_remove(g, set(remove)):
                raise PrunekitError(f"plan entry for '{name}' removes part of a unit (a head or a conv-group position)")
            graph._remove(g, remove)
        graph.refresh()
        graph.check_runs()
    expected = plan.get("widths")
    if isinstance(expected, dict) and expected != graph.widths():
        diff = next(k for k in set(expected) | set(graph.widths()) if expected.get(k) != graph.widths().get(k))
        raise PrunekitError(f"replayed plan gives a different width for '{diff}' than recorded")
    return model


def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on `example_input`, counted by torch-pruning.

    A model with unconverted attention blocks is counted as a converted copy (torch-pruning's
    counter only sees projections that are Linear modules), so dense and pruned counts compare.
    """
    if structures.needs_prepare(model):
        model = copy.deepcopy(model)
        structures.prepare(model)
    was_training = model.training
    macs, params = tp.utils.count_ops_and_params(model.eval(), example_input)
    model.train(was_training)
    return int(macs), int(params)


def select_by_ratio(
    scores: dict[str, torch.Tensor],
    ratio: float,
    round_to: int = 1,
    min_keep: int = 1,
    steps: dict[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Uniform selection: keep the top (1 - ratio) of each group's channels by score.

    `ratio` is the fraction of *channels* removed per group; widths are rounded to a multiple of
    `round_to` where the group is wider than `round_to`, and to a multiple of the group's unit
    (`steps[name]`, `ChannelGroup.step`) where it has one. Pass unit-pooled scores
    (`PruningGraph.pool_units`) so the top-k lands on whole units.
    """
    if not 0.0 <= ratio < 1.0:
        raise PrunekitError(f"prune ratio must be in [0, 1), got {ratio}")
    steps = steps or {}
    return {
        name: torch.topk(
            s, min(kept_width(len(s), 1.0 - ratio, round_to, min_keep, steps.get(name, 1)), len(s))
        ).indices.sort().values
        for name, s in scores.items()
    }


def candidate_widths(width: int, round_to: int, min_width: int, step: int = 1) -> list[int]:
    """Widths a group may be pruned to: multiples of `round_to` (and of the group's own `step`,
    e.g. channels per conv group), plus the full width, all >= min_width."""
    step = max(1, int(step))
    unit = math.lcm(max(1, round_to), step)
    if unit > width and step > 1:
        unit = step
    cands = {k for k in range(unit, width + 1, unit) if k >= min_width}
    if not cands:
        cands = {k for k in range(unit, width + 1, unit)}
    cands.add(width)
    return sorted(cands)


def kept_width(width: int, keep_fraction: float, round_to: int = 1, min_keep: int = 1, step: int = 1) -> int:
    """Channels kept of `width` at `keep_fraction`, rounded to a multiple of `round_to` where the
    group is wider than `round_to` (never below `min_keep`, never above `width`), then to a
    multiple of the group's unit `step` (at least one unit)."""
    k = max(min_keep, int(round(width * keep_fraction)))
    if round_to > 1 and width > round_to:
        k = max(round_to, int(round(k / round_to)) * round_to)
    if step > 1:
        unit = math.lcm(step, round_to) if round_to > 1 and math.lcm(step, round_to) < width else step
        k = max(step, int(round(k / unit)) * unit)
    return min(k, width)


def legal_keep(g: ChannelGroup, kept: set[int]) -> set[int]:
    """`kept` rounded to whole units of `g`: the `len(kept) / step` units (rounded, at least one)
    holding most kept channels (ties: the lower channel). Unchanged for a group without units."""
    if not g.units:
        return kept
    n = min(len(g.units), max(1, int(round(len(kept) / g.step))))
    ranked = sorted(g.units, key=lambda u: (-sum(i in kept for i in u), u[0]))
    return {i for u in ranked[:n] for i in u}


def legal_remove(g: ChannelGroup, remove: set[int]) -> set[int]:
    """The channels of the units `remove` touches (equal to `remove` iff it is whole units)."""
    if not g.units:
        return remove
    return {i for u in g.units if remove.intersection(u) for i in u}
