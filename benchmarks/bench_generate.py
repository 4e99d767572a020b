"""Speed of improvisation and resynthesis on a 10,000-frame model.

Run: ``.venv/bin/python benchmarks/bench_generate.py [--frames 10000] [--minutes 5]``

The model is synthetic and reproducible: 64 gesture tokens arranged as
repeated motifs (so the oracle has real shared contexts), events of
0.08-0.16 s over a continuous signal at 11025 Hz. It times the oracle build
(for scale), :func:`improvise` by seconds with and without a ``--where``
filter, and :func:`resynthesise` of the result, and prints one line each.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))

from chandra.generate import improvise, resynthesise  # noqa: E402
from chandra.model import Model  # noqa: E402
from chandra.oracle import build_factor_oracle  # noqa: E402


def synthetic_model(n_frames: int, *, sr: int = 11025, n_tokens: int = 64, seed: int = 0) -> Model:
    rng = np.random.default_rng(seed)
    motifs = [rng.integers(0, n_tokens, rng.integers(3, 9)) for _ in range(40)]
    tokens: list[int] = []
    while len(tokens) < n_frames:
        if rng.random() < 0.8:
            tokens.extend(motifs[rng.integers(len(motifs))].tolist())
        else:
            tokens.append(int(rng.integers(n_tokens)))
    tokens = tokens[:n_frames]
    durations = rng.uniform(0.08, 0.16, n_frames)
    starts = np.r_[0.0, np.cumsum(durations)[:-1]]
    events = [
        {"t": float(t), "duration": float(d), "segment_id": i, "gesture_token": int(k),
         "consonance": float(rng.uniform(0, 1)), "rms_db": float(rng.uniform(-60, -6)),
         "f0": None if k % 7 == 0 else float(110 + 10 * k)}
        for i, (t, d, k) in enumerate(zip(starts, durations, tokens))
    ]
    n_samples = int(np.ceil((starts[-1] + durations[-1]) * sr)) + 1
    audio = (0.3 * rng.standard_normal(n_samples)).astype(np.float32)
    features = np.eye(n_tokens, dtype=np.float32)[tokens]
    return Model(events=events, features=features, oracle=build_factor_oracle(tokens),
                 audio=audio, sample_rate=sr)


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<44s} {time.perf_counter() - t0:8.3f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    seconds = args.minutes * 60.0

    model = timed(f"build model + factor oracle ({args.frames} frames)", lambda: synthetic_model(args.frames))
    gen = timed(f"improvise {args.minutes:g} min (continuity 0.8)",
                lambda: improvise(model, seconds=seconds, seed=0, continuity=0.8))
    print("   ", gen.summary(model))
    gen_w = timed(f"improvise {args.minutes:g} min, where consonance > 0.5",
                  lambda: improvise(model, seconds=seconds, seed=0, continuity=0.5, where="consonance > 0.5"))
    print("   ", gen_w.summary(model))
    y, sr = timed("resynthesise (20 ms crossfades)", lambda: resynthesise(model, gen, crossfade_ms=20.0))
    print(f"    output {len(y) / sr:.1f} s at {sr} Hz, {len(y)} samples")


if __name__ == "__main__":
    main()
