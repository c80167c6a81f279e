"""The runtime table: built-ins are listed, unknown names are clear errors, and a runtime added
from outside (one class, registered) drives `profile` without any other file knowing about it."""

from __future__ import annotations

import pytest
from latency_helpers import INPUT, tiny_model

from prunekit.errors import PrunekitError
from prunekit.latency.layers import enumerate_layers
from prunekit.latency.measure import Timer
from prunekit.latency.ort_layers import cell_macs
from prunekit.runtimes import RUNTIMES, Runtime, get_runtime, list_runtimes, register_runtime


class MacsRuntime(Runtime):
    """A simulated device: every model and layer takes 1 ms per million multiply-accumulates."""

    name = "macs-sim"
    summary = "simulated: 1 ms per MMAC"

    def version(self) -> str:
        return "macs-sim 1.0"

    def timer(self, model, input_shape, execution, clock="auto"):
        ms = sum(s.macs for s in enumerate_layers(model.torch_module(), tuple(input_shape))) / 1e6
        return Timer(lambda n: [ms] * n, "wall")

    def measure_cells(self, info, cells, execution, batch=1, on_chunk=None):
        out = {(a, b): cell_macs(info, a, b, batch) / 1e6 for a, b in cells}
        if on_chunk is not None:
            on_chunk(len(cells))
        return out


@pytest.fixture
def sim_runtime():
    register_runtime(MacsRuntime)
    yield RUNTIMES["macs-sim"]
    del RUNTIMES["macs-sim"]


def test_builtin_runtimes():
    assert {"onnxruntime", "torch", "tensorrt"} <= set(list_runtimes())
    for name in list_runtimes():
        rt = get_runtime(name)
        assert rt.name == name and rt.summary
    with pytest.raises(PrunekitError, match="unknown runtime 'tflite'") as exc:
        get_runtime("tflite")
    assert "onnxruntime" in exc.value.one_line()


def test_a_registered_runtime_drives_profile(sim_runtime, tmp_path, monkeypatch):
    from prunekit.latency.predict import predict_latency
    from prunekit.latency.profiler import profile_model
    from prunekit.latency.store import read_profile_file

    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "user"))
    model = tiny_model()
    run = profile_model("sim", "macs-sim", model, 16, out=tmp_path / "sim.json", progress=False)
    prof = read_profile_file(tmp_path / "sim.json")
    assert prof.runtime == "macs-sim" and prof.provenance.runtime_version == "macs-sim 1.0"
    assert set(prof.table) == {s.signature for s in enumerate_layers(model, INPUT)}
    macs = sum(s.macs for s in enumerate_layers(model, INPUT)) / 1e6
    assert run.dense_measured_ms == pytest.approx(macs, rel=1e-3)
    # the table is exact at the dense widths, so the prediction is the simulated device's latency
    assert predict_latency(model, prof, INPUT).total_ms == pytest.approx(macs, rel=1e-3)


class SessionDrawRuntime(Runtime):
    """A simulated device whose every new session of the pruned model draws its speed: most
    sessions time 0.5 of dense, one in five 0.9 (the session-to-session spread seen at 32 px)."""

    name = "session-draw-sim"
    summary = "simulated: per-session speed"

    def __init__(self):
        self.sessions = {"dense": 0, "pruned": 0}
        self.runs = {"dense": 0, "pruned": 0}

    def version(self) -> str:
        return "session-draw-sim 1.0"

    def timer(self, model, input_shape, execution, clock="auto"):
        kind = "dense" if model.module.tag == "dense" else "pruned"
        i = self.sessions[kind]
        self.sessions[kind] += 1
        ms = 1.0 if kind == "dense" else (0.9 if i % 5 == 1 else 0.5)

        def timed(n):
            self.runs[kind] += n
            return [ms] * n

        return Timer(timed, "wall")


def _tagged(tag):
    m = tiny_model()
    m.tag = tag
    return m


def test_a_pair_in_several_sessions_takes_the_median_of_their_ratios():
    from prunekit.latency.measure import TimingOptions
    from prunekit.runtimes import ModelRef

    rt = SessionDrawRuntime()
    dense, pruned = ModelRef(module=_tagged("dense")), ModelRef(module=_tagged("pruned"))
    one = rt.time_pair(dense, pruned, INPUT, timing=TimingOptions(repeats=100, warmup=0, block_warmup=0))
    assert one.ratio == pytest.approx(0.5) and one.sessions == 1
    rt.sessions = {"dense": 0, "pruned": 0}
    rt.runs = {"dense": 0, "pruned": 0}
    five = rt.time_pair(dense, pruned, INPUT, timing=TimingOptions(repeats=100, sessions=5, warmup=0, block_warmup=0))
    assert rt.sessions == {"dense": 5, "pruned": 5}
    assert rt.runs == {"dense": 100, "pruned": 100}  # the repeats are split, not multiplied
    assert five.session_ratios == pytest.approx([0.5, 0.9, 0.5, 0.5, 0.5])
    assert five.ratio == pytest.approx(0.5) and five.sessions == 5
    assert five.pruned.runs == 100
