"""Consonance against listeners: Malmberg's dyad order at three registers, triad orders, fade-outs.

Run: ``.venv/bin/python benchmarks/bench_consonance.py``

* Spearman's rho between :func:`chandra.harmony.consonance` of the twelve
  dyads (minor second .. octave, equal-tempered harmonic tones, amplitudes
  1/k) and Malmberg's (1918) ranking, at C3, C4 and A4, on ideal partial
  lists (6, 7, 8 harmonics) and through :func:`analyse_harmony` on
  synthesised audio (6 harmonics, 1 s). For comparison, the same for the
  previous combination (equal-weight geometric mean of roughness and
  Stolzenburg's whole-chord periodicity).
* the triad order (major, minor, augmented, diminished, C-D-E, C-C#-D) at
  each register.
* fade-outs: 200 random steady chords (2-4 tones, 4-11 harmonics, random
  phases, roots C3-A4) that fade out and stop inside the second of two
  segments; the largest and median |ln(c_first / c_second)| between the
  two segments, now and with the previous analysis (one plain FFT over
  each segment, scored with the previous formula).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from chandra.harmony import (  # noqa: E402
    D_MAX,
    analyse_harmony,
    consonance,
    dissonance,
    estimate_pitches,
    relative_periodicity,
    spectral_peaks,
)

SR = 22050
ROOTS = {"C3": 130.81, "C4": 261.63, "A4": 440.0}
MALMBERG = {"P8": 12, "P5": 7, "M6": 9, "M3": 4, "P4": 5, "m6": 8, "m3": 3, "TT": 6, "m7": 10, "M2": 2, "M7": 11,
            "m2": 1}
TRIADS = {"major": [0, 4, 7], "minor": [0, 3, 7], "augmented": [0, 4, 8], "diminished": [0, 3, 6],
          "C-D-E": [0, 2, 4], "C-C#-D": [0, 1, 2]}


class _Segments:
    def __init__(self, start, end):
        self.start, self.end = np.asarray(start, float), np.asarray(end, float)

    def __len__(self):
        return len(self.start)


def partials(semitones, n_harmonics, root):
    k = np.arange(1, n_harmonics + 1)
    f = np.concatenate([root * 2 ** (s / 12) * k for s in semitones])
    a = np.concatenate([1.0 / k for _ in semitones])
    return f, a


def synth(semitones, n_harmonics, root, seconds=1.0, phases=None):
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for i, s in enumerate(semitones):
        for k in range(1, n_harmonics + 1):
            phase = 0.7 * k if phases is None else phases[i, k - 1]
            y += np.sin(2 * np.pi * root * 2 ** (s / 12) * k * t + phase) / k
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def previous_consonance(f, a):
    """The combination before issue 11: sqrt(exp(-D/D_MAX) / L), L over the whole chord."""
    period = relative_periodicity(estimate_pitches(f, a)[0])
    return math.sqrt(math.exp(-dissonance(f, a) / D_MAX) / period)


def rho(values):
    return float(spearmanr(-np.arange(len(values)), values)[0])


def fade_trials(n_trials=200, seed=0):
    rng = np.random.default_rng(seed)
    new, old = [], []
    for _ in range(n_trials):
        chords = ([0, 7], [0, 4], [0, 4, 7], [0, 3, 7], [0, 4, 7, 12], [0, 5, 9])
        tones = chords[int(rng.integers(len(chords)))]
        nh = int(rng.integers(4, 12))
        root = float(rng.choice(list(ROOTS.values())))
        seconds = float(rng.uniform(0.4, 2.0))
        phases = rng.uniform(0, 2 * np.pi, (len(tones), nh))
        y = synth(tones, nh, root, seconds, phases).astype(np.float64)
        m = int(rng.uniform(0.05, 0.5) * seconds * SR)
        y[len(y) - m:] *= np.linspace(1, 0, m) ** rng.uniform(0.5, 3)
        y = np.concatenate([y, np.zeros(int(rng.uniform(0, 0.5) * SR))]).astype(np.float32)
        split = float(rng.uniform(0.3, 0.7)) * seconds
        end = float(rng.uniform(seconds - m / SR / 2, len(y) / SR))
        first, second = analyse_harmony(y, SR, _Segments([0.0, split], [split, end]))
        new.append(abs(math.log(first["consonance"] / second["consonance"])))
        plain = []
        for a, b in ((0, int(round(split * SR))), (int(round(split * SR)), int(round(end * SR)))):
            if b - a > SR:  # the previous analysis also took the central second
                a += (b - a - SR) // 2
                b = a + SR
            f, amps = spectral_peaks(y[a:b], SR, max_peaks=12)
            plain.append(previous_consonance(f, amps) if f.size >= 2 else 1.0)
        old.append(abs(math.log(plain[0] / plain[1])))
    return np.array(new), np.array(old)


def main() -> int:
    print("Spearman rho against Malmberg (1918), dyads m2..P8")
    print(f"{'register':<9}{'harmonics':>10}{'ideal':>8}{'audio':>8}{'previous (ideal)':>18}")
    for name, root in ROOTS.items():
        for nh in (6, 7, 8):
            ideal = [consonance(*partials([0, s], nh, root)) for s in MALMBERG.values()]
            prev = [previous_consonance(*partials([0, s], nh, root)) for s in MALMBERG.values()]
            audio = ""
            if nh == 6:
                heard = [analyse_harmony(synth([0, s], nh, root), SR, _Segments([0.0], [1.0]))[0]["consonance"]
                         for s in MALMBERG.values()]
                audio = f"{rho(heard):.3f}"
            print(f"{name:<9}{nh:>10}{rho(ideal):>8.3f}{audio:>8}{rho(prev):>18.3f}")
    print("\nTriads, most to least consonant (6 harmonics, ideal partials)")
    for name, root in ROOTS.items():
        c = {k: consonance(*partials(s, 6, root)) for k, s in TRIADS.items()}
        print(f"{name}: " + " > ".join(f"{k} {c[k]:.3f}" for k in sorted(c, key=lambda k: -c[k])))
    new, old = fade_trials()
    print("\nFade-outs: |ln(c_first / c_second)| over 200 steady chords split in two segments")
    for label, values in (("persistent partials", new),
                          ("previous analysis (one FFT per segment, previous formula)", old)):
        print(f"{label}: median {np.median(values):.3f}, 95th percentile {np.percentile(values, 95):.3f}, "
              f"max {values.max():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
