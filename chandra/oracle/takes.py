"""Several takes in one oracle: validating ``take_starts`` and the helpers
that keep frames and contexts inside their take.

A corpus oracle is built over T takes laid end to end; ``take_starts`` (int64,
shape (T,)) holds the frame where each take begins. See :class:`chandra.oracle.Oracle`.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chandra.errors import OracleError


def _take_starts_problem(starts: np.ndarray, n: int) -> str | None:
    """Why ``starts`` (int64, 1-D) is not a take layout over ``n`` frames, or None."""
    if starts.size == 0:
        return "is empty; the first take starts at frame 0"
    if starts[0] != 0:
        return f"starts at frame {int(starts[0])}; the first take starts at frame 0"
    if starts.size > 1 and np.any(np.diff(starts) <= 0):
        return "is not strictly increasing (every take has at least one frame)"
    if int(starts[-1]) >= max(n, 1):
        return f"names frame {int(starts[-1])} of an oracle of {n} frames"
    return None


def _checked_take_starts(take_starts: Any, n: int) -> Optional[np.ndarray]:
    """``take_starts`` as a valid int64 array, or None for one take (raises :class:`OracleError`)."""
    if take_starts is None:
        return None
    arr = np.asarray(take_starts)
    if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu")):
        raise OracleError(f"take_starts must be a 1-D array of frame indices, got dtype {arr.dtype} "
                          f"and shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    problem = _take_starts_problem(arr, n)
    if problem:
        raise OracleError(f"take_starts {problem}")
    return None if arr.size == 1 else arr


def take_of_frames(take_starts: Any, n: int) -> np.ndarray:
    """Take index of every frame, int64 (n,), for a valid ``take_starts`` (zeros when None)."""
    if take_starts is None:
        return np.zeros(n, dtype=np.int64)
    return np.searchsorted(np.asarray(take_starts, dtype=np.int64), np.arange(n, dtype=np.int64),
                           side="right").astype(np.int64) - 1


def _state_positions(take_starts: np.ndarray, n: int) -> np.ndarray:
    """For state i >= 1, how many frames of its own take end at it (frames take_start..i-1); 0 for the root.

    No context ending at state ``i`` may be longer: it would reach into the
    previous take."""
    pos = np.zeros(n + 1, dtype=np.int64)
    if n:
        frames = np.arange(n, dtype=np.int64)
        starts = np.asarray(take_starts, dtype=np.int64)
        pos[1:] = frames - starts[take_of_frames(starts, n)] + 1
    return pos


def _with_separators(codes: np.ndarray, n_codes: int, starts: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """The codes with a unique separator symbol before every take but the first.

    Returns ``(codes', n_codes', keep)``: ``keep`` (bool, one per state of
    the separated sequence, n + B + 1) is False for the states reached by
    reading a separator. A separator occurs once, so no repeated suffix
    contains one: every context stays inside a take.
    """
    n_sep = starts.size - 1
    at = starts[1:] + np.arange(n_sep, dtype=np.int64)  # separator positions in the longer sequence
    out = np.empty(codes.size + n_sep, dtype=np.int64)
    frame = np.ones(out.size, dtype=bool)
    frame[at] = False
    out[frame] = codes
    out[at] = n_codes + np.arange(n_sep, dtype=np.int64)
    keep = np.ones(out.size + 1, dtype=bool)
    keep[at + 1] = False
    return out, n_codes + n_sep, keep


def _renumber(links: np.ndarray, keep: np.ndarray, new_index: np.ndarray, name: str) -> np.ndarray:
    """State links (``-1`` for none) of the kept states, in the numbering without separator states."""
    out = links.copy()
    linked = out >= 0
    if np.any(~keep[out[linked]]):
        # A link into a separator state would mean a context holding a separator.
        raise OracleError(f"internal error: a {name} link points at a take separator")
    out[linked] = new_index[out[linked]]
    return out
