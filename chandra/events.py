"""Events: one per segment, joined to tokens and harmony by segment id.

The join is by position/identity, never by nearest timestamp: segment ``i``,
token row ``i`` and harmony row ``i`` describe the same stretch of audio, and
the lengths must agree exactly or the join refuses to run.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from chandra.errors import ChandraError
from chandra.segment import Segments

__all__ = ["EVENT_FIELDS", "build_events", "validate_events", "hz_to_midi"]

#: Fields every chandra event carries (``f0``/``midi`` may be None).
EVENT_FIELDS = (
    "t", "duration", "segment_id", "gesture_token", "consonance", "ratios",
    "rms", "rms_db", "f0", "midi", "centroid",
)


def hz_to_midi(f0: float) -> float | None:
    """MIDI note number (float, A4 = 69) of a frequency in Hz; None if unpitched."""
    if f0 is None or not math.isfinite(f0) or f0 <= 0:
        return None
    return 69.0 + 12.0 * math.log2(f0 / 440.0)


def build_events(segments: Segments, tokens: np.ndarray, harmony: Sequence[dict]) -> list[dict]:
    """Join segments, tokens and harmony into events.

    Parameters
    ----------
    segments : Segments
        n segments (ids 0..n-1).
    tokens : int array (n,)
        Gesture token of segment i at row i.
    harmony : sequence of n dicts
        ``{"consonance", "ratios", ...}`` for segment i at position i.

    Returns
    -------
    events : list of n dicts
        Fields :data:`EVENT_FIELDS`; ``t`` and ``duration`` in seconds from
        file start. Feature vectors are not in the dicts: row i of the model's
        feature matrix belongs to event i.
    """
    n = len(segments)
    tokens = np.asarray(tokens)
    if tokens.shape != (n,):
        raise ChandraError(f"events: {n} segments but tokens of shape {tokens.shape}; they must match one-to-one")
    if len(harmony) != n:
        raise ChandraError(f"events: {n} segments but {len(harmony)} harmony rows; they must match one-to-one")
    events = []
    for i in range(n):
        f0 = float(segments.f0[i])
        rms = float(segments.rms[i])
        h = harmony[i]
        midi = hz_to_midi(f0)
        events.append({
            "t": float(segments.start[i]),
            "duration": float(segments.end[i] - segments.start[i]),
            "segment_id": int(segments.id[i]),
            "gesture_token": int(tokens[i]),
            "consonance": float(h["consonance"]),
            "ratios": [float(r) for r in h.get("ratios", [])],
            "rms": rms,
            "rms_db": float(20.0 * math.log10(max(rms, 1e-10))),
            "f0": f0 if math.isfinite(f0) else None,
            "midi": None if midi is None else round(midi, 3),
            "centroid": float(segments.centroid[i]),
        })
    return events


def validate_events(events: Sequence[dict], *, duration: float | None = None) -> None:
    """Raise :class:`ChandraError` if any event lacks a required field, or if
    ``t`` is outside [0, duration] or not increasing."""
    last = -math.inf
    for i, ev in enumerate(events):
        missing = [f for f in ("t", "duration", "segment_id", "gesture_token") if ev.get(f) is None]
        if missing:
            raise ChandraError(f"event {i} lacks {', '.join(missing)}")
        t = float(ev["t"])
        if duration is not None and not (0.0 <= t <= duration):
            raise ChandraError(f"event {i} has t={t:.3f} s outside the audio [0, {duration:.3f}] s")
        if t < last:
            raise ChandraError(f"event {i} has t={t:.3f} s before its predecessor")
        last = t
