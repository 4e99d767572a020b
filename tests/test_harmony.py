"""Tests for chandra.harmony: the roughness (Sethares) x periodicity
(Stolzenburg) consonance model, pitch sieve, spectral peak picking and
per-segment analysis on synthesised tones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from chandra.errors import ChandraError
from chandra.harmony import (
    D_MAX,
    NO_PARTIALS_CONSONANCE,
    RATIO_TOLERANCE,
    analyse_harmony,
    consonance,
    dissonance,
    estimate_pitches,
    frequency_ratios,
    relative_periodicity,
    simplest_fraction,
    spectral_peaks,
)

SR = 22050
ROOT = 261.63  # C4
ROOTS = {"C3": 130.81, "C4": 261.63, "A4": 440.0}


@dataclass
class FakeSegments:
    """Only what analyse_harmony needs from chandra.segment.Segments."""

    start: np.ndarray
    end: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def one_segment(seconds: float) -> FakeSegments:
    return FakeSegments(np.array([0.0]), np.array([seconds]))


def partials(semitones, n_harmonics: int, root: float = ROOT) -> tuple[np.ndarray, np.ndarray]:
    """Ideal partial list of equal-tempered harmonic tones, amplitudes 1/k."""
    k = np.arange(1, n_harmonics + 1)
    f = np.concatenate([root * 2 ** (s / 12) * k for s in semitones])
    a = np.concatenate([1.0 / k for _ in semitones])
    return f, a


def synth(semitones, n_harmonics: int, seconds: float = 1.0, root: float = ROOT) -> np.ndarray:
    """Harmonic complex tones (amplitudes 1/k, fixed phases) summed, peak 0.5."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for s in semitones:
        f0 = root * 2 ** (s / 12)
        for k in range(1, n_harmonics + 1):
            y += np.sin(2 * np.pi * f0 * k * t + 0.7 * k) / k
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


DYADS = {
    "unison": [0, 0],
    "octave": [0, 12],
    "fifth": [0, 7],
    "fourth": [0, 5],
    "major_third": [0, 4],
    "tritone": [0, 6],
    "minor_second": [0, 1],
}
TRIADS = {"major": [0, 4, 7], "diminished": [0, 3, 6], "cluster": [0, 1, 2]}


def assert_dyad_orderings(c: dict) -> None:
    # the required strict ordering ...
    assert min(c["unison"], c["octave"]) > c["fifth"]
    assert c["fifth"] > c["major_third"] > c["tritone"] > c["minor_second"]
    # ... and the fourth between fifth and major third, as before
    assert c["fifth"] > c["fourth"] > c["major_third"]


def assert_triad_orderings(c: dict) -> None:
    assert c["major"] > c["diminished"] > c["cluster"]


# ------------------------------------------------------------------ model


@pytest.mark.parametrize("root", ROOTS.values(), ids=ROOTS.keys())
@pytest.mark.parametrize("n_harmonics", [6, 7, 8])
def test_dyad_orderings_on_ideal_partials(n_harmonics, root):
    c = {name: consonance(*partials(s, n_harmonics, root)) for name, s in DYADS.items()}
    assert_dyad_orderings(c)


@pytest.mark.parametrize("root", ROOTS.values(), ids=ROOTS.keys())
@pytest.mark.parametrize("n_harmonics", [6, 7, 8])
def test_triad_orderings_on_ideal_partials(n_harmonics, root):
    c = {name: consonance(*partials(s, n_harmonics, root)) for name, s in TRIADS.items()}
    assert_triad_orderings(c)


def test_roughness_alone_misranks_the_tritone():
    # why the periodicity term exists: Sethares roughness on its own rates the
    # tritone smoother than the major third at C4
    assert dissonance(*partials([0, 6], 6)) < dissonance(*partials([0, 4], 6))
    assert consonance(*partials([0, 4], 6)) > consonance(*partials([0, 6], 6))


