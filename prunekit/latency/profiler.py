"""`prunekit profile`: measure the latency table a model needs, on this machine.

For every layer signature the model uses, time the layer over a (cin, cout) grid (warm-up,
repeats, robust average) on the chosen runtime, and add it to the target's profile. The
profile is saved after every signature, so an interrupted run continues where it stopped
when rerun; signatures and grid points already in the profile are not measured again.
For ONNX Runtime the run ends with a calibration: the dense model (and an unevenly pruned
copy) run under ONNX Runtime's profiler, and every node the table does not cover (pools,
element-wise ops, layout reorders) is recorded to fit the profile's constant model.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.latency.grid import make_grid
from prunekit.latency.layers import (
    OP_DWCONV,
    OP_GCONV,
    OP_LINEAR,
    LayerSpec,
    arch_key,
    enumerate_layers,
    parse_signature,
)
from prunekit.latency.profile import (
    MeasuredProvenance,
    ModelRecord,
    Profile,
    TableEntry,
    find_profile_path,
    read_profile_file,
    save_profile,
    shipped_dir,
    user_dir,
)

RUNTIMES = ("onnxruntime", "torch", "tensorrt")


@dataclass
class GridOptions:
    """How finely to sample channel widths (see prunekit.latency.grid.make_grid)."""

    step: int = 8
    fine_limit: int = 64
    divisions: int = 16


@dataclass
class ProfileRun:
    """What one `profile_model` call did."""

    profile: Profile
    path: Path
    model: str
    signatures: list[str] = field(default_factory=list)
    measured: list[str] = field(default_factory=list)
    cells_measured: int = 0
    threads: int = 1
    threads_choice: dict[str, float] = field(default_factory=dict)
    dense_measured_ms: float | None = None
    dense_predicted_ms: float | None = None
    seeded_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.profile.name,
            "runtime": self.profile.runtime,
            "path": str(self.path),
            "model": self.model,
            "signatures": len(self.signatures),
            "measured_signatures": self.measured,
            "cells_measured": self.cells_measured,
            "threads": self.threads,
            "threads_choice": self.threads_choice,
            "dense_measured_ms": self.dense_measured_ms,
            "dense_predicted_ms": self.dense_predicted_ms,
            "seeded_from": self.seeded_from,
        }


# ------------------------------------------------------------------ machine facts
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform fallback elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def runtime_version(runtime: str) -> str:
    if runtime == "onnxruntime":
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"
    if runtime == "tensorrt":
        import tensorrt as trt

        return f"tensorrt {trt.__version__}"
    return f"torch {torch.__version__}" + (f" cuda {torch.version.cuda}" if torch.cuda.is_available() else "")


def build_torchvision(name: str, num_classes: int = 1000) -> nn.Module:
    """An untrained model by name (torchvision, timm:<name> or package.module:factory), in eval mode:
    latency does not depend on the weights."""
    from prunekit.models import build_model

    return build_model(name, num_classes).eval()


# ------------------------------------------------------------------ runtimes
def _measure_cells_fn(
    runtime: str, profile: Profile, device: str
) -> Callable[..., dict[tuple[int, int], float]]:
    if runtime == "onnxruntime":
        from prunekit.latency.ort_layers import measure_cells

        def ort_fn(
            info: dict[str, Any], cells: list[tuple[int, int]], on_chunk: Callable[[int], None]
        ) -> Any:
            return measure_cells(info, cells, profile.batch_size, profile.threads or 1, on_chunk=on_chunk)

        return ort_fn
    if runtime == "torch":
        from prunekit.latency.torch_layers import measure_cells_torch

        def torch_fn(
            info: dict[str, Any], cells: list[tuple[int, int]], on_chunk: Callable[[int], None]
        ) -> Any:
            return measure_cells_torch(
                info, cells, profile.batch_size, device, profile.precision == "fp16", on_chunk=on_chunk
            )

        return torch_fn
    from prunekit.latency.torch_layers import measure_cells_tensorrt

    def trt_fn(info: dict[str, Any], cells: list[tuple[int, int]], on_chunk: Callable[[int], None]) -> Any:
        return measure_cells_tensorrt(
            info, cells, profile.batch_size, profile.precision == "fp16", on_chunk=on_chunk
        )

    return trt_fn


def choose_threads(
    model: nn.Module, input_shape: tuple[int, int, int, int], candidates: list[int], repeats: int = 40
) -> tuple[int, dict[str, float]]:
    """The fastest ONNX Runtime thread count for the dense model (interleaved wall-clock timing).

    Compares each count's fastest run: on a machine shared with other work the median mostly
    measures how often a run was interrupted (worse the more threads it needs), while the
    fastest run shows what the thread count does on a quiet machine.
    """
    import time

    from prunekit.latency.measure import input_feed, model_to_onnx, ort_session

    data = model_to_onnx(model, input_shape)
    sessions = {t: ort_session(data, t) for t in candidates}
    feeds = {t: input_feed(s, input_shape) for t, s in sessions.items()}
    times: dict[int, list[float]] = {t: [] for t in candidates}
    for t, s in sessions.items():
        for _ in range(3):
            s.run(None, feeds[t])
    for _ in range(repeats):
        for t, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feeds[t])
            times[t].append((time.perf_counter() - t0) * 1e3)
    med = {t: min(v) for t, v in times.items()}
    best = min(med, key=lambda t: med[t])
    return best, {str(t): round(v, 4) for t, v in med.items()}


# ------------------------------------------------------------------ grid planning
def plan_signature(
    layers: list[LayerSpec], profile: Profile, opts: GridOptions
) -> tuple[list[int], list[int] | None]:
    """Grid axes covering every layer of one signature (dense widths included)."""
    op = layers[0].op
    max_in = max(s.cin for s in layers)
    max_out = max(s.cout for s in layers)
    lin = op == OP_LINEAR
    mult = layers[0].groups if op == OP_GCONV else 1
    kw = {
        "step": opts.step,
        "pad": profile.pad,
        "fine_limit": opts.fine_limit,
        "divisions": opts.divisions,
        "multiple_of": mult,
    }
    cin = set(make_grid(max_in, align=1 if lin else profile.align_cin, **kw))
    cin |= {s.cin for s in layers}
    if op == OP_DWCONV:
        return sorted(cin), None
    cout = set(make_grid(max_out, align=1 if lin else profile.align_cout, **kw)) | {s.cout for s in layers}
    if all(s.cin == layers[0].cin for s in layers) and layers[0].cin < opts.step:
        cin = {layers[0].cin}  # the image input (3 channels) is never pruned
    return sorted(cin), sorted(cout)


def missing_cells(entry: TableEntry | None, cin: list[int], cout: list[int] | None) -> list[tuple[int, int]]:
    """Grid points of the union of `entry`'s grid and the wanted one that are not measured yet."""
    have = entry.cells() if entry is not None else {}
    if cout is None:
        axis = sorted(set(cin) | ({a for a, _ in have} if have else set()))
        return [(c, c) for c in axis if (c, c) not in have]
    all_in = sorted(set(cin) | {a for a, _ in have})
    all_out = sorted(set(cout) | {b for _, b in have})
    return [(a, b) for a in all_in for b in all_out if (a, b) not in have]


