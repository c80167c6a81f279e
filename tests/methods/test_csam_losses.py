"""C-SAM: each loss on tiny hand-computable tensors, initialisation, mask noise, STE, combination."""

from __future__ import annotations

import math

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.methods.csam import (
    CSAMLossWeights,
    clamp_masks_,
    consistency_loss,
    csam_loss,
    l1_mask_loss,
    percentile_init,
    perturb_masks,
    ratio_loss,
    stability_loss,
    top2_margin,
    topk_binarizer,
)
from prunekit.methods.ste import ste_binarize, topk_binary


def test_stability_loss_hand_values():
    p1 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    p2 = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    # row 0: mean (0.5, 0.5), squared deviation 0.5 for each sample; row 1: 0
    assert float(stability_loss(p1, p2)) == pytest.approx(0.25)
    assert float(stability_loss(p1, p1)) == 0.0
    p3 = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    # row 0 with three samples: mean (0.5, 0.5), deviations 0.5, 0.5, 0 -> mean 1/3; row 1: 0
    assert float(stability_loss(p1, p2, p3)) == pytest.approx(1 / 6)


def test_ratio_loss_hand_values():
    p_x = torch.tensor([[0.7, 0.2, 0.1]])
    p_tx = torch.tensor([[0.5, 0.4, 0.1]])
    # sup-norm change 0.2, margin 0.5, ratio 0.4
    assert float(ratio_loss(p_x, p_tx, eta=1.0)) == pytest.approx(math.log1p(math.exp(0.4 - 1.0)))
    assert float(ratio_loss(p_x, p_tx, eta=0.0)) == pytest.approx(math.log1p(math.exp(0.4)))
    assert float(top2_margin(p_x)) == pytest.approx(0.5)


def test_ratio_loss_zero_margin_is_finite():
    p_x = torch.tensor([[0.5, 0.5]], requires_grad=True)
    p_tx = torch.tensor([[0.6, 0.4]])
    loss = ratio_loss(p_x, p_tx)
    assert math.isfinite(float(loss)) and float(loss) > 1000  # 0.1 / 1e-6 - 1
    loss.backward()
    assert torch.isfinite(p_x.grad).all()
    assert float(ratio_loss(p_x, p_x.detach())) == pytest.approx(math.log1p(math.exp(-1.0)))


def test_consistency_loss_hand_value():
    soft = torch.tensor([[0.0, 0.0]])  # p = (1/2, 1/2)
    binary = torch.tensor([[math.log(3.0), 0.0]])  # p = (3/4, 1/4)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert float(consistency_loss(soft, binary)) == pytest.approx(expected)
    assert float(consistency_loss(binary, binary)) == pytest.approx(0.0, abs=1e-7)


def test_l1_mask_loss():
    masks = [torch.tensor([0.5, 1.0]), torch.tensor([0.0, 0.25, 0.25])]
    assert float(l1_mask_loss(masks)) == pytest.approx(2.0)  # the L1 norm, a sum
    assert float(l1_mask_loss(torch.tensor([1.0, 0.0]))) == pytest.approx(1.0)


def test_percentile_init():
    scores = torch.arange(1.0, 11.0)
    c = percentile_init(scores, tau=30.0)
    q = 1 + 0.7 * 9  # 70th percentile of 1..10, linear interpolation
    torch.testing.assert_close(c, torch.clamp(scores / q, max=1.0))
    assert int((c == 1).sum()) == 3  # the top tau % start fully on
    torch.testing.assert_close(percentile_init(scores, tau=0.0), scores / 10)  # plain max-scaling
    assert float(c.min()) >= 0 and float(c.max()) <= 1
    mostly_zero = percentile_init(torch.tensor([0.0, 0.0, 0.0, 2.0]), tau=30)
    torch.testing.assert_close(mostly_zero, torch.tensor([0, 0, 0, 1.0]))
    with pytest.raises(PrunekitError):
        percentile_init(scores, tau=100)
    with pytest.raises(PrunekitError):
        percentile_init(torch.tensor([-1.0, 2.0]))


def test_percentile_init_keeps_heavy_tailed_masks_open():
    scores = torch.tensor([1.0] * 9 + [100.0])  # one outlier channel
    assert float(percentile_init(scores, tau=0).median()) == pytest.approx(0.01)
    assert float(percentile_init(scores, tau=30).median()) == 1.0


