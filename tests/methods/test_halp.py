"""HALP's schedule: per-step latency targets on the exponential schedule, one continuous optimizer
and LR schedule across pruning steps, momentum carried over each removal."""

from __future__ import annotations

import json

import pytest
import torch

from prunekit.models import build_model
from prunekit.pruning import PruningGraph
from prunekit.select import exponential_schedule, select_ratio


def test_halp_follows_the_exponential_schedule_on_one_lr_schedule(cli, tmp_path, monkeypatch):
    import prunekit.train as train

    lrs: list[float] = []
    real = train.train_step

    def spy(model, optimizer, *args, **kwargs):
        lrs.append(train.base_optimizer(optimizer).param_groups[0]["lr"])
        return real(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(train, "train_step", spy)
    result = cli(["compress", "--method", "halp", "--target", "cpu-ort", "--latency-budget", "0.5",
                  "--input-size", "32", "--pretrain-epochs", "0", "--epochs", "0", "--prune-steps", "3",
                  "--prune-every", "2", "--lr", "0.05", "--out", str(tmp_path / "h"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    steps = report["method"]["steps"]
    dense_ms, target_ms = report["dense"]["predicted_latency_ms"], report["goal"]["target_ms"]
    expected = exponential_schedule(dense_ms, target_ms, 3)
    assert [s["step"] for s in steps] == [1, 2, 3]
    for step, want in zip(steps, expected, strict=True):
        assert step["target_ms"] == pytest.approx(want, rel=1e-4)
        assert step["predicted_ms"] <= step["target_ms"] * (1 + 1e-6)
    assert [s["predicted_ms"] for s in steps] == sorted((s["predicted_ms"] for s in steps), reverse=True)
    assert report["pruned"]["predicted_latency_ms"] == pytest.approx(steps[-1]["predicted_ms"], rel=1e-4)
    # (3 - 1) x 2 training iterations on one cosine schedule: never restarted at a pruning step
    assert len(lrs) == 4
    assert lrs[0] == pytest.approx(0.05) and all(b < a for a, b in zip(lrs, lrs[1:], strict=False))


def test_momentum_is_pruned_with_the_weights():
    from prunekit.methods.scheduled import MomentumCarrier, with_momentum

    torch.manual_seed(0)
    model = build_model("resnet18", 4)
    graph = PruningGraph(model, torch.zeros(1, 3, 16, 16), "resnet18")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with torch.no_grad():
        for p in model.parameters():
            opt.state[p]["momentum_buffer"] = 2 * p.detach().clone() + 1
    carrier = MomentumCarrier(graph)
    scores = {g.name: torch.rand(g.width) for g in graph.groups}
    buffers = carrier.prune(select_ratio(scores, 0.5, graph.widths(), 8), opt)
    names = dict(model.named_parameters())
    assert set(buffers) == set(names)
    for name, p in names.items():
        assert torch.equal(buffers[name], 2 * p.detach() + 1), name  # sliced exactly like the weight
    new = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with_momentum(new, model, buffers)
    assert all(torch.equal(new.state[p]["momentum_buffer"], buffers[n]) for n, p in names.items())
