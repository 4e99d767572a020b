"""The numba kernels behind every part of :mod:`chandra.oracle`.

All kernels live in this one module because they call each other
(``_ao_kernel`` uses ``_dist`` and ``_append_edge``, the checks use
``_matched_run`` ...) and numba resolves a kernel's callees from its own
module's globals: the first call compiles (or loads from the on-disk cache,
``cache=True``) every kernel and rebinds this module's globals at once.
The other modules call them as ``_kernels.<name>(...)``, so they always see the
current binding (stand-in, interpreter, or compiled dispatcher).

Who uses what: construction (``_fo_kernel``, ``_sam_kernel``, ``_ao_kernel``,
``_append_edge``, ``_hash_slot``, ``_children_after``, ``_edges_to_csr``,
``_dist``, ``_dist_from_dot``, ``_row_sqnorms``), the approximate root index
(``_ivf_scan``, ``_ivf_insert``, ``_kmeans_update``, ``_smallest_columns``),
context (``_matched_run``, ``_matched_runs_kernel``), checks
(``_context_check``, ``_pair_dist_kernel``), information rate
(``_ir_profile``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


# ---------------------------------------------------------------------------
# numba kernels
#
# numba is imported on the first kernel call, not at import: model I/O, the
# inspector and the CLI import chandra.oracle for the Oracle container alone.
# ``_kernel`` records the python function and leaves a stand-in under its
# name; the first call compiles (or loads from the on-disk cache) every kernel
# and rebinds the module globals, so kernels calling kernels see dispatchers.
# ---------------------------------------------------------------------------

_KERNEL_SOURCES: dict[str, tuple[Any, dict]] = {}
# Reassociation lets the dot products vectorise; no "no-NaN/inf" assumption,
# so a NaN in the features still surfaces in the squared norms.
_FAST_MATH = {"reassoc", "contract", "nsz", "arcp"}


#: Until the kernels are compiled, a call of a kernel registered with
#: ``interpret_small=True`` (linear work: the checks, exact context, IR)
#: whose array arguments hold at most this many elements in all runs the same
#: source in the interpreter: importing numba and loading compiled kernels
#: from the disk cache costs about a second per process, far more than a
#: small model's checks take interpreted (``chandra inspect`` of a
#: 1,000-frame model).
_INTERPRET_MAX_ELEMENTS = 50_000
_INTERPRETED: dict[str, Any] = {}
_INTERPRETABLE: set[str] = set()


class _LazyKernel:
    def __init__(self, name: str, interpret_small: bool):
        self.name = name
        self.interpret_small = interpret_small

    def __call__(self, *args):
        if self.interpret_small and sum(a.size for a in args if isinstance(a, np.ndarray)) <= _INTERPRET_MAX_ELEMENTS:
            return _interpreted(self.name)(*args)
        _materialise_kernels()
        return globals()[self.name](*args)


def _interpreted(name: str):
    """Kernel ``name`` as plain Python: its source, calling the other kernels' sources."""
    if not _INTERPRETED:
        import types

        namespace = dict(globals())
        for kernel, (fn, _) in _KERNEL_SOURCES.items():
            namespace[kernel] = types.FunctionType(fn.__code__, namespace, kernel, fn.__defaults__, fn.__closure__)

        def entry(fn):
            def run(*args):
                with np.errstate(over="ignore"):  # hashing multiplies wrap around, as compiled
                    return fn(*args)
            return run

        _INTERPRETED.update({kernel: entry(namespace[kernel]) for kernel in _KERNEL_SOURCES})
    return _INTERPRETED[name]


def _kernel(*, interpret_small: bool = False, **options):
    def register(fn):
        _KERNEL_SOURCES[fn.__name__] = (fn, options)
        if interpret_small:
            _INTERPRETABLE.add(fn.__name__)
        return _LazyKernel(fn.__name__, interpret_small)

    return register


