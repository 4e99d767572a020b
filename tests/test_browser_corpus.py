"""End to end in a browser: a folder of 3 takes chosen on Home, trained as one corpus; the
Audio & segments page picks a take and the Vocabulary page draws the files x tokens heatmap.
Screenshots go to ``artifacts/screenshots/corpus_*.png``."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dashboard.serve import launch_chromium, wait_idle
from helpers_audio import write_takes
from helpers_browser import SCREENSHOTS, browser_port, no_exception, running_dashboard, wait_for_run

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

PIPELINE_TIMEOUT_S = 300  # 3 takes train in ~10 s; a loaded machine (nice-10 workers) is slower


@pytest.fixture
def server(tmp_path):
    port = browser_port(range(8900, 9000))
    data = tmp_path / "data"
    folder = data / "session"
    folder.mkdir(parents=True)
    write_takes(folder, mixed_rates=False)
    runs = tmp_path / "runs"
    runs.mkdir()
    log = tmp_path / "streamlit.log"
    with running_dashboard(runs, port, log, app_args=["--data-dir", str(data)]) as base:
        yield {"base": base, "runs": runs, "log": log, "folder": folder}


def test_a_folder_of_three_takes_trains_and_shows_take_picker_and_heatmap(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base, runs = server["base"], server["runs"]
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)

            # ------------------------------------------------ Home: a folder of takes
            page.goto(base + "/", wait_until="domcontentloaded")
            page.get_by_role("heading", name="chandra", exact=False).first.wait_for()
            wait_idle(page)
            page.get_by_text("several files or a folder", exact=True).click()
            wait_idle(page)
            page.get_by_text("server paths", exact=True).click()
            wait_idle(page)
            box = page.get_by_role("textbox", name=re.compile("files or folders on the server"))
            box.fill(str(server["folder"]))
            box.press("Control+Enter")
            page.get_by_text("3 take(s) found").first.wait_for(timeout=60_000)
            wait_idle(page)
            no_exception(page, "home")
            page.screenshot(path=str(SCREENSHOTS / "corpus_home_takes.png"), full_page=True)
            page.get_by_role("button", name=re.compile("Run all")).click()
            run_id, meta = wait_for_run(runs, server["log"], PIPELINE_TIMEOUT_S)
            assert meta["kind"] == "corpus" and [r["name"] for r in meta["inputs"]] == \
                ["take0.wav", "take1.wav", "take2.wav"]

            # ------------------------------------------------ Audio & segments: the take picker
            page.goto(f"{base}/Audio_and_segments?run={run_id}", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Audio and segments").first.wait_for()
            wait_idle(page)
            picker = page.locator(".st-key-audio_take")
            picker.wait_for()
            shown = picker.locator("input").first.input_value() if picker.locator("input").count() else ""
            assert "0 · take0.wav · 3.7 s" in shown + picker.inner_text(), picker.inner_html()[:3000]
            picker.get_by_role("combobox").first.click()
            page.get_by_role("option", name="1 · take1.wav · 4.7 s").click()
            wait_idle(page)
            page.get_by_text(re.compile(r"Take 1 · take1\.wav · starts at 3\.70 s")).first.wait_for()
            page.get_by_text("18 onsets: all drawn", exact=False).first.wait_for()
            assert page.locator("iframe").count() >= 1
            no_exception(page, "audio")
            page.screenshot(path=str(SCREENSHOTS / "corpus_audio_take.png"), full_page=True)

            # ------------------------------------------------ Vocabulary: files x tokens heatmap
            page.goto(f"{base}/Vocabulary?run={run_id}", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Tokens per take").first.wait_for()
            chart = page.locator(".st-key-take_token_heatmap .js-plotly-plot").first
            chart.wait_for(timeout=60_000)
            wait_idle(page)
            no_exception(page, "vocabulary")
            heat = chart.evaluate("""el => { const t = el._fullData.find(d => d.meta === 'usage');
                                             return {z: t.z.map(r => Array.from(r)), y: Array.from(t.y)}; }""")
            assert heat["y"] == ["0 · take0.wav", "1 · take1.wav", "2 · take2.wav"]
            tokens = np.load(runs / run_id / "tokens.npy")
            takes = np.load(runs / run_id / "takes.npy")
            k = len(heat["z"][0])
            expected = [np.bincount(tokens[takes == t], minlength=k).tolist() for t in range(3)]
            assert heat["z"] == expected
            page.screenshot(path=str(SCREENSHOTS / "corpus_vocabulary.png"), full_page=True)
        finally:
            browser.close()
