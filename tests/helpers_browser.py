"""What the browser tests share: their prerequisites, a running dashboard, whole-page screenshots."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from dashboard.serve import CHROMIUM, free_port, start_server, stop_server, wait_health

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"


def browser_port(ports: range) -> int:
    """A free port in ``ports`` for a dashboard the browser visits; skips without chromium, playwright or a port."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    pytest.importorskip("playwright.sync_api")
    port = free_port(ports)
    if port is None:
        pytest.skip(f"no free port in {ports.start}-{ports.stop - 1}")
    return port


@contextlib.contextmanager
def running_dashboard(runs: Path, port: int, log: Path, *, app_args: list[str] | tuple[str, ...] = ()
                      ) -> Iterator[str]:
    """``streamlit run app.py`` over ``runs`` on ``port``, healthy; yields its base URL and stops it after."""
    proc = start_server(runs, port, log, app_args=app_args)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_health(base, proc, log, poll=0.5)
        yield base
    finally:
        stop_server(proc)


def full_page_shot(page, path: Path, *, settle_ms: int = 800) -> Path:
    """Screenshot the whole page. Streamlit scrolls inside its main container,
    not the document, so the viewport is stretched to the content first."""
    page.mouse.move(5, 5)  # no tooltip in the picture
    height = page.evaluate(
        """() => {
            const m = document.querySelector('[data-testid="stMain"]') || document.querySelector('section.main');
            return m ? m.scrollHeight : document.body.scrollHeight;
        }""")
    viewport = page.viewport_size
    page.set_viewport_size({"width": viewport["width"], "height": int(min(max(height + 40, viewport["height"]), 7000))})
    page.wait_for_timeout(settle_ms)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)
    page.wait_for_timeout(200)
    return path


def no_exception(page, where: str) -> None:
    """Fail with the page's first exception box, if it shows one."""
    n = page.locator('[data-testid="stException"]').count()
    assert n == 0, f"{where}: " + page.locator('[data-testid="stException"]').first.inner_text()


def wait_for_run(runs: Path, log: Path, timeout_s: float) -> tuple[str, dict]:
    """Wait until a run under ``runs`` has every stage done; ``(run id, run.json)``. A failed stage fails at once."""
    deadline = time.monotonic() + timeout_s
    statuses: dict = {}
    while time.monotonic() < deadline:
        for meta_path in runs.glob("*/run.json"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            statuses = {s: i.get("status") for s, i in meta["stages"].items()}
            failed = [s for s, v in statuses.items() if v == "failed"]
            assert not failed, [(s, meta["stages"][s].get("error")) for s in failed]
            if all(v == "done" for v in statuses.values()):
                return meta_path.parent.name, meta
        time.sleep(1.0)
    raise AssertionError(f"the run did not finish in {timeout_s} s: {statuses}\n{log.read_text()[-2000:]}")
