"""Run by torchrun in tests: compress on every rank, then dump this rank's final architecture + weights."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from prunekit.compress import compress_model
from prunekit.settings import make_settings


def main() -> None:
    out, dump = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    settings = make_settings(
        data="synthetic:64", num_classes=4, input_size=16, pretrain_epochs=1, epochs=1, batch_size=16,
        method=os.environ.get("PK_METHOD", "magnitude"), prune_ratio=0.5,
        finetune_optimizer=os.environ.get("PK_OPT") or None, prune_every=2, prune_steps=2, warmup_epochs=1,
    )
    _, model = compress_model(settings, out, quiet=True)
    digest = hashlib.sha256()
    shapes = {}
    for name, tensor in sorted(model.state_dict().items()):
        shapes[name] = list(tensor.shape)
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    rank = int(os.environ.get("RANK", 0))
    (dump / f"rank{rank}.json").write_text(json.dumps({"shapes": shapes, "sha256": digest.hexdigest()}))


if __name__ == "__main__":
    main()
