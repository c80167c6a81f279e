"""`--target local`: measured here on first use, stored under this machine's key, reused after."""

from __future__ import annotations

import pytest
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.latency import profiler
from prunekit.latency.local import missing_layers, resolve_target
from prunekit.latency.predict import predict_latency
from prunekit.latency.store import load_profile, local_key, local_profile_path

SHAPE = (1, 3, 16, 16)


def _tiny(width: int = 16) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 4)).eval()


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path))
    return tmp_path


def test_first_use_measures_then_reuses(profile_dir, monkeypatch):
    with pytest.raises(PrunekitError, match="no local profile yet"):
        load_profile("local")
    prof = resolve_target("local", _tiny(), "tiny", SHAPE, 4, quiet=True)
    assert local_profile_path().is_file() and local_profile_path().parent == profile_dir
    assert prof.name == "local" and prof.provenance.kind == "measured" and prof.threads == 1
    assert predict_latency(_tiny(), prof, SHAPE).total_ms > 0
    assert load_profile("local").table.keys() == prof.table.keys()

    calls = []
    monkeypatch.setattr(profiler, "profile_model", lambda *a, **k: calls.append(a))
    again = resolve_target("local", _tiny(), "tiny", SHAPE, 4, quiet=True)
    assert calls == [] and again.table.keys() == prof.table.keys()


def test_a_wider_model_measures_only_what_is_missing(profile_dir):
    resolve_target("local", _tiny(16), "tiny", SHAPE, 4, quiet=True)
    prof = load_profile("local")
    assert missing_layers(prof, _tiny(16), SHAPE) == []
    assert missing_layers(prof, _tiny(32), SHAPE)  # wider than measured
    wider = resolve_target("local", _tiny(32), "tiny", SHAPE, 4, quiet=True)
    assert missing_layers(wider, _tiny(32), SHAPE) == []


def test_the_key_names_cpu_runtime_version_and_threads():
    import onnxruntime

    key = local_key(1)
    assert f"ort{onnxruntime.__version__}" in key and "-t1-" in key
    assert local_key(2) != key


def test_other_targets_load_as_they_are(profile_dir):
    assert resolve_target("cpu-ort", _tiny(), "tiny", SHAPE, 4).name == "cpu-ort"


def test_an_op_kind_never_timed_here_is_calibrated_once(profile_dir, monkeypatch):
    """A profile built for a classifier has no cost for (say) a detector's RoiAlign: the first
    compress of such a model times its graph here (same layers, nothing else to measure)."""
    from prunekit.latency.local import unpriced_ops
    from prunekit.latency.store import read_profile_file

    resolve_target("local", _tiny(), "tiny", SHAPE, 4, quiet=True)
    prof = read_profile_file(local_profile_path())
    assert unpriced_ops(prof, _tiny(), SHAPE) == []
    used = predict_latency(_tiny(), prof, SHAPE).constant_detail
    gone = sorted(k for k in used if k in prof.constant.ops)[0]
    prof.constant.ops.pop(gone)
    prof.constant.samples.pop(gone, None)
    local_profile_path().write_text(prof.model_dump_json(), encoding="utf-8")  # save_profile would merge it back
    assert unpriced_ops(read_profile_file(local_profile_path()), _tiny(), SHAPE) == [gone]
    again = resolve_target("local", _tiny(), "tiny", SHAPE, 4, quiet=True)
    assert gone in again.constant.ops and unpriced_ops(again, _tiny(), SHAPE) == []
    calls = []
    monkeypatch.setattr(profiler, "profile_model", lambda *a, **k: calls.append(a))
    resolve_target("local", _tiny(), "tiny", SHAPE, 4, quiet=True)
    assert calls == []


def _grouped(width: int = 48) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, groups=6),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4)).eval()


def test_a_grouped_conv_measured_on_the_old_sparse_grid_is_mended(profile_dir):
    resolve_target("local", _grouped(), "grouped", SHAPE, 4, quiet=True)
    prof = load_profile("local")
    sig = next(s for s in prof.table if s.startswith("gconv"))
    assert missing_layers(prof, _grouped(), SHAPE) == []
    assert all(c % 6 == 0 for c in prof.table[sig].cin) and len(prof.table[sig].cin) >= 5
    # what a profile made before the grid fix held: only the multiples of 6 among the plain grid
    old = prof.model_copy(deep=True)
    entry = old.table[sig]
    ki = [i for i, c in enumerate(entry.cin) if c in (30, 48)]
    ko = [j for j, c in enumerate(entry.cout) if c in (30, 48)]
    old.table[sig] = entry.model_copy(update={"cin": [entry.cin[i] for i in ki], "cout": [entry.cout[j] for j in ko],
                                              "ms": [[entry.ms[i][j] for j in ko] for i in ki]})
    assert missing_layers(old, _grouped(), SHAPE) == [sig]
    from prunekit.latency.store import save_profile

    local_profile_path().unlink()  # (save_profile merges with what is on disk)
    save_profile(old, local_profile_path())
    assert missing_layers(load_profile("local"), _grouped(), SHAPE) == [sig]
    mended = resolve_target("local", _grouped(), "grouped", SHAPE, 4, quiet=True)
    assert missing_layers(mended, _grouped(), SHAPE) == [] and len(mended.table[sig].cin) >= 5
