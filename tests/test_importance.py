"""Importance is on one scale for the whole model: a knapsack can trade one layer against another."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.importance import LearnedImportance, TaylorAccumulator, get_importance
from prunekit.models import build_model
from prunekit.pruning import PruningGraph

SHAPE = (1, 3, 32, 32)


def _graph(name: str = "resnet18") -> PruningGraph:
    torch.manual_seed(0)
    return PruningGraph(build_model(name, 10).eval(), torch.zeros(SHAPE), name)


def _batches(n: int = 2):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1


def test_scaling_a_batchnorm_down_scales_its_group_down():
    """Per-group normalisation (every group's mean = 1) would hide a 100x weaker layer."""
    graph = _graph()
    _randomise_bn(graph.model)
    before = graph.importance("magnitude")
    bn = graph.model.layer1[0].bn1  # the only BN of group layer1.0.conv1 (no residual coupling)
    bn.weight.data *= 0.01
    bn.bias.data *= 0.01
    after = graph.importance("magnitude")
    assert float(after["layer1.0.conv1"].mean() / before["layer1.0.conv1"].mean()) == pytest.approx(0.01, rel=1e-3)
    others = [n for n in before if n != "layer1.0.conv1"]
    assert {n: float(before[n].mean()) for n in others} == pytest.approx({n: float(after[n].mean()) for n in others})


def test_taylor_group_means_are_not_normalised():
    """Taylor estimates a loss change, the same unit in every layer: group means differ widely.

    (Scaling a BN that feeds another BN is not a test for Taylor: in training mode the next BN
    renormalises, the function is unchanged, and so, correctly, is the score.)
    """
    graph = _graph()
    _randomise_bn(graph.model)
    means = [float(s.mean()) for s in graph.importance("taylor", batches=_batches()).values()]
    assert max(means) / min(means) > 3.0
    assert not all(m == pytest.approx(1.0) for m in means)


@pytest.mark.parametrize("kind", ["magnitude", "taylor"])
def test_a_dead_channel_loses_to_every_live_one_in_any_layer(kind):
    graph = _graph()
    _randomise_bn(graph.model)
    bn = graph.model.layer2[0].bn1
    bn.weight.data[3] = 0.0
    bn.bias.data[3] = 0.0
    scores = graph.importance(kind, batches=_batches() if kind == "taylor" else None)
    dead = float(scores["layer2.0.conv1"][3])
    live = torch.cat([s for n, s in scores.items() if n != "layer2.0.conv1"])
    assert dead == 0.0
    assert (live > dead).float().mean() > 0.99


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_taylor_is_halps_bn_formula_by_hand():
    torch.manual_seed(0)
    model = _Tiny()
    model.bn.weight.data = torch.tensor([0.5, 1.0, 1.5, 2.0])
    model.bn.bias.data = torch.tensor([0.1, -0.2, 0.3, 0.0])
    graph = PruningGraph(model, torch.zeros(1, 3, 8, 8), "tiny")
    batches = [(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])) for _ in range(3)]
    scores = get_importance("taylor")(graph, batches)
    expected = torch.zeros(4)
    model.train()
    for x, y in batches:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        bn = model.bn
        expected += (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).detach().abs()
    assert torch.allclose(scores["conv"], expected / 3, rtol=1e-5, atol=1e-8)


def test_taylor_keeps_batchnorm_statistics_and_mode():
    graph = _graph()
    before = {k: v.clone() for k, v in graph.model.state_dict().items() if "running" in k}
    graph.model.eval()
    graph.importance("taylor", batches=_batches())
    after = graph.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert not graph.model.training


def test_accumulator_averages_batches_and_refuses_none():
    graph = _graph()
    acc = TaylorAccumulator(graph)
    with pytest.raises(PrunekitError, match="no gradients"):
        acc.scores()
    graph.model.train()
    for x, y in _batches(2):
        graph.model.zero_grad()
        nn.functional.cross_entropy(graph.model(x), y).backward()
        acc.update()
    assert acc.count == 2 and set(acc.scores()) == {g.name for g in graph.groups}


def test_learned_importance_passes_scores_and_checks_groups():
    graph = _graph()
    scores = {g.name: torch.rand(g.width) for g in graph.groups}
    assert torch.equal(LearnedImportance(scores)(graph)["conv1"], scores["conv1"])
    with pytest.raises(PrunekitError, match="no scores for group"):
        LearnedImportance({"conv1": scores["conv1"]})(graph)


def test_unknown_importance_is_one_line():
    with pytest.raises(PrunekitError, match="unknown importance"):
        get_importance("nope")
