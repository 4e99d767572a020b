"""Harmony: spectral peaks, pitches, frequency ratios and a consonance score.

Model
-----
Consonance combines two recognised, separately documented components:
sensory *roughness* of the partials (Plomp & Levelt 1965; Sethares 1993) and
*periodicity* of the pitches (Stolzenburg 2015). Neither alone gives the
textbook orderings: roughness ranks the tritone above the major third in and
below the middle register, periodicity alone cannot tell a single tone from
an octave or a smooth chord from a rough voicing of the same intervals.

**Roughness.** Two partials at frequencies ``f1 < f2`` with amplitudes
``a1, a2`` contribute (Sethares 1993, "Local consonance and the relationship
between timbre and scale", JASA 94(3))

    d(f1, f2) = min(a1, a2) * (C1 exp(-A1 s x) + C2 exp(-A2 s x)),
    x = f2 - f1,   s = D* / (S1 f1 + S2),

with ``D* = 0.24``, ``S1 = 0.0207``, ``S2 = 18.96``, ``A1 = 3.51``,
``A2 = 5.75``, ``C1 = 5``, ``C2 = -5``. The ``s`` factor scales the curve with
the critical bandwidth at ``f1``, so its maximum ``D_MAX`` (about 0.898 for
unit amplitudes, at roughly a quarter of a critical band) is the same at
every register. ``min`` rather than the product of amplitudes follows
Sethares' later formulation: a faint partial cannot make a loud one rough.
``D`` (:func:`dissonance`) sums ``d`` over all pairs of partials, amplitudes
first scaled so the strongest is 1 (playback level must not matter), and

    c_rough = exp(-D / D_MAX)

counts "equivalent maximally rough pairs of full-amplitude partials".

**Periodicity.** Following Stolzenburg (2015, "Harmony perception by
periodicity detection", J. Math. & Music 9(3)), the pitches ``p_1 < ... <
p_n`` of a sound are expressed relative to the lowest, and each ratio
``p_i / p_1`` is replaced by the *simplest* fraction ``a_i / b_i`` (smallest
denominator, found by the Stern-Brocot / continued-fraction search) with
``|a_i / b_i - p_i / p_1| <= RATIO_TOLERANCE * p_i / p_1``. The relative
periodicity ``L = lcm(b_1, ..., b_n)`` is the number of periods of the lowest
tone after which the whole chord repeats, and

    c_period = 1 / L

is the lowest tone's period as a fraction of the chord's period (1 for one
tone, a unison or octaves). Stolzenburg uses a tolerance of 1 %; we use
``RATIO_TOLERANCE = 0.0095`` (about 16.4 cents). Over the 25 equal-tempered
intervals from unison to two octaves it selects exactly the same fractions
as 1 % (1/1, 16/15, 9/8, 6/5, 5/4, 4/3, 17/12, 3/2, 8/5, 5/3, 16/9, 15/8,
2/1, ...), but no ET interval then sits within 0.04 % of the boundary (at
1 % the tritone's distance from 7/5, 1.005 %, is 0.005 % away), so small
frequency-estimation errors on real audio do not flip the fraction.

**Chords.** For more than two pitches the periodicity used is the geometric
mean of the pairwise ``L`` (:func:`pairwise_periodicity`): every pair of
pitches is judged against its own lower tone, as in aggregate dyadic
consonance (Huron 1994, "Interval-class content in equally tempered
pitch-class sets", Music Perception 11(3)). Stolzenburg's single common
period (:func:`relative_periodicity`, the lcm of all denominators) lets one
interval without a simple ratio dominate a chord: the equal-tempered tritone
is 17/12 within the tolerance, so the diminished triad's common period is 60
lowest-tone periods and it would rank below a C-D-E cluster (8:9:10, a
stretch of the harmonic series), against every listening study below. The
pairwise mean gives the tritone the weight of one interval in three.

**Combination.** The two scores are combined as a weighted geometric mean,

    c = (1 / L) ** (3/4) * exp(-D / D_MAX) ** (1/4)
      = exp(-(ln L + w D / D_MAX) / (1 + w)),   w = ROUGHNESS_WEIGHT = 1/3,

i.e. Stolzenburg's log-periodicity and the roughness count are added as two
dissonance terms in natural units, roughness at a third of periodicity's
weight. Periodicity (harmonicity) is the primary cue: McDermott, Lehr &
Oxenham (2010, "Individual differences reveal the basis of consonance",
Current Biology 20) found consonance preferences tracking harmonicity and not
beating. Roughness still separates voicings, timbres and registers. The
weight is not fitted to ratings: every ``w`` from 0.1 to 0.45 gives all the
orders below for 6-8 harmonics at C3, C4 and A4; above that roughness
overturns the dyad order in the low register (at ``w = 1``, an equal-weight
mean, Spearman's rho against Malmberg falls to 0.84 at C3), below it
roughness no longer ranks the clusters under the diminished triad. ``w =
1/3`` (periodicity counted three times) sits inside that range. ``c`` is in
``(0, 1]``, 1 only for a single pure tone (or silence), strictly decreasing
in both ``D`` and ``L``.

**Pitches.** The periodicity term needs pitches, not partials.
:func:`estimate_pitches` applies a harmonic sieve to the partials: in
ascending frequency, a partial is *explained* when it lies within
``RATIO_TOLERANCE`` of an integer multiple ``k >= 1`` of an already accepted
pitch that is at least as strong; otherwise it becomes a new pitch. For
harmonic complex tones whose fundamentals are their strongest partials this
returns the fundamentals. A harmonic that is stronger than its fundamental
may be reported as an extra pitch (an octave above it adds ``L = 1`` pairs).
The *root* (:func:`analyse_harmony`'s ``root_hz``) is the lowest pitch within
``ROOT_MIN_DB`` (20 dB) of the strongest: the bass note, which is the chord's
root in root position.

**Partials of a segment.** :func:`segment_partials` keeps only spectral peaks
that persist over the segment (present, and resolved, in both of its halves)
in the stretch where it sounds, so a fade-out or a note ending inside the
segment cannot turn window sidelobes into partials: two halves of one
steady chord give the same partials and score alike.

Anchors
-------
Equal-tempered harmonic complex tones, 6 harmonics with amplitudes 1/k, root
C4 = 261.63 Hz, ideal partial lists (``c_rough`` / ``L`` / ``c``):

==============  =======  ======  =====
sound           c_rough  L       c
==============  =======  ======  =====
single tone     0.984    1       0.996
unison          0.937    1       0.984
octave          0.962    1       0.990
perfect fifth   0.721    2       0.548
major sixth     0.574    3       0.382
perfect fourth  0.499    3       0.369
major third     0.346    4       0.271
minor third     0.266    5       0.215
major seventh   0.397    8       0.167
minor seventh   0.501    9       0.162
tritone         0.411    12      0.124
minor second    0.096    15      0.073
major triad     0.089    3.420   0.217
minor triad     0.081    3.420   0.212
augmented       0.069    4.309   0.172
diminished      0.037    6.694   0.105
C-D-E cluster   0.011    6.350   0.081
C-C#-D cluster  0.002    12.164  0.031
==============  =======  ======  =====

(The ideal unison list holds every partial twice, so each rough pair of the
single tone counts four times; from audio a unison is one tone.)

Orders this model is held to (``tests/test_harmony.py``, for 6, 7 and 8
harmonics at C3, C4 and A4, on ideal partials and on synthesised audio):

* dyads against Malmberg's (1918) ranking, octave > fifth > major sixth >
  major third > fourth > minor sixth > minor third > tritone > minor seventh
  > major second > major seventh > minor second (as compiled by Schwartz,
  Howe & Purves 2003, J. Neuroscience 23(18)): Spearman's rho >= 0.9 at every
  register (0.92-0.94). The model puts the fourth above the major third
  (4/3 is the simpler ratio) and the tritone lower than Malmberg's listeners
  did (17/12); unison, octave > fifth > fourth > major third > tritone >
  minor second holds exactly.
* triads: major > minor (Roberts 1986, Acustica 62; Johnson-Laird, Kang &
  Leong 2012, Music Perception 30(1)) > augmented and diminished (the
  "tense" triads of Cook & Fujisawa 2006, Empirical Musicology Review 1(2);
  their mutual order differs between studies and is not asserted) > C-D-E
  cluster > C-C#-D cluster (chords built of seconds are the least consonant
  in Johnson-Laird et al.; the semitone cluster has more and closer
  seconds).
* register: the same interval or chord is at least as consonant higher up,
  C3 <= C4 <= A4. The critical band is roughly constant (~100 Hz) below
  500 Hz (Plomp & Levelt 1965, JASA 38), so an interval's partials beat
  more roughly the lower it is played: at C3 the fifth scores 0.45, the
  major third 0.21 and the tritone 0.10 (against 0.55, 0.27, 0.12 at C4).

Ratios
------
:func:`frequency_ratios` reports frequencies relative to the lowest one.
:func:`analyse_harmony` applies it to the *pitches* of a segment, so a fifth
between two harmonic tones shows ``[1.0, ~1.5]``; the partials themselves are
in ``partials_hz``.
"""