def _materialise_kernels() -> None:
    namespace = globals()
    if not any(isinstance(namespace[name], _LazyKernel) for name in _KERNEL_SOURCES):
        return
    from numba import njit

    for name, (fn, options) in _KERNEL_SOURCES.items():
        namespace[name] = njit(cache=True, **options)(fn)


@_kernel()
def _append_edge(src, dst, head, tail, e_next, e_src, e_dst, ne):
    # Append keeps each state's list in ascending destination order, which is
    # what makes "closest match, ties to the earliest" deterministic.
    if ne >= e_dst.shape[0]:
        cap = 2 * e_dst.shape[0] + 16
        nn = np.empty(cap, np.int64)
        nn[:ne] = e_next[:ne]
        e_next = nn
        ns = np.empty(cap, np.int64)
        ns[:ne] = e_src[:ne]
        e_src = ns
        nd = np.empty(cap, np.int64)
        nd[:ne] = e_dst[:ne]
        e_dst = nd
    e_next[ne] = -1
    e_src[ne] = src
    e_dst[ne] = dst
    if tail[src] < 0:
        head[src] = ne
    else:
        e_next[tail[src]] = ne
    tail[src] = ne
    return e_next, e_src, e_dst, ne + 1


@_kernel()
def _hash_slot(key, shift):
    # Fibonacci hashing: multiply by 2^64 / golden ratio, keep the top bits.
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(shift))


@_kernel()
def _hash_shift(size):
    # The bits _hash_slot drops so that it indexes a power-of-two table of ``size`` slots.
    shift = 64
    while size > 1:
        size >>= 1
        shift -= 1
    return shift


@_kernel()
def _table_insert(tab_key, tab_val, key, value, h, mask):
    # Open addressing, linear probing from slot h; tables are sized for a load <= 1/2.
    while tab_key[h] >= 0:
        h = (h + 1) & mask
    tab_key[h] = key
    tab_val[h] = value


@_kernel()
def _table_probe(tab_key, key, h, mask):
    # Probing from slot h: the slot holding key, or the free slot where it would go.
    while tab_key[h] >= 0 and tab_key[h] != key:
        h = (h + 1) & mask
    return h


@_kernel()
def _sam_overflow_edge(st, s, code, target, key, h, mask, tab_key, tab_val, e_code, e_next, ne):
    # Suffix automaton: transition s --code--> target beyond s's two inline
    # ones, into the table and onto s's overflow list; returns the new count.
    _table_insert(tab_key, tab_val, key, target, h, mask)
    e_code[ne] = code
    e_next[ne] = st[s, 7]
    st[s, 7] = ne
    return ne + 1


@_kernel()
def _fo_kernel(codes, n_codes, start, stop, sfx, root_next, tab_key, tab_val, e_src, e_dst, ne):
    # Non-root transitions live in an open-addressing table keyed by
    # (state, code): one probe per lookup instead of a walk along the state's
    # list, which dominated on rich alphabets.
    mask = tab_key.shape[0] - 1
    shift = _hash_shift(tab_key.shape[0])
    for i in range(start + 1, stop + 1):
        c = codes[i - 1]
        e_src[ne] = i - 1
        e_dst[ne] = i
        ne += 1
        if i == 1:
            root_next[c] = i
        else:
            key = (i - 1) * n_codes + c
            _table_insert(tab_key, tab_val, key, i, _hash_slot(key, shift), mask)
        k = sfx[i - 1]
        found = -1
        while k > -1:
            if k == 0:
                found = root_next[c]
            else:
                key = k * n_codes + c
                h = _table_probe(tab_key, key, _hash_slot(key, shift), mask)
                if tab_key[h] == key:
                    found = tab_val[h]
            if found >= 0:
                break
            e_src[ne] = k
            e_dst[ne] = i
            ne += 1
            if k == 0:
                root_next[c] = i
            else:
                tab_key[h] = key
                tab_val[h] = i
            k = sfx[k]
        sfx[i] = found if found >= 0 else 0
    return ne


