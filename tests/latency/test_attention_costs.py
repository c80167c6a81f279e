"""Attention in the ONNX Runtime constant model: Q K^T / A V MatMuls priced by MACs, softmax,
LayerNorm and GELU by elements, all growing with the heads / widths a pruned ViT keeps."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from latency_helpers import provenance
from onnx import TensorProto
from onnx import helper as oh
from torchvision.models import SwinTransformer, VisionTransformer

from prunekit import structures
from prunekit.deploy.onnx import to_onnx
from prunekit.latency.ort_graph import (
    as_pruned,
    graph_constant,
    is_table_node,
    node_features,
    node_size,
    optimized_model,
    transformer_variants,
    weight_names,
)
from prunekit.latency.profile import Constant, OpCost, Profile, TableEntry
from prunekit.pruning import PruningGraph
from prunekit.runtimes.ort_session import profile_onnx_nodes

SHAPE = (1, 3, 32, 32)
TOKENS, HEADS, HEAD_DIM, WIDTH, MLP = 17, 2, 16, 32, 64  # 4x4 patches of 8 + the class token


def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=HEADS,
                             hidden_dim=WIDTH, mlp_dim=MLP, num_classes=4).eval()


def one_head(model: torch.nn.Module) -> torch.nn.Module:
    """The same ViT with one of its two heads pruned (prunekit's own pruning)."""
    graph = PruningGraph(model, torch.zeros(SHAPE), "tiny_vit")
    heads = [g for g in graph.groups if g.step == HEAD_DIM]
    assert len(heads) == 1
    graph.prune({heads[0].name: torch.arange(HEAD_DIM)})
    return model


def features(model: torch.nn.Module) -> dict[str, list[float]]:
    opt = optimized_model(to_onnx(as_pruned(model), SHAPE).data, 1)
    out: dict[str, list[float]] = {}
    for _, key, size in node_features(opt, SHAPE, block=16):
        out.setdefault(key.split(":")[1], []).append(size)
    return out


def test_attention_features_by_hand():
    f = features(tiny_vit())
    matmuls = sorted(f.get("MatMul", []) + f.get("FusedMatMul", []))
    # Q K^T and A V: heads x tokens x tokens x head_dim multiply-accumulates each
    assert matmuls == pytest.approx([HEADS * TOKENS * TOKENS * HEAD_DIM / 1e6] * 2)
    assert f["Softmax"] == pytest.approx([HEADS * TOKENS * TOKENS / 1e6])
    norms = f.get("LayerNormalization", []) + f.get("SkipLayerNormalization", [])
    assert norms and all(s == pytest.approx(TOKENS * WIDTH / 1e6) for s in norms)
    gelu = f.get("Gelu", []) + f.get("BiasGelu", [])
    assert gelu == pytest.approx([TOKENS * MLP / 1e6])


def test_features_follow_pruned_heads():
    f = features(one_head(tiny_vit()))
    matmuls = f.get("MatMul", []) + f.get("FusedMatMul", [])
    assert sorted(matmuls) == pytest.approx([TOKENS * TOKENS * HEAD_DIM / 1e6] * 2)
    assert f["Softmax"] == pytest.approx([TOKENS * TOKENS / 1e6])


def tiny_swin() -> torch.nn.Module:
    """Shifted 4x4 windows on 12x12 tokens, patch merging: pads, slices, channels-last reorders."""
    torch.manual_seed(0)
    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=4).eval()


@pytest.mark.parametrize("factory,side", [(tiny_vit, 32), (tiny_swin, 48)], ids=["vit", "swin"])
def test_features_match_the_runtime_profiler(factory, side):
    """Propagated shapes (and so sizes) equal what ONNX Runtime reports for every priced node."""
    shape = (1, 3, side, side)
    data = to_onnx(as_pruned(factory()), shape).data
    nodes, opt_bytes = profile_onnx_nodes(data, 1, shape, warmup=1, repeats=2)
    opt = onnx.load_from_string(opt_bytes)
    predicted = {name: size for name, _, size in node_features(opt, shape, block=16)}
    by_name, weights = {n.name: n for n in opt.graph.node}, weight_names(opt)
    checked = 0
    for rec in nodes:
        node = by_name.get(rec["name"])
        if node is None or is_table_node(node, weights):
            continue
        real = node_size(node, [list(v) for v in rec["inputs"][:2]], list(rec["outputs"][0]))
        assert predicted[rec["name"]] == pytest.approx(real), (node.op_type, rec["name"])
        checked += 1
    assert checked >= 8


