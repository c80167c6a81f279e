"""The CI gate: this check against an earlier check.json (the baseline).

The gate compares the *speedup ratio* (dense / pruned latency, both timed in one process), not
milliseconds, so a slower or busier CI machine does not fail it; accuracy is compared absolutely.
A baseline measured on another target, model, data, image set or timing mode cannot gate a check
(PrunekitError, exit 2); a regression is `GateResult.passed == False` (exit 1 at the CLI).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunekit.errors import PrunekitError
from prunekit.runs import read_json

CHECK_FORMAT = "prunekit-check/2"
READABLE_FORMATS = ("prunekit-check/1", CHECK_FORMAT)  # /1: written before warm (blocks) timing
DEFAULT_MAX_LATENCY_REGRESSION = 0.10
DEFAULT_MAX_ACCURACY_DROP = 0.01
EPS = 1e-9  # accuracies are ratios of integers: an unchanged one must not count as a drop


@dataclass
class GateResult:
    """Outcome of comparing a check with a baseline check.json."""

    baseline: str
    max_latency_regression: float
    max_accuracy_drop: float
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        return [c["metric"] for c in self.checks if c["regressed"]]

    @property
    def passed(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline, "passed": self.passed, "regressions": self.regressions,
            "max_latency_regression": self.max_latency_regression, "max_accuracy_drop": self.max_accuracy_drop,
            "checks": self.checks,
        }

    def summary(self) -> str:
        """One line naming each regressed metric, or saying it passed."""
        if self.passed:
            return f"gate passed against {self.baseline}"
        parts = [f"{c['metric']} {c['baseline']:.4g} -> {c['current']:.4g} ({c['rule']})"
                 for c in self.checks if c["regressed"]]
        return "regression: " + "; ".join(parts)


def _num(obj: dict[str, Any], path: str, where: str) -> float:
    cur: Any = obj
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise PrunekitError(f"baseline {where} has no '{path}'", "pass a check.json written by prunekit check")
        cur = cur[key]
    if isinstance(cur, bool) or not isinstance(cur, (int, float)) or not math.isfinite(float(cur)):
        raise PrunekitError(f"baseline {where}: '{path}' is not a number", "pass a check.json written by prunekit check")
    return float(cur)


def _cells(acc: dict[str, Any], where: str) -> dict[tuple[str, int], float]:
    cells = acc.get("cells") if isinstance(acc, dict) else None
    if not isinstance(cells, dict):
        raise PrunekitError(f"baseline {where} has no per-corruption accuracies", "pass a check.json written by prunekit check")
    out: dict[tuple[str, int], float] = {}
    for name, row in cells.items():
        if not isinstance(row, dict):
            raise PrunekitError(f"baseline {where}: corruption '{name}' is malformed")
        for sev, value in row.items():
            try:
                out[(str(name), int(sev))] = float(value)
            except (TypeError, ValueError):
                raise PrunekitError(f"baseline {where}: accuracy of {name} severity {sev} is not a number") from None
    return out


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read and validate an earlier check.json (any damage or a foreign file is a one-line error)."""
    p = Path(path)
    obj = read_json(p, "baseline")
    if obj.get("format") not in READABLE_FORMATS:
        raise PrunekitError(f"baseline {p} is not a prunekit check.json (format {obj.get('format')!r})",
                            f"expected format {CHECK_FORMAT!r}, written by prunekit check")
    _num(obj, "latency.speedup", str(p))
    _num(obj, "accuracy.pruned.clean", str(p))
    _num(obj, "accuracy.n_images", str(p))
    _cells(obj.get("accuracy", {}).get("pruned", {}), str(p))
    return obj


def check_baseline_compatible(baseline: dict[str, Any], current: dict[str, Any], where: str,
                              cells: Sequence[tuple[str, int]], n_images: int) -> None:
    """A baseline measured on another target, model, data or image set cannot gate this check."""
    for key, label in (("target", "target"), ("model", "model"), ("data", "data"), ("input_size", "input size")):
        if baseline.get(key) != current.get(key):
            raise PrunekitError(
                f"baseline {where} is for {label} {baseline.get(key)!r}, this check is for {current.get(key)!r}",
                "compare checks of the same model, data and target",
            )
    base_mode, mode = timing_mode(baseline), timing_mode(current)
    if base_mode != mode:
        raise PrunekitError(
            f"baseline {where} timed dense and pruned {base_mode}, this check times them {mode}: the speedups "
            "are not comparable",
            f"run with --timing {base_mode}, or commit this check's check.json as the new baseline",
        )
    base_n = int(_num(baseline, "accuracy.n_images", where))
    if base_n != n_images:
        raise PrunekitError(f"baseline {where} evaluated {base_n} images, this check evaluates {n_images}",
                            "use the same --limit as the baseline")
    shared = set(_cells(baseline["accuracy"]["pruned"], where)) & set(cells)
    if not shared:
        raise PrunekitError(f"baseline {where} has no corruption/severity in common with this check",
                            "use the same --corruptions and --severities as the baseline")


def compare(current: dict[str, Any], baseline: dict[str, Any], where: str,
            max_latency_regression: float, max_accuracy_drop: float) -> GateResult:
    """Gate `current` (a check record) against `baseline`; both must be compatible."""
    gate = GateResult(where, max_latency_regression, max_accuracy_drop)
    base_speedup = _num(baseline, "latency.speedup", where)
    cur_speedup = float(current["latency"]["speedup"])
    floor = base_speedup * (1.0 - max_latency_regression)
    gate.checks.append({
        "metric": "speedup", "baseline": base_speedup, "current": cur_speedup, "limit": floor,
        "rule": f"must stay >= {floor:.4g} ({100 * max_latency_regression:g} % below the baseline)",
        "regressed": cur_speedup < floor - EPS,
    })
    base_clean = _num(baseline, "accuracy.pruned.clean", where)
    cur_clean = float(current["accuracy"]["pruned"]["clean"])
    gate.checks.append({
        "metric": "clean accuracy", "baseline": base_clean, "current": cur_clean,
        "limit": base_clean - max_accuracy_drop,
        "rule": f"may drop at most {max_accuracy_drop:g}", "regressed": base_clean - cur_clean > max_accuracy_drop + EPS,
    })
    base_cells = _cells(baseline["accuracy"]["pruned"], where)
    cur_cells = _cells(current["accuracy"]["pruned"], "current")
    shared = sorted(set(base_cells) & set(cur_cells))
    if shared:
        b = sum(base_cells[k] for k in shared) / len(shared)
        c = sum(cur_cells[k] for k in shared) / len(shared)
        gate.checks.append({
            "metric": "corrupted accuracy", "baseline": b, "current": c, "limit": b - max_accuracy_drop,
            "rule": f"mean over {len(shared)} shared corruption/severity cells may drop at most {max_accuracy_drop:g}",
            "regressed": b - c > max_accuracy_drop + EPS,
        })
    return gate


def timing_mode(record: dict[str, Any]) -> str:
    """How a check timed the pair: 'blocks' or 'interleaved' (check.json /1 was always interleaved)."""
    lat = record.get("latency") if isinstance(record.get("latency"), dict) else {}
    if "mode" in lat:
        return str(lat["mode"])
    return str(record.get("timing", "interleaved"))
