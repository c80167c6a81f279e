"""AdaSAP: per-channel radii from importance and the per-channel perturbation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.methods.adasap import (
    RHO_MAX_ASAM,
    RHO_MIN,
    channel_radii,
    magnitude_scores,
    neuron_radius_fn,
    radii_for_parameters,
)
from prunekit.optim.sam import SAM, channel_perturbation


def test_radii_reverse_score_order_and_range():
    scores = torch.tensor([0.3, 5.0, 1.2, 0.05, 2.5, 1.2], dtype=torch.float64)
    radii = channel_radii(scores, 0.01, 2.0)
    assert float(radii.min()) >= 0.01 and float(radii.max()) <= 2.0
    assert radii[3] == pytest.approx(2.0) and radii[1] == pytest.approx(0.01)
    order_scores = torch.argsort(scores, stable=True)
    # strictly larger score -> strictly smaller radius, equal scores -> equal radii
    for i in range(len(scores)):
        for j in range(len(scores)):
            if scores[i] > scores[j]:
                assert radii[i] < radii[j]
            if scores[i] == scores[j]:
                assert radii[i] == radii[j]
    assert torch.all(radii[order_scores][1:] <= radii[order_scores][:-1])


def test_radii_linear_in_normalised_score():
    scores = torch.tensor([0.0, 1.0, 2.0, 4.0])
    radii = channel_radii(scores, 0.5, 1.5)
    torch.testing.assert_close(radii, torch.tensor([1.5, 1.25, 1.0, 0.5]))


def test_radii_equal_scores_midpoint_and_errors():
    torch.testing.assert_close(channel_radii(torch.ones(3), 0.0, 1.0), torch.full((3,), 0.5))
    with pytest.raises(PrunekitError):
        channel_radii(torch.ones(3), 1.0, 0.5)
    with pytest.raises(PrunekitError):
        channel_radii(torch.tensor([1.0, float("nan")]))
    with pytest.raises(PrunekitError):
        channel_radii(torch.ones(3), -0.1, 1.0)


@pytest.mark.parametrize("adaptive", [False, True])
def test_channel_perturbation_hand_computation(adaptive):
    w = np.array([[1.0, -2.0], [0.5, 3.0], [0.0, 1.0]])
    g = np.array([[0.3, 0.4], [-1.0, 2.0], [0.0, 0.0]])
    radii = np.array([0.1, 2.0, 1.0])
    eps = channel_perturbation(torch.tensor(w), torch.tensor(g), torch.tensor(radii), adaptive=adaptive)
    t = np.abs(w) + 0.01 if adaptive else np.ones_like(w)
    for i in range(2):
        expected = radii[i] * t[i] ** 2 * g[i] / np.linalg.norm(t[i] * g[i])
        np.testing.assert_allclose(eps[i].numpy(), expected, rtol=1e-9)
        # the perturbation sits on the boundary of its (T-scaled) ball: ||T^-1 eps_i|| = rho_i
        assert np.linalg.norm(eps[i].numpy() / t[i]) == pytest.approx(radii[i])
    np.testing.assert_array_equal(eps[2].numpy(), 0.0)  # zero gradient -> no perturbation


def test_channel_perturbation_conv_shape():
    w, g = torch.randn(4, 3, 3, 3), torch.randn(4, 3, 3, 3)
    eps = channel_perturbation(w, g, torch.tensor([0.1, 0.2, 0.3, 0.4]), adaptive=False)
    assert eps.shape == w.shape
    torch.testing.assert_close(eps.flatten(1).norm(dim=1), torch.tensor([0.1, 0.2, 0.3, 0.4]))


def test_radii_for_parameters_global_and_per_layer():
    a, b = nn.Parameter(torch.zeros(2, 3)), nn.Parameter(torch.zeros(3))
    scores = {a: torch.tensor([1.0, 3.0]), b: torch.tensor([2.0, 5.0, 4.0])}
    glob = radii_for_parameters(scores, 0.0, 1.0)
    torch.testing.assert_close(glob[a], torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(glob[b], torch.tensor([0.75, 0.0, 0.25]))
    per = radii_for_parameters(scores, 0.0, 1.0, per_layer=True)
    torch.testing.assert_close(per[a], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(per[b], torch.tensor([1.0, 0.0, 1.0 / 3.0]))


@pytest.mark.parametrize("mode, scale", [("neuron", 1.0), ("network", 3 ** -0.5)])
def test_neuron_radii_drive_sam_per_channel(mode, scale):
    """neuron: the paper's eq. 6, every neuron's ball has its full radius; network (the default):
    the same radii divided by sqrt(neurons), so the whole perturbation is at most rho_max."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.mul_(torch.tensor([0.1, 1.0, 3.0]).view(3, 1, 1, 1))  # distinct magnitudes
    conv.bias.requires_grad_(False)
    rho, groups = neuron_radius_fn(conv, torch.zeros(1, 2, 5, 5), RHO_MIN, RHO_MAX_ASAM, mode)
    assert groups == []  # no BatchNorm: each conv row is a neuron on its own
    sam = SAM([conv.weight], torch.optim.SGD(conv.parameters(), lr=0.1), rho=rho, adaptive=True)
    before = conv.weight.detach().clone()
    conv(torch.randn(2, 2, 5, 5)).square().sum().backward()
    sam.first_step()
    eps = conv.weight.detach() - before
    t = before.abs() + 0.01
    ball = (eps / t).flatten(1).norm(dim=1)
    expected = channel_radii(magnitude_scores(before), RHO_MIN, RHO_MAX_ASAM) * scale
    torch.testing.assert_close(ball, expected, rtol=1e-4, atol=1e-6)
    if mode == "network":
        assert float(ball.norm()) <= RHO_MAX_ASAM
    assert ball[0] > ball[1] > ball[2]  # smallest channel gets the largest ball
    sam.restore()
