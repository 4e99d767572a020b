"""End-to-end first contact on a 5-minute real track (built from the bundled
pieces by ``scripts/long_track.py``): the Home page counts the segments and
recommends K before training, Run all with K on auto, the Oracle page's
information-rate-over-K chart spans the tested K values on a readable log
axis and marks the recommendation, and the Model inspector opens the model.
Screenshots go to ``artifacts/screenshots/first_contact_*.png``.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

from dashboard.serve import launch_chromium, wait_idle
from helpers_browser import REPO, SCREENSHOTS, browser_port, full_page_shot, no_exception, running_dashboard, wait_for_run

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

PIPELINE_TIMEOUT_S = 240


@pytest.fixture
def server(tmp_path):
    port = browser_port(range(8800, 8900))
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from scripts.long_track import write_track

    data = tmp_path / "data"
    data.mkdir()
    track = write_track(data / "five_minutes.flac", 5.0)
    runs = tmp_path / "runs"
    runs.mkdir()
    log = tmp_path / "streamlit.log"
    with running_dashboard(runs, port, log, app_args=["--data-dir", str(data)]) as base:
        yield {"base": base, "runs": runs, "log": log, "track": track}


def _shot(page, name: str) -> Path:
    return full_page_shot(page, SCREENSHOTS / f"first_contact_{name}.png")


def test_five_minute_track_first_contact(server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base, runs, track = server["base"], server["runs"], server["track"]
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)

            # ------------------------------------------------ Home: segments and K before training
            page.goto(base + "/", wait_until="domcontentloaded")
            page.get_by_role("heading", name="chandra", exact=False).first.wait_for()
            wait_idle(page)
            # The sidebar's first entry is "Home" (not "app", streamlit's name for app.py).
            page.wait_for_function(
                """() => { const a = document.querySelector('[data-testid="stSidebar"] a');
                           return a && a.innerText.trim().endsWith('Home'); }""", timeout=30_000)
            page.get_by_text("server path", exact=True).click()
            wait_idle(page)
            box = page.get_by_role("textbox", name="path of an audio file on the server")
            box.fill(str(track))
            box.press("Enter")
            preview = page.get_by_text(re.compile(r"five_minutes\.flac: \d+ segments"))
            preview.first.wait_for(timeout=120_000)
            wait_idle(page)
            text = preview.first.inner_text()
            n_segments = int(re.search(r"(\d+) segments", text).group(1))
            recommended = int(re.search(r"recommended K = (\d+)", text).group(1))
            assert n_segments > 1000 and recommended == 64, text  # 5 minutes: the rule's ceiling
            no_exception(page, "home")
            _shot(page, "home_preview")

            page.get_by_role("button", name=re.compile("Run all")).click()
            run_id, meta = wait_for_run(runs, server["log"], PIPELINE_TIMEOUT_S)
            rec = meta["summaries"]["vocabulary"]["recommendation"]
            assert meta["config"]["n_tokens"] == "auto" and 8 <= rec["k"] <= 64
            assert meta["summaries"]["vocabulary"]["n_tokens"] == rec["k"]
            page.goto(f"{base}/?run={run_id}", wait_until="domcontentloaded")
            page.get_by_text("At a glance").wait_for(timeout=60_000)
            wait_idle(page)
            no_exception(page, "home")
            _shot(page, "home_run")

            # ------------------------------------------------ Oracle: information rate over K
            page.goto(f"{base}/Oracle?run={run_id}", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Oracle").first.wait_for()
            wait_idle(page)
            page.get_by_role("button", name="Information rate over K").click()
            chart = page.locator(".st-key-ir_k .js-plotly-plot").first
            chart.wait_for(timeout=180_000)
            wait_idle(page)
            no_exception(page, "oracle")
            layout = chart.evaluate("""el => ({
                range: el._fullLayout.xaxis.range, type: el._fullLayout.xaxis.type,
                tickvals: Array.from(el._fullLayout.xaxis.tickvals), ks: Array.from(el._fullData[0].x),
                names: el._fullData.filter(t => t.showlegend !== false).map(t => t.name),
                width: el._fullLayout.width })""")
            ks = layout["ks"]
            assert layout["type"] == "log" and ks == sorted(ks) and ks[0] == 2 and ks[-1] >= 64
            lo, hi = layout["range"]
            # The axis spans the tested K values, and only them (no point squeezed to one edge).
            assert lo < math.log10(ks[0]) and hi > math.log10(ks[-1])
            assert math.log10(ks[0]) - lo < 0.2 and hi - math.log10(ks[-1]) < 0.2
            assert set(ks) <= set(layout["tickvals"])
            rec_names = [n for n in layout["names"] if n.startswith("recommended")]
            assert len(rec_names) == 1 and f"K = {rec['k']}" in rec_names[0], layout["names"]
            page.get_by_text(re.compile(rf"Recommended K = {rec['k']}")).first.wait_for()
            _shot(page, "oracle")

            # ------------------------------------------------ Model inspector
            page.goto(f"{base}/Model_inspector?run={run_id}", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Model inspector").first.wait_for()
            wait_idle(page)
            page.get_by_role("button", name="Current run's model").click()
            page.get_by_text(re.compile(r"^Findings — ")).first.wait_for()
            wait_idle(page)
            no_exception(page, "model inspector")
            _shot(page, "model_inspector")
        finally:
            browser.close()
    for name in ("home_preview", "home_run", "oracle", "model_inspector"):
        assert (SCREENSHOTS / f"first_contact_{name}.png").stat().st_size > 10_000