def test_matmul_of_a_weight_is_a_table_layer():
    w = oh.make_tensor("w", TensorProto.FLOAT, [4, 4], np.zeros(16, dtype=np.float32))
    by_weight = oh.make_node("MatMul", ["x", "w"], ["y"])
    attention = oh.make_node("MatMul", ["q", "k"], ["s"])
    assert is_table_node(by_weight, {w.name}) and not is_table_node(attention, {w.name})
    assert node_size(attention, [[1, 2, 5, 3], [1, 2, 3, 5]], [1, 2, 5, 5]) == pytest.approx(2 * 5 * 5 * 3 / 1e6)
    trans = oh.make_node("FusedMatMul", ["q", "k"], ["s"], domain="com.microsoft", transB=1)
    assert node_size(trans, [[1, 2, 5, 3], [1, 2, 5, 3]], [1, 2, 5, 5]) == pytest.approx(2 * 5 * 5 * 3 / 1e6)


def vit_profile(ops: dict[str, OpCost]) -> Profile:
    return Profile(
        name="vit", runtime="onnxruntime", threads=1, input_size=(32, 32), provenance=provenance(),
        table={"linear:r17": TableEntry(cin=[16, 64], cout=[16, 64], ms=[[0.01, 0.04], [0.04, 0.16]])},
        constant=Constant(method="ort-graph", ops=ops),
    )


def test_constant_grows_with_heads():
    cost = OpCost(a_ms=0.001, b_ms_per_melem=2.0, samples=10)
    keys = (":MatMul", "ms:FusedMatMul", ":Softmax", ":LayerNormalization", "ms:Gelu")
    prof = vit_profile({k: cost for k in keys})
    dense, pruned = graph_constant(tiny_vit(), prof, SHAPE), graph_constant(one_head(tiny_vit()), prof, SHAPE)
    assert pruned.total_ms < dense.total_ms
    mm = lambda gc: gc.by_op.get(":MatMul", 0.0) + gc.by_op.get("ms:FusedMatMul", 0.0)  # noqa: E731
    # two attention MatMuls lose half their MACs each: 2 x 2.0 ms/MMAC x (tokens^2 x head_dim)
    assert mm(dense) - mm(pruned) == pytest.approx(2 * 2.0 * TOKENS * TOKENS * HEAD_DIM / 1e6)
    assert ":MatMul" not in dense.unpriced and "ms:FusedMatMul" not in dense.unpriced


def test_uncalibrated_attention_uses_the_linear_table_rate():
    prof = vit_profile({})
    gc = graph_constant(tiny_vit(), prof, SHAPE)
    rate = 0.16 / (17 * 64 * 64 / 1e6)  # the largest linear:r17 cell, ms per MMAC
    mm = gc.by_op.get(":MatMul", 0.0) + gc.by_op.get("ms:FusedMatMul", 0.0)
    assert mm == pytest.approx(2 * rate * HEADS * TOKENS * TOKENS * HEAD_DIM / 1e6)
    assert any(k.endswith("MatMul") for k in gc.unpriced)


def test_calibration_variants_prune_heads_and_mlp():
    dense = tiny_vit()
    variants = transformer_variants(dense, SHAPE)
    assert variants, "a ViT is calibrated on pruned copies"
    heads = [sum(a.num_heads for a in structures.attention_blocks(v).values()) for v in variants]
    assert min(heads) < HEADS
    assert any(m.out_features < MLP for v in variants for n, m in v.named_modules()
               if isinstance(m, torch.nn.Linear) and n.endswith("mlp.0"))
    assert not structures.attention_blocks(dense)  # the model itself is not converted
