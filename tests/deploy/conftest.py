"""Runs for the deploy tests: small torchvision models pruned and fine-tuned on digits at 32 px.

The dense model stays untrained (cheap); one epoch of fine-tuning gives the PRUNED model BatchNorm
statistics and logits that are not ~0 (an untrained MobileNetV2 outputs logits of 1e-16), so its
ONNX-vs-PyTorch parity comparison means something.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Callable[[str], Path]:
    from prunekit.compress import compress
    from prunekit.settings import make_settings

    cache: dict[str, Path] = {}

    def make(model: str) -> Path:
        if model not in cache:
            out = tmp_path_factory.mktemp(model) / "run"
            settings = make_settings(model=model, pretrain_epochs=0, epochs=1, input_size=32, prune_ratio=0.5)
            compress(settings, out, quiet=True, console=Console(quiet=True))
            cache[model] = out
        return cache[model]

    return make
