"""Factor oracle construction (Allauzen, Crochemore & Raffinot 1999), with exact context."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chandra.oracle import _kernels as _k
from chandra.oracle.context import _ExactContext
from chandra.oracle.core import Oracle, _as_symbols, _dense_codes, _empty_oracle
from chandra.oracle.takes import _checked_take_starts, _renumber, _with_separators
from chandra.progress import ProgressCallback, report


_CHUNK = 1 << 16  # states per kernel call: progress granularity, negligible overhead


def build_factor_oracle(symbols: Any, *, take_starts: Any = None,
                        progress: Optional[ProgressCallback] = None) -> Oracle:
    """Build the factor oracle of a token sequence, online, with exact context.

    Parameters
    ----------
    symbols : array_like of int, shape (n,)
        Token per frame (any integers; they are only compared for equality).
    take_starts : array_like of int, shape (T,), optional
        The frames are T takes laid end to end, take ``t`` starting at frame
        ``take_starts[t]`` (``0`` first, strictly increasing). The oracle is
        then built over the takes with a unique separator symbol between
        them, and the separator states are removed: no direct transition
        leads from a take's last frame into the next take, and ``lrs``/``rep``
        are the exact longest repeated suffix *within* takes (a shared
        context never spans a take start, at either end; jumps between takes
        by shared context remain). The oracle records ``take_starts``.
    progress : callable, optional
        ``progress("oracle", done_frames, n)`` (``n + T - 1`` with takes:
        the separators count as frames).

    Returns
    -------
    Oracle
        ``kind="tokens"``, n + 1 states, at most 2n - 1 transitions, with
        exact ``lrs`` and ``rep`` (see :mod:`chandra.oracle`).

    Notes
    -----
    Allauzen-Crochemore-Raffinot construction: adding frame ``i - 1`` creates
    state ``i`` and the transition ``i-1 -> i``; the suffix chain of ``i - 1``
    is walked, adding ``k -> i`` from each state lacking a transition on the
    new symbol; the first state that has one gives ``sfx[i]`` (its target),
    else ``sfx[i] = 0``. Linear time for a fixed alphabet (root lookups use a
    dense table, other states an open-addressing hash table).

    ``lrs`` and ``rep`` come from a suffix automaton built in the same pass
    (:func:`exact_lrs`): ``lrs[i]`` is the true longest repeated suffix, not
    the Lefebvre-Lecroq lower bound read off the suffix links (in
    ``abbcabcdabc``, ``sfx[11] = 4`` shares only ``bc`` with state 11, but
    ``lrs[11] = 3`` and ``rep[11] = 7``: ``abc`` ends at 7).
    """
    sym = _as_symbols(symbols)
    n = sym.size
    if n == 0:
        _checked_take_starts(take_starts, 0)
        report(progress, "oracle", 0, 0)
        return _empty_oracle("tokens")
    starts = _checked_take_starts(take_starts, n)
    if starts is not None:
        return _separated_factor_oracle(sym, starts, progress)
    codes, n_codes = _dense_codes(sym)
    sfx = np.empty(n + 1, np.int64)
    sfx[0] = -1
    root_next = np.full(n_codes, -1, np.int64)
    # At most 2n - 1 transitions (ACR 1999); a power-of-two table of more
    # than 4n slots keeps the load under 1/2 and probe sequences short.
    size = 1 << max(4, int(4 * n).bit_length())
    # int32 halves the table's memory traffic whenever (state, code) keys fit.
    dt = np.int32 if (n + 1) * max(n_codes, 1) < 2**31 - 1 else np.int64
    tab_key = np.full(size, -1, dt)
    tab_val = np.empty(size, dt)
    cap = 2 * n + 1
    e_src = np.empty(cap, np.int64)
    e_dst = np.empty(cap, np.int64)
    ne = 0
    context = _ExactContext(codes, n_codes)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        ne = _k._fo_kernel(codes, n_codes, start, stop, sfx, root_next, tab_key, tab_val, e_src, e_dst, ne)
        context.feed(start, stop)
        report(progress, "oracle", stop, n)
    ptr, dst = _k._edges_to_csr(e_src, e_dst, ne, n + 1)
    return Oracle(kind="tokens", sfx=sfx, lrs=context.lrs, trn_ptr=ptr, trn_dst=dst, rep=context.rep)


def _separated_factor_oracle(sym: np.ndarray, starts: np.ndarray, progress: Optional[ProgressCallback]) -> Oracle:
    """The factor oracle of takes joined by unique separators, without the separator states.

    A separator state ``s`` (reached by reading separator ``j``) has
    ``sfx = lrs = rep = 0`` and no state links to it (every link is reached
    by reading a suffix that ends with a frame's own token); its transitions
    are the ones labelled by the separator (into it) and one into the next
    take's first state, so dropping it and renumbering keeps every oracle
    invariant, removes the direct transition across the take boundary, and
    leaves at most ``2n - 1`` transitions.
    """
    codes, n_codes = _dense_codes(sym)
    joined, _, keep = _with_separators(codes, n_codes, starts)
    inner = build_factor_oracle(joined, progress=progress)
    new_index = np.cumsum(keep) - 1
    sfx = _renumber(inner.sfx[keep], keep, new_index, "suffix")
    rep = _renumber(inner.rep[keep], keep, new_index, "repeat")
    lrs = inner.lrs[keep].copy()
    n_joined = joined.size
    src = np.repeat(np.arange(n_joined + 1, dtype=np.int64), np.diff(inner.trn_ptr))
    dst = inner.trn_dst
    ok = keep[src] & keep[dst]
    # Renumbering is monotonic, so CSR order (by source, destinations ascending) survives.
    new_src, new_dst = new_index[src[ok]], new_index[dst[ok]]
    n = sym.size
    ptr = np.zeros(n + 2, dtype=np.int64)
    np.cumsum(np.bincount(new_src, minlength=n + 1), out=ptr[1:n + 2])
    return Oracle(kind="tokens", sfx=sfx, lrs=lrs, trn_ptr=ptr, trn_dst=np.ascontiguousarray(new_dst),
                  rep=rep, take_starts=starts.copy())
