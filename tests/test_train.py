from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunekit.data import load_data
from prunekit.errors import PrunekitError
from prunekit.models import build_model
from prunekit.train import TrainConfig, evaluate, fit, load_checkpoint


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", 4)


@pytest.mark.parametrize("optimizer", ["sgd", "sam"])
def test_resume_gives_the_same_weights(tmp_path, optimizer):
    data = load_data("synthetic:48", 16, 4)
    cfg = TrainConfig(epochs=2, batch_size=16, optimizer=optimizer, lr=0.05)
    straight = _model()
    fit(straight, data, cfg, stage="t", checkpoint_dir=tmp_path / "a", quiet=True)

    # real interruption: train epoch 1 only by raising from inside the loader on epoch 2
    class Stop(Exception):
        pass

    killed = _model()
    original = data.loader

    def loader(split, batch_size, seed=0, shuffle=None, distributed=False, num_workers=0):
        inner = original(split, batch_size, seed, shuffle, distributed, num_workers)

        class Wrapped:
            sampler = inner.sampler

            def __len__(self):
                return len(inner)

            def __iter__(self):
                if inner.sampler.epoch == 1:
                    raise Stop
                return iter(inner)

        return Wrapped()

    data.loader = loader
    with pytest.raises(Stop):
        fit(killed, data, cfg, stage="t", checkpoint_dir=tmp_path / "d", quiet=True)
    data.loader = original
    assert int(load_checkpoint(tmp_path / "d" / "t.pt")["epoch"]) == 1
    resumed = _model()
    log = fit(resumed, data, cfg, stage="t", checkpoint_dir=tmp_path / "d", resume=True, quiet=True)
    assert log.resumed_from_epoch == 1
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k


def test_training_learns_digits():
    data = load_data("digits", 32)
    torch.manual_seed(0)
    model = build_model("resnet18", 10)
    before = evaluate(model, data.loader("val", 128, shuffle=False))
    fit(model, data, TrainConfig(epochs=2, batch_size=64), stage="x", quiet=True)
    after = evaluate(model, data.loader("val", 128, shuffle=False))
    assert after > before and after > 0.5


def test_bad_config_and_bad_checkpoint(tmp_path):
    with pytest.raises(PrunekitError):
        TrainConfig(epochs=1, optimizer="adamw").validate()
    (tmp_path / "t.pt").write_bytes(b"garbage")
    data = load_data("synthetic:16", 16, 2)
    with pytest.raises(PrunekitError, match="cannot resume"):
        fit(build_model("resnet18", 2), data, TrainConfig(epochs=1), stage="t", checkpoint_dir=tmp_path,
            resume=True, quiet=True)


def _lr_trace(monkeypatch) -> list[float]:
    """Learning rates seen by every optimisation step (recorded around train_step)."""
    import prunekit.train as train

    seen: list[float] = []
    real = train.train_step

    def spy(model, optimizer, *args, **kwargs):
        seen.append(train.base_optimizer(optimizer).param_groups[0]["lr"])
        return real(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(train, "train_step", spy)
    return seen


def test_optimizer_factory_and_max_steps(monkeypatch):
    data = load_data("synthetic:64", 16, 4)
    built = []

    def factory(model, cfg):
        built.append(cfg.lr)
        return torch.optim.SGD(model.parameters(), lr=cfg.lr)

    lrs = _lr_trace(monkeypatch)
    fit(_model(), data, TrainConfig(epochs=1, max_steps=7, batch_size=16, lr=0.1), stage="f", quiet=True,
        optimizer_factory=factory)
    assert built == [0.1]
    assert len(lrs) == 7  # 7 steps over two epochs of 4 batches, one cosine schedule over all 7
    assert lrs[0] == pytest.approx(0.1) and all(b < a for a, b in zip(lrs, lrs[1:], strict=False))


def test_step_hook_replacing_the_optimizer_keeps_the_lr_schedule(monkeypatch):
    data = load_data("synthetic:64", 16, 4)
    cfg = TrainConfig(epochs=1, max_steps=8, batch_size=16, lr=0.1)
    plain = _lr_trace(monkeypatch)
    fit(_model(), data, cfg, stage="a", quiet=True)
    reference = list(plain)
    plain.clear()
    calls = []

    def hook(done, optimizer):
        calls.append(done)
        if done in (3, 6):
            from prunekit.train import make_optimizer

            return make_optimizer(model, cfg)  # what a pruning step does after removing channels
        return None

    model = _model()
    fit(model, data, cfg, stage="b", quiet=True, step_hook=hook)
    assert calls == list(range(1, 9))
    assert plain == pytest.approx(reference)  # one continuous cosine schedule, not restarted
    with pytest.raises(ValueError):
        fit(model, data, cfg, stage="c", quiet=True, step_hook=hook, checkpoint_dir=Path("unused"))


def test_train_knows_nothing_of_methods():
    import ast

    import prunekit.train as train

    tree = ast.parse(Path(train.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.startswith("prunekit.methods") for m in imported)
    assert "adaptive_radii" not in TrainConfig.__dataclass_fields__
