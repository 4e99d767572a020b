"""Information rate (Dubnov 2011): per-frame and mean IR of an oracle, IR of a
token sequence, and the audio oracle threshold sweep that picks the threshold
of highest IR.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chandra.errors import OracleError
from chandra.oracle import _kernels as _k
from chandra.oracle.audio import build_audio_oracle
from chandra.oracle.core import Oracle, _as_features, _metric_code
from chandra.oracle.factor import build_factor_oracle
from chandra.progress import ProgressCallback, report


# ---------------------------------------------------------------------------
# Information rate
# ---------------------------------------------------------------------------


def information_rate_profile(oracle: Oracle) -> np.ndarray:
    """Per-frame information rate in bits, float64 (n,).

    Notes
    -----
    Dubnov's information rate ``IR(past, present) = C(present) -
    C(present | past)`` with code lengths read off the oracle:

    * unconditional ``C_u(i) = log2 a_i`` bits, where ``a_i`` is the number
      of distinct symbols seen up to frame ``i - 1`` (the root's out-degree
      counting transitions into states ``<= i``: new tokens, or new clusters
      for the audio oracle) — a uniform code over the alphabet so far;
    * conditional: the sequence is parsed left to right into blocks, as in a
      Lempel-Ziv compressor driven by the oracle (Lefebvre & Lecroq's
      Compror). At state ``i`` the block is the longest ``i..i+L-1`` with
      ``lrs[i + m] >= m + 1`` for every ``m < L`` (each prefix of the block
      ends a suffix that already occurred). A block costs one pointer into
      the past, ``log2 i`` bits, shared by its ``L`` frames:
      ``C_c = log2(i) / L``. A frame with ``lrs[i] = 0`` (a new symbol) is
      coded literally, ``C_c = C_u`` and gains nothing.

    ``IR_i = max(0, C_u(i) - C_c(i))``: an encoder never pays more for a
    pointer than for a literal. A sequence of one repeated symbol and a
    sequence with no repeats both get 0; long recurring motifs over a rich
    alphabet get close to ``log2 a``.
    """
    n = oracle.n_frames
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    root = oracle.transitions(0)
    alphabet = np.searchsorted(root, np.arange(1, n + 1), side="right").astype(np.int64)
    return _k._ir_profile(np.ascontiguousarray(oracle.lrs, dtype=np.int64), alphabet)


def information_rate(oracle: Oracle) -> float:
    """Mean information rate per frame, in bits (see :func:`information_rate_profile`); 0.0 when empty."""
    prof = information_rate_profile(oracle)
    return float(prof.mean()) if prof.size else 0.0


def ir_tokens(symbols: Any) -> float:
    """Mean information rate (bits per frame) of a token sequence through its factor oracle.

    Used to compare vocabularies (a K sweep): the same audio tokenised with
    different K gives different IR.
    """
    return information_rate(build_factor_oracle(symbols))


def default_thresholds(
    features: Any, *, metric: str = "cosine", n_thresholds: int = 20, max_rows: int = 512, seed: int = 0
) -> np.ndarray:
    """A grid of candidate thresholds spanning the data's distance scale, float64 (n_thresholds,).

    ``n_thresholds`` points evenly spaced from the 5th percentile of
    nearest-neighbour distances to the 90th percentile of pairwise distances,
    both estimated on at most ``max_rows`` rows drawn with ``seed``. Even
    spacing (not quantiles) keeps points inside the gap between within- and
    between-cluster distances, where the best threshold usually lies.
    """
    X = _as_features(features)
    _metric_code(metric)
    n = X.shape[0]
    if n < 2:
        # No distances to learn a scale from: any grid gives the same one-state oracle.
        return np.linspace(0.05, 1.0, n_thresholds)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, max_rows), replace=False))
    S = X[rows].astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(S, axis=1)
        safe = np.where(norms > 0, norms, 1.0)
        U = S / safe[:, None]
        D = 1.0 - U @ U.T
        zero = norms == 0
        D[zero, :] = 1.0
        D[:, zero] = 1.0
        D[np.ix_(zero, zero)] = 0.0
        np.clip(D, 0.0, 2.0, out=D)
    else:
        sq = np.einsum("ij,ij->i", S, S)
        D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (S @ S.T), 0.0))
    np.fill_diagonal(D, np.inf)
    nn = D.min(axis=1)
    pairs = D[np.triu_indices(D.shape[0], k=1)]
    lo = float(np.percentile(nn, 5))
    hi = float(np.percentile(pairs, 90))
    if not hi > lo:
        hi = lo + 1e-6 if lo > 0 else 1e-6
    lo = max(lo, hi * 1e-3)
    return np.linspace(lo, hi, n_thresholds)


def ir_threshold_sweep(
    features: Any,
    *,
    thresholds: Any = None,
    metric: str = "cosine",
    search: str = "auto",
    progress: Optional[ProgressCallback] = None,
) -> dict[str, Any]:
    """Information rate of the audio oracle over a grid of thresholds.

    Parameters
    ----------
    features : array_like of float, shape (n, d)
    thresholds : array_like of float, optional
        Default: :func:`default_thresholds` (20 points).
    metric : {"cosine", "euclidean"}
    search : {"auto", "exact", "approximate"}
        Passed to :func:`build_audio_oracle`.
    progress : callable, optional
        ``progress("ir_sweep", done_thresholds, n_thresholds)``.

    Returns
    -------
    dict
        ``thresholds`` (list), ``ir`` (list, mean bits per frame),
        ``root_out_degree`` (list: clusters the oracle found),
        ``best_threshold`` and ``best_ir``: the maximum IR; when several
        consecutive thresholds tie (they give the same oracle), the middle of
        the longest such run.
    """
    X = _as_features(features)
    _metric_code(metric)
    grid = default_thresholds(X, metric=metric) if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
    if grid.size == 0:
        raise OracleError("the threshold grid is empty")
    irs: list[float] = []
    roots: list[int] = []
    for k, theta in enumerate(grid):
        oracle = build_audio_oracle(X, threshold=float(theta), metric=metric, search=search)
        irs.append(information_rate(oracle))
        roots.append(int(oracle.transitions(0).size))
        report(progress, "ir_sweep", k + 1, grid.size)
    best = _plateau_centre(np.asarray(irs))
    return {
        "thresholds": [float(t) for t in grid],
        "ir": irs,
        "root_out_degree": roots,
        "best_threshold": float(grid[best]),
        "best_ir": float(irs[best]),
    }


def _plateau_centre(values: np.ndarray, *, rtol: float = 1e-9) -> int:
    """Index in the middle of the longest run of grid points that reach the maximum.

    Thresholds inside the gap between within- and between-cluster distances
    all give the same oracle and the same IR; the middle of that run is the
    choice least sensitive to noise in new material.
    """
    top = values.max()
    at_top = values >= top - rtol * max(1.0, abs(top))
    best_start, best_len, start = 0, 0, None
    for k, flag in enumerate(np.append(at_top, False)):
        if flag and start is None:
            start = k
        elif not flag and start is not None:
            if k - start > best_len:
                best_start, best_len = start, k - start
            start = None
    return best_start + (best_len - 1) // 2


def select_threshold(
    features: Any,
    *,
    thresholds: Any = None,
    metric: str = "cosine",
    progress: Optional[ProgressCallback] = None,
) -> tuple[float, dict[str, Any]]:
    """The information-rate-maximising threshold and the whole curve.

    Returns
    -------
    (best_threshold, curve)
        ``curve`` is :func:`ir_threshold_sweep`'s dict.
    """
    curve = ir_threshold_sweep(features, thresholds=thresholds, metric=metric, progress=progress)
    return curve["best_threshold"], curve
