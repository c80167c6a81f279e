"""Rich tables for reports (the human view of report.json / check.json)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "int":
        v = float(value)
        for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(v) >= div:
                return f"{v / div:.2f}{unit}"
        return f"{v:.0f}"
    if kind == "pct":
        return f"{100 * float(value):.2f} %"
    if kind == "ms":
        return f"{float(value):.3f} ms"
    return str(value)


ROWS = [
    ("params", "parameters", "int"),
    ("macs", "MACs", "int"),
    ("accuracy", "accuracy (val)", "pct"),
    ("corrupted_accuracy", "accuracy (corrupted)", "pct"),
    ("r_c", "R_C = acc_C / acc", "str"),
    ("map", "mAP@[.5:.95] (val)", "pct"),
    ("map_50", "mAP@.5 (val)", "pct"),
    ("mpc", "mPC (mAP, corrupted)", "pct"),
    ("rpc", "rPC = mPC / mAP", "str"),
    ("decode_nms_ms", "box decoding + NMS, measured", "ms"),
    ("predicted_latency_ms", "latency, predicted", "ms"),
    ("measured_latency_ms", "latency, measured", "ms"),
]


def compress_table(report: dict[str, Any]) -> Table:
    """Dense vs pruned side by side, with the pruned/dense ratio."""
    dense, pruned = report["dense"], report["pruned"]
    s = report.get("settings", {})
    title = f"{s.get('model', '?')} on {s.get('data', '?')}: method {s.get('method', '?')}"
    if s.get("target"):
        title += f", target {s['target']}"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("dense", justify="right")
    table.add_column("pruned", justify="right")
    table.add_column("pruned / dense", justify="right")
    for key, label, kind in ROWS:
        if key not in dense and key not in pruned:
            continue
        d, p = dense.get(key), pruned.get(key)
        ratio = f"{float(p) / float(d):.3f}" if isinstance(d, (int, float)) and isinstance(p, (int, float)) and d else "-"
        table.add_row(label, _fmt(d, kind), _fmt(p, kind), ratio)
    table.caption = goal_caption(report.get("goal"))
    return table


def goal_caption(goal: dict[str, Any] | None) -> str | None:
    """One line under the table: the latency budget and whether it was met, and by what evidence."""
    if not goal or goal.get("budget") is None:
        return None
    verdict = "met" if goal.get("met") else "missed"
    if goal.get("met_by") == "measured":
        return (f"latency budget {goal['budget']:g}: {verdict}, measured ratio {goal['measured_ratio']:.3f} "
                f"({goal.get('measured_how', 'timed')})")
    return f"latency budget {goal['budget']:g}: {verdict} by the latency table (not measured)"
