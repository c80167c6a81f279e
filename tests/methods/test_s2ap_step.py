"""S2AP: straight-through top-k mask and the sharpness-aware score step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.methods.s2ap import s2ap_score_step, topk_mask_ste

A = [np.array([1.0, 2.0, 3.0]), np.array([0.5, 4.0])]
B = [np.array([0.1, -0.2, 0.3]), np.array([1.0, 0.0])]
S0 = [np.array([1.0, -1.0, 0.5]), np.array([2.0, 0.25])]


def _problem():
    scores = [torch.tensor(s, dtype=torch.float64, requires_grad=True) for s in S0]
    a = [torch.tensor(x, dtype=torch.float64) for x in A]
    b = [torch.tensor(x, dtype=torch.float64) for x in B]
    calls = []

    def loss_fn():
        calls.append([s.detach().clone() for s in scores])
        terms = zip(a, b, scores, strict=True)
        return sum(0.5 * (ai * si**2).sum() + (bi * si).sum() for ai, bi, si in terms)

    return scores, loss_fn, calls


def _loss(s):
    return sum(0.5 * (a * x**2).sum() + (b * x).sum() for a, b, x in zip(A, B, s, strict=True))


def test_score_step_matches_hand_computation():
    rho, lr = 0.2, 0.1
    scores, loss_fn, calls = _problem()
    result = s2ap_score_step(scores, loss_fn, torch.optim.SGD(scores, lr=lr), rho)
    g = [a * s + b for a, b, s in zip(A, B, S0, strict=True)]
    norm = np.sqrt(sum((x**2).sum() for x in g))
    perturbed = [s + rho * x / norm for s, x in zip(S0, g, strict=True)]
    g2 = [a * p + b for a, b, p in zip(A, B, perturbed, strict=True)]
    for got, s, x in zip(scores, S0, g2, strict=True):
        np.testing.assert_allclose(got.detach().numpy(), s - lr * x, rtol=1e-12)
    np.testing.assert_allclose(calls[1][0].numpy(), perturbed[0], rtol=1e-12)
    assert result.loss == pytest.approx(_loss(S0))
    assert result.perturbed_loss == pytest.approx(_loss(perturbed))
    assert result.perturbed_loss > result.loss


def test_scores_restored_before_optimizer_step():
    scores, loss_fn, _ = _problem()
    seen = []

    class Recorder(torch.optim.SGD):
        def step(self, closure=None):
            seen.append([s.detach().clone() for s in scores])
            return super().step(closure)

    s2ap_score_step(scores, loss_fn, Recorder(scores, lr=0.1), rho=0.5)
    for got, s in zip(seen[0], S0, strict=True):
        assert np.array_equal(got.numpy(), s)


def test_rho_zero_is_plain_hydra_step():
    scores, loss_fn, calls = _problem()
    s2ap_score_step(scores, loss_fn, torch.optim.SGD(scores, lr=0.1), rho=0.0)
    assert len(calls) == 1
    for got, a, b, s in zip(scores, A, B, S0, strict=True):
        np.testing.assert_allclose(got.detach().numpy(), s - 0.1 * (a * s + b), rtol=1e-12)


def test_invalid_inputs():
    scores, loss_fn, _ = _problem()
    opt = torch.optim.SGD(scores, lr=0.1)
    with pytest.raises(PrunekitError):
        s2ap_score_step(scores, loss_fn, opt, rho=-1.0)
    with pytest.raises(PrunekitError):
        s2ap_score_step([torch.zeros(2)], loss_fn, opt, rho=0.1)


def test_topk_mask_ste_passes_gradient():
    scores = torch.tensor([0.3, -1.0, 2.0, 0.5], requires_grad=True)
    mask = topk_mask_ste(scores, 2)
    assert mask.tolist() == [0.0, 0.0, 1.0, 1.0]
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (mask * weights).sum().backward()
    torch.testing.assert_close(scores.grad, weights)


def test_hydra_style_scores_learn_to_keep_useful_channels():
    """End to end on a toy: channels 0 and 1 carry the signal, the top-2 mask should find them."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x[:, 0] - 2 * x[:, 1]
    w = torch.tensor([1.0, -2.0, 0.3, 0.3])
    scores = torch.tensor([0.1, 0.1, 0.5, 0.5], requires_grad=True)
    opt = torch.optim.SGD([scores], lr=0.05)

    def loss_fn():
        return ((x * (w * topk_mask_ste(scores, 2))).sum(1) - y).pow(2).mean()

    for _ in range(50):
        s2ap_score_step([scores], loss_fn, opt, rho=0.05)
    assert topk_mask_ste(scores, 2).tolist() == [1.0, 1.0, 0.0, 0.0]
