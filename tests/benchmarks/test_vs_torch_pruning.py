"""The vs-Torch-Pruning benchmark's comparison code on a small model and a hand-made profile.

Not a timed test: the ONNX timings are real but only their presence is checked, never their values.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.latency.layers import enumerate_layers
from prunekit.latency.profile import Constant, MeasuredProvenance, Profile, TableEntry
from prunekit.pruning import count_macs_params

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (1, 3, 16, 16)


def _load_benchmark():
    name = "vs_torch_pruning_bench"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "vs_torch_pruning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


vtp = _load_benchmark()


def small_model() -> nn.Module:
    """conv 3->W, a residual block at W (16x16), conv W->2W stride 2, pool, linear 2W->10 (W = 96)."""

    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = 96
            self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
            self.block = nn.Sequential(
                nn.Conv2d(w, 64, 3, padding=1, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(),
                nn.Conv2d(64, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
            )
            self.down = nn.Sequential(
                nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU()
            )
            self.fc = nn.Linear(2 * w, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            x = torch.relu(x + self.block(x))
            return self.fc(self.down(x).mean((2, 3)))

    torch.manual_seed(0)
    return Small().eval()


def small_profile(drop: str | None = None) -> Profile:
    """A table covering small_model() on a step-8 grid: latency ~ cin * cout * output pixels."""
    specs: dict[str, list] = {}
    for spec in enumerate_layers(small_model(), SHAPE):
        if spec.signature != drop:
            specs.setdefault(spec.signature, []).append(spec)
    table = {}
    for sig, group in specs.items():
        cin = sorted({3 for s in group if s.cin == 3} | set(range(8, max(s.cin for s in group) + 1, 8)))
        if group[0].op == "linear":
            table[sig] = TableEntry(cin=cin, cout=[10], ms=[[1e-4 * c] for c in cin])
            continue
        pix = group[0].output_hw[0] * group[0].output_hw[1]
        cout = list(range(8, max(s.cout for s in group) + 1, 8))
        table[sig] = TableEntry(cin=cin, cout=cout, ms=[[2e-7 * a * b * pix for b in cout] for a in cin])
    prov = MeasuredProvenance(
        device="cpu", device_model="test CPU", runtime_version="onnxruntime 0", date="2026-01-01"
    )
    return Profile(
        name="tiny-bench",
        runtime="onnxruntime",
        batch_size=1,
        threads=1,
        input_size=(16, 16),
        provenance=prov,
        table=table,
        constant=Constant(method="fixed", fixed_ms=0.05),
    )


FAST = vtp.Timing(threads=1, warmup=1, repeats=3, search_repeats=2)


def test_compare_produces_every_row_and_matches_macs() -> None:
    rows = vtp.compare_model(
        "small", small_model(), SHAPE, small_profile(), [0.5], FAST, log=lambda _s: None, latency_iterations=2
    )
    assert [r.method for r in rows] == ["prunekit", "tp", "tp-r8", "tp-r8-lat"]
    assert all(not r.error for r in rows), [r.error for r in rows]
    pk = rows[0]
    assert pk.predicted_ratio is not None and pk.predicted_ratio <= 0.5 + 1e-9
    for r in rows:
        assert r.macs_ratio is not None and 0 < r.macs_ratio < 1 and 0 < r.params_ratio < 1
        assert r.measured_ratio is not None and r.measured_ratio > 0 and r.dense_ms > 0
        assert r.budget_met == (r.measured_ratio <= 0.5 * vtp.TOLERANCE)
    tp_default = rows[1]
    assert tp_default.pruning_ratio is not None and 0 < tp_default.pruning_ratio < 1
    assert abs(tp_default.macs_ratio / pk.macs_ratio - 1) <= vtp.MATCH_TOL
    assert abs(tp_default.match_error) <= vtp.MATCH_TOL
    assert rows[1].predicted_ratio is None  # predictions are prunekit's only


@pytest.mark.parametrize("fraction", [0.7, 0.45, 0.3])
def test_equal_macs_matching_lands_within_two_percent(fraction: float) -> None:
    dense = vtp.prepare_dense("small", small_model(), SHAPE, small_profile())
    target = fraction * dense.macs
    model, ratio, macs = vtp.match_macs(dense, target, round_to=None)
    assert macs == count_macs_params(model, dense.example)[0]
    assert abs(macs / target - 1) <= vtp.MATCH_TOL
    assert 0 < ratio < 1


def test_bisect_stops_at_the_closest_probe() -> None:
    seen = []

    def probe(r: float) -> tuple[float, str]:
        seen.append(r)
        return (1 - r) ** 2, f"r={r:.3f}"

    ratio, value, payload = vtp.bisect_ratio(probe, 0.25, tol=0.01)
    assert abs(value / 0.25 - 1) <= 0.01 and abs(ratio - 0.5) < 0.01 and payload.startswith("r=")


def test_missing_signature_and_untraceable_model_become_failed_rows() -> None:
    profile = small_profile(drop=enumerate_layers(small_model(), SHAPE)[1].signature)
    rows = vtp.compare_model("small", small_model(), SHAPE, profile, [0.5, 0.3], FAST, log=lambda _s: None)
    assert len(rows) == 8 and all(r.error for r in rows)
    pk = [r for r in rows if r.method == "prunekit"]
    assert all("prunekit profile --target tiny-bench" in r.error for r in pk)
    assert all("no prunekit result" in r.error for r in rows if r.method != "prunekit")

    import torchvision

    shuffle = torchvision.models.shufflenet_v2_x0_5(num_classes=10).eval()
    rows = vtp.compare_model(
        "shufflenet_v2_x0_5", shuffle, SHAPE, small_profile(), [0.5], FAST, log=lambda _s: None
    )
    assert len(rows) == 4 and all(r.error for r in rows)
    assert all("Torch-Pruning cannot prune" in r.error for r in rows if r.method != "prunekit")


def test_tables_csv_and_plot_are_written(tmp_path: Path) -> None:
    rows = [
        vtp.Row("m", 0.5, "prunekit", 0.45, 0.5, 0.49, 0.51, True, None, None, 10.0, 5.1),
        vtp.Row("m", 0.5, "tp", 0.46, 0.5, None, 0.7, False, 0.3, 0.01, 10.0, 7.0),
        vtp.Row("m", 0.5, "tp-r8", error="Torch-Pruning cannot prune m: boom"),
    ]
    for r in rows[:2]:
        r.finish(0.5)
    assert rows[0].budget_met is True and rows[1].budget_met is False
    vtp.write_csv(tmp_path / "x.csv", [vtp.asdict(r) for r in rows])
    assert (tmp_path / "x.csv").read_text().splitlines()[0].startswith("model,budget,method,macs_ratio")
    vtp.plot(rows, tmp_path / "x.png", "title")
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(vtp.latency_table(rows, "t"))
    text = console.export_text()
    assert "boom" in text and "0.510" in text
    md = vtp.latency_markdown(rows)
    assert md.count("\n") == 5 and "| 0.510 | yes |" in md and "| 0.700 | **no** |" in md
    acc = [
        vtp.AccuracyRow(s, "prunekit", 0.5 + s / 100, 0.5, 0.7, 0.9 + s / 100, 0.8, 0.8 / (0.9 + s / 100))
        for s in range(3)
    ]
    assert "| prunekit | 3 | 0.510 ± 0.010 | 0.500 ± 0.000 |" in vtp.accuracy_markdown(acc)


@pytest.mark.parametrize("budget", [0.7, 0.5, 0.3])
def test_knapsack_fills_the_budget_instead_of_overshooting_it(budget: float) -> None:
    # Pruning neighbouring groups together saves more than the knapsack's linearised costs say, so
    # one solve lands far under the target (0.5 -> 0.25 here before the two-sided budget search).
    dense = vtp.prepare_dense("small", small_model(), SHAPE, small_profile())
    _model, predicted_ratio = vtp.prunekit_prune(dense, small_profile(), budget)
    assert 0.9 * budget <= predicted_ratio <= budget + 1e-9