from __future__ import annotations

import bisect
import functools
import math
from typing import Any, Optional, Sequence

import numpy as np

from chandra.errors import AudioError, ChandraError, SegmentationError
from chandra.progress import ProgressCallback, report

__all__ = [
    "consonance",
    "dissonance",
    "estimate_pitches",
    "relative_periodicity",
    "pairwise_periodicity",
    "segment_partials",
    "simplest_fraction",
    "spectral_peaks",
    "frequency_ratios",
    "analyse_harmony",
    "NO_PARTIALS_CONSONANCE",
    "D_MAX",
    "RATIO_TOLERANCE",
    "ROUGHNESS_WEIGHT",
    "ROOT_MIN_DB",
]

# Sethares (1993) constants.
_DSTAR = 0.24
_S1 = 0.0207
_S2 = 18.96
_A1 = 3.51
_A2 = 5.75
_C1 = 5.0
_C2 = -5.0
# Location and height of the curve's maximum in units of s*(f2-f1).
_X_PEAK = np.log(_A2 / _A1) / (_A2 - _A1)
D_MAX = float(_C1 * np.exp(-_A1 * _X_PEAK) + _C2 * np.exp(-_A2 * _X_PEAK))

#: Relative tolerance for "this ratio is that fraction" and "this partial is
#: that harmonic" (about 16.4 cents); see the module docstring for why it is
#: just under Stolzenburg's 1 %.
RATIO_TOLERANCE = 0.0095

