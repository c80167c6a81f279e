"""RUN/build_engine.sh: the TensorRT build of a run as `trtexec` commands.

TensorRT engines only run on the GPU model and TensorRT version that built them, so the export
writes the same build as the TensorRT Python API does (`prunekit.runtimes.tensorrt`) as a shell
script a user runs on the device itself (a Jetson has trtexec but maybe not this Python).
"""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

from prunekit.atomic import atomic_path
from prunekit.runtimes.tensorrt import EngineOptions

SCRIPT_NAME = "build_engine.sh"
TRTEXEC_JETSON = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs trtexec (not on PATH)


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(d)) for d in shape)


def trtexec_args(onnx_name: str, engine_name: str, options: EngineOptions, input_chw: tuple[int, int, int],
                 input_name: str = "input") -> list[str]:
    """The trtexec arguments (after the program name) for one engine."""
    args = [f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    if options.precision == "fp16":
        args.append("--fp16")
    elif options.precision == "int8":
        args += ["--int8", "--fp16"]
    args.append(f"--memPoolSize=workspace:{options.workspace_mb}M")
    if options.dynamic_batch:
        lo, opt, hi = options.shapes(input_chw)
        args += [f"--minShapes={input_name}:{_dims(lo)}", f"--optShapes={input_name}:{_dims(opt)}",
                 f"--maxShapes={input_name}:{_dims(hi)}"]
    args.append(f"--timingCacheFile={options.timing_cache}")
    if options.dla_core is not None:
        args += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    return args


def build_script(options: EngineOptions, input_chw: tuple[int, int, int], models: tuple[str, ...] = ("pruned", "dense"),
                 input_name: str = "input") -> str:
    """The text of build_engine.sh: one trtexec call per model, run from the run folder."""
    prec = options.precision
    lines = [
        "#!/usr/bin/env sh",
        "# Build TensorRT engines for this run ON THE TARGET DEVICE (engines are tied to the GPU model",
        "# and TensorRT version that build them). Written by `prunekit export`; "
        f"target: {options.target or 'none given'}, precision {prec}, "
        + (f"batch {options.batch} (dynamic 1..{options.max_batch})" if options.dynamic_batch else f"static batch {options.batch}")
        + ".",
        "# Set TRTEXEC to trtexec's path if it is not on PATH.",
        "set -eu",
        'cd "$(dirname "$0")"',
        f'if [ -z "${{TRTEXEC:-}}" ]; then if command -v trtexec >/dev/null 2>&1; then TRTEXEC=trtexec; '
        f"else TRTEXEC={TRTEXEC_JETSON}; fi; fi",
    ]
    if prec == "int8":
        lines += [
            "# INT8: an ONNX with Q/DQ nodes carries its own scales. A plain ONNX needs <name>.calib,",
            "# written by `prunekit export --format engine --int8` on a machine with TensorRT; without",
            "# it trtexec uses placeholder scales, which are valid for timing only, not for accuracy.",
        ]
    if options.jetson and options.dla_core is None:
        lines += [
            "# Jetson with DLA (AGX Orin, Xavier): add --useDLACore=0 --allowGPUFallback to run on a DLA core",
            "# (or re-export with --dla-core 0).",
        ]
    for name in models:
        args = trtexec_args(f"{name}.onnx", f"{name}.engine", options, input_chw, input_name)
        cmd = '"$TRTEXEC" ' + " ".join(shlex.quote(a) for a in args)
        if prec == "int8":
            lines.append(f'CALIB=""; if [ -f {name}.calib ]; then CALIB="--calib={name}.calib"; '
                         f'else echo "warning: no {name}.calib: INT8 scales are placeholders (timing only)" >&2; fi')
            cmd += " $CALIB"
        lines.append(cmd)
    return "\n".join(lines) + "\n"


def write_build_script(run_dir: str | Path, options: EngineOptions, input_chw: tuple[int, int, int],
                       models: tuple[str, ...] = ("pruned", "dense")) -> Path:
    """Atomically write RUN/build_engine.sh (executable)."""
    path = Path(run_dir) / SCRIPT_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(build_script(options, input_chw, models), encoding="utf-8")
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IRUSR | stat.S_IRGRP | stat.S_IXGRP
                  | stat.S_IROTH | stat.S_IXOTH)
    return path
