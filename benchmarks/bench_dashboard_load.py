"""Dashboard under load: ten sessions press "Run all" at once.

Usage::

    python benchmarks/bench_dashboard_load.py [--sessions 10] [--max-jobs N] [--json out.json]

One fresh ``streamlit run app.py`` (port 8900-8999, temporary runs folder,
``--max-jobs`` passed to the app after ``--`` when given, else the app's
default of one job per two cores) driven by headless chromium, the way
``tests/test_browser.py`` drives it:

1. **Alone.** One session presses *Run all* on
   ``sample_audio/bach_prelude_c.flac`` (the default sample, dsp, K = 64)
   and waits until every stage in ``run.json`` is ``done`` (this starts
   the job worker process and warms caches); a second run alone gives the
   time of one job with the server to itself, *T1*.
2. **Load.** ``--sessions`` new browser sessions open the home page; then
   their *Run all* buttons are clicked one after the other (within about a
   second): every click makes a new run, which goes on the server's job
   queue. The clock starts at the first click.
3. **Pages while the queue is full.** As long as at least one run is still
   ``queued`` (``run.json`` ``job.status``), page loads are timed in fresh
   sessions, round robin: the home page of the last queued run (until its
   Findings heading is shown; its "Queued: position" note is checked), the
   Audio and segments page of the warm-up run (until its first chart is
   visible) and the Vocabulary page of the warm-up run (same). A load is
   the time from navigation to that element; the time to the browser's DOM
   (HTML and the app's JavaScript parsed, which costs the browser's CPU on
   this same machine) and to the end of the page's script run are printed
   too. The same pages are timed on the idle server first, as a baseline.
4. **Done.** The time from the first click until every run's stages are
   ``done`` (failed stages are reported and fail the benchmark), against
   what the queue implies: ``ceil(sessions / max_jobs) * T1``.

Printed: T1, the total, the implied total, every page load while the queue
was full (slowest and median), each run's queue wait and run time.
"""

from __future__ import annotations

import argparse
import json
import math
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

SAMPLE = REPO / "sample_audio" / "bach_prelude_c.flac"
PORTS = range(8900, 9000)
TIMEOUT_S = 1800

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


def read_runs(runs: Path) -> dict[str, dict]:
    out = {}
    for meta_path in runs.glob("*/run.json"):
        try:
            out[meta_path.parent.name] = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue  # being replaced: read it next time
    return out


def all_done(meta: dict) -> bool:
    return all(i.get("status") == "done" for i in meta["stages"].values())


def failed(meta: dict) -> list:
    return [(s, i.get("error")) for s, i in meta["stages"].items() if i.get("status") == "failed"]


def open_home(browser, base: str):
    """A new session on the Home page, the default sample checked; returns ``(context, page)``."""
    ctx, page = open_page(browser, timeout_ms=120_000)
    goto_home(page, base)
    wait_idle(page, 120_000)
    box = page.get_by_role("combobox", name="sample", exact=True)
    if box.input_value() != SAMPLE.name:
        raise RuntimeError(f"the default sample is {box.input_value()!r}, not {SAMPLE.name}")
    return ctx, page