def test_documented_anchor_values():
    # the numbers quoted in the module docstring (C4, 6 harmonics)
    expected = {
        "single": ([0], 1, 0.992),
        "octave": ([0, 12], 1, 0.981),
        "fifth": ([0, 7], 2, 0.601),
        "fourth": ([0, 5], 3, 0.408),
        "major_third": ([0, 4], 4, 0.294),
        "minor_third": ([0, 3], 5, 0.231),
        "tritone": ([0, 6], 12, 0.185),
        "minor_second": ([0, 1], 15, 0.080),
        "major": ([0, 4, 7], 4, 0.149),
        "diminished": ([0, 3, 6], 60, 0.025),
        "cluster": ([0, 1, 2], 120, 0.004),
    }
    for name, (s, period, c) in expected.items():
        f, a = partials(s, 6)
        assert relative_periodicity(estimate_pitches(f, a)[0]) == period, name
        assert consonance(f, a) == pytest.approx(c, abs=0.0015), name


def test_simplest_fraction_matches_stolzenburg_intervals():
    # equal-tempered intervals -> simplest fraction within RATIO_TOLERANCE
    want = ["1/1", "16/15", "9/8", "6/5", "5/4", "4/3", "17/12", "3/2", "8/5", "5/3", "16/9", "15/8", "2/1"]
    got = ["%d/%d" % simplest_fraction(2 ** (s / 12)) for s in range(13)]
    assert got == want
    # the same as with Stolzenburg's 1 %: the tolerance only moves the boundary away
    assert got == ["%d/%d" % simplest_fraction(2 ** (s / 12), tolerance=0.01) for s in range(13)]
    assert simplest_fraction(0.4) == (2, 5)
    assert simplest_fraction(1.4142, tolerance=0.0) != (7, 5)
    assert simplest_fraction(2.0, tolerance=0.0) == (2, 1)
    with pytest.raises(ChandraError, match="positive"):
        simplest_fraction(0.0)
    with pytest.raises(ChandraError, match="tolerance"):
        simplest_fraction(1.5, tolerance=1.0)


def test_relative_periodicity():
    assert relative_periodicity([]) == 1
    assert relative_periodicity([440.0]) == 1
    assert relative_periodicity([220.0, 440.0, 880.0]) == 1  # octaves
    assert relative_periodicity([200.0, 300.0]) == 2  # 3/2
    assert relative_periodicity([400.0, 500.0, 600.0]) == 4  # 5/4, 3/2 -> lcm(4, 2)
    assert relative_periodicity([600.0, 400.0, 500.0]) == 4  # order does not matter
    with pytest.raises(ChandraError, match="positive"):
        relative_periodicity([0.0, 100.0])


def test_estimate_pitches_finds_fundamentals():
    for name, s in {**DYADS, **TRIADS}.items():
        f, a = partials(s, 8)
        p, pa = estimate_pitches(f, a)
        # octaves (and unisons) fold into the lower tone: they add no periodicity
        fundamentals = ROOT * 2 ** (np.unique(np.array(s) % 12) / 12)
        np.testing.assert_allclose(p, fundamentals, rtol=1e-9, err_msg=name)
        assert (pa == 1.0).all()
    # a harmonic stronger than its fundamental is not absorbed by it, but as an
    # integer multiple it leaves the periodicity unchanged
    p, _ = estimate_pitches([200.0, 400.0, 600.0], [0.5, 1.0, 0.3])
    np.testing.assert_allclose(p, [200.0, 400.0])
    assert relative_periodicity(p) == 1
    assert estimate_pitches([])[0].size == 0
    assert RATIO_TOLERANCE < 0.01


def test_trivial_inputs_are_fully_consonant():
    assert consonance([]) == 1.0
    assert consonance([440.0]) == 1.0
    assert consonance([440.0], [0.3]) == 1.0
    assert dissonance([]) == 0.0


def test_pair_dissonance_peaks_at_d_max():
    # a single equal-amplitude pair can never exceed the curve maximum
    f1 = 400.0
    gaps = np.linspace(0.0, 400.0, 4001)
    d = np.array([dissonance([f1, f1 + g]) for g in gaps])
    assert d.max() <= D_MAX + 1e-12
    assert d.max() == pytest.approx(D_MAX, rel=1e-4)
    assert d[0] == 0.0
    # maximum roughness lies at a fraction of the critical band (~20-40 Hz at 400 Hz)
    assert 15.0 < gaps[np.argmax(d)] < 45.0


