"""One parser for --corruptions / --severities: `check` and `eval` accept and refuse the same things."""

from __future__ import annotations

import pytest

from prunekit.errors import PrunekitError
from prunekit.robustness.corruptions import ALL_CORRUPTIONS, CORRUPTIONS
from prunekit.robustness.spec import parse_corruptions, parse_severities


def test_corruption_lists():
    assert parse_corruptions(None) == list(CORRUPTIONS) == parse_corruptions("benchmark")
    assert parse_corruptions("all") == list(ALL_CORRUPTIONS) and len(ALL_CORRUPTIONS) == 19
    assert parse_corruptions(" fog, snow ,fog,") == ["fog", "snow"]
    assert parse_corruptions("benchmark,spatter")[-1] == "spatter"


def test_severity_lists():
    assert parse_severities(None) == [1, 2, 3, 4, 5]
    assert parse_severities("5, 1,3,1") == [1, 3, 5]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: parse_corruptions(""), "--corruptions is empty"),
        (lambda: parse_corruptions(" , "), "--corruptions is empty"),
        (lambda: parse_corruptions("fog,rain"), "unknown corruption 'rain'"),
        (lambda: parse_severities(""), "--severities is empty"),
        (lambda: parse_severities("1,x"), "severity 'x' is not a number"),
        (lambda: parse_severities("0,3"), "severity 0 is outside 1..5"),
    ],
)
def test_bad_values(call, message):
    with pytest.raises(PrunekitError, match=message):
        call()


@pytest.mark.parametrize("args, message", [
    (["--corruptions", ""], "--corruptions is empty"),
    (["--corruptions", "rain"], "unknown corruption 'rain'"),
    (["--severities", "6"], "severity 6 is outside 1..5"),
    (["--severities", "a"], "severity 'a' is not a number"),
])
def test_check_and_eval_refuse_alike(cli, tmp_path, args, message):
    for argv in (["check", str(tmp_path), "--target", "cpu-ort", *args],
                 ["eval", "resnet18", "--data", "digits", "--weights", str(tmp_path / "w.pt"), *args]):
        result = cli(argv)
        assert result.exit_code == 2 and message in result.output, (argv, result.output)
