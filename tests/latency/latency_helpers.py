"""Shared builders for the latency tests: a tiny model and a hand-made profile covering it."""

from __future__ import annotations

from torch import nn

from prunekit.latency.layers import enumerate_layers
from prunekit.latency.profile import Constant, MeasuredProvenance, Profile, TableEntry

INPUT = (1, 3, 16, 16)


def tiny_model() -> nn.Module:
    """conv 3->8 (16x16), depthwise 8 (16x16), conv 8->16 stride 2, pool, linear 16->4."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()


def provenance() -> MeasuredProvenance:
    return MeasuredProvenance(
        device="cpu", device_model="test CPU", runtime_version="onnxruntime 0", date="2026-01-01"
    )


def tiny_profile(name: str = "tiny", fixed_ms: float = 0.25) -> Profile:
    """A hand-made table covering tiny_model() exactly at its dense widths (and a few more)."""
    sigs = {s.signature: s for s in enumerate_layers(tiny_model(), INPUT)}
    table = {}
    for sig, spec in sigs.items():
        if spec.op == "dwconv":
            table[sig] = TableEntry(cin=[4, 8], ms=[0.5, 0.75])
        elif spec.op == "linear":
            table[sig] = TableEntry(cin=[8, 16], cout=[4], ms=[[0.05], [0.1]])
        elif spec.cin == 3:
            table[sig] = TableEntry(cin=[3], cout=[4, 8], ms=[[0.3, 0.4]])
        else:
            table[sig] = TableEntry(cin=[4, 8], cout=[8, 16], ms=[[1.0, 1.5], [1.25, 2.0]])
    return Profile(
        name=name,
        aliases=[f"{name}-alias"],
        runtime="onnxruntime",
        batch_size=1,
        threads=1,
        input_size=(16, 16),
        provenance=provenance(),
        table=table,
        constant=Constant(method="fixed", fixed_ms=fixed_ms),
    )
