"""`prunekit targets` and `prunekit profile` at the command line: tables, JSON, exit code 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

cli = pytest.importorskip("prunekit.cli", reason="the CLI package does not import yet")
from prunekit.cli.app import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(autouse=True)
def _user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "user"))


def test_targets_json_lists_shipped_profiles():
    res = runner.invoke(app, ["targets", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    names = {t["name"]: t for t in data["targets"]}
    assert names["cpu-ort"]["provenance"] == "measured" and names["cpu-ort"]["runtime"] == "onnxruntime"
    assert names["jetson-orin"]["provenance"] == "estimated" and names["jetson-orin"]["precision"] == "fp16"
    assert "resnet50@224x224" in names["cpu-ort"]["models"]
    assert "resnet18@32x32/c10" in names["cpu-ort"]["models"]


def test_targets_table():
    res = runner.invoke(app, ["targets"])
    assert res.exit_code == 0, res.output
    assert "prunekit targets" in res.stdout and "shipped" in res.stdout


def test_profile_tensorrt_without_tensorrt_exits_2(tmp_path):
    res = runner.invoke(
        app,
        [
            "profile",
            "--target",
            "x",
            "--runtime",
            "tensorrt",
            "--model",
            "resnet18",
            "--out",
            str(tmp_path / "x.json"),
        ],
    )
    assert res.exit_code == 2
    assert "TensorRT" in res.output or "GPU" in res.output
    assert not (tmp_path / "x.json").exists()


def test_profile_unknown_runtime_exits_2(tmp_path):
    res = runner.invoke(
        app,
        [
            "profile",
            "--target",
            "x",
            "--runtime",
            "tflite",
            "--model",
            "resnet18",
            "--out",
            str(tmp_path / "x.json"),
        ],
    )
    assert res.exit_code == 2 and "unknown runtime" in res.output


def test_profile_unknown_model_exits_2(tmp_path):
    res = runner.invoke(
        app,
        ["profile", "--target", "x", "--model", "nonet", "--out", str(tmp_path / "x.json"), "--threads", "1"],
    )
    assert res.exit_code == 2 and "unknown model" in res.output


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_profile_torch_on_cuda_without_gpu_exits_2(tmp_path):
    res = runner.invoke(
        app,
        [
            "profile",
            "--target",
            "x",
            "--runtime",
            "torch",
            "--device",
            "cuda",
            "--model",
            "resnet18",
            "--out",
            str(tmp_path / "x.json"),
        ],
    )
    assert res.exit_code == 2 and "GPU" in res.output


def test_predict_with_unknown_target_lists_known():
    from prunekit.errors import PrunekitError
    from prunekit.latency.profile import load_profile

    with pytest.raises(PrunekitError, match="known targets: .*cpu-ort"):
        load_profile("no-such-target")


def test_profile_times_pruned_copies_for_the_calibration(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "user"))
    out = tmp_path / "p.json"
    res = runner.invoke(app, ["profile", "--target", "p", "--model", "tests.test_cli_verify:small_net",
                              "--input-size", "16", "--num-classes", "10", "--threads", "1", "--step", "16",
                              "--subnets", "2", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    assert len(run["subnets"]) == 2 and all(p > 0 and m > 0 for p, m in run["subnets"])
    from prunekit.latency.store import read_profile_file

    record = read_profile_file(out).models["tests.test_cli_verify:small_net@16x16/c10"]
    assert record.subnets is not None and [list(p) for p in record.subnets.points] == sorted(run["subnets"])
    bad = runner.invoke(app, ["profile", "--target", "p", "--model", "resnet18", "--subnets", "-1",
                              "--out", str(out)])
    assert bad.exit_code == 2
