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


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A folder named as a data folder (what ``--data-dir`` does for a server)."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("CHANDRA_DATA_DIRS", str(folder))
    return folder


@pytest.fixture
def outside(tmp_path):
    """A folder outside every allowed root, holding a secret and a valid-looking trace."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "shadow").write_text("root:$6$SECRETHASH:19000:0:99999:7:::\n")
    return folder


def test_inspector_bad_file_shows_error_in_place(runs_dir, data_dir):
    tmp_path = data_dir
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


def test_traces_page_bad_directory(runs_dir, data_dir):
    at = AppTest.from_file(TRACES, default_timeout=TIMEOUT)
    at.run()
    at.text_input(key="trace_dir_input").set_value(str(data_dir)).run()
    assert not at.exception
    assert any("index.json" in e for e in _errors(at)), _errors(at)


# --------------------------------------------------------------------------- allowed roots


@pytest.mark.parametrize("page,key", [(INSPECTOR, "inspector_path_input"), (GENERATE, "generate_model_path_input")])
def test_file_boxes_refuse_paths_outside_the_roots(runs_dir, data_dir, outside, page, key):
    """Absolute paths, ``..`` and symlinks out of an allowed folder are refused
    before anything is read; the error never shows the file's bytes."""
    (data_dir / "link.json").symlink_to(outside / "shadow")
    at = AppTest.from_file(page, default_timeout=TIMEOUT)
    at.run()
    for typed in (str(outside / "shadow"), str(data_dir / ".." / "outside" / "shadow"), str(data_dir / "link.json"),
                  "/etc/passwd"):
        at.text_input(key=key).set_value(typed).run()
        assert not at.exception
        errors = _errors(at)
        assert any("outside the folders this server may use" in e for e in errors), (typed, errors)
        assert not any("SECRET" in e or "root:" in e for e in errors), errors


def test_traces_page_refuses_outside_folders_and_escaping_links(runs_dir, data_dir, outside):
    at = AppTest.from_file(TRACES, default_timeout=TIMEOUT)
    at.run()
    at.text_input(key="trace_dir_input").set_value(str(outside)).run()
    assert any("outside the folders" in e for e in _errors(at)), _errors(at)
    # An allowed folder whose index.json is a link to a file outside.
    trace = data_dir / "trace"
    trace.mkdir()
    (trace / "index.json").symlink_to(outside / "shadow")
    at.text_input(key="trace_dir_input").set_value(str(trace)).run()
    assert not at.exception
    errors = _errors(at)
    assert any("index.json: outside the folders" in e for e in errors), errors
    assert not any("SECRET" in e for e in errors)


def test_generate_writes_only_under_the_runs_folder(run_with_model, tmp_path, monkeypatch):
    """A model in a data folder that looks like a run (it has a run.json)
    gets its generation under <runs>/_generations, never beside the model."""
    root, run_id = run_with_model
    fake_run = tmp_path / "data" / "not-a-run"
    shutil.copytree(root / run_id, fake_run)
    monkeypatch.setenv("CHANDRA_DATA_DIRS", str(tmp_path / "data"))
    at = AppTest.from_file(GENERATE, default_timeout=TIMEOUT)
    at.run()
    at.text_input(key="generate_model_path_input").set_value(str(fake_run / "model.chandra")).run()
    at.number_input[0].set_value(3.0)
    next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception, at.exception
    assert not _errors(at), _errors(at)
    assert not (fake_run / "generations").exists()
    assert len(list((root / "_generations").glob("gen_*.wav"))) == 1
    fake_meta = json.loads((fake_run / "run.json").read_text())
    assert "generated" not in [e["stage"] for e in fake_meta["ledger"]]


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
    from chandra.generation_record import read_generation_record

    record = read_generation_record(gens[0].with_suffix(".json"))
    assert record["format"] == "chandra-generation" and record["wav"] == gens[0].name
    assert record["ledger_entry"]["stage"] == "generated"
    assert record["params"]["output"] == str(gens[0]) and record["params"]["crossfade_ms"] == 20.0
    assert record["summary"]["n_frames"] == len(record["generation"]["frames"])
    # The run's own ledger has the generated stage (a locked read-modify-write).
    run_meta = json.loads((root / run_id / "run.json").read_text())
    assert run_meta["ledger"][-1]["stage"] == "generated"


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
