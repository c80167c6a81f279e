"""PGD (loss goes up, eps respected, model state restored) and the probabilistic certificate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import beta
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.robustness.certify import certify, clopper_pearson_upper
from prunekit.robustness.pgd import adversarial_accuracy, pgd_attack


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(32, 5),
    )  # fmt: skip


def batch(n: int = 32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 12, 12, generator=g), torch.randint(0, 5, (n,), generator=g)


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_pgd_raises_the_loss_and_stays_in_the_ball(eps):
    model = small_net().eval()
    x, y = batch()
    x_adv = pgd_attack(model, x, y, eps=eps, steps=10, step_size=eps / 4, seed=0)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 1e-3
    assert torch.equal(x_adv, pgd_attack(model, x, y, eps=eps, steps=10, step_size=eps / 4, seed=0))


def test_pgd_restores_mode_and_requires_grad_and_leaves_bn_stats():
    model = small_net()
    model.train()
    model[0].weight.requires_grad_(False)  # a frozen layer must stay frozen, the others trainable
    stats = model[1].running_mean.clone()
    x, y = batch()
    pgd_attack(model, x, y, seed=0)
    assert model.training and model[1].training
    assert not model[0].weight.requires_grad and model[-1].weight.requires_grad
    assert torch.equal(model[1].running_mean, stats), "the attack must run in eval mode"
    assert all(p.grad is None for p in model.parameters())


def test_pgd_edge_cases():
    model = small_net().eval()
    x, y = batch(4)
    assert torch.equal(pgd_attack(model, x, y, eps=0.0), x)
    with pytest.raises(PrunekitError, match="eps must be >= 0"):
        pgd_attack(model, x, y, eps=-0.1)
    with pytest.raises(PrunekitError, match="steps"):
        pgd_attack(model, x, y, steps=-1)


def test_adversarial_accuracy_is_below_clean():
    model = small_net().eval()
    # make the model accurate on a tiny fixed set, then attack it
    x, y = batch(64)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    data = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    rep = adversarial_accuracy(model, data, eps=16 / 255, steps=10, step_size=4 / 255, seed=0, limit=48)
    assert rep.n_images == 48
    assert rep.clean_accuracy > 0.5
    assert rep.adversarial_accuracy < rep.clean_accuracy
    assert rep.to_dict()["eps"] == 16 / 255
    with pytest.raises(PrunekitError, match="eps"):
        adversarial_accuracy(model, data, eps=-1)


@pytest.mark.parametrize(
    "k, n, alpha",
    [(0, 10, 0.05), (0, 100, 0.001), (3, 20, 0.05), (7, 50, 0.1), (19, 20, 0.05)],
)
def test_clopper_pearson_upper_known_values(k, n, alpha):
    ub = clopper_pearson_upper(k, n, alpha)
    assert ub == pytest.approx(beta.ppf(1 - alpha, k + 1, n - k), rel=1e-9)
    if k == 0:  # closed form: P(0 successes | p) = (1 - p)^n = alpha
        assert ub == pytest.approx(1 - alpha ** (1 / n), rel=1e-9)
    # the bound is exact: at p = ub, seeing <= k successes has probability alpha
    assert beta.cdf(ub, k + 1, n - k) == pytest.approx(1 - alpha, rel=1e-6)


def test_clopper_pearson_known_numbers_and_errors():
    assert clopper_pearson_upper(0, 10, 0.05) == pytest.approx(0.2588656, abs=1e-6)
    assert clopper_pearson_upper(10, 10, 0.05) == 1.0
    assert clopper_pearson_upper(5, 10, 0.05) > 0.5
    for k, n, a in [(-1, 10, 0.05), (11, 10, 0.05), (0, 0, 0.05), (1, 10, 0.0), (1, 10, 1.0)]:
        with pytest.raises(PrunekitError):
            clopper_pearson_upper(k, n, a)


def test_certify_with_a_constant_and_a_fragile_predictor():
    x = torch.rand(12, 3, 16, 16)
    y = torch.tensor([0, 1] * 6)
    data = [(x[:8], y[:8]), (x[8:], y[8:])]

    def constant(images):  # never changes its mind: no flips
        return torch.tensor([[1.0, 0.0]]).repeat(images.shape[0], 1)

    rep = certify(constant, data, n_samples=60, epsilon=0.1, alpha=0.05, seed=0)
    assert rep.flips == [0] * 12
    assert rep.clean_correct == [True, False] * 6
    assert rep.certified == [True, False] * 6  # certified only where the clean prediction is right
    assert rep.certified_accuracy == 0.5 and rep.mean_flip_rate == 0.0
    assert rep.smallest_bound == pytest.approx(1 - 0.05 ** (1 / 60))

    def fragile(images):  # decides on the exact pixel values: any corruption may flip it
        return torch.stack([images[:, 0, 0, 0], images[:, 1, 0, 0]], 1)

    rep2 = certify(
        fragile, data, n_samples=30, epsilon=0.1, corruptions=["gaussian_noise", "impulse_noise"], seed=1
    )
    assert rep2.mean_flip_rate > 0.02
    assert rep2.certified_accuracy < rep2.clean_accuracy
    d = rep2.to_dict(per_input=True)
    assert len(d["flips"]) == 12 and d["n_samples"] == 30
    assert (
        certify(fragile, data, n_samples=30, corruptions=["gaussian_noise", "impulse_noise"], seed=1).flips
        == rep2.flips
    )


def test_certify_bad_arguments():
    data = [(torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))]
    for kwargs in ({"n_samples": 0}, {"epsilon": 0.0}, {"alpha": 1.5}, {"corruptions": ["nope"]}):
        with pytest.raises(PrunekitError):
            certify(lambda x: torch.zeros(x.shape[0], 2), data, **kwargs)