@_kernel(interpret_small=True)
def _sam_kernel(codes, n_codes, start, stop, cursor, st, e_code, e_next, root_next, tab_key, tab_val, lrs, rep):
    # Online suffix automaton (Blumer et al. 1985) over frames start..stop-1,
    # written for the exact longest repeated suffix: when frame i is added,
    # the new state's suffix link is the state of the longest suffix that
    # also ends earlier; its length is lrs[i + 1] and its first end position
    # rep[i + 1].
    #
    # st[s] = (length, link, first end position, code1, target1, code2,
    # target2, head of the overflow list): a state's first two transitions
    # are stored inline (most states have one or two), the others in an
    # open-addressing table keyed by (state, code) and listed per state for
    # cloning; the root's transitions are a dense table.
    # cursor = (n_states, last, n_overflow).
    mask = tab_key.shape[0] - 1
    shift = _hash_shift(tab_key.shape[0])
    nst = cursor[0]
    last = cursor[1]
    ne = cursor[2]
    for i in range(start, stop):
        c = codes[i]
        cur = nst
        nst += 1
        st[cur, 0] = st[last, 0] + 1
        st[cur, 1] = -1
        st[cur, 2] = i + 1
        st[cur, 3] = -1
        st[cur, 5] = -1
        st[cur, 7] = -1
        p = last
        q = -1
        while p != -1:
            if p == 0:
                q = root_next[c]
                if q >= 0:
                    break
                root_next[c] = cur
            elif st[p, 3] == c:
                q = st[p, 4]
                break
            elif st[p, 5] == c:
                q = st[p, 6]
                break
            elif st[p, 3] < 0:
                st[p, 3] = c
                st[p, 4] = cur
            elif st[p, 5] < 0:
                st[p, 5] = c
                st[p, 6] = cur
            else:
                key = p * n_codes + c
                h = _hash_slot(key, shift)
                if st[p, 7] >= 0:
                    h = _table_probe(tab_key, key, h, mask)
                    if tab_key[h] == key:
                        q = tab_val[h]
                        break
                ne = _sam_overflow_edge(st, p, c, cur, key, h, mask, tab_key, tab_val, e_code, e_next, ne)
            p = st[p, 1]
        if p == -1:
            st[cur, 1] = 0
        elif st[p, 0] + 1 == st[q, 0]:
            st[cur, 1] = q
        else:
            clone = nst
            nst += 1
            st[clone, 0] = st[p, 0] + 1
            st[clone, 1] = st[q, 1]
            st[clone, 2] = st[q, 2]
            st[clone, 3] = st[q, 3]
            st[clone, 4] = st[q, 4]
            st[clone, 5] = st[q, 5]
            st[clone, 6] = st[q, 6]
            st[clone, 7] = -1
            e = st[q, 7]
            while e >= 0:
                d = e_code[e]
                key = q * n_codes + d
                target = tab_val[_table_probe(tab_key, key, _hash_slot(key, shift), mask)]
                key = clone * n_codes + d
                ne = _sam_overflow_edge(st, clone, d, target, key, _hash_slot(key, shift), mask, tab_key, tab_val,
                                        e_code, e_next, ne)
                e = e_next[e]
            while p != -1:
                if p == 0:
                    if root_next[c] != q:
                        break
                    root_next[c] = clone
                elif st[p, 3] == c:
                    if st[p, 4] != q:
                        break
                    st[p, 4] = clone
                elif st[p, 5] == c:
                    if st[p, 6] != q:
                        break
                    st[p, 6] = clone
                else:
                    key = p * n_codes + c
                    h = _table_probe(tab_key, key, _hash_slot(key, shift), mask)
                    if tab_val[h] != q:
                        break
                    tab_val[h] = clone
                p = st[p, 1]
            st[q, 1] = clone
            st[cur, 1] = clone
        u = st[cur, 1]
        lrs[i + 1] = st[u, 0]
        rep[i + 1] = st[u, 2] if st[u, 0] > 0 else 0
        last = cur
    cursor[0] = nst
    cursor[1] = last
    cursor[2] = ne


