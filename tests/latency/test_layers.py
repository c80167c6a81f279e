from __future__ import annotations

import torch
from torch import nn
from torchvision.models import SwinTransformer, VisionTransformer

from prunekit.latency.layers import OP_CONV, OP_DWCONV, OP_GCONV, OP_LINEAR, enumerate_layers, parse_signature
from prunekit.pruning import PruningGraph, select_by_ratio


def test_grouped_depthwise_and_multiplier_convs_are_told_apart():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.Conv2d(32, 32, 3, groups=8), nn.Conv2d(32, 32, 3, groups=32),
        nn.Conv2d(32, 64, 3, groups=32), nn.Flatten(), nn.LazyLinear(10),
    )
    model(torch.zeros(1, 3, 16, 16))
    specs = enumerate_layers(model, (1, 3, 16, 16))
    assert [s.op for s in specs] == [OP_CONV, OP_GCONV, OP_DWCONV, OP_GCONV, OP_LINEAR]
    assert specs[1].signature.endswith(":g8:14x14") and parse_signature(specs[1].signature)["groups"] == 8
    assert specs[3].groups == 32 and specs[3].macs == 1 * 64 * 9 * 8 * 8  # one input channel per group


def test_pruned_grouped_conv_keeps_its_signature():
    from torchvision.models.resnet import Bottleneck, ResNet

    model = ResNet(Bottleneck, [1, 1, 1, 1], groups=8, width_per_group=4, num_classes=10).eval()
    before = {s.name: s for s in enumerate_layers(model, (1, 3, 32, 32))}
    graph = PruningGraph(model, torch.zeros(1, 3, 32, 32), "resnext")
    scores = graph.pool_units({g.name: torch.rand(g.width) for g in graph.groups})
    graph.prune(select_by_ratio(scores, 0.5, steps={g.name: g.step for g in graph.groups}))
    after = {s.name: s for s in enumerate_layers(model, (1, 3, 32, 32))}
    grouped = [n for n, s in before.items() if s.op == OP_GCONV]
    assert grouped and all(after[n].signature == before[n].signature for n in grouped)
    assert any(after[n].cin < before[n].cin for n in grouped)


def test_linear_rows_count_every_token_of_a_sample():
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=10)
    specs = enumerate_layers(vit, (2, 3, 32, 32))
    rows = {s.name: s.rows for s in specs if s.op == OP_LINEAR}
    assert rows["encoder.layers.encoder_layer_0.mlp.0"] == 17  # 16 patches + the class token
    assert rows["heads.head"] == 1
    # the attention projections are counted (as the Linears pruning makes of them); the model is untouched
    assert rows["encoder.layers.encoder_layer_0.self_attention.q"] == 17
    assert isinstance(vit.encoder.layers[0].self_attention, nn.MultiheadAttention)


def test_swin_windows_are_rows_of_the_same_sample():
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2], num_heads=[2], window_size=[4, 4],
                           num_classes=10)
    specs = {s.name: s for s in enumerate_layers(swin, (1, 3, 32, 32))}
    assert specs["features.1.0.attn.q"].rows == 64  # 8 x 8 tokens in 4 windows of 4 x 4
    assert specs["features.1.0.mlp.0"].rows == 64