def test_consonance_is_bounded_monotone_and_level_invariant():
    rng = np.random.default_rng(0)
    for _ in range(50):
        f = rng.uniform(60, 4000, size=rng.integers(2, 20))
        a = rng.uniform(0.01, 1.0, size=f.size)
        c = consonance(f, a)
        assert 0.0 < c <= 1.0
        # the documented combination: geometric mean of roughness and periodicity scores
        period = relative_periodicity(estimate_pitches(f, a)[0])
        assert c == pytest.approx(np.sqrt(np.exp(-dissonance(f, a) / D_MAX) / period))
        assert consonance(f, 7.5 * a) == pytest.approx(c)  # playback level does not matter
        assert consonance(f[::-1], a[::-1]) == pytest.approx(c)  # order does not matter
    # more rough pairs -> lower consonance
    assert consonance([440, 466]) > consonance([440, 466, 494])


def test_consonance_rejects_bad_partials():
    with pytest.raises(ChandraError, match="one amplitude per partial"):
        consonance([100, 200], [1.0])
    with pytest.raises(ChandraError, match="positive"):
        consonance([0.0, 200])
    with pytest.raises(ChandraError, match="finite"):
        consonance([np.nan, 200])


def test_frequency_ratios():
    assert frequency_ratios([]) == []
    assert frequency_ratios([392.0, 261.63, 523.26]) == [1.0, 1.4983, 2.0]
    assert frequency_ratios([0.0, np.nan, 300.0]) == [1.0]


# ------------------------------------------------------------------ peaks


def test_spectral_peaks_finds_harmonics_accurately():
    y = synth([0], 6)
    f, a = spectral_peaks(y, SR, max_peaks=12)
    assert f.size == 6
    np.testing.assert_allclose(f, ROOT * np.arange(1, 7), rtol=1e-3)
    # amplitudes follow 1/k
    np.testing.assert_allclose(a / a[0], 1.0 / np.arange(1, 7), rtol=0.05)


def test_spectral_peaks_amplitude_units_and_band():
    t = np.arange(SR) / SR
    y = 0.8 * np.sin(2 * np.pi * 1000.0 * t) + 0.4 * np.sin(2 * np.pi * 30.0 * t)
    f, a = spectral_peaks(y, SR, fmin=50, fmax=5000)
    assert f.size == 1  # the 30 Hz tone is below fmin
    assert f[0] == pytest.approx(1000.0, abs=0.5)
    assert a[0] == pytest.approx(0.8, rel=0.02)
    assert spectral_peaks(np.zeros(SR), SR)[0].size == 0
    assert spectral_peaks(np.zeros(3), SR)[0].size == 0


def test_spectral_peaks_max_peaks_keeps_strongest():
    f, a = spectral_peaks(synth([0], 8), SR, max_peaks=3)
    np.testing.assert_allclose(f, ROOT * np.arange(1, 4), rtol=1e-3)


# ------------------------------------------------------------------ analyse_harmony


def analysed(semitones, n_harmonics, root: float = ROOT, **kwargs) -> dict:
    return analyse_harmony(synth(semitones, n_harmonics, root=root), SR, one_segment(1.0), **kwargs)[0]


@pytest.mark.parametrize("root", ROOTS.values(), ids=ROOTS.keys())
@pytest.mark.parametrize("n_harmonics", [6, 7, 8])
def test_dyad_orderings_from_audio(n_harmonics, root):
    c = {name: analysed(s, n_harmonics, root=root)["consonance"] for name, s in DYADS.items()}
    assert_dyad_orderings(c)


@pytest.mark.parametrize("root", ROOTS.values(), ids=ROOTS.keys())
@pytest.mark.parametrize("n_harmonics", [6, 7, 8])
def test_triad_orderings_from_audio(n_harmonics, root):
    # 3 tones x 8 harmonics = 24 partials: the default 12 keep every fundamental
    assert_triad_orderings({name: analysed(s, n_harmonics, root=root)["consonance"] for name, s in TRIADS.items()})
    assert_triad_orderings(
        {name: analysed(s, n_harmonics, root=root, max_partials=24)["consonance"] for name, s in TRIADS.items()}
    )


