"""Whole-process time of the light commands: ``chandra --help`` and ``chandra inspect`` of a 1,000-frame model.

Each command runs ``--runs`` times as a fresh process (``python -m
chandra.cli ...``, what the console script does); the median and the
fastest are printed. The model is trained here with the defaults (dsp, K =
64, factor oracle, audio embedded) on ``scripts/long_track.build_track``
music long enough for about 1,000 segments, unless ``--model`` names one.
``--repo DIR`` times another checkout of chandra (e.g. an older commit
unpacked with ``git archive``) with the same Python, for before/after.

Goals (issue 15): ``--help`` <= 0.3 s, ``inspect`` <= 1.0 s.

Usage::

    .venv/bin/python benchmarks/bench_cli.py [--runs 10] [--model M.chandra] [--repo DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_times(cmd: list[str], runs: int, env: dict, cwd: Path) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--minutes", type=float, default=3.3, help="music for the model (3.3 min: ~1,000 segments)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="chandra checkout to time (default: this one)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(args.repo), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               NUMBA_CACHE_DIR=str(ROOT / ".numba_cache"))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT / "scripts"))
            from long_track import write_track

            audio = write_track(Path(tmp) / "track.wav", args.minutes, seed=0)
            model = Path(tmp) / "m.chandra"
            subprocess.run([sys.executable, "-m", "chandra.cli", "train", str(audio), "-o", str(model), "--quiet"],
                           env=dict(env, PYTHONPATH=str(ROOT)), cwd=ROOT, check=True)
        probe = subprocess.run([sys.executable, "-m", "chandra.cli", "inspect", str(model), "--json"], env=env,
                               cwd=args.repo, capture_output=True, text=True, check=True)
        frames = json.loads(probe.stdout)["frames"]
        out = {"repo": str(args.repo), "model_frames": frames, "model_bytes": model.stat().st_size,
               "runs": args.runs, "load_average_start": os.getloadavg()}
        for name, cmd in (("help", [sys.executable, "-m", "chandra.cli", "--help"]),
                          ("inspect", [sys.executable, "-m", "chandra.cli", "inspect", str(model)]),
                          ("python_startup", [sys.executable, "-c", "pass"])):
            times = run_times(cmd, args.runs, env, args.repo)
            out[name] = {"median_s": statistics.median(times), "min_s": min(times), "runs_s": times}
            print(f"{name:15s} median {statistics.median(times):.3f} s, fastest {min(times):.3f} s "
                  f"({args.runs} fresh processes)", flush=True)
        out["load_average_end"] = os.getloadavg()
        print(f"model: {frames} frames, {out['model_bytes'] / 1e6:.1f} MB; load average "
              f"{out['load_average_start'][0]:.1f} -> {out['load_average_end'][0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
