"""Shared steps of the architecture-family tests: prune, reload without pickles, compare, export.

Weights are untrained but made "trained-like" (random norm statistics, a classifier at unit
scale) so that logits are far from 0 and the comparisons below can fail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from prunekit.models import load_weights
from prunekit.pruning import PruningGraph, apply_plan, select_by_ratio
from prunekit.runs import save_weights


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        for m in [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]:
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)
    return model.eval()


def random_keep(graph: PruningGraph, ratio: float, seed: int = 0, round_to: int = 1) -> dict[str, torch.Tensor]:
    """A keep-set from random scores pooled over units (what a selection rule hands to prune)."""
    g = torch.Generator().manual_seed(seed)
    scores = graph.pool_units({grp.name: torch.rand(grp.width, generator=g) for grp in graph.groups})
    return select_by_ratio(scores, ratio, round_to=round_to, steps={grp.name: grp.step for grp in graph.groups})


def reload(factory: Callable[[], nn.Module], graph: PruningGraph, folder: Path, name: str) -> nn.Module:
    """plan.json + safetensors -> a freshly built model with the plan replayed: no pickled code."""
    save_weights(graph.model, folder / "pruned.safetensors")
    (folder / "plan.json").write_text(json.dumps(graph.plan()))
    rebuilt = apply_plan(factory(), json.loads((folder / "plan.json").read_text()), graph.example_input, name)
    load_weights(rebuilt, folder / "pruned.safetensors")
    return rebuilt.eval()


def onnx_parity(model: nn.Module, x: torch.Tensor) -> tuple[bool, float, float]:
    """(passed, max |ONNX - torch|, max |torch logit|) with prunekit's release exporter."""
    from prunekit.deploy.onnx import to_onnx
    from prunekit.deploy.parity import check_parity

    exported = to_onnx(model, (1, *x.shape[1:]), exporter="release")
    parity = check_parity(model, exported.data, x)
    return parity.passed, parity.max_abs_diff, parity.logit_scale
