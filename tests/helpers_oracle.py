"""Synthetic frames for audio-oracle tests and benchmarks (benchmarks/bench_oracle*.py import it too)."""

from __future__ import annotations

import numpy as np


def motif_frames(n: int, d: int, n_proto: int, *, noise: float, seed: int, motif_len: tuple[int, int] = (3, 9),
                 n_motifs: int | None = None, normalise: bool = False, zero_every: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Unit prototypes recurring as motifs, with per-dimension noise.

    Many prototypes make the root's out-degree large (each prototype's first
    occurrence is a root child), which is where the approximate index takes over.

    Parameters
    ----------
    n, d : int
        Frames and their dimension.
    n_proto : int
        Number of unit prototypes.
    noise : float
        Standard deviation of the Gaussian noise added per dimension.
    seed : int
    motif_len : (int, int)
        Motif lengths are drawn from ``[lo, hi)``.
    n_motifs : int, optional
        Number of motifs (default ``max(4, n_proto // 3)``).
    normalise : bool
        L2-normalise the noisy frames.
    zero_every : int
        Make every ``zero_every``-th frame all zeros (silences: cosine
        distance 0 between two, 1 to anything else); 0 for none.

    Returns
    -------
    X : np.ndarray, float32, shape (n, d)
    labels : np.ndarray, int64, shape (n,)
        The prototype of each frame.
    """
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((n_proto, d))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    count = max(4, n_proto // 3) if n_motifs is None else n_motifs
    motifs = [rng.integers(0, n_proto, rng.integers(*motif_len)) for _ in range(count)]
    labels: list[int] = []
    while len(labels) < n:
        labels.extend(motifs[rng.integers(len(motifs))].tolist())
    lab = np.asarray(labels[:n], dtype=np.int64)
    X = protos[lab] + noise * rng.standard_normal((n, d))
    if normalise:
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    if zero_every:
        X[::zero_every] = 0.0
    return X.astype(np.float32), lab
