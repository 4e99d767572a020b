"""The dashboard's corpus path: several takes on Home, a take picker on Audio & segments,
tokens per take on Vocabulary, the ledger split per file, and the take of each generated
passage on Generate. One 3-take corpus is trained once for the session."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from helpers_audio import SR, write_takes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TIMEOUT = 120


@pytest.fixture(scope="session")
def corpus_takes(tmp_path_factory) -> list[Path]:
    return write_takes(tmp_path_factory.mktemp("corpus_takes") / "session", nested=True)


@pytest.fixture(scope="session")
def corpus_run(runs_root, corpus_takes):
    """The three takes trained as one corpus run (dsp, K = 8), directly (no queue)."""
    from chandra.corpus import collect_inputs
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    run = RunDirectory.create_corpus(runs_root, collect_inputs([corpus_takes[0].parent]), TrainConfig(n_tokens=8),
                                     run_id="corpus-fixture")
    run.execute("all")
    return run


def _app(run=None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if run is not None:
        at.session_state["run_id"] = run.run_id
    return at


def _page(run, page: str) -> AppTest:
    at = _app(run)
    at.run()
    assert not at.exception, at.exception
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def _frame(at, *columns: str):
    """The first dataframe shown with all of ``columns`` (AppTest keeps no key for dataframes)."""
    for frame in at.dataframe:
        if set(columns) <= set(frame.value.columns):
            return frame.value
    raise AssertionError(f"no dataframe with columns {columns}")


def _array(value) -> np.ndarray:
    """A plotly JSON array, plain or binary-encoded (``{"dtype", "bdata", "shape"}``)."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        shape = [int(n) for n in str(value.get("shape", "")).split(",") if n.strip()] or [-1]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).reshape(shape)
    return np.asarray(value)


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# --------------------------------------------------------------------------- the run itself


def test_a_corpus_run_records_its_takes_and_stores_them_end_to_end(corpus_run, corpus_takes):
    from chandra.io_utils import sha256_file
    from chandra.model import load_model

    meta = corpus_run.meta()
    assert meta["kind"] == "corpus" and corpus_run.is_corpus
    expected = corpus_takes  # folder order: take0, take1, z_later/take2
    assert [row["path"] for row in meta["inputs"]] == [str(p.resolve()) for p in expected]
    assert [row["sha256"] for row in meta["inputs"]] == [sha256_file(p) for p in expected]
    assert {info["status"] for info in corpus_run.status().values()} == {"done"}
    model = load_model(corpus_run.model_path())
    assert model.is_corpus and len(model.files()) == 3
    assert meta["audio_sha256"] == model.provenance["input"]["sha256"]
    state = corpus_run.load_state()
    files = corpus_run.corpus_files()
    offsets = model.take_offsets()
    assert [f["offset_samples"] for f in files] == list(offsets[:-1])
    np.testing.assert_array_equal(state.signal, model.audio)
    # segments in corpus time: take k's segment starts are its events' t plus the take's offset
    takes = corpus_run.segment_takes()
    np.testing.assert_array_equal(takes, model.takes())
    t = np.array([e["t"] for e in model.events]) + np.array([files[k]["offset_s"] for k in takes])
    np.testing.assert_allclose(state.segments.start, t, atol=1e-9)
    np.testing.assert_array_equal(state.tokens, model.tokens())


def test_a_corpus_run_reruns_as_one_job_from_the_feature_cache(runs_root, corpus_takes):
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    run = RunDirectory.create_corpus(runs_root, corpus_takes[:2], TrainConfig(n_tokens=6), run_id="corpus-rerun")
    run.execute("all")
    first = run.meta()["summaries"]["encode"]["feature_cache"]
    run.set_config(TrainConfig(n_tokens=5))
    status = run.status()
    assert status["vocabulary"]["status"] == "stale" and status["encode"]["status"] == "done"
    run.execute(["vocabulary"])  # any request trains the whole corpus again
    assert {info["status"] for info in run.status().values()} == {"done"}
    assert run.meta()["summaries"]["encode"]["feature_cache"] == {"hit": 2}, first
    assert run.meta()["summaries"]["vocabulary"]["n_tokens"] == 5