#: Weight of the roughness term against periodicity's 1 (see the module
#: docstring): harmonicity is the primary cue, roughness a secondary one.
ROUGHNESS_WEIGHT = 1.0 / 3.0

#: A pitch within this many dB of the strongest pitch is "strong"; the root
#: is the lowest strong pitch.
ROOT_MIN_DB = -20.0

# Partials are looked for where the segment sounds: from the first to the
# last 10 ms frame whose energy is within this many dB of the loudest.
_ACTIVE_FLOOR_DB = -30.0
# Shortest sounding stretch (s) split in two for the persistence check.
_MIN_SPLIT_SECONDS = 0.08
# Two candidates may rest on one half-window peak (partials closer than the
# halves resolve) only when within this many dB of each other: a peak far
# below a neighbour's, with no peak of its own, is that neighbour's sidelobe.
_SHARE_DB = 12.0

#: Consonance reported when no partial is found (silence, noise floor, too
#: short). It is the model's own value for "nothing to beat", not a measured
#: score; analyse_harmony also reports ``n_partials: 0`` so diagnostics can
#: tell the two apart.
NO_PARTIALS_CONSONANCE = 1.0

# Shortest segment (seconds) worth a spectrum: below ~20 ms the window's main
# lobe is wider than any musical interval near the bottom of fmin..fmax.
_MIN_SEGMENT_SECONDS = 0.02
# Segments quieter than this (RMS, dBFS) are treated as silence.
_SILENCE_DB = -80.0


def _pairwise(freqs: np.ndarray, amps: np.ndarray) -> float:
    order = np.argsort(freqs, kind="stable")
    f = freqs[order]
    a = amps[order]
    i, j = np.triu_indices(f.size, k=1)
    f1, f2 = f[i], f[j]  # f1 <= f2 because f is sorted
    s = _DSTAR / (_S1 * f1 + _S2)
    x = s * (f2 - f1)
    d = np.minimum(a[i], a[j]) * (_C1 * np.exp(-_A1 * x) + _C2 * np.exp(-_A2 * x))
    return float(np.sum(d))


def _check_partials(freqs_hz: Any, amps: Any) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(freqs_hz, dtype=np.float64).reshape(-1)
    if amps is None:
        a = np.ones_like(f)
    else:
        a = np.asarray(amps, dtype=np.float64).reshape(-1)
        if a.shape != f.shape:
            raise ChandraError(
                f"amps has {a.size} values but freqs_hz has {f.size}; give one amplitude per partial"
            )
    if not (np.isfinite(f).all() and np.isfinite(a).all()):
        raise ChandraError("partial frequencies and amplitudes must be finite")
    if (f <= 0).any():
        raise ChandraError("partial frequencies must be positive (Hz)")
    if (a < 0).any():
        raise ChandraError("partial amplitudes must be non-negative")
    peak = a.max() if a.size else 0.0
    if peak > 0:
        a = a / peak
    return f, a


