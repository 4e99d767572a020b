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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
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


def write_musichal(path: Path, *, size_mb: float, dim: int, seed: int = 0) -> int:
    """Write a base-shape MusicHal model of roughly ``size_mb`` MB; return the frame count."""
    rng = np.random.default_rng(seed)
    # ~19 characters per feature value plus ~700 per frame of events and graph
    per_frame = dim * 20 + 700
    n = max(10, int(size_mb * 1e6 / per_frame))
    n_tokens = 64
    symbols = rng.integers(0, n_tokens, n)
    # A cheap factor-oracle-like graph: link each state to the previous
    # occurrence of its symbol (root on first occurrence).
    last_seen: dict[int, int] = {}
    links = np.zeros(n + 1, dtype=np.int64)
    for i, s in enumerate(symbols.tolist(), start=1):
        links[i] = last_seen.get(s, 0)
        last_seen[s] = i
    t0 = 1_758_384_986.0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"states": {')
        first_state = {}
        for i, s in enumerate(symbols.tolist()):
            first_state.setdefault(s, i + 1)
        root_next = ", ".join(f'"{f - 1}": {f}' for f in first_state.values())
        fh.write(f'"0": {{"len": 0, "link": -1, "next": {{{root_next}}}}}')
        for i in range(1, n + 1):
            nxt = f'"{i}": {i + 1}' if i < n else ""
            fh.write(f', "{i}": {{"len": {i}, "link": {int(links[i])}, "next": {{{nxt}}}}}')
        fh.write('}, "transitions": {')
        fh.write(", ".join(f'"0_{f - 1}": {f}' for f in first_state.values()))
        for i in range(1, n):
            fh.write(f', "{i}_{i}": {i + 1}')
        fh.write('}, "suffix_links": {')
        fh.write(", ".join(f'"{i}": {int(links[i])}' for i in range(1, n + 1)))
        fh.write('}, "sequence": [')
        fh.write(", ".join(str(i) for i in range(n)))
        fh.write(f'], "sequence_length": {n}, "audio_frames": {{')
        for i in range(n):
            feats = rng.normal(size=dim)
            event = {"t": t0 + 0.5 * i, "midi": 60, "f0": 261.6, "rms_db": -20.0, "centroid": 2000.0,
                     "gesture_token": int(symbols[i]), "consonance": float(rng.uniform()),
                     "ioi": 0.5, "onset": True, "duration": 0.5, "tempo": 120.0}
            sep = ", " if i else ""
            fh.write(f'{sep}"{i}": {{"timestamp": {t0 + 0.5 * i + 0.01}, "features": [')
            fh.write(", ".join(map(repr, feats.tolist())))
            fh.write(f'], "audio_data": {json.dumps(event)}, "frame_id": {i}}}')
        fh.write(f'}}, "frame_counter": {n}, "distance_threshold": 0.15, "distance_function": "euclidean", '
                 f'"pattern_counter": 0, "max_pattern_length": 50, "is_trained": true, '
                 f'"stats": {{"total_states": {n + 1}, "sequence_length": {n}, "feature_dimensions": {dim}}}}}')
    return n


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
        n = write_musichal(path, size_mb=args.size_mb, dim=args.dim)
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
