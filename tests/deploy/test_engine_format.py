"""Export format `engine` (TensorRT): the trtexec script, the missing-TensorRT error, the builder's API calls, real builds."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest
import torch

from prunekit.deploy.trtexec import build_script, write_build_script
from prunekit.runtimes.tensorrt import EngineOptions

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()

JETSON = SimpleNamespace(name="jetson-orin", runtime="tensorrt", precision="fp16", batch_size=1,
                         provenance=SimpleNamespace(device_model="NVIDIA Jetson AGX Orin 64GB"))


def _sh_syntax_ok(text: str, tmp_path) -> None:
    path = tmp_path / "s.sh"
    path.write_text(text)
    subprocess.run(["sh", "-n", str(path)], check=True)


def test_static_fp16_script(tmp_path):
    opts = EngineOptions.for_target(None, dynamic_batch=False, batch=1, workspace_mb=2048)
    text = build_script(opts, (3, 224, 224))
    assert text.startswith("#!/usr/bin/env sh\n")
    lines = [ln for ln in text.splitlines() if ln.startswith('"$TRTEXEC"')]
    assert lines == [
        '"$TRTEXEC" --onnx=pruned.onnx --saveEngine=pruned.engine --fp16 --memPoolSize=workspace:2048M '
        "--timingCacheFile=timing.cache",
        '"$TRTEXEC" --onnx=dense.onnx --saveEngine=dense.engine --fp16 --memPoolSize=workspace:2048M '
        "--timingCacheFile=timing.cache",
    ]
    assert "Shapes" not in text and "--int8" not in text and "DLA" not in text
    _sh_syntax_ok(text, tmp_path)


def test_fp32_when_asked():
    opts = EngineOptions.for_target(JETSON, dynamic_batch=False, batch=1, fp16=False)
    assert opts.precision == "fp32"
    assert "--fp16" not in build_script(opts, (3, 32, 32))


def test_jetson_dynamic_int8_dla_script(tmp_path):
    opts = EngineOptions.for_target(JETSON, dynamic_batch=True, batch=4, int8=True, dla_core=0, max_batch=16)
    assert opts.jetson and opts.precision == "int8"
    text = build_script(opts, (3, 224, 224))
    cmd = next(ln for ln in text.splitlines() if ln.startswith('"$TRTEXEC" --onnx=pruned.onnx'))
    for flag in ("--int8", "--fp16", "--minShapes=input:1x3x224x224", "--optShapes=input:4x3x224x224",
                 "--maxShapes=input:16x3x224x224", "--useDLACore=0", "--allowGPUFallback",
                 "--timingCacheFile=timing.cache", "$CALIB"):
        assert flag in cmd
    assert "pruned.calib" in text and "placeholder" in text
    _sh_syntax_ok(text, tmp_path)


def test_jetson_without_dla_core_mentions_it():
    opts = EngineOptions.for_target(JETSON, dynamic_batch=False, batch=1)
    text = build_script(opts, (3, 224, 224))
    assert "--useDLACore=0 --allowGPUFallback" in text  # as a commented hint
    cmds = [ln for ln in text.splitlines() if ln.startswith('"$TRTEXEC"')]
    assert all("DLA" not in c for c in cmds)


def test_script_runs_trtexec_from_the_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    fake = tmp_path / "trtexec"
    fake.write_text('#!/bin/sh\necho "$PWD $*" >> "$LOG"\n')
    fake.chmod(0o755)
    opts = EngineOptions.for_target(None, dynamic_batch=False, batch=1)
    script = write_build_script(run, opts, (3, 32, 32))
    assert os.access(script, os.X_OK)
    log = tmp_path / "log"
    env = {**os.environ, "TRTEXEC": str(fake), "LOG": str(log)}
    subprocess.run([str(script)], check=True, env=env, cwd=tmp_path)
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    assert calls[0].startswith(f"{run} --onnx=pruned.onnx --saveEngine=pruned.engine --fp16")
    assert calls[1].startswith(f"{run} --onnx=dense.onnx --saveEngine=dense.engine")


def test_bad_engine_options():
    from prunekit.errors import PrunekitError

    with pytest.raises(PrunekitError, match="workspace"):
        EngineOptions.for_target(None, dynamic_batch=False, batch=1, workspace_mb=0)
    with pytest.raises(PrunekitError, match="dla-core"):
        EngineOptions.for_target(None, dynamic_batch=False, batch=1, dla_core=-1)
    with pytest.raises(PrunekitError, match="FP16 or INT8 only"):
        EngineOptions.for_target(None, dynamic_batch=False, batch=1, dla_core=0, fp16=False)
    with pytest.raises(PrunekitError, match="max batch"):
        EngineOptions.for_target(None, dynamic_batch=True, batch=8, max_batch=4)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and a GPU are present: the real build is tested instead")
def test_engine_without_tensorrt_is_a_clean_error_and_writes_the_script(cli, trained_run):
    run = trained_run("resnet18")
    (run / "build_engine.sh").unlink(missing_ok=True)
    result = cli(["export", str(run), "--format", "engine", "--workspace-mb", "512", "--dla-core", "0"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error:") and ("TensorRT is not installed" in line or "no CUDA GPU" in line)
    assert "build_engine.sh" in line
    text = (run / "build_engine.sh").read_text()
    assert "--memPoolSize=workspace:512M" in text and "--useDLACore=0 --allowGPUFallback" in text
    assert not list(run.glob("*.engine"))


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT and a CUDA GPU (not on this machine)")
def test_real_engine_build(trained_run):
    from prunekit.deploy.formats.engine import build_engine

    run = trained_run("resnet18")
    res = build_engine(run, fp16=True, workspace_mb=512)
    for name in ("pruned", "dense"):
        engine = run / f"{name}.engine"
        assert engine.stat().st_size > 0
        side = json.loads((run / f"{name}.engine.json").read_text())
        assert side["precision"] == "fp16" and side["gpu"] == torch.cuda.get_device_name(0)
        assert side["input"]["opt"][1:] == [3, 32, 32]
    assert (run / "timing.cache").stat().st_size > 0
    assert shutil.which("sh") and res.build_script.endswith("build_engine.sh")


class _RecordingTensorRT:
    """A stand-in for the `tensorrt` module that records the calls build_one makes.

    It checks prunekit's side of the TensorRT 10 API contract (which calls, in which order, with
    which values) on machines without TensorRT; the real build is test_real_engine_build.
    """

    __version__ = "10.9.0"

    def __init__(self, parse_ok: bool = True, dla_cores: int = 2) -> None:
        from types import SimpleNamespace as NS

        rec = self.calls = []
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: rec.append(("logger", level))})
        self.MemoryPoolType = NS(WORKSPACE="WORKSPACE")
        self.BuilderFlag = NS(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
        self.DeviceType = NS(DLA="DLA", GPU="GPU")
        self.LayerType = NS(QUANTIZE="Q", DEQUANTIZE="DQ", CONVOLUTION="CONV")
        self.NetworkDefinitionCreationFlag = NS(EXPLICIT_BATCH=0)

        class Config:
            def set_memory_pool_limit(self, pool, size):
                rec.append(("pool", pool, size))

            def set_flag(self, flag):
                rec.append(("flag", flag))

            def add_optimization_profile(self, p):
                rec.append(("profile", p.shapes))

            def create_timing_cache(self, data):
                rec.append(("cache_in", bytes(data)))
                return NS(serialize=lambda: b"CACHE")

            def set_timing_cache(self, cache, ignore_mismatch):
                rec.append(("cache_set", ignore_mismatch))

            def get_timing_cache(self):
                return NS(serialize=lambda: b"CACHE")

            def __setattr__(self, key, value):
                rec.append(("config", key, value))
                object.__setattr__(self, key, value)

        class Profile:
            def __init__(self):
                self.shapes = None

            def set_shape(self, name, lo, opt, hi):
                self.shapes = (name, tuple(lo), tuple(opt), tuple(hi))

        network = NS(
            get_input=lambda i: NS(name="input", shape=(-1, 3, 32, 32)),
            num_layers=1, get_layer=lambda i: NS(type="CONV"),
            num_outputs=1, get_output=lambda i: NS(name="logits", shape=(-1, 10)),
        )

        class Builder:
            num_DLA_cores = dla_cores
            platform_has_fast_fp16 = True

            def __init__(self, logger):
                pass

            def create_network(self, flags):
                rec.append(("network", flags))
                return network

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, net, config):
                rec.append(("build",))
                return b"ENGINE"

        error = NS(node=lambda: 3, node_name=lambda: "/conv1/Conv", node_operator=lambda: "Conv",
                   desc=lambda: "unsupported weights")

        class OnnxParser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, net, logger):
                pass

            def parse_from_file(self, path):
                rec.append(("parse", path))
                return parse_ok

            def get_error(self, i):
                return error

        self.Builder, self.OnnxParser = Builder, OnnxParser


def test_build_one_drives_the_tensorrt_api(tmp_path):
    from prunekit.deploy.formats.engine import build_one

    trt = _RecordingTensorRT()
    (tmp_path / "timing.cache").write_bytes(b"OLD")
    opts = EngineOptions.for_target(JETSON, dynamic_batch=True, batch=4, max_batch=16, workspace_mb=256, dla_core=1)
    info = build_one(trt, tmp_path / "pruned.onnx", tmp_path / "pruned.engine", opts, tmp_path / "timing.cache")
    calls = trt.calls
    assert ("network", 0) in calls  # TensorRT 10: explicit batch is the only mode
    assert ("pool", "WORKSPACE", 256 << 20) in calls
    assert ("flag", "FP16") in calls and ("flag", "INT8") not in calls
    assert ("profile", ("input", (1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))) in calls
    assert ("cache_in", b"OLD") in calls and ("cache_set", False) in calls
    assert ("config", "default_device_type", "DLA") in calls and ("config", "DLA_core", 1) in calls
    assert ("flag", "GPU_FALLBACK") in calls
    assert calls.index(("cache_set", False)) < calls.index(("build",))
    assert (tmp_path / "pruned.engine").read_bytes() == b"ENGINE"
    assert (tmp_path / "timing.cache").read_bytes() == b"CACHE"
    side = json.loads((tmp_path / "pruned.engine.json").read_text())
    assert side == info and side["tensorrt"] == "10.9.0" and side["precision"] == "fp16"
    assert side["input"] == {"name": "input", "min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32],
                             "dynamic": True}
    assert side["outputs"] == {"logits": [-1, 10]} and side["dla_core"] == 1 and side["portable"] is False


def test_build_one_reports_parser_errors_and_missing_dla(tmp_path):
    from prunekit.deploy.formats.engine import build_one
    from prunekit.errors import PrunekitError

    opts = EngineOptions.for_target(None, dynamic_batch=False, batch=1)
    with pytest.raises(PrunekitError, match=r"cannot parse .*node 3 /conv1/Conv \(Conv\): unsupported weights"):
        build_one(_RecordingTensorRT(parse_ok=False), tmp_path / "m.onnx", tmp_path / "m.engine", opts,
                  tmp_path / "c")
    opts = EngineOptions.for_target(None, dynamic_batch=False, batch=1, dla_core=0)
    with pytest.raises(PrunekitError, match="no DLA cores"):
        build_one(_RecordingTensorRT(dla_cores=0), tmp_path / "m.onnx", tmp_path / "m.engine", opts, tmp_path / "c")
    with pytest.raises(PrunekitError, match="cannot calibrate INT8"):
        build_one(_RecordingTensorRT(), tmp_path / "m.onnx", tmp_path / "m.engine",
                  EngineOptions.for_target(None, dynamic_batch=False, batch=1, int8=True), tmp_path / "c", calib=None)
    assert not (tmp_path / "m.engine").exists()


def test_the_engine_build_takes_the_onnx_exports_files_marked_for_tensorrt(tmp_path):
    """A detector's export marks its TensorRT-NMS file for the engine build; other extras (the
    ONNX-NMS file) and files the folder no longer has are left out."""
    from prunekit.deploy.base import record_export
    from prunekit.deploy.formats.engine import engine_extras

    assert engine_extras(tmp_path) == ()
    record_export(tmp_path, "onnx", {"extras": {"pruned_nms.onnx": {"agreement": 1.0},
                                                "pruned_trtnms.onnx": {"engine": True},
                                                "gone_trtnms.onnx": {"engine": True}}})
    for f in ("pruned_nms.onnx", "pruned_trtnms.onnx"):
        (tmp_path / f).write_bytes(b"x")
    assert engine_extras(tmp_path) == ("pruned_trtnms",)