def dissonance(freqs_hz: Sequence[float], amps: Optional[Sequence[float]] = None) -> float:
    """Total Sethares sensory dissonance ``D`` of a set of partials.

    Parameters
    ----------
    freqs_hz : array_like, shape (n,)
        Partial frequencies in Hz (any order, > 0).
    amps : array_like, shape (n,), optional
        Linear amplitudes (>= 0); all 1 when omitted. Scaled so the largest
        is 1 before use.

    Returns
    -------
    float
        ``D >= 0``; 0 for fewer than two partials.
    """
    f, a = _check_partials(freqs_hz, amps)
    if f.size < 2:
        return 0.0
    return _pairwise(f, a)


def simplest_fraction(x: float, *, tolerance: float = RATIO_TOLERANCE) -> tuple[int, int]:
    """Simplest fraction within a relative tolerance of a positive number.

    "Simplest" is the Stern-Brocot sense: the smallest denominator, and for
    that denominator the smallest numerator, among all fractions ``a / b``
    with ``|a / b - x| <= tolerance * x``. Found with the continued-fraction
    recursion for the simplest rational in a closed interval.

    Parameters
    ----------
    x : float
        Positive, finite number (a frequency ratio).
    tolerance : float
        Relative tolerance, ``0 <= tolerance < 1``.

    Returns
    -------
    (a, b) : tuple of int
        Numerator and denominator, ``b >= 1``, in lowest terms.
    """
    if not (math.isfinite(x) and x > 0):
        raise ChandraError(f"simplest_fraction needs a positive finite number; got {x!r}")
    if not 0.0 <= tolerance < 1.0:
        raise ChandraError(f"tolerance must be in [0, 1); got {tolerance!r}")
    lo, hi = x * (1.0 - tolerance), x * (1.0 + tolerance)
    # Continued-fraction expansion of the interval, kept as the convergent
    # matrix [[p1, p0], [q1, q0]] so no recursion is needed. Each step takes
    # the common integer part of both ends and inverts the remainders (which
    # swaps the ends); it stops at the first step whose interval contains an
    # integer, which yields the Stern-Brocot simplest fraction.
    p1, p0, q1, q0 = 1, 0, 0, 1
    for _ in range(64):  # 64 levels is far beyond any tolerance > 1e-12
        n = math.floor(lo)
        if n == lo or n + 1 <= hi:
            t = n if n == lo else n + 1
            a, b = t * p1 + p0, t * q1 + q0
            g = math.gcd(a, b)
            return a // g, b // g
        p1, p0, q1, q0 = n * p1 + p0, p1, n * q1 + q0, q1
        lo, hi = 1.0 / (hi - n), 1.0 / (lo - n)
    # Only reachable with tolerance ~0: fall back to the last convergent.
    return p1, max(q1, 1)


def _as_pitches(pitches_hz: Sequence[float]) -> np.ndarray:
    """Pitches as float64 (n,), or :class:`ChandraError` unless all are positive and finite."""
    f = np.asarray(pitches_hz, dtype=np.float64).reshape(-1)
    if not np.isfinite(f).all() or (f <= 0).any():
        raise ChandraError("pitches must be positive finite frequencies (Hz)")
    return f


def relative_periodicity(pitches_hz: Sequence[float], *, tolerance: float = RATIO_TOLERANCE) -> int:
    """Stolzenburg's relative periodicity ``L`` of a set of pitches.

    Each pitch relative to the lowest is approximated by its
    :func:`simplest_fraction` ``a_i / b_i``; ``L = lcm(b_i)`` is how many
    periods of the lowest pitch the whole chord takes to repeat.

    Parameters
    ----------
    pitches_hz : array_like, shape (n,)
        Fundamental frequencies in Hz (> 0, any order).
    tolerance : float
        Relative tolerance of the fraction approximation.

    Returns
    -------
    int
        ``L >= 1``; 1 for no pitch, one pitch, unisons and octaves. May be a
        very large Python int for unrelated frequencies (noise).
    """
    f = _as_pitches(pitches_hz)
    if f.size < 2:
        return 1
    f = np.sort(f)
    period = 1
    for r in f[1:] / f[0]:
        period = math.lcm(period, simplest_fraction(float(r), tolerance=tolerance)[1])
    return period


def _sieve(f: np.ndarray, a: np.ndarray, tol: float) -> np.ndarray:
    """Indices of pitches among partials sorted by frequency (see estimate_pitches)."""
    pitches: list[int] = []
    for i in range(f.size):
        explained = False
        for j in pitches:
            if a[j] < a[i]:
                continue  # a weaker lower peak cannot own a stronger partial
            k = round(f[i] / f[j])
            if k >= 1 and abs(f[i] - k * f[j]) <= tol * f[i]:
                explained = True
                break
        if not explained:
            pitches.append(i)
    return np.asarray(pitches, dtype=np.int64)