# ------------------------------------------------------------------ main entry
def new_profile(
    target: str,
    runtime: str,
    threads: int | None,
    batch_size: int,
    precision: str,
    input_size: tuple[int, int],
    device: str,
) -> Profile:
    """An empty measured profile for this machine."""
    align_cin = align_cout = 1
    pad = 8
    if runtime == "onnxruntime":
        from prunekit.latency.ort_layers import detect_alignment

        align_cin, align_cout, pad = detect_alignment(threads or 1)
    elif runtime == "tensorrt" or (runtime == "torch" and device.startswith("cuda")):
        align_cin, align_cout, pad = 8, 8, 8 if precision == "fp16" else 4
    dev_model = cpu_model() if device == "cpu" else torch.cuda.get_device_name(0)
    prov = MeasuredProvenance(
        device=device,
        device_model=dev_model,
        runtime_version=runtime_version(runtime),
        date=_dt.date.today().isoformat(),
        cores=os.cpu_count(),
    )
    return Profile(
        name=target,
        runtime=runtime,
        precision=precision,
        batch_size=batch_size,  # type: ignore[arg-type]
        threads=threads,
        input_size=input_size,
        align_cin=align_cin,
        align_cout=align_cout,
        pad=pad,
        provenance=prov,
        description=f"measured with `prunekit profile` ({runtime}, {precision}) on {dev_model}",
    )


