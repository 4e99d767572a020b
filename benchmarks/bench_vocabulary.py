"""Full against mini-batch K-means for the gesture vocabulary: quality and time.

Usage::

    python benchmarks/bench_vocabulary.py [--quick] [--json OUT.json]

For each data set the same :class:`chandra.vocabulary.GestureVocabulary`
(L2 normalisation, K = 64, n_init = 4, seed 0, single-threaded BLAS as in
training) is fitted with ``algorithm="full"`` and ``algorithm="minibatch"``,
and the second is compared with the first:

* inertia ratio: sum of squared distances of the rows to their token's
  centre (in the space K-means runs in), mini-batch / full (1.0 = as good;
  above 1 = worse);
* token agreement: adjusted Rand index between the two token assignments
  (1.0 = the same partition up to renaming; label ids are arbitrary);
* fit time in seconds (median of ``--runs``; one run above 10,000 rows);
* for scale, the same two figures between two full K-means fits with
  different seeds (0 and 1): how much the partition moves anyway.

Data sets:

* ``dsp-real``: chandra's dsp features (102-D) of the bundled sample pieces
  played at eight speeds (resampled by soxr: pitch and tempo move
  together, -3 to +4 semitones) and two gains, about 40 minutes of music;
* ``neural-like``: 768-D vectors, 64 anisotropic Gaussian clusters of
  unequal size and spread plus 10 % uniform background, at several sizes
  (the shape of pooled transformer states, where the cost of full K-means
  grows with n x K x d per iteration).

Mini-batch alone is also timed beyond what full K-means can do here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def dsp_real(*, quick: bool) -> np.ndarray:
    import soxr

    from chandra.audio import load_audio
    from chandra.encoders import DSPEncoder
    from chandra.segment import segment_audio

    sr = 22050
    pieces = [load_audio(p, sr=sr)[0] for p in sorted((REPO / "sample_audio").glob("*.flac"))]
    semitones = (-3, -1, 0, 2, 4) if quick else tuple(range(-6, 7))
    encoder = DSPEncoder(sr=sr)
    rows = []
    for gain in ((1.0,) if quick else (1.0, 0.5, 0.25)):
        for st in semitones:
            for y in pieces:
                # Playing back faster by a factor f raises the pitch by 12 log2 f semitones.
                f = 2.0 ** (st / 12.0)
                z = soxr.resample(y, sr * f, sr).astype(np.float32) * gain if st else y * gain
                segs = segment_audio(z, sr)
                rows.append(encoder.encode(z, sr, segs))
    return np.vstack(rows).astype(np.float32)


def neural_like(n: int, *, dim: int = 768, k: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 0.7))
    counts = rng.multinomial(int(n * 0.9), weights)
    centres = rng.standard_normal((k, dim)) * 3.0
    parts = []
    for c, m in zip(centres, counts):
        basis = rng.standard_normal((dim, 8)) * rng.uniform(0.3, 1.5)
        parts.append(c + rng.standard_normal((m, 8)) @ basis.T + 0.3 * rng.standard_normal((m, dim)))
    parts.append(rng.uniform(-6, 6, size=(n - int(counts.sum()), dim)))
    X = np.vstack(parts).astype(np.float32)
    return X[rng.permutation(len(X))]


def fit(X: np.ndarray, algorithm: str, runs: int, *, seed: int = 0) -> tuple[object, float]:
    from chandra.vocabulary import GestureVocabulary

    times = []
    vocab = None
    for _ in range(runs):
        started = time.perf_counter()
        vocab = GestureVocabulary(n_tokens=64, algorithm=algorithm, random_state=seed).fit(X)
        times.append(time.perf_counter() - started)
    return vocab, statistics.median(times)


def compare(name: str, X: np.ndarray, runs: int) -> dict:
    from sklearn.metrics import adjusted_rand_score

    runs = runs if X.shape[0] <= 10_000 else 1
    full, t_full = fit(X, "full", runs)
    mini, t_mini = fit(X, "minibatch", runs)
    other_seed, _ = fit(X, "full", 1, seed=1)
    row = {"data": name, "n": int(X.shape[0]), "dim": int(X.shape[1]), "k": 64,
           "inertia_full": full.inertia_, "inertia_minibatch": mini.inertia_,
           "inertia_ratio": mini.inertia_ / full.inertia_,
           "adjusted_rand": float(adjusted_rand_score(full.labels_, mini.labels_)),
           "active_full": int(full.fit_metrics_["active"]), "active_minibatch": int(mini.fit_metrics_["active"]),
           "seconds_full": t_full, "seconds_minibatch": t_mini, "speedup": t_full / t_mini,
           "full_seed1_inertia_ratio": other_seed.inertia_ / full.inertia_,
           "full_seed1_adjusted_rand": float(adjusted_rand_score(full.labels_, other_seed.labels_)),
           "runs": runs,
           "iterations_full": int(full.n_iter_), "iterations_minibatch": int(mini.n_iter_)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, one run each")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    rows = [compare("dsp-real", dsp_real(quick=args.quick), runs)]
    for n in ((5_000, 10_000) if args.quick else (10_000, 30_000)):
        rows.append(compare("neural-like", neural_like(n), runs))
    alone = []
    from chandra.vocabulary import GestureVocabulary

    for n in ((50_000,) if args.quick else (100_000, 300_000)):
        X = neural_like(n)
        started = time.perf_counter()
        GestureVocabulary(n_tokens=64, algorithm="minibatch", random_state=0).fit(X)
        alone.append({"data": "neural-like", "n": n, "dim": 768, "seconds_minibatch": time.perf_counter() - started})
        print(json.dumps(alone[-1]), flush=True)
    import sklearn

    doc = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                       "cpus": os.cpu_count(), "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                       "load_average_at_end": os.getloadavg()},
           "runs": runs, "compared": rows, "minibatch_only": alone}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
