"""The one PNG writer: matplotlib figures (Agg, no display) written atomically, and the accuracy bars
that `check` (check.png) and `eval` (--out) both draw."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunekit.atomic import write_bytes


def figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """`plt.subplots(*args, **kwargs)` on the Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def write_png(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Lay out, render and atomically write `fig` as a PNG; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return Path(path)


def accuracy_bars(ax: Any, labels: Sequence[str], series: dict[str, Sequence[float]],
                  colors: Sequence[str] | None = None, title: str = "") -> None:
    """Grouped bars of top-1 accuracy (fractions, drawn as %) per label, one bar per series (model)."""
    names = list(series)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(labels))]
        kw = {"color": colors[i % len(colors)]} if colors else {}
        ax.bar(xs, [100 * v for v in series[name]], width=width, label=name, **kw)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([lab.replace("_", " ") for lab in labels], rotation=45, ha="right")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    if len(names) > 1:
        ax.legend()
