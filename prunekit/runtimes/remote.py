"""Timing on a device this process cannot run on: a user command template (`--measure-cmd`).

The template is a shell command with placeholders, e.g.

    scp {onnx} {dense_onnx} orin:/tmp/ && ssh orin prunekit measure /tmp/{onnx_name} --baseline /tmp/{dense_onnx_name} --target jetson-orin --json

`{onnx}` / `{dense_onnx}` are local paths of the candidate and the dense ONNX files,
`{onnx_name}` / `{dense_onnx_name}` their file names. The command must print one JSON object
(the last `{...}` on its stdout is read) with `ratio` (pruned / dense, as `prunekit measure
--baseline` prints it) or `median_ms` (then the dense file is timed by a second call with
`{onnx}` = the dense file, and the ratio is of the two medians). A command that fails, hangs past
its timeout, or prints no usable JSON is a one-line PrunekitError naming which.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from prunekit.errors import PrunekitError

PLACEHOLDERS = ("{onnx}", "{dense_onnx}", "{onnx_name}", "{dense_onnx_name}")


def render(template: str, onnx: Path, dense_onnx: Path) -> str:
    """The command for one candidate: placeholders replaced by shell-quoted paths / names."""
    if "{onnx}" not in template and "{onnx_name}" not in template:
        raise PrunekitError("--measure-cmd must contain {onnx} (or {onnx_name}): where the candidate file goes")
    return (template.replace("{onnx_name}", shlex.quote(onnx.name))
            .replace("{dense_onnx_name}", shlex.quote(dense_onnx.name))
            .replace("{dense_onnx}", shlex.quote(str(dense_onnx)))
            .replace("{onnx}", shlex.quote(str(onnx))))


def _last_json(text: str) -> dict[str, Any] | None:
    """The last top-level JSON object in `text` (a command may log before it)."""
    decoder = json.JSONDecoder()
    found, i = None, 0
    while (i := text.find("{", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        if isinstance(obj, dict):
            found = obj
        i = end
    return found


def run_command(command: str, timeout_s: float) -> dict[str, Any]:
    """Run one measurement command; its JSON object, or a one-line error."""
    short = command if len(command) <= 80 else command[:77] + "..."
    try:
        proc = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PrunekitError(f"--measure-cmd did not finish within {timeout_s:g} s: {short}",
                            "check the device is reachable, or raise --measure-timeout") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1][:160]
        raise PrunekitError(f"--measure-cmd exited with code {proc.returncode}: {short}" + (f" ({last})" if last else ""))
    obj = _last_json(proc.stdout)
    if obj is None:
        raise PrunekitError(f"--measure-cmd printed no JSON object: {short}",
                            "the command must end by printing `prunekit measure ... --json` output")
    return obj


def measure_ratio_with_command(template: str, onnx: Path, dense_onnx: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    """Measured pruned / dense latency ratio of `onnx` through the user's command."""
    out = run_command(render(template, onnx, dense_onnx), timeout_s)
    ratio = out.get("ratio")
    if isinstance(ratio, (int, float)) and ratio > 0:
        return {"ratio": float(ratio), "how": "measure-cmd (dense and pruned side by side)", "result": out}
    med = out.get("median_ms")
    if not (isinstance(med, (int, float)) and med > 0):
        raise PrunekitError("--measure-cmd's JSON has neither a positive 'ratio' nor 'median_ms'")
    dense = run_command(render(template, dense_onnx, dense_onnx), timeout_s).get("median_ms")
    if not (isinstance(dense, (int, float)) and dense > 0):
        raise PrunekitError("--measure-cmd's JSON for the dense model has no positive 'median_ms'")
    return {"ratio": float(med) / float(dense), "how": "measure-cmd (two separate timings)", "result": out}
