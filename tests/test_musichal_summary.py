"""MusicHal 9000 training summaries (``…_summary.json``): recognised as
``musichal-summary``, described, judged — not rejected as "not a model"."""

from __future__ import annotations

import json

import pytest

from chandra import findings as F
from chandra.cli import main
from chandra.errors import ModelFormatError
from chandra.inspect import format_report, inspect_model
from chandra.model import load_model
from chandra.musichal_summary import (
    SUMMARY_FORMAT,
    MusicHalSummaryError,
    describe_summary,
    read_summary,
    summary_document,
    summary_findings,
)


def healthy(events: int = 3000) -> dict:
    """The shape MusicHal's trainer writes (training result + oracle statistics + timings)."""
    return {
        "training_successful": True,
        "audio_oracle_stats": {"total_patterns": 55964, "total_states": events + 1, "sequence_length": events,
                               "max_pattern_length": 50, "is_trained": True, "distance_threshold": 250.6,
                               "distance_function": "euclidean", "feature_dimensions": 768,
                               "adaptive_threshold": True, "threshold_adjustments": 597086,
                               "harmonic_patterns": 1310, "polyphonic_patterns": 5},
        "events_processed": events,
        "harmonic_patterns": 1310,
        "sample_harmonic_patterns": [[["D", "D"], 1296], [["A", "A"], 1237]],
        "training_statistics": {"total_training_time": 812.5, "audio_oracle_training_time": 301.2,
                                "events_processed": events, "frames_with_gesture_token": events,
                                "unique_gesture_tokens": 61},
        "rhythm_oracle_stats": {"total_patterns": 42, "avg_tempo": 118.0, "avg_density": 0.61},
        "transformer_analysis": {"key_signature": "C_minor", "chord_progression": ["Cdim", "G#7"]},
    }


def broken(events: int = 3000) -> dict:
    doc = healthy(events)
    doc["audio_oracle_stats"].update(total_patterns=1, sequence_length=events - 500, feature_dimensions=15)
    doc["training_statistics"].update(frames_with_gesture_token=0, unique_gesture_tokens=1)
    return doc


def write(path, document) -> str:
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_a_healthy_summary_is_described_without_findings(tmp_path):
    path = write(tmp_path / "Itzama_061125_1018_summary.json", healthy())
    (tmp_path / "Itzama_061125_1018_model.json").write_text("{}")  # the model the trainer wrote beside it
    report = inspect_model(path)
    assert report["format"] == SUMMARY_FORMAT and report["frames"] == 0 and report["feature_dim"] == 768
    facts = report["training"]
    assert facts["training_successful"] is True and facts["events_processed"] == 3000
    assert facts["oracle"]["total_patterns"] == 55964 and facts["oracle"]["total_states"] == 3001
    assert facts["oracle"]["distance_threshold"] == 250.6 and facts["oracle"]["distance_function"] == "euclidean"
    assert facts["times"] == {"training_statistics.total_training_time": 812.5,
                              "training_statistics.audio_oracle_training_time": 301.2}
    assert facts["flags"]["training_successful"] is True and facts["flags"]["audio_oracle_stats.is_trained"]
    assert facts["rhythm_oracle"] == {"total_patterns": 42, "avg_tempo": 118.0, "avg_density": 0.61}
    assert facts["tokens"]["unique"] == 61 and facts["tokens"]["frames_with_token"] == 3000
    assert facts["model_file"]["beside"].endswith("Itzama_061125_1018_model.json")
    assert report["findings"] == [] and report["summary"] == {"error": 0, "warning": 0, "info": 0}


