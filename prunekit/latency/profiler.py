"""`prunekit profile`: measure the latency table a model needs, on this machine.

For every layer signature the model uses, time the layer over a (cin, cout) grid on the chosen
runtime (looked up by name in `prunekit.runtimes`), and add it to the target's profile. The
profile is saved after every signature, so an interrupted run continues where it stopped when
rerun; signatures and grid points already in the profile are not measured again. The run ends
with the runtime's calibration of the constant model (ONNX Runtime: the dense model and an
unevenly pruned copy run under its profiler, every node the table does not cover is recorded)
and a dense end-to-end check: consecutive warm runs of the dense model, measured vs predicted.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
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
from prunekit.latency.measure import LatencyStats, TimingOptions
from prunekit.latency.schema import MeasuredProvenance, ModelRecord, Profile, SubnetCalibration, TableEntry
from prunekit.latency.store import (
    LOCAL,
    find_profile_path,
    local_profile_path,
    read_profile_file,
    save_profile,
    shipped_dir,
    user_dir,
)
from prunekit.runtimes.base import Execution, ModelRef, Runtime

DENSE_CHECK = TimingOptions(warmup=5, repeats=30)


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
    subnets: list[tuple[float, float]] = field(default_factory=list)

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
            "subnets": [list(p) for p in self.subnets],
        }


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
    runtime: Runtime,
    execution: Execution,
    batch_size: int,
    input_size: tuple[int, int],
    threads: int | None,
) -> Profile:
    """An empty measured profile for this machine, with the runtime's kernel alignment."""
    align_cin, align_cout, pad = runtime.alignment(execution)
    dev_model = runtime.device_model(execution.device)
    prov = MeasuredProvenance(
        device=execution.device,
        device_model=dev_model,
        runtime_version=runtime.version(),
        date=_dt.date.today().isoformat(),
        cores=os.cpu_count(),
    )
    return Profile(
        name=target,
        runtime=runtime.name,
        precision=execution.precision,  # type: ignore[arg-type]
        batch_size=batch_size,
        threads=threads,
        input_size=input_size,
        align_cin=align_cin,
        align_cout=align_cout,
        pad=pad,
        provenance=prov,
        description=f"measured with `prunekit profile` ({runtime.name}, {execution.precision}) on {dev_model}",
    )


def _same_machine(p: Profile, runtime: Runtime, device: str) -> bool:
    prov = p.provenance
    if prov.kind != "measured" or p.runtime != runtime.name:
        return False
    return prov.device_model == runtime.device_model(device) and prov.runtime_version == runtime.version()


def resolve_output(target: str, out: str | os.PathLike[str] | None) -> Path:
    """Where `profile` writes: --out, else the user profile dir."""
    if out is not None:
        return Path(out).expanduser()
    if target == LOCAL:
        return local_profile_path()
    return user_dir() / f"{target}.json"


