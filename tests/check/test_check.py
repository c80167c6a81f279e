"""`prunekit check` on digits with cpu-ort, and the CI gate (exit 1 on regression, 2 on bad input)."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil

import pytest
from rich.console import Console

# Small but real: 2 corruptions x 2 severities on the first 100 validation images.
CHECK = ["--target", "cpu-ort", "--corruptions", "gaussian_noise,defocus_blur", "--severities", "2,4",
         "--limit", "100", "--repeats", "40"]


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory):
    """An empty user profile folder: only the shipped profiles (cpu-ort) and what a test adds."""
    d = tmp_path_factory.mktemp("profiles")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNEKIT_PROFILE_DIR", str(d))
        yield d


@pytest.fixture(scope="module")
def checked(profile_dir, tmp_path_factory):
    """A resnet18 run pruned to 50 % of its predicted cpu-ort latency, and its first check (which exports ONNX)."""
    from typer.testing import CliRunner

    from prunekit.cli import app
    from prunekit.compress import compress
    from prunekit.settings import make_settings

    run = tmp_path_factory.mktemp("r18") / "run"
    settings = make_settings(model="resnet18", pretrain_epochs=1, epochs=1, input_size=32, target="cpu-ort",
                             latency_budget=0.5)
    compress(settings, run, quiet=True, console=Console(quiet=True))
    assert not (run / "pruned.onnx").exists()
    result = CliRunner().invoke(app, ["check", str(run), *CHECK, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run, json.loads(result.stdout)


def _copy_run(run, dest):
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoints", "logs", "pruned_init.safetensors",
                                                              "check.*"))
    return dest


def test_check_measures_a_speedup_on_the_exported_models(checked):
    run, rec = checked
    assert rec["format"] == "prunekit-check/2" and rec["target"] == "cpu-ort" and rec["runtime"] == "onnxruntime"
    assert rec["exported_now"] is True and (run / "pruned.onnx").exists() and (run / "dense.onnx").exists()
    assert json.loads((run / "export.json").read_text())["exports"]["onnx"]["target"] == "cpu-ort"
    lat = rec["latency"]
    assert lat["threads"] == 1 and lat["repeats"] == 40
    # warm timing by default: blocks of 20 consecutive runs per model, 2 block pairs
    assert rec["timing"] == lat["mode"] == "blocks" and lat["block"] == 20 and "warm" in lat["how"]
    # 40 runs over 5 fresh sessions: one block pair per session, the ratio the median of the sessions'
    assert lat["dense"]["runs"] == lat["pruned"]["runs"] == 40 and lat["ratio_spread"]["pairs"] == 5
    assert lat["sessions"] == 5 and len(lat["session_ratios"]) == 5
    assert lat["ratio"] == pytest.approx(sorted(lat["session_ratios"])[2])
    assert min(lat["session_ratios"]) <= lat["ratio"] <= max(lat["session_ratios"])
    for side in ("dense", "pruned"):
        assert 0 < lat[side]["median_ms"] <= lat[side]["p90_ms"]
    assert lat["speedup"] > 1.0, "a run pruned to a 50 % latency budget must be faster on cpu-ort"
    assert lat["speedup"] == pytest.approx(1 / lat["ratio"])
    assert (lat["predicted"] is None) != (lat["predicted_error"] is None)
    assert lat["budget"]["kind"] == "latency_budget" and lat["budget"]["value"] == 0.5
    assert lat["budget"]["met"] in (True, False)
    acc = rec["accuracy"]
    assert acc["n_images"] == 100 and acc["severities"] == [2, 4]
    for side in ("dense", "pruned"):
        a = acc[side]
        assert 0 <= a["clean"] <= 1 and set(a["cells"]) == {"gaussian_noise", "defocus_blur"}
        assert set(a["cells"]["gaussian_noise"]) == {"2", "4"}
        cells = [v for row in a["cells"].values() for v in row.values()]
        assert a["corrupted"] == pytest.approx(sum(cells) / len(cells))
        if a["clean"] > 0:
            assert a["r_c"] == pytest.approx(a["corrupted"] / a["clean"])
    assert acc["pruned"]["clean"] > 0.5, "an epoch of training and one of fine-tuning give a usable model"
    assert json.loads((run / "check.json").read_text()) == rec
    assert (run / "check.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run.glob(".*.tmp"))

    # The clean accuracy is that of the exported file, evaluated independently here.
    from prunekit.data import load_data
    from prunekit.deploy.ort_model import OrtClassifier

    val = load_data("digits", 32).loader("val", batch_size=100, shuffle=False)
    x, y = next(iter(val))
    pred = OrtClassifier(run / "pruned.onnx")(x).argmax(1)
    assert acc["pruned"]["clean"] == pytest.approx(float((pred == y).float().mean()))


def test_check_evaluates_the_file_not_the_pytorch_model(cli, checked, tmp_path):
    run, rec = checked
    copy_ = _copy_run(run, tmp_path / "swapped")
    shutil.copy(run / "dense.onnx", copy_ / "pruned.onnx")  # ship the dense file under the pruned name
    result = cli(["check", str(copy_), "--target", "cpu-ort", "--corruptions", "gaussian_noise",
                  "--severities", "2", "--limit", "100", "--repeats", "10", "--no-plot", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["exported_now"] is False
    assert out["accuracy"]["pruned"]["clean"] == out["accuracy"]["dense"]["clean"] == rec["accuracy"]["dense"]["clean"]
    assert not (copy_ / "check.png").exists()


def _baseline(rec, tmp_path, name, edit=None):
    base = copy.deepcopy(rec)
    if edit:
        edit(base)
    path = tmp_path / name
    path.write_text(json.dumps(base))
    return path


def test_gate_passes_when_not_worse(cli, checked, tmp_path):
    run, rec = checked

    def slightly_better_baseline(b):  # within the limits: accuracy 0.5 points higher than now
        b["accuracy"]["pruned"]["clean"] += 0.005

    base = _baseline(rec, tmp_path, "base.json", slightly_better_baseline)
    # 0.5: on this shared 2-core machine the interleaved ratio is stable, but not to 10 %.
    result = cli(["check", str(run), *CHECK, "--baseline", str(base), "--max-latency-regression", "0.5",
                  "--max-accuracy-drop", "0.01", "--json"])
    assert result.exit_code == 0, result.output
    gate = json.loads(result.stdout)["gate"]
    assert gate["passed"] is True and gate["regressions"] == []
    assert [c["metric"] for c in gate["checks"]] == ["speedup", "clean accuracy", "corrupted accuracy"]


def test_gate_fails_naming_each_regressed_metric(cli, checked, tmp_path):
    run, rec = checked

    def much_better_baseline(b):
        b["latency"]["speedup"] *= 3
        b["accuracy"]["pruned"]["clean"] += 0.1
        for row in b["accuracy"]["pruned"]["cells"].values():
            for sev in row:
                row[sev] += 0.1

    base = _baseline(rec, tmp_path, "base.json", much_better_baseline)
    result = cli(["check", str(run), *CHECK, "--baseline", str(base), "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["gate"]["passed"] is False
    assert out["gate"]["regressions"] == ["speedup", "clean accuracy", "corrupted accuracy"]
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("regression:")
    for metric in ("speedup", "clean accuracy", "corrupted accuracy"):
        assert metric in last
    assert json.loads((run / "check.json").read_text())["gate"]["passed"] is False


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"speedup": 2}', "is not a prunekit check.json"),
        ("EDIT:target", "is for target 'jetson-orin'"),
        ("EDIT:n_images", "evaluated 99 images"),
        ("EDIT:speedup", "'latency.speedup' is not a number"),
        ("EDIT:cells", "no corruption/severity in common"),
    ],
)
def test_bad_baseline_is_a_one_line_exit_2(cli, checked, tmp_path, content, message):
    run, rec = checked
    base = copy.deepcopy(rec)
    if content == "EDIT:target":
        base["target"] = "jetson-orin"
    elif content == "EDIT:n_images":
        base["accuracy"]["n_images"] = 99
    elif content == "EDIT:speedup":
        base["latency"]["speedup"] = "fast"
    elif content == "EDIT:cells":
        base["accuracy"]["pruned"]["cells"] = {"fog": {"1": 0.5}}
    path = tmp_path / "base.json"
    path.write_text(json.dumps(base) if content.startswith("EDIT:") else content)
    before = (run / "check.json").read_bytes()
    result = cli(["check", str(run), *CHECK, "--baseline", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert (run / "check.json").read_bytes() == before


def test_truncated_onnx_is_a_clean_error(cli, checked, tmp_path):
    run, _ = checked
    copy_ = _copy_run(run, tmp_path / "broken")
    data = (copy_ / "pruned.onnx").read_bytes()
    (copy_ / "pruned.onnx").write_bytes(data[: len(data) // 2])
    result = cli(["check", str(copy_), *CHECK])
    assert result.exit_code == 2
    assert "pruned.onnx is not a valid ONNX model" in result.output and "Traceback" not in result.output
    assert not (copy_ / "check.json").exists() and not (copy_ / "check.png").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_target_whose_runtime_is_absent(cli, checked, profile_dir):
    run, _ = checked
    (profile_dir / "trt-box.json").write_text(json.dumps({
        "name": "trt-box", "runtime": "tensorrt", "precision": "fp16",
        "provenance": {"kind": "estimated", "device_model": "a GPU", "formula": "-", "spec": {}, "date": "2025-01-01"},
    }))
    result = cli(["check", str(run), "--target", "trt-box"])
    assert result.exit_code == 2
    assert "runs on tensorrt, which is not available here" in result.output


def test_torch_runtime_target(cli, checked, profile_dir):
    """A profile whose runtime is PyTorch: the PyTorch models are timed, the ONNX files evaluated."""
    run, _ = checked
    (profile_dir / "cpu-torch.json").write_text(json.dumps({
        "name": "cpu-torch", "runtime": "torch", "precision": "fp32", "threads": 1,
        "provenance": {"kind": "measured", "device": "cpu", "device_model": "test", "runtime_version": "-",
                       "date": "2025-01-01"},
    }))
    result = cli(["check", str(run), "--target", "cpu-torch", "--corruptions", "fog", "--severities", "3",
                  "--limit", "20", "--repeats", "10", "--no-plot", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["runtime"] == "torch" and out["latency"]["how"].startswith("PyTorch eager on cpu")
    assert out["latency"]["dense"]["runs"] == 10 and out["accuracy"]["n_images"] == 20


def test_missing_run_and_unknown_target(cli, checked, tmp_path):
    run, _ = checked
    result = cli(["check", str(tmp_path / "nope"), "--target", "cpu-ort"])
    assert result.exit_code == 2 and "run folder not found" in result.output
    result = cli(["check", str(run), "--target", "no-such-device"])
    assert result.exit_code == 2 and "unknown target" in result.output
    result = cli(["check", str(run), *CHECK, "--severities", "7"])
    assert result.exit_code == 2 and "severity" in result.output.lower()


# ----------------------------------------------------------------------------- gate logic alone
def _record(speedup: float, clean: float, cells: dict[str, dict[str, float]]) -> dict:
    return {"latency": {"speedup": speedup}, "accuracy": {"n_images": 10, "pruned": {"clean": clean, "cells": cells}}}


def test_compare_rules():
    from prunekit.check import compare

    base = _record(2.0, 0.90, {"fog": {"1": 0.8, "3": 0.6}, "snow": {"1": 0.7}})
    same = compare(base, base, "b", 0.1, 0.01)
    assert same.passed and len(same.checks) == 3
    # speedup 10 % lower is still allowed at --max-latency-regression 0.1; 11 % is not
    assert compare(_record(1.8, 0.90, base["accuracy"]["pruned"]["cells"]), base, "b", 0.1, 0.01).passed
    slow = compare(_record(1.78, 0.90, base["accuracy"]["pruned"]["cells"]), base, "b", 0.1, 0.01)
    assert slow.regressions == ["speedup"] and "speedup 2 -> 1.78" in slow.summary()
    # accuracy: a drop of exactly the limit passes, more fails; faster does not excuse it
    assert compare(_record(5.0, 0.89, base["accuracy"]["pruned"]["cells"]), base, "b", 0.1, 0.01).passed
    assert compare(_record(5.0, 0.85, base["accuracy"]["pruned"]["cells"]), base, "b", 0.1, 0.01).regressions == [
        "clean accuracy"]
    # corrupted accuracy: only the cells both checks measured are compared
    cur = _record(2.0, 0.90, {"fog": {"1": 0.8, "3": 0.5}, "frost": {"1": 0.0}})
    gate = compare(cur, base, "b", 0.1, 0.01)
    assert gate.regressions == ["corrupted accuracy"]
    corr = gate.checks[2]
    assert corr["baseline"] == pytest.approx(0.7) and corr["current"] == pytest.approx(0.65)


def test_interleaved_timing_and_old_baselines(cli, checked, tmp_path):
    """--timing interleaved is the old schedule; a check.json/1 baseline (always interleaved) gates only it."""
    run, rec = checked
    old = copy.deepcopy(rec)
    old["format"] = "prunekit-check/1"
    for key in ("timing",):
        old.pop(key)
    for key in ("mode", "block", "block_warmup", "ratio_spread"):
        old["latency"].pop(key, None)
    base = tmp_path / "v1.json"
    base.write_text(json.dumps(old))
    result = cli(["check", str(run), *CHECK, "--baseline", str(base), "--no-plot"])
    assert result.exit_code == 2
    assert "timed dense and pruned interleaved, this check times them blocks" in result.output
    assert "--timing interleaved" in result.output
    result = cli(["check", str(run), *CHECK, "--timing", "interleaved", "--baseline", str(base),
                  "--max-latency-regression", "0.9", "--no-plot", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["timing"] == out["latency"]["mode"] == "interleaved" and out["gate"]["passed"] is True
    assert out["latency"]["ratio_spread"]["pairs"] == 40  # one ratio per round
    bad = cli(["check", str(run), *CHECK, "--timing", "bursts"])
    assert bad.exit_code == 2 and "unknown --timing 'bursts'" in bad.output


def test_a_registered_runtime_times_the_check(cli, checked, profile_dir):
    """A runtime added from outside (one class in the table) is what `check` times on: no other file knows it."""
    from prunekit.latency.layers import enumerate_layers
    from prunekit.latency.measure import Timer
    from prunekit.runtimes import RUNTIMES, Runtime, register_runtime

    calls = []

    @register_runtime
    class MacsSim(Runtime):
        name = "macs-sim-check"
        summary = "simulated device: 1 ms per MMAC"

        def version(self):
            return "sim 1"

        def describe(self, execution):
            return "simulated MACs device"

        def timer(self, model, input_shape, execution, clock="auto"):
            calls.append(tuple(input_shape))
            ms = sum(s.macs for s in enumerate_layers(model.torch_module(), tuple(input_shape))) / 1e6
            return Timer(lambda n: [ms] * n, "sim")

    try:
        (profile_dir / "sim-box.json").write_text(json.dumps({
            "name": "sim-box", "runtime": "macs-sim-check", "precision": "fp32",
            "provenance": {"kind": "estimated", "device_model": "simulated", "formula": "-", "spec": {},
                           "date": "2025-01-01"},
        }))
        result = cli(["check", str(run_of(checked)), "--target", "sim-box", "--corruptions", "fog", "--severities",
                      "3", "--limit", "20", "--repeats", "10", "--no-plot", "--json"])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        lat = out["latency"]
        assert out["runtime"] == "macs-sim-check" and lat["how"].startswith("simulated MACs device")
        assert calls == [(1, 3, 32, 32)] * 10  # dense and pruned, in 5 fresh sessions each
        assert lat["dense"]["clock"] == "sim" and lat["ratio_spread"]["min"] == lat["ratio_spread"]["max"]
        from prunekit.runs import load_run

        loaded = load_run(run_of(checked))
        macs = [sum(s.macs for s in enumerate_layers(m, (1, 3, 32, 32))) for m in (loaded.dense, loaded.pruned)]
        assert lat["ratio"] == pytest.approx(macs[1] / macs[0])
    finally:
        RUNTIMES.pop("macs-sim-check", None)


def run_of(checked):
    return checked[0]


def test_check_corrupts_each_batch_once_for_both_files(checked, monkeypatch):
    """Dense and pruned are evaluated on the very same corrupted images, made once per batch and cell."""
    import torch

    import prunekit.robustness.metrics as metrics
    from prunekit.check import evaluate_exported
    from prunekit.runs import load_run

    run, _ = checked
    made = []
    real = metrics.corrupt

    def counting(x, name, severity, seed=0):
        out = real(x, name, severity, seed=seed)
        made.append(out)
        return out

    monkeypatch.setattr(metrics, "corrupt", counting)
    seen: dict[str, list[torch.Tensor]] = {"dense": [], "pruned": []}
    from prunekit.deploy import ort_model

    class Recording(ort_model.OrtClassifier):
        def __init__(self, path, threads=1):
            super().__init__(path, threads)
            self.which = "pruned" if "pruned" in str(path) else "dense"

        def __call__(self, x):
            seen[self.which].append(x)
            return super().__call__(x)

    monkeypatch.setattr(ort_model, "OrtClassifier", Recording)
    acc = evaluate_exported(load_run(run), run / "dense.onnx", run / "pruned.onnx", ["gaussian_noise", "fog"], [2, 4],
                            0, 150, 1)
    batches = 2  # 150 images in batches of 128
    assert len(made) == batches * 2 * 2, "one corruption pass per batch and cell, not one per model"
    assert len(seen["dense"]) == len(seen["pruned"]) == batches * (1 + 4)
    for a, b in zip(seen["dense"], seen["pruned"], strict=True):
        assert a is b  # the same tensor object: identical images
    assert acc["n_images"] == 150