@_kernel(fastmath=_FAST_MATH)
def _dist_from_dot(dot, na, nb, metric):
    # metric 0: cosine distance 1 - cos; 1: euclidean, from squared norms.
    if metric == 0:
        if na == 0.0 or nb == 0.0:
            # Cosine is undefined for a zero vector: two silences are the same
            # thing, a silence and a sound are not.
            return 0.0 if (na == 0.0 and nb == 0.0) else 1.0
        return 1.0 - dot / math.sqrt(na * nb)
    return math.sqrt(max(na + nb - 2.0 * dot, 0.0))


@_kernel(fastmath=_FAST_MATH)
def _dist(X, a, b, sqnorm, metric):
    # Accumulate in the features' own precision: float32 halves the cost and
    # its rounding (~1e-6 relative) is far below any useful threshold.
    d = X.shape[1]
    acc = X[a, 0] - X[a, 0]
    if metric == 0:
        for t in range(d):
            acc += X[a, t] * X[b, t]
        return _dist_from_dot(np.float64(acc), sqnorm[a], sqnorm[b], 0)
    for t in range(d):
        diff = X[a, t] - X[b, t]
        acc += diff * diff
    return math.sqrt(np.float64(acc))


@_kernel()
def _ao_kernel(X, sqnorm, metric, theta, start, stop, G, g_row0, sfx, lrs, head, tail, e_next, e_src, e_dst, ne,
               stats, idx_edge, Y, theta_p2, cand, cand_lo, cand_hi, ctl):
    # G: when it has rows, G[f - g_row0, j] = X[f] . X[j] for the frames f of
    # this block and every earlier frame j (one matrix product per block,
    # chosen by the caller when most comparisons hit the root).
    # Root index (idx_edge >= 0): the root's children up to and including
    # edge ``idx_edge`` are in the caller's index; for frame f in
    # [cand_lo, cand_hi) ``cand[f - cand_lo]`` lists the index's candidates
    # (ascending frame ids, -1 padded), and later root children are compared
    # directly after a projected-distance prefilter: Y holds every frame's
    # coordinates under an orthonormal projection of the search space, so
    # |Y[f] - Y[j]|^2 >= theta_p2 proves the pair is not within the threshold.
    # A walk that reaches the indexed root without candidates pauses:
    # ctl[0] = its state on return (-1: the block is done); passing that
    # state back in ctl[0] resumes it at the root (its earlier transitions
    # are already added).
    # stats: 0 distance evaluations, 1 root searches through the index,
    # 2 root transitions added, 3 index candidates verified, 4 prefiltered pairs.
    dense = G.shape[0] > 0
    indexed = idx_edge >= 0
    resume = ctl[0]
    ctl[0] = -1
    n_eval = 0
    for i in range(start + 1, stop + 1):
        f = i - 1
        if i == resume:
            k = 0
        else:
            e_next, e_src, e_dst, ne = _append_edge(i - 1, i, head, tail, e_next, e_src, e_dst, ne)
            k = sfx[i - 1]
        found = -1
        while k > -1:
            best = theta
            e = head[k]
            prefilter = False
            if k == 0 and indexed:
                if f < cand_lo or f >= cand_hi:
                    ctl[0] = i
                    stats[0] += n_eval
                    return e_next, e_src, e_dst, ne
                stats[1] += 1
                # Candidates come in ascending frame order and the later
                # children follow, so "closest, earliest on ties" holds.
                for c in range(cand.shape[1]):
                    j = cand[f - cand_lo, c]
                    if j < 0:
                        break
                    n_eval += 1
                    stats[3] += 1
                    dd = _dist(X, f, j, sqnorm, metric)
                    if dd < best:
                        best = dd
                        found = j + 1
                e = e_next[idx_edge]
                prefilter = True
            while e >= 0:
                j = e_dst[e] - 1
                if prefilter:
                    stats[4] += 1
                    acc = Y[f, 0] - Y[f, 0]
                    for t in range(Y.shape[1]):
                        diff = Y[f, t] - Y[j, t]
                        acc += diff * diff
                    if acc >= theta_p2:
                        e = e_next[e]
                        continue
                n_eval += 1
                if dense:
                    # The product's rounding (and, for euclidean, cancellation
                    # in |a|^2 + |b|^2 - 2 a.b) could move a pair across the
                    # threshold, so anything near ``best`` is recomputed
                    # directly: both paths then take the same decisions.
                    dot = np.float64(G[f - g_row0, j])
                    if metric == 0:
                        if _dist_from_dot(dot, sqnorm[f], sqnorm[j], 0) >= best + 1e-4:
                            e = e_next[e]
                            continue
                    elif sqnorm[f] + sqnorm[j] - 2.0 * dot >= best * best + 1e-4 * (sqnorm[f] + sqnorm[j]):
                        e = e_next[e]
                        continue
                dd = _dist(X, f, j, sqnorm, metric)
                if dd < best:
                    best = dd
                    found = j + 1
                e = e_next[e]
            if found >= 0:
                break
            e_next, e_src, e_dst, ne = _append_edge(k, i, head, tail, e_next, e_src, e_dst, ne)
            if k == 0:
                stats[2] += 1
            k = sfx[k]
        if found < 0:
            sfx[i] = 0
            lrs[i] = 0
        else:
            sfx[i] = found
            lrs[i] = _matched_run(X, sqnorm, metric, theta, i, found, sfx, lrs)
    stats[0] += n_eval
    return e_next, e_src, e_dst, ne


