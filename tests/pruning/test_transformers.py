"""Vision transformers (ViT, Swin V1/V2, MaxViT) at tiny sizes: attention converted to the same
function, whole heads and MLP widths pruned (heads exactly as masking them), the embedding width
pruned too, reloaded without pickles, exported with parity.
"""

from __future__ import annotations

import copy

import pytest
import torch
from family_helpers import onnx_parity, random_keep, reload, trained_like
from torch import nn
from torchvision.models import MaxVit, SwinTransformer, VisionTransformer
from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformerBlockV2

from prunekit import structures
from prunekit.pruning import PruningGraph, legal_keep


def vit() -> nn.Module:
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
                             num_classes=10)


def swin() -> nn.Module:
    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10)


def swin_v2() -> nn.Module:
    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10, block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2)


def maxvit() -> nn.Module:
    return MaxVit(input_size=(32, 32), stem_channels=16, partition_size=2, block_channels=[32, 64],
                  block_layers=[1, 1], head_dim=16, stochastic_depth_prob=0.0, num_classes=10)


def timm_vit() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    return TimmViT(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10)


def timm_swin() -> nn.Module:
    from timm.models.swin_transformer import SwinTransformer as TimmSwin

    return TimmSwin(img_size=48, patch_size=4, window_size=4, embed_dim=32, depths=(2, 2), num_heads=(2, 4),
                    num_classes=10)


FAMILIES = {"vit": (vit, 32), "swin": (swin, 48), "swin_v2": (swin_v2, 48), "maxvit": (maxvit, 32)}
# swin at 48: 12x12 tokens, 4x4 windows, so shifted windows and their masks are exercised
try:
    import timm  # noqa: F401

    FAMILIES.update({"timm_vit": (timm_vit, 32), "timm_swin": (timm_swin, 48)})
except ImportError:  # timm is optional: its families are tested where it is installed
    pass


def _head_params_consistent(model: nn.Module) -> None:
    for attn in structures.attention_blocks(model).values():
        inner = attn.num_heads * attn.head_dim
        assert attn.q.out_features == attn.k.out_features == attn.v.out_features == attn.proj.in_features == inner
        for owner, name, dim in attn.head_params():
            assert getattr(owner, name).shape[dim] == attn.num_heads


def _mask_is_exact(graph: PruningGraph, g) -> bool:
    members = {item.dep.target.module for item in graph._tp_groups[g.name]}
    norms = {m for m in members if isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm))}
    return norms <= {point[0] for point in g.mask_points}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_converted_attention_computes_the_same_function(family):
    torch.manual_seed(0)
    factory, size = FAMILIES[family]
    original = trained_like(factory())
    converted = copy.deepcopy(original)
    n = structures.prepare(converted)
    assert n == len(structures.attention_blocks(converted)) > 0
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(converted.eval()(x), original(x), atol=1e-5, rtol=1e-5)
    assert structures.prepare(converted) == 0  # idempotent


def test_self_attention_honours_masks_and_sequence_first_layout():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=False).eval()
    attn = structures.SelfAttention.convert(mha).eval()
    x = torch.rand(5, 2, 16)  # (sequence, batch, features)
    causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    padding = torch.tensor([[False] * 4 + [True], [False] * 5])
    with torch.no_grad():
        ref, _ = mha(x, x, x, attn_mask=causal, key_padding_mask=padding, need_weights=False)
        got, weights = attn(x, x, x, attn_mask=causal, key_padding_mask=padding, need_weights=False)
    assert weights is None
    assert torch.allclose(got, ref, atol=1e-6)
    assert structures.SelfAttention.convert(nn.MultiheadAttention(16, 4, add_bias_kv=True)) is None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_whole_heads_and_mlp_widths_prune_exactly_as_masking_them(family):
    torch.manual_seed(0)
    factory, size = FAMILIES[family]
    model = trained_like(factory())
    x = torch.rand(2, 3, size, size)
    graph = PruningGraph(model, x[:1], family)
    heads_before = {n: a.num_heads for n, a in structures.attention_blocks(model).items()}
    head_groups = [g for g in graph.groups if g.units and g.step == 16 and g.name.endswith(".v")]
    assert len(head_groups) == sum(h > 1 for h in heads_before.values())
    # groups whose every norm layer is where the mask applies (right after the producer): heads,
    # MLP hidden widths, conv internals. Masking them is exactly pruning them; a LayerNorm over
    # the channels or a pre-norm renormalises what is left, so there it is not.
    inner = [g for g in graph.groups if g in head_groups or _mask_is_exact(graph, g)]
    assert any(g not in head_groups for g in inner)
    dense = copy.deepcopy(model)
    dense_graph = PruningGraph(dense, x[:1], family)
    keep = {n: k for n, k in random_keep(graph, 0.5).items() if graph.group(n) in inner}
    masks = {}
    for name, kept in keep.items():
        legal = legal_keep(graph.group(name), {int(i) for i in kept})
        masks[name] = torch.zeros(graph.group(name).width).index_fill_(0, torch.tensor(sorted(legal)), 1.0)
    graph.prune(keep)

    heads_after = {n: a.num_heads for n, a in structures.attention_blocks(model).items()}
    assert all(heads_after[n] == max(1, heads_before[n] // 2) for n in heads_before)
    _head_params_consistent(model)
    pruned = model(x)
    with dense_graph.masked(masks):
        masked = dense(x)
    assert pruned.abs().max() > 0.1
    assert torch.allclose(pruned, masked, atol=1e-4, rtol=1e-4), (pruned - masked).abs().max()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_everything_prunes_reloads_without_pickles_and_exports(family, tmp_path):
    torch.manual_seed(0)
    factory, size = FAMILIES[family]
    model = trained_like(factory())
    x = torch.rand(4, 3, size, size)
    graph = PruningGraph(model, x[:1], family)
    widths = graph.widths()
    graph.prune(random_keep(graph, 0.3, round_to=8))
    assert sum(graph.widths().values()) < sum(widths.values())
    assert all(g.width % g.step == 0 for g in graph.groups)
    _head_params_consistent(model)
    rebuilt = reload(factory, graph, tmp_path, family)
    _head_params_consistent(rebuilt)
    assert torch.allclose(rebuilt(x), model(x), atol=1e-5)
    passed, diff, scale = onnx_parity(rebuilt, x)
    assert passed and scale > 0.1, (diff, scale)
