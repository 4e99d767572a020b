"""A real-music track of any length, built from the bundled sample pieces.

Tests and benchmarks need several minutes of real music (not only the 30 s
samples), and the repository should not carry tens of megabytes of audio. This
module arranges the two bundled recordings (``sample_audio/``: a rendered Bach
prelude and CC0 tabla/percussion loops; sources and licences in
``sample_audio/README.md``) into a longer piece the way a producer would from
takes: sections cut from either piece at phrase length (4-20 s), played back at
another speed (varispeed: pitch and tempo together, within ±4 semitones),
at another level, sometimes layered (percussion under the piano), and with
earlier sections recurring later, as choruses do. The result is deterministic
for a given ``minutes`` and ``seed`` and takes well under a second per minute
to build.

Usage::

    python scripts/long_track.py 5 out.flac [--seed 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PIECES = ("bach_prelude_c.flac", "tabla_safari_loops.flac")
SR = 22050

__all__ = ["build_track", "write_track", "PIECES", "SR"]


def _load_pieces(sr: int) -> list[np.ndarray]:
    import soundfile as sf

    out = []
    for name in PIECES:
        y, file_sr = sf.read(str(REPO / "sample_audio" / name), dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        if file_sr != sr:
            import soxr

            y = soxr.resample(y, file_sr, sr).astype(np.float32)
        out.append(y)
    return out


def _varispeed(y: np.ndarray, semitones: float) -> np.ndarray:
    """Play ``y`` faster (higher) or slower (lower) by ``semitones``, like tape."""
    if abs(semitones) < 1e-9:
        return y
    import soxr

    ratio = 2.0 ** (semitones / 12.0)
    # Reading the signal as if it were sampled ``ratio`` times faster.
    return soxr.resample(y, SR * ratio, SR).astype(np.float32)


def _fade(section: np.ndarray, sr: int, seconds: float = 0.03) -> np.ndarray:
    n = min(len(section) // 2, int(seconds * sr))
    if n > 0:
        ramp = 0.5 * (1 - np.cos(np.linspace(0, np.pi, n, dtype=np.float32)))
        section[:n] *= ramp
        section[-n:] *= ramp[::-1]
    return section


def build_track(minutes: float, *, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Arrange the bundled pieces into ``minutes`` of music.

    Parameters
    ----------
    minutes : float
        Length of the result in minutes (> 0).
    seed : int
        Arrangement seed; the same seed gives the same samples.
    sr : int
        Sample rate in Hz of the result (22050 by default).

    Returns
    -------
    np.ndarray, float32, shape (round(minutes * 60 * sr),)
        Mono signal, peak 0.9.
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be positive, got {minutes}")
    rng = np.random.default_rng(seed)
    pieces = _load_pieces(sr)
    n_total = int(round(minutes * 60 * sr))
    out = np.zeros(n_total, dtype=np.float32)
    made: list[np.ndarray] = []
    pos = 0
    while pos < n_total:
        if made and rng.random() < 0.3:
            section = made[int(rng.integers(len(made)))].copy()  # a chorus comes back
        else:
            which = int(rng.integers(len(pieces)))
            src = pieces[which]
            length = int(rng.uniform(4.0, 20.0) * sr)
            start = int(rng.integers(0, max(1, len(src) - length)))
            section = src[start: start + length].copy()
            section = _varispeed(section, float(rng.choice([-4, -2, -1, 0, 0, 0, 2, 3, 4])))
            section *= float(rng.uniform(0.5, 1.0))
            if which == 0 and rng.random() < 0.35:  # percussion under the piano
                perc = pieces[1]
                p0 = int(rng.integers(0, max(1, len(perc) - len(section))))
                layer = perc[p0: p0 + len(section)]
                section[: len(layer)] += 0.4 * layer
            section = _fade(section, sr)
            made.append(section)
        take = min(len(section), n_total - pos)
        out[pos: pos + take] += section[:take]
        pos += take
    peak = float(np.max(np.abs(out))) or 1.0
    return (out * (0.9 / peak)).astype(np.float32)


def write_track(path: str | Path, minutes: float, *, seed: int = 0, sr: int = SR) -> Path:
    """Write :func:`build_track` output as 16-bit FLAC (or WAV by extension)."""
    import soundfile as sf

    path = Path(path)
    sf.write(str(path), build_track(minutes, seed=seed, sr=sr), sr, subtype="PCM_16")
    return path


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("minutes", type=float)
    parser.add_argument("output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(sys.argv[1:])
    print(write_track(args.output, args.minutes, seed=args.seed))
