"""End-to-end: `compress --verify`, `--measure-cmd` and `--target local` through the real CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

SMALL = ["--data", "digits", "--input-size", "32", "--pretrain-epochs", "0", "--epochs", "0", "--batch-size", "256",
         "--method", "magnitude"]


def test_verify_times_the_candidate_and_logs_every_try(cli, tmp_path):
    out = tmp_path / "v"
    res = cli(["compress", *SMALL, "--target", "cpu-ort", "--latency-budget", "0.5", "--verify", "--out", str(out),
               "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    step = report["method"]["steps"][-1]
    assert 1 <= len(step["verify"]) <= 4 and step["measured_ratio"] > 0
    assert report["goal"]["measured_ratio"] > 0
    assert report["pruned"]["measured_latency_ms"] < report["dense"]["measured_latency_ms"]


def test_measure_cmd_with_a_local_stand_in(cli, tmp_path):
    cmd = (f"{sys.executable} -c 'from prunekit.cli import main; main()' measure {{onnx}} --baseline {{dense_onnx}}"
           " --target cpu-ort --repeats 20 --json")
    res = cli(["compress", *SMALL, "--target", "cpu-ort", "--latency-budget", "0.6", "--measure-cmd", cmd,
               "--verify-tries", "2", "--out", str(tmp_path / "m"), "--json"])
    assert res.exit_code == 0, res.output
    step = json.loads(res.stdout)["method"]["steps"][-1]
    assert 1 <= len(step["verify"]) <= 2 and step["verify"][0]["measured_ratio"] > 0


@pytest.mark.parametrize("cmd, message", [
    ("false {onnx}", "exited with code 1"),
    ("echo hello {onnx}", "printed no JSON"),
])
def test_a_broken_measure_cmd_is_one_line_and_the_run_resumes_with_a_fixed_one(cli, tmp_path, cmd, message):
    out = tmp_path / "b"
    res = cli(["compress", *SMALL, "--target", "cpu-ort", "--latency-budget", "0.6", "--measure-cmd", cmd,
               "--verify-tries", "2", "--out", str(out)])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert (out / "dense.safetensors").is_file()  # the dense stage is kept
    good = (f"{sys.executable} -c 'from prunekit.cli import main; main()' measure {{onnx}} --baseline {{dense_onnx}}"
            " --target cpu-ort --repeats 10 --json")
    fixed = cli(["compress", *SMALL, "--target", "cpu-ort", "--latency-budget", "0.6", "--measure-cmd", good,
                 "--verify-tries", "2", "--out", str(out), "--resume", "--json"])
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["run"]["resumed"] is True


def test_a_measure_cmd_without_the_file_fails_before_any_work(cli, tmp_path):
    res = cli(["compress", *SMALL, "--target", "cpu-ort", "--latency-budget", "0.5", "--measure-cmd", "echo x",
               "--out", str(tmp_path / "n")])
    assert res.exit_code == 2 and "must contain {onnx}" in res.output
    assert not (tmp_path / "n").exists()


def test_verify_needs_a_latency_budget(cli, tmp_path):
    res = cli(["compress", *SMALL, "--verify", "--prune-ratio", "0.5", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--latency-budget" in res.output


def small_net(num_classes: int = 10) -> nn.Module:
    """A model small enough to profile in seconds, with room to prune."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def test_target_local_profiles_on_first_use(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "profiles"))
    args = ["compress", "--model", "tests.test_cli_verify:small_net", "--data", "digits", "--input-size", "16",
            "--pretrain-epochs", "0", "--epochs", "0", "--target", "local", "--latency-budget", "0.8",
            "--round-to", "8", "--method", "magnitude", "--json"]
    first = cli([*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert "target local: measuring" in first.output
    assert list((tmp_path / "profiles").glob("local-*.json"))
    report = json.loads(first.stdout)
    assert report["goal"]["measured_ratio"] > 0  # local is this machine: measured, not only predicted
    # the verdict a user reads is the measured one, not the table's
    assert report["goal"]["met_by"] == "measured"
    assert report["goal"]["met"] == (report["goal"]["measured_ratio"] <= 0.8 * 1.03)
    # the budget was aimed through up to 6 pruned copies (the knapsack's choices) timed here on first use
    assert "pruned copies (the latency knapsack's choices)" in " ".join(first.output.split())  # rich wraps lines
    cal = report["goal"]["calibration"]
    # (6 spread over the range, and up to 3 more timed at the aim for this budget: refinement)
    assert 2 <= len(cal["subnets"]) <= 9 and cal["aimed_ratio"] > 0
    second = cli([*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0 and "target local: measuring" not in second.output
    assert "pruned copies (the latency" not in " ".join(second.output.split())  # reused from the profile
    assert json.loads(second.stdout)["goal"]["calibration"]["subnets"] == cal["subnets"]
    table_only = cli([*args, "--subnets", "0", "--out", str(tmp_path / "c")])
    assert table_only.exit_code == 0 and "calibration" not in json.loads(table_only.stdout)["goal"]
