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
    # (the constant may be negative: the per-node correction can outweigh a tiny model's ops)
    assert pred.total_ms > 0 and 0.2 < pred.total_ms / rec.dense_measured_ms < 5

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


FACTORY = '''
from torch import nn


def net(num_classes=1000):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
'''


def test_missing_layer_error_prints_a_command_that_fixes_it(cli, tmp_path, monkeypatch):
    """Profiled at 16 px; the same model at 20 px with 4 classes lacks layers; the printed command adds them."""
    import shlex

    from prunekit.latency.profile import MissingSignatureError, load_profile
    from prunekit.models import build_model

    (tmp_path / "mynets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    profile_model("fixme", "onnxruntime", "mynets:net", 16, num_classes=4, threads=1, progress=False, calibrate=False)
    model = build_model("mynets:net", 4).eval()
    with pytest.raises(MissingSignatureError) as exc:
        predict_latency(model, load_profile("fixme"), (1, 3, 20, 20), model_hint="mynets:net")
    command = exc.value.command
    assert command == ("prunekit profile --target fixme --runtime onnxruntime --model mynets:net --input-size 20 "
                       "--num-classes 4 --threads 1")
    assert command in exc.value.one_line()
    argv = shlex.split(command)[1:] + ["--no-calibrate"]
    result = cli(argv)
    assert result.exit_code == 0, result.output
    prof = load_profile("fixme")
    assert predict_latency(model, prof, (1, 3, 20, 20), model_hint="mynets:net").total_ms > 0
    assert {"mynets:net@16x16/c4", "mynets:net@20x20/c4"} <= set(prof.models)
