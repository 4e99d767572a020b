"""Frame-to-segment pooling shared by every encoder.

Frame ``i`` has a centre time ``c_i`` in seconds; segment ``[start, end)``
takes the frames with ``start <= c_i < end``; when there are none (a segment
shorter than a frame hop) it takes the single frame whose centre is nearest
the segment midpoint.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chandra.errors import EncoderError

__all__ = ["segment_bounds", "pool_frames", "IncrementalPooler"]


def segment_bounds(segments: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated segment start and end times.

    Parameters
    ----------
    segments : object
        Anything with array-like attributes ``start`` and ``end`` (seconds from
        file start), equal length.

    Returns
    -------
    start, end : np.ndarray, float64 (n_segments,)
        Seconds from file start.

    Raises
    ------
    EncoderError
        Missing attributes, unequal lengths, non-finite values, negative
        times or ``end < start``.
    """
    try:
        start = np.asarray(segments.start, dtype=np.float64).reshape(-1)
        end = np.asarray(segments.end, dtype=np.float64).reshape(-1)
    except AttributeError as exc:
        raise EncoderError(
            "segments must have 'start' and 'end' arrays (seconds from file start); "
            f"got {type(segments).__name__}"
        ) from exc
    if start.shape != end.shape:
        raise EncoderError(
            f"segments have {start.size} start times but {end.size} end times"
        )
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(end))):
        raise EncoderError("segment start/end times must be finite seconds")
    if np.any(start < 0):
        raise EncoderError(
            "segment start times must be seconds from file start (>= 0); "
            f"smallest is {start.min():.6g}"
        )
    bad = np.flatnonzero(end < start)
    if bad.size:
        i = int(bad[0])
        raise EncoderError(
            f"segment {i} ends before it starts ({start[i]:.6g} s > {end[i]:.6g} s)"
        )
    return start, end


def _frame_ranges(
    frame_times: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Half-open frame index ranges ``[lo, hi)`` per segment, never empty."""
    n_frames = frame_times.size
    lo = np.searchsorted(frame_times, start, side="left")
    hi = np.searchsorted(frame_times, end, side="left")
    empty = hi <= lo
    if np.any(empty):
        mid = 0.5 * (start[empty] + end[empty])
        right = np.clip(np.searchsorted(frame_times, mid, side="left"), 0, n_frames - 1)
        left = np.clip(right - 1, 0, n_frames - 1)
        nearest = np.where(
            np.abs(frame_times[left] - mid) <= np.abs(frame_times[right] - mid), left, right
        )
        lo = lo.copy()
        hi = hi.copy()
        lo[empty] = nearest
        hi[empty] = nearest + 1
    return lo, hi


#: Frames per prefix-sum block in :func:`pool_frames` (bounds its memory and
#: the span of each float64 prefix sum; at wav2vec2's 50 frames/s, 82 s).
_POOL_BLOCK = 4096


def pool_frames(
    frames: np.ndarray,
    frame_times: np.ndarray,
    segments: Any,
    *,
    with_std: bool = False,
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Mean (and optionally standard deviation) of frames inside each segment.

    Parameters
    ----------
    frames : np.ndarray, (n_frames, dim)
        Frame-level features.
    frame_times : np.ndarray, float64 (n_frames,)
        Centre time of each frame in seconds from file start, increasing.
    segments : object
        With ``start`` and ``end`` arrays in seconds (see :func:`segment_bounds`).
    with_std : bool
        Also return the per-segment population standard deviation.

    Returns
    -------
    mean : np.ndarray, float64 (n_segments, dim)
    std : np.ndarray, float64 (n_segments, dim) or None
        Zero for segments pooled from a single frame.

    Notes
    -----
    A segment takes the frames whose centre lies in ``[start, end)``; a segment
    containing no frame centre takes the frame nearest its midpoint. Sums are
    prefix sums in float64 over blocks of consecutive segments, so cost is
    O(n_frames + n_segments) whatever the segment lengths, and memory is
    bounded by the block, not the file.
    """
    frames = np.asarray(frames)
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] != frame_times.size:
        raise EncoderError(
            f"frames {frames.shape} and frame_times {frame_times.shape} do not match"
        )
    if frames.shape[0] == 0:
        raise EncoderError("no frames to pool (signal shorter than one analysis frame?)")
    start, end = segment_bounds(segments)
    dim = frames.shape[1]
    if start.size == 0:
        empty = np.zeros((0, dim), dtype=np.float64)
        return empty, (empty.copy() if with_std else None)
    lo, hi = _frame_ranges(frame_times, start, end)
    n_seg = start.size
    mean = np.empty((n_seg, dim), dtype=np.float64)
    std = np.empty((n_seg, dim), dtype=np.float64) if with_std else None
    for group in _pool_groups(lo, hi):
        _pool_group(frames, lo, hi, group, mean, std)
    return mean, std


