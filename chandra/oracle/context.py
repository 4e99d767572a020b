"""Context: how many frames a state shares with an earlier one (``lrs``) and where (``rep``).

* :func:`exact_lrs`: the exact longest repeated suffix of every prefix of a
  token sequence, from an online suffix automaton (the pass
  :func:`chandra.oracle.build_factor_oracle` runs alongside its construction);
* :func:`audio_oracle_lrs`: an audio oracle's context recomputed from its
  features (MusicHal import);
* :func:`lefebvre_lecroq_lrs`: the graph-only estimate for oracles that come
  without their symbols.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chandra.oracle import _kernels as _k
from chandra.oracle.core import _as_features, _as_symbols, _dense_codes, _metric_code, _sqnorms
from chandra.oracle.takes import _checked_take_starts, _renumber, _with_separators


class _ExactContext:
    """The suffix automaton pass of :func:`build_factor_oracle`, fed chunk by chunk."""

    def __init__(self, codes: np.ndarray, n_codes: int):
        n = codes.shape[0]
        cap = 2 * n + 2  # a suffix automaton has at most 2n - 1 states
        # int32 halves the memory traffic whenever (state, code) keys fit.
        small = cap * max(n_codes, 1) < 2**31 - 1
        dt = np.int32 if small else np.int64
        self.codes = codes.astype(dt, copy=False)
        self.n_codes = n_codes
        self.st = np.empty((cap, 8), dt)
        self.st[0] = (0, -1, 0, -1, -1, -1, -1, -1)
        # Overflow transitions (beyond each state's two inline ones): fewer
        # than the automaton's 3n - 4 transitions minus one per state.
        self.e_code = np.empty(2 * n + 8, dt)
        self.e_next = np.empty(2 * n + 8, dt)
        self.root_next = np.full(max(n_codes, 1), -1, dt)
        size = 1 << max(4, int(4 * n).bit_length())  # load <= 1/2
        self.tab_key = np.full(size, -1, dt)
        self.tab_val = np.empty(size, dt)
        self.cursor = np.array([1, 0, 0], np.int64)
        self.lrs = np.zeros(n + 1, np.int64)
        self.rep = np.zeros(n + 1, np.int64)
        self.rep[0] = -1

    def feed(self, start: int, stop: int) -> None:
        _k._sam_kernel(self.codes, self.n_codes, start, stop, self.cursor, self.st, self.e_code, self.e_next,
                    self.root_next, self.tab_key, self.tab_val, self.lrs, self.rep)


def exact_lrs(symbols: Any, *, take_starts: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact longest repeated suffix of every prefix of a token sequence, and where it ends first.

    Parameters
    ----------
    symbols : array_like of int, shape (n,)
    take_starts : array_like of int, shape (T,), optional
        The sequence is T takes laid end to end (see :class:`Oracle`): a
        repeated suffix then never reaches across a take start, at either of
        its ends (computed with a unique separator between takes).

    Returns
    -------
    lrs : np.ndarray, int64, shape (n + 1,)
        ``lrs[i]`` is the length of the longest suffix of ``symbols[:i]``
        that also ends at an earlier position (occurrences may overlap);
        ``lrs[0] = 0``.
    rep : np.ndarray, int64, shape (n + 1,)
        ``rep[i]`` is the smallest ``j < i`` with ``symbols[j - lrs[i]:j] ==
        symbols[i - lrs[i]:i]`` (0 when ``lrs[i] = 0``); ``rep[0] = -1``.

    Notes
    -----
    One online suffix-automaton pass, linear in ``n`` for a fixed alphabet;
    this is what :func:`build_factor_oracle` stores as ``lrs`` and ``rep``.
    """
    sym = _as_symbols(symbols)
    if sym.size == 0:
        return np.zeros(1, np.int64), np.full(1, -1, np.int64)
    codes, n_codes = _dense_codes(sym)
    starts = _checked_take_starts(take_starts, sym.size)
    if starts is not None:
        codes, n_codes, keep = _with_separators(codes, n_codes, starts)
    ctx = _ExactContext(codes, n_codes)
    ctx.feed(0, codes.size)
    if starts is None:
        return ctx.lrs, ctx.rep
    new_index = np.cumsum(keep) - 1
    return ctx.lrs[keep], _renumber(ctx.rep[keep], keep, new_index, "rep")


