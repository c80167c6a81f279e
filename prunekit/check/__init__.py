"""`check`: the last pipeline stage. Is the exported model faster on the target, and still robust?

- `stage`: `check(run, target, ...)`, the composition below, writing RUN/check.json and check.png;
- `timing`: dense and pruned timed on the target's runtime (`prunekit.runtimes`), warm blocks by default;
- `accuracy`: the exported files, clean and corrupted (both on the same corrupted images);
- `gate`: the CI gate against an earlier check.json (speedup ratio, clean and corrupted accuracy);
- `render`: rich tables and check.png.

A regression is exit code 1 at the CLI; bad input (missing run, broken ONNX, foreign baseline,
absent runtime) is a PrunekitError, exit code 2.
"""

from prunekit.check.accuracy import evaluate_exported, n_eval_images
from prunekit.check.gate import (
    CHECK_FORMAT,
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_MAX_LATENCY_REGRESSION,
    READABLE_FORMATS,
    GateResult,
    check_baseline_compatible,
    compare,
    load_baseline,
    timing_mode,
)
from prunekit.check.render import check_table, plot_check
from prunekit.check.stage import (
    DEFAULT_REPEATS,
    DEFAULT_SESSIONS,
    DEFAULT_TIMING,
    DEFAULT_WARMUP,
    CheckResult,
    check,
)
from prunekit.check.timing import budget_of, measure_latency, predicted_latency

__all__ = [
    "CHECK_FORMAT",
    "DEFAULT_MAX_ACCURACY_DROP",
    "DEFAULT_MAX_LATENCY_REGRESSION",
    "DEFAULT_REPEATS",
    "DEFAULT_SESSIONS",
    "DEFAULT_TIMING",
    "DEFAULT_WARMUP",
    "READABLE_FORMATS",
    "CheckResult",
    "GateResult",
    "budget_of",
    "check",
    "check_baseline_compatible",
    "check_table",
    "compare",
    "evaluate_exported",
    "load_baseline",
    "measure_latency",
    "n_eval_images",
    "plot_check",
    "predicted_latency",
    "timing_mode",
]
