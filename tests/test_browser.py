"""End-to-end: the real dashboard in headless chromium.

Starts ``streamlit run app.py`` on a free port with a temporary runs folder,
runs the whole pipeline from the home page, visits every page, makes a box
selection in the Features projection, generates audio, inspects the model,
reads the example trace, and saves a screenshot of each page to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from dashboard.serve import launch_chromium, wait_idle
from helpers_browser import REPO, SCREENSHOTS, browser_port, full_page_shot, running_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

REFERENCE = REPO.parent / "shared" / "reference" / "musichal_base_model_test_error_fix.json"
PIPELINE_TIMEOUT_S = 150
PAGES = [  # (url path, title, screenshot name)
    ("Audio_and_segments", "Audio and segments", "02_audio_and_segments"),
    ("Features", "Features", "03_features"),
    ("Vocabulary", "Vocabulary", "04_vocabulary"),
    ("Events_and_fields", "Events and fields", "05_events_and_fields"),
    ("Oracle", "Oracle", "06_oracle"),
    ("Model_inspector", "Model inspector", "07_model_inspector"),
    ("Traces", "Traces", "08_traces"),
    ("Generate", "Generate", "09_generate"),
]


@pytest.fixture
def server(tmp_path):
    port = browser_port(range(8700, 8800))
    runs = tmp_path / "runs"
    runs.mkdir()
    log = tmp_path / "streamlit.log"
    with running_dashboard(runs, port, log) as base:
        yield {"base": base, "runs": runs, "log": log}


def _open(page, url: str, title: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name=title, exact=False).first.wait_for(timeout=60_000)
    wait_idle(page)


def _no_exception(page, where: str) -> None:
    n = page.locator('[data-testid="stException"]').count()
    assert n == 0, f"{where}: {n} exception box(es): " + page.locator('[data-testid="stException"]').first.inner_text()


def _shot(page, name: str) -> None:
    full_page_shot(page, SCREENSHOTS / f"{name}.png")


def _finished_run(runs: Path) -> tuple[str | None, dict | None]:
    for meta_path in runs.glob("*/run.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        return meta_path.parent.name, meta
    return None, None


def test_dashboard_end_to_end(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base, runs = server["base"], server["runs"]
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)

            # ---------------------------------------------------------- home: run all
            _open(page, base + "/", "chandra")
            _no_exception(page, "home")
            # The default sample (first in sample_audio/) and default K are small enough.
            page.get_by_role("button", name=re.compile("Run all")).click()
            deadline = time.monotonic() + PIPELINE_TIMEOUT_S
            run_id = None
            while time.monotonic() < deadline:
                run_id, meta = _finished_run(runs)
                if meta is not None:
                    statuses = {s: i.get("status") for s, i in meta["stages"].items()}
                    failed = [s for s, v in statuses.items() if v == "failed"]
                    assert not failed, f"stages failed: {[(s, meta['stages'][s].get('error')) for s in failed]}"
                    if all(v == "done" for v in statuses.values()):
                        break
                time.sleep(1.0)
            else:
                raise AssertionError(f"pipeline did not finish in {PIPELINE_TIMEOUT_S} s: {statuses}\n"
                                     + server["log"].read_text()[-2000:])
            assert run_id
            # The home page notices the finished job by itself (its panel polls).
            page.get_by_text("At a glance").wait_for(timeout=30_000)
            page.wait_for_function(
                "() => !document.body.innerText.includes('running **') && "
                "(document.body.innerText.match(/\\bdone\\b/g) || []).length >= 8", timeout=30_000)
            wait_idle(page)
            _no_exception(page, "home")
            _shot(page, "01_home")

            # ---------------------------------------------------------- every page
            for path, title, shot in PAGES:
                _open(page, f"{base}/{path}?run={run_id}", title)
                _no_exception(page, title)
                if path == "Audio_and_segments":
                    _player_frame(page)  # the recording player is drawn before its screenshot
                elif path == "Features":
                    _box_select(page)
                elif path == "Model_inspector":
                    page.get_by_role("button", name="Current run's model").click()
                    page.get_by_text(re.compile(r"^Findings — ")).first.wait_for()
                    wait_idle(page)
                    page.get_by_text("frames with gesture_token").first.wait_for()
                    if REFERENCE.exists():
                        _shot(page, shot + "_current_run")
                        page.get_by_role("button", name=re.compile("Example: MusicHal")).click()
                        page.get_by_text("TOKENS_MISSING").first.wait_for()
                        wait_idle(page)
                elif path == "Traces":
                    page.get_by_role("button", name="Generate the example trace").click()
                    page.get_by_text("FIELD_LOST").first.wait_for()
                    wait_idle(page)
                elif path == "Generate":
                    page.get_by_role("button", name="Generate", exact=True).click()
                    page.get_by_role("heading", name="Result").wait_for(timeout=60_000)
                    wait_idle(page)
                    assert page.locator("audio").count() >= 1
                    page.get_by_role("button", name="Download WAV").wait_for()
                _no_exception(page, title)
                _shot(page, shot)
        finally:
            browser.close()
    assert time.monotonic() - started < 240, "the browser test should stay well under 3-4 minutes"
    for _, _, shot in PAGES:
        assert (SCREENSHOTS / f"{shot}.png").stat().st_size > 10_000


def _box_select(page) -> None:
    """Pick the lasso tool, drag over the projection scatter and check the
    selection table fills.

    The drag runs top-left → top-right → bottom-right → bottom-left →
    bottom-right: in box-select mode that is the whole plot area (press at
    top-left, release at bottom-right), in lasso mode the upper-right
    triangle; either way points are selected.
    """
    chart = page.locator(".st-key-projection .js-plotly-plot")
    if chart.count() == 0:
        chart = page.locator(".js-plotly-plot").filter(has_text=re.compile("PCA"))
    chart = chart.first
    chart.scroll_into_view_if_needed()
    chart.hover()  # the mode bar shows on hover
    chart.locator('.modebar-btn[data-title="Lasso Select"]').first.click()
    drag = chart.locator(".nsewdrag").first
    box = drag.bounding_box()
    assert box, "projection plot area not found"
    x0, y0 = box["x"] + 0.03 * box["width"], box["y"] + 0.03 * box["height"]
    x1, y1 = box["x"] + 0.97 * box["width"], box["y"] + 0.97 * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y0, steps=12)
    page.mouse.move(x1, y1, steps=12)
    page.mouse.move(x0, y1, steps=12)
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()
    page.get_by_text(re.compile(r"Selected segments \(\d+\)")).first.wait_for(timeout=30_000)
    wait_idle(page)
    table = page.locator('[data-testid="stDataFrame"]')
    assert table.count() >= 1


def test_compare_page_marks_the_lost_cell(server, prepared_run, lost_field_run):
    """The Compare page opened from a URL naming two runs shows the lost gesture_token cell."""
    import shutil

    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for run in (prepared_run, lost_field_run):
        shutil.copytree(run.path, server["runs"] / run.run_id)
    url = f"{server['base']}/Compare?a=run:{prepared_run.run_id}&b=run:{lost_field_run.run_id}"
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            _open(page, url, "Compare")
            page.get_by_text(re.compile("B regresses")).first.wait_for()
            matrix = page.locator(".js-plotly-plot").filter(has_text="gesture_token").first
            matrix.wait_for()
            wait_idle(page)
            _no_exception(page, "Compare")
            # the changed cell: saved · gesture_token, N -> 0, labelled LOST
            assert matrix.locator("text", has_text="LOST").count() >= 2  # saved and reloaded
            assert "changed cell" in matrix.inner_text()
            _shot(page, "10_compare")
        finally:
            browser.close()


# --------------------------------------------------------------------------- a 5-minute real track

LONG_RUN_ID = "long-track-5min"


@pytest.fixture(scope="session")
def long_track_run(tmp_path_factory):
    """Five minutes of real music (``scripts/long_track.py`` arranges the
    bundled recordings), trained with the dsp encoder: ~1,500 segments."""
    import soundfile as sf

    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory
    from scripts.long_track import SR, build_track

    root = tmp_path_factory.mktemp("long_runs")
    audio = root / "five_minutes.flac"
    sf.write(str(audio), build_track(5.0, seed=0), SR, subtype="PCM_16")
    run = RunDirectory.create(root, audio, TrainConfig(encoder="dsp", n_tokens=32, seed=0), run_id=LONG_RUN_ID)
    run.execute("all")
    assert all(info["status"] == "done" for info in run.status().values()), run.status()
    return run


def _player_frame(page):
    """The recording player's frame, once its chart is drawn."""
    page.locator("iframe").first.wait_for()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for frame in page.frames:
            if frame is page.main_frame:
                continue
            try:
                if frame.locator("#chandra-plot[data-ready='1']").count():
                    return frame
            except Exception:  # noqa: BLE001 - a frame may detach while we look
                continue
        page.wait_for_timeout(250)
    raise AssertionError("the recording player never finished drawing")


