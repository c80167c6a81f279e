"""`prunekit measure`: time one ONNX file (optionally against a baseline file) on a target's runtime.

The piece of `check` that runs on a device: `compress --measure-cmd` calls it there (over ssh or
any transport the user's template names) and reads its JSON. Warm blocks by default, the same
schedule `check` uses; with `--baseline` the two files are timed side by side and the ratio is of
their medians.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.check.timing import schedule_words, target_runtime
from prunekit.errors import PrunekitError
from prunekit.latency.measure import TimingOptions
from prunekit.runtimes import Execution, ModelRef


def onnx_input_shape(path: Path, batch: int) -> tuple[int, int, int, int]:
    """(batch, C, H, W) of an ONNX classifier's first input; the batch from the profile if dynamic."""
    from prunekit.deploy.ort_model import input_hw, load_checked_onnx, static_batch

    model = load_checked_onnx(path)
    hw = input_hw(model)
    if hw is None:
        raise PrunekitError(f"{path}: the input has no fixed height and width", "export with a fixed input size")
    fixed = static_batch(model)
    if fixed is not None and fixed != batch:
        raise PrunekitError(f"{path} has batch size {fixed}, the target's profile {batch}",
                            "export at the profile's batch size, or measure on a profile of that batch size")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    channels = int(dims[1].dim_value) if len(dims) > 1 and dims[1].dim_value > 0 else 3
    return (batch, channels, int(hw[0]), int(hw[1]))


def measure_file(path: str | Path, target: str, baseline: str | Path | None = None,
                 timing: TimingOptions | None = None) -> dict[str, Any]:
    """Median / p90 of `path` on `target`'s runtime; with `baseline`, also the ratio path / baseline."""
    from prunekit.latency.profile import load_profile

    path = Path(path)
    profile = load_profile(target)
    rt = target_runtime(profile)
    ex = Execution.of_profile(profile, rt)
    opts = (timing or TimingOptions()).validate()
    shape = onnx_input_shape(path, profile.batch_size)
    out: dict[str, Any] = {"file": str(path), "target": profile.name, "runtime": rt.name, "version": rt.version(),
                           "how": rt.describe(ex), "input_shape": list(shape), **opts.to_dict()}
    if baseline is None:
        stats = rt.time_model(ModelRef(onnx=path), shape, ex, opts)
        out |= {"median_ms": stats.median_ms, "p90_ms": stats.p90_ms, "stats": stats.to_dict()}
        return out
    base = Path(baseline)
    base_shape = onnx_input_shape(base, profile.batch_size)
    pair = rt.time_pair(ModelRef(onnx=base), ModelRef(onnx=path), base_shape, ex, opts, pruned_input_shape=shape)
    out |= {"baseline": str(base), "how": f"{rt.describe(ex)}; {schedule_words(opts)}",
            "median_ms": pair.pruned.median_ms, "p90_ms": pair.pruned.p90_ms,
            "baseline_median_ms": pair.dense.median_ms, "ratio": pair.ratio, "ratio_spread": pair.spread()}
    return out
