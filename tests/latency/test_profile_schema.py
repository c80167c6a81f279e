"""Profile schema: round-trip, lookup by name/alias/path, clear errors, concurrent saves."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest
from latency_helpers import provenance, tiny_profile

from prunekit.errors import PrunekitError
from prunekit.latency.profile import (
    EstimatedProvenance,
    Profile,
    TableEntry,
    list_profiles,
    load_profile,
    read_profile_file,
    save_profile,
)


@pytest.fixture(autouse=True)
def _user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_PROFILE_DIR", str(tmp_path / "user"))


def test_round_trip_is_lossless(tmp_path):
    prof = tiny_profile()
    path = save_profile(prof, tmp_path / "tiny.json")
    back = read_profile_file(path)
    assert back.model_dump() == prof.model_dump()
    assert back.source == path


def test_estimated_provenance_round_trips(tmp_path):
    prof = tiny_profile()
    prof.provenance = EstimatedProvenance(
        device_model="X", formula="t = flops / peak", spec={"peak_tflops": 1.0}, date="2026-01-01"
    )
    back = read_profile_file(save_profile(prof, tmp_path / "e.json"))
    assert back.provenance.kind == "estimated" and back.provenance.spec == {"peak_tflops": 1.0}


def test_load_by_name_alias_and_path(tmp_path):
    user = tmp_path / "user"
    save_profile(tiny_profile("boardx"), user / "boardx.json")
    assert load_profile("boardx").name == "boardx"
    assert load_profile("boardx-alias").name == "boardx"
    assert load_profile(str(user / "boardx.json")).name == "boardx"
    names = [s.name for s in list_profiles()]
    assert "boardx" in names and "cpu-ort" in names  # user and shipped


def test_unknown_target_lists_known_ones(tmp_path):
    save_profile(tiny_profile("boardx"), tmp_path / "user" / "boardx.json")
    with pytest.raises(PrunekitError) as exc:
        load_profile("no-such-board")
    text = exc.value.one_line()
    assert "no-such-board" in text and "boardx" in text and "cpu-ort" in text


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(runtime="Tensor Flow!"), "runtime"),  # not a runtime name (plug-ins may add names)
        (lambda d: d["provenance"].pop("device_model"), "provenance.measured.device_model"),
        (lambda d: d["table"][next(iter(d["table"]))].update(ms=[[1.0]]), "table."),
        (lambda d: d["table"][next(iter(d["table"]))].update(cin=[8, 4]), "cin"),
        (lambda d: d.update(batch_size=0), "batch_size"),
    ],
)
def test_malformed_profile_names_the_field(tmp_path, mutate, field):
    raw = json.loads(tiny_profile().to_json())
    mutate(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(PrunekitError) as exc:
        read_profile_file(path)
    assert field in exc.value.message and "bad.json" in exc.value.message


def test_not_json_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(PrunekitError, match="not valid JSON"):
        load_profile(str(path))


def test_table_entry_rejects_negative_and_nan():
    with pytest.raises(ValueError):
        TableEntry(cin=[8], cout=[8], ms=[[-1.0]])
    with pytest.raises(ValueError):
        TableEntry(cin=[8], cout=[8], ms=[[float("nan")]])


def _writer(path: str, sig: str, n: int) -> None:
    prof = Profile(name="shared", runtime="onnxruntime", provenance=provenance())
    for i in range(n):
        prof.table[f"{sig}:{i}x{i}"] = TableEntry(cin=[8], cout=[8], ms=[[float(i)]])
        save_profile(prof, path)


def test_concurrent_saves_keep_both_writers_entries(tmp_path):
    path = str(tmp_path / "shared.json")
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    procs = [
        ctx.Process(target=_writer, args=(path, sig, 6))
        for sig in ("conv:k1x1:s1x1:p0x0", "conv:k3x3:s1x1:p1x1")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    prof = read_profile_file(Path(path))
    assert len(prof.table) == 12
