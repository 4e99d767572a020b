"""Start, probe and stop a local dashboard server; launch headless chromium.

Shared by the browser tests (``tests/test_browser.py``) and the dashboard
benchmark (``benchmarks/bench_dashboard.py``) so both drive the app the same
way. Only loopback addresses are used.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
#: Flags for Debian's chromium in a sandbox without network or GPU.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

__all__ = ["REPO", "CHROMIUM", "CHROMIUM_ARGS", "free_port", "start_server", "wait_health", "stop_server",
           "wait_idle", "wait_chart", "launch_chromium"]


def free_port(ports: range) -> int | None:
    """The first port in ``ports`` free on 127.0.0.1, or None."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None


def start_server(runs: Path, port: int, log: Path, *, app_args: list[str] | tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """``streamlit run app.py`` on 127.0.0.1:``port`` with its runs in ``runs``
    and offline hub settings; output goes to ``log``. ``app_args`` go to the
    app after ``--`` (e.g. ``["--data-dir", DIR, "--max-jobs", "1"]``);
    ``env`` adds environment variables."""
    env = dict(os.environ, CHANDRA_RUNS_DIR=str(runs), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    streamlit = Path(sys.executable).with_name("streamlit")
    cmd = [str(streamlit) if streamlit.exists() else "streamlit", "run", "app.py",
           "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    if app_args:
        cmd += ["--", *app_args]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_health(base: str, proc: subprocess.Popen, log: Path, *, timeout: float = 90.0,
                poll: float = 0.05) -> None:
    """Block until ``base``/_stcore/health answers ``ok``; raise RuntimeError
    with the server log's tail if the server exits or never becomes healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as resp:
                if resp.status == 200 and resp.read().strip() == b"ok":
                    return
        except OSError:
            pass  # not listening yet: keep polling until the deadline
        time.sleep(poll)
    raise RuntimeError(f"streamlit not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server, killing it if it does not stop within 15 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the page's script run finished (no 'Running…' status widget)."""
    page.wait_for_timeout(400)
    page.wait_for_function(
        """() => {
            const w = document.querySelector('[data-testid="stStatusWidget"]');
            return !w || !/Running|Connecting/i.test(w.innerText || '');
        }""",
        timeout=timeout_ms,
    )


def wait_chart(page, timeout_ms: int = 60_000) -> None:
    """Wait until a plotly chart is visible, in the page itself or in a page
    it embeds (the Audio and segments page draws the recording inside its
    player's iframe)."""
    deadline = time.monotonic() + timeout_ms / 1000.0
    while time.monotonic() < deadline:
        for frame in page.frames:
            try:
                if frame.locator(".js-plotly-plot").first.is_visible():
                    return
            except Exception:  # noqa: BLE001 - a frame can detach while it is probed
                continue
        page.wait_for_timeout(50)
    raise TimeoutError(f"no plotly chart visible after {timeout_ms} ms")


def launch_chromium(playwright):
    """Debian's chromium through Playwright (it cannot download browsers here)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
