"""Checks and health: :func:`check_oracle` lists every violated oracle invariant
(see :mod:`chandra.oracle` for the invariants), :func:`oracle_health` sums up
an oracle's shape for the ledger and the dashboard.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chandra.errors import ModelFormatError
from chandra.oracle import _kernels as _k
from chandra.oracle.context import exact_lrs
from chandra.oracle.core import _TAKE_ARRAY, Oracle, _as_features, _as_symbols, _checked_sqnorms, _metric_code
from chandra.oracle.takes import _state_positions


#: Stable codes returned by :func:`check_oracle`.
CHECK_CODES = (
    "malformed",
    "input_length_mismatch",
    "sfx_out_of_range",
    "lrs_exceeds_sfx",
    "lrs_zero_mismatch",
    "lrs_context_mismatch",
    "lrs_not_longest",
    "rep_out_of_range",
    "too_many_transitions",
    "missing_direct_transition",
    "nondeterministic_transition",
    "sfx_distance_above_threshold",
    "transition_across_takes",
    "context_across_takes",
)


# ---------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------


class _Collector:
    def __init__(self, cap: int):
        self.cap = cap
        self.records: list[dict] = []

    def add(self, code: str, states: np.ndarray, describe, *, severity: str = "error") -> None:
        states = np.asarray(states, dtype=np.int64)
        total = int(states.size)
        if total == 0:
            return
        for s in states[: self.cap]:
            self.records.append(
                {
                    "code": code,
                    "state": int(s),
                    "message": f"{describe(int(s))} ({total} state(s) with {code})",
                    "count": total,
                    "severity": severity,
                }
            )

    def add_global(self, code: str, message: str, *, severity: str = "error") -> None:
        self.records.append({"code": code, "state": None, "message": message, "count": 1, "severity": severity})


def check_oracle(
    oracle: Oracle,
    *,
    symbols: Any = None,
    features: Any = None,
    max_per_code: int = 20,
) -> list[dict]:
    """List violated oracle invariants (empty when the oracle is healthy).

    Parameters
    ----------
    oracle : Oracle
    symbols : array_like of int, shape (n,), optional
        The token sequence a ``"tokens"`` oracle was built from; enables the
        context and determinism checks.
    features : array_like of float, shape (n, d), optional
        The frames a ``"features"`` oracle was built from; enables the
        distance checks.
    max_per_code : int
        At most this many records per code; every record carries the total.

    Returns
    -------
    list of dict
        ``{"code", "state", "message", "count", "severity"}``; ``count`` is the
        total number of states violating that code, ``state`` is None for
        whole-oracle findings. Codes (stable, see ``CHECK_CODES``):

        ``malformed``  arrays inconsistent with the layout (nothing else checked);
        ``input_length_mismatch``  symbols/features length differs from n;
        ``sfx_out_of_range``  not ``0 <= sfx[i] < i`` (i >= 1) or ``sfx[0] != -1``;
        ``lrs_exceeds_sfx``  ``lrs[i] > sfx[i]``;
        ``lrs_zero_mismatch``  ``lrs[i] == 0`` but ``sfx[i] != 0`` or vice versa;
        ``rep_out_of_range``  ``rep[0] != -1``, or for i >= 1 not
        ``sfx[i] <= rep[i] < i`` (``rep[i] == 0`` when ``sfx[i] == 0``);
        ``lrs_context_mismatch``  the ``lrs[i]`` frames ending at ``i`` differ
        from those ending at ``rep[i]``: exact symbol equality for tokens; for
        an audio oracle each aligned pair should be within the threshold, but
        an imported graph's Lefebvre-Lecroq values can exceed the pairwise
        run (matching is not transitive), so there it is a ``"warning"``;
        ``lrs_not_longest``  (``"warning"``) the context is underestimated:
        with symbols, a longer suffix of the prefix ends earlier
        (:func:`exact_lrs`); with features, the pair before the ``lrs[i]``
        matched pairs also matches. Oracles saved before chandra stored exact
        context, and imported graphs, show it; rebuilding the oracle fixes it;
        ``too_many_transitions``  more than ``2n - 1`` (factor oracle);
        ``missing_direct_transition``  no ``i-1 -> i``;
        ``nondeterministic_transition``  two transitions of one state with the
        same token (factor oracle, with symbols);
        ``sfx_distance_above_threshold``  ``d(frame i-1, frame sfx[i]-1) >= θ``
        with ``sfx[i] > 0`` (audio oracle, with features);
        ``transition_across_takes``  (oracles over takes) a direct transition
        ``b -> b + 1`` from a take's last frame into the next take; there the
        missing direct transition is expected and not reported;
        ``context_across_takes``  (oracles over takes) ``lrs[i]`` counts
        frames before the start of the take of state ``i`` or of ``rep[i]``.
        With takes, "longest" (``lrs_not_longest``) means longest within
        takes.

    Notes
    -----
    Linear in ``n`` plus the transitions (and one suffix-automaton pass with
    symbols); the context check compares one pair per state while the
    ``rep`` links advance in step and walks the context only where they jump.
    """
    col = _Collector(max(0, int(max_per_code)))
    try:
        arrays = oracle.to_arrays()
        Oracle.from_arrays(
            {"kind": oracle.kind, "threshold": oracle.threshold, "metric": oracle.metric}
            if oracle.kind == "features"
            else {"kind": oracle.kind},
            arrays,
        )
    except ModelFormatError as exc:
        col.add_global("malformed", str(exc))
        return col.records
    sfx, lrs, ptr, dst = arrays["sfx"], arrays["lrs"], arrays["trn_ptr"], arrays["trn_dst"]
    rep = arrays["rep"]
    n = sfx.shape[0] - 1
    idx = np.arange(n + 1, dtype=np.int64)
    starts = arrays.get(_TAKE_ARRAY)
    if starts is not None and starts.size <= 1:
        starts = None

    sym = None
    if symbols is not None:
        sym = _as_symbols(symbols)
        if sym.size != n:
            col.add_global("input_length_mismatch", f"{sym.size} symbols for an oracle of {n} frames")
            sym = None
    X = None
    sqnorm = None
    if features is not None:
        X = _as_features(features, check_finite=False)
        if X.shape[0] == n and n > 0:
            sqnorm = _checked_sqnorms(X)
        if X.shape[0] != n:
            col.add_global("input_length_mismatch", f"{X.shape[0]} feature rows for an oracle of {n} frames")
            X = None

    # Suffix links and LRS.
    bad = np.flatnonzero((sfx < 0) | (sfx >= idx))
    bad = bad[bad >= 1]
    if sfx[0] != -1:
        bad = np.concatenate([[0], bad])
    col.add("sfx_out_of_range", bad, lambda s: f"sfx[{s}] = {sfx[s]} is not in 0..{s - 1}")
    in_range = np.zeros(n + 1, dtype=bool)
    in_range[1:] = (sfx[1:] >= 0) & (sfx[1:] < idx[1:])
    col.add(
        "lrs_exceeds_sfx",
        np.flatnonzero(in_range & (lrs > sfx)),
        lambda s: f"lrs[{s}] = {lrs[s]} exceeds sfx[{s}] = {sfx[s]}",
    )
    zero_bad = np.flatnonzero(in_range & ((lrs == 0) != (sfx == 0)))
    col.add("lrs_zero_mismatch", zero_bad, lambda s: f"lrs[{s}] = {lrs[s]} but sfx[{s}] = {sfx[s]}")
    rep_ok = np.zeros(n + 1, dtype=bool)
    rep_ok[0] = rep[0] == -1
    rep_ok[1:] = np.where(sfx[1:] == 0, rep[1:] == 0, (rep[1:] >= sfx[1:]) & (rep[1:] < idx[1:]))
    rep_bad = np.flatnonzero(~rep_ok & (in_range | (idx == 0)))
    col.add(
        "rep_out_of_range",
        rep_bad,
        lambda s: f"rep[{s}] = {rep[s]} is not -1" if s == 0 else
        f"rep[{s}] = {rep[s]} is not in {sfx[s]}..{s - 1}" if sfx[s] > 0 else f"rep[{s}] = {rep[s]} but sfx[{s}] = 0",
    )

    # Transitions.
    if oracle.kind == "tokens" and n >= 1 and dst.size > 2 * n - 1:
        col.add_global("too_many_transitions", f"{dst.size} transitions exceed the factor-oracle bound 2n-1 = {2 * n - 1}")
    src = np.repeat(np.arange(n + 1, dtype=np.int64), np.diff(ptr))
    has_direct = np.zeros(n + 1, dtype=bool)
    has_direct[src[dst == src + 1]] = True
    take_ends = np.zeros(n + 1, dtype=bool)
    if starts is not None:
        take_ends[starts[1:]] = True
        col.add("transition_across_takes", np.flatnonzero(take_ends & has_direct) + 1,
                lambda s: f"transition {s - 1} -> {s} continues from the end of a take into the next take")
    missing = np.flatnonzero(~has_direct[:n] & ~take_ends[:n]) + 1
    col.add("missing_direct_transition", missing, lambda s: f"no transition {s - 1} -> {s}")
    if oracle.kind == "tokens" and sym is not None and dst.size:
        label = sym[dst - 1]
        order = np.lexsort((label, src))
        s_sorted, l_sorted = src[order], label[order]
        dup = np.flatnonzero((s_sorted[1:] == s_sorted[:-1]) & (l_sorted[1:] == l_sorted[:-1]))
        dup_states = np.unique(s_sorted[dup])
        col.add(
            "nondeterministic_transition",
            dup_states,
            lambda s: f"state {s} has two transitions labelled by the same token",
        )

    pos = None
    if starts is not None:
        pos = _state_positions(starts, n)
        rep_pos = np.where(rep_ok & (rep >= 0), pos[np.clip(rep, 0, n)], 0)
        across = np.flatnonzero(in_range & rep_ok & (idx >= 1) & ((lrs > pos) | ((rep > 0) & (lrs > rep_pos))))
        col.add("context_across_takes", across,
                lambda s: f"lrs[{s}] = {lrs[s]} reaches past the start of the take of state {s} "
                f"({pos[s]} frames) or of rep = {rep[s]} ({pos[rep[s]] if 0 <= rep[s] <= n else '?'} frames)")

    # Context of the repeated suffix: it ends at rep[i] too, and is the longest.
    valid = in_range & rep_ok & (sfx >= 1) & (lrs >= 1) & (lrs <= rep)
    use_symbols = oracle.kind == "tokens" and sym is not None
    use_features = oracle.kind == "features" and X is not None and n > 0
    if use_symbols or use_features:
        verified = np.empty(n + 1, np.int64)
        dummy_sym = np.zeros(1, np.int64)
        dummy_X = np.zeros((1, 1), np.float64)
        if use_symbols:
            _k._context_check(sym, dummy_X, np.zeros(1), 0, 0.0, True, rep, lrs, valid, verified)
        else:
            _k._context_check(
                dummy_sym, X, sqnorm, _metric_code(oracle.metric), float(oracle.threshold), False,
                rep, lrs, valid, verified,
            )
        ctx_bad = np.flatnonzero(valid & (verified < lrs))
        what = "symbols" if use_symbols else "frame pairs within the threshold"
        col.add(
            "lrs_context_mismatch",
            ctx_bad,
            lambda s: f"only {verified[s]} of the lrs[{s}] = {lrs[s]} {what} ending at {s} and rep = {rep[s]} agree",
            severity="error" if use_symbols else "warning",
        )
        # A context that holds but is not the longest (a wrong one is a
        # mismatch above, a missing one a zero mismatch).
        holds = valid & (verified == lrs)
        if use_symbols:
            longest, first_end = exact_lrs(sym, take_starts=starts)
            short = np.flatnonzero(holds & (lrs < longest))
            col.add(
                "lrs_not_longest",
                short,
                lambda s: f"lrs[{s}] = {lrs[s]} but the longest repeated suffix has {longest[s]} symbols "
                f"(first ending at {first_end[s]})",
                severity="warning",
            )
        else:
            # The run is the longest when the pair just before it fails (or
            # one side reaches the first frame).
            room = holds & (rep - lrs >= 1)
            if pos is not None:  # within takes: the run cannot grow past either take's start
                room &= (lrs < pos) & (lrs < pos[np.clip(rep, 0, n)])
            full = np.flatnonzero(room)
            longer = full[:0]
            if full.size:
                d = _pair_distances(X, full - 1 - lrs[full], rep[full] - 1 - lrs[full], oracle.metric, sqnorm)
                longer = full[d < float(oracle.threshold)]
            col.add(
                "lrs_not_longest",
                longer,
                lambda s: f"lrs[{s}] = {lrs[s]} but frames {s - 1 - lrs[s]} and {rep[s] - 1 - lrs[s]} "
                "also match: the run shared with rep is longer",
                severity="warning",
            )

    if use_features:
        linked = np.flatnonzero(in_range & (sfx > 0))
        if linked.size:
            d = _pair_distances(X, linked - 1, sfx[linked] - 1, oracle.metric, sqnorm)
            far = d >= float(oracle.threshold)
            far_states = linked[far]
            far_d = dict(zip(far_states[: col.cap].tolist(), d[far][: col.cap].tolist()))
            col.add(
                "sfx_distance_above_threshold",
                far_states,
                lambda s: f"d(frame {s - 1}, frame {sfx[s] - 1}) = {far_d.get(s, float('nan')):.4g} "
                f">= threshold {oracle.threshold:.4g}",
            )
    return col.records


def _pair_distances(X: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str, sqnorm: np.ndarray) -> np.ndarray:
    """Distances between rows ``a[k]`` and ``b[k]`` of ``X``, float64 (len(a),), as the builder computes them."""
    return _k._pair_dist_kernel(X, np.ascontiguousarray(a), np.ascontiguousarray(b), sqnorm, _metric_code(metric))


# ---------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------


def oracle_health(oracle: Oracle, *, lrs_bins: int = 32) -> dict[str, Any]:
    """Summary scalars of an oracle's shape, for the ledger and the dashboard.

    Parameters
    ----------
    oracle : Oracle
    lrs_bins : int
        LRS histogram has one bin per value ``0..lrs_bins - 1`` and a last bin
        for ``>= lrs_bins``.

    Returns
    -------
    dict
        ``kind``, ``n_states`` (n + 1), ``n_frames``, ``n_transitions``,
        ``transitions_per_state_mean``, ``transitions_per_state_max``,
        ``root_out_degree``, ``root_out_degree_share`` (/ n),
        ``sfx_to_root_share`` and ``sfx_to_previous_share`` (shares of the n
        states 1..n with ``sfx[i] == 0``, and with ``sfx[i] == i - 1`` for
        i >= 2, as state 1's link to the root is not a "previous" link),
        ``lrs_mean``,
        ``lrs_max``, ``lrs_median`` (states 1..n, in frames),
        ``lrs_histogram`` (list of ``lrs_bins + 1`` counts),
        ``lrs_histogram_cap`` (= ``lrs_bins``), ``transition_density``
        (``n_transitions / (n (n + 1) / 2)``, 1.0 = every forward pair),
        ``threshold``, ``metric``. Shares are NaN-free: 0.0 when n = 0.
    """
    n = oracle.n_frames
    deg = oracle.out_degree()
    sfx = oracle.sfx[1:]
    lrs = oracle.lrs[1:]
    states = np.arange(1, n + 1)
    hist = np.bincount(np.minimum(lrs, lrs_bins), minlength=lrs_bins + 1) if n else np.zeros(lrs_bins + 1, np.int64)
    return {
        "kind": oracle.kind,
        "n_states": n + 1,
        "n_frames": n,
        "n_transitions": oracle.n_transitions,
        "transitions_per_state_mean": float(deg.mean()) if deg.size else 0.0,
        "transitions_per_state_max": int(deg.max()) if deg.size else 0,
        "root_out_degree": int(deg[0]) if deg.size else 0,
        "root_out_degree_share": float(deg[0] / n) if n else 0.0,
        "sfx_to_root_share": float(np.mean(sfx == 0)) if n else 0.0,
        "sfx_to_previous_share": float(np.sum((sfx == states - 1) & (states >= 2)) / n) if n else 0.0,
        "lrs_mean": float(lrs.mean()) if n else 0.0,
        "lrs_max": int(lrs.max()) if n else 0,
        "lrs_median": float(np.median(lrs)) if n else 0.0,
        "lrs_histogram": [int(c) for c in hist[: lrs_bins + 1]],
        "lrs_histogram_cap": int(lrs_bins),
        "transition_density": float(oracle.n_transitions / (n * (n + 1) / 2)) if n else 0.0,
        "threshold": oracle.threshold,
        "metric": oracle.metric,
    }