def test_a_corpus_take_that_is_not_audio_fails_every_stage_with_its_name(runs_root, corpus_takes, tmp_path):
    from chandra.errors import ChandraError
    from chandra.rundir import RunDirectory

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt not audio at all" * 4)
    run = RunDirectory.create_corpus(runs_root, [corpus_takes[0], bad], run_id="corpus-broken")
    with pytest.raises(ChandraError, match="broken.wav"):
        run.execute("all")
    status = run.status()
    assert {info["status"] for info in status.values()} == {"failed"}
    assert "broken.wav" in status["load"]["error"]


def test_save_uploads_keeps_good_takes_and_names_the_bad_one(runs_root, corpus_takes):
    from dashboard import common

    class Upload:
        def __init__(self, file_id, name, data):
            self.file_id, self.name, self._data = file_id, name, data
            self.reads = 0

        def getvalue(self):
            self.reads += 1
            return self._data

    good = [Upload(f"id{k}", p.name, p.read_bytes()) for k, p in enumerate(corpus_takes)]
    bad = Upload("idx", "noise.wav", b"RIFF\x24\x00\x00\x00WAVEfmt nope" * 8)
    outcomes: dict = {}
    paths, errors = common.save_uploads([good[0], bad, good[1], good[2]], outcomes)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in corpus_takes]
    assert len(errors) == 1 and errors[0].startswith("noise.wav: ")
    again, _ = common.save_uploads([good[0], bad, good[1], good[2]], outcomes)
    assert again == paths and all(u.reads == 1 for u in good + [bad])  # checked once per upload


# --------------------------------------------------------------------------- Home


def test_home_trains_a_folder_of_takes_as_a_corpus(runs_root, corpus_takes, monkeypatch):
    from chandra.rundir import RunDirectory
    from dashboard import common

    folder = corpus_takes[0].parent
    monkeypatch.setenv("CHANDRA_DATA_DIRS", str(folder))
    at = _app()
    at.run()
    at.radio(key="train_mode").set_value("several files or a folder").run()
    at.radio(key="corpus_source").set_value("server paths").run()
    at.text_area(key="corpus_paths").input(str(folder)).run()
    assert not at.exception, at.exception
    found = _frame(at, "name", "sample rate (Hz)")
    assert list(found["name"]) == ["take0.wav", "take1.wav", "take2.wav"]
    assert list(found["sample rate (Hz)"]) == [SR, 44100, SR]
    assert list(found["duration (s)"]) == [3.7, 4.7, 4.2]
    assert any("3 take(s) found" in t for t in _texts(at.markdown))
    at.radio(key="p_k_mode").set_value("number").run()
    at.number_input(key="p_k").set_value(8).run()
    at.button(key="run_all").click().run()
    assert not at.exception, at.exception
    run = RunDirectory(runs_root / at.session_state["run_id"])
    assert run.is_corpus and [r["name"] for r in run.inputs()] == ["take0.wav", "take1.wav", "take2.wav"]
    assert common.wait_for_job(run, timeout=180)
    at.run()
    assert not at.exception, at.exception
    assert {info["status"] for info in run.status().values()} == {"done"}, run.status()
    assert list(_frame(at, "name", "segments", "tokens_used")["name"]) == ["take0.wav", "take1.wav", "take2.wav"]
    assert at.toggle(key="home_field_matrix_split") is not None


def test_choosing_several_files_before_choosing_any_is_not_an_error(runs_root):
    at = _app()
    at.run()
    at.radio(key="train_mode").set_value("several files or a folder").run()
    for source in ("samples", "server paths"):
        at.radio(key="corpus_source").set_value(source).run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        assert any("No takes chosen yet." in t for t in _texts(at.caption)), source