@_kernel()
def _children_after(e, head, e_next, e_dst, k):
    # Frames labelling state k's transitions after edge e (all of them when
    # e < 0), in order, and the last edge seen (e when there is none).
    e = head[k] if e < 0 else e_next[e]
    count = 0
    probe = e
    while probe >= 0:
        count += 1
        probe = e_next[probe]
    out = np.empty(count, np.int64)
    last = -1
    for c in range(count):
        out[c] = e_dst[e] - 1
        last = e
        e = e_next[e]
    return out, last


@_kernel()
def _keep_smallest(keys, ids, n, cap, key, ident):
    # keys[:n], ids[:n] hold the (at most cap) smallest (key, id) pairs seen,
    # ascending (ties to the lower id); offer one more, return the new n.
    if n == cap and not (key < keys[n - 1] or (key == keys[n - 1] and ident < ids[n - 1])):
        return n
    pos = n if n < cap else cap - 1
    while pos > 0 and (keys[pos - 1] > key or (keys[pos - 1] == key and ids[pos - 1] > ident)):
        keys[pos] = keys[pos - 1]
        ids[pos] = ids[pos - 1]
        pos -= 1
    keys[pos] = key
    ids[pos] = ident
    return n + 1 if n < cap else n


@_kernel(fastmath=_FAST_MATH)
def _ivf_scan(Y, frames, dc, nprobe, list_start, list_len, pack_y, pack_id, theta_p2, out, home):
    # dc[q, c]: squared distance (up to a per-row constant) of query q to
    # list centre c; the nprobe nearest lists are scanned (ties to the lower
    # list) and home[f] records the nearest. For each query frame: the
    # members whose projected squared distance is below theta_p2, the
    # out.shape[1] closest kept (ties to the earlier frame), written in
    # ascending frame order, -1 padded. Lists are packed: list c's members
    # are pack_id[list_start[c]:][:list_len[c]] with their coordinates in the
    # same rows of pack_y (a sequential scan).
    k = out.shape[1]
    m = Y.shape[1]
    n_lists = dc.shape[1]
    bd = np.empty(k, np.float64)
    bj = np.empty(k, np.int64)
    pd = np.empty(nprobe, np.float64)
    pc = np.empty(nprobe, np.int64)
    n_scanned = 0
    for q in range(frames.shape[0]):
        f = frames[q]
        npb = 0
        for c in range(n_lists):
            npb = _keep_smallest(pd, pc, npb, nprobe, np.float64(dc[q, c]), c)
        for h in range(home.shape[1]):
            home[f, h] = pc[min(h, npb - 1)]
        nb = 0
        for p in range(npb):
            c = pc[p]
            lo = list_start[c]
            n_scanned += list_len[c]
            for r in range(lo, lo + list_len[c]):
                acc = Y[f, 0] - Y[f, 0]
                for t in range(m):
                    diff = Y[f, t] - pack_y[r, t]
                    acc += diff * diff
                dd = np.float64(acc)
                if dd >= theta_p2:
                    continue
                j = pack_id[r]
                seen = False
                for b in range(nb):  # a member spilled into two probed lists
                    if bj[b] == j:
                        seen = True
                if not seen:
                    nb = _keep_smallest(bd, bj, nb, k, dd, j)
        sel = np.sort(bj[:nb])
        for c in range(k):
            out[q, c] = sel[c] if c < nb else -1
    return n_scanned


