"""`--target local`: ONNX Runtime on the CPU of *this* machine, profiled lazily on first use.

The shipped `cpu-ort` table was measured on one build machine; a user's CPU is another device.
`local` is a measured profile kept in the user profile folder under a key of CPU model, ONNX
Runtime version and thread count (`local-<key>.json`), so a laptop, a CI runner and a container
on another host each get their own. When a compress needs layers it lacks, or its graph has
op kinds the constant model was never calibrated on, they are measured here and then (a progress bar and a line say so), on a coarser channel grid than
`prunekit profile`'s default (step 16 up to 32 channels, 8 coarse points above) so a first run
stays within minutes; `prunekit profile --target local` refines it. (A compress toward a latency
budget then also times a few pruned copies of its model here once: `prunekit.select.calibrate`.)
Any other target is loaded as it is: its missing layers are an error whose message gives the
command to measure them.
"""

from __future__ import annotations

from rich.console import Console
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.latency.grid import make_grid
from prunekit.latency.layers import OP_GCONV, enumerate_layers
from prunekit.latency.schema import MissingSignatureError, Profile
from prunekit.latency.store import LOCAL, LOCAL_THREADS, load_profile, local_profile_path, read_profile_file

LAZY_GRID = {"step": 16, "fine_limit": 32, "divisions": 8}


def missing_layers(profile: Profile, model: nn.Module, input_shape: tuple[int, int, int, int]) -> list[str]:
    """Signatures `model` needs that `profile` lacks, has but not wide enough, or (grouped convs)
    holds on a grid sparser than the lazy grid makes now."""
    out: list[str] = []
    for spec in enumerate_layers(model, input_shape):
        if spec.signature in out:
            continue
        try:
            profile.layer_latency(spec.signature, spec.cin, spec.cout)
        except MissingSignatureError:
            out.append(spec.signature)
            continue
        if spec.op == OP_GCONV and sparse_grouped_grid(profile, spec.signature, spec.groups):
            out.append(spec.signature)
    return out


def sparse_grouped_grid(profile: Profile, signature: str, groups: int) -> bool:
    """Whether a grouped conv's stored grid lacks points the lazy grid has at its widest width.

    Profiles measured before 2026-12-03 dropped every grid point that was not a multiple of the
    group count (a 6-group conv kept two widths, and each pruned width cost the dense layer);
    measuring the missing points mends them in place (`profile_model` adds only missing cells).
    """
    entry = profile.table[signature]
    axes = [(entry.cin, profile.align_cin)] + ([(entry.cout, profile.align_cout)] if entry.cout else [])
    for widths, align in axes:
        want = make_grid(max(widths), pad=profile.pad, align=align, multiple_of=groups, **LAZY_GRID)
        if not set(want) <= set(widths):
            return True
    return False


def unpriced_ops(profile: Profile, model: nn.Module, input_shape: tuple[int, int, int, int]) -> list[str]:
    """Op kinds of `model`'s runtime graph the profile's constant model was never calibrated on
    (priced by a fallback until they are: e.g. a detector's RoiAlign in a classifier's profile)."""
    if profile.constant.method == "fixed":
        return []
    from prunekit.latency.predict import predict_latency

    return list(predict_latency(model, profile, input_shape).unpriced_ops)


def resolve_target(
    name: str,
    model: nn.Module,
    model_spec: str,
    input_shape: tuple[int, int, int, int],
    num_classes: int,
    console: Console | None = None,
    quiet: bool = False,
) -> Profile:
    """The profile of target `name`; for `local`, measured here first where `model` needs it."""
    if name != LOCAL:
        return load_profile(name)
    if input_shape[0] != 1:
        raise PrunekitError("the local target is profiled at batch size 1")
    path = local_profile_path()
    profile = read_profile_file(path) if path.is_file() else None
    missing = missing_layers(profile, model, input_shape) if profile is not None else ["(all)"]
    console = console or Console(stderr=True)
    hw = (int(input_shape[2]), int(input_shape[3]))
    unpriced = [] if (missing or profile is None) else unpriced_ops(profile, model, input_shape)
    if missing or profile is None or profile.constant.method == "fixed" or unpriced:
        from prunekit.latency.profiler import profile_model

        if not quiet:
            what = "every layer" if profile is None else f"{len(missing)} layer kind(s)"
            if not missing and unpriced:
                what = f"the graph ops it has that were never timed here ({', '.join(unpriced[:4])})"
            console.print(f"target local: measuring {what} of {model_spec} at {hw[0]}x{hw[1]} on this "
                          f"CPU with ONNX Runtime (first use; kept in {path})", highlight=False)
        profile_model(LOCAL, "onnxruntime", model, hw, num_classes=num_classes, threads=LOCAL_THREADS, out=path,
                      console=console, progress=not quiet, model_label=model_spec, **LAZY_GRID)
        profile = read_profile_file(path)
    return profile
