"""chandra compare: two models, runs, MusicHal files or traces side by side.

Known answers: a model compared with itself has no differences; a clean run
against a fault-injected copy shows exactly the injected change; a MusicHal
file against its `chandra export --format musichal` re-import loses nothing;
the MusicHal reference model against a chandra model has the lost
gesture_token as its top difference; the faulty trainer's trace against the
fixed one resolves its three faults.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from chandra import findings as F
from chandra.cli import main
from chandra.compare import (
    COMPARE_FORMAT,
    align_stages,
    compare,
    format_comparison,
    js_distance,
    load_side,
    side_from_trace,
)
from chandra.errors import ChandraError
from chandra.ledger import ledger_entry
from chandra.model import load_model, save_model

from helpers_musichal import musichal_resave, write_musichal_file

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "musichal_base_model_test_error_fix.json"
FAULTY_TRAINER = REPO / "examples" / "faulty_trainer.py"


def _changed_cells(doc: dict) -> set[tuple]:
    return {(c["stage"], c["field"], c["change"], c["types_changed"]) for c in doc["fields"]
            if c["change"] not in ("same", "absent") or c["types_changed"]}


def _codes(items: list[dict]) -> set[tuple]:
    return {(f["code"], f["stage"]) for f in items}


# --------------------------------------------------------------------------- units


def test_js_distance_known_answers():
    assert js_distance([3, 1, 0], [3, 1, 0]) == 0.0
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    # p = (1/2, 1/2), q = (1, 0): JSD = 0.31128 bits, distance = its square root
    assert js_distance([1, 1], [2]) == pytest.approx(math.sqrt(0.311278124459), abs=1e-9)
    assert js_distance([1, 2], [2, 4]) == pytest.approx(0.0, abs=1e-12)  # counts are normalised
    assert js_distance(None, [1]) is None
    assert js_distance([0, 0], [1]) is None


def test_align_stages_by_name_with_one_sided_stages():
    rows = align_stages(["segments", "tokens", "events", "join", "save"], ["segments", "events", "save", "extra"])
    assert rows == [(0, 0), (1, None), (2, 1), (3, None), (4, 2), (None, 3)]


def test_lone_model_entry_lines_up_with_saved():
    chandra_run = ["segments", "features", "tokens", "events", "oracle", "saved", "reloaded"]
    assert align_stages(["model"], chandra_run) == [(None, 0), (None, 1), (None, 2), (None, 3), (None, 4),
                                                   (0, 5), (None, 6)]
    assert align_stages(chandra_run, ["model"])[5] == (5, 0)
    # both sides hold "model": they pair by name
    assert (7, 0) in align_stages(chandra_run + ["model"], ["model"])
    # a trace without saved/reloaded: the last stage
    assert align_stages(["a", "b"], ["model"]) == [(0, None), (1, 0)]


# --------------------------------------------------------------------------- same thing twice


def test_model_compared_with_itself_has_no_differences(prepared_run, tmp_path):
    copy = tmp_path / "copy.chandra"
    shutil.copyfile(prepared_run.model_path(), copy)
    doc = compare(prepared_run.model_path(), copy)
    assert doc["format"] == COMPARE_FORMAT
    assert doc["differences"] == []
    assert doc["regression"] == {"regressed": False, "reasons": []}
    assert _changed_cells(doc) == set()
    assert doc["findings"]["resolved"] == [] and doc["findings"]["introduced"] == []
    assert all(t["js_distance"] == 0.0 for t in doc["tokens"])
    assert [s["a"] for s in doc["stages"]] == [s["b"] for s in doc["stages"]]
    assert doc["stages"][-1]["name"] == "model"
    assert format_comparison(doc).splitlines()[3] == "no differences"


def test_run_compared_with_itself_has_no_differences(prepared_run):
    doc = compare(prepared_run.path, prepared_run.path)
    assert doc["differences"] == []
    assert doc["a"]["kind"] == "run" and doc["a"]["n_frames"] > 0


# --------------------------------------------------------------------------- fault-injected copies of a clean run


def _resave(run_path: Path, mutate) -> None:
    """Apply ``mutate`` to the run's model as a faulty save would, then record
    the "saved" and "reloaded" ledger entries the pipeline records for it."""
    model = load_model(run_path / "model.chandra")
    mutate(model)
    meta = json.loads((run_path / "run.json").read_text())
    duration = next(e["time"]["duration"] for e in meta["ledger"] if e["stage"] == "saved")
    k = int(model.vocabulary["n_tokens"])
    saved = ledger_entry("saved", model.events, features=model.features, n_tokens=k, duration=duration,
                         centers=model.centers)
    probe = run_path / "probe.chandra"
    save_model(model, probe)
    back = load_model(probe)
    probe.unlink()
    reloaded = ledger_entry("reloaded", back.events, features=back.features, n_tokens=k, duration=duration,
                            centers=back.centers)
    ledger = [e for e in meta["ledger"] if e["stage"] not in ("saved", "reloaded")] + [saved, reloaded]
    model.ledger = ledger
    save_model(model, run_path / "model.chandra")
    meta["ledger"] = json.loads(json.dumps(ledger, default=float))
    (run_path / "run.json").write_text(json.dumps(meta, indent=1))


def _smooth_tokens(model):
    for i in range(3, len(model.events), 4):
        model.events[i]["gesture_token"] = model.events[i - 1]["gesture_token"]


def _stringify_ratios(model):
    for e in model.events:
        e["ratios"] = str(e["ratios"])


def _vocabulary_from_other_encoder(model):
    model.vocabulary["fitted_on"] = {"encoder": "wav2vec2", "model": "facebook/wav2vec2-base", "layer": 12,
                                     "dim": 768}


def _numbers_as_text(model):
    for e in model.events:
        if e.get("midi") is not None:
            e["midi"] = str(e["midi"])


def _drop_tokens(model):
    for e in model.events:
        e.pop("gesture_token", None)


RUN_FAULTS = [
    # (mutation, changed field cells, introduced findings)
    # Smoothing also leaves more of the 16 tokens used at most twice (8 of 16 in the prepared run's 40
    # segments, 9 after): the vocabulary turns sparse, a true consequence of the injected change.
    (_smooth_tokens, set(), {(F.TOKENS_DESYNC, "saved"), (F.SPARSE_VOCABULARY, "saved")}),
    (_stringify_ratios, {("saved", "ratios", "same", True), ("reloaded", "ratios", "same", True)},
     {(F.STRINGIFIED_CONTAINER, "saved")}),
    (_vocabulary_from_other_encoder, set(), {(F.VOCAB_ENCODER_MISMATCH, "tokens")}),
    (_numbers_as_text, {("saved", "midi", "same", True), ("reloaded", "midi", "same", True)},
     {(F.TYPES_CHANGED, "saved")}),
    (_drop_tokens, {("saved", "gesture_token", "lost", False), ("reloaded", "gesture_token", "lost", False)},
     {(F.FIELD_LOST, "saved"), (F.TOKENS_MISSING, "saved")}),
]


@pytest.mark.parametrize("mutate, cells, introduced", RUN_FAULTS, ids=[f[0].__name__.strip("_") for f in RUN_FAULTS])
def test_fault_injected_run_shows_exactly_the_injected_change(prepared_run, tmp_path, mutate, cells, introduced):
    faulty = tmp_path / "faulty-run"
    shutil.copytree(prepared_run.path, faulty)
    _resave(faulty, mutate)
    doc = compare(prepared_run.path, faulty)
    assert _changed_cells(doc) == cells
    assert _codes(doc["findings"]["introduced"]) == introduced
    assert doc["findings"]["resolved"] == []
    assert doc["regression"]["regressed"]  # every injected fault is an error (or a lost field)
    top = doc["differences"][0]
    assert top["kind"] in ("field", "finding")
    # ... and the other way round it is resolved, not a regression
    back = compare(faulty, prepared_run.path)
    assert _codes(back["findings"]["resolved"]) == introduced
    assert not back["regression"]["regressed"]


def test_lost_field_run_fixture_regresses_on_gesture_token(prepared_run, lost_field_run, capsys):
    code = main(["compare", str(prepared_run.path), str(lost_field_run.path), "--fail-on-regression"])
    out = capsys.readouterr().out
    assert code == 1
    assert "B REGRESSES" in out and "gesture_token" in out
    assert main(["compare", str(lost_field_run.path), str(prepared_run.path), "--fail-on-regression"]) == 0
    assert main(["compare", str(prepared_run.path), str(lost_field_run.path)]) == 0  # without the flag


# --------------------------------------------------------------------------- MusicHal


def test_musichal_file_against_its_chandra_export(tmp_path, capsys):
    source = tmp_path / "musichal.json"
    write_musichal_file(source, n_frames=150, dim=16, seed=3)
    exported = tmp_path / "exported.json"
    assert main(["export", str(source), "--format", "musichal", "-o", str(exported)]) == 0
    capsys.readouterr()
    doc = compare(source, exported)
    assert [s["name"] for s in doc["stages"]] == ["model"]
    assert _changed_cells(doc) == set()
    assert doc["findings"]["introduced"] == [] and doc["findings"]["resolved"] == []
    assert [t["js_distance"] for t in doc["tokens"]] == [0.0]
    assert {d["kind"] for d in doc["differences"]} <= {"parameter", "provenance"}
    assert not doc["regression"]["regressed"]
    # MusicHal saving the export again keeps every field
    resaved = tmp_path / "resaved.json"
    musichal_resave(exported, resaved)
    doc = compare(exported, resaved)
    assert _changed_cells(doc) == set()
    assert not doc["regression"]["regressed"]


def test_chandra_model_against_its_musichal_export(prepared_run, tmp_path, capsys):
    exported = tmp_path / "exported.json"
    assert main(["export", str(prepared_run.model_path()), "--format", "musichal", "-o", str(exported)]) == 0
    capsys.readouterr()
    doc = compare(prepared_run.model_path(), exported)
    assert doc["b"]["kind"] == "musichal"
    assert [s["a"] for s in doc["stages"]] == [s["b"] for s in doc["stages"]]  # the block kept the ledger
    assert _changed_cells(doc) == set()
    assert doc["findings"]["introduced"] == []


@pytest.mark.skipif(not REFERENCE.exists(), reason="MusicHal reference model not in ../shared/reference")
def test_reference_musichal_against_chandra_model_top_difference_is_gesture_token(sample_models):
    model = next(iter(sample_models.values()))
    doc = compare(REFERENCE, model)
    top = doc["differences"][0]
    assert (top["kind"], top["stage"], top["subject"]) == ("field", "model", "gesture_token")
    assert "lost -> present" in top["message"]
    cell = next(c for c in doc["fields"] if c["stage"] == "model" and c["field"] == "gesture_token")
    assert cell["a"]["present"] == 0 and cell["a"]["n"] == 1000 and cell["b"]["fraction"] == 1.0
    assert {(F.TOKENS_MISSING, "model"), (F.EPOCH_TIME, "model")} <= _codes(doc["findings"]["resolved"])
    doc = compare(model, REFERENCE)
    top = doc["differences"][0]
    assert (top["subject"], top["message"].split(":")[0]) == ("gesture_token", "present -> lost")
    assert doc["regression"]["regressed"]
    assert any("'gesture_token'" in r for r in doc["regression"]["reasons"])


# --------------------------------------------------------------------------- traces


@pytest.fixture(scope="module")
def trainer_traces(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("faulty_trainer_for_compare", FAULTY_TRAINER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("traces")
    return module.main(root / "faulty"), module.main(root / "fixed", fixed=True)


def test_faulty_trace_against_fixed_trace(trainer_traces):
    faulty, fixed = trainer_traces
    doc = compare(faulty, fixed)
    assert [s["name"] for s in doc["stages"]] == ["segments", "tokens", "events", "join", "save"]
    assert _codes(doc["findings"]["resolved"]) == {(F.EPOCH_TIME, "events"), (F.TOKEN_COLLAPSE, "join"),
                                                   (F.FIELD_LOST, "save")}
    assert doc["findings"]["introduced"] == []
    assert _changed_cells(doc) == {("save", "gesture_token", "restored", False)}
    join = next(t for t in doc["tokens"] if t["stage"] == "join")
    assert (join["a"]["unique"], join["b"]["unique"]) == (1, 16)
    assert not doc["regression"]["regressed"]
    assert compare(fixed, faulty)["regression"]["regressed"]


def test_trace_report_against(trainer_traces, capsys):
    faulty, fixed = trainer_traces
    assert main(["trace-report", str(faulty), "--against", str(fixed)]) == 0
    out = capsys.readouterr().out
    assert "resolved" in out and "EPOCH_TIME" in out and "save  gesture_token" in out
    assert main(["trace-report", str(fixed), "--against", str(faulty), "--fail-on-regression"]) == 1
    capsys.readouterr()
    assert main(["trace-report", str(faulty), "--against", str(fixed), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == COMPARE_FORMAT and doc["a"]["kind"] == "trace"
    assert main(["trace-report", str(faulty), "--fail-on-regression"]) == 1
    assert "needs --against" in capsys.readouterr().err


def test_mixed_pair_trace_against_model_lines_up_model_with_last_checkpoint(trainer_traces, prepared_run):
    faulty, _ = trainer_traces
    doc = compare(faulty, prepared_run.model_path())
    pairs = [(s["a"], s["b"]) for s in doc["stages"] if s["a"] and s["b"]]
    assert ("segments", "segments") in pairs and ("tokens", "tokens") in pairs


# --------------------------------------------------------------------------- CLI


def test_compare_cli_json(prepared_run, lost_field_run, capsys):
    assert main(["compare", str(prepared_run.path), str(lost_field_run.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["regression"]["regressed"] is True
    lost = {(c["stage"], c["field"]) for c in doc["fields"] if c["change"] == "lost"}
    assert lost == {("saved", "gesture_token"), ("reloaded", "gesture_token")}


@pytest.mark.parametrize("make", ["missing", "empty_dir", "garbage", "json_list"])
def test_compare_cli_unreadable_input_is_one_line(prepared_run, tmp_path, capsys, make):
    bad = tmp_path / "bad"
    if make == "empty_dir":
        bad.mkdir()
    elif make == "garbage":
        bad.write_bytes(b"\x00\x01 not a model")
    elif make == "json_list":
        bad.write_text("[1, 2, 3]")
    for args in (["compare", str(bad), str(prepared_run.path)], ["compare", str(prepared_run.path), str(bad)]):
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("chandra compare: error: ") and "\n" not in err, err


def test_load_side_refuses_unknown_directory(tmp_path):
    with pytest.raises(ChandraError, match="neither a trace"):
        load_side(tmp_path)


def test_side_from_trace_keeps_declared_provenance(trainer_traces):
    side = side_from_trace(trainer_traces[1])
    assert side.provenance["segments.encoder.dim"] == 32
    assert side.provenance["tokens.vocabulary.fitted_on.encoder"] == "toy-gestures"
    assert np.isfinite(side.n_frames)


def test_generation_quality_figures_side_by_side(prepared_run, tmp_path):
    """A run's newest generation record (what the Generate page writes) is compared key by key."""
    runs = []
    for name, summary in (("a", {"n_frames": 100, "n_jumps": 12, "unique_tokens": 9, "only_a": 1}),
                          ("b", {"n_frames": 100, "n_jumps": 30, "unique_tokens": 4, "only_b": 2})):
        path = tmp_path / name
        shutil.copytree(prepared_run.path, path)
        (path / "generations").mkdir(exist_ok=True)
        record = {"format": "chandra-generation", "version": "1.0", "wav": "gen_0123456789ab.wav",
                  "generation": {}, "ledger_entry": {}, "summary": summary}
        (path / "generations" / "gen_0123456789ab.json").write_text(json.dumps(record))
        runs.append(path)
    doc = compare(*runs)
    rows = {r["key"]: (r["a"], r["b"], r["changed"]) for r in doc["generation"]["rows"]}
    assert rows == {"n_frames": (100, 100, False), "n_jumps": (12, 30, True), "unique_tokens": (9, 4, True)}
    assert {d["subject"] for d in doc["differences"] if d["kind"] == "generation"} == {"n_jumps", "unique_tokens"}
    assert "generation (A -> B):" in format_comparison(doc)
