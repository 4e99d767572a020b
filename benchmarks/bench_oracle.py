"""Oracle construction, invariant checks and information-rate sweep timings.

Run: ``python benchmarks/bench_oracle.py`` (prints the median of ``--repeat``
runs after one warm-up call, so numba compilation is not counted).

Cases
-----
* factor oracle, 100k tokens, K = 64 (iid uniform tokens: the worst case for
  lookups, as every state sees many different continuations);
* audio oracle, 10k x 768 float32, structured: 8 unit prototypes recurring as
  6 motifs of 4-11 frames, noise 0.01 per dimension before L2 normalisation,
  cosine threshold 0.3 (within-prototype distances < 0.1, between > 0.8);
* audio oracle, 10k x 768 float32, unstructured: iid Gaussian rows, cosine
  threshold 0.05 (no two frames match, the root's out-degree reaches n, and
  the algorithm makes n (n - 1) / 2 distance evaluations);
* IR threshold sweep, 2k x 20, 20 default thresholds, clustered motifs;
* check_oracle on the 100k-token factor oracle (with symbols) and on the
  structured audio oracle (with features).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402

from chandra.oracle import (  # noqa: E402
    build_audio_oracle,
    build_factor_oracle,
    check_oracle,
    information_rate,
    ir_threshold_sweep,
    oracle_health,
)
from _common import timed  # noqa: E402
from helpers_oracle import motif_frames  # noqa: E402


def motif_features(n: int, d: int, *, n_proto: int = 8, noise: float = 0.01, seed: int = 0):
    """Frames drawn from a few unit prototypes that recur as motifs; float32 (n, d) and labels (n,)."""
    return motif_frames(n, d, n_proto, noise=noise, seed=seed, motif_len=(4, 12), n_motifs=6, normalise=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller unstructured case (5k rows)")
    args = parser.parse_args(argv)
    r = max(3, args.repeat)
    rows = []

    tokens = np.random.default_rng(0).integers(0, 64, 100_000)
    med, best, _, fo = timed(lambda: build_factor_oracle(tokens), r)
    rows.append(("factor oracle 100k tokens K=64", med, best, f"{fo.n_transitions} transitions"))

    Xs, _ = motif_features(10_000, 768)
    med, best, _, ao = timed(lambda: build_audio_oracle(Xs, threshold=0.3), r)
    h = oracle_health(ao)
    rows.append(
        ("audio oracle 10k x 768 structured", med, best, f"root out-degree {h['root_out_degree']}, lrs mean {h['lrs_mean']:.1f}")
    )

    n_u = 5_000 if args.quick else 10_000
    Xu = np.random.default_rng(1).standard_normal((n_u, 768)).astype(np.float32)
    med, best, _, au = timed(lambda: build_audio_oracle(Xu, threshold=0.05), max(3, r // 2))
    rows.append(
        (f"audio oracle {n_u // 1000}k x 768 unstructured", med, best,
         f"root out-degree {au.transitions(0).size}, {n_u * (n_u - 1) // 2} distances")
    )

    Xsw, _ = motif_features(2_000, 20, n_proto=6, noise=0.02, seed=2)
    med, best, _, sweep = timed(lambda: ir_threshold_sweep(Xsw), r)
    rows.append(
        ("IR sweep 2k x 20, 20 thresholds", med, best,
         f"best threshold {sweep['best_threshold']:.3f}, IR {sweep['best_ir']:.2f} bits")
    )

    med, best, _, found = timed(lambda: check_oracle(fo, symbols=tokens), r)
    rows.append(("check_oracle 100k factor oracle", med, best, f"{len(found)} violations"))
    med, best, _, found = timed(lambda: check_oracle(ao, features=Xs), r)
    rows.append(("check_oracle 10k x 768 audio oracle", med, best, f"{len(found)} violations"))

    med, best, _, ir = timed(lambda: information_rate(fo), r)
    rows.append(("information_rate 100k factor oracle", med, best, f"{ir:.3f} bits/frame"))

    width = max(len(name) for name, *_ in rows)
    print(f"{'case':<{width}}  {'median s':>10}  {'min s':>10}  notes")
    for name, med, best, note in rows:
        print(f"{name:<{width}}  {med:>10.4f}  {best:>10.4f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