def estimate_pitches(
    freqs_hz: Sequence[float],
    amps: Optional[Sequence[float]] = None,
    *,
    tolerance: float = RATIO_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Pitches of a set of partials by a harmonic sieve.

    In ascending frequency, a partial is explained when it lies within
    ``tolerance`` (relative) of an integer multiple ``k >= 1`` of an already
    accepted pitch whose amplitude is at least its own; otherwise it is
    accepted as a new pitch. For harmonic tones whose fundamental is their
    strongest partial this returns the fundamentals; see the module
    docstring for why extra pitches at harmonics do not change the
    periodicity.

    Parameters
    ----------
    freqs_hz : array_like, shape (n,)
        Partial frequencies in Hz (> 0, any order).
    amps : array_like, shape (n,), optional
        Linear amplitudes (>= 0); all equal when omitted.
    tolerance : float
        Relative tolerance of the harmonic match.

    Returns
    -------
    pitches : np.ndarray, float64, shape (m,)
        Pitch frequencies in Hz, ascending; ``m <= n``.
    amps : np.ndarray, float64, shape (m,)
        Their partials' amplitudes, scaled so the strongest partial is 1.
    """
    f, a = _check_partials(freqs_hz, amps)
    order = np.argsort(f, kind="stable")
    f, a = f[order], a[order]
    idx = _sieve(f, a, tolerance)
    return f[idx], a[idx]


def _mean_log_periodicity(pitches: np.ndarray, tolerance: float = RATIO_TOLERANCE) -> float:
    """Mean over pitch pairs of ln L(pair), in nats; 0 for fewer than two pitches."""
    f = np.sort(np.asarray(pitches, dtype=np.float64).reshape(-1))
    if f.size < 2:
        return 0.0
    i, j = np.triu_indices(f.size, k=1)
    logs = [math.log(simplest_fraction(float(b / a), tolerance=tolerance)[1]) for a, b in zip(f[i], f[j])]
    return float(np.mean(logs))


def pairwise_periodicity(pitches_hz: Sequence[float], *, tolerance: float = RATIO_TOLERANCE) -> float:
    """Geometric mean of the relative periodicity of every pair of pitches.

    For two pitches this is Stolzenburg's ``L``; for a chord, each pair is
    judged against its own lower tone (the aggregate dyadic view of Huron
    1994), so one interval without a simple ratio (the equal-tempered
    tritone, 17/12) weighs as one interval and not as a factor of the whole
    chord's common period.

    Parameters and errors are those of :func:`relative_periodicity`.

    Returns
    -------
    float
        ``>= 1``; 1.0 for fewer than two pitches, unisons and octaves.
    """
    f = _as_pitches(pitches_hz)
    return float(math.exp(_mean_log_periodicity(f, tolerance)))


def _combine(d: float, log_period: float) -> float:
    # Weighted geometric mean of 1/L and exp(-D/D_MAX) (weights 1 and
    # ROUGHNESS_WEIGHT), in the log domain so noise cannot overflow a float.
    w = ROUGHNESS_WEIGHT
    return float(math.exp(-(log_period + w * d / D_MAX) / (1.0 + w)))


def consonance(freqs_hz: Sequence[float], amps: Optional[Sequence[float]] = None) -> float:
    """Consonance in (0, 1] of a set of partials.

    ``c = (1 / L) ** (3/4) * exp(-D / D_MAX) ** (1/4)``: ``D`` is the
    Sethares roughness of the partials (:func:`dissonance`) and ``L`` the
    pairwise periodicity (:func:`pairwise_periodicity`) of the pitches found
    in them by :func:`estimate_pitches`. See the module docstring for the
    model and anchor values. An empty list or a single partial gives 1.0.

    Parameters
    ----------
    freqs_hz : array_like, shape (n,)
        Partial frequencies in Hz.
    amps : array_like, shape (n,), optional
        Linear amplitudes; equal when omitted.

    Returns
    -------
    float
        1.0 = one pure tone; towards 0 as roughness and periodicity grow.
    """
    f, a = _check_partials(freqs_hz, amps)
    if f.size < 2:
        return 1.0
    pitches, _ = estimate_pitches(f, a)
    return _combine(_pairwise(f, a), _mean_log_periodicity(pitches))


@functools.lru_cache(maxsize=64)
def _blackman(n: int) -> np.ndarray:
    # Segments repeat lengths (the central window, the halves): build each once.
    window = np.blackman(n)
    window.flags.writeable = False
    return window


def spectral_peaks(
    signal: Any,
    sr: int,
    *,
    max_peaks: int = 12,
    fmin: float = 50.0,
    fmax: float = 5000.0,
    threshold_db: float = -40.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Strongest sinusoidal peaks of a frame or segment.

    One Blackman-windowed FFT over the whole input (zero-padded to at least
    twice its length), local maxima of the magnitude spectrum refined by
    parabolic interpolation on the dB spectrum. The Blackman window's
    sidelobes (-58 dB) sit below the default threshold, so they are not
    reported as partials.

    Parameters
    ----------
    signal : array_like, shape (n_samples,)
        Mono samples.
    sr : int
        Sample rate in Hz.
    max_peaks : int
        Keep at most this many peaks, strongest first.
    fmin, fmax : float
        Frequency band in Hz searched for peaks.
    threshold_db : float
        Peaks weaker than the strongest one by more than this (dB, negative)
        are dropped.

    Returns
    -------
    freqs : np.ndarray, float64, shape (k,)
        Peak frequencies in Hz, ascending.
    amps : np.ndarray, float64, shape (k,)
        Estimated sinusoid amplitudes in signal units (a full-scale sine of
        amplitude 1 reads ~1).
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    if sr <= 0:
        raise AudioError(f"sample rate must be positive; got {sr}")
    if max_peaks < 1:
        raise ChandraError(f"max_peaks must be >= 1; got {max_peaks}")
    empty = (np.zeros(0), np.zeros(0))
    n = x.size
    if n < 8 or not np.isfinite(x).all():
        return empty
    x = x - x.mean()
    window = _blackman(n)
    n_fft = max(4096, 1 << int(np.ceil(np.log2(2 * n))))
    mag = np.abs(np.fft.rfft(x * window, n=n_fft))
    if not mag.any():
        return empty
    # Amplitude of a sinusoid from its windowed peak: |X| = A * sum(w) / 2.
    mag *= 2.0 / window.sum()
    bin_hz = sr / n_fft
    lo = max(1, int(np.ceil(fmin / bin_hz)))
    hi = min(mag.size - 2, int(np.floor(fmax / bin_hz)))
    if hi <= lo:
        return empty
    band = mag[lo - 1 : hi + 2]
    centre = band[1:-1]
    is_peak = (centre > band[:-2]) & (centre >= band[2:])
    idx = np.flatnonzero(is_peak) + lo
    if idx.size == 0:
        return empty
    floor = mag[idx].max() * 10.0 ** (threshold_db / 20.0)
    idx = idx[mag[idx] >= floor]
    if idx.size > max_peaks:
        idx = idx[np.argsort(mag[idx], kind="stable")[::-1][:max_peaks]]
    tiny = 1e-300
    alpha = 20 * np.log10(mag[idx - 1] + tiny)
    beta = 20 * np.log10(mag[idx] + tiny)
    gamma = 20 * np.log10(mag[idx + 1] + tiny)
    denom = alpha - 2 * beta + gamma
    offset = np.where(denom < 0, 0.5 * (alpha - gamma) / np.where(denom < 0, denom, -1.0), 0.0)
    offset = np.clip(offset, -0.5, 0.5)
    freqs = (idx + offset) * bin_hz
    amps = 10.0 ** ((beta - 0.25 * (alpha - gamma) * offset) / 20.0)
    order = np.argsort(freqs)
    return freqs[order], amps[order]


def frequency_ratios(freqs: Sequence[float]) -> list[float]:
    """Ratios of partials (or pitches) to the lowest one.

    Parameters
    ----------
    freqs : array_like, shape (n,)
        Frequencies in Hz, any order; non-positive or non-finite values are
        ignored.

    Returns
    -------
    list of float
        Ascending, rounded to 4 decimals, first element 1.0; empty for no
        input.
    """
    f = np.asarray(freqs, dtype=np.float64).reshape(-1)
    f = np.sort(f[np.isfinite(f) & (f > 0)])
    if f.size == 0:
        return []
    return [round(float(r), 4) for r in f / f[0]]


def _sounding(x: np.ndarray, sr: int) -> np.ndarray:
    """The stretch of ``x`` from the first to the last 10 ms frame within _ACTIVE_FLOOR_DB of the loudest."""
    hop = max(1, int(round(0.01 * sr)))
    n_frames = x.size // hop
    if n_frames < 2:
        return x
    energy = np.add.reduceat(x[: n_frames * hop] ** 2, np.arange(0, n_frames * hop, hop))
    if not energy.max() > 0:
        return x
    on = np.flatnonzero(energy >= energy.max() * 10.0 ** (_ACTIVE_FLOOR_DB / 10.0))
    return x[on[0] * hop: min(x.size, (on[-1] + 1) * hop)]


def segment_partials(
    signal: Any,
    sr: int,
    *,
    max_peaks: int = 12,
    fmin: float = 50.0,
    fmax: float = 5000.0,
    threshold_db: float = -40.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Partials of a segment: spectral peaks that persist over it.

    1. The analysis is restricted to where the segment sounds (from the first
       to the last 10 ms frame within 30 dB of the loudest), so silence after
       a note's end does not truncate the window and raise its sidelobes.
    2. :func:`spectral_peaks` of that whole stretch gives candidates at full
       frequency resolution.
    3. Persistence: the stretch is cut into halves and each half analysed
       the same way. A candidate is kept only if both halves have a peak
       within their resolution (the Blackman main-lobe width, ``6 sr /
       N_half`` Hz: partials closer than that merge into one peak there).
       Candidates are taken strongest first, and a half-window peak
       already supporting a candidate more than 12 dB stronger does not
       count. Peaks that a changing envelope makes out of one partial
       (sidelobes of a fade-out, shoulders at a fraction of a percent)
       appear in one window but not in the other, or lean on the peak of
       the partial they come from, and are dropped; a steady chord gives
       the same partials in either half. Stretches shorter than 80 ms skip
       this step.

    Amplitudes are those of the whole stretch, i.e. energy-weighted over the
    segment.

    Parameters
    ----------
    signal : array_like, shape (n_samples,)
    sr : int
        Sample rate in Hz.
    max_peaks, fmin, fmax, threshold_db
        As in :func:`spectral_peaks`.

    Returns
    -------
    freqs, amps : np.ndarray, float64, shape (k,)
        Ascending frequencies (Hz) and amplitudes, ``k <= max_peaks``.
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    empty = (np.zeros(0), np.zeros(0))
    if x.size < 8 or not np.isfinite(x).all():
        return empty
    x = _sounding(x, sr)
    f, a = spectral_peaks(x, sr, max_peaks=4 * max_peaks, fmin=fmin, fmax=fmax, threshold_db=threshold_db)
    if f.size == 0:
        return empty
    order = np.argsort(-a, kind="stable")
    half = x.size // 2
    if half < int(round(_MIN_SPLIT_SECONDS * sr / 2)):
        keep = np.sort(order[:max_peaks])
        return f[keep], a[keep]
    resolution = 6.0 * sr / half  # the halves' Blackman main-lobe width: two partials closer merge there
    halves = [spectral_peaks(part, sr, max_peaks=8 * max_peaks, fmin=max(fmin - resolution, 1.0),
                             fmax=fmax + resolution, threshold_db=threshold_db - 10.0)[0]
              for part in (x[:half], x[half:])]
    half_freqs = [h.tolist() for h in halves]  # ascending
    # owner[h][j]: amplitude of the strongest candidate supported by peak j of half h
    owner = [[0.0] * len(h) for h in half_freqs]
    share = 10.0 ** (_SHARE_DB / 20.0)
    freqs, amps_list = f.tolist(), a.tolist()
    keep: list[int] = []
    for i in order.tolist():
        fi, ai = freqs[i], amps_list[i]
        picks = []
        for hf, claimed in zip(half_freqs, owner):
            # nearest usable peak within the resolution; a much stronger
            # partial's peak is not evidence for this one
            lo = bisect.bisect_left(hf, fi - resolution)
            hi = bisect.bisect_right(hf, fi + resolution)
            best, best_gap = -1, resolution
            for j in range(lo, hi):
                gap = abs(hf[j] - fi)
                if gap <= best_gap and claimed[j] <= ai * share:
                    best, best_gap = j, gap
            if best < 0:
                break
            picks.append(best)
        else:
            for claimed, j in zip(owner, picks):
                claimed[j] = max(claimed[j], ai)
            keep.append(i)
            if len(keep) >= max_peaks:
                break
    idx = np.sort(np.asarray(keep, dtype=np.int64))
    return f[idx], a[idx]


def analyse_harmony(
    y: Any,
    sr: int,
    segments: Any,
    *,
    max_partials: int = 12,
    window_seconds: float = 1.0,
    fmin: float = 50.0,
    fmax: float = 5000.0,
    progress: Optional[ProgressCallback] = None,
) -> list[dict]:
    """Consonance, pitches, root, pitch ratios and partials of every segment.

    Parameters
    ----------
    y : array_like, shape (n_samples,)
        Mono signal.
    sr : int
        Sample rate in Hz.
    segments : Segments-like
        Anything with ``start`` and ``end`` arrays (seconds from file start)
        and ``len()``.
    max_partials : int
        Strongest persistent spectral peaks kept per segment
        (:func:`segment_partials`). Roughness and the pitch sieve see only
        these: enough for the fundamentals of a triad of tones whose
        fundamentals are their strongest partials, but the roughness of
        many-partial chords is then only partly counted.
    window_seconds : float
        Longest stretch analysed per segment; a longer segment is analysed
        on its central ``window_seconds`` so the attack transient does not
        smear the spectrum.
    fmin, fmax : float
        Partial search band in Hz.
    progress : callable, optional
        ``progress("harmony", done, total)``.

    Returns
    -------
    list of dict, one per segment, in segment order
        ``consonance`` (float in (0, 1], see :func:`consonance`),
        ``pitches_hz`` (list of float, ascending: :func:`estimate_pitches`
        on the segment's partials), ``root_hz`` (float or None: the lowest
        pitch within ``ROOT_MIN_DB`` of the strongest pitch, i.e. the bass
        note; for a chord in root position, its root), ``n_strong_pitches``
        (int: pitches within ``ROOT_MIN_DB``), ``harmonic`` (bool: the
        pitches explain the partials as harmonic tones: one pitch, or at
        least two partials per pitch on average; noise gives a pitch for
        almost every peak and is not harmonic), ``ratios`` (list of float:
        the pitches relative to the lowest pitch, see
        :func:`frequency_ratios`; a fifth reads ``[1.0, ~1.5]``),
        ``partials_hz`` (list of float, ascending), ``n_partials`` (int).
        Silent, empty or too-short segments get ``consonance =
        NO_PARTIALS_CONSONANCE`` (1.0), empty lists, ``root_hz = None``,
        ``n_strong_pitches = 0``, ``harmonic = False`` and ``n_partials =
        0``.
    """
    x = np.asarray(y, dtype=np.float32).reshape(-1)
    if sr <= 0:
        raise AudioError(f"sample rate must be positive; got {sr}")
    starts = np.asarray(segments.start, dtype=np.float64).reshape(-1)
    ends = np.asarray(segments.end, dtype=np.float64).reshape(-1)
    n_seg = len(segments)
    if starts.size != n_seg or ends.size != n_seg:
        raise SegmentationError(
            f"segments has {n_seg} entries but {starts.size} starts and {ends.size} ends"
        )
    if not (np.isfinite(starts).all() and np.isfinite(ends).all()):
        raise SegmentationError("segment start/end times must be finite (seconds from file start)")

    s0 = np.clip(np.round(starts * sr).astype(np.int64), 0, x.size)
    s1 = np.clip(np.round(ends * sr).astype(np.int64), 0, x.size)
    max_len = max(1, int(round(window_seconds * sr)))
    min_len = int(np.ceil(_MIN_SEGMENT_SECONDS * sr))
    silence = 10.0 ** (_SILENCE_DB / 20.0)
    strong = 10.0 ** (ROOT_MIN_DB / 20.0)
    step = max(1, n_seg // 100)

    out: list[dict] = []
    for k in range(n_seg):
        a, b = int(s0[k]), int(s1[k])
        if b - a > max_len:
            a += (b - a - max_len) // 2
            b = a + max_len
        freqs = amps = np.zeros(0)
        if b - a >= min_len:
            seg = x[a:b].astype(np.float64)
            if np.sqrt(np.mean(seg * seg)) > silence:
                freqs, amps = segment_partials(seg, sr, max_peaks=max_partials, fmin=fmin, fmax=fmax)
        root = None
        n_strong = 0
        if freqs.size:
            # segment_partials returns ascending frequencies, as the sieve needs
            amps = amps / amps.max()
            idx = _sieve(freqs, amps, RATIO_TOLERANCE)
            pitches, pitch_amps = freqs[idx], amps[idx]
            c = _combine(_pairwise(freqs, amps), _mean_log_periodicity(pitches))
            loud = pitch_amps >= strong * pitch_amps.max()
            n_strong = int(loud.sum())
            root = round(float(pitches[loud][0]), 3)
        else:
            pitches = freqs
            c = NO_PARTIALS_CONSONANCE
        out.append(
            {
                "consonance": c,
                "pitches_hz": [round(float(f), 3) for f in pitches],
                "root_hz": root,
                "n_strong_pitches": n_strong,
                "harmonic": bool(pitches.size == 1 or (pitches.size and freqs.size >= 2 * pitches.size)),
                "ratios": frequency_ratios(pitches),
                "partials_hz": [round(float(f), 3) for f in freqs],
                "n_partials": int(freqs.size),
            }
        )
        if (k + 1) % step == 0:
            report(progress, "harmony", k + 1, n_seg)
    report(progress, "harmony", n_seg, n_seg)
    return out
