from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.models import build_model, load_weights
from prunekit.pruning import PruningGraph, apply_plan, count_macs_params, select_by_ratio
from prunekit.runs import save_weights

ARCHS = ["resnet18", "mobilenet_v2", "googlenet", "efficientnet_b0", "densenet121"]


@pytest.mark.parametrize("name", ARCHS)
def test_physical_pruning_and_reload(name, tmp_path):
    torch.manual_seed(0)
    size = 32 if name != "googlenet" else 64
    x = torch.rand(2, 3, size, size)
    example = x[:1]
    model = build_model(name, 10).eval()
    dense_macs, dense_params = count_macs_params(model, example)
    graph = PruningGraph(model, example, name)
    scores = graph.importance("magnitude")
    keep = select_by_ratio(scores, 0.5, round_to=8)
    graph.prune(keep)
    # channel counts as planned
    for gname, kept in keep.items():
        assert graph.group(gname).width == len(kept)
        root = graph.modules[gname]
        assert (root.out_channels if isinstance(root, nn.Conv2d) else root.out_features) == len(kept)
    out = model.eval()(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    macs, params = count_macs_params(model, example)
    assert macs < dense_macs and params < dense_params
    # save -> load without pickled code -> same outputs
    save_weights(model, tmp_path / "pruned.safetensors")
    rebuilt = apply_plan(build_model(name, 10), graph.plan(), example, name)
    load_weights(rebuilt, tmp_path / "pruned.safetensors")
    assert torch.allclose(rebuilt.eval()(x), out, atol=1e-5)


def test_pruning_keeps_the_most_important_channels():
    model = build_model("resnet18", 10).eval()
    example = torch.zeros(1, 3, 32, 32)
    graph = PruningGraph(model, example, "resnet18")
    name = "layer1.0.conv1"
    w = model.get_submodule(name).weight.detach().clone()
    scores = {g: torch.arange(graph.group(g).width, dtype=torch.float) for g in graph.widths()}
    graph.prune({name: torch.topk(scores[name], 16).indices})
    # the 16 highest-scored channels are the last 16; their weights survive in order
    assert torch.equal(model.get_submodule(name).weight, w[-16:])


def test_masks_zero_channels_like_pruning():
    torch.manual_seed(0)
    model = build_model("resnet18", 10).eval()
    x = torch.rand(1, 3, 32, 32)
    graph = PruningGraph(model, x, "resnet18")
    g = graph.groups[-1]
    mask = torch.ones(g.width)
    mask[::2] = 0
    base = model(x)
    with graph.masked({g.name: mask}):
        masked = model(x)
    assert not torch.allclose(base, masked)
    assert torch.allclose(model(x), base)  # hooks removed


def test_untraceable_model_is_a_clear_error():
    class Weird(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x.flatten(1)[:, :4]).detach()

    with pytest.raises(PrunekitError):
        PruningGraph(Weird(), torch.zeros(1, 3, 8, 8), "weird")


def test_ratio_bounds_and_rounding():
    scores = {"a": torch.rand(64), "b": torch.rand(10)}
    keep = select_by_ratio(scores, 0.4, round_to=8)
    assert len(keep["a"]) == 40 and len(keep["b"]) == 8
    with pytest.raises(PrunekitError):
        select_by_ratio(scores, 1.0)


def test_bad_plan_is_rejected():
    with pytest.raises(PrunekitError, match="not a prunekit plan"):
        apply_plan(build_model("resnet18", 10), {"history": []}, torch.zeros(1, 3, 32, 32), "resnet18")
    plan = {"format": "prunekit-plan/1", "history": [["layer9.conv", True, [0]]]}
    with pytest.raises(PrunekitError, match="does not match"):
        apply_plan(build_model("resnet18", 10), plan, torch.zeros(1, 3, 32, 32), "resnet18")


def test_widths_honour_a_group_unit():
    from prunekit.pruning import kept_width

    assert kept_width(128, 0.7, round_to=8, step=32) == 96  # multiples of lcm(8, 32)
    assert kept_width(440, 0.7, round_to=8, step=55) == 330  # lcm(8, 55) = 440: multiples of 55
    assert kept_width(64, 0.1, step=16) == 16  # at least one unit
    keep = select_by_ratio({"g": torch.rand(96)}, 0.5, round_to=8, steps={"g": 24})
    assert len(keep["g"]) == 48


def test_legal_keep_takes_the_units_holding_most_kept_channels():
    from prunekit.pruning import ChannelGroup, legal_keep, legal_remove

    g = ChannelGroup("g", 8, step=2, units=[[0, 4], [1, 5], [2, 6], [3, 7]])
    assert legal_keep(g, {0, 4, 1, 2}) == {0, 4, 1, 5}  # 4 channels -> 2 units: {0, 4} whole, then {1, 5}
    assert legal_keep(g, {7}) == {3, 7}
    assert legal_keep(ChannelGroup("h", 8), {1, 2}) == {1, 2}
    assert legal_remove(g, {0}) == {0, 4}


def test_the_model_must_still_run_after_pruning():
    class Broken(nn.Module):  # reads a channel count that pruning changes, as some custom models do
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 16, 3), nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3))[:, :16].reshape(-1, 16))

    model = Broken()
    graph = PruningGraph(model, torch.zeros(1, 3, 8, 8), "broken")
    with pytest.raises(PrunekitError, match="unable to run"):
        graph.prune({"conv": torch.arange(8)})