def test_numbers_that_betray_a_fault_become_findings(tmp_path):
    report = inspect_model(write(tmp_path / "run_summary.json", broken()))
    by_code = {f["code"]: f for f in report["findings"]}
    assert set(by_code) == {F.PATTERNS_COLLAPSED, F.TOKEN_COLLAPSE, F.TOKENS_MISSING, F.RECORDS_LOST,
                            F.FEATURES_LOW_DIM}
    assert by_code[F.PATTERNS_COLLAPSED]["message"].startswith("1 distinct pattern for 3000 events")
    assert by_code[F.TOKENS_MISSING]["evidence"] == {"present": 0, "n_records": 3000,
                                                     "source": "training_statistics.frames_with_gesture_token"}
    assert by_code[F.RECORDS_LOST]["severity"] == "warning" and "500 did not reach it" in by_code[F.RECORDS_LOST]["message"]
    assert all(f["meaning"] and f["action"] for f in report["findings"])
    assert [f["severity"] for f in report["findings"]] == ["error"] * 3 + ["warning"] * 2


def test_a_failed_training_says_so():
    facts = describe_summary({"training_successful": False, "error": "Training failed"})
    (hit,) = summary_findings(facts)
    assert hit.code == F.TRAINING_FAILED and hit.severity == "error"


def test_modular_summary_and_the_model_it_names(tmp_path):
    doc = {"metadata": {"version": "2.0", "created_at": "2025-11-06T10:18:00", "training_source": "Itzama.wav",
                        "git_commit": "f81aa4a"},
           "data": {**healthy(7000), "model_file": "/somewhere/else/Itzama_model.json"}}
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "Itzama_model.json").write_text("{}")
    path = write(tmp_path / "Itzama_summary.json", doc)
    report = inspect_model(path)
    facts = report["training"]
    assert facts["events_processed"] == 7000 and facts["source"] == "Itzama.wav"
    assert facts["metadata"]["git_commit"] == "f81aa4a"
    assert facts["model_file"]["named"] == "/somewhere/else/Itzama_model.json"
    # A path named inside a user's file is only looked for in the summary's own folder.
    assert "beside" not in facts["model_file"]
    (tmp_path / "Itzama_model.json").write_text("{}")
    assert inspect_model(path)["training"]["model_file"]["beside"] == str(tmp_path / "Itzama_model.json")


def test_loading_a_summary_as_a_model_says_what_it_is(tmp_path):
    path = write(tmp_path / "x_summary.json", healthy())
    with pytest.raises(MusicHalSummaryError, match="a MusicHal training summary, not a model") as info:
        load_model(path)
    assert isinstance(info.value, ModelFormatError) and info.value.document["events_processed"] == 3000
    document, metadata = read_summary(path)
    assert document["events_processed"] == 3000 and metadata is None
    with pytest.raises(ModelFormatError, match="not a MusicHal training summary"):
        read_summary(write(tmp_path / "other.json", {"hello": 1}))


def test_what_counts_as_a_summary():
    assert summary_document(healthy()) is not None
    assert summary_document({"audio_frames": {}, "events_processed": 3}) is None  # a model with extras
    assert summary_document({"metadata": {}, "data": {"audio_oracle": {}, "events_processed": 3}}) is None
    assert summary_document({"metadata": {}, "data": {"training_successful": True}}) is not None
    assert summary_document([1, 2]) is None and summary_document({"x": 1}) is None


def test_cli_inspect_shows_the_summary(tmp_path, capsys):
    path = write(tmp_path / "run_summary.json", broken())
    assert main(["inspect", path]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"training summary: {path}") and "musichal-summary" in text
    assert "PATTERNS_COLLAPSED" in text and "means:" in text and "to do:" in text
    assert "events processed: 3000" in text and "total_patterns 1" in text
    assert main(["inspect", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == SUMMARY_FORMAT and len(report["findings"]) == 5
    assert format_report(report).startswith("training summary:")


@pytest.mark.parametrize("value", [None, "x" * 10_000, [1] * 5, {"deep": {"er": {"still": {"more": {}}}}}, 1e308,
                                   -1, True, float("nan")])
def test_any_value_in_any_place_is_described_not_raised(value):
    doc = broken()
    for key in ("training_successful", "events_processed", "audio_oracle_stats", "training_statistics",
                "rhythm_oracle_stats"):
        mutated = dict(doc, **{key: value})
        facts = describe_summary(mutated)
        json.dumps(facts, allow_nan=False)
        summary_findings(facts)
