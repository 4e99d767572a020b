"""First contact on a fresh clone: the first ``chandra train`` and the first
dashboard Run all, cold and warm, with and without the install-time warm-up.

Usage::

    python benchmarks/bench_first_contact.py [--skip-dashboard] [--json OUT.json]

The working tree's current commit is cloned (``git clone --branch <branch>``)
into a temporary folder, and the existing ``.venv`` interpreter runs the clone
(cwd = the clone, so ``chandra`` and the dashboard are the clone's; no package
is installed). Every scenario gets its own empty ``NUMBA_CACHE_DIR`` — what a
fresh machine has:

``no warm-up``
    what a clone got before: the first ``chandra train`` of
    ``sample_audio/bach_prelude_c.flac`` (38 s, dsp, K = 64), then a second
    one in the same cache (warm);
``after warm-up``
    what ``make venv`` now gives: ``python -m chandra.warmup`` (timed: the
    install's one-off cost), then the first and the second train.

The dashboard is timed the same way: a ``streamlit run app.py`` on the clone
(port 8800-8899, fresh runs folder), driven by headless chromium. The Home
page is opened (time until its Run all button is there: the Home page counts
the default sample's segments when it loads), Run all is clicked with the
defaults (the Bach sample, K on auto) and the clock runs until every stage in
the new run's ``run.json`` is done and the page shows "At a glance"; then Run
all again in a new session (warm). The goal: cold ≤ 1.5 × warm.

Wall seconds for everything; for the CLI also the CPU seconds of the child
process (user + system). Results go to stdout (and ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PORTS = range(8800, 8900)
SAMPLE = "sample_audio/bach_prelude_c.flac"
RUN_ALL_TIMEOUT_S = 600

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def clone(tmp: Path) -> Path:
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    target = tmp / "clone"
    subprocess.run(["git", "clone", "--quiet", "--branch", branch, "--depth", "1", f"file://{REPO}", str(target)],
                   check=True)
    return target


def env_for(cache: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env.update(NUMBA_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def timed(cmd: list[str], cwd: Path, env: dict, timeout: float = 900) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "stdout": proc.stdout, "stderr": proc.stderr}


def train_once(root: Path, env: dict, out: Path) -> dict:
    result = timed([sys.executable, "-m", "chandra.cli", "train", SAMPLE, "-o", str(out), "--json"], root, env)
    summary = json.loads(result["stdout"])
    return {"wall_s": result["wall_s"], "cpu_s": result["cpu_s"], "stages_s": summary["seconds"]}


def cli_scenarios(root: Path, tmp: Path) -> dict:
    out: dict = {}
    cache = tmp / "cache-cli-cold"
    env = env_for(cache)
    out["no_warmup"] = {"first": train_once(root, env, tmp / "a.chandra"),
                        "second": train_once(root, env, tmp / "b.chandra")}
    cache = tmp / "cache-cli-warm"
    env = env_for(cache)
    warm = timed([sys.executable, "-m", "chandra.warmup"], root, env, timeout=1200)
    out["after_warmup"] = {"warmup": {"wall_s": warm["wall_s"], "cpu_s": warm["cpu_s"],
                                      "steps": [ln for ln in warm["stdout"].splitlines() if " s" in ln]},
                           "first": train_once(root, env, tmp / "c.chandra"),
                           "second": train_once(root, env, tmp / "d.chandra")}
    return out


# --------------------------------------------------------------------------- dashboard


def run_all(browser, base: str, runs: Path, exclude: set[str]) -> dict:
    from dashboard.serve import wait_idle

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        page.set_default_timeout(RUN_ALL_TIMEOUT_S * 1000)
        t_open = time.monotonic()
        page.goto(base + "/", wait_until="domcontentloaded")
        button = page.get_by_role("button", name=re.compile("Run all"))
        button.wait_for()
        page.get_by_text(re.compile(r"\d+ segments")).first.wait_for()  # the Home page's segment count
        wait_idle(page, timeout_ms=RUN_ALL_TIMEOUT_S * 1000)
        home_s = time.monotonic() - t_open
        t0 = time.monotonic()
        button.click()
        deadline = t0 + RUN_ALL_TIMEOUT_S
        meta, statuses = None, {}
        while time.monotonic() < deadline:
            for meta_path in runs.glob("*/run.json"):
                if meta_path.parent.name in exclude:
                    continue
                try:
                    meta = json.loads(meta_path.read_text())
                except (OSError, ValueError):
                    continue
                statuses = {s: i.get("status") for s, i in meta["stages"].items()}
                if any(v == "failed" for v in statuses.values()):
                    raise RuntimeError(f"a stage failed: {statuses}")
                break
            if statuses and all(v == "done" for v in statuses.values()):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"Run all did not finish in {RUN_ALL_TIMEOUT_S} s: {statuses}")
        done_s = time.monotonic() - t0
        page.get_by_text("At a glance").wait_for()
        ui_s = time.monotonic() - t0
        return {"run_id": meta["run_id"], "home_ready_s": round(home_s, 2), "done_s": round(done_s, 2),
                "ui_s": round(ui_s, 2), "k": meta["summaries"]["vocabulary"]["n_tokens"],
                "stages_s": {s: round(float(i.get("seconds") or 0.0), 2) for s, i in meta["stages"].items()}}
    finally:
        ctx.close()


def dashboard_scenario(root: Path, tmp: Path, name: str, *, warm_up: bool) -> dict:
    from playwright.sync_api import sync_playwright

    from dashboard.serve import free_port, launch_chromium, stop_server, wait_health

    cache = tmp / f"cache-dash-{name}"
    env = env_for(cache)
    out: dict = {}
    if warm_up:
        warm = timed([sys.executable, "-m", "chandra.warmup"], root, env, timeout=1200)
        out["warmup"] = {"wall_s": warm["wall_s"], "cpu_s": warm["cpu_s"]}
    runs = tmp / f"runs-{name}"
    runs.mkdir()
    port = free_port(PORTS)
    if port is None:
        raise SystemExit("no free port in 8800-8899")
    log = tmp / f"streamlit-{name}.log"
    streamlit = Path(sys.executable).with_name("streamlit")
    cmd = [str(streamlit), "run", "app.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env_for(cache, CHANDRA_RUNS_DIR=str(runs)), stdout=fh,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_health(base, proc, log, timeout=120)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                first = run_all(browser, base, runs, set())
                second = run_all(browser, base, runs, {first["run_id"]})
            finally:
                browser.close()
    finally:
        stop_server(proc)
    out.update(first=first, second=second)
    return out


def versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("numba", "librosa", "umap-learn", "streamlit", "numpy")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-dashboard", action="store_true")
    parser.add_argument("--skip-cli", action="store_true", help="only the dashboard scenarios")
    parser.add_argument("--skip-no-warmup", action="store_true",
                        help="only the scenarios after the install-time warm-up (what `make run` gives)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chandra-first-contact-") as name:
        tmp = Path(name)
        root = clone(tmp)
        results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                               "platform": platform.platform()}, "versions": versions(), "sample": SAMPLE}
        if not args.skip_cli:
            results["cli"] = cli_scenarios(root, tmp)
            print(json.dumps(results["cli"], indent=1), flush=True)
        if not args.skip_dashboard:
            results["dashboard"] = {}
            if not args.skip_no_warmup:
                results["dashboard"]["no_warmup"] = dashboard_scenario(root, tmp, "cold", warm_up=False)
            results["dashboard"]["after_warmup"] = dashboard_scenario(root, tmp, "warm", warm_up=True)
            print(json.dumps(results["dashboard"], indent=1), flush=True)
        shutil.rmtree(root, ignore_errors=True)
    for where in ("cli", "dashboard"):
        for scenario, r in (results.get(where) or {}).items():
            key = "wall_s" if where == "cli" else "ui_s"
            first, second = r["first"][key], r["second"][key]
            print(f"{where:<9} {scenario:<13} first {first:7.2f} s   second {second:7.2f} s   "
                  f"ratio {first / second:5.2f}" + (f"   warm-up {r['warmup']['wall_s']:.1f} s" if "warmup" in r
                                                    else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