def test_audio_agrees_with_ideal_partials():
    for s in ([0, 7], [0, 4], [0, 6], [0, 1], [0, 4, 7], [0, 3, 6]):
        h = analysed(s, 6, max_partials=6 * len(s))  # every partial, as in the ideal list
        assert h["consonance"] == pytest.approx(consonance(*partials(s, 6)), abs=0.03)
        # the pitch sieve recovers the played fundamentals
        np.testing.assert_allclose(h["pitches_hz"], ROOT * 2 ** (np.array(s) / 12), rtol=1e-3)


def test_ratios_are_pitch_ratios():
    h = analysed([0, 4, 7], 6)
    assert h["ratios"] == pytest.approx([1.0, 2 ** (4 / 12), 2 ** (7 / 12)], abs=1e-3)
    assert len(h["ratios"]) == len(h["pitches_hz"]) == 3
    assert h["n_partials"] == len(h["partials_hz"]) == 12


def test_fifth_ratios_contain_three_halves():
    h = analysed([0, 7], 6)
    assert h["n_partials"] >= 8
    assert any(abs(r - 1.5) < 0.005 for r in h["ratios"])
    assert h["ratios"][0] == 1.0
    assert h["ratios"] == sorted(h["ratios"])
    assert h["partials_hz"][0] == pytest.approx(ROOT, rel=1e-3)
    assert len(h["partials_hz"]) == h["n_partials"]
    # ratios are now those of the pitches (C4, G4), not of the partials
    assert len(h["ratios"]) == len(h["pitches_hz"]) == 2


def test_silence_short_and_out_of_range_segments_are_neutral():
    y = np.concatenate([synth([0, 7], 6), np.zeros(SR, np.float32)])
    segs = FakeSegments(
        start=np.array([0.0, 1.2, 0.5, 0.9, 5.0]),
        end=np.array([1.0, 1.9, 0.505, 0.8, 6.0]),  # ok, silent, 5 ms, reversed, past the end
    )
    out = analyse_harmony(y, SR, segs)
    assert len(out) == 5
    assert out[0]["n_partials"] > 0 and out[0]["consonance"] < 1.0
    for h in out[1:]:
        assert h == {
            "consonance": NO_PARTIALS_CONSONANCE,
            "pitches_hz": [],
            "ratios": [],
            "partials_hz": [],
            "n_partials": 0,
        }


def test_many_segments_in_range_with_progress():
    rng = np.random.default_rng(0)
    y = (0.1 * rng.normal(size=SR * 20)).astype(np.float32)
    bounds = np.sort(rng.uniform(0, 20, size=1001))
    segs = FakeSegments(bounds[:-1], bounds[1:])
    calls = []
    out = analyse_harmony(y, SR, segs, progress=lambda *a: calls.append(a))
    assert len(out) == 1000
    assert all(0.0 < h["consonance"] <= 1.0 for h in out)
    assert all(isinstance(h["consonance"], float) for h in out)
    assert calls[-1] == ("harmony", 1000, 1000)
    assert [c[1] for c in calls] == sorted(c[1] for c in calls)


def test_long_segment_uses_central_window():
    # C4, G4, C4 for 1 s each: the central 1 s of the 3 s segment is G4 alone
    y = np.concatenate([synth([0], 6), synth([7], 6), synth([0], 6)])
    whole = analyse_harmony(y, SR, one_segment(3.0), window_seconds=1.0)[0]
    assert whole["partials_hz"][0] == pytest.approx(ROOT * 2 ** (7 / 12), rel=1e-3)
    # one tone: its six partials, one pitch, ratios [1.0] (ratios are of pitches)
    assert whole["n_partials"] == 6
    assert whole["pitches_hz"] == pytest.approx([ROOT * 2 ** (7 / 12)], rel=1e-3)
    assert whole["ratios"] == [1.0]
    wide = analyse_harmony(y, SR, one_segment(3.0), window_seconds=3.0)[0]
    assert wide["partials_hz"][0] == pytest.approx(ROOT, rel=1e-2)  # splices smear a little
    assert any(abs(r - 1.5) < 0.005 for r in wide["ratios"])


def test_analyse_harmony_rejects_inconsistent_segments():
    with pytest.raises(ChandraError, match="finite"):
        analyse_harmony(np.zeros(SR), SR, FakeSegments(np.array([np.nan]), np.array([1.0])))
    with pytest.raises(ChandraError, match="positive"):
        analyse_harmony(np.zeros(SR), 0, one_segment(1.0))
