from __future__ import annotations

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