def model_key(label: str, hw: tuple[int, int], num_classes: int | None) -> str:
    """The key of a model record: `resnet18@224x224`, `resnet18@32x32/c10`."""
    return f"{label}@{hw[0]}x{hw[1]}" + (f"/c{num_classes}" if num_classes not in (None, 1000) else "")


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

    `model_name_or_module` is any model spec `compress` takes (a torchvision name, `timm:<name>`,
    `package.module:factory`) or a module. Extends the profile at `out` (default: the user
    profile dir) incrementally: it is saved after every signature, and points already measured
    are skipped, so rerunning an interrupted call continues it. Returns what was measured.
    (`prunekit.select.calibrate` then times pruned copies of the model end to end and keeps them
    in its record: `prunekit profile --subnets`.)
    """
    from prunekit.progress import progress_bar
    from prunekit.runtimes import get_runtime

    rt = get_runtime(runtime)
    rt.require()
    console = console or Console(stderr=True)
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise PrunekitError(f"unknown device {device!r}", "choose auto, cpu or cuda")
    device = rt.resolve_device(device)
    precision = rt.check_precision(precision or rt.default_precision)
    hw = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    if isinstance(model_name_or_module, str):
        from prunekit.tasks import resolve_task

        label = model_label or model_name_or_module
        # untrained: latency ignores weights; a detector's name builds its network (prunekit.tasks)
        model = resolve_task(None, model_name_or_module).build_model(model_name_or_module, num_classes).eval()
    else:
        label = model_label or type(model_name_or_module).__name__
        model = model_name_or_module.eval()
    path = resolve_output(target, out)

    # ---- load / seed / create
    seeded = None
    if path.is_file():
        prof = read_profile_file(path)
        if prof.runtime != rt.name:
            raise PrunekitError(
                f"profile {path} is for runtime {prof.runtime}, not {rt.name}",
                "use another --target name or --out file",
            )
        if threads is not None and prof.threads not in (None, threads):
            raise PrunekitError(
                f"profile {path} was measured with {prof.threads} threads, not {threads}",
                "a profile has one thread count: use another --target name",
            )
        if prof.precision != precision:
            raise PrunekitError(
                f"profile {path} is for precision {prof.precision}, not {precision}",
                "a profile has one precision: use another --target name",
            )
    else:
        prof = None
        shipped = find_profile_path(target)
        if shipped is not None and shipped.parent == shipped_dir():
            cand = read_profile_file(shipped)
            if _same_machine(cand, rt, device) and threads in (None, cand.threads) and cand.precision == precision:
                prof, seeded = cand, str(shipped)
        if prof is None:
            prof = new_profile(target, rt, Execution(threads or 1, precision, device), batch_size, hw, threads)
    if prof.batch_size != batch_size:
        raise PrunekitError(
            f"profile {prof.name} is for batch size {prof.batch_size}, not {batch_size}",
            "use another --target name for another batch size",
        )
    input_shape = (prof.batch_size, 3, hw[0], hw[1])

    run = ProfileRun(profile=prof, path=path, model=label, seeded_from=seeded)
    if prof.threads is None and rt.uses_threads:
        cands = [t for t in (1, 2, 4) if t <= (os.cpu_count() or 1)] or [1]
        chosen = rt.choose_threads(model, input_shape, cands)
        if chosen is not None:
            best, choice = chosen
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
    execution = Execution(prof.threads or 1, prof.precision, device)

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
    total = sum(len(c) for _, c in plan)
    console.print(
        f"{label}: {len(by_sig)} layer signatures, {len(plan)} to measure ({total} grid points) -> {path}"
    )

    # ---- measure, saving after every signature
    with progress_bar(console, disable=not progress) as bar:
        task = bar.add_task("profiling", total=max(total, 1), info="")
        for sig, cells in plan:
            bar.update(task, description="profiling", info=sig)
            info = parse_signature(sig)
            got = rt.measure_cells(info, cells, execution, prof.batch_size, lambda n: bar.advance(task, n))
            old = prof.table.get(sig)
            merged = (old.cells() if old else {}) | got
            prof.table[sig] = TableEntry.from_cells(
                merged, info["op"] == OP_DWCONV, "float16" if prof.precision == "fp16" else "float32"
            )
            run.measured.append(sig)
            run.cells_measured += len(cells)
            save_profile(prof, path)
            prof = read_profile_file(path)  # pick up what a concurrent writer added
        bar.update(task, completed=max(total, 1), info="done")

    # ---- calibration + dense check
    classes = num_classes if isinstance(model_name_or_module, str) else _classes(layers)
    record = ModelRecord(
        model=label,
        arch=arch_key(layers),
        input_shape=list(input_shape),
        num_classes=classes,
        signatures=len(by_sig),
    )
    if calibrate:
        prof = rt.calibrate(prof, model, input_shape, console.print)
    stats, run.dense_predicted_ms = dense_check(prof, model, input_shape, rt, execution)
    run.dense_measured_ms = round(stats.median_ms, 4)
    record.dense_measured_ms = run.dense_measured_ms
    record.dense_measured_fast_ms = round(stats.fast_ms, 4)
    record.dense_predicted_ms = run.dense_predicted_ms
    key = model_key(label, hw, classes)
    old = prof.models.get(key)
    if old is not None and old.arch == record.arch and old.subnets is not None:
        record.subnets = old.subnets  # kept; unused once stale (subnets.find_calibration)
    prof.models[key] = record
    save_profile(prof, path)
    run.profile = read_profile_file(path)
    return run


def save_calibration(path: Path, model: nn.Module, input_shape: tuple[int, int, int, int], key: str,
                     calibration: SubnetCalibration) -> Profile:
    """Keep `calibration` (latency.subnets) in the record `key` of the profile at `path`."""
    layers = enumerate_layers(model, input_shape)
    prof = read_profile_file(path)  # what a concurrent writer added meanwhile
    if key not in prof.models or prof.models[key].arch != arch_key(layers):
        prof.models[key] = ModelRecord(model=key.split("@")[0], arch=arch_key(layers), input_shape=list(input_shape),
                                       num_classes=_classes(layers), signatures=len({s.signature for s in layers}))
    prof.models[key].subnets = calibration
    save_profile(prof, path)
    return read_profile_file(path)


def _classes(layers: list[LayerSpec]) -> int | None:
    heads = [s for s in layers if s.op == OP_LINEAR]
    return heads[-1].cout if heads else None


def dense_check(
    prof: Profile, model: nn.Module, input_shape: tuple[int, int, int, int], runtime: Runtime, execution: Execution
) -> tuple[LatencyStats, float | None]:
    """Measured (consecutive warm runs) vs predicted end-to-end latency of the dense model."""
    from prunekit.latency.predict import predict_latency

    try:
        pred = predict_latency(model, prof, input_shape).total_ms
    except PrunekitError:
        pred = None
    stats = runtime.time_model(ModelRef(module=model), input_shape, execution, DENSE_CHECK)
    return stats, (round(pred, 4) if pred is not None else None)
