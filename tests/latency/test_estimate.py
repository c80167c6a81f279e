"""The roofline estimate behind the shipped jetson-orin profile."""

from __future__ import annotations

import pytest

from prunekit.latency.estimate import JETSON_AGX_ORIN, estimate_profile, roofline_ms
from prunekit.latency.profile import load_profile

CONV = {"op": "conv", "kernel": (3, 3), "stride": (1, 1), "padding": (1, 1), "input_hw": (28, 28)}


def test_roofline_has_a_tile_staircase():
    f = lambda cout: roofline_ms(CONV, 256, cout, 1, JETSON_AGX_ORIN)  # noqa: E731
    assert f(97) == pytest.approx(f(128))  # one 32-channel output tile
    assert f(129) > f(128)
    assert roofline_ms(CONV, 250, 128, 1, JETSON_AGX_ORIN) > roofline_ms(CONV, 256, 128, 1, JETSON_AGX_ORIN)


def test_estimate_profile_is_marked_estimated():
    prof = estimate_profile(models=[("resnet18", 32, 10)])
    assert prof.provenance.kind == "estimated" and prof.runtime == "tensorrt" and prof.precision == "fp16"
    assert "fp16_dense_tensor_tflops" in prof.provenance.spec and "max(" in prof.provenance.formula
    assert len(prof.table) == 12


def test_shipped_jetson_profile_loads():
    prof = load_profile("jetson-orin")
    assert prof.provenance.kind == "estimated" and "resnet50@224x224" in prof.models
    assert load_profile("orin").name == "jetson-orin"


def test_shipped_jetson_profile_is_reproducible(tmp_path):
    """tools/estimate_profile.py regenerates the shipped table exactly (only the provenance date may differ)."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("estimate_tool", root / "tools" / "estimate_profile.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "orin.json"
    assert tool.main(["--out", str(out)]) == 0
    made, shipped = json.loads(out.read_text()), json.loads((root / "profiles" / "jetson-orin.json").read_text())
    assert made["table"] == shipped["table"] and made["constant"] == shipped["constant"]
    assert sorted(made["models"]) == sorted(shipped["models"])
    made["provenance"].pop("date"), shipped["provenance"].pop("date")
    assert made["provenance"] == shipped["provenance"]