def audio_oracle_lrs(features: Any, sfx: Any, *, threshold: float, metric: str) -> Optional[np.ndarray]:
    """The audio oracle's exact context for a graph whose features are known.

    For every state ``i`` with ``sfx[i] > 0``: the number of consecutive
    frame pairs ending at ``i`` and ``sfx[i]`` within ``threshold`` (the
    value :func:`build_audio_oracle` stores). An imported audio oracle (a
    MusicHal file: graph and features, no LRS) gets the same context back
    this way, rather than the graph-only estimate of
    :func:`lefebvre_lecroq_lrs`.

    Parameters
    ----------
    features : array_like of float, shape (n, d)
    sfx : array_like of int, shape (n + 1,)
    threshold : float
    metric : {"cosine", "euclidean"}

    Returns
    -------
    np.ndarray of int64, shape (n + 1,), or None
        None when the links are not strictly backwards (``0 <= sfx[i] < i``)
        or the features do not have one row per frame.
    """
    X = _as_features(features, check_finite=False)
    sfx = np.ascontiguousarray(sfx, dtype=np.int64)
    n_states = sfx.shape[0]
    if X.shape[0] != n_states - 1:
        return None
    if n_states > 1 and (np.any(sfx[1:] < 0) or np.any(sfx[1:] >= np.arange(1, n_states))):
        return None
    lrs = np.zeros(n_states, np.int64)
    if n_states > 1:
        _k._matched_runs_kernel(X, _sqnorms(X), _metric_code(metric), float(threshold), sfx, lrs)
    return lrs


def lefebvre_lecroq_lrs(sfx: Any, trn_ptr: Any, trn_dst: Any) -> Optional[np.ndarray]:
    """Context lengths from an oracle graph alone (Lefebvre & Lecroq's common-suffix recursion).

    For graphs that come without their symbols (a MusicHal 9000 file holds
    the transitions and suffix links of an audio oracle but neither the
    features' matches nor any LRS), this is the best available estimate:
    ``lrs[i] = LengthCommonSuffix(p, sfx[i] - 1) + 1``, where ``p`` is the
    last state on the suffix-link path from ``i - 1`` that received a
    transition into ``i`` during online construction (those transitions are
    in the graph, so ``p`` is found by walking the path while the next state
    still points to ``i``), and ``LengthCommonSuffix`` reads the suffix-link
    tree (Lefebvre & Lecroq 2000; Lefebvre, Lecroq & Alexandre 2003). It is
    the context shared with ``sfx[i]`` as far as the tree can tell: a lower
    bound of the longest repeated suffix on a factor oracle (see
    :func:`exact_lrs` for the exact value when symbols are known).

    Parameters
    ----------
    sfx : array_like of int, shape (n + 1,)
    trn_ptr : array_like of int, shape (n + 2,)
    trn_dst : array_like of int, shape (n_transitions,)
        The oracle's suffix links and CSR transitions.

    Returns
    -------
    np.ndarray of int64, shape (n + 1,), or None
        None when some link is not strictly backwards (``0 <= sfx[i] < i``),
        where the recursion is undefined.
    """
    sfx = np.asarray(sfx, dtype=np.int64)
    trn_ptr = np.asarray(trn_ptr, dtype=np.int64)
    trn_dst = np.asarray(trn_dst, dtype=np.int64)
    n_states = sfx.shape[0]
    if n_states > 1:
        tail = sfx[1:]
        if np.any(tail < 0) or np.any(tail >= np.arange(1, n_states)):
            return None
    stride = n_states + 1
    sources = np.repeat(np.arange(n_states, dtype=np.int64), np.diff(trn_ptr)[:n_states])
    edges = set((sources * stride + trn_dst[: sources.size]).tolist())
    s = sfx.tolist()
    lrs = [0] * n_states
    for i in range(1, n_states):
        k = s[i]
        if k <= 0:
            continue
        p1 = i - 1
        while s[p1] >= 0 and s[p1] * stride + i in edges:
            p1 = s[p1]
        p2 = k - 1
        if p2 == s[p1]:
            common = lrs[p1]
        else:
            while p2 > 0 and s[p2] != s[p1]:
                p2 = s[p2]
            common = 0 if p2 <= 0 else min(lrs[p1], lrs[p2])
        lrs[i] = common + 1
    return np.asarray(lrs, dtype=np.int64)
