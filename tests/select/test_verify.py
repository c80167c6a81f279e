"""Measured in the loop: the corrected target converges on the measured budget, bounded, logged."""

from __future__ import annotations

import pytest

from prunekit.errors import PrunekitError
from prunekit.select.verify import VerifyOptions, verify_selection

DENSE = 10.0


def _selector(step: float = 0.01):
    """Widths proportional to the target (quantised), predicted exactly at the quantised width."""

    def select_at(target_ms: float):
        units = max(1, int(target_ms / DENSE / step))
        return {"g": list(range(units))}, {"predicted_ms": units * step * DENSE}

    return select_at


@pytest.mark.parametrize("bias", [0.7, 1.0, 1.35])
def test_converges_when_the_predictor_is_off(bias):
    """The runtime measures `bias` x the predicted ratio: the loop corrects the target."""
    calls = []

    def measure(keep):
        calls.append(len(keep["g"]))
        return len(keep["g"]) * 0.01 * bias

    out = verify_selection(_selector(), measure, 0.5 * DENSE, DENSE, 0.5)
    assert out.met and 0.94 * 0.5 <= out.info["measured_ratio"] <= 1.03 * 0.5
    assert len(out.tries) == len(calls) <= 4
    assert out.tries[0]["predicted_ratio"] == pytest.approx(0.5)


def test_gives_up_after_max_tries_and_reports_the_miss():
    """A runtime whose ratio never changes: the tries are bounded and the miss is reported."""
    out = verify_selection(_selector(), lambda keep: 0.9, 5.0, DENSE, 0.5, VerifyOptions(max_tries=3))
    assert not out.met
    assert out.info["measured_ratio"] == 0.9
    assert 1 <= len(out.tries) <= 3


def test_prefers_a_candidate_within_tolerance_closest_to_the_budget():
    ratios = iter([0.8, 0.51, 0.49])
    out = verify_selection(_selector(), lambda keep: next(ratios), 5.0, DENSE, 0.5)
    assert out.met and out.info["measured_ratio"] == 0.51 and len(out.tries) == 2


def test_a_bracket_is_closed_by_the_secant_where_proportional_steps_oscillate():
    """A cliff in the measured latency (mobilenet_v2 at 32 px): at most a sliver of targets measures
    near the budget. Proportional steps jump across it; the secant between the bracketing tries
    lands on it."""

    def measure(keep):
        r = len(keep["g"]) * 0.001
        return 0.25 + (r - 0.40) * 4.0 if r > 0.40 else 0.25  # 0.40 -> 0.25, 0.45 -> 0.45, steep between

    inner = _selector(step=0.001)

    def floored(target_ms):  # a target below the minimum widths selects them (floor_at_minimum)
        return inner(max(target_ms, 0.38 * DENSE))

    out = verify_selection(floored, measure, 0.6 * DENSE, DENSE, 0.35, VerifyOptions(max_tries=8))
    assert out.met and 0.94 * 0.35 <= out.info["measured_ratio"] <= 1.03 * 0.35
    assert len(out.tries) <= 8


def test_bad_tolerance_is_one_line():
    with pytest.raises(PrunekitError, match="tolerance"):
        VerifyOptions(low=1.2).validate()


# ---------------------------------------------------------------- through the selection rule
import torch  # noqa: E402

from prunekit.latency.profile import load_profile  # noqa: E402
from prunekit.models import build_model  # noqa: E402
from prunekit.pruning import PruningGraph  # noqa: E402
from prunekit.select import Goal, select  # noqa: E402
from prunekit.select.latency import predict_current, predict_for_keep  # noqa: E402
from prunekit.select.verify import runtime_measure  # noqa: E402

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def setup():
    profile = load_profile("cpu-ort")
    graph = PruningGraph(build_model("resnet18", 10).eval(), torch.zeros(SHAPE), "resnet18")
    return profile, graph, graph.importance("magnitude"), predict_current(graph, profile, SHAPE).total_ms


def test_select_corrects_a_biased_predictor(setup):
    """A device on which every candidate measures 1.25x its predicted ratio: the goal is moved."""
    profile, graph, scores, dense = setup

    def measure(g, keep):
        return 1.25 * predict_for_keep(g, keep, profile, SHAPE) / dense

    goal = Goal(kind="latency", profile=profile, input_shape=SHAPE, target_ms=0.5 * dense, dense_ms=dense,
                measure=measure, budget=0.5)
    keep, info = select(graph, scores, goal)
    assert info["verify_met"] and 0.94 * 0.5 <= info["measured_ratio"] <= 1.03 * 0.5
    assert len(info["verify"]) >= 2 and info["verify"][0]["measured_ratio"] > 0.6
    assert info["predicted_ms"] < 0.45 * dense  # it selected below the prediction to meet the measurement


def test_intermediate_schedule_points_are_not_measured(setup):
    profile, graph, scores, dense = setup
    calls = []
    goal = Goal(kind="latency", profile=profile, input_shape=SHAPE, target_ms=0.5 * dense, dense_ms=dense,
                measure=lambda g, k: calls.append(1) or 0.5, budget=0.5)
    select(graph, scores, goal, point=0.8 * dense)
    assert calls == []


def test_runtime_measure_times_a_real_candidate(setup):
    profile, graph, scores, dense = setup
    from prunekit.latency.measure import TimingOptions

    measure = runtime_measure(profile, SHAPE, build_model("resnet18", 10), TimingOptions(repeats=20, warmup=2))
    goal = Goal(kind="latency", profile=profile, input_shape=SHAPE, target_ms=0.5 * dense, dense_ms=dense,
                measure=measure, budget=0.5)
    keep, info = select(graph, scores, goal)
    assert 1 <= len(info["verify"]) <= 4 and all(t["measured_ratio"] > 0 for t in info["verify"])
    assert info["measured_ratio"] < 1.0


def test_verify_needs_a_budget():
    profile = load_profile("cpu-ort")
    with pytest.raises(PrunekitError, match="latency budget"):
        Goal(kind="latency", profile=profile, target_ms=1.0, dense_ms=2.0, measure=lambda g, k: 0.5)
