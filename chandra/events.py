"""Events: one per segment, joined to tokens and harmony by segment id.

The join is by position/identity, never by nearest timestamp: segment ``i``,
token row ``i`` and harmony row ``i`` describe the same stretch of audio, and
the lengths must agree exactly or the join refuses to run.

Pitch fields
------------
Two analyses meet here: the segment's YIN fundamental (time domain, one
period; :func:`chandra.segment.estimate_f0`) and the harmony's pitch sieve
over the segment's persistent partials (:func:`chandra.harmony.analyse_harmony`).
YIN is right for one note but on a chord it finds the chord's common period,
a *virtual* pitch (C major at C4 reads C2, D minor reads B-flat) or nothing.
So:

``pitches_hz``
    list of float (Hz), ascending: the fundamentals the sieve found, when
    the segment is pitched (YIN found a period, or the harmony's pitches
    explain its partials as harmonic tones); ``[]`` when unpitched.
``root_hz``, ``root_midi``
    the lowest *strong* pitch (within 20 dB of the strongest,
    :data:`chandra.harmony.ROOT_MIN_DB`), i.e. the bass note: the chord's
    root in root position, the bass of an inversion. ``root_midi`` is its
    MIDI note number rounded to an int. None when ``pitches_hz`` is empty.
``f0``, ``midi``
    for a chord or interval (two or more strong pitches): ``root_hz``, never
    the virtual pitch. For a single note: YIN's value (or ``root_hz`` when
    YIN found none). None when unpitched. ``midi`` is the float MIDI
    number of ``f0`` rounded to 3 decimals.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from chandra.errors import ChandraError
from chandra.segment import Segments

__all__ = ["EVENT_FIELDS", "build_events", "event_pitch", "validate_events", "hz_to_midi"]

#: Fields every chandra event carries (``f0``/``midi``/``root_hz``/``root_midi``
#: may be None; ``pitches_hz`` is always a list).
EVENT_FIELDS = (
    "t", "duration", "segment_id", "gesture_token", "consonance", "ratios",
    "rms", "rms_db", "f0", "midi", "centroid", "pitches_hz", "root_hz", "root_midi",
)


def hz_to_midi(f0: float | None) -> float | None:
    """MIDI note number (float, A4 = 69) of a frequency in Hz; None if unpitched."""
    if f0 is None or not math.isfinite(f0) or f0 <= 0:
        return None
    return 69.0 + 12.0 * math.log2(f0 / 440.0)


def event_pitch(yin_f0: float | None, harmony: dict) -> tuple[list[float], float | None, float | None]:
    """``(pitches_hz, root_hz, f0)`` of one segment by the rules in the module docstring.

    Parameters
    ----------
    yin_f0 : float or None
        The segment's YIN fundamental in Hz (NaN or None when unpitched).
    harmony : dict
        Its :func:`chandra.harmony.analyse_harmony` row; rows without the
        pitch keys (older runs) leave YIN's value alone.
    """
    yin = None if yin_f0 is None or not math.isfinite(float(yin_f0)) or float(yin_f0) <= 0 else float(yin_f0)
    pitches = [float(p) for p in (harmony.get("pitches_hz") or [])]
    root = harmony.get("root_hz")
    pitched = bool(pitches) and root is not None and (bool(harmony.get("harmonic")) or yin is not None)
    if not pitched:
        return [], None, yin
    root = float(root)
    if int(harmony.get("n_strong_pitches") or 0) >= 2 or yin is None:
        return pitches, root, root
    return pitches, root, yin


def build_events(segments: Segments, tokens: np.ndarray, harmony: Sequence[dict]) -> list[dict]:
    """Join segments, tokens and harmony into events.

    Parameters
    ----------
    segments : Segments
        n segments (ids 0..n-1).
    tokens : int array (n,)
        Gesture token of segment i at row i.
    harmony : sequence of n dicts
        ``{"consonance", "ratios", "pitches_hz", "root_hz", ...}`` for
        segment i at position i.

    Returns
    -------
    events : list of n dicts
        Fields :data:`EVENT_FIELDS`; ``t`` and ``duration`` in seconds from
        file start; pitch fields as in the module docstring. Feature vectors
        are not in the dicts: row i of the model's feature matrix belongs to
        event i.
    """
    n = len(segments)
    tokens = np.asarray(tokens)
    if tokens.shape != (n,):
        raise ChandraError(f"events: {n} segments but tokens of shape {tokens.shape}; they must match one-to-one")
    if len(harmony) != n:
        raise ChandraError(f"events: {n} segments but {len(harmony)} harmony rows; they must match one-to-one")
    events = []
    for i in range(n):
        rms = float(segments.rms[i])
        h = harmony[i]
        pitches, root, f0 = event_pitch(float(segments.f0[i]), h)
        midi = hz_to_midi(f0)
        root_midi = hz_to_midi(root)
        events.append({
            "t": float(segments.start[i]),
            "duration": float(segments.end[i] - segments.start[i]),
            "segment_id": int(segments.id[i]),
            "gesture_token": int(tokens[i]),
            "consonance": float(h["consonance"]),
            "ratios": [float(r) for r in h.get("ratios", [])],
            "rms": rms,
            "rms_db": float(20.0 * math.log10(max(rms, 1e-10))),
            "f0": f0,
            "midi": None if midi is None else round(midi, 3),
            "centroid": float(segments.centroid[i]),
            "pitches_hz": pitches,
            "root_hz": root,
            "root_midi": None if root_midi is None else int(round(root_midi)),
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
