"""Fuzz what strangers hand prunekit: CLI option values, --data specs, run folders, weights files.

Every case ends in success or a one-line error with exit code 2: never a traceback, never a hang.
"""

from __future__ import annotations

import contextlib
import json
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunekit.errors import PrunekitError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))

weird_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e309", "-1", "0", "1", "∞", "💥", "a" * 5000, "../../etc/passwd",
                     "digits:", "synthetic:0", "synthetic:-5", "cifar10:", "imagefolder:/dev/null", "x:" * 100]),
)
weird_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, -0.0, 1e-300, 1 - 1e-16, 2.0, math.nan, math.inf]),
)


def _assert_clean(result) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output[-2000:])
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
        assert lines and lines[-1].startswith("error:") or any(ln.startswith("error:") for ln in lines) or \
            "Usage:" in result.output


METHOD_OF = {
    "--rho-max": ["--method", "adasap", "--warmup-epochs", "0", "--prune-every", "0"],
    "--csam-mu": ["--method", "csam", "--mask-epochs", "0"],
    "--csam-tau": ["--method", "csam", "--mask-epochs", "0"],
    "--pgd-eps": ["--method", "s2ap", "--score-epochs", "0"],
}


@SETTINGS
@given(option=st.sampled_from(["--prune-ratio", "--latency-budget", "--latency-ms", "--lr", "--rho", "--rho-max",
                               "--csam-mu", "--pgd-eps", "--csam-tau"]), value=weird_number)
def test_numeric_options(cli, tmp_path_factory, option, value):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    # a goal, so that no case runs the main job (a latency budget on `local`, profiled on first use)
    extra = ["--target", "cpu-ort"] if option in ("--latency-budget", "--latency-ms") else ["--prune-ratio", "0.5"]
    # a method's option goes with its method (elsewhere it is refused before validation)
    extra += METHOD_OF.get(option, [])
    result = cli(["compress", "--data", "synthetic:16", "--input-size", "16", "--pretrain-epochs", "0",
                  "--epochs", "0", "--out", str(out), *extra, option, repr(value)])
    _assert_clean(result)


@SETTINGS
@given(option=st.sampled_from(["--model", "--data", "--target", "--method", "--ratio-of", "--weights",
                               "--finetune-optimizer", "--num-classes", "--input-size", "--seed", "--out"]),
       value=weird_text)
def test_text_options(cli, tmp_path_factory, option, value):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    with _cwd(out.parent):  # relative --out values land in the temporary folder, not the repo
        _text_option_case(cli, out, option, value)


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _text_option_case(cli, out, option, value):
    args = ["compress", "--data", "synthetic:16", "--input-size", "16", "--pretrain-epochs", "0", "--epochs", "0",
            "--prune-ratio", "0.5"]
    if option != "--out":
        args += ["--out", str(out)]
    if option == "--out" and not value.strip():
        value = str(out)
    result = cli([*args, option, value])
    _assert_clean(result)


@SETTINGS
@given(spec=weird_text)
def test_data_specs(spec):
    from prunekit.data import load_data

    try:
        load_data(spec, 16, 3)
    except PrunekitError as exc:
        assert exc.one_line()


@SETTINGS
@given(run_json=st.one_of(st.binary(max_size=200), st.from_type(dict).map(lambda d: json.dumps(d).encode())),
       plan=st.one_of(st.binary(max_size=200), st.just(b'{"format": "prunekit-plan/1", "history": [["conv1", true, [0, 0, 999]]]}'),
                      st.just(b'{"format": "prunekit-plan/1", "history": 5}')))
def test_run_folders(tmp_path_factory, run_json, plan):
    from prunekit.runs import load_run

    folder = tmp_path_factory.mktemp("run")
    (folder / "run.json").write_bytes(run_json)
    (folder / "plan.json").write_bytes(plan)
    (folder / "report.json").write_bytes(b"{}")
    with pytest.raises(PrunekitError):
        load_run(folder)


def test_finished_run_with_damaged_plan(tmp_path):
    from prunekit.runs import load_run

    folder = tmp_path / "run"
    folder.mkdir()
    settings_ = {"model": "resnet18", "num_classes": 10, "input_size": 16}
    (folder / "run.json").write_text(json.dumps({"status": "finished", "settings": settings_}))
    (folder / "report.json").write_text("{}")
    for plan in ('{"format": "prunekit-plan/1", "history": [["conv1", true, [0, 1, 999]]]}',
                 '{"format": "prunekit-plan/1", "history": [["nope", true, [0]]]}',
                 '{"format": "prunekit-plan/1", "history": [[1, 2]]}', "[]", "{"):
        (folder / "plan.json").write_text(plan)
        with pytest.raises(PrunekitError):
            load_run(folder)


@SETTINGS
@given(cut=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=0, max_value=255))
def test_truncated_and_corrupted_weights(tmp_path_factory, cut, flip):
    from safetensors.torch import save_file

    from prunekit.models import build_model, load_weights

    folder = tmp_path_factory.mktemp("w")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "w.safetensors"))
    torch.save(model.state_dict(), folder / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        data = bytearray((folder / name).read_bytes())
        data = data[: cut % max(len(data), 1)]
        if data:
            data[flip % len(data)] ^= 0xFF
        (folder / f"bad-{name}").write_bytes(bytes(data))
        try:
            load_weights(model, folder / f"bad-{name}")
        except PrunekitError as exc:
            assert exc.one_line()
    with pytest.raises(PrunekitError, match="does not match"):
        load_weights(build_model("resnet18", 10), folder / "w.pt")


def test_unwritable_output_folder(cli, tmp_path):
    result = cli(["compress", "--data", "synthetic:16", "--input-size", "16", "--pretrain-epochs", "0",
                  "--epochs", "0", "--prune-ratio", "0.5", "--out", "/proc/prunekit-run"])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


def test_disk_full_keeps_previous_artifacts(cli, tmp_path, monkeypatch):
    import errno

    import prunekit.atomic as atomic
    import prunekit.compress as pipeline

    out = tmp_path / "run"
    args = ["compress", "--data", "synthetic:32", "--input-size", "16", "--pretrain-epochs", "1", "--epochs", "1",
            "--prune-ratio", "0.5", "--out", str(out), "--json"]
    real_finetune = pipeline.stage_finetune

    def interrupted(ctx, model):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "stage_finetune", interrupted)
    assert cli(args).exit_code == 130
    monkeypatch.setattr(pipeline, "stage_finetune", real_finetune)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    real_replace = atomic.os.replace

    def disk_full(src, dst):
        if str(dst).endswith("pruned.safetensors"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", disk_full)
    result = cli([*args, "--resume"])
    assert result.exit_code == 2 and "No space left on device" in result.output
    assert "Traceback" not in result.output
    assert not list(out.rglob(".*.tmp"))
    for rel, data in before.items():
        if rel.parts[0] != "checkpoints":  # the fine-tune checkpoint is new; everything before is intact
            assert (out / rel).read_bytes() == data, rel
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    final = cli([*args, "--resume"])
    assert final.exit_code == 0, final.output
