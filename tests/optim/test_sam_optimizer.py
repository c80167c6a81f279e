"""SAM / ASAM wrapper: hand-computed steps, per-channel radii, every-k reuse, BN, AMP, DDP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.optim.sam import (
    SAM,
    ascent_context,
    disable_running_stats,
    enable_running_stats,
    running_stats_frozen,
)

A1 = np.array([1.0, 2.0, 0.5])
A2 = np.array([3.0, 0.25])
W1 = np.array([1.0, -2.0, 3.0])
W2 = np.array([0.5, -1.5])


def _quadratic_setup(lr: float = 0.1):
    w1 = nn.Parameter(torch.tensor(W1, dtype=torch.float64))
    w2 = nn.Parameter(torch.tensor(W2, dtype=torch.float64))
    a1 = torch.tensor(A1, dtype=torch.float64)
    a2 = torch.tensor(A2, dtype=torch.float64)

    def closure():
        loss = 0.5 * (a1 * w1**2).sum() + 0.5 * (a2 * w2**2).sum()
        loss.backward()
        return loss

    base = torch.optim.SGD([w1, w2], lr=lr)
    return w1, w2, closure, base


def _hand_step(rho: float, lr: float, adaptive: bool, eta: float = 0.01):
    g = np.concatenate([A1 * W1, A2 * W2])
    w = np.concatenate([W1, W2])
    a = np.concatenate([A1, A2])
    t = np.abs(w) + eta if adaptive else np.ones_like(w)
    eps = rho * t * t * g / np.linalg.norm(t * g)
    g2 = a * (w + eps)
    return w - lr * g2


@pytest.mark.parametrize("adaptive", [False, True])
def test_step_matches_hand_computation(adaptive):
    rho, lr = 0.3, 0.1
    w1, w2, closure, base = _quadratic_setup(lr)
    sam = SAM([w1, w2], base, rho=rho, adaptive=adaptive)
    loss = sam.step(closure)
    expected = _hand_step(rho, lr, adaptive)
    got = np.concatenate([w1.detach().numpy(), w2.detach().numpy()])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # the returned loss is the unperturbed one
    w = np.concatenate([W1, W2])
    assert float(loss) == pytest.approx(0.5 * float((np.concatenate([A1, A2]) * w**2).sum()))
    assert w1.grad is None and sam.step_count == 1 and sam.ascent_passes == 1


def test_manual_two_step_protocol_equals_step():
    rho, lr = 0.2, 0.05
    w1, w2, closure, base = _quadratic_setup(lr)
    sam = SAM(None, base, rho=rho)  # None: all base-optimizer params
    assert sam.needs_ascent_pass()
    closure()
    sam.first_step()
    assert sam.perturbed and w1.grad is None
    closure()
    sam.second_step()
    assert not sam.perturbed
    got = np.concatenate([w1.detach().numpy(), w2.detach().numpy()])
    np.testing.assert_allclose(got, _hand_step(rho, lr, False), rtol=1e-12)


def test_rho_zero_is_plain_sgd():
    w1, w2, closure, base = _quadratic_setup(0.1)
    SAM([w1, w2], base, rho=0.0).step(closure)
    np.testing.assert_allclose(w1.detach().numpy(), W1 - 0.1 * A1 * W1, rtol=1e-12)


def test_restore_is_exact():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(7, 5))
    before = w.detach().clone()
    sam = SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.7, adaptive=True)
    (w.sin().sum()).backward()
    sam.first_step()
    assert not torch.equal(w.detach(), before)
    sam.restore()
    assert torch.equal(w.detach(), before)


def test_per_channel_radii_mapping():
    w = nn.Parameter(torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))  # not in the mapping: not perturbed
    radii = torch.tensor([0.1, 0.5], dtype=torch.float64)
    sam = SAM([w, b], torch.optim.SGD([w, b], lr=0.1), rho={w: radii})
    target = torch.tensor([[0.0, 1.0, 1.0], [2.0, -1.0, 0.0]], dtype=torch.float64)
    (0.5 * ((w - target) ** 2).sum() + (b**2).sum()).backward()
    g = (w - target).detach().numpy()
    sam.first_step()
    eps = w.detach().numpy() - np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    for i, r in enumerate([0.1, 0.5]):
        np.testing.assert_allclose(eps[i], r * g[i] / np.linalg.norm(g[i]), rtol=1e-12)
    assert torch.equal(b.detach(), torch.ones(2, dtype=torch.float64))
    sam.restore()


def test_callable_rho_evaluated_each_ascent_pass():
    w = nn.Parameter(torch.ones(2, 2))
    calls = []

    def rho():
        calls.append(1)
        return {w: torch.tensor([0.1, 0.2])}

    sam = SAM([w], torch.optim.SGD([w], lr=0.1), rho=rho)
    for _ in range(3):
        sam.step(lambda: (w**2).sum().backward())
    assert len(calls) == 3


def test_every_k_reuses_last_perturbation():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, dtype=torch.float64))
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    evaluated_at: list[torch.Tensor] = []

    def closure():
        evaluated_at.append(w.detach().clone())
        loss = 0.5 * (a * w**2).sum()
        loss.backward()
        return loss

    sam = SAM([w], torch.optim.SGD([w], lr=0.05), rho=0.1, every=3)
    pattern = []
    eps_used = []
    for _ in range(6):
        pattern.append(sam.needs_ascent_pass())
        start = w.detach().clone()
        n_before = len(evaluated_at)
        sam.step(closure)
        # the descent pass is the last evaluation; its offset from the start weights is eps
        eps_used.append(evaluated_at[-1] - start)
        assert len(evaluated_at) - n_before == (2 if pattern[-1] else 1)
    assert pattern == [True, False, False, True, False, False]
    assert sam.ascent_passes == 2 and len(evaluated_at) == 8
    close = dict(rtol=0, atol=1e-15)  # (w + eps) - w differs from eps only by float rounding
    torch.testing.assert_close(eps_used[1], eps_used[0], **close)
    torch.testing.assert_close(eps_used[2], eps_used[0], **close)
    torch.testing.assert_close(eps_used[4], eps_used[3], **close)
    assert not torch.allclose(eps_used[3], eps_used[0])
    assert float(eps_used[0].norm()) == pytest.approx(0.1)


def test_every_k_recomputes_after_shape_change():
    w = nn.Parameter(torch.ones(3))
    sam = SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.1, every=5)
    sam.step(lambda: (w**2).sum().backward())
    assert not sam.needs_ascent_pass()
    sam.params = [nn.Parameter(torch.ones(2))]
    assert sam.needs_ascent_pass()


def test_batchnorm_stats_updated_only_on_first_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    reference = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    reference.load_state_dict(model.state_dict())
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    reference(x)  # one training-mode forward at the unperturbed weights
    sam = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), rho=0.5)
    sam.step(lambda: nn.functional.mse_loss(model(x), y).backward(), model=model)
    bn, ref = model[1], reference[1]
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 1 and bn.momentum == 0.1


def test_running_stats_helpers_restore_momentum_none():
    bn = nn.BatchNorm1d(2, momentum=None)
    model = nn.Sequential(bn)
    disable_running_stats(model)
    disable_running_stats(model)  # idempotent: keeps the first remembered state
    assert bn.momentum == 0.0
    before = bn.running_mean.clone()
    model(torch.randn(4, 2) + 5)
    assert torch.equal(bn.running_mean, before)
    enable_running_stats(model)
    assert bn.momentum is None and int(bn.num_batches_tracked) == 0
    with running_stats_frozen(model):
        assert bn.momentum == 0.0
    assert bn.momentum is None


def test_amp_grad_scaler_gives_same_step():
    torch.manual_seed(0)
    results = []
    for use_scaler in (False, True):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 2))
        x, y = torch.randn(6, 5), torch.randint(0, 2, (6,))
        base = torch.optim.SGD(model.parameters(), lr=0.1)
        sam = SAM(model.parameters(), base, rho=0.05, adaptive=True)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0) if use_scaler else None

        def closure(scaler=scaler, model=model, x=x, y=y):
            loss = nn.functional.cross_entropy(model(x), y)
            (scaler.scale(loss) if scaler else loss).backward()
            return loss

        sam.step(closure, model=model, scaler=scaler)
        results.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_overflowed_gradient_gives_no_perturbation():
    w = nn.Parameter(torch.ones(3))
    v = nn.Parameter(torch.ones(2))
    sam = SAM([w, v], torch.optim.SGD([w, v], lr=0.1), rho=0.5)
    w.grad = torch.tensor([1.0, float("inf"), 0.0])
    v.grad = torch.ones(2)
    sam.first_step()
    assert torch.equal(w.detach(), torch.ones(3)) and torch.equal(v.detach(), torch.ones(2))
    sam.restore()


def test_ascent_context_plain_and_ddp(tmp_path):
    import contextlib

    import torch.distributed as dist

    assert isinstance(ascent_context(nn.Linear(2, 2)), contextlib.nullcontext)
    assert isinstance(ascent_context(None), contextlib.nullcontext)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
        with ascent_context(ddp):
            assert ddp.require_backward_grad_sync is False
        assert ddp.require_backward_grad_sync is True
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rho": -0.1},
        {"rho": float("nan")},
        {"rho": "big"},
        {"every": 0},
        {"every": 1.5},
        {"eta": -1.0},
    ],
)
def test_invalid_settings_raise(kwargs):
    w = nn.Parameter(torch.ones(2))
    with pytest.raises(PrunekitError):
        SAM([w], torch.optim.SGD([w], lr=0.1), **kwargs)


def test_invalid_radii_raise():
    w = nn.Parameter(torch.ones(2, 2))
    base = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(PrunekitError):
        SAM([w], base, rho={w: torch.tensor([0.1, -0.2])})
    sam = SAM([w], base, rho={w: torch.tensor([0.1, 0.2, 0.3])})  # wrong channel count
    (w**2).sum().backward()
    with pytest.raises(PrunekitError, match="output channels"):
        sam.first_step()
    with pytest.raises(PrunekitError):
        SAM([w], nn.Linear(2, 2), rho=0.1)  # not an optimizer


def test_misuse_raises():
    w = nn.Parameter(torch.ones(2))
    sam = SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.1)
    with pytest.raises(RuntimeError, match="without gradients"):
        sam.first_step()
    with pytest.raises(RuntimeError, match="without first_step"):
        sam.second_step()
    (w**2).sum().backward()
    sam.first_step()
    with pytest.raises(RuntimeError, match="twice"):
        sam.first_step()


def test_amp_overflow_step_is_skipped_and_weights_restored():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    sam = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), rho=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)

    def closure():
        loss = model(torch.randn(4, 3)).square().mean()
        scaler.scale(loss).backward()
        model.weight.grad[0, 0] = float("inf")  # what an fp16 overflow looks like
        return loss

    sam.step(closure, model=model, scaler=scaler)
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)
    assert scaler.get_scale() < 2.0**10


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_autocast_fp16_step_close_to_fp32():
    results = []
    for amp in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)).cuda()
        x, y = torch.randn(32, 16, device="cuda"), torch.randint(0, 4, (32,), device="cuda")
        sam = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05)
        scaler = torch.amp.GradScaler("cuda") if amp else None

        def closure(model=model, x=x, y=y, scaler=scaler, amp=amp):
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                loss = nn.functional.cross_entropy(model(x), y)
            (scaler.scale(loss) if scaler else loss).backward()
            return loss

        sam.step(closure, model=model, scaler=scaler)
        results.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-2, atol=1e-3)


def test_asam_scales_weights_not_biases_as_the_reference():
    """ASAM's reference code applies T = |w| + eta to weights only; biases get T = 1."""
    from prunekit.train import TrainConfig, make_optimizer

    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    opt = make_optimizer(lin, TrainConfig(epochs=1, optimizer="asam", rho=0.5))
    nn.functional.cross_entropy(lin(x), y).backward()
    gw, gb = lin.weight.grad.clone(), lin.bias.grad.clone()
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    opt.first_step()
    tw = w0.abs() + 0.01
    norm = torch.sqrt(((tw * gw) ** 2).sum() + (gb**2).sum())
    torch.testing.assert_close(lin.weight.detach() - w0, 0.5 * tw**2 * gw / norm, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(lin.bias.detach() - b0, 0.5 * gb / norm, rtol=1e-5, atol=1e-7)
    opt.restore()


def test_weights_of_picks_weights_and_norm_scales():
    from prunekit.optim.sam import weights_of

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in weights_of(model)) == ["0.weight", "1.weight", "3.weight"]


def test_coupled_channels_share_one_norm_per_neuron():
    from prunekit.optim.sam import channel_perturbation, coupled_channel_perturbation

    torch.manual_seed(0)
    w, g = torch.randn(3, 4), torch.randn(3, 4)
    gamma, ggamma = torch.randn(3), torch.randn(3)
    radii = torch.tensor([0.1, 0.5, 1.0])
    eps_w, eps_g = coupled_channel_perturbation([w, gamma], [g, ggamma], radii, adaptive=[False, False])
    joint = torch.sqrt(eps_w.pow(2).sum(1) + eps_g.pow(2))
    torch.testing.assert_close(joint, radii)
    # the direction is the joint gradient's
    torch.testing.assert_close(eps_w / g, (eps_g / ggamma)[:, None].expand(3, 4), rtol=1e-5, atol=1e-6)
    # one tensor alone is the per-channel perturbation
    torch.testing.assert_close(coupled_channel_perturbation([w], [g], radii, adaptive=[True])[0],
                               channel_perturbation(w, g, radii, adaptive=True))
