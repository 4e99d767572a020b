"""AppTest of the home page and the stage pages against prepared runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGES = {
    "audio": "pages/1_Audio_and_segments.py",
    "features": "pages/2_Features.py",
    "vocabulary": "pages/3_Vocabulary.py",
    "events": "pages/4_Events_and_fields.py",
    "oracle": "pages/5_Oracle.py",
}
TIMEOUT = 120


def _app(run=None, *, via: str = "session") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if run is not None:
        if via == "session":
            at.session_state["run_id"] = run.run_id
        else:
            at.query_params["run"] = run.run_id
    return at


def _page(run, page: str) -> AppTest:
    at = _app(run)
    at.run()
    assert not at.exception, at.exception
    at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


# --------------------------------------------------------------------------- home


def test_home_without_a_run(runs_root):
    at = _app()
    at.run()
    assert not at.exception
    assert any("No run selected" in t for t in _texts(at.info))
    assert at.button(key="run_all") is not None


def test_home_shows_pipeline_matrix_and_findings(prepared_run):
    at = _app(prepared_run, via="query")
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["run_id"] == prepared_run.run_id
    assert at.query_params["run"] == [prepared_run.run_id] or at.query_params["run"] == prepared_run.run_id
    markdown = " ".join(_texts(at.markdown))
    for stage in ("load", "segment", "encode", "vocabulary", "harmony", "events", "oracle", "save"):
        assert f"**{stage}**" in markdown
    captions = " ".join(_texts(at.caption))
    assert "done" in captions and "segments" in captions and "with gesture_token" in captions
    assert {"errors", "warnings", "info"} <= set(_metrics(at))
    assert _metrics(at)["errors"] == "0"
    assert len(at.get("plotly_chart")) == 2  # field matrix + token strip
    assert not [e for e in _texts(at.error) if "FIELD_LOST" in e]


def test_home_flags_the_lost_gesture_token(lost_field_run):
    at = _app(lost_field_run)
    at.run()
    assert not at.exception
    errors = _texts(at.error)
    assert any("FIELD_LOST" in e and "gesture_token" in e for e in errors), errors
    assert int(_metrics(at)["errors"]) >= 1


def test_home_shows_a_failed_stage_in_place(failed_run):
    at = _app(failed_run)
    at.run()
    assert not at.exception
    errors = _texts(at.error)
    assert any("vocabulary" in e and "failed" in e for e in errors), errors
    # the page kept going: the pipeline strip and findings are still there
    assert "errors" in _metrics(at)


def test_stale_stages_after_a_parameter_change(prepared_run, runs_root):
    import shutil

    from chandra.rundir import RunDirectory

    path = runs_root / "stale-copy"
    if not path.exists():
        shutil.copytree(prepared_run.path, path)
    run = RunDirectory(path)
    cfg = run.config()
    cfg.n_tokens = 8
    run.set_config(cfg)
    at = _app(run)
    at.run()
    assert not at.exception
    captions = _texts(at.caption)
    assert sum(c.startswith("stale") for c in captions) == 4  # vocabulary, events, oracle, save
    assert sum(c.startswith("done") for c in captions) == 4  # load, segment, encode, harmony


def test_two_sessions_keep_their_own_runs(prepared_run, lost_field_run):
    a, b = _app(prepared_run), _app(lost_field_run)
    a.run()
    b.run()
    assert a.session_state["run_id"] == prepared_run.run_id
    assert b.session_state["run_id"] == lost_field_run.run_id
    assert any(prepared_run.run_id in c for c in _texts(a.caption))
    assert any(lost_field_run.run_id in c for c in _texts(b.caption))


@pytest.fixture
def audio_dir_allowed(synthetic_audio, monkeypatch):
    """The synthetic clip's folder named as a data folder (as ``--data-dir`` would)."""
    monkeypatch.setenv("CHANDRA_DATA_DIRS", str(synthetic_audio.parent))
    return synthetic_audio


def _run_ids(root) -> set[str]:
    return {p.name for p in Path(root).iterdir() if (p / "run.json").exists()}


