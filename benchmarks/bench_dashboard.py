"""Dashboard speed: cold start to first chart, and "Run all" on a 30 s sample.

Usage::

    python benchmarks/bench_dashboard.py [--runs 3]

Each run starts a FRESH ``streamlit run app.py`` process (port 8800-8899) on
a fresh temporary runs folder and drives it with headless chromium
(playwright), the same way as ``tests/test_browser.py``:

1. **Cold start to first chart.** A run of ``sample_audio/tabla_safari_loops.flac``
   (29.4 s, dsp, K=64) is prepared in the runs folder beforehand with
   ``RunDirectory.create(...).execute("all")`` (not timed). The clock starts
   when the ``streamlit run`` process is launched (chromium is already up):
   *server ready* = ``/_stcore/health`` answers ``ok``; *home loaded* = the
   home page shows its title (the home page has no chart without a current
   run); *first chart* = after opening ``Audio_and_segments?run=<id>``, the
   first ``.js-plotly-plot`` is visible (in the page or in the recording
   player it embeds: ``dashboard.serve.wait_chart``). The same page is then timed again
   in a new session of the warm server (first-visit cost vs rendering).
2. **"Run all" on the 30 s sample.** On the home page (new browser session),
   choose the sample ``tabla_safari_loops.flac``, set K = 64 (the library
   default; the home page proposes 16), click *Run all* and time until every
   stage in the new run's ``run.json`` is ``done`` (the completion signal of
   ``tests/test_browser.py``, polled every 50 ms), and until the home page
   itself shows every stage done (it polls once a second; the test's second
   wait). This is done twice in
   the same server: the first job of the server process ("first") and again
   in a new session ("warm"). The library-only time of the same work
   (``chandra.pipeline.train`` in-process, after a warm-up) is printed next
   to it so the dashboard overhead is visible.

Figures are medians over ``--runs``; every per-run figure is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, goto_home, offline, open_page  # noqa: E402

SAMPLE = REPO / "sample_audio" / "tabla_safari_loops.flac"
PORTS = range(8800, 8900)
K = 64
PIPELINE_TIMEOUT_S = 150

offline()

from dashboard.serve import (  # noqa: E402
    CHROMIUM,
    free_port,
    launch_chromium,
    start_server,
    stop_server,
    wait_chart,
    wait_health,
    wait_idle,
)


# --------------------------------------------------------------------------- helpers


def run_meta(runs: Path, exclude: set[str]) -> tuple[str | None, dict | None]:
    for meta_path in runs.glob("*/run.json"):
        if meta_path.parent.name in exclude:
            continue
        try:
            return meta_path.parent.name, json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue  # being written
    return None, None


def prepare_run(runs: Path) -> tuple[str, float]:
    """A finished run of the sample in ``runs`` (default config: dsp, K=64),
    and the seconds of its ``execute("all")`` (what a dashboard job runs, with
    persistence, in-process and without the server)."""
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    run = RunDirectory.create(runs, SAMPLE, TrainConfig(n_tokens=K))
    t0 = time.perf_counter()
    run.execute("all")
    return run.run_id, time.perf_counter() - t0


def library_times(n: int) -> list[float]:
    """``chandra.pipeline.train`` in-process on the sample, after one warm-up."""
    from chandra.pipeline import TrainConfig, train

    train(SAMPLE, TrainConfig(n_tokens=K))  # warm-up (imports, numba cache, first allocations)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        train(SAMPLE, TrainConfig(n_tokens=K))
        out.append(time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------- browser steps


def home_run_all(browser, base: str, runs: Path, exclude: set[str]) -> dict:
    """New session on the home page: pick the sample, K=64, click Run all, time completion."""
    ctx, page = open_page(browser, timeout_ms=60_000)
    try:
        goto_home(page, base)
        wait_idle(page)
        # Sample selectbox (the "current run" selectbox is also there: pick by its label).
        box = page.get_by_role("combobox", name="sample", exact=True)
        option = page.get_by_role("option", name=SAMPLE.name)
        for _ in range(5):  # the dropdown sometimes misses a click during a rerun
            box.click()
            try:
                option.wait_for(state="visible", timeout=3_000)
                option.click(timeout=3_000)
                break
            except Exception:  # noqa: BLE001 - playwright TimeoutError: retry
                page.keyboard.press("Escape")
                wait_idle(page)
        else:
            raise RuntimeError("could not choose the sample in the home page's selectbox")
        wait_idle(page)
        if box.input_value() != SAMPLE.name:
            raise RuntimeError(f"sample not chosen: {box.input_value()!r}")
        page.get_by_text("number", exact=True).first.click()  # K "auto" (the default) -> a number
        wait_idle(page)
        k_input = page.get_by_role("spinbutton", name="K value")
        k_input.fill(str(K))
        k_input.press("Enter")
        wait_idle(page)
        assert k_input.input_value() == str(K), k_input.input_value()
        button = page.get_by_role("button", name=re.compile("Run all"))
        button.wait_for()
        t0 = time.monotonic()
        button.click()
        deadline = t0 + PIPELINE_TIMEOUT_S
        run_id, meta, statuses = None, None, {}
        while time.monotonic() < deadline:
            run_id, meta = run_meta(runs, exclude)
            if meta is not None:
                statuses = {s: i.get("status") for s, i in meta["stages"].items()}
                failed = [s for s, v in statuses.items() if v == "failed"]
                if failed:
                    raise RuntimeError(f"stages failed: {[(s, meta['stages'][s].get('error')) for s in failed]}")
                if all(v == "done" for v in statuses.values()):
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"pipeline did not finish in {PIPELINE_TIMEOUT_S} s: {statuses}")
        t_done = time.monotonic() - t0
        # The page noticing by itself (its panel polls every second): the
        # signal tests/test_browser.py waits for after run.json.
        page.wait_for_function(
            "() => !document.body.innerText.includes('running **') && "
            "(document.body.innerText.match(/\\bdone\\b/g) || []).length >= 8", timeout=30_000)
        page.get_by_text("At a glance").wait_for(timeout=30_000)
        t_ui = time.monotonic() - t0
        cfg = meta.get("config", {})
        if cfg.get("encoder") != "dsp" or int(cfg.get("n_tokens", -1)) != K or meta.get("audio_name") != SAMPLE.name:
            raise RuntimeError(f"unexpected run: {meta.get('audio_name')} {cfg}")
        stage_s = sum(float(i.get("seconds") or 0.0) for i in meta["stages"].values())
        return {"run_id": run_id, "done_s": t_done, "ui_s": t_ui, "stages_s": stage_s}
    finally:
        ctx.close()


def one_run(browser, i: int, tmp: Path) -> dict:
    runs = tmp / f"runs{i}"
    runs.mkdir()
    prepared, execute_s = prepare_run(runs)  # before the server exists: not part of the cold start
    port = free_port(PORTS)
    if port is None:
        raise SystemExit("no free port in 8800-8899")
    log = tmp / f"streamlit{i}.log"
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = start_server(runs, port, log)
    try:
        wait_health(base, proc, log)
        ready = time.monotonic() - t0
        ctx, page = open_page(browser, timeout_ms=60_000)
        try:
            goto_home(page, base)
            home = time.monotonic() - t0
            page.goto(f"{base}/Audio_and_segments?run={prepared}", wait_until="domcontentloaded")
            wait_chart(page)
            chart = time.monotonic() - t0
        finally:
            ctx.close()
        # The same chart page again in a new session of the now-warm server:
        # separates the first-visit cost (imports, caches) from rendering.
        ctx, page = open_page(browser, timeout_ms=60_000)
        try:
            t1 = time.monotonic()
            page.goto(f"{base}/Audio_and_segments?run={prepared}", wait_until="domcontentloaded")
            wait_chart(page)
            chart_warm = time.monotonic() - t1
        finally:
            ctx.close()
        first = home_run_all(browser, base, runs, {prepared})
        warm = home_run_all(browser, base, runs, {prepared, first["run_id"]})
    except Exception:
        sys.stderr.write(f"--- streamlit log (run {i}) ---\n{log.read_text()[-3000:]}\n")
        raise
    finally:
        stop_server(proc)
    return {"ready_s": ready, "home_s": home, "chart_s": chart, "chart_warm_s": chart_warm, "first": first,
            "warm": warm, "execute_s": execute_s}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="fresh servers to time (median reported)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists():
        raise SystemExit("/usr/bin/chromium is not installed")
    import soundfile as sf
    import streamlit
    from playwright.sync_api import sync_playwright

    duration = sf.info(str(SAMPLE)).duration
    print("chandra dashboard benchmark")
    print(f"  machine   : {platform.machine()} · {os.cpu_count()} CPUs · {platform.platform()}")
    print(f"  python    : {platform.python_version()} ({sys.executable})")
    print(f"  streamlit : {streamlit.__version__}")
    print(f"  sample    : {SAMPLE.name} ({duration:.1f} s) · encoder dsp · K={K} · runs={args.runs}")

    lib = library_times(args.runs)
    print("  library train() (warm, in-process): " + ", ".join(f"{t:.2f}" for t in lib) + " s")

    results = []
    tmp = Path(tempfile.mkdtemp(prefix="chandra-bench-dash-"))
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            print(f"  chromium  : {browser.version}")
            try:
                for i in range(args.runs):
                    r = one_run(browser, i, tmp)
                    results.append(r)
                    print(f"  run {i + 1}: server ready {r['ready_s']:.2f} s · home {r['home_s']:.2f} s · "
                          f"first chart {r['chart_s']:.2f} s (warm page {r['chart_warm_s']:.2f} s) | Run all first {r['first']['done_s']:.2f} s "
                          f"(page {r['first']['ui_s']:.2f} s, stages {r['first']['stages_s']:.2f} s) · "
                          f"warm {r['warm']['done_s']:.2f} s (page {r['warm']['ui_s']:.2f} s, "
                          f"stages {r['warm']['stages_s']:.2f} s) | library execute {r['execute_s']:.2f} s", flush=True)
            finally:
                browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    m = {
        "server_ready_s": med(r["ready_s"] for r in results),
        "home_loaded_s": med(r["home_s"] for r in results),
        "first_chart_s": med(r["chart_s"] for r in results),
        "chart_page_warm_s": med(r["chart_warm_s"] for r in results),
        "library_execute_s": med(r["execute_s"] for r in results),
        "run_all_first_done_s": med(r["first"]["done_s"] for r in results),
        "run_all_first_page_s": med(r["first"]["ui_s"] for r in results),
        "run_all_first_stages_s": med(r["first"]["stages_s"] for r in results),
        "run_all_warm_done_s": med(r["warm"]["done_s"] for r in results),
        "run_all_warm_page_s": med(r["warm"]["ui_s"] for r in results),
        "run_all_warm_stages_s": med(r["warm"]["stages_s"] for r in results),
        "library_train_s": med(lib),
    }
    print(f"\nmedians over {len(results)} fresh server(s):")
    print("1. cold start (clock starts at `streamlit run` launch)")
    print(f"   server ready (/_stcore/health ok) : {m['server_ready_s']:6.2f} s")
    print(f"   home page loaded (title shown)    : {m['home_loaded_s']:6.2f} s")
    print(f"   first plotly chart visible        : {m['first_chart_s']:6.2f} s  (Audio_and_segments?run=<prepared>)")
    print(f"   (same page again, warm server     : {m['chart_page_warm_s']:6.2f} s from navigation)")
    print(f"2. Run all, {SAMPLE.name} ({duration:.1f} s), dsp, K={K} (clock starts at the click)")
    print(f"   first job in the server  : done in run.json {m['run_all_first_done_s']:6.2f} s · page shows results "
          f"{m['run_all_first_page_s']:6.2f} s · stage seconds {m['run_all_first_stages_s']:5.2f} s")
    print(f"   warm (second job)        : done in run.json {m['run_all_warm_done_s']:6.2f} s · page shows results "
          f"{m['run_all_warm_page_s']:6.2f} s · stage seconds {m['run_all_warm_stages_s']:5.2f} s")
    print(f"   library train() (warm)   : {m['library_train_s']:6.2f} s  -> dashboard overhead (warm, run.json) "
          f"{m['run_all_warm_done_s'] - m['library_train_s']:+.2f} s")
    print(f"   library RunDirectory.execute('all') (persisting, no server): {m['library_execute_s']:6.2f} s")
    print(f"\nSUMMARY: {os.cpu_count()} CPUs, streamlit {streamlit.__version__}: server ready "
          f"{m['server_ready_s']:.2f} s, first chart {m['first_chart_s']:.2f} s after launch; Run all "
          f"{duration:.1f} s sample (dsp, K={K}) {m['run_all_first_done_s']:.2f} s first / "
          f"{m['run_all_warm_done_s']:.2f} s warm (page {m['run_all_warm_page_s']:.2f} s) vs library "
          f"{m['library_train_s']:.2f} s (median of {len(results)})")
    if args.json:
        args.json.write_text(json.dumps({"medians": m, "runs": results, "library": lib,
                                         "cpus": os.cpu_count(), "python": platform.python_version(),
                                         "streamlit": streamlit.__version__}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