def test_perturb_masks_range_reproducible_and_differentiable():
    C = torch.full((1000,), 0.5, requires_grad=True)
    a = perturb_masks(C, mu=0.3, generator=torch.Generator().manual_seed(0))
    b = perturb_masks(C, mu=0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert float((a - 0.5).abs().max()) <= 0.3 + 1e-6 and float(a.std()) > 0.1
    edge = perturb_masks(torch.tensor([0.0, 1.0] * 500), mu=0.5, generator=torch.Generator().manual_seed(1))
    assert float(edge.min()) == 0.0 and float(edge.max()) == 1.0
    a.sum().backward()
    torch.testing.assert_close(C.grad, torch.ones_like(C))  # no clipping at 0.5 +- 0.3
    with pytest.raises(PrunekitError):
        perturb_masks(C, mu=-1)


def test_clamp_masks():
    m = [torch.tensor([-0.5, 0.5, 1.5])]
    clamp_masks_(m)
    torch.testing.assert_close(m[0], torch.tensor([0.0, 0.5, 1.0]))


def test_ste_binarize_forward_binary_backward_identity():
    c = torch.tensor([0.2, 0.9, 0.5, 0.7], requires_grad=True)
    hard = ste_binarize(c, k=2)
    assert hard.tolist() == [0.0, 1.0, 0.0, 1.0]
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (hard * upstream).sum().backward()
    torch.testing.assert_close(c.grad, upstream)
    assert ste_binarize(c, threshold=0.5).tolist() == [0.0, 1.0, 1.0, 1.0]
    assert topk_binary(torch.tensor([1.0, 1.0, 1.0]), 2).tolist() == [1.0, 1.0, 0.0]  # ties by index
    with pytest.raises(PrunekitError):
        ste_binarize(c)
    with pytest.raises(PrunekitError):
        ste_binarize(c, k=5)


def _toy_forward():
    torch.manual_seed(0)
    w1, w2 = torch.randn(4, 6), torch.randn(6, 3)
    calls = []

    def forward(x, masks):
        calls.append(1)
        return (torch.relu(x @ w1) * masks[0]) @ w2

    return forward, calls


def test_csam_loss_combines_terms_and_trains_masks():
    forward, calls = _toy_forward()
    x = torch.randn(5, 4)
    tx = x + 0.1 * torch.randn(5, 4)
    C = torch.full((6,), 0.6, requires_grad=True)
    weights = CSAMLossWeights()
    terms = csam_loss(forward, x, tx, [C], weights=weights, generator=torch.Generator().manual_seed(0),
                      binarize=topk_binarizer([3]))
    assert len(calls) == 5
    recombined = 5 * terms.stability + terms.ratio + terms.consistency + weights.l1 * terms.l1
    assert float(terms.total) == pytest.approx(recombined, rel=1e-5)
    assert terms.l1 == pytest.approx(0.6 * 6)
    assert terms.stability > 0 and terms.ratio > 0 and terms.consistency > 0
    terms.total.backward()
    assert C.grad is not None and torch.isfinite(C.grad).all() and C.grad.abs().sum() > 0


def test_csam_loss_matches_terms_computed_by_hand():
    forward, _ = _toy_forward()
    x, tx = torch.randn(3, 4), torch.randn(3, 4)
    C = torch.linspace(0.1, 0.9, 6)
    terms = csam_loss(forward, x, tx, [C], generator=torch.Generator().manual_seed(3), binarize=topk_binarizer([4]))
    gen = torch.Generator().manual_seed(3)
    n1, n2 = perturb_masks(C, 0.5, gen), perturb_masks(C, 0.5, gen)
    p1 = forward(x, [n1]).softmax(-1)
    assert terms.stability == pytest.approx(float(stability_loss(p1, forward(x, [n2]).softmax(-1))), rel=1e-6)
    assert terms.ratio == pytest.approx(float(ratio_loss(p1, forward(tx, [n2]).softmax(-1))), rel=1e-6)
    binary = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # the top 4 of the 6 masks: the deployed rule
    assert terms.consistency == pytest.approx(float(consistency_loss(forward(x, [C]), forward(x, [binary]))),
                                              rel=1e-6)


def test_csam_loss_skips_zero_weight_terms_and_task_term():
    forward, calls = _toy_forward()
    x = torch.randn(5, 4)
    C = torch.full((6,), 0.6, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1])
    w = CSAMLossWeights(stab=0, ratio=0, consist=0, l1=0, task=1.0)
    terms = csam_loss(forward, x, x, [C], weights=w, targets=y)
    assert len(calls) == 1
    assert float(terms.total) == pytest.approx(float(torch.nn.functional.cross_entropy(forward(x, [C]), y)))
    with pytest.raises(PrunekitError):
        CSAMLossWeights(stab=-1).validate()


def test_consistency_compares_with_the_deployed_topk_mask():
    """At a uniform initialisation a 0.5 threshold keeps every channel, so the old comparison saw
    no difference; the deployed top-k mask removes half of them and the loss sees it."""
    forward, _ = _toy_forward()
    x = torch.randn(8, 4)
    C = torch.full((6,), 0.6, requires_grad=True)
    only = CSAMLossWeights(stab=0, ratio=0, consist=1.0, l1=0)
    terms = csam_loss(forward, x, x, [C], weights=only, binarize=topk_binarizer([3]))
    expected = consistency_loss(forward(x, [C]), forward(x, [topk_binary(C, 3)]))
    assert terms.consistency == pytest.approx(float(expected), rel=1e-6)
    assert terms.consistency > 1e-3
    with pytest.raises(PrunekitError, match="deployed binariser"):
        csam_loss(forward, x, x, [C], weights=only)
    with pytest.raises(PrunekitError):
        topk_binarizer([3, 2])([C])


def test_l1_term_acts_on_every_mask_entry_with_its_weight():
    """The L1 gradient on each entry is lambda_1, not lambda_1 / (number of channels)."""
    forward, _ = _toy_forward()
    big = torch.full((600,), 0.5, requires_grad=True)
    w = CSAMLossWeights(stab=0, ratio=0, consist=0, l1=0.01)
    csam_loss(lambda x, ms: forward(x, [ms[0][:6]]), torch.randn(2, 4), torch.randn(2, 4), [big], weights=w).total.backward()
    assert torch.allclose(big.grad, torch.full_like(big, 0.01))
