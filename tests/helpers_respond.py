"""Material for the respond tests: a melody that never repeats itself, and phrases cut from it.

A repetitive melody would make "matched to its own position" ambiguous (the
same phrase occurs several times), so the training recording here is a
seeded random walk over a scale: any run of four or more notes occurs once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from helpers_audio import SR, tone_bursts

__all__ = ["SR", "random_melody", "write_random_melody", "cut", "noise_bursts"]

_SCALE = (0, 2, 4, 5, 7, 9, 11, 12, 14, 16)


def random_melody(n_notes: int = 48, *, note_seconds: float = 0.25, seed: int = 1) -> np.ndarray:
    """Harmonic notes on a scale in a seeded random order, one every ``note_seconds``; float32 at ``SR``."""
    rng = np.random.default_rng(seed)
    freqs = [196.0 * 2 ** (_SCALE[i] / 12) for i in rng.integers(0, len(_SCALE), n_notes)]
    onsets = [i * note_seconds for i in range(n_notes)]
    return tone_bursts(onsets, freqs=freqs, burst=note_seconds, duration=n_notes * note_seconds + 0.2, seed=seed)


def write_random_melody(path: Path, **kwargs) -> Path:
    sf.write(str(path), random_melody(**kwargs), SR)
    return Path(path)


def cut(y: np.ndarray, events: list[dict], first: int, last: int, *, sr: int = SR) -> np.ndarray:
    """The samples of events ``first..last`` (inclusive), as the model segmented them."""
    a = int(round(float(events[first]["t"]) * sr))
    b = int(round((float(events[last]["t"]) + float(events[last]["duration"])) * sr))
    return np.asarray(y[a:b], dtype=np.float32)


def noise_bursts(seconds: float = 3.0, *, sr: int = SR, seed: int = 7) -> np.ndarray:
    """Other music: bursts of filtered noise (a shaker-like part), nothing like harmonic notes."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * sr), dtype=np.float64)
    t = np.arange(int(0.12 * sr)) / sr
    env = np.exp(-t * 40.0)
    for start in np.arange(0.0, seconds - 0.15, 0.2):
        a = int(start * sr)
        burst = rng.standard_normal(t.size) * env * 0.4
        burst = np.diff(burst, prepend=0.0)  # brighter: a first difference tilts the spectrum up
        y[a:a + t.size] += burst
    return y.astype(np.float32)
