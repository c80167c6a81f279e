"""`compress --task detection` end to end on the generated set, reload, ONNX export with parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunekit.compress import compress
from prunekit.runs import load_run
from prunekit.settings import make_settings


@pytest.fixture(scope="module")
def det_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("det") / "run"
    s = make_settings(task="detection", data="shapes:8", input_size=64, pretrain_epochs=1, epochs=1, batch_size=8,
                      prune_ratio=0.5)
    compress(s, out, quiet=True)
    return out


def test_report_and_identity_reload(det_run: Path) -> None:
    report = json.loads((det_run / "report.json").read_text())
    assert report["settings"]["model"] == "ssdlite320_mobilenet_v3_large"
    assert report["settings"]["data"] == "shapes:8" and report["settings"]["num_classes"] == 4
    d, p = report["dense"], report["pruned"]
    for key in ("map", "map_50", "params", "macs", "decode_nms_ms"):
        assert key in d and key in p
    assert 0.0 <= p["map"] <= p["map_50"] <= 1.0
    assert p["params"] < 0.5 * d["params"] and p["macs"] < 0.5 * d["macs"]
    assert "train_accuracy" not in report["stages"]["finetune"]["epochs"][0]  # no fake accuracy for a detector
    run = load_run(det_run)
    from prunekit.models import load_weights

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    again = load_run(det_run).pruned
    load_weights(again, det_run / "pruned.safetensors")
    with torch.no_grad():
        assert torch.equal(run.pruned(x), again(x))
    # the pruned network's mAP is reproduced from the run folder
    from prunekit.tasks import get_task

    task = get_task("detection")
    data = task.load_data("shapes:8", 64, None)
    assert abs(task.evaluate(run.pruned, data, torch.device("cpu"))["map"] - p["map"]) < 1e-6


@pytest.mark.slow  # two SSDlite ONNX exports: about a minute on a loaded 2-core CPU
def test_onnx_export_parity_on_real_images(det_run: Path) -> None:
    from prunekit.deploy import export

    result = export(det_run, "onnx").to_dict()
    pruned = result["models"]["pruned"]
    assert "validation split of shapes:8" in result["parity_inputs"]
    par = pruned["parity"]
    assert par["passed"] and par["max_abs_diff"] <= par["tolerance"]
    assert par["details"]["detections_compared"] > 0 and par["details"]["max_box_diff_px"] < 0.05
    assert (det_run / "pruned.onnx").is_file()
    # the deployable file: network + box decoding + NMS, checked against torchvision's decoding
    nms = result["extras"]["pruned_nms.onnx"]
    assert (det_run / "pruned_nms.onnx").is_file() and nms["bytes"] > pruned["bytes"]
    assert nms["images"] > 0 and 0.0 <= nms["agreement"] <= 1.0
    # and the file for TensorRT (its NMS plugin), which the engine build and build_engine.sh include
    trt = result["extras"]["pruned_trtnms.onnx"]
    assert (det_run / "pruned_trtnms.onnx").is_file() and trt["engine"] and trt["images"] > 0
    assert "--onnx=pruned_trtnms.onnx" in (det_run / "build_engine.sh").read_text()


def test_eval_reports_mpc_and_rpc(det_run: Path) -> None:
    from typer.testing import CliRunner

    from prunekit.cli import app

    result = CliRunner().invoke(app, ["eval", str(det_run), "--corruptions", "gaussian_noise", "--severities", "3",
                                      "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{"):])
    for which in ("dense", "pruned"):
        m = out["models"][which]
        assert m["mpc"] == m["cells"]["gaussian_noise"]["3"]
        assert m["rpc"] is None or abs(m["rpc"] - m["mpc"] / m["map"]) < 1e-9
    report = json.loads((det_run / "report.json").read_text())
    assert abs(out["models"]["pruned"]["map"] - report["pruned"]["map"]) < 1e-6  # same clean images


def test_settings_for_detection() -> None:
    from prunekit.errors import PrunekitError

    s = make_settings(task="detection")
    assert (s.model, s.data) == ("ssdlite320_mobilenet_v3_large", "shapes")
    assert make_settings(model="fcos_resnet50_fpn").data == "shapes"  # task inferred from the name
    assert make_settings().model == "resnet18"  # classifiers unchanged
    # a detector trains long enough for its mAP to mean something; a flag given wins
    assert (s.pretrain_epochs, s.epochs, s.batch_size) == (40, 10, 16)
    assert make_settings(task="detection", epochs=2, batch_size=None).epochs == 2
    c = make_settings(pretrain_epochs=None, epochs=None, batch_size=None)
    assert (c.pretrain_epochs, c.epochs, c.batch_size) == (3, 3, 64)
    for method in ("csam", "s2ap"):
        with pytest.raises(PrunekitError, match="does not run on detectors"):
            make_settings(task="detection", method=method)
    with pytest.raises(PrunekitError, match="unknown task"):
        make_settings(task="segmentation")


def test_a_detector_meets_a_measured_budget_and_passes_the_check_gate(cli, tmp_path, monkeypatch):
    """`--target local --verify` times the detector's candidates here, and `check` gates its
    exported network (mAP clean and corrupted, speedup) against a baseline, as for classifiers."""
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "profiles"))
    run = tmp_path / "fcos"
    res = cli(["compress", "--task", "detection", "--model", "tinydetectors:tiny_fcos", "--data", "shapes:8",
               "--input-size", "64", "--pretrain-epochs", "0", "--epochs", "0", "--batch-size", "8",
               "--target", "local", "--latency-budget", "0.88", "--verify", "--verify-tries", "3", "--subnets", "3",
               "--method", "magnitude", "--out", str(run), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    step = report["method"]["steps"][-1]
    assert 1 <= len(step["verify"]) <= 3 and all(t["measured_ratio"] > 0 for t in step["verify"])
    assert 1 <= len(report["goal"]["calibration"]["subnets"]) <= 3
    assert report["goal"]["measured_ratio"] < 1.0 and "map" in report["pruned"]
    args = ["check", str(run), "--target", "local", "--corruptions", "gaussian_noise", "--severities", "3",
            "--repeats", "20", "--sessions", "2", "--no-plot", "--json"]
    first = cli(args)
    assert first.exit_code == 0, first.output
    record = json.loads(first.stdout[first.stdout.index("{"):])
    assert record["accuracy"]["metric"].startswith("mAP") and record["latency"]["speedup"] > 0
    baseline = tmp_path / "baseline.json"
    baseline.write_text((run / "check.json").read_text())
    gated = cli([*args, "--baseline", str(baseline), "--max-latency-regression", "0.5"])
    assert gated.exit_code == 0, gated.output
    assert json.loads(gated.stdout[gated.stdout.index("{"):])["gate"]["passed"]
