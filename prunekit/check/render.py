"""Rendering a check: rich tables for the terminal and check.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f} %"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f} ms"


def _x(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}x"


def check_table(record: dict[str, Any]) -> Group:
    """Rich tables: latency (measured vs predicted, budget), accuracy (clean, corrupted, R_C), gate."""
    lat, acc = record["latency"], record["accuracy"]
    pred = lat.get("predicted") or {}
    t = Table(title=f"check {record['model']} on {record['target']} ({lat['how']})")
    t.add_column("metric")
    t.add_column("dense", justify="right")
    t.add_column("pruned", justify="right")
    t.add_column("speedup", justify="right")
    t.add_row("latency, median (measured)", _ms(lat["dense"]["median_ms"]), _ms(lat["pruned"]["median_ms"]),
              _x(lat["speedup"]))
    t.add_row("latency, p90 (measured)", _ms(lat["dense"]["p90_ms"]), _ms(lat["pruned"]["p90_ms"]), "")
    spread = lat.get("ratio_spread")
    if spread and spread.get("pairs", 0) > 1:
        what = "block pairs" if lat.get("mode", "interleaved") == "blocks" else "rounds"
        t.add_row(f"pruned/dense ratio over {spread['pairs']} {what} (p10-p90)", "", "",
                  f"{spread['p10']:.3f}-{spread['p90']:.3f}")
    if pred:
        t.add_row("latency (predicted by profile)", _ms(pred.get("dense_ms")), _ms(pred.get("pruned_ms")),
                  _x(pred.get("speedup")))
    else:
        t.add_row("latency (predicted by profile)", "-", "-", "n/a")
    # a detector's check holds mAP / mPC / rPC in the same keys (its accuracy dict names a "metric")
    clean, corrupted, rc = ("mAP@[.5:.95], clean", "mPC (mAP), corrupted", "rPC = mPC / mAP") if "metric" in acc \
        else ("accuracy, clean", "accuracy, corrupted", "R_C = acc_C / acc")
    t.add_row(f"{clean} ({acc['n_images']} images)", _pct(acc["dense"]["clean"]), _pct(acc["pruned"]["clean"]), "")
    t.add_row(f"{corrupted} ({len(acc['corruptions'])} x {len(acc['severities'])})",
              _pct(acc["dense"]["corrupted"]), _pct(acc["pruned"]["corrupted"]), "")
    rc_d, rc_p = acc["dense"]["r_c"], acc["pruned"]["r_c"]
    t.add_row(rc, "-" if rc_d is None else f"{rc_d:.3f}", "-" if rc_p is None else f"{rc_p:.3f}", "")
    mce = acc["pruned"].get("mce_vs_dense")
    if mce is not None:
        t.add_row("mCE vs dense", "1.000", f"{mce:.3f}", "")
    b = lat["budget"]
    met = {True: " [green](met)[/]", False: " [red](missed)[/]", None: ""}[b.get("met")]
    parts: list[Any] = [t, f"budget: {b['note']}{met}"]
    if not pred and lat.get("predicted_error"):
        parts.append(f"[dim]no prediction: {lat['predicted_error']}[/]")
    per = Table(title="accuracy per corruption (mean over severities)")
    per.add_column("corruption")
    per.add_column("dense", justify="right")
    per.add_column("pruned", justify="right")
    for c in acc["corruptions"]:
        per.add_row(c, _pct(acc["dense"]["per_corruption"][c]), _pct(acc["pruned"]["per_corruption"][c]))
    parts.append(per)
    gate = record.get("gate")
    if gate:
        g = Table(title=f"CI gate vs {gate['baseline']}")
        g.add_column("metric")
        g.add_column("baseline", justify="right")
        g.add_column("now", justify="right")
        g.add_column("rule")
        g.add_column("result")
        for c in gate["checks"]:
            fmt = _x if c["metric"] == "speedup" else _pct
            g.add_row(c["metric"], fmt(c["baseline"]), fmt(c["current"]), c["rule"],
                      "[red]REGRESSED[/]" if c["regressed"] else "[green]ok[/]")
        parts.append(g)
    return Group(*parts)


def plot_check(record: dict[str, Any], path: str | Path) -> Path:
    """PNG summary: latency bars (median, p90 whisker, predicted marker) and accuracy per corruption."""
    from prunekit.plots import accuracy_bars, figure, write_png

    lat, acc = record["latency"], record["accuracy"]
    fig, (ax1, ax2) = figure(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 3]})
    names = ["dense", "pruned"]
    colors = ["#888888", "#2a7ab9"]
    med = [lat[n]["median_ms"] for n in names]
    p90 = [lat[n]["p90_ms"] for n in names]
    ax1.bar(names, med, color=colors, yerr=[[0, 0], [p - m for p, m in zip(p90, med, strict=True)]],
            capsize=6, label="measured median (whisker: p90)")
    pred = lat.get("predicted")
    if pred:
        ax1.scatter(names, [pred["dense_ms"], pred["pruned_ms"]], marker="D", color="#d95f02", zorder=3,
                    label="predicted by profile")
    top = max([*p90, *((pred["dense_ms"], pred["pruned_ms"]) if pred else ())])
    ax1.set_ylim(0, 1.35 * top)
    ax1.set_ylabel("latency (ms)")
    ax1.set_title(f"{record['target']}: speedup {lat['speedup']:.2f}x ({lat.get('mode', 'interleaved')})")
    ax1.legend(fontsize=8)
    labels = ["clean", *acc["corruptions"], "mean corrupted"]
    series = {n: [acc[n]["clean"], *[acc[n]["per_corruption"][c] for c in acc["corruptions"]], acc[n]["corrupted"]]
              for n in names}
    sevs = ",".join(map(str, acc["severities"]))
    accuracy_bars(ax2, labels, series, colors,
                  title=f"exported models, {acc['n_images']} images, severities {sevs}")
    fig.suptitle(f"prunekit check: {record['model']} ({record['data']})")
    return write_png(fig, path, dpi=110)