def timed_load(browser, url: str, first, ready, expect: str | None = None) -> dict:
    """Open ``url`` in a new session: seconds to the browser's DOM (HTML and
    the app's scripts parsed: browser-bound), to ``first`` (the page's first
    own content, e.g. its metrics), to ``ready`` (all of it, charts drawn)
    and to the end of the script run; whether ``expect`` is in the page's
    text; and ``server_s``, the server's part: from the session's websocket
    opening to the server's "script finished" message (decoded from the
    websocket frames), independent of how fast this machine's browser
    draws."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    marks: dict[str, float] = {}

    def on_frame(payload) -> None:
        if "finished" in marks or isinstance(payload, str):
            return
        msg = ForwardMsg()
        try:
            msg.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - not a ForwardMsg: ignore
            return
        if msg.WhichOneof("type") == "script_finished":
            marks["finished"] = time.monotonic()

    def on_websocket(ws) -> None:
        if "/_stcore/stream" in ws.url and "ws" not in marks:
            marks["ws"] = time.monotonic()
            ws.on("framereceived", on_frame)

    ctx, page = open_page(browser, timeout_ms=120_000)
    try:
        page.on("websocket", on_websocket)
        t0 = time.monotonic()
        page.goto(url, wait_until="domcontentloaded")
        t_dom = time.monotonic() - t0
        first(page)
        t_first = time.monotonic() - t0
        ready(page)
        t_ready = time.monotonic() - t0
        wait_idle(page, 120_000)
        t_idle = time.monotonic() - t0 - 0.4  # wait_idle's own settling pause
        seen = expect is None or expect in page.locator("body").inner_text()
        server = marks["finished"] - marks["ws"] if {"ws", "finished"} <= set(marks) else None
        return {"dom_s": t_dom, "first_s": t_first, "s": t_ready, "idle_s": max(t_ready, t_idle),
                "server_s": server, "expected_seen": seen}
    finally:
        ctx.close()


def _fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--max-jobs", type=int, default=None, help="passed to the app (default: its own)")
    ap.add_argument("--close-sessions", action="store_true",
                    help="close the sessions' pages after their clicks (their runs stay queued): page loads then "
                         "measure the server, not also this machine's browser rendering ten live pages")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--keep-log", type=Path, help="copy the server's log here")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists():
        raise SystemExit("/usr/bin/chromium is not installed")
    import streamlit
    from playwright.sync_api import sync_playwright

    from chandra.jobs import default_max_jobs

    max_jobs = args.max_jobs or default_max_jobs()
    print("chandra dashboard load benchmark")
    print(f"  machine   : {platform.machine()} · {os.cpu_count()} CPUs · {platform.platform()}")
    print(f"  load avg  : {os.getloadavg()[0]:.2f} (1 min) at start (other programs on this machine count too)")
    print(f"  python    : {platform.python_version()} · streamlit {streamlit.__version__}")
    print(f"  sample    : {SAMPLE.name} · dsp · K=64 · sessions={args.sessions} · max jobs={max_jobs}"
          f" · sessions {'closed' if args.close_sessions else 'kept open'} after their clicks")

    tmp = Path(tempfile.mkdtemp(prefix="chandra-bench-load-"))
    runs = tmp / "runs"
    runs.mkdir()
    log = tmp / "streamlit.log"
    port = free_port(PORTS)
    if port is None:
        raise SystemExit("no free port in 8900-8999")
    base = f"http://127.0.0.1:{port}"
    app_args = ["--max-jobs", str(args.max_jobs)] if args.max_jobs else []
    proc = start_server(runs, port, log, app_args=app_args)
    result: dict = {"sessions": args.sessions, "max_jobs": max_jobs, "cpus": os.cpu_count(),
                    "streamlit": streamlit.__version__}
    try:
        wait_health(base, proc, log)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                # ------------------------------------------------ 1. alone: warm-up, then T1
                def solo(exclude: set[str]) -> tuple[str, float]:
                    ctx, page = open_home(browser, base)
                    t0 = time.monotonic()
                    page.get_by_role("button", name=re.compile("Run all")).click()
                    while time.monotonic() - t0 < 600:
                        metas = {k: m for k, m in read_runs(runs).items() if k not in exclude}
                        if metas:
                            rid, meta = next(iter(metas.items()))
                            if failed(meta):
                                raise RuntimeError(f"solo run failed: {failed(meta)}")
                            if all_done(meta):
                                ctx.close()
                                return rid, time.monotonic() - t0
                        time.sleep(0.05)
                    raise RuntimeError("a solo run did not finish in 600 s")

                warm_id, t_warm = solo(set())
                print(f"  first run alone (starts the worker process): {t_warm:.2f} s", flush=True)
                solo_id, t1 = solo({warm_id})
                print(f"  second run alone (T1): {t1:.2f} s", flush=True)
                result["first_run_s"], result["t1_s"] = t_warm, t1
                exclude = {warm_id, solo_id}

                # (page, url, first content shown, everything shown, text expected)
                def metric(label):
                    return lambda p: p.get_by_text(label, exact=True).first.wait_for()

                def chart(p):
                    wait_chart(p)

                probes = [
                    ("home, queued run", lambda q: f"{base}/?run={q}", metric("Pipeline"),
                     lambda p: p.get_by_role("heading", name="Findings").first.wait_for(), "Queued: position"),
                    ("Audio and segments", lambda q: f"{base}/Audio_and_segments?run={warm_id}",
                     metric("sample rate"), chart, None),
                    ("Vocabulary", lambda q: f"{base}/Vocabulary?run={warm_id}", metric("perplexity"), chart, None),
                ]

                # ------------------------------------------------ baseline: the same pages, queue empty
                baseline: list[dict] = []
                for name, url, first, ready, _ in probes:
                    for _ in range(2):
                        r = timed_load(browser, url(warm_id), first, ready)
                        baseline.append({"page": name, **r})
                        print(f"    idle server: {name:<20} shown {r['s']:6.2f} s (DOM {r['dom_s']:.2f} s, first "
                              f"content {r['first_s']:.2f} s, script done {r['idle_s']:.2f} s; server "
                              f"{_fmt(r['server_s'])})", flush=True)
                result["baseline"] = baseline

                # ------------------------------------------------ 2. sessions press Run all
                contexts, pages = [], []
                for _ in range(args.sessions):
                    c, page = open_home(browser, base)
                    contexts.append(c)
                    pages.append(page)
                buttons = [p.get_by_role("button", name=re.compile("Run all")) for p in pages]
                t_start = time.monotonic()
                for b in buttons:
                    b.click(no_wait_after=True)
                t_clicked = time.monotonic() - t_start
                print(f"  {args.sessions} clicks in {t_clicked:.2f} s", flush=True)
                if args.close_sessions:
                    for p in pages:  # let each click's rerun reach the server, then leave
                        p.get_by_text(re.compile("Queued: position|running \\*\\*|Pipeline")).first.wait_for()
                    for c in contexts:
                        c.close()
                    contexts = []
                    print("  sessions closed after their clicks (--close-sessions)", flush=True)

                # ------------------------------------------------ 3. page loads while queued
                loads: list[dict] = []
                i = 0
                finished: dict[str, float] = {}
                started: dict[str, float] = {}
                while time.monotonic() - t_start < TIMEOUT_S:
                    metas = {k: m for k, m in read_runs(runs).items() if k not in exclude}
                    now = time.monotonic() - t_start
                    for rid, m in metas.items():
                        if failed(m):
                            raise RuntimeError(f"{rid} failed: {failed(m)}")
                        job = m.get("job") or {}
                        if job.get("status") == "running" and rid not in started:
                            started[rid] = now
                        if all_done(m) and rid not in finished:
                            finished[rid] = now
                    if len(metas) == args.sessions and len(finished) == args.sessions:
                        break
                    queued = [rid for rid, m in metas.items() if (m.get("job") or {}).get("status") == "queued"]
                    if queued and len(metas) == args.sessions:
                        name, url, first, ready, expect = probes[i % len(probes)]
                        i += 1
                        r = timed_load(browser, url(queued[-1]), first, ready, expect)
                        loads.append({"page": name, **r, "queued": len(queued), "at_s": time.monotonic() - t_start})
                        print(f"    load {name:<20} shown {r['s']:6.2f} s (DOM {r['dom_s']:.2f} s, first content "
                              f"{r['first_s']:.2f} s, script done {r['idle_s']:.2f} s; server {_fmt(r['server_s'])})"
                              f"  {len(queued)} queued"
                              + ("" if r["expected_seen"] else "  [queue note NOT shown]"), flush=True)
                    else:
                        time.sleep(0.1)
                else:
                    raise RuntimeError(f"not all runs done in {TIMEOUT_S} s")
                total = max(finished.values())
                for c in contexts:
                    c.close()
            finally:
                browser.close()
    except Exception:
        sys.stderr.write(f"--- streamlit log ---\n{log.read_text()[-4000:]}\n")
        raise
    finally:
        stop_server(proc)
        log_text = log.read_text(errors="replace") if log.exists() else ""
        if args.keep_log:
            args.keep_log.write_text(log_text)
        log_lines = log_text.count("\n")
        kinds: dict[str, int] = {}
        for line in log_text.splitlines():
            key = re.sub(r"^[0-9-]+ [0-9:.]+ ", "", line).strip()[:100]
            if key:
                kinds[key] = kinds.get(key, 0) + 1
        shutil.rmtree(tmp, ignore_errors=True)

    implied = math.ceil(args.sessions / max_jobs) * result["t1_s"]
    for key, count in sorted(kinds.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  server log: {count:4d} x {key}")
    result.update({"close_sessions": args.close_sessions, "load_avg_end": os.getloadavg()[0], "total_s": total, "implied_s": implied, "loads": loads, "server_log_lines": log_lines,
                   "slowest_load_s": max((x["s"] for x in loads), default=None),
                   "slowest_first_content_s": max((x["first_s"] for x in loads), default=None),
                   "slowest_server_s": max((x["server_s"] for x in loads if x["server_s"] is not None), default=None),
                   "median_load_s": statistics.median([x["s"] for x in loads]) if loads else None,
                   "finished_s": sorted(finished.values())})
    print(f"\nall {args.sessions} runs done {total:.1f} s after the first click; the queue implies "
          f"ceil({args.sessions}/{max_jobs}) x T1 = {implied:.1f} s (ratio {total / implied:.2f})")
    if loads:
        by_page: dict[str, list[dict]] = {}
        for x in loads:
            by_page.setdefault(x["page"], []).append(x)
        for name, values in by_page.items():
            shown = [v["s"] for v in values]
            firsts = [v["first_s"] for v in values]
            doms = [v["dom_s"] for v in values]
            servers = [v["server_s"] for v in values if v["server_s"] is not None]
            if servers:
                print(f"  {name:<20}: server part median {statistics.median(servers):.2f} s, slowest "
                      f"{max(servers):.2f} s")
            print(f"  {name:<20}: {len(values)} loads, all shown median {statistics.median(shown):.2f} s, slowest "
                  f"{max(shown):.2f} s; first content median {statistics.median(firsts):.2f} s, slowest "
                  f"{max(firsts):.2f} s; browser DOM median {statistics.median(doms):.2f} s")
        if not all(x["expected_seen"] for x in loads):
            print("  WARNING: a queued run's home page did not show its queue position")
        print(f"SUMMARY: slowest page load while the queue was full {result['slowest_load_s']:.2f} s, first "
              f"content {result['slowest_first_content_s']:.2f} s, server part {_fmt(result['slowest_server_s'])} "
              f"(median {result['median_load_s']:.2f} s over {len(loads)} loads); total {total:.1f} s vs "
              f"implied {implied:.1f} s; server log {log_lines} lines")
    else:
        print("SUMMARY: the queue never held a waiting run long enough to time a page")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
