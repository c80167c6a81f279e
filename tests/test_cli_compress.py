"""End-to-end: the real CLI on the built-in digits data."""

from __future__ import annotations

import json
import os

import pytest

FAST = ["--pretrain-epochs", "1", "--epochs", "1", "--input-size", "16", "--prune-ratio", "0.5"]


def test_compress_writes_a_complete_run(cli, tmp_path):
    out = tmp_path / "run"
    result = cli(["compress", *FAST, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {"dense", "pruned", "settings"}
    for side in ("dense", "pruned"):
        assert {"params", "macs", "accuracy"} <= set(report[side])
        assert 0.0 <= report[side]["accuracy"] <= 1.0
    assert report["pruned"]["macs"] < report["dense"]["macs"]
    assert report["pruned"]["params"] < report["dense"]["params"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report
    for name in ("plan.json", "dense.safetensors", "pruned.safetensors", "run.json"):
        assert (out / name).exists()
    assert not list(out.rglob("*.tmp"))

    from prunekit.runs import load_run

    run = load_run(out)
    assert sum(p.numel() for p in run.pruned.parameters()) == report["pruned"]["params"]

    # weights are as readable as the JSON files (0666 minus the umask), not 0600
    mode = (out / "report.json").stat().st_mode & 0o777
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask
    for name in ("dense.safetensors", "pruned.safetensors", "pruned_init.safetensors", "checkpoints/finetune.pt"):
        assert (out / name).stat().st_mode & 0o777 == mode, name

    # a finished run is not overwritten without --force
    again = cli(["compress", *FAST, "--out", str(out)])
    assert again.exit_code == 2 and "already holds a finished run" in again.output

    # --resume on a finished run returns its report, recomputing nothing
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    import prunekit.compress as pipeline

    def no_training(*_a, **_k):
        raise AssertionError("a finished run was recomputed")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "stage_dense", no_training)
        resumed = cli(["compress", *FAST, "--out", str(out), "--resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout) == report
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp
    other = cli(["compress", *FAST, "--epochs", "2", "--out", str(out), "--resume"])
    assert other.exit_code == 2 and "setting 'epochs' differs" in other.output
    forced = cli(["compress", *FAST, "--out", str(out), "--force", "--epochs", "0", "--json"])
    assert forced.exit_code == 0


def test_prune_only_on_synthetic_any_classes(cli, tmp_path):
    result = cli([
        "compress", "--data", "synthetic:32", "--num-classes", "7", "--input-size", "24",
        "--pretrain-epochs", "0", "--epochs", "0", "--ratio-of", "macs", "--prune-ratio", "0.5",
        "--out", str(tmp_path / "r"), "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["num_classes"] == 7
    ratio = report["pruned"]["macs"] / report["dense"]["macs"]
    assert 0.4 < ratio <= 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prune-ratio", "1.5"], "--prune-ratio"),
        (["--prune-ratio", "0"], "--prune-ratio"),
        (["--model", "not_a_model"], "unknown model"),
        (["--data", "cifar10:/nope"], "not found"),
        (["--weights", "/nope/w.pt"], "not found"),
        (["--latency-budget", "1.5", "--target", "cpu-ort"], "--latency-budget"),
        (["--latency-budget", "0.5"], "needs --target"),
        (["--subnets", "-1"], "--subnets"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, tmp_path, args, message):
    out = tmp_path / "bad"
    result = cli(["compress", *FAST, "--out", str(out), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_corrupt_weights_file(cli, tmp_path):
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"\x00" * 100)
    result = cli(["compress", *FAST, "--weights", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "cannot read weights" in result.output


def test_resume_after_interruption_matches_uninterrupted(cli, tmp_path, monkeypatch):
    import prunekit.compress as pipeline

    args = ["compress", *FAST, "--epochs", "2", "--json"]
    straight = json.loads(cli([*args, "--out", str(tmp_path / "a")]).stdout)

    real = pipeline.stage_finetune

    def crash(ctx, model):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "stage_finetune", crash)
    interrupted = cli([*args, "--out", str(tmp_path / "b")])
    assert interrupted.exit_code == 130
    monkeypatch.setattr(pipeline, "stage_finetune", real)
    refused = cli([*args, "--out", str(tmp_path / "b")])
    assert refused.exit_code == 2 and "--resume" in refused.output
    resumed = json.loads(cli([*args, "--out", str(tmp_path / "b"), "--resume"]).stdout)
    assert resumed["run"]["resumed"] is True
    for side in ("dense", "pruned"):
        assert resumed[side] == straight[side]
    plan_a = json.loads((tmp_path / "a" / "plan.json").read_text())
    plan_b = json.loads((tmp_path / "b" / "plan.json").read_text())
    assert plan_a == plan_b


def test_a_compress_without_a_goal_is_the_main_job():
    """No goal flag: the task's main job (a latency budget on this machine, verified); a goal
    flag turns it off, and the method follows the goal (halp for latency, magnitude for ratio)."""
    from prunekit.settings import main_job_defaults

    bare = main_job_defaults({})
    assert (bare["target"], bare["latency_budget"], bare["verify"], bare["method"]) == ("local", 0.5, True, "halp")
    ratio = main_job_defaults({"prune_ratio": 0.3})
    assert ratio["target"] is None and ratio["method"] == "magnitude" and ratio["verify"] is False
    other = main_job_defaults({"target": "cpu-ort", "latency_budget": 0.4, "verify": None})
    assert (other["method"], other["verify"], other["latency_budget"]) == ("halp", False, 0.4)
    assert main_job_defaults({"method": "adasap"})["method"] == "adasap"
    assert main_job_defaults({"verify": False})["verify"] is False


@pytest.mark.slow
def test_main_job_meets_its_budget_on_this_machine(cli, tmp_path, monkeypatch):
    """Bare `prunekit compress`, as README shows it: profiles `local` on first use (minutes)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "profiles"))
    result = cli(["compress", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["target"] == "local" and report["method"]["name"] == "halp"
    assert report["pruned"]["accuracy"] >= 0.90
    assert report["pruned"]["measured_latency_ms"] < report["dense"]["measured_latency_ms"]
    # the verify loop's own measurement (a later single re-timing moves +-20 % on a busy machine)
    last = report["method"]["steps"][-1]
    assert last["verify_met"] is True and 0.94 * 0.5 <= last["measured_ratio"] <= 1.03 * 0.5


@pytest.mark.slow
def test_ratio_job_reaches_90_percent(cli, tmp_path, monkeypatch):
    """The channel-ratio job on the defaults (resnet18, digits, 3 + 3 epochs)."""
    monkeypatch.chdir(tmp_path)
    result = cli(["compress", "--prune-ratio", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pruned"]["accuracy"] >= 0.90
    assert report["pruned"]["macs"] < report["dense"]["macs"]


def test_run_folders_with_the_old_flat_settings_still_load_and_resume(cli, tmp_path):
    """Runs written before method options moved to settings.method_options (every method's
    options as flat keys) load, and --resume on them finds the same settings."""
    from prunekit.runs import load_run
    from prunekit.settings import LEGACY_METHOD_KEYS, settings_from_dict

    out = tmp_path / "old"
    args = ["compress", *FAST, "--epochs", "0", "--method", "adasap", "--warmup-epochs", "0", "--prune-steps", "2",
            "--prune-every", "0", "--out", str(out), "--json"]
    first = cli(args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    legacy = {"prune_steps": 2, "prune_every": 0, "warmup_epochs": 0, "rho_min": 0.01, "rho_max": 0.5,
              "mask_epochs": 1, "mask_lr": 0.05, "csam_mu": 0.5, "csam_eta": 1.0, "csam_tau": 30.0,
              "lambda_stab": 5.0, "lambda_ratio": 1.0, "lambda_consist": 1.0, "score_epochs": 1, "score_lr": 0.1,
              "s2ap_rho": 0.05, "pgd_eps": 8 / 255, "pgd_train_steps": 3}
    assert set(legacy) == set(LEGACY_METHOD_KEYS)
    state = json.loads((out / "run.json").read_text())
    flat = {k: v for k, v in state["settings"].items() if k != "method_options"}
    flat.update(legacy)
    state["settings"] = flat
    (out / "run.json").write_text(json.dumps(state))
    run = load_run(out)
    assert run.settings["prune_steps"] == 2
    upgraded = settings_from_dict(run.settings)
    assert upgraded.method == "adasap" and upgraded.options.prune_steps == 2 and upgraded.options.warmup_epochs == 0
    resumed = cli([*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout) == report
