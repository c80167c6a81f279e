"""Export format `onnx`: both models exported, checked, numerically equal to PyTorch, recorded in export.json."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
import torch

MODELS = ["resnet18", "mobilenet_v2", "googlenet", "efficientnet_b0"]


def _snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("model", MODELS)
def test_export_matches_pytorch(cli, trained_run, model):
    run = trained_run(model)
    report_before = (run / "report.json").read_bytes()
    result = cli(["export", str(run), "--format", "onnx", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["format"] == "prunekit-export/1" and out["opset"] == 18 and out["batch_size"] == 1
    assert out["parity_inputs"].startswith("validation split of digits")
    for which in ("dense", "pruned"):
        m = out["models"][which]
        p = m["parity"]
        assert "dynamo" in m["exporter"]
        assert m["simplified"] and m["opset"] == 18
        assert p["passed"] and p["images"] == 64
        assert p["max_abs_diff"] <= p["tolerance"]
        assert p["top1_agreement"] >= 0.99
        onnx.checker.check_model(onnx.load(str(run / f"{which}.onnx")), full_check=True)
    assert out["models"]["pruned"]["parity"]["logit_scale"] > 1e-2, "near-zero logits would make parity meaningless"
    assert out["models"]["pruned"]["bytes"] < out["models"]["dense"]["bytes"]
    record = json.loads((run / "export.json").read_text())
    assert record["format"] == "prunekit-export/2" and record["exports"]["onnx"] == out
    assert (run / "report.json").read_bytes() == report_before, "export must not rewrite compress's report.json"
    assert not list(run.glob(".*.tmp"))

    # Independently of export's own parity check: fresh random images, ONNX Runtime vs PyTorch.
    from prunekit.deploy.ort_model import OrtClassifier
    from prunekit.runs import load_run

    loaded = load_run(run)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = loaded.pruned(x).numpy()
    got = OrtClassifier(run / "pruned.onnx")(x).numpy()
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-4 + 1e-3 * scale
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_dynamic_batch_export(trained_run):
    from prunekit.deploy.onnx import to_onnx
    from prunekit.deploy.ort_model import OrtClassifier, static_batch
    from prunekit.deploy.parity import check_parity
    from prunekit.runs import load_run

    loaded = load_run(trained_run("resnet18"))
    out = to_onnx(loaded.pruned, (1, 3, 32, 32), exporter="release", dynamic_batch=True)
    proto, data = out.proto(), out.data
    assert "dynamo" in out.exporter and not out.notes and out.simplified
    assert static_batch(proto) is None
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    ort_model = OrtClassifier(data)
    for n in (1, 5):
        assert tuple(ort_model(torch.rand(n, 3, 32, 32)).shape) == (n, 10)
    parity = check_parity(loaded.pruned, data, torch.rand(7, 3, 32, 32))
    assert parity.passed and parity.images == 7


def test_parity_failure_is_an_error_and_writes_nothing(cli, trained_run, monkeypatch):
    import prunekit.deploy.parity as parity

    run = trained_run("resnet18")
    before = _snapshot(run)
    report_before = (run / "report.json").read_bytes()
    # A zero tolerance: the float32 differences ONNX Runtime really has now count as a mismatch.
    monkeypatch.setattr(parity, "PARITY_ATOL", 0.0)
    monkeypatch.setattr(parity, "PARITY_RTOL", 0.0)
    result = cli(["export", str(run), "--format", "onnx"])
    assert result.exit_code == 2
    assert "disagrees with PyTorch" in result.output and "nothing was written" in result.output
    assert "Traceback" not in result.output
    assert _snapshot(run) == before
    assert (run / "report.json").read_bytes() == report_before
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--opset", "7"], "--opset must be between"),
        (["--format", "tflite"], "unknown --format"),
        (["--workspace-mb", "0"], "--workspace-mb"),
    ],
)
def test_bad_options(cli, trained_run, args, message):
    run = trained_run("resnet18")
    before = _snapshot(run)
    result = cli(["export", str(run), *args])
    assert result.exit_code == 2 and message in result.output
    assert _snapshot(run) == before


def test_missing_and_unfinished_runs(cli, tmp_path):
    result = cli(["export", str(tmp_path / "nope"), "--format", "onnx"])
    assert result.exit_code == 2 and "run folder not found" in result.output
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({"status": "running", "settings": {}}))
    result = cli(["export", str(unfinished), "--format", "onnx"])
    assert result.exit_code == 2 and "not finished" in result.output
    assert sorted(os.listdir(unfinished)) == ["run.json"]