def test_home_refuses_a_corpus_folder_outside_the_allowed_folders(runs_root, corpus_takes):
    before = {p.name for p in runs_root.iterdir()}
    at = _app()
    at.run()
    at.radio(key="train_mode").set_value("several files or a folder").run()
    at.radio(key="corpus_source").set_value("server paths").run()
    at.text_area(key="corpus_paths").input(str(corpus_takes[0].parent)).run()
    at.button(key="run_all").click().run()
    assert not at.exception
    assert any("outside" in e or "not allowed" in e or "allowed" in e for e in _texts(at.error)), _texts(at.error)
    assert {p.name for p in runs_root.iterdir()} == before


# --------------------------------------------------------------------------- pages


def test_audio_page_picks_a_take_and_plays_that_takes_audio(corpus_run):
    at = _page(corpus_run, "pages/1_Audio_and_segments.py")
    files = corpus_run.corpus_files()
    picker = at.selectbox(key="audio_take")
    assert picker.options == [f"{k} · {f['name']} · {f['duration']:.1f} s" for k, f in enumerate(files)]
    assert _metrics(at)["duration"] == f"{files[0]['duration']:.2f} s"
    picker.set_value(1).run()
    assert not at.exception, at.exception
    m = _metrics(at)
    assert m["duration"] == f"{files[1]['duration']:.2f} s"
    assert int(m["segments"]) == files[1]["n_events"]
    table = _frame(at, "start", "end", "token")
    assert table["start"].iloc[0] < 0.5 and table["end"].max() <= files[1]["duration"] + 1e-6  # the take's seconds
    # the segment player cuts from take 1's own audio
    from chandra.model import load_model

    model = load_model(corpus_run.model_path())
    off = model.take_offsets()
    clip = at.get("audio")[0]
    assert clip is not None
    from chandra.corpus_view import take_view

    view = take_view(corpus_run.load_state(), files, corpus_run.segment_takes(), 1)
    np.testing.assert_array_equal(view.signal, model.audio[off[1]:off[2]])
    html = at.get("iframe")[0].proto.srcdoc
    assert 'id="chandra-audio"' in html
    assert f"{files[1]['n_events']} onsets: all drawn" in " ".join(_texts(at.caption))


def test_vocabulary_page_heatmap_is_the_token_usage(corpus_run):
    from chandra.model import load_model

    at = _page(corpus_run, "pages/3_Vocabulary.py")
    model = load_model(corpus_run.model_path())
    usage = model.vocabulary["per_file"]
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    heat = next(spec for key, spec in charts.items() if "take_token_heatmap" in key)
    usage_trace = next(t for t in heat["data"] if t.get("meta") == "usage")
    np.testing.assert_array_equal(_array(usage_trace["z"]), np.asarray(usage["counts"]))
    assert usage_trace["y"] == [f"{k} · {f['name']}" for k, f in enumerate(model.files())]
    table = _frame(at, "tokens used", "owned")
    assert list(table["tokens used"]) == usage["unique"]
    heard = [c for c in _texts(at.caption) if c.startswith("segments ")]
    assert heard and re.search(r"\d+ \(take\d\.wav \d+\.\d\d–\d+\.\d\d s\)", heard[0]), heard
    at.radio(key="take_heatmap_value").set_value("share of the take").run()
    assert not at.exception


def test_events_page_splits_the_ledger_per_file(corpus_run):
    at = _page(corpus_run, "pages/4_Events_and_fields.py")
    assert len([c for c in at.get("plotly_chart") if "field_matrix" in c.proto.id]) == 1
    assert any("each inside its own take" in s for s in _texts(at.success)), _texts(at.error)
    at.toggle(key="field_matrix_split").set_value(True).run()
    assert not at.exception, at.exception
    per_take = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "field_matrix_take" in c.proto.id]
    assert len(per_take) == 3
    files = corpus_run.corpus_files()
    for k, spec in enumerate(per_take):
        assert f"take {k} · {files[k]['name']}" in spec["layout"]["title"]["text"]
        text = json.dumps(spec["data"])
        assert f"{files[k]['n_events']}" in text


