"""Audio oracle construction (Dubnov, Assayag & Cont 2007; the variable Markov
oracle of Wang & Dubnov): frames compared by a distance and a threshold, with
an optional approximate root search (:mod:`chandra.oracle.root_index`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Optional

import numpy as np

from chandra.errors import OracleError
from chandra.oracle import _kernels as _k
from chandra.oracle.core import Oracle, _as_features, _checked_sqnorms, _empty_oracle, _metric_code
from chandra.oracle.root_index import _ANN_K, _RootIndex
from chandra.oracle.takes import _checked_take_starts, _state_positions
from chandra.progress import ProgressCallback, report


_AO_BLOCK = 256  # audio-oracle frames per kernel call (and per Gram block)
_DENSE_RATIO = 16  # a Gram block pays off when a frame is compared with > 1/16 of the past

#: ``build_audio_oracle`` search modes.
SEARCH_MODES = ("auto", "exact", "approximate")
#: ``search="auto"`` indexes the root once scanning its children costs this
#: many multiply-adds per frame (root out-degree x feature dimension; 4,096
#: children of 768-D frames); below it the search is exact.
APPROX_MIN_WORK = 4096 * 768
#: ``search="approximate"`` indexes the root once it has this many children.
APPROX_MIN_ROOT = 256
_NO_Y = np.zeros((1, 1), np.float32)


@contextlib.contextmanager
def _one_blas_thread():
    """Limit BLAS to one thread for the duration (threadpoolctl, a scikit-learn dependency; no-op without it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _index_pays_off(n_root: int, dim: int) -> bool:
    """``search="auto"``: index the root once scanning it costs more than ``APPROX_MIN_WORK`` multiply-adds."""
    return n_root * dim >= APPROX_MIN_WORK


def build_audio_oracle(
    features: Any,
    *,
    threshold: float,
    metric: str = "cosine",
    search: str = "auto",
    progress: Optional[ProgressCallback] = None,
    take_starts: Any = None,
) -> Oracle:
    """Build the audio oracle (variable Markov oracle) of a feature sequence.

    Parameters
    ----------
    features : array_like of float, shape (n, d)
        One feature vector per frame (float32 or float64; not assumed to be
        L2-normalised).
    threshold : float
        Two frames match when their distance is strictly below it
        (cosine distance in [0, 2]; euclidean in feature units).
    metric : {"cosine", "euclidean"}
        ``cosine`` is ``1 - a.b / (|a| |b|)`` (0 between two zero vectors, 1
        between a zero and a non-zero vector); ``euclidean`` is ``|a - b|``.
    search : {"auto", "exact", "approximate"}
        How a new frame is matched against the root's children (see Notes):
        ``exact`` compares it with every one; ``approximate`` asks an index
        as soon as the root has ``APPROX_MIN_ROOT`` children; ``auto`` (the
        default) asks it once comparing with every child would cost more
        than ``APPROX_MIN_WORK`` multiply-adds per frame (root out-degree x
        d), and is exact below that.
    progress : callable, optional
        ``progress("oracle", done_frames, n)``.
    take_starts : array_like of int, shape (T,), optional
        The frames are T takes laid end to end (see :class:`Oracle`). The
        oracle is built over the whole sequence, then the direct transition
        from each take's last frame into the next take is removed and every
        ``lrs`` is cut at take starts: the matched run shared with
        ``sfx[i]`` stops where either run would cross into the previous
        take, which is the exact run within takes. Suffix links may still
        join frames of different takes (that is what lets the improviser
        move between takes).

    Returns
    -------
    Oracle
        ``kind="features"`` with ``threshold`` and ``metric`` recorded, and
        ``search`` describing how it was built (``mode``: "exact" or
        "approximate"; for an approximate build the root searches the index
        answered and its parameters).

    Notes
    -----
    Dubnov-Assayag-Cont construction: adding frame ``i - 1`` creates state
    ``i`` and ``i-1 -> i``; the suffix chain of ``i - 1`` is walked and at
    each state ``k`` the new frame is compared with the frames labelling all
    of ``k``'s transitions. If one or more are within the threshold the
    closest one's destination (earliest on ties) becomes ``sfx[i]``; else
    ``k -> i`` is added and the walk goes on; reaching past the root gives
    ``sfx[i] = 0``. ``lrs[i]`` is the number of consecutive frame pairs
    ending at ``i`` and ``sfx[i]`` within the threshold (exact, counted with
    the builder's distance; see :mod:`chandra.oracle` for why this is the
    audio oracle's "exact" context) and ``rep`` equals ``sfx``. With one-hot
    (or otherwise well separated) frames and a threshold between within- and
    between-symbol distances ``sfx`` and the transitions equal the factor
    oracle's of the symbol sequence, and ``lrs[i]`` is the common suffix of
    states ``i`` and ``sfx[i]``.

    Cost. Each comparison is one ``d``-dimensional distance (squared norms are
    precomputed). On structured material (frames recurring within the
    threshold) the suffix chain is short and out-degrees are small, so the
    cost is about linear in ``n``. On unstructured material (few frames
    within the threshold of an earlier one: noise, or a threshold that is too
    small) most frames reach the root, whose out-degree grows towards ``n``:
    the exact search costs ``n (n - 1) / 2`` distance evaluations, O(n^2 d)
    (done in blocks whose dot products with the past come from one BLAS
    product; 10k x 768 takes about half a second, 100k about a minute).

    Approximate search replaces only the root's scan (every other state's
    children are few and always compared exactly): the children up to the
    previous block of 256 frames are in an inverted-file index
    (:class:`_RootIndex`: PCA projection of the search space to 64
    dimensions, spherical K-means lists, each child in its 2 nearest lists,
    the 24 lists nearest the new frame scanned, the 8 closest candidates in
    projection verified with the builder's own distance); children added
    since are compared exactly after a projected-distance filter that cannot
    reject a match. Every link is verified with the exact distance, so an
    approximate oracle never links frames farther apart than the threshold
    and passes :func:`check_oracle`; what it can do is miss a match, so that
    frame's link goes to a farther-back state or to the root. Its cost grows
    like ``n^1.5`` on unstructured input (100k x 768 in seconds instead of
    minutes); on material whose root stays below the switch it is the exact
    oracle. The index is deterministic (no random state; evenly spaced
    samples and seeds), so the same input gives the same oracle on the same
    machine and BLAS. Agreement with the exact oracle is measured in
    benchmarks/RESULTS.md.
    """
    X = _as_features(features, check_finite=False)
    code = _metric_code(metric)
    if search not in SEARCH_MODES:
        raise OracleError(f"search {search!r} is not one of {SEARCH_MODES}")
    theta = float(threshold)
    if not math.isfinite(theta) or theta < 0:
        raise OracleError(f"threshold must be a finite number >= 0, got {threshold!r}")
    n = X.shape[0]
    starts = _checked_take_starts(take_starts, n)
    if starts is not None:
        return _split_at_takes(build_audio_oracle(X, threshold=theta, metric=metric, search=search, progress=progress),
                               starts)
    if n == 0:
        report(progress, "oracle", 0, 0)
        out = _empty_oracle("features", theta, metric)
        out.search = {"mode": "exact", "requested": search}
        return out
    sqnorm = _checked_sqnorms(X)
    sfx = np.empty(n + 1, np.int64)
    lrs = np.empty(n + 1, np.int64)
    sfx[0], lrs[0] = -1, 0
    head = np.full(n + 1, -1, np.int64)
    tail = np.full(n + 1, -1, np.int64)
    cap = 2 * n + 16
    e_next = np.empty(cap, np.int64)
    e_src = np.empty(cap, np.int64)
    e_dst = np.empty(cap, np.int64)
    ne = 0
    stats = np.zeros(5, np.int64)
    ctl = np.full(1, -1, np.int64)
    no_gram = np.zeros((0, 0), dtype=X.dtype)
    no_cand = np.zeros((0, _ANN_K), np.int64)
    dense = False
    index: Optional[_RootIndex] = None
    searching, fallback = search != "exact", None
    idx_edge = -1
    speculate = True
    indexed_from = None
    with contextlib.ExitStack() as threads:
        for start in range(0, n, _AO_BLOCK):
            stop = min(n, start + _AO_BLOCK)
            n_root = int(stats[2]) + (1 if start > 0 else 0)  # frame 0's direct transition leaves the root
            if index is None and searching and start > 0 and (
                _index_pays_off(n_root, X.shape[1]) if search == "auto" else n_root >= APPROX_MIN_ROOT
            ):
                index = _RootIndex(X, metric, theta)
                indexed_from = start
                # From here on the matrix products are small (a block of queries
                # against the list centres): one BLAS thread is as fast, and
                # several spin against each other on a busy machine (measured 2x
                # slower wall time at a load of 6 on 2 cores).
                threads.enter_context(_one_blas_thread())
            if index is not None:
                frames, last = _k._children_after(idx_edge, head, e_next, e_dst, 0)
                if frames.size:
                    index.add(frames)
                    idx_edge = last
                index.extend(stop)
                if not index.usable:  # rows too large for float32 coordinates: exact from here on
                    index, idx_edge, searching, fallback = None, -1, False, "features too large for the index"
            # One BLAS product for the whole block beats frame-by-frame dots once
            # the walks compare each frame with a sizeable share of the past.
            gram = X[start:stop] @ X[:stop].T if dense and index is None else no_gram
            before_eval, before_idx = int(stats[0]), int(stats[1])
            cand, cand_lo = no_cand, 0
            ctl[0] = -1
            begin = start
            while True:
                e_next, e_src, e_dst, ne = _k._ao_kernel(
                    X, sqnorm, code, theta, begin, stop, gram, start, sfx, lrs, head, tail, e_next, e_src, e_dst, ne,
                    stats, idx_edge, _NO_Y if index is None else index.Y, 0.0 if index is None else index.theta_p2,
                    cand, cand_lo, cand_lo + cand.shape[0], ctl,
                )
                if ctl[0] < 0:
                    break
                # A walk reached the indexed root: ask the index for this frame
                # and, when most frames of the last block got that far, for the
                # rest of the block in the same batch.
                begin = int(ctl[0]) - 1
                span = stop - begin if speculate else min(stop - begin, 8)
                cand_lo = begin
                cand = index.query(np.arange(begin, begin + span, dtype=np.int64))
            per_frame = (int(stats[0]) - before_eval) / (stop - start)
            dense = per_frame * _DENSE_RATIO > stop
            speculate = (int(stats[1]) - before_idx) * 4 >= stop - start
            report(progress, "oracle", stop, n)
    ptr, dst = _k._edges_to_csr(e_src, e_dst, ne, n + 1)
    # Approximate only where the index answered a root search: until then
    # (or when no walk reached the indexed root) the oracle is the exact one.
    how: dict[str, Any] = {"mode": "approximate" if stats[1] > 0 else "exact", "requested": search}
    if stats[1] > 0:
        how.update({"indexed_from_frame": int(indexed_from), "index_searches": int(stats[1]),
                    "candidates_verified": int(stats[3])})
        if index is not None:
            how.update(index.describe())
    if fallback:
        how["fallback"] = fallback
    return Oracle(kind="features", sfx=sfx, lrs=lrs, trn_ptr=ptr, trn_dst=dst, threshold=theta, metric=metric,
                  rep=sfx.copy(), search=how)


def _split_at_takes(oracle: Oracle, starts: np.ndarray) -> Oracle:
    """An audio oracle over takes laid end to end, cut at the take starts (see :func:`build_audio_oracle`)."""
    n = oracle.n_frames
    pos = _state_positions(starts, n)
    sfx = oracle.sfx
    lrs = oracle.lrs.copy()
    linked = np.flatnonzero(sfx > 0)
    lrs[linked] = np.minimum(lrs[linked], np.minimum(pos[linked], pos[sfx[linked]]))
    ptr, dst = oracle.trn_ptr, oracle.trn_dst
    src = np.repeat(np.arange(n + 1, dtype=np.int64), np.diff(ptr))
    crossing = np.zeros(n + 1, dtype=bool)
    crossing[starts[1:]] = True  # state b (after a take's last frame) -> b + 1 (the next take's first)
    ok = ~(crossing[src] & (dst == src + 1))
    new_ptr = np.zeros(n + 2, dtype=np.int64)
    np.cumsum(np.bincount(src[ok], minlength=n + 1), out=new_ptr[1:n + 2])
    return Oracle(kind=oracle.kind, sfx=sfx, lrs=lrs, trn_ptr=new_ptr, trn_dst=np.ascontiguousarray(dst[ok]),
                  threshold=oracle.threshold, metric=oracle.metric, rep=oracle.rep, take_starts=starts.copy(),
                  search=oracle.search)