_RUG_STATE = """() => {
    const gd = document.getElementById('chandra-plot');
    const rug = gd.data.find(t => t.meta === 'onsets');
    // plotly.py sends arrays packed ({dtype, bdata}); the player's redraws send plain ones.
    const size = {f8: 8, f4: 4, i4: 4, u4: 4, i2: 2, u2: 2, i1: 1, u1: 1};
    const length = x => x.length !== undefined ? x.length : atob(x.bdata).length / size[x.dtype];
    return {
        traces: gd.data.filter(t => t.meta === 'onsets').length,
        data: length(rug.x),
        dom: gd.querySelectorAll('.subplot.x2y2 .scatterlayer .point').length,
        spectrogram_overlays: gd.querySelectorAll('.subplot.x3y3 .scatterlayer .trace').length,
        drawn: Number(gd.getAttribute('data-onsets-drawn')),
        in_view: Number(gd.getAttribute('data-onsets-in-view')),
        range: gd.layout.xaxis3.range,
    };
}"""


def test_five_minute_track_pages_stay_readable(server, long_track_run):
    """Audio & segments, Features, Vocabulary, Events and Generate on ~1,500
    segments of real music: overlays are decimated and bounded, the
    spectrogram carries none, a click on the waveform plays from there with
    the playhead following, a zoom shows every onset in view, a projection
    selection plays its segments; each page is screenshotted."""
    import shutil

    from playwright.sync_api import sync_playwright

    from chandra.figures.stages import MAX_MARKERS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copytree(long_track_run.path, server["runs"] / LONG_RUN_ID)
    n_segments = len(np.load(long_track_run.path / "tokens.npy"))
    assert 1000 <= n_segments <= 2500
    base = server["base"]
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)

            # ------------------------------------------------ audio and segments
            _open(page, f"{base}/Audio_and_segments?run={LONG_RUN_ID}", "Audio and segments")
            _no_exception(page, "audio")
            frame = _player_frame(page)
            rug = frame.evaluate(_RUG_STATE)
            assert rug["traces"] == 1  # one rug trace, not a line per onset
            assert 0 < rug["data"] <= MAX_MARKERS and rug["dom"] <= MAX_MARKERS
            assert rug["data"] == min(n_segments, MAX_MARKERS) == rug["drawn"]
            assert rug["spectrogram_overlays"] == 0  # nothing tints the spectrogram
            _shot(page, "11_long_audio_and_segments")
            frame = _player_frame(page)

            # click the waveform half-way: playback starts there, the playhead follows
            area = frame.locator(".draglayer .xy .nsewdrag").first
            box = area.bounding_box()
            area.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
            frame.wait_for_function("() => { const a = document.getElementById('chandra-audio');"
                                    " return !a.paused && a.currentTime > 140 && a.currentTime < 170; }")
            frame.wait_for_function("() => Number(document.getElementById('chandra-plot')"
                                    ".getAttribute('data-playhead')) > 145")
            assert frame.evaluate("getComputedStyle(document.getElementById('chandra-playhead')).display") == "block"
            # zoom to ~10 s: every onset in the window is drawn, from the zoom detail
            area.hover(position={"x": box["width"] * 0.30, "y": 20})
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.333, box["y"] + 20, steps=6)
            page.mouse.up()
            frame.wait_for_function("() => Number(document.getElementById('chandra-plot')"
                                    ".getAttribute('data-onsets-in-view')) < " + str(n_segments))
            frame.evaluate("document.getElementById('chandra-audio').pause()")
            zoomed = frame.evaluate(_RUG_STATE)
            assert zoomed["range"][1] - zoomed["range"][0] < 30
            assert 0 < zoomed["in_view"] == zoomed["drawn"] == zoomed["data"] <= MAX_MARKERS
            frame.locator("#chandra-wrap").screenshot(path=str(SCREENSHOTS / "11_long_player_zoomed.png"))

            # ------------------------------------------------ features
            _open(page, f"{base}/Features?run={LONG_RUN_ID}", "Features")
            _no_exception(page, "features")
            _box_select(page)
            page.locator('[data-testid="stAudio"], audio').first.wait_for()
            _no_exception(page, "features after selection")
            _shot(page, "12_long_features")

            # ------------------------------------------------ vocabulary, events
            for path, title, shot in (("Vocabulary", "Vocabulary", "13_long_vocabulary"),
                                      ("Events_and_fields", "Events and fields", "14_long_events_and_fields")):
                _open(page, f"{base}/{path}?run={LONG_RUN_ID}", title)
                _no_exception(page, title)
                _shot(page, shot)

            # ------------------------------------------------ generate
            _open(page, f"{base}/Generate?run={LONG_RUN_ID}", "Generate")
            page.get_by_role("button", name="Generate", exact=True).click()
            page.get_by_role("heading", name="Result").wait_for(timeout=90_000)
            wait_idle(page)
            _no_exception(page, "generate")
            _shot(page, "15_long_generate")
        finally:
            browser.close()
    for name in ("11_long_audio_and_segments", "12_long_features", "13_long_vocabulary",
                 "14_long_events_and_fields", "15_long_generate"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