@_kernel()
def _smallest_columns(scores, s):
    # The s columns of each row with the smallest scores, ascending (ties to the lower column).
    out = np.empty((scores.shape[0], s), np.int64)
    best = np.empty(s, np.float64)
    for q in range(scores.shape[0]):
        nb = 0
        row = out[q]
        for c in range(scores.shape[1]):
            nb = _keep_smallest(best, row, nb, s, np.float64(scores[q, c]), c)
        for h in range(nb, s):
            out[q, h] = out[q, nb - 1]
    return out


@_kernel()
def _ivf_insert(Y, members, assign, list_start, list_len, list_cap, pack_y, pack_id):
    # Append members to their packed lists; returns how many were placed
    # (fewer than all when a list is full: the caller repacks and goes on).
    for a in range(members.shape[0]):
        c = assign[a]
        if list_len[c] >= list_cap[c]:
            return a
        r = list_start[c] + list_len[c]
        pack_id[r] = members[a]
        for t in range(Y.shape[1]):
            pack_y[r, t] = Y[members[a], t]
        list_len[c] += 1
    return members.shape[0]


@_kernel()
def _kmeans_update(Y, assign, C):
    # Lloyd step: every centre with members moves to their mean.
    sums = np.zeros(C.shape, np.float64)
    counts = np.zeros(C.shape[0], np.int64)
    for a in range(Y.shape[0]):
        c = assign[a]
        counts[c] += 1
        for t in range(Y.shape[1]):
            sums[c, t] += Y[a, t]
    for c in range(C.shape[0]):
        if counts[c] > 0:
            for t in range(C.shape[1]):
                C[c, t] = sums[c, t] / counts[c]


@_kernel()
def _matched_run(X, sqnorm, metric, theta, i, k, sfx, lrs):
    # Consecutive frame pairs within the threshold ending at states i and
    # k = sfx[i] (frames i-1 and k-1 match: that is why k is the link). Where
    # the walk reaches a pair of states already linked, a < i with
    # sfx[a] == b, that pair's run lrs[a] is known and ends the walk, so a
    # repeat that continues a repeat costs one step.
    m = 1
    a = i - 1
    b = k - 1
    while b > 0:
        if sfx[a] == b:
            return m + lrs[a]
        if _dist(X, a - 1, b - 1, sqnorm, metric) >= theta:
            return m
        m += 1
        a -= 1
        b -= 1
    return m


