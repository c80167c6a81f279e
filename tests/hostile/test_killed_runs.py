"""Kill `prunekit compress` (SIGKILL) at several points, resume, and get the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ARGS = ["compress", "--data", "synthetic:192", "--num-classes", "4", "--input-size", "16", "--batch-size", "16",
        "--pretrain-epochs", "2", "--epochs", "2", "--method", "adasap", "--warmup-epochs", "2",
        "--prune-steps", "2", "--prune-every", "3", "--prune-ratio", "0.5", "--seed", "3", "--json"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunekit", *ARGS, "--out", str(out), *extra],
                          env=ENV, capture_output=True, text=True, timeout=600)


def _state(out: Path) -> dict:
    try:
        return json.loads((out / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _kill_when(out: Path, condition: Callable[[Path], bool], sig: int = signal.SIGKILL) -> subprocess.Popen:
    log = out.parent / "stderr.txt"
    proc = subprocess.Popen([sys.executable, "-m", "prunekit", *ARGS, "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if condition(out):
            proc.send_signal(sig)
            break
        time.sleep(0.005)
    proc.wait(timeout=120)
    proc.stderr_text = log.read_text()  # type: ignore[attr-defined]
    return proc


def _assert_nothing_half_written(out: Path) -> None:
    from safetensors.torch import load_file

    for path in out.rglob("*"):
        if path.name.endswith(".tmp") or not path.is_file():
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".pt":
            import torch

            torch.load(path, weights_only=True)


def _result(out: Path) -> tuple[dict, dict]:
    report = json.loads((out / "report.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    return {k: report[k] for k in ("dense", "pruned")}, plan


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = _run(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _result(out)


POINTS = {
    "during pretraining": lambda out: (out / "checkpoints" / "pretrain.pt").exists(),
    "between pruning steps": lambda out: (out / "checkpoints" / "adasap-warmup.pt").exists(),
    "during fine-tuning": lambda out: (out / "checkpoints" / "finetune.pt").exists(),
    "while writing a checkpoint": lambda out: any(out.rglob(".*.pt.*.tmp")),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, reference, point):
    out = tmp_path / "run"
    proc = _kill_when(out, POINTS[point])
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill point ({proc.returncode})"
    assert _state(out).get("status") == "running"
    _assert_nothing_half_written(out)
    resumed = _run(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list(out.rglob(".*.tmp"))
    assert _result(out) == reference


def test_ctrl_c_exits_130_and_resumes(tmp_path, reference):
    out = tmp_path / "run"
    proc = _kill_when(out, POINTS["during pretraining"], sig=signal.SIGINT)
    assert proc.returncode == 130
    err = proc.stderr_text.strip().splitlines()
    assert err[-1].startswith("interrupted:") and "--resume" in err[-1]
    assert "Traceback" not in proc.stderr_text
    resumed = _run(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _result(out) == reference