def test_run_all_with_a_missing_file_shows_the_error_in_place(runs_root, audio_dir_allowed):
    before = _run_ids(runs_root)
    at = _app()
    at.run()
    at.radio(key="audio_source").set_value("server path").run()
    at.text_input(key="audio_path").input(str(audio_dir_allowed.parent / "no-such-recording.wav")).run()
    at.button(key="run_all").click().run()
    assert not at.exception
    assert any("no such file" in e for e in _texts(at.error)), _texts(at.error)
    assert _run_ids(runs_root) == before


@pytest.mark.parametrize("typed", ["/etc/passwd", "/no/such/recording.wav", "sample_audio/../README.md",
                                   "../../../../../../etc/hostname"])
def test_home_refuses_paths_outside_the_allowed_folders(runs_root, typed):
    """No run (and no hash) for a path outside the roots, whether it exists or not,
    and the error says why without anything read from the file."""
    before = _run_ids(runs_root)
    at = _app()
    at.run()
    at.radio(key="audio_source").set_value("server path").run()
    at.text_input(key="audio_path").input(typed).run()
    at.button(key="run_all").click().run()
    assert not at.exception
    errors = _texts(at.error)
    assert any("outside the folders this server may use" in e for e in errors), errors
    assert _run_ids(runs_root) == before
    assert "run_id" not in at.session_state


