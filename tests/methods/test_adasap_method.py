"""AdaSAP as a method: neurons (conv row + BatchNorm gamma/beta) perturbed together, AdaSAP_L with
HALP's importance, AdaSAP_P ranked globally, the plain-SAM variant runnable."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from prunekit.methods.adasap import AdaSAP, AdaSAPOptions, adaptive_sam, conv_bn_pairs, neuron_radius_fn
from prunekit.models import build_model
from prunekit.select import Goal
from prunekit.settings import make_settings
from prunekit.train import TrainConfig


def _conv_bn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))


def test_every_batchnorm_of_resnet18_is_paired_with_its_conv():
    model = build_model("resnet18", 10)
    pairs = conv_bn_pairs(model, torch.zeros(1, 3, 32, 32))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(pairs) == len(bns) == 20
    for conv, bn in pairs:
        assert isinstance(conv, nn.Conv2d) and conv.out_channels == bn.num_features


def test_batchnorm_gamma_and_beta_are_perturbed_with_their_neuron():
    model = _conv_bn()
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    model(x)  # materialise the lazy layer
    conv, bn = model[0], model[1]
    opt = adaptive_sam(0.01, 0.5, x[:1])(model, TrainConfig(epochs=1, optimizer="sam", lr=0.1))
    rho, groups = neuron_radius_fn(model, x[:1], 0.01, 0.5)
    radii = rho()[conv.weight]
    assert torch.equal(rho()[bn.weight], radii) and torch.equal(rho()[bn.bias], radii)
    nn.functional.cross_entropy(model(x), y).backward()
    before = [p.detach().clone() for p in (conv.weight, bn.weight, bn.bias)]
    opt.first_step()
    eps = [p.detach() - b for p, b in zip((conv.weight, bn.weight, bn.bias), before, strict=True)]
    assert eps[1].abs().sum() > 0 and eps[2].abs().sum() > 0  # gamma and beta move too
    # one norm per neuron over its conv row and its gamma / beta: that neuron's radius
    joint = torch.sqrt(eps[0].flatten(1).pow(2).sum(1) + eps[1].pow(2) + eps[2].pow(2))
    assert torch.allclose(joint, radii, rtol=1e-4)
    assert [len(g) for g in groups] == [3]
    opt.restore()


def test_adasap_l_uses_halp_importance_and_adasap_p_ranks_globally(monkeypatch):
    import prunekit.methods.adasap as adasap

    seen = []

    def fake_schedule(ctx, model, goal, **kwargs):
        seen.append((goal, kwargs))
        from prunekit.methods.registry import MethodResult

        return None, MethodResult("adasap")

    monkeypatch.setattr(adasap, "run_schedule", fake_schedule)
    ctx = SimpleNamespace(options=AdaSAPOptions(warmup_epochs=0), example=torch.zeros(1, 3, 16, 16))
    AdaSAP().run(ctx, nn.Identity(), Goal(kind="latency", profile=object(), target_ms=1.0, dense_ms=2.0))
    AdaSAP().run(ctx, nn.Identity(), Goal(kind="ratio", ratio=0.5))
    (lat_goal, lat_kw), (ratio_goal, ratio_kw) = seen
    assert lat_kw["importance"] == "halp" and lat_kw["optimizer"] == "asam"
    assert ratio_kw["importance"] == "magnitude" and ratio_goal.rank == "global"
    ctx.options = AdaSAPOptions(warmup_epochs=0, adasap_rank="per-group", adasap_optimizer="sam")
    AdaSAP().run(ctx, nn.Identity(), Goal(kind="ratio", ratio=0.5))
    assert seen[-1][0].rank == "per-group" and seen[-1][1]["optimizer"] == "sam"


def test_finetune_defaults_follow_the_adasap_optimizer():
    assert make_settings(method="adasap").finetune == ("asam", 0.5)
    assert make_settings(method="adasap", method_options={"adasap_optimizer": "sam"}).finetune == ("sam", 0.05)
    assert make_settings(method="adasap", finetune_optimizer="sgd").finetune[0] == "sgd"
    with pytest.raises(Exception, match="--adasap-optimizer"):
        make_settings(method="adasap", method_options={"adasap_optimizer": "adam"})


def test_plain_sam_variant_runs_and_global_rank_differs_per_group(cli, tmp_path):
    out = tmp_path / "sam"
    result = cli(["compress", "--data", "digits", "--input-size", "16", "--pretrain-epochs", "1", "--epochs", "1",
                  "--batch-size", "128", "--method", "adasap", "--adasap-optimizer", "sam", "--rho-max", "0.1",
                  "--warmup-epochs", "1", "--prune-steps", "2", "--prune-every", "2", "--prune-ratio", "0.5",
                  "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"]["optimizer"] == "sam" and report["method"]["rank"] == "global"
    assert report["method"]["variant"] == "AdaSAP_P"
    plan = json.loads((out / "plan.json").read_text())
    dense = build_model("resnet18", 10)
    from prunekit.pruning import PruningGraph

    widths0 = PruningGraph(dense, torch.zeros(1, 3, 16, 16), "resnet18").widths()
    fractions = {round(plan["widths"][g] / widths0[g], 3) for g in widths0}
    assert len(fractions) > 1  # ranked over the network: groups keep different fractions
    total = sum(plan["widths"].values()) / sum(widths0.values())
    assert total == pytest.approx(0.5, abs=0.08)
