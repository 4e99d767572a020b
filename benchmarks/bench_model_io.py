"""Model file speed and size, and memory of a large MusicHal import.

Run: ``NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_model_io.py
[--frames 10000] [--dim 768] [--mh-frames 6500] [--mh-dim 768]``

Goals: a 10k x 768 model saves and loads in <= 1 s together (median of 3) in a
file <= 1.2x its raw float32 feature bytes; a ~100 MB MusicHal JSON loads with
peak RSS well under the file size above the interpreter baseline (the design
goal is that a 2 GB file stays within a few hundred MB plus the float32
feature matrix).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers_musichal import write_musichal_file  # noqa: E402
sys.path.insert(0, str(ROOT))


def bench_chandra(n: int, dim: int, workdir: Path) -> dict:
    from chandra.model import Model, load_model, save_model
    from chandra.oracle import build_factor_oracle

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 64, n)
    events = [{"t": i * 0.25, "duration": 0.25, "segment_id": i, "gesture_token": int(tokens[i]),
               "consonance": float(rng.random()), "ratios": [1.0, 1.5, 2.0], "rms": 0.1, "rms_db": -20.0,
               "f0": None if i % 3 else 220.0, "midi": None if i % 3 else 57, "centroid": 1500.0}
              for i in range(n)]
    model = Model(events=events, features=rng.standard_normal((n, dim)).astype(np.float32),
                  oracle=build_factor_oracle(tokens), provenance={"bench": True},
                  centers=rng.standard_normal((64, dim)).astype(np.float32))
    path = workdir / "bench.chandra"
    saves, loads = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        save_model(model, path)
        t1 = time.perf_counter()
        load_model(path)
        t2 = time.perf_counter()
        saves.append(t1 - t0)
        loads.append(t2 - t1)
    size = path.stat().st_size
    return {"frames": n, "dim": dim, "save_s": statistics.median(saves), "load_s": statistics.median(loads),
            "save_plus_load_s": statistics.median(s + l for s, l in zip(saves, loads)),
            "file_bytes": size, "size_ratio_vs_raw_features": size / model.features.nbytes}


_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy, ijson, chandra.model, chandra.musichal, chandra.oracle

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")

# Importing numba/llvmlite peaks above what the load needs; writing 5 to
# clear_refs resets the kernel's high-water mark (VmHWM) so the peak below is
# the load's own.
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = True
except OSError:
    reset = False
base = status("VmRSS")
t0 = time.perf_counter()
model = chandra.model.load_model({path!r})
elapsed = time.perf_counter() - t0
peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"load_s": elapsed, "baseline_rss_mb": base, "peak_rss_mb": peak, "hwm_reset": reset,
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "frames": model.n_frames, "dim": model.feature_dim,
                  "features_mb": model.features.nbytes / 2**20, "ijson_backend": ijson.backend}}))
"""


def bench_musichal(n: int, dim: int, workdir: Path) -> dict:
    path = workdir / "musichal_big.json"
    write_musichal_file(path, n_frames=n, dim=dim)
    size = path.stat().st_size
    out = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT), path=str(path))],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["file_mb"] = size / 2**20
    result["peak_over_baseline_mb"] = result["peak_rss_mb"] - result["baseline_rss_mb"]
    result["peak_over_baseline_vs_file"] = result["peak_over_baseline_mb"] / result["file_mb"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--mh-frames", type=int, default=6_500)
    parser.add_argument("--mh-dim", type=int, default=768)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        chandra_result = bench_chandra(args.frames, args.dim, workdir)
        print("chandra model", json.dumps(chandra_result, indent=1))
        musichal_result = bench_musichal(args.mh_frames, args.mh_dim, workdir)
        print("musichal import", json.dumps(musichal_result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
