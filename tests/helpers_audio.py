"""Synthetic audio with known structure, shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


def tone_bursts(onsets, *, sr: int = SR, duration: float | None = None, burst: float = 0.25,
                freqs=None, seed: int = 0) -> np.ndarray:
    """Harmonic tone bursts (exponential decay) starting at ``onsets`` seconds,
    over a faint noise floor; float32 mono."""
    onsets = list(onsets)
    duration = duration if duration is not None else onsets[-1] + burst + 0.3
    rng = np.random.default_rng(seed)
    y = 1e-4 * rng.standard_normal(int(duration * sr))
    freqs = freqs or [220.0 * 2 ** (k / 12) for k in (0, 4, 7, 12, 5, 9, 2, 11)]
    t = np.arange(int(burst * sr)) / sr
    # 3 ms attack, exponential decay and a 30 ms raised-cosine release, so a
    # note's end is not itself an onset.
    env = np.exp(-t * 12.0) * np.minimum(1.0, t / 0.003)
    release = min(len(t), int(0.03 * sr))
    env[-release:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, release)))
    for i, start in enumerate(onsets):
        f = freqs[i % len(freqs)]
        note = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 5)) * env * 0.3
        a = int(start * sr)
        seg = y[a: a + len(note)]
        seg += note[: len(seg)]
    return y.astype(np.float32)


def melody(n_notes: int = 48, *, note_seconds: float = 0.25, sr: int = SR, seed: int = 0,
           pattern=(0, 4, 7, 12, 7, 4, 2, 5, 9, 11)) -> np.ndarray:
    """A repetitive melody of harmonic notes: enough distinct segments for
    small vocabularies and a recurring structure for the oracle."""
    freqs = [196.0 * 2 ** (pattern[i % len(pattern)] / 12) for i in range(n_notes)]
    onsets = [i * note_seconds for i in range(n_notes)]
    return tone_bursts(onsets, sr=sr, burst=note_seconds, freqs=freqs, seed=seed,
                       duration=n_notes * note_seconds + 0.2)


def write(path: Path, y: np.ndarray, *, sr: int = SR, subtype: str = "PCM_16", fmt: str | None = None) -> Path:
    sf.write(str(path), y, sr, subtype=subtype, format=fmt)
    return Path(path)


#: Melodic patterns (semitones) of the three synthetic corpus takes: different melodies over a shared scale.
TAKE_PATTERNS = ((0, 4, 7, 12, 7, 4, 2, 5, 9, 11), (0, 3, 7, 10, 7, 3, 5, 8), (0, 5, 9, 12, 9, 5, 2, 7, 11))


def write_takes(folder: Path, *, mixed_rates: bool = True, nested: bool = False) -> list[Path]:
    """Three short takes (14, 18, 16 notes) as WAV files in ``folder``; with ``mixed_rates`` the second
    is at 44.1 kHz, with ``nested`` the third lies in a subfolder (``z_later``, so it still sorts last)."""
    paths = []
    for k, (notes, pattern) in enumerate(zip((14, 18, 16), TAKE_PATTERNS)):
        sr = 44100 if (k == 1 and mixed_rates) else SR
        target = folder / ("z_later" if (k == 2 and nested) else "") / f"take{k}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        paths.append(write(target, melody(notes, seed=k, pattern=pattern, sr=sr), sr=sr))
    return paths