def _pool_groups(lo: np.ndarray, hi: np.ndarray):
    """Runs ``(i, j, a, b)`` of consecutive segments ``i..j-1`` whose frames ``[a, b)`` span at most
    :data:`_POOL_BLOCK` (or one segment's own frames, if longer)."""
    n_seg = lo.size
    i = 0
    while i < n_seg:
        a, b, j = int(lo[i]), int(hi[i]), i + 1
        while j < n_seg and max(b, int(hi[j])) - min(a, int(lo[j])) <= _POOL_BLOCK:
            a, b, j = min(a, int(lo[j])), max(b, int(hi[j])), j + 1
        yield i, j, a, b
        i = j


def _pool_group(frames: np.ndarray, lo: np.ndarray, hi: np.ndarray, group: tuple[int, int, int, int],
                mean: np.ndarray, std: Optional[np.ndarray]) -> None:
    """Means (and standard deviations) of segments ``i..j-1`` from prefix sums over frames ``[a, b)``.

    float64 prefix sums over a block, not the file: a whole hour of 768-D
    frames would need 2 x 1.1 GB.
    """
    i, j, a, b = group
    dim = frames.shape[1]
    x = frames[a:b].astype(np.float64)
    csum = np.zeros((x.shape[0] + 1, dim), dtype=np.float64)
    np.cumsum(x, axis=0, out=csum[1:])
    l, h = lo[i:j] - a, hi[i:j] - a
    count = (h - l).astype(np.float64)[:, None]
    mean[i:j] = (csum[h] - csum[l]) / count
    if std is not None:
        csq = np.zeros_like(csum)
        np.cumsum(x * x, axis=0, out=csq[1:])
        var = (csq[h] - csq[l]) / count - mean[i:j] * mean[i:j]
        # prefix-sum variance can dip slightly below zero by cancellation
        block_std = np.sqrt(np.maximum(var, 0.0))
        block_std[(h - l) == 1] = 0.0  # exact, rather than the rounding residue of the prefix sums
        std[i:j] = block_std


class IncrementalPooler:
    """Segment means pooled while the frames are still being computed.

    The groups of segments and their arithmetic are exactly those of
    :func:`pool_frames`, so the result is bit for bit the same; a group is
    pooled as soon as every frame it spans is final. Used beside a neural
    encoder's forward passes (:mod:`chandra.encoders.overlap`).

    Parameters
    ----------
    frame_times : np.ndarray, float64 (n_frames,)
        Centre of every frame the encoder will produce, seconds.
    segments : object
        ``start``/``end`` arrays in seconds (see :func:`segment_bounds`).
    dim : int
        Frame dimension.

    Attributes
    ----------
    mean : np.ndarray, float64 (n_segments, dim)
        Filled group by group; complete when :attr:`done`.
    """

    def __init__(self, frame_times: np.ndarray, segments: Any, dim: int):
        frame_times = np.asarray(frame_times, dtype=np.float64)
        if frame_times.size == 0:
            raise EncoderError("no frames to pool (signal shorter than one analysis frame?)")
        start, end = segment_bounds(segments)
        self.n_frames = int(frame_times.size)
        self._bounds = (start, end)
        self.lo, self.hi = _frame_ranges(frame_times, start, end)
        self._groups = list(_pool_groups(self.lo, self.hi))
        self._next = 0
        self.mean = np.empty((start.size, int(dim)), dtype=np.float64)

    def planned_for(self, segments: Any, n_frames: int) -> bool:
        """This pooler was planned for exactly these segments and this many frames."""
        start, end = segment_bounds(segments)
        return (int(n_frames) == self.n_frames and np.array_equal(start, self._bounds[0])
                and np.array_equal(end, self._bounds[1]))

    @property
    def done(self) -> bool:
        """Every segment is pooled."""
        return self._next >= len(self._groups)

    def advance(self, frames: np.ndarray, ready: int) -> int:
        """Pool every group whose frames lie in ``frames[:ready]`` (final); returns the groups pooled."""
        if frames.shape[0] != self.n_frames or frames.shape[1] != self.mean.shape[1]:
            raise EncoderError(f"frames {frames.shape} do not match the {self.n_frames} x {self.mean.shape[1]} "
                               "frames this pooler was planned for")
        pooled = 0
        while self._next < len(self._groups) and self._groups[self._next][3] <= ready:
            _pool_group(frames, self.lo, self.hi, self._groups[self._next], self.mean, None)
            self._next += 1
            pooled += 1
        return pooled
