"""Cost of reading MusicHal JSON through the bounded reader (:mod:`chandra.safejson`).

Generates a ~100 MB MusicHal 9000 *base*-shape file (768-D features, the
shape of ``tests/helpers_musichal.py``), then times ``load_musichal`` on it in
fresh subprocesses (a warm-up load, then ``--repeat`` timed loads; the
process's median counts), alternating between this checkout and, with
``--baseline-commit``, the ``chandra/`` package of an earlier commit (taken
with ``git archive``), so both see the same machine load. Also times the
screen alone (:class:`chandra.safejson.JSONScreen` over the file in 256 KiB
chunks, the size the reader feeds ijson).

Goal (issue 9): screened load within 1.3x of the unscreened load.

Usage::

    .venv/bin/python benchmarks/bench_untrusted_json.py [--size-mb 100] [--runs 5]
        [--baseline-commit 27c89d1] [--keep PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers_musichal import frames_for_size, write_musichal_file  # noqa: E402

GOAL_RATIO = 1.3

_CHILD = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from chandra.musichal import load_musichal
model = load_musichal(sys.argv[2])  # warm-up: imports, page cache
walls, cpus = [], []
for _ in range(int(sys.argv[3])):
    start, cpu0 = time.perf_counter(), time.process_time()
    model = load_musichal(sys.argv[2])
    walls.append(time.perf_counter() - start)
    cpus.append(time.process_time() - cpu0)
print(json.dumps({"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "frames": model.n_frames,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
"""

_SCREEN = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from chandra.safejson import JSONScreen
screen = JSONScreen("bench")
start = time.perf_counter()
cpu0 = time.process_time()
with open(sys.argv[2], "rb") as fh:
    while True:
        block = fh.read(256 * 1024)
        if not block:
            break
        screen.feed(block)
print(json.dumps({"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu0}))
"""


def _child(code: str, tree: Path, path: Path, *extra: str) -> dict:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    proc = subprocess.run([sys.executable, "-c", code, str(tree), str(path), *extra], capture_output=True,
                          text=True, cwd=tree, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed in {tree}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _baseline_tree(commit: str, directory: Path) -> Path:
    archive = subprocess.run(["git", "archive", commit, "chandra"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per tree (alternating)")
    parser.add_argument("--repeat", type=int, default=3, help="timed loads per process, after a warm-up")
    parser.add_argument("--baseline-commit", default=None,
                        help="commit whose chandra/ is the unscreened reference (e.g. 27c89d1)")
    parser.add_argument("--keep", type=Path, default=None, help="write the file here (reused if it exists)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "musichal_large.json"
        if not path.exists():
            write_musichal_file(path, n_frames=frames_for_size(args.size_mb, args.dim), dim=args.dim)
        size_mb = path.stat().st_size / 1e6
        trees = {"screened": ROOT}
        if args.baseline_commit:
            trees["baseline"] = _baseline_tree(args.baseline_commit, Path(tmp) / "baseline")
        rows: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():  # alternate, so both see the same machine load
                rows[name].append(_child(_CHILD, tree, path, str(args.repeat)))
        screen = [_child(_SCREEN, ROOT, path) for _ in range(args.runs)]
    result = {"file_mb": size_mb, "runs": args.runs,
              "screen_only": {"wall_s": _median(screen, "wall_s"), "cpu_s": _median(screen, "cpu_s")}}
    for name, found in rows.items():
        result[name] = {key: _median(found, key) for key in ("wall_s", "cpu_s", "peak_rss_mb")}
        result[name]["frames"] = found[0]["frames"]
    print(f"file: {size_mb:.1f} MB; medians of {args.runs} processes x {args.repeat} loads")
    print(f"screen alone: {result['screen_only']['wall_s']:.3f} s wall, {result['screen_only']['cpu_s']:.3f} s CPU")
    for name in rows:
        r = result[name]
        print(f"load_musichal ({name}): {r['wall_s']:.3f} s wall, {r['cpu_s']:.3f} s CPU, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    status = 0
    if "baseline" in result:
        ratio_cpu = result["screened"]["cpu_s"] / result["baseline"]["cpu_s"]
        ratio_wall = result["screened"]["wall_s"] / result["baseline"]["wall_s"]
        result.update(ratio_cpu=ratio_cpu, ratio_wall=ratio_wall, goal_ratio=GOAL_RATIO)
        print(f"screened / baseline: {ratio_cpu:.3f} (CPU), {ratio_wall:.3f} (wall); goal <= {GOAL_RATIO} -> "
              f"{'OK' if ratio_cpu <= GOAL_RATIO else 'OVER'}")
        status = 0 if ratio_cpu <= GOAL_RATIO else 1
    print(json.dumps(result))
    return status


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
