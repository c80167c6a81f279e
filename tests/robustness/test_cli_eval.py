"""`prunekit eval` end to end on the built-in digits data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

try:  # the command needs the data/run/model foundation
    from typer.testing import CliRunner

    from prunekit.cli import app
    from prunekit.models import build_model
    from prunekit.runs import save_weights
except ImportError as exc:  # pragma: no cover - only while the foundation is missing
    pytest.skip(f"foundation missing: {exc}", allow_module_level=True)

QUICK = ["--data", "digits", "--input-size", "16", "--limit", "24", "--batch-size", "16"]


def invoke(args):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def random_resnet18() -> torch.nn.Module:
    """An untrained resnet18 whose batch-norm statistics are random, so its predictions vary."""
    torch.manual_seed(0)
    model = build_model("resnet18", 10)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet18.safetensors"
    save_weights(random_resnet18(), path)
    return path


def test_eval_model_with_pgd_certify_and_chart(weights, tmp_path):
    chart = tmp_path / "chart.png"
    result = invoke([
        "eval", "resnet18", "--weights", str(weights), *QUICK, "--corruptions", "gaussian_noise,fog",
        "--severities", "1,5", "--pgd", "--pgd-steps", "2", "--certify", "3", "--out", str(chart), "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (m,) = out["models"].values()
    assert set(m["accuracy"]) == {"gaussian_noise", "fog"} and set(m["accuracy"]["fog"]) == {"1", "5"}
    assert m["n_images"] == 24
    for v in (m["clean_accuracy"], m["mean_corruption_accuracy"], m["pgd"]["adversarial_accuracy"]):
        assert 0.0 <= v <= 1.0
    assert m["pgd"]["steps"] == 2 and m["certify"]["n_samples"] == 3
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["chart"] == str(chart)


def test_eval_run_folder_dense_vs_pruned(tmp_path):
    run = tmp_path / "run"
    made = invoke([
        "compress", "--input-size", "16", "--pretrain-epochs", "0", "--epochs", "0", "--prune-ratio", "0.5",
        "--out", str(run), "--json",
    ])  # fmt: skip
    assert made.exit_code == 0, made.output
    result = invoke(
        ["eval", str(run), "--limit", "32", "--severities", "2", "--corruptions", "contrast,snow"]
    )
    assert result.exit_code == 0, result.output
    assert "dense" in result.stdout and "pruned" in result.stdout and "mCE vs dense" in result.stdout
    as_json = invoke(
        ["eval", str(run), "--limit", "32", "--severities", "2", "--corruptions", "contrast", "--json"]
    )
    out = json.loads(as_json.stdout)
    assert list(out["models"]) == ["dense", "pruned"]
    assert out["models"]["pruned"]["reference"] == "dense"
    assert out["data"] == "digits"


def test_eval_onnx_file_matches_the_torch_model(weights, tmp_path):
    from prunekit.deploy.onnx import to_onnx

    path = tmp_path / "net.onnx"
    to_onnx(random_resnet18(), (1, 3, 16, 16), exporter="release", dynamic_batch=True, path=path)
    args = [*QUICK, "--corruptions", "fog,contrast", "--severities", "1,5", "--device", "cpu", "--json"]
    ort = invoke(["eval", str(path), *args])
    assert ort.exit_code == 0, ort.output
    ref = invoke(["eval", "resnet18", "--weights", str(weights), *args])
    a, b = json.loads(ort.stdout)["models"]["net"], json.loads(ref.stdout)["models"]["resnet18"]
    assert 0.0 < a["clean_accuracy"] < 1.0
    assert abs(a["clean_accuracy"] - b["clean_accuracy"]) <= 1 / 24
    for c in ("fog", "contrast"):
        for s in ("1", "5"):
            assert abs(a["accuracy"][c][s] - b["accuracy"][c][s]) <= 1 / 24
    pgd = invoke(["eval", str(path), *QUICK, "--pgd"])
    assert pgd.exit_code == 2 and "PGD needs gradients" in pgd.output


def test_eval_reads_cifar_c_files(weights, tmp_path):
    root = tmp_path / "CIFAR-C"
    root.mkdir()
    rng = np.random.default_rng(0)
    np.save(root / "fog.npy", rng.integers(0, 255, (5 * 6, 16, 16, 3), dtype=np.uint8))
    np.save(root / "labels.npy", np.tile(np.arange(6, dtype=np.uint8), 5))
    args = ["eval", "resnet18", "--weights", str(weights), *QUICK, "--corruptions", "fog"]
    result = invoke([*args, "--corrupted-dir", str(root), "--json"])
    assert result.exit_code == 0, result.output
    m = next(iter(json.loads(result.stdout)["models"].values()))
    assert m["source"] == str(root) and set(m["accuracy"]["fog"]) == {"1", "2", "3", "4", "5"}
    bad = invoke([*args, "--input-size", "32", "--corrupted-dir", str(root)])
    assert bad.exit_code == 2 and "16x16 images but the model expects 32x32" in bad.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--corruptions", "fogg"], "valid names"),
        (["--severities", "0,3"], "outside 1..5"),
        (["--severities", "x"], "not a number"),
        (["--pgd", "--eps", "-0.1"], "eps"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_eval_bad_input_exits_2(weights, extra, message):
    result = invoke(["eval", "resnet18", "--weights", str(weights), *QUICK, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_eval_needs_weights_or_run(tmp_path):
    result = invoke(["eval", "resnet18", "--data", "digits"])
    assert result.exit_code == 2 and "--weights" in result.output
    result = invoke(["eval", str(tmp_path)])
    assert result.exit_code == 2 and "run" in result.output
