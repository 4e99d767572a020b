"""End-to-end: play a phrase to the model through a (fake) microphone in headless chromium.

A run is trained on the random melody in a temporary runs folder, the
dashboard is started on it, and chromium is launched with a fake microphone
that plays a phrase cut from that melody
(``--use-file-for-fake-audio-capture``). The test opens the Play page,
presses the recorder's Record button, stops it after a few seconds, and
waits for the answer's audio player; the pair must be kept in the run's
``responses`` folder. A screenshot goes to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from dashboard.serve import CHROMIUM, CHROMIUM_ARGS, wait_idle

from helpers_audio import SR
from helpers_browser import SCREENSHOTS, browser_port, full_page_shot, running_dashboard
from helpers_respond import cut, random_melody, write_random_melody

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

RECORD_SECONDS = 4.0


@pytest.fixture
def play_server(tmp_path):
    port = browser_port(range(8800, 8900))
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    runs = tmp_path / "runs"
    runs.mkdir()
    audio = write_random_melody(tmp_path / "random_melody.wav")
    run = RunDirectory.create(runs, audio, TrainConfig(n_tokens=16, sample_rate=16000), run_id="play-browser")
    run.execute("all")
    assert run.model_path().exists()
    from chandra.model import load_model

    # The fake microphone plays (and loops) a phrase cut from the training
    # audio, then silence, so a recording a little longer than the phrase
    # ends in silence (which the listener trims) rather than in the loop's
    # next start.
    phrase = cut(random_melody(), load_model(run.model_path()).events, 10, 22)
    mic = tmp_path / "fake_microphone.wav"
    floor = 1e-4 * np.random.default_rng(3).standard_normal(3 * SR).astype(np.float32)  # the source's noise floor
    sf.write(str(mic), np.concatenate([phrase, floor]), SR, subtype="PCM_16")
    log = tmp_path / "streamlit.log"
    with running_dashboard(runs, port, log) as base:
        yield {"base": base, "run": run, "mic": mic, "log": log}


def test_play_page_records_from_the_microphone_and_plays_the_answer(play_server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    run = play_server["run"]
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={play_server['mic']}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.grant_permissions(["microphone"], origin=play_server["base"])
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{play_server['base']}/Play?run={run.run_id}", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Play").first.wait_for()
            wait_idle(page)
            page.get_by_text("listens with").first.wait_for()
            assert page.locator('[data-testid="stException"]').count() == 0

            page.get_by_role("button", name="Record", exact=True).click()
            page.get_by_role("button", name="Stop recording").wait_for()
            time.sleep(RECORD_SECONDS)
            page.get_by_role("button", name="Stop recording").click()

            # The recording is uploaded, the script reruns and answers.
            page.get_by_text("The answer", exact=True).first.wait_for(timeout=90_000)
            wait_idle(page)
            page.get_by_role("button", name="Download the answer").wait_for()
            players = page.locator('[data-testid="stAudio"]')
            players.nth(1).wait_for()
            assert players.count() >= 2  # the phrase and the answer
            src = players.nth(1).get_attribute("src") or players.nth(1).locator("audio").first.get_attribute("src")
            assert src, "the answer's audio element has no source"
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0
            page.locator(".js-plotly-plot .main-svg").first.wait_for()
            full_page_shot(page, SCREENSHOTS / "10_play.png", settle_ms=2000)
        finally:
            browser.close()
    from chandra.respond import list_responses

    kept = list_responses(run.path / "responses")
    assert len(kept) == 1 and kept[0]["phrase_name"] == "recording.wav"
    heard, match = kept[0]["summary"]["phrase"], kept[0]["summary"]["match"]
    print("fake microphone phrase:", heard["n_segments"], "segments, gain", round(heard["gain_db"], 2), "dB, trimmed",
          heard["trimmed_s"], "s, coverage", heard["coverage"], "matched frame", match["end_frame"], "context",
          match["context"])
    # Through chromium's capture chain the phrase is still found where it was cut
    # from (frames 10-22); a loaded machine can glitch the capture and add an
    # onset at the ragged end, so one segment of slack.
    assert heard["n_segments"] >= 10 and 21 <= match["end_frame"] <= 23 and match["context"] >= 5
