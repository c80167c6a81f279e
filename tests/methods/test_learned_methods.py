"""C-SAM and S2AP as methods: the deployed binariser in C-SAM's consistency loss, epoch means in its
log; S2AP ranks by |score| and searches with BatchNorm in training mode."""

from __future__ import annotations

import json

import pytest
import torch

SMALL = ["--data", "synthetic:64", "--num-classes", "4", "--input-size", "16", "--batch-size", "16",
         "--pretrain-epochs", "0", "--epochs", "0", "--prune-ratio", "0.5"]


def test_csam_consistency_uses_the_goal_widths_and_logs_epoch_means(cli, tmp_path, monkeypatch):
    import prunekit.methods.csam as csam

    batches, binary_sums = [], []
    real = csam.csam_loss

    def spy(forward, x, tx, masks, **kwargs):
        terms = real(forward, x, tx, masks, **kwargs)
        batches.append(terms)
        binary_sums.append([int(b.detach().sum()) for b in kwargs["binarize"](masks)])
        return terms

    monkeypatch.setattr(csam, "csam_loss", spy)
    out = tmp_path / "c"
    result = cli(["compress", *SMALL, "--method", "csam", "--mask-epochs", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(batches) >= 2
    history = report["method"]["history"]
    for key in ("stability", "ratio", "consistency", "l1"):
        assert history[0][key] == pytest.approx(sum(getattr(t, key) for t in batches) / len(batches), rel=1e-6)
    # the binary masks are the deployed ones: exactly the widths the run ended with
    widths = json.loads((out / "plan.json").read_text())["widths"]
    assert binary_sums[0] == list(widths.values())
    assert report["method"]["lambda"]["l1"] == report["settings"]["method_options"]["lambda_l1"]


def test_s2ap_ranks_by_absolute_score():
    from prunekit.methods.s2ap import keep_by_score, score_mask

    s = torch.tensor([-5.0, 1.0, 2.0, -0.5], requires_grad=True)
    assert score_mask(s, 1).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert keep_by_score({"g": s}, {"g": 2})["g"].tolist() == [0, 2]
    score_mask(s, 2).sum().backward()
    assert s.grad.tolist() == [-1.0, 1.0, 1.0, -1.0]  # straight through |s|: sign(s)


def test_s2ap_score_search_runs_batchnorm_in_training_mode(cli, tmp_path, monkeypatch):
    import prunekit.methods.s2ap as s2ap

    modes = []
    real = s2ap.s2ap_score_step

    def spy(scores, loss_fn, optimizer, rho, model=None):
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        modes.append(all(m.training for m in bns) and bool(bns))
        return real(scores, loss_fn, optimizer, rho, model=model)

    monkeypatch.setattr(s2ap, "s2ap_score_step", spy)
    result = cli(["compress", *SMALL, "--method", "s2ap", "--score-epochs", "1", "--pgd-train-steps", "1",
                  "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    assert modes and all(modes)
