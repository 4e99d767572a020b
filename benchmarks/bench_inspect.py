"""Peak memory and time of ``inspect_model`` on a large MusicHal-shaped file.

Generates a MusicHal 9000 *base*-shape JSON model of about ``--size-mb``
megabytes (768-D features per frame, full ``audio_data`` event dicts, a
graph of the right size and shape in ``states``/``transitions``/``suffix_links``
— not a valid oracle, so ORACLE_INVARIANT findings are expected and their
check is part of the measured cost),
streamed to disk so the generator itself stays small, then runs
:func:`chandra.inspect.inspect_model` on it in a fresh subprocess and prints
that process's peak RSS and wall time.

Goal: peak RSS < 2 GB for a 100 MB file (a plain ``json.load`` of such a file
alone takes several GB of Python objects).

Usage::

    .venv/bin/python benchmarks/bench_inspect.py [--size-mb 100] [--dim 768] [--keep PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers_musichal import frames_for_size, write_musichal_file  # noqa: E402
GOAL_RSS_MB = 2048.0

_CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
from chandra.inspect import inspect_model
report = inspect_model(sys.argv[1])
elapsed = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak_kb / 1024.0, "frames": report["frames"],
                  "feature_dim": report["feature_dim"],
                  "findings": sorted({f["code"] for f in report["findings"]})}))
"""


def run(path: Path) -> dict:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                          cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"inspect_model failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--keep", type=Path, default=None, help="write the model here and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "musichal_large.json"
        started = time.perf_counter()
        n = write_musichal_file(path, n_frames=frames_for_size(args.size_mb, args.dim), dim=args.dim)
        gen_s = time.perf_counter() - started
        size_mb = path.stat().st_size / 1e6
        result = run(path)
    result.update(file_mb=size_mb, generated_frames=n, generate_seconds=gen_s, goal_rss_mb=GOAL_RSS_MB)
    print(f"file: {size_mb:.1f} MB, {n} frames x {args.dim}-D (generated in {gen_s:.1f} s)")
    print(f"inspect_model: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB "
          f"(goal < {GOAL_RSS_MB:.0f} MB) -> {'OK' if result['peak_rss_mb'] < GOAL_RSS_MB else 'OVER'}")
    print(f"findings: {', '.join(result['findings'])}")
    print(json.dumps(result))
    return 0 if result["peak_rss_mb"] < GOAL_RSS_MB else 1


if __name__ == "__main__":
    sys.exit(main())
