"""Grouped convolutions (ResNeXt, RegNet), GroupNorm and depthwise-multiplier convs prune to valid models.

A conv with G groups keeps G: every conv group loses the same channel positions, so the channels
of a group go in units of G (`ChannelGroup.step`), and pruning is exactly masking the removed
channels of the dense model.
"""

from __future__ import annotations

import copy

import pytest
import torch
from family_helpers import onnx_parity, random_keep, reload, trained_like
from torch import nn
from torchvision.models.regnet import BlockParams, RegNet
from torchvision.models.resnet import Bottleneck, ResNet

from prunekit.errors import PrunekitError
from prunekit.pruning import PruningGraph, apply_plan, legal_keep


def tiny_resnext() -> nn.Module:
    return ResNet(Bottleneck, [1, 1, 1, 1], groups=8, width_per_group=4, num_classes=10)


def tiny_regnet() -> nn.Module:
    params = BlockParams.from_init_params(depth=4, w_0=24, w_a=24.48, w_m=2.54, group_width=8, se_ratio=0.25)
    return RegNet(params, num_classes=10)


class NormAndMultiplier(nn.Module):
    """conv -> GroupNorm(4 groups) -> conv -> depthwise x2 multiplier conv (groups = in) -> head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1, self.gn = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.c2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.c3, self.bn3 = nn.Conv2d(32, 64, 3, padding=1, groups=32), nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.gn(self.c1(x)))
        x = torch.relu(self.bn2(self.c2(x)))
        x = torch.relu(self.bn3(self.c3(x)))
        return self.fc(x.mean((2, 3)))


FAMILIES = {"resnext": tiny_resnext, "regnet": tiny_regnet}


def _grouped_convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {
        n: m for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and not (m.groups == m.in_channels == m.out_channels)
    }


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_grouped_conv_groups_prune_in_whole_positions(family):
    torch.manual_seed(0)
    model = trained_like(FAMILIES[family]())
    x = torch.rand(2, 3, 32, 32)
    graph = PruningGraph(model, x[:1], family)
    convs = _grouped_convs(model)
    groups_before = {n: m.groups for n, m in convs.items()}
    stepped = [g for g in graph.groups if g.step > 1]
    assert stepped, "grouped convs must put unit constraints on the groups around them"
    for g in stepped:
        assert sorted(i for u in g.units for i in u) == list(range(g.width))
        assert all(len(u) == g.step for u in g.units)
        # a unit is one position in every conv group: equally spaced, width / step apart
        stride = g.width // g.step
        assert all(u == list(range(u[0], g.width, stride)) for u in g.units)

    dense = copy.deepcopy(model)
    dense_graph = PruningGraph(dense, x[:1], family)
    keep = random_keep(graph, 0.5)
    masks = {}
    for name, kept in keep.items():
        legal = legal_keep(graph.group(name), {int(i) for i in kept})
        masks[name] = torch.zeros(graph.group(name).width)
        masks[name][sorted(legal)] = 1.0
    graph.prune(keep)

    for n, m in convs.items():  # group counts kept, channels still divisible by them
        assert m.groups == groups_before[n]
        assert m.in_channels % m.groups == 0 and m.out_channels % m.groups == 0
    for g in graph.groups:
        assert g.width % g.step == 0
    assert any(m.in_channels < dense.get_submodule(n).in_channels for n, m in convs.items())
    pruned = model(x)
    with dense_graph.masked(masks):
        masked = dense(x)
    assert torch.allclose(pruned, masked, atol=1e-4, rtol=1e-4), (pruned - masked).abs().max()
    assert pruned.abs().max() > 0.1  # logits that can tell a wrong channel from a right one


def test_resnext_reloads_without_pickles_and_exports(tmp_path):
    torch.manual_seed(0)
    model = trained_like(tiny_resnext())
    x = torch.rand(4, 3, 32, 32)
    graph = PruningGraph(model, x[:1], "resnext")
    graph.prune(random_keep(graph, 0.3, round_to=8))
    rebuilt = reload(tiny_resnext, graph, tmp_path, "resnext")
    assert torch.allclose(rebuilt(x), model(x), atol=1e-5)
    passed, diff, scale = onnx_parity(rebuilt, x)
    assert passed and scale > 0.1, (diff, scale)


def test_any_keep_set_is_rounded_to_whole_units():
    model = trained_like(tiny_resnext())
    x = torch.rand(1, 3, 32, 32)
    graph = PruningGraph(model, x, "resnext")
    g = next(g for g in graph.groups if g.step > 1)
    graph.prune({g.name: torch.arange(g.width // 2 + 1)})  # the first half (+1): not whole units
    assert graph.group(g.name).width % g.step == 0
    assert torch.isfinite(model(x)).all()


def test_a_plan_removing_part_of_a_unit_is_refused():
    x = torch.rand(1, 3, 32, 32)
    graph = PruningGraph(tiny_resnext(), x, "resnext")
    g = next(g for g in graph.groups if g.step > 1)
    plan = {"format": "prunekit-plan/1", "history": [[g.name, True, [0]]]}
    with pytest.raises(PrunekitError, match="part of a unit"):
        apply_plan(tiny_resnext(), plan, x, "resnext")


def test_groupnorm_and_depthwise_multiplier():
    torch.manual_seed(0)
    model = trained_like(NormAndMultiplier())
    x = torch.rand(2, 3, 16, 16)
    graph = PruningGraph(model, x[:1], "norm-mult")
    by_root = {g.name: g for g in graph.groups}
    assert by_root["c1"].step == 4  # one position in each of the 4 GroupNorm groups
    assert "c2" in graph.fixed and "no smaller valid width" in graph.fixed["c2"]  # c3 reads 1 channel per group
    assert by_root["c3"].step == 32  # c3 keeps 32 groups: 64 -> 32 is its only smaller width
    graph.prune({"c1": torch.arange(8), "c3": torch.arange(32)})
    assert model.gn.num_channels == 8 and model.gn.num_groups == 4
    assert model.c3.out_channels == 32 and model.c3.groups == 32
    assert model(x).shape == (2, 10)
    # c3 is depthwise now (32 -> 32, 32 groups): c2's channels pass through it, so c2 prunes
    merged = next(g for g in graph.groups if "c2" in g.out_layers)
    assert "c3" in merged.out_layers and merged.step == 1
    graph.prune({merged.name: torch.arange(16)})
    assert (model.c3.in_channels, model.c3.out_channels, model.c3.groups) == (16, 16, 16)
    assert model(x).shape == (2, 10)


def test_fixed_groups_are_refused_by_name():
    graph = PruningGraph(NormAndMultiplier().eval(), torch.rand(1, 3, 16, 16), "norm-mult")
    with pytest.raises(PrunekitError, match="cannot be pruned"):
        graph.prune({"c2": torch.arange(16)})
