from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.guard import ResourceLimits, current_limits, guarded, rss_bytes, use_limits

ROOT = Path(__file__).resolve().parents[1]
GB = 1024**3


class Spinning(nn.Module):
    """A model whose forward never ends (a graph with endless nodes, as far as a tracer can tell)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        while True:
            y = y * 1.0
            if y.shape[0] < 0:  # never: keeps the loop from looking like dead code
                break
        return self.fc(y.mean((2, 3)))


class Hogging(Spinning):
    """A model whose forward allocates memory until something stops it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hoard = []
        while True:
            hoard.append(torch.ones(2**22) * float(x.mean()))  # 16 MB each


def spinning(num_classes: int = 10) -> nn.Module:
    return Spinning(num_classes)


def hogging(num_classes: int = 10) -> nn.Module:
    return Hogging(num_classes)


def test_time_limit_raises_a_one_line_error():
    started = time.monotonic()
    with pytest.raises(PrunekitError, match=r"building the graph for model 'spin' passed the 0.5 s limit") as err:
        with guarded("building the graph", "spin", ResourceLimits(max_seconds=0.5)):
            while True:
                pass
    assert time.monotonic() - started >= 0.5
    assert "\n" not in err.value.one_line() and "PRUNEKIT_MAX_GRAPH_SECONDS=" in err.value.one_line()


def test_memory_ceiling_raises_and_library_code_cannot_swallow_it():
    hoard = []
    ceiling = (rss_bytes() + 0.3 * GB) / GB
    with pytest.raises(PrunekitError, match="passed the memory ceiling"):
        with guarded("pruning", "hog", ResourceLimits(max_memory_gb=ceiling)):
            while True:
                try:  # what library code with a broad except looks like
                    hoard.append(torch.ones(2**22))
                except Exception:  # noqa: BLE001 - the point of the test
                    pass
    assert sum(t.numel() * 4 for t in hoard) >= 0.2 * GB
    hoard.clear()


def test_a_block_within_its_limits_runs_and_leaves_nothing_pending():
    with guarded("x", "fine", ResourceLimits(max_seconds=5)):
        total = sum(range(1000))
    time.sleep(0.3)  # a stray asynchronous exception would surface here
    assert total == 499500


def test_errors_of_the_block_pass_through_unchanged():
    with pytest.raises(PrunekitError, match="own error"):
        with guarded("x", "m", ResourceLimits(max_seconds=5)):
            raise PrunekitError("own error")


def test_limits_from_environment_and_scope(monkeypatch):
    monkeypatch.setenv("PRUNEKIT_MAX_GRAPH_SECONDS", "12")
    monkeypatch.setenv("PRUNEKIT_MAX_MEMORY_GB", "3.5")
    assert current_limits() == ResourceLimits(12.0, 3.5)
    with use_limits(ResourceLimits(max_seconds=7)):
        assert current_limits() == ResourceLimits(7.0, 3.5)
    assert current_limits().seconds() == 12.0
    monkeypatch.setenv("PRUNEKIT_MAX_GRAPH_SECONDS", "soon")
    with pytest.raises(PrunekitError, match="PRUNEKIT_MAX_GRAPH_SECONDS"):
        current_limits()
    monkeypatch.setenv("PRUNEKIT_MAX_GRAPH_SECONDS", "-1")
    with pytest.raises(PrunekitError):
        current_limits()
    with pytest.raises(PrunekitError):
        ResourceLimits(max_memory_gb=0)


def test_default_memory_ceiling_leaves_the_machine_room():
    ceiling = ResourceLimits().memory_bytes()
    assert 0 < ceiling
    with open("/proc/meminfo") as fh:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
    assert ceiling <= 0.75 * info["MemTotal"] + 1
    assert ceiling <= rss_bytes() + info["MemAvailable"]


def _cli(factory: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    backstop = 10 * GB  # if the guard failed, the kernel would stop the child, not the machine

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (backstop, backstop))

    cmd = [sys.executable, "-m", "prunekit", "compress", "--model", f"tests.test_guard:{factory}",
           "--data", "synthetic", "--num-classes", "10", "--input-size", "16", "--prune-ratio", "0.3",
           "--pretrain-epochs", "0", "--epochs", "0", "--out", str(tmp_path / "run")]
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600, preexec_fn=limit)


def test_cli_exits_2_when_the_graph_build_passes_its_time_limit(tmp_path):
    proc = _cli("spinning", {"PRUNEKIT_MAX_GRAPH_SECONDS": "3"}, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "model 'tests.test_guard:spinning' passed the 3 s limit" in lines[0]


def test_cli_exits_2_when_the_graph_build_passes_its_memory_ceiling(tmp_path):
    proc = _cli("hogging", {"PRUNEKIT_MAX_MEMORY_GB": "2.5"}, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "passed the memory ceiling of 2.5 GB" in lines[0]
