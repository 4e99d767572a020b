"""AppTest of the Play page: upload (or record) a phrase, get the answer, replay earlier pairs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from helpers_audio import SR  # noqa: E402
from helpers_respond import cut, random_melody, write_random_melody  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGE = "pages/10_Play.py"
TIMEOUT = 120


@pytest.fixture(scope="module")
def play_run(runs_root, tmp_path_factory):
    """A finished run (dsp, K = 16) on the random melody, with its model saved."""
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    audio = write_random_melody(tmp_path_factory.mktemp("play_audio") / "random_melody.wav")
    run = RunDirectory.create(runs_root, audio, TrainConfig(n_tokens=16), run_id="play-random-k16")
    run.execute("all")
    assert run.model_path().exists()
    return run


def _wav_bytes(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _play_page(run) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.run_id
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at) -> dict[str, str]:
    """Metrics by label, the first of each (the current pair comes before any replayed one)."""
    out: dict[str, str] = {}
    for m in at.metric:
        out.setdefault(m.label, m.value)
    return out


def test_play_page_answers_an_uploaded_phrase_and_keeps_the_pair(play_run):
    from chandra.model import load_model
    from chandra.respond import list_responses

    at = _play_page(play_run)
    assert at.text_input(key="play_model_path_input").value == str(play_run.model_path())
    events = load_model(play_run.model_path()).events
    phrase = _wav_bytes(cut(random_melody(), events, 10, 22))
    at.file_uploader(key="play_upload_input").upload("my phrase.wav", phrase, "audio/wav")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    metrics = _metrics(at)
    assert metrics["segments"] == "13" and metrics["context"] == "13 of 13"
    assert metrics["matched at"] == f"{float(events[22]['t']):.2f} s"
    assert len(at.get("audio")) == 2  # the phrase and the answer
    assert len(at.get("plotly_chart")) == 1
    kept = list_responses(play_run.path / "responses")
    assert len(kept) == 1 and kept[0]["phrase_name"] == "my_phrase.wav"
    assert kept[0]["summary"]["match"]["end_frame"] == 22
    assert (play_run.path / "responses" / kept[0]["phrase_file"]).read_bytes() == phrase

    # another mode: a second pair; the first is offered for replay
    at.radio(key="play_mode").set_value("imitate").run()
    assert not at.exception and not at.error
    assert len(list_responses(play_run.path / "responses")) == 2
    assert at.selectbox(key="play_replay") is not None
    assert len(at.get("audio")) == 4  # current pair + the replayed one


def test_play_page_answers_a_recording(play_run):
    at = _play_page(play_run)
    from chandra.model import load_model

    events = load_model(play_run.model_path()).events
    at.audio_input(key="play_record_input").set_value(("recording.wav", _wav_bytes(cut(random_melody(), events, 30, 40)),
                                                       "audio/wav"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _metrics(at)["matched at"] == f"{float(events[40]['t']):.2f} s"


@pytest.mark.parametrize("payload,fragment", [
    (lambda: _wav_bytes(np.zeros(SR, dtype=np.float32)), "silent"),
    (lambda: _wav_bytes(random_melody()[: SR // 5]), "at least 0.50 s"),
    (lambda: b"RIFF" + b"\0" * 60, "not a readable audio file"),
])
def test_play_page_shows_bad_phrases_in_place(play_run, payload, fragment):
    at = _play_page(play_run)
    at.file_uploader(key="play_upload_input").upload("bad.wav", payload(), "audio/wav")
    at.run()
    assert not at.exception
    errors = " ".join(str(e.value) for e in at.error)
    assert fragment in errors, errors
    assert at.radio(key="play_mode") is not None  # the page keeps working


def test_play_page_refuses_a_model_without_source_audio(play_run, runs_root, tmp_path):
    from chandra.model import load_model, save_model

    model = load_model(play_run.model_path())
    model.audio = None
    path = runs_root / "_uploads" / "no_audio.chandra"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path)
    at = _play_page(play_run)
    at.text_input(key="play_model_path_input").set_value(str(path)).run()
    assert not at.exception
    assert any("no source audio" in str(e.value) for e in at.error)