def test_home_refuses_a_symlink_that_leaves_a_data_folder(runs_root, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "outside" / "secret.wav"
    secret.parent.mkdir()
    secret.write_bytes(b"RIFF-not-for-you")
    (data / "take.wav").symlink_to(secret)
    monkeypatch.setenv("CHANDRA_DATA_DIRS", str(data))
    before = _run_ids(runs_root)
    at = _app()
    at.run()
    at.radio(key="audio_source").set_value("server path").run()
    at.text_input(key="audio_path").input(str(data / "take.wav")).run()
    at.button(key="run_all").click().run()
    errors = _texts(at.error)
    assert any("outside the folders" in e for e in errors), errors
    assert not any("RIFF" in e for e in errors)
    assert _run_ids(runs_root) == before


def test_a_bad_upload_is_refused_on_arrival_and_leaves_nothing(runs_root):
    """The upload saver decodes the file when it arrives (tested without a
    browser: AppTest has no file uploader, so the page's saver is called)."""
    from chandra.errors import AudioError
    from dashboard import common

    before, runs_before = set(runs_root.rglob("*")), _run_ids(runs_root)
    with pytest.raises(AudioError, match="take.wav: not a readable audio file"):
        common.save_upload("take.wav", b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio" * 8)
    assert set(runs_root.rglob("*")) - before <= {common.upload_dir()}
    assert _run_ids(runs_root) == runs_before
    sample = REPO / "sample_audio" / "bach_prelude_c.flac"
    kept = common.save_upload("../../my take.flac", sample.read_bytes())
    assert kept.name == "my_take.flac" and kept.parent.parent == common.upload_dir()
    assert kept.read_bytes() == sample.read_bytes()


def test_failed_stage_counts_in_the_findings_box(failed_run):
    at = _app(failed_run)
    at.run()
    assert not at.exception
    assert int(_metrics(at)["errors"]) >= 1
    assert any("STAGE_FAILED" in e and "vocabulary" in e for e in _texts(at.error)), _texts(at.error)


def test_a_queued_run_shows_its_position_and_can_be_cancelled(runs_root, audio_dir_allowed):
    """With one job slot taken, Run all queues the new run: the page shows its
    position, run.json says "queued", and Cancel takes it out of the queue."""
    import threading

    from chandra.rundir import RunDirectory
    from dashboard import common

    queue = common.job_queue()
    old_max = queue.max_workers
    queue.max_workers = 1
    release = threading.Event()
    queue.submit("test-blocker", lambda job: release.wait(60))
    try:
        at = _app()
        at.run()
        at.radio(key="audio_source").set_value("server path").run()
        at.text_input(key="audio_path").input(str(audio_dir_allowed)).run()
        at.radio(key="p_k_mode").set_value("number").run()
        at.number_input(key="p_k").set_value(8).run()
        at.button(key="run_all").click().run()
        assert not at.exception, at.exception
        run = RunDirectory(runs_root / at.session_state["run_id"])
        assert run.job()["status"] == "queued" and run.job()["position"] == 1
        infos = _texts(at.info)
        assert any("Queued: position **1**" in i for i in infos), infos
        at.button(key="cancel_queued").click().run()
        assert not at.exception
        assert run.job()["status"] == "cancelled"
        assert common.job_for(run).status == "cancelled"
        assert all(info["status"] == "not run" for info in run.status().values())
    finally:
        release.set()
        queue.wait("test-blocker", 30)
        queue.max_workers = old_max


def test_run_all_in_the_background_then_k_too_large_error(runs_root, audio_dir_allowed):
    """Run all starts a new run in a background thread; the vocabulary stage
    fails (K > segments) and the page shows that error, not an exception."""
    from chandra.rundir import RunDirectory
    from dashboard import common

    at = _app()
    at.run()
    at.radio(key="audio_source").set_value("server path").run()
    at.text_input(key="audio_path").input(str(audio_dir_allowed)).run()
    assert at.radio(key="p_k_mode").value == "auto"  # the dashboard's default K
    at.radio(key="p_k_mode").set_value("number").run()
    at.number_input(key="p_k").set_value(4000).run()
    # Before training: the segment count, the recommendation, and the largest K that works.
    infos = " ".join(_texts(at.markdown))
    assert "segments" in infos and "recommended **K =" in infos, infos
    assert any("K = 4000 is more than the" in w and "The largest K that works is" in w for w in _texts(at.warning))
    assert at.button(key="use_largest_k") is not None
    at.button(key="run_all").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["run_id"]
    run = RunDirectory(runs_root / run_id)
    assert common.wait_for_job(run, timeout=120)
    at.run()
    assert not at.exception
    errors = _texts(at.error)
    assert any("vocabulary" in e and "failed" in e for e in errors), errors
    status = run.status()
    assert status["segment"]["status"] == "done" and status["vocabulary"]["status"] == "failed"


def test_missing_neural_weights_fail_the_encode_stage_in_place(runs_root, audio_dir_allowed, tmp_path):
    from chandra.rundir import RunDirectory
    from dashboard import common

    at = _app()
    at.run()
    at.radio(key="audio_source").set_value("server path").run()
    at.text_input(key="audio_path").input(str(audio_dir_allowed)).run()
    at.selectbox(key="p_encoder").set_value("wav2vec2").run()
    # A model folder outside the allowed roots is refused before any run exists.
    before = _run_ids(runs_root)
    at.text_input(key="p_model").input(str(tmp_path / "no-weights-here")).run()
    at.button(key="run_all").click().run()
    assert any("outside the folders" in e for e in _texts(at.error)), _texts(at.error)
    assert _run_ids(runs_root) == before
    # Inside a data folder (missing): the encode stage fails in place.
    at.text_input(key="p_model").input(str(audio_dir_allowed.parent / "no-weights-here")).run()
    at.button(key="run_all").click().run()
    run = RunDirectory(runs_root / at.session_state["run_id"])
    assert common.wait_for_job(run, timeout=120)
    at.run()
    assert not at.exception
    errors = _texts(at.error)
    assert any("encode" in e and "failed" in e for e in errors), errors


# --------------------------------------------------------------------------- stage pages


@pytest.mark.parametrize("page", list(PAGES))
def test_page_without_a_run_links_home(runs_root, page):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(PAGES[page]).run()
    assert not at.exception
    assert any("No run selected" in t for t in _texts(at.info))


def test_audio_page(prepared_run):
    at = _page(prepared_run, "audio")
    m = _metrics(at)
    assert m["sample rate"] == "22050 Hz" and int(m["segments"]) >= 16
    # The waveform, rug and spectrogram live in the player page (an iframe), with the audio.
    frames = at.get("iframe")
    assert len(frames) == 1 and not at.get("plotly_chart")
    html = frames[0].proto.srcdoc
    assert 'id="chandra-audio"' in html and "data:audio/ogg;base64," in html
    assert f"{m['segments']} onsets: all drawn" in " ".join(_texts(at.caption))
    table = at.dataframe[0].value
    assert {"id", "start", "end", "duration", "rms_db", "f0", "centroid", "token"} <= set(table.columns)
    assert len(at.get("audio")) == 1  # the chosen segment
    assert not at.get("audio")[0].proto.autoplay  # nothing plays by itself on arrival
    at.number_input(key="play_segment").set_value(3).run()
    assert any("segment 3:" in c for c in _texts(at.caption))
    assert at.get("audio")[0].proto.autoplay  # a segment just picked plays at once
    at.toggle(key="click_track").set_value(True).run()
    assert not at.exception
    assert len(at.get("audio")) == 2


def test_a_token_picked_on_one_page_is_highlighted_on_the_others(prepared_run):
    at = _page(prepared_run, "audio")
    assert at.selectbox(key="audio_highlight").value is None
    counts = np.bincount(np.load(prepared_run.path / "tokens.npy"))
    least = int(np.argsort(-counts, kind="stable")[-1])
    at.selectbox(key="audio_highlight").set_value(least).run()
    assert not at.exception
    assert f"token {least} (" in at.get("iframe")[0].proto.srcdoc  # the highlight trace
    at.switch_page(PAGES["features"]).run()
    assert at.selectbox(key="proj_highlight").value == least
    at.switch_page(PAGES["vocabulary"]).run()
    assert at.selectbox(key="listen_token").value == least
    assert any(f"Listen to token {least}" in h for h in _texts(at.subheader))


def test_features_page(prepared_run):
    at = _page(prepared_run, "features")
    m = _metrics(at)
    assert {"segments", "raw dimension", "dead dimensions", "duplicate rate"} <= set(m)
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # norms + PCA
    legend = [t["name"] for t in json.loads(charts[1].proto.spec)["data"]]
    counts = np.bincount(np.load(prepared_run.path / "tokens.npy"))
    assert legend[0] == f"token {int(np.argmax(counts))} ({counts.max()})"  # most used first
    assert any("PCA of the normalised features (seed 0)" in c for c in _texts(at.caption))
    # nearest neighbours table and players
    assert any("cosine distance" in df.value.columns for df in at.dataframe)
    at.radio(key="proj_method").set_value("UMAP").run()
    assert not at.exception
    assert any("Compute UMAP" in t and "seed=0" in t for t in _texts(at.info))


def test_vocabulary_page(prepared_run):
    at = _page(prepared_run, "vocabulary")
    m = _metrics(at)
    assert m["K"] == "16"
    assert {"active (fit set)", "active (assigned)", "entropy (assigned)", "perplexity", "top-token share"} <= set(m)
    assert len(at.get("plotly_chart")) == 3  # histogram, grids, entropy
    assert len(at.get("audio")) == 1
    counts = np.bincount(np.load(prepared_run.path / "tokens.npy"), minlength=16)
    top = int(np.argmax(counts))
    assert at.selectbox(key="listen_token").value == top  # the most used token first
    assert at.selectbox(key="listen_token").options[0].startswith(f"token {top} · {counts[top]} segments")
    at.selectbox(key="listen_token").set_value(2).run()
    assert not at.exception
    assert any("Listen to token 2" in h for h in _texts(at.subheader))


def test_events_page(prepared_run):
    at = _page(prepared_run, "events")
    assert any("No field is lost" in s for s in _texts(at.success))
    assert any("Time axis OK" in s for s in _texts(at.success))
    m = _metrics(at)
    assert m["with gesture_token"] == f"{m['events']}/{m['events']}"
    # The field count agrees with the matrix beside it: the events row of all its columns.
    ledger = prepared_run.meta()["ledger"]
    columns = {name for e in ledger for name in e["fields"]}
    events_row = next(e for e in ledger if e["stage"] == "events")["fields"]
    assert m["fields at 'events'"] == f"{len(events_row)} of {len(columns)}"
    assert not [e for e in _texts(at.error) if "gesture_token" in e]


def test_events_page_shows_the_lost_field(lost_field_run):
    at = _page(lost_field_run, "events")
    errors = _texts(at.error)
    assert any("FIELD_LOST" in e and "gesture_token" in e and "saved" in e for e in errors), errors
    assert not any("No field is lost" in s for s in _texts(at.success))


def test_oracle_page(prepared_run):
    at = _page(prepared_run, "oracle")
    m = _metrics(at)
    assert int(m["states"]) == int(_metrics(_page(prepared_run, "events"))["events"]) + 1
    assert {"states", "transitions", "root out-degree", "LRS mean", "suffix links to root",
            "invariant violations"} <= set(m)
    assert m["invariant violations"] == "0"
    assert len(at.get("plotly_chart")) == 2  # arcs + LRS


def test_oracle_page_information_rate_sweeps(prepared_run):
    at = _page(prepared_run, "oracle")
    at.button(key="ir_k_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    # 40 segments: the rule recommends K = 8; the prepared run uses K = 16
    assert any("**Recommended K = 8**; this run uses K = 16." in t for t in _texts(at.markdown)), _texts(at.markdown)
    assert any(t.startswith("The rule: K is the largest vocabulary") for t in _texts(at.caption))
    at.button(key="ir_t_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Best θ =" in t for t in _texts(at.caption))
    assert len(at.get("plotly_chart")) == 4  # arcs, LRS, IR over K, IR over θ


def test_pages_say_which_stage_to_run(failed_run):
    at = _page(failed_run, "vocabulary")
    assert any("failed" in e for e in _texts(at.error))
    at = _page(failed_run, "oracle")
    assert any("'oracle'" in w and "has not run" in w for w in _texts(at.warning))
    at = _page(failed_run, "audio")  # load and segment are done: the page works
    assert "segments" in _metrics(at)


@pytest.mark.slow
def test_features_page_umap_on_demand(prepared_run):
    at = _page(prepared_run, "features")
    at.radio(key="proj_method").set_value("UMAP").run()
    at.number_input(key="umap_nn").set_value(5).run()
    at.button(key="umap_go").click().run()
    assert not at.exception, at.exception
    captions = _texts(at.caption)
    assert any("UMAP of the normalised features: n_neighbors=5, min_dist=0.1, metric=cosine, seed=0" in c
               for c in captions), captions
    assert len(at.get("plotly_chart")) == 2


def test_parameters_follow_the_run_and_survive_page_changes(prepared_run):
    at = _app(prepared_run)
    at.run()
    assert at.number_input(key="p_k").value == 16
    at.number_input(key="p_seed").set_value(7).run()
    at.switch_page(PAGES["oracle"]).run()
    at.switch_page("app.py").run()
    assert not at.exception
    assert at.number_input(key="p_k").value == 16
    assert at.number_input(key="p_seed").value == 7  # the unsaved edit is kept
    assert any("differ from this run" in t for t in _texts(at.info))


@pytest.mark.parametrize("text,kept", [("facebook/wav2vec2-base", True), ("m-a-p/MERT-v1-95M", True),
                                       ("wav2vec2", True), ("", None)])
def test_encoder_model_names_pass_and_paths_are_checked(runs_root, text, kept):
    from dashboard import common

    out = common.resolve_model_source(text)
    assert out == (text if kept else None)


@pytest.mark.parametrize("text", ["/etc", "../..", "~/models", "./../../x", "a/b/c", "/tmp/../etc/ssl"])
def test_encoder_model_paths_outside_the_roots_are_refused(runs_root, text):
    from chandra.paths import PathNotAllowedError
    from dashboard import common

    with pytest.raises(PathNotAllowedError):
        common.resolve_model_source(text)


def test_a_job_left_queued_by_a_stopped_server_is_reported(prepared_run, runs_root):
    import shutil

    from chandra.rundir import RunDirectory

    path = runs_root / "orphan-queued"
    if not path.exists():
        shutil.copytree(prepared_run.path, path)
    run = RunDirectory(path)
    run.set_job({"status": "queued", "position": 2, "pid": 999999, "seq": 1})
    at = _app(run)
    at.run()
    assert not at.exception
    assert any("last job was queued in another server process (pid 999999)" in w for w in _texts(at.warning))
