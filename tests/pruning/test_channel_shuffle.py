"""ShuffleNetV2: the channel shuffle is found, the channels it permutes stay whole, the rest prunes.

A shuffle interleaves the two halves of a concat, coupling channels of different groups, so the
groups it touches are kept (with the reason); every branch's inner width prunes, and the pruned
model computes exactly what the dense model computes with the removed channels masked to zero.
"""

from __future__ import annotations

import copy

import torch
from family_helpers import onnx_parity, random_keep, reload, trained_like
from torchvision.models import shufflenet_v2_x0_5

from prunekit import structures
from prunekit.pruning import PruningGraph, count_macs_params


def _model() -> torch.nn.Module:
    return shufflenet_v2_x0_5(num_classes=10)


def test_every_shuffle_is_found():
    model = trained_like(_model())
    graph = PruningGraph(model, torch.rand(1, 3, 32, 32), "shufflenet")
    transposes = [n for n in graph.dg.shuffles if structures._is_transpose_12(n)]
    blocks = sum(len(getattr(model, f"stage{i}")) for i in (2, 3, 4))
    assert len(transposes) == blocks == 16
    assert graph.fixed and all("channel shuffle" in why for why in graph.fixed.values())
    inner = [g for g in graph.groups if any(n.endswith("branch2.0") for n in g.out_layers)]
    assert len(inner) == blocks  # every block's inner width is prunable


def test_pruned_equals_masked_dense_and_keeping_all_changes_nothing():
    torch.manual_seed(0)
    model = trained_like(_model())
    x = torch.rand(2, 3, 32, 32)
    dense = copy.deepcopy(model)
    reference = dense(x)
    graph = PruningGraph(model, x[:1], "shufflenet")
    graph.prune({g.name: torch.arange(g.width) for g in graph.groups})
    assert torch.equal(model(x), reference)

    dense_graph = PruningGraph(dense, x[:1], "shufflenet")
    keep = random_keep(graph, 0.5)
    masks = {n: torch.zeros(graph.group(n).width).index_fill_(0, k, 1.0) for n, k in keep.items()}
    macs_before = count_macs_params(model, x[:1])[0]
    graph.prune(keep)
    assert count_macs_params(model, x[:1])[0] < 0.8 * macs_before
    with dense_graph.masked(masks):
        masked = dense(x)
    pruned = model(x)
    assert pruned.abs().max() > 0.1
    assert torch.allclose(pruned, masked, atol=1e-4, rtol=1e-4), (pruned - masked).abs().max()


def test_shufflenet_reloads_without_pickles_and_exports(tmp_path):
    torch.manual_seed(0)
    model = trained_like(_model())
    x = torch.rand(4, 3, 32, 32)
    graph = PruningGraph(model, x[:1], "shufflenet")
    graph.prune(random_keep(graph, 0.3, round_to=8))
    rebuilt = reload(_model, graph, tmp_path, "shufflenet")
    assert torch.allclose(rebuilt(x), model(x), atol=1e-5)
    passed, diff, scale = onnx_parity(rebuilt, x)
    assert passed and scale > 0.1, (diff, scale)
