"""Two CPU processes with the gloo backend through torchrun: same pruned architecture and weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


def _torchrun(tmp_path: Path, nproc: int, tag: str, env_extra: dict[str, str]) -> dict[int, dict]:
    out, dump = tmp_path / f"run-{tag}", tmp_path / f"dump-{tag}"
    dump.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           str(WORKER), str(out), str(dump)]
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), str(out), str(dump)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "report.json").exists()
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in dump.glob("rank*.json")}


@pytest.mark.parametrize("method, optimizer", [("magnitude", "sam"), ("adasap", "")])
def test_two_ranks_end_identical_and_match_single_process_plan(tmp_path, method, optimizer):
    env = {"PK_METHOD": method, "PK_OPT": optimizer}
    ranks = _torchrun(tmp_path, 2, "ddp", env)
    assert set(ranks) == {0, 1}
    assert ranks[0]["shapes"] == ranks[1]["shapes"]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    plan_ddp = json.loads((tmp_path / "run-ddp" / "plan.json").read_text())
    if method == "magnitude":
        # magnitude selection on identically initialised weights: the channel plan of one process
        single = _torchrun(tmp_path, 1, "single", env)
        plan_single = json.loads((tmp_path / "run-single" / "plan.json").read_text())
        assert single[0]["shapes"] == ranks[0]["shapes"]
        assert [h[0] for h in plan_single["history"]] == [h[0] for h in plan_ddp["history"]]
        assert plan_single["widths"] == plan_ddp["widths"]
