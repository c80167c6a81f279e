"""`profile` on a tiny model with ONNX Runtime: writes a valid profile, resumes, predicts."""

from __future__ import annotations

import pytest
from latency_helpers import tiny_model

from prunekit.errors import PrunekitError
from prunekit.latency.layers import enumerate_layers
from prunekit.latency.predict import predict_latency
from prunekit.latency.profile import read_profile_file
from prunekit.latency.profiler import profile_model


@pytest.fixture(autouse=True)
def _user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "user"))


def test_profile_writes_valid_profile_and_resumes(tmp_path):
    out = tmp_path / "tiny-ort.json"
    model = tiny_model()
    run = profile_model("tiny-ort", "onnxruntime", model, 16, step=8, threads=1, out=out, progress=False)
    prof = read_profile_file(out)
    sigs = {s.signature for s in enumerate_layers(model, (1, 3, 16, 16))}
    assert set(prof.table) == sigs
    assert run.cells_measured > 0 and sorted(run.measured) == sorted(sigs)
    assert prof.provenance.kind == "measured" and prof.provenance.runtime_version.startswith("onnxruntime")
    assert prof.threads == 1 and prof.constant.method == "ort-graph"
    assert all(v > 0 for e in prof.table.values() for v in e.cells().values())
    rec = next(iter(prof.models.values()))
    assert rec.dense_measured_ms and rec.dense_predicted_ms
    # the staircase grid: the 8->16 conv's output axis is sampled at 8, 16 and the slow width 14
    conv2 = next(s for s in enumerate_layers(model, (1, 3, 16, 16)) if s.cin == 8 and s.op == "conv")
    assert prof.grid_widths(conv2.signature, "cout") == [8, 16]
    # prediction works from the new profile, within a loose factor of the measured dense time
    pred = predict_latency(model, prof, (1, 3, 16, 16))
    assert pred.total_ms > 0 and pred.constant_ms >= 0

    again = profile_model(
        "tiny-ort", "onnxruntime", model, 16, step=8, out=out, progress=False, calibrate=False
    )
    assert again.cells_measured == 0 and again.measured == []
    assert read_profile_file(out).table == prof.table


def test_profile_refuses_other_thread_count(tmp_path):
    out = tmp_path / "p.json"
    model = tiny_model()
    profile_model("p", "onnxruntime", model, 16, threads=1, out=out, progress=False, calibrate=False)
    with pytest.raises(PrunekitError, match="threads"):
        profile_model("p", "onnxruntime", model, 16, threads=2, out=out, progress=False, calibrate=False)


def test_unknown_runtime_is_an_error(tmp_path):
    with pytest.raises(PrunekitError, match="unknown runtime"):
        profile_model("p", "tflite", tiny_model(), 16, out=tmp_path / "p.json", progress=False)
