"""timm LeViT: its token subsampling (a grid view of [B, N, C] tokens, every stride-th kept) is
traced as a token-axis slice, so the attention-downsample's q Linear loses exactly the input
channels its producer loses (torch-pruning misread the view: the pruned model did not run)."""

from __future__ import annotations

import pytest
import torch
from family_helpers import random_keep, reload, trained_like
from torch import nn

from prunekit.pruning import PruningGraph

pytest.importorskip("timm")

SIZE = 64


def tiny_levit() -> nn.Module:
    from timm.models.levit import Levit

    return Levit(img_size=SIZE, num_classes=10, embed_dim=(32, 48), key_dim=8, depth=(1, 1), num_heads=(2, 3),
                 mlp_ratio=2.0, attn_ratio=2.0)


def test_levit_subsample_prunes_consistently_and_reloads(tmp_path):
    model = trained_like(tiny_levit())
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    graph = PruningGraph(model, torch.zeros(1, 3, SIZE, SIZE), "levit")
    before = {n: m.in_features for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    graph.prune(random_keep(graph, 0.3, round_to=8))  # prune() runs the model: it would raise here
    linears = dict(model.named_modules())
    q_in = [n for n in before if "attn_downsample.q" in n]
    assert q_in, "the tiny LeViT has an attention downsample"
    for name in q_in:  # the subsampled tokens keep their producer's channels
        producer = [m for n, m in linears.items() if n.endswith("blocks.0.mlp.ln2.linear") and n.startswith("stages.0")]
        assert linears[name].in_features == producer[0].out_features
    assert any(linears[n].in_features < w for n, w in before.items())  # something did prune
    rebuilt = reload(tiny_levit, graph, tmp_path, "levit")
    with torch.no_grad():
        expected, got = model(x), rebuilt(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