def _same_machine(p: Profile, runtime: str, device: str) -> bool:
    prov = p.provenance
    if prov.kind != "measured" or p.runtime != runtime:
        return False
    dev_model = (
        cpu_model()
        if device == "cpu"
        else (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
    )
    return prov.device_model == dev_model and prov.runtime_version == runtime_version(runtime)


def _resolve_device(runtime: str, device: str) -> str:
    """cpu or cuda:0 for `runtime`; a GPU runtime without a GPU is a MissingDependencyError."""
    from prunekit.latency.measure import require_cuda

    if device not in ("auto", "cpu", "cuda"):
        raise PrunekitError(f"unknown device {device!r}", "choose auto, cpu or cuda")
    if runtime == "onnxruntime":
        if device == "cuda":
            raise PrunekitError(
                "the onnxruntime runtime is profiled on the CPU", "drop --device or use --runtime torch"
            )
        return "cpu"
    if runtime == "tensorrt" or device == "cuda":
        require_cuda()
        return "cuda:0"
    if device == "auto" and torch.cuda.is_available():
        return "cuda:0"
    return "cpu"


def resolve_output(target: str, out: str | os.PathLike[str] | None) -> Path:
    """Where `profile` writes: --out, else the user profile dir."""
    if out is not None:
        return Path(out).expanduser()
    return user_dir() / f"{target}.json"


def profile_model(
    target: str,
    runtime: str,
    model_name_or_module: str | nn.Module,
    input_size: int | tuple[int, int] = 224,
    step: int = 8,
    *,
    num_classes: int = 1000,
    batch_size: int = 1,
    threads: int | None = None,
    precision: str | None = None,
    out: str | os.PathLike[str] | None = None,
    fine_limit: int = 64,
    divisions: int = 16,
    calibrate: bool = True,
    console: Console | None = None,
    progress: bool = True,
    model_label: str | None = None,
    device: str = "auto",
) -> ProfileRun:
    """Measure every layer signature `model` needs on `runtime` and add it to profile `target`.

    Extends the profile at `out` (default: the user profile dir) incrementally: it is saved
    after every signature, and points already measured are skipped, so rerunning an
    interrupted call continues it. Returns what was measured.
    """
    from prunekit.latency.measure import require_runtime

    if runtime not in RUNTIMES:
        raise PrunekitError(f"unknown runtime {runtime!r}", f"choose one of: {', '.join(RUNTIMES)}")
    require_runtime(runtime)
    console = console or Console(stderr=True)
    device = _resolve_device(runtime, device)
    precision = precision or ("fp16" if runtime == "tensorrt" else "fp32")
    if runtime == "onnxruntime" and precision != "fp32":
        raise PrunekitError("the onnxruntime CPU runtime is profiled in fp32", "drop --precision")
    hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if isinstance(model_name_or_module, str):
        label = model_label or model_name_or_module
        model = build_torchvision(model_name_or_module, num_classes)
    else:
        label = model_label or type(model_name_or_module).__name__
        model = model_name_or_module.eval()
    path = resolve_output(target, out)

    # ---- load / seed / create
    seeded = None
    if path.is_file():
        prof = read_profile_file(path)
        if prof.runtime != runtime:
            raise PrunekitError(
                f"profile {path} is for runtime {prof.runtime}, not {runtime}",
                "use another --target name or --out file",
            )
        if threads is not None and prof.threads not in (None, threads):
            raise PrunekitError(
                f"profile {path} was measured with {prof.threads} threads, not {threads}",
                "a profile has one thread count: use another --target name",
            )
    else:
        prof = None
        shipped = find_profile_path(target)
        if shipped is not None and shipped.parent == shipped_dir():
            cand = read_profile_file(shipped)
            if _same_machine(cand, runtime, device) and threads in (None, cand.threads):
                prof, seeded = cand, str(shipped)
        if prof is None:
            prof = new_profile(target, runtime, threads, batch_size, precision, hw, device)
    if prof.batch_size != batch_size:
        raise PrunekitError(
            f"profile {prof.name} is for batch size {prof.batch_size}, not {batch_size}",
            "use another --target name for another batch size",
        )
    input_shape = (prof.batch_size, 3, hw[0], hw[1])

    run = ProfileRun(profile=prof, path=path, model=label, seeded_from=seeded)
    if runtime == "onnxruntime" and prof.threads is None:
        cands = [t for t in (1, 2, 4) if t <= (os.cpu_count() or 1)] or [1]
        best, choice = choose_threads(model, input_shape, cands)
        prof.threads = best
        if prof.provenance.kind == "measured":
            prof.provenance.threads_choice = choice
        console.print(
            f"threads: measured {choice} ms for the dense {label}; using {best} "
            f"(the fastest here) — recorded in the profile"
        )
    run.threads = prof.threads or 1
    if prof.provenance.kind == "measured":
        run.threads_choice = dict(prof.provenance.threads_choice)

    # ---- plan
    layers = enumerate_layers(model, input_shape)
    by_sig: dict[str, list[LayerSpec]] = {}
    for spec in layers:
        by_sig.setdefault(spec.signature, []).append(spec)
    run.signatures = list(by_sig)
    opts = GridOptions(step=step, fine_limit=fine_limit, divisions=divisions)
    plan: list[tuple[str, list[tuple[int, int]]]] = []
    for sig, specs in by_sig.items():
        cin, cout = plan_signature(specs, prof, opts)
        cells = missing_cells(prof.table.get(sig), cin, cout)
        if cells:
            plan.append((sig, cells))
    measure = _measure_cells_fn(runtime, prof, device)
    total = sum(len(c) for _, c in plan)
    console.print(
        f"{label}: {len(by_sig)} layer signatures, {len(plan)} to measure ({total} grid points) -> {path}"
    )

    # ---- measure, saving after every signature
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task("profiling", total=max(total, 1))
        for sig, cells in plan:
            bar.update(task, description=f"{sig}")
            info = parse_signature(sig)
            got = measure(info, cells, lambda n: bar.advance(task, n))
            old = prof.table.get(sig)
            merged = (old.cells() if old else {}) | got
            prof.table[sig] = TableEntry.from_cells(
                merged, info["op"] == OP_DWCONV, "float16" if prof.precision == "fp16" else "float32"
            )
            run.measured.append(sig)
            run.cells_measured += len(cells)
            save_profile(prof, path)
            prof = read_profile_file(path)  # pick up what a concurrent writer added
            measure = _measure_cells_fn(runtime, prof, device)
        bar.update(task, completed=max(total, 1), description="done")

    # ---- calibration + dense check
    key = f"{label}@{hw[0]}x{hw[1]}" + (f"/c{num_classes}" if num_classes != 1000 else "")
    record = ModelRecord(
        model=label,
        arch=arch_key(layers),
        input_shape=list(input_shape),
        num_classes=num_classes if isinstance(model_name_or_module, str) else None,
        signatures=len(by_sig),
    )
    if runtime == "onnxruntime" and calibrate:
        from prunekit.latency.ort_graph import calibrate_constant

        console.print("calibrating the constant model (ONNX Runtime profiler on the dense and a pruned copy)")
        prof = calibrate_constant(prof, model, input_shape, label)
    stats, run.dense_predicted_ms = _dense_check(prof, model, input_shape, runtime, device)
    run.dense_measured_ms = round(stats.median_ms, 4)
    record.dense_measured_ms = run.dense_measured_ms
    record.dense_measured_fast_ms = round(stats.fast_ms, 4)
    record.dense_predicted_ms = run.dense_predicted_ms
    prof.models[key] = record
    save_profile(prof, path)
    run.profile = read_profile_file(path)
    return run


def _dense_check(
    prof: Profile, model: nn.Module, input_shape: tuple[int, int, int, int], runtime: str, device: str
) -> tuple[Any, float | None]:
    """Measured vs predicted end-to-end latency of the dense model (the profile's own check)."""
    from prunekit.latency.measure import measure_onnx, measure_tensorrt, measure_torch, model_to_onnx
    from prunekit.latency.predict import predict_latency

    try:
        pred = predict_latency(model, prof, input_shape).total_ms
    except PrunekitError:
        pred = None
    if runtime == "onnxruntime":
        stats = measure_onnx(model_to_onnx(model, input_shape), prof.threads or 1, input_shape, 5, 30)
    elif runtime == "torch":
        stats = measure_torch(model, input_shape, device, half=prof.precision == "fp16")
    else:
        stats = measure_tensorrt(model_to_onnx(model, input_shape), fp16=prof.precision == "fp16")
    return stats, (round(pred, 4) if pred is not None else None)