def test_generate_shows_the_take_of_each_passage(corpus_run):
    at = _page(corpus_run, "pages/8_Generate.py")
    at.button[[b.label for b in at.button].index("Generate")].click().run()
    assert not at.exception, at.exception
    record_path = Path(at.session_state["generation_record"])
    record = json.loads(record_path.read_text())
    assert [t["name"] for t in record["takes"]] == [f["name"] for f in corpus_run.corpus_files()]
    frames = record["generation"]["frames"]
    from chandra.model import load_model

    model = load_model(corpus_run.model_path())
    assert record["generation"]["takes"] == model.takes()[frames].tolist()
    passages = _frame(at, "take_name", "steps")
    assert set(passages["take_name"]) <= {f["name"] for f in model.files()}
    assert passages["steps"].sum() == len(frames)
    band = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "gen_take_band" in c.proto.id)
    assert {t["meta"] for t in band["data"]} == {f"take {k}" for k in set(passages["take"])}


# --------------------------------------------------------------------------- one file stays as it was


def test_a_one_file_run_is_unchanged_and_its_pages_show_no_take(prepared_run):
    meta = prepared_run.meta()
    assert set(meta) == {"run_id", "created", "audio_path", "audio_name", "audio_sha256", "config", "stages",
                         "ledger", "summaries", "findings", "job"}
    assert not prepared_run.is_corpus and prepared_run.corpus_files() == [] and prepared_run.segment_takes() is None
    assert [r["sha256"] for r in prepared_run.inputs()] == [meta["audio_sha256"]]
    assert not (prepared_run.path / "files.json").exists() and not (prepared_run.path / "takes.npy").exists()
    at = _page(prepared_run, "pages/1_Audio_and_segments.py")
    assert not [s for s in at.selectbox if s.key == "audio_take"]
    assert at.number_input(key="play_segment") is not None  # the one-file widget keys
    at = _page(prepared_run, "pages/3_Vocabulary.py")
    assert not [c for c in at.get("plotly_chart") if "take_token_heatmap" in c.proto.id]
    at = _page(prepared_run, "pages/4_Events_and_fields.py")
    assert not [t for t in at.toggle if t.key == "field_matrix_split"]
    at = _app(prepared_run)
    at.run()
    assert not [t for t in at.toggle if t.key == "home_field_matrix_split"]
    assert not [r for r in at.radio if r.key == "corpus_source"]  # one file is the default mode


@pytest.mark.parametrize("page", ["pages/2_Features.py", "pages/5_Oracle.py", "pages/6_Model_inspector.py",
                                  "pages/7_Traces.py", "pages/10_Play.py"])
def test_every_other_page_opens_a_corpus_run(corpus_run, page):
    at = _page(corpus_run, page)
    assert not at.error or all("Traceback" not in e for e in _texts(at.error))


def test_home_shows_a_failed_corpus_once_with_the_takes_name(runs_root, corpus_takes, tmp_path):
    from chandra.errors import ChandraError
    from chandra.rundir import RunDirectory

    bad = tmp_path / "silence_of_nothing.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt not audio" * 4)
    run = RunDirectory.create_corpus(runs_root, [corpus_takes[0], bad], run_id="corpus-failed-home")
    with pytest.raises(ChandraError):
        run.execute("all")
    at = _app(run)
    at.run()
    assert not at.exception, at.exception
    errors = [e for e in _texts(at.error) if "silence_of_nothing.wav" in e]
    # once in the pipeline strip, once as the findings box's STAGE_FAILED (not once per stage)
    assert len(errors) == 2 and errors[0].startswith("The corpus failed (8 stages)"), _texts(at.error)
    assert "STAGE_FAILED" in errors[1] and "the corpus training failed (load, segment" in errors[1]
    assert _metrics(at)["errors"] == "1"
