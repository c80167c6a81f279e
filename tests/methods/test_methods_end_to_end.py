"""Every method through the real CLI on digits, on a channel-ratio goal (latency goals: tests/select)."""

from __future__ import annotations

import json

import pytest

FAST = ["--pretrain-epochs", "1", "--epochs", "1", "--input-size", "16", "--batch-size", "128"]


@pytest.mark.parametrize(
    "method, extra",
    [
        ("taylor", []),
        ("adasap", ["--warmup-epochs", "1", "--prune-steps", "2", "--prune-every", "3"]),
        ("csam", ["--mask-epochs", "1"]),
        ("s2ap", ["--score-epochs", "1", "--pgd-train-steps", "1"]),
    ],
)
def test_method_end_to_end_on_digits(cli, tmp_path, method, extra):
    out = tmp_path / method
    result = cli(["compress", *FAST, "--method", method, *extra, "--prune-ratio", "0.5", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"]["name"] == method
    assert report["pruned"]["macs"] < 0.5 * report["dense"]["macs"]
    assert report["pruned"]["params"] < report["dense"]["params"]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["method"] == method and plan["history"]
    # the method's validated options, defaults filled in, are in the report
    from prunekit.methods import get_method

    options = report["settings"]["method_options"]
    assert set(options) == set(get_method(method).Options.model_fields)
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        assert options[flag[2:].replace("-", "_")] == int(value)


def test_adasap_schedule_reaches_the_goal(cli, tmp_path):
    result = cli(["compress", *FAST, "--method", "adasap", "--warmup-epochs", "0", "--prune-steps", "3",
                  "--prune-every", "2", "--prune-ratio", "0.75", "--adasap-rank", "per-group",
                  "--out", str(tmp_path / "a"), "--json"])
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["method"]["steps"]
    fractions = [s["keep_fraction"] for s in steps]
    assert fractions == sorted(fractions, reverse=True) and fractions[-1] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "halp", "--prune-ratio", "0.5"], "needs --target"),
        (["--method", "adasap", "--rho-min", "3", "--rho-max", "2"], "--rho-min"),
        (["--method", "csam", "--csam-mu", "1.5"], "--csam-mu"),
        (["--method", "s2ap", "--pgd-eps", "-0.1"], "--pgd-eps"),
        (["--method", "s2ap", "--pgd-eps", "nan"], "--pgd-eps"),
        (["--method", "nope"], "--method"),
        (["--method", "magnitude", "--csam-tau", "20"], "--csam-tau is an option of method csam"),
        (["--method", "halp", "--rho-max", "1"], "--rho-max is an option of method adasap"),
    ],
)
def test_bad_method_options_fail_before_training(cli, tmp_path, args, message):
    result = cli(["compress", *FAST, *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()
