"""`prunekit measure` times one file (or a pair) on a target; `--measure-cmd` runs it elsewhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.deploy.onnx import to_onnx
from prunekit.errors import PrunekitError
from prunekit.runtimes.remote import measure_ratio_with_command, render


def _net(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    wide, thin = d / "dense.onnx", d / "pruned.onnx"
    to_onnx(_net(64), (1, 3, 32, 32), path=wide)
    to_onnx(_net(16), (1, 3, 32, 32), path=thin)
    return wide, thin


def test_measure_one_file_prints_one_json(cli, files):
    res = cli(["measure", str(files[1]), "--target", "cpu-ort", "--repeats", "10", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["median_ms"] > 0 and out["p90_ms"] >= out["median_ms"] and out["input_shape"] == [1, 3, 32, 32]


def test_measure_pair_reports_the_ratio(cli, files):
    res = cli(["measure", str(files[1]), "--baseline", str(files[0]), "--target", "cpu-ort", "--repeats", "20",
               "--json"])
    out = json.loads(res.stdout)
    assert 0 < out["ratio"] < 1.0  # 16 channels instead of 64: faster on any CPU
    assert out["mode"] == "blocks"


def test_measure_bad_file_is_one_line(cli, tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not onnx")
    res = cli(["measure", str(bad), "--target", "cpu-ort"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def _prunekit() -> str:
    return f"{sys.executable} -c 'from prunekit.cli import main; main()'"


def test_measure_cmd_with_a_local_stand_in_for_the_device(files):
    template = f"{_prunekit()} measure {{onnx}} --baseline {{dense_onnx}} --target cpu-ort --repeats 20 --json"
    out = measure_ratio_with_command(template, files[1], files[0], timeout_s=300)
    assert 0 < out["ratio"] < 1.0 and "side by side" in out["how"]


def test_measure_cmd_with_single_file_timings(files):
    template = f"{_prunekit()} measure {{onnx}} --target cpu-ort --repeats 10 --json"
    out = measure_ratio_with_command(template, files[1], files[0], timeout_s=300)
    assert out["ratio"] > 0 and "separate" in out["how"]


@pytest.mark.parametrize("template, message", [
    ("false {onnx}", "exited with code 1"),
    ("echo no json here {onnx}", "printed no JSON"),
    ("sleep 5; echo {onnx}", "did not finish within"),
    ("echo '{\"ratio\": -1}' {onnx}", "neither a positive"),
    ("echo nothing", "must contain {onnx}"),
])
def test_measure_cmd_failures_are_one_line(files, template, message):
    with pytest.raises(PrunekitError, match=message):
        measure_ratio_with_command(template, files[1], files[0], timeout_s=1.5)


def test_render_quotes_paths():
    cmd = render("scp {onnx} d:/t/ && ssh d m /t/{onnx_name}", Path("/a b/c.onnx"), Path("/a b/d.onnx"))
    assert "'/a b/c.onnx'" in cmd and cmd.endswith("/t/c.onnx")