@_kernel(interpret_small=True, fastmath=_FAST_MATH)
def _row_sqnorms(X):
    out = np.empty(X.shape[0], np.float64)
    for a in range(X.shape[0]):
        acc = X[a, 0] - X[a, 0]
        for t in range(X.shape[1]):
            acc += X[a, t] * X[a, t]
        out[a] = acc
    return out


@_kernel(interpret_small=True)
def _pair_dist_kernel(X, a, b, sqnorm, metric):
    out = np.empty(a.shape[0], np.float64)
    for k in range(a.shape[0]):
        out[k] = _dist(X, a[k], b[k], sqnorm, metric)
    return out


@_kernel()
def _edges_to_csr(e_src, e_dst, ne, n_states):
    # Edges were created in ascending destination order, so a stable counting
    # sort by source leaves every row sorted by destination.
    ptr = np.zeros(n_states + 1, np.int64)
    for e in range(ne):
        ptr[e_src[e] + 1] += 1
    for s in range(n_states):
        ptr[s + 1] += ptr[s]
    fill = ptr[:-1].copy()
    dst = np.empty(ne, np.int64)
    for e in range(ne):
        s = e_src[e]
        dst[fill[s]] = e_dst[e]
        fill[s] += 1
    return ptr, dst


@_kernel(interpret_small=True, fastmath=_FAST_MATH)
def _context_check(sym, X, sqnorm, metric, theta, use_symbols, sfx, lrs, valid, verified):
    # verified[i] = min(lrs[i], M(i, sfx[i])) where M(a, b) is the number of
    # consecutive matching frame pairs ending at states a and b, and ``sfx``
    # is whichever link the context is claimed for (the oracle's ``rep``).
    # When sfx[i-1] == sfx[i] - 1 the pair chain of i extends the one of
    # i-1, so one comparison suffices; only "jumps" walk the context.
    # Returns the number of comparisons made.
    n = sfx.shape[0] - 1
    n_cmp = 0
    for i in range(1, n + 1):
        verified[i] = -1
        if not valid[i]:
            continue
        s = sfx[i]
        want = lrs[i]
        shortcut = False
        if i >= 2 and valid[i - 1] and sfx[i - 1] == s - 1 and s - 1 >= 1:
            if verified[i - 1] < lrs[i - 1] or want - 1 <= lrs[i - 1]:
                shortcut = True
        if shortcut:
            n_cmp += 1
            if use_symbols:
                ok = sym[i - 1] == sym[s - 1]
            else:
                ok = _dist(X, i - 1, s - 1, sqnorm, metric) < theta
            verified[i] = min(want, 1 + verified[i - 1]) if ok else 0
            continue
        m = 0
        while m < want:
            n_cmp += 1
            if use_symbols:
                ok = sym[i - 1 - m] == sym[s - 1 - m]
            else:
                ok = _dist(X, i - 1 - m, s - 1 - m, sqnorm, metric) < theta
            if not ok:
                break
            m += 1
        verified[i] = m
    return n_cmp


@_kernel(interpret_small=True)
def _ir_profile(lrs, alphabet):
    # See information_rate_profile for the formula.
    n = lrs.shape[0] - 1
    ir = np.zeros(n, np.float64)
    i = 1
    while i <= n:
        length = 0
        while i + length <= n and lrs[i + length] >= length + 1:
            length += 1
        if length == 0:
            i += 1
            continue
        share = math.log2(i) / length
        for j in range(i, i + length):
            gain = math.log2(alphabet[j - 1]) - share if alphabet[j - 1] > 0 else 0.0
            ir[j - 1] = gain if gain > 0.0 else 0.0
        i += length
    return ir


@_kernel()
def _matched_runs_kernel(X, sqnorm, metric, theta, sfx, lrs):
    for i in range(1, sfx.shape[0]):
        k = sfx[i]
        if k <= 0:
            lrs[i] = 0
        else:
            lrs[i] = _matched_run(X, sqnorm, metric, theta, i, k, sfx, lrs)
