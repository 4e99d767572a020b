"""AppTest for the diagnostic pages: model inspector, traces, generate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INSPECTOR = str(REPO / "pages" / "6_Model_inspector.py")
TRACES = str(REPO / "pages" / "7_Traces.py")
GENERATE = str(REPO / "pages" / "8_Generate.py")
REFERENCE = REPO.parent / "shared" / "reference" / "musichal_base_model_test_error_fix.json"
TIMEOUT = 180


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("CHANDRA_RUNS_DIR", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


@pytest.fixture
def run_with_model(request, tmp_path, monkeypatch):
    """(runs root, run id) of a run whose every stage is done, model saved.

    A private copy of the shared ``prepared_run`` (so generated files never
    land in the session's run); when conftest lacks that fixture a small run
    is trained here.
    """
    try:
        prepared = request.getfixturevalue("prepared_run")
    except pytest.FixtureLookupError:
        prepared = None
    root = tmp_path / "runs"
    root.mkdir()
    if prepared is not None:
        source = Path(getattr(prepared, "path", prepared))
        path = root / source.name
        shutil.copytree(source, path)
    else:
        from chandra.pipeline import TrainConfig
        from chandra.rundir import RunDirectory

        run = RunDirectory.create(root, REPO / "sample_audio" / "bach_prelude_c.flac",
                                  TrainConfig(n_tokens=8), run_id="diag")
        run.execute("all")
        path = run.path
    monkeypatch.setenv("CHANDRA_RUNS_DIR", str(root))
    assert (path / "model.chandra").exists()
    return root, path.name


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def _metric(at, label: str):
    return next(m.value for m in at.metric if m.label == label)


# --------------------------------------------------------------------------- inspector


@pytest.mark.skipif(not REFERENCE.exists(), reason="MusicHal reference model not present in ../shared/reference")
def test_inspector_shows_musichal_findings_first(runs_dir):
    at = AppTest.from_file(INSPECTOR, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    example = next(b for b in at.button if b.label.startswith("Example"))
    example.click().run()
    assert not at.exception
    errors = _errors(at)
    assert any("TOKENS_MISSING" in e and "0 of 1000" in e and "gesture_token" in e for e in errors), errors
    assert any("EPOCH_TIME" in e for e in errors), errors
    assert _metric(at, "frames with gesture_token") == "0 of 1000"
    assert any("musichal-base" in c.value for c in at.caption)
    # Findings come before the figures: the first element after the header
    # block that is an alert is an error, and the matrix marks the lost cell.
    charts = at.get("plotly_chart")
    assert len(charts) >= 4
    matrix = json.loads(charts[0].proto.spec)
    assert "LOST" in json.dumps(matrix["data"][0]["text"])


def test_inspector_bad_file_shows_error_in_place(runs_dir, tmp_path):
    bad = tmp_path / "broken.chandra"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    at = AppTest.from_file(INSPECTOR, default_timeout=TIMEOUT)
    at.run()
    at.text_input(key="inspector_path_input").set_value(str(bad)).run()
    assert not at.exception
    assert any("broken.chandra" in e for e in _errors(at)), _errors(at)
    # The page keeps working: another (missing) path gives another error, no crash.
    at.text_input(key="inspector_path_input").set_value(str(tmp_path / "nope.json")).run()
    assert not at.exception
    assert any("no such file" in e for e in _errors(at))
    notjson = tmp_path / "list.json"
    notjson.write_text("[1, 2, 3]")
    at.text_input(key="inspector_path_input").set_value(str(notjson)).run()
    assert not at.exception and _errors(at)


def test_inspector_current_run_model(run_with_model):
    root, run_id = run_with_model
    at = AppTest.from_file(INSPECTOR, default_timeout=TIMEOUT)
    at.query_params["run"] = run_id
    at.run()
    next(b for b in at.button if b.label == "Current run's model").click().run()
    assert not at.exception
    assert any("Format **chandra**" in c.value for c in at.caption)
    frames = _metric(at, "frames")
    assert _metric(at, "frames with gesture_token") == f"{frames} of {frames}"
    assert not [e for e in _errors(at) if "FIELD_LOST" in e]


# --------------------------------------------------------------------------- traces


def test_traces_page_example_names_each_checkpoint(runs_dir):
    at = AppTest.from_file(TRACES, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    next(b for b in at.button if b.label == "Generate the example trace").click().run()
    assert not at.exception
    assert (runs_dir / "example_trace" / "index.json").exists()
    errors = _errors(at)
    assert any("EPOCH_TIME" in e and "`events`" in e for e in errors), errors
    assert any("TOKEN_COLLAPSE" in e and "`join`" in e for e in errors), errors
    assert any("FIELD_LOST" in e and "`save`" in e and "gesture_token" in e for e in errors), errors
    table = at.dataframe[0].value
    assert {"checkpoint", "code"} <= set(table.columns)
    assert set(table["checkpoint"]) >= {"events", "join", "save"}
    charts = at.get("plotly_chart")
    matrix = json.loads(charts[0].proto.spec)
    assert "LOST" in json.dumps(matrix["data"][0]["text"])

    # A fresh session finds the example by default.
    at2 = AppTest.from_file(TRACES, default_timeout=TIMEOUT)
    at2.run()
    assert at2.text_input(key="trace_dir_input").value.endswith("example_trace")
    assert any("FIELD_LOST" in e for e in _errors(at2))


def test_traces_page_bad_directory(runs_dir, tmp_path):
    at = AppTest.from_file(TRACES, default_timeout=TIMEOUT)
    at.run()
    at.text_input(key="trace_dir_input").set_value(str(tmp_path)).run()
    assert not at.exception
    assert any("index.json" in e for e in _errors(at)), _errors(at)


# --------------------------------------------------------------------------- generate


def test_generate_page_produces_audio(run_with_model):
    root, run_id = run_with_model
    at = AppTest.from_file(GENERATE, default_timeout=TIMEOUT)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception
    assert at.text_input(key="generate_model_path_input").value.endswith("model.chandra")
    at.number_input[0].set_value(8.0)  # seconds
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    assert len(at.get("audio")) == 1
    assert [d.label for d in at.get("download_button")] == ["Download WAV"]
    assert float(_metric(at, "seconds")) >= 8.0
    # The generated stage sits beside the training ledger in the field matrix.
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    matrix = next(s for s in specs if "Fields surviving" in json.dumps(s["layout"].get("title", {})))
    rows = matrix["data"][0]["y"]
    assert rows[-1].startswith("generated") and any(r.startswith("saved") for r in rows)
    assert "LOST" not in json.dumps(matrix["data"][0]["text"])
    # The record and WAV are on disk in the run (session state holds only the path).
    gens = list((root / run_id / "generations").glob("gen_*.wav"))
    assert len(gens) == 1
    record = json.loads(gens[0].with_suffix(".json").read_text())
    assert record["ledger_entry"]["stage"] == "generated"


def test_generate_page_weight_mode_taboo_and_quality(run_with_model):
    root, run_id = run_with_model
    at = AppTest.from_file(GENERATE, default_timeout=TIMEOUT)
    at.query_params["run"] = run_id
    at.run()
    at.number_input[0].set_value(6.0)  # seconds
    at.text_input(key="generate_where").set_value("consonance > 0.1").run()
    at.radio(key="generate_where_mode").set_value("weight").run()
    at.number_input(key="generate_where_weight").set_value(8.0)
    at.number_input(key="generate_taboo").set_value(4)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, at.exception
    assert not _errors(at)
    for label in ("distinct frames", "top-2 frames", "longest copy", "median jump LRS", "restarts"):
        _metric(at, label)
    record = json.loads(next((root / run_id / "generations").glob("gen_*.json")).read_text())
    params = record["generation"]["params"]
    assert (params["where_mode"], params["where_weight"], params["taboo"]) == ("weight", 8.0, 4)
    assert record["summary"]["qualifying_frames"] == params["source_frames"]  # weight mode: all playable


def test_generate_page_constraint_errors_in_place(run_with_model):
    root, run_id = run_with_model
    at = AppTest.from_file(GENERATE, default_timeout=TIMEOUT)
    at.query_params["run"] = run_id
    at.run()
    at.text_input(key="generate_where").set_value("consonance >").run()
    assert any("column" in e for e in _errors(at)), _errors(at)
    at.text_input(key="generate_where").set_value("consonance > 5").run()
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception
    assert any("no frame satisfies" in e for e in _errors(at)), _errors(at)
    assert len(at.get("audio")) == 0
    at.text_input(key="generate_where").set_value("not_a_field > 1").run()
    assert any("not_a_field" in e for e in _errors(at))


def test_generate_page_without_run(runs_dir):
    at = AppTest.from_file(GENERATE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert any("No current run" in i.value for i in at.info)
