"""Hostile artifacts: profile JSON, check.json baselines, ONNX files from elsewhere, and
`prunekit profile` killed or run twice at once. Success or a one-line exit 2, never a traceback."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunekit.errors import PrunekitError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
ROOT = Path(__file__).resolve().parents[2]
TINY = ("import torch.nn as nn\n"
        "def tiny(num_classes=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),\n"
        "                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))\n")

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)


def _valid_profile() -> dict:
    return json.loads((ROOT / "profiles" / "jetson-orin.json").read_text())


def _mutate(obj: dict, path: list[str], value) -> dict:
    node = obj
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return obj


_DELETE = object()
PROFILE_PATHS = [["name"], ["runtime"], ["batch_size"], ["threads"], ["input_size"], ["provenance"],
                 ["provenance", "kind"], ["table"], ["constant"], ["precision"], ["schema_version"], ["aliases"]]


@SETTINGS
@given(path=st.sampled_from(PROFILE_PATHS), value=st.one_of(json_values, st.just(_DELETE)))
def test_mutated_profiles_load_or_fail_cleanly(tmp_path_factory, path, value):
    from prunekit.latency.profile import load_profile

    obj = _mutate(_valid_profile(), path, value)
    f = tmp_path_factory.mktemp("p") / "p.json"
    f.write_text(json.dumps(obj))
    try:
        load_profile(str(f))
    except PrunekitError as exc:
        assert exc.one_line()


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_as_profile(tmp_path_factory, data):
    from prunekit.latency.profile import load_profile

    f = tmp_path_factory.mktemp("p") / "p.json"
    f.write_bytes(data)
    with pytest.raises(PrunekitError):
        load_profile(str(f))


def test_targets_survives_a_broken_user_profile(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path))
    (tmp_path / "broken.json").write_text('{"name": "broken", "runtime": 5}')
    (tmp_path / "garbage.json").write_bytes(b"\x00\xff not json")
    result = cli(["targets", "--json"])
    assert result.exit_code in (0, 2) and "Traceback" not in result.output
    if result.exit_code == 0:
        assert "cpu-ort" in result.stdout


@SETTINGS
@given(mutation=st.one_of(json_values, st.sampled_from([{"format": "prunekit-check/1"}, [], "x", 1, None])),
       key=st.sampled_from(["latency", "accuracy", "target", "settings", "format", None]))
def test_fuzzed_baselines(tmp_path_factory, mutation, key):
    from prunekit.check import load_baseline

    base = {"format": "prunekit-check/1", "target": "cpu-ort", "latency": {"speedup": 2.0},
            "accuracy": {"pruned": {"clean": 0.9, "corrupted": 0.8}}}
    obj = mutation if key is None else {**base, key: mutation}
    f = tmp_path_factory.mktemp("b") / "check.json"
    f.write_text(json.dumps(obj, allow_nan=True) if not isinstance(obj, float) or math.isfinite(obj) else "NaN")
    try:
        load_baseline(f)
    except PrunekitError as exc:
        assert exc.one_line()


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    import torch

    from prunekit.deploy.onnx import to_onnx

    d = tmp_path_factory.mktemp("onnx")
    (d / "tinymodels.py").write_text(TINY)
    sys.path.insert(0, str(d))
    from tinymodels import tiny  # type: ignore[import-not-found]

    good = to_onnx(tiny(10), (1, 3, 32, 32)).data
    (d / "good.onnx").write_bytes(good)
    (d / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (d / "notonnx.onnx").write_bytes(b"hello, I am not a model")
    (d / "small.onnx").write_bytes(to_onnx(tiny(10), (1, 3, 16, 16)).data)
    import onnx

    m = onnx.load_from_string(good)
    m.graph.node[0].op_type = "NoSuchOp"
    (d / "checker.onnx").write_bytes(m.SerializeToString())
    torch.manual_seed(0)
    return d


@pytest.mark.parametrize("name", ["truncated.onnx", "notonnx.onnx", "checker.onnx", "small.onnx"])
def test_eval_given_bad_onnx(cli, onnx_files, name):
    result = cli(["eval", str(onnx_files / name), "--data", "digits", "--input-size", "32", "--limit", "16",
                  "--corruptions", "gaussian_noise", "--severities", "1", "--json"])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output


def test_eval_given_good_onnx(cli, onnx_files):
    result = cli(["eval", str(onnx_files / "good.onnx"), "--data", "digits", "--input-size", "32", "--limit", "16",
                  "--corruptions", "gaussian_noise", "--severities", "1", "--json"])
    assert result.exit_code == 0, result.output


def _profile_cmd(tmp: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "prunekit", "profile", "--target", "tiny-hostile", "--runtime", "onnxruntime",
            "--model", "tinymodels:tiny", "--input-size", "16", "--threads", "1", "--out", str(out)]


def _env(tmp: Path) -> dict[str, str]:
    (tmp / "tinymodels.py").write_text(TINY)
    return {**os.environ, "PYTHONPATH": str(tmp), "OMP_NUM_THREADS": "1", "PRUNEKIT_PROFILE_DIR": str(tmp / "user")}


def test_profile_killed_then_rerun_completes(tmp_path):
    from prunekit.latency.profile import read_profile_file

    out, env = tmp_path / "tiny.json", _env(tmp_path)
    proc = subprocess.Popen(_profile_cmd(tmp_path, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not out.exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if out.exists():
        read_profile_file(out)  # whatever was saved is a complete, valid profile
    done = subprocess.run(_profile_cmd(tmp_path, out), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    full = subprocess.run(_profile_cmd(tmp_path, tmp_path / "ref.json"), env=env, capture_output=True, text=True,
                          timeout=300)
    assert full.returncode == 0
    resumed, reference = read_profile_file(out), read_profile_file(tmp_path / "ref.json")
    assert set(resumed.table) == set(reference.table)
    for sig in reference.table:
        assert resumed.table[sig].cin == reference.table[sig].cin and resumed.table[sig].cout == reference.table[sig].cout


def test_two_profile_processes_on_one_file(tmp_path):
    from prunekit.latency.profile import read_profile_file

    out, env = tmp_path / "shared.json", _env(tmp_path)
    cmd_a = _profile_cmd(tmp_path, out)
    cmd_b = [*cmd_a[:-4], "--input-size", "24", "--threads", "1", "--out", str(out)]
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in (cmd_a, cmd_b)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    prof = read_profile_file(out)
    sizes = {sig.rsplit(":", 1)[-1] for sig in prof.table if not sig.startswith("linear")}
    assert {"16x16", "24x24"} <= sizes  # both writers' entries survived
