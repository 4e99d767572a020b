import numpy as np
import pytest

from chandra.errors import SegmentationError
from chandra.segment import Segments, bound_durations, estimate_f0, segment_audio, validate_segments

from helpers_audio import SR, tone_bursts

KNOWN = [0.3, 0.8, 1.25, 1.9, 2.4, 3.1]


def test_known_onsets_found():
    y = tone_bursts(KNOWN, duration=3.6)
    segs = segment_audio(y, SR, min_duration=0.1, max_duration=2.0)
    validate_segments(segs, duration=len(y) / SR)
    # Every true onset starts a segment within one analysis hop (23 ms) + backtrack slack.
    for onset in KNOWN:
        assert np.min(np.abs(segs.start - onset)) < 0.035, (onset, segs.start)
    # Segments tile the file.
    assert segs.start[0] == 0.0 and segs.end[-1] == pytest.approx(len(y) / SR)
    np.testing.assert_allclose(segs.end[:-1], segs.start[1:])
    assert len(segs) == len(KNOWN) + 1  # the leading silence is a segment of its own


def test_descriptors():
    y = tone_bursts(KNOWN, duration=3.6, freqs=[220.0])
    segs = segment_audio(y, SR)
    sounding = segs.rms > 0.01
    assert sounding.sum() == len(KNOWN)
    # Bursts are pitched at 220 Hz; the near-silent lead-in is not.
    np.testing.assert_allclose(segs.f0[sounding], 220.0, rtol=0.02)
    assert np.isnan(segs.f0[0])
    assert np.all(segs.centroid[sounding] > 200)
    records = segs.to_records()
    assert records[0]["f0"] is None and set(records[0]) == {"segment_id", "start", "end", "rms", "f0", "centroid"}


def test_f0_of_pure_tones():
    t = np.arange(SR) / SR
    y = np.concatenate([np.sin(2 * np.pi * f * t) for f in (110.0, 261.63, 440.0)]).astype(np.float32)
    f0 = estimate_f0(y, SR, np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(f0, [110.0, 261.63, 440.0], rtol=0.01)


def test_duration_bounds_merge_and_split():
    edges = bound_durations(np.array([0.05, 0.5, 0.52, 1.0]), duration=6.0, min_duration=0.1, max_duration=2.0)
    d = np.diff(edges)
    assert edges[0] == 0 and edges[-1] == 6.0
    assert np.all(d >= 0.1 - 1e-9) and np.all(d <= 2.0 + 1e-9)
    assert 0.52 not in edges and 0.05 not in edges  # too-short pieces merged
    with pytest.raises(SegmentationError):
        bound_durations(np.array([]), duration=1.0, min_duration=0.5, max_duration=0.2)


def test_no_onsets_still_segments():
    t = np.arange(3 * SR) / SR
    y = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    segs = segment_audio(y, SR, max_duration=1.0)
    assert len(segs) >= 3 and np.all(segs.duration <= 1.0 + 1e-9)


def test_validate_segments_rejects_bad():
    good = Segments(id=np.arange(2), start=np.array([0.0, 1.0]), end=np.array([1.0, 2.0]), rms=np.ones(2),
                    f0=np.full(2, np.nan), centroid=np.ones(2))
    validate_segments(good, duration=2.0)
    bad = Segments(id=np.arange(2), start=np.array([0.0, 1.0]), end=np.array([1.0, 0.5]), rms=np.ones(2),
                   f0=np.full(2, np.nan), centroid=np.ones(2))
    with pytest.raises(SegmentationError, match="end <= start"):
        validate_segments(bad)
    with pytest.raises(SegmentationError, match="outside"):
        validate_segments(good, duration=1.5)


def test_blockwise_spectral_frames_match_librosa():
    import librosa

    from chandra.segment import spectral_frames

    y = tone_bursts(KNOWN, duration=3.6)
    mel, centroid = spectral_frames(y, SR, block_frames=37)  # blocks that do not divide the frame count
    ref_mel = librosa.feature.melspectrogram(y=y, sr=SR, hop_length=512)
    ref_centroid = librosa.feature.spectral_centroid(y=y, sr=SR, hop_length=512)[0]
    assert mel.shape == ref_mel.shape
    np.testing.assert_allclose(mel, ref_mel, rtol=1e-3, atol=1e-6 * ref_mel.max())
    loud = ref_mel.sum(axis=0) > 1e-6 * ref_mel.sum(axis=0).max()
    np.testing.assert_allclose(centroid[loud], ref_centroid[loud], rtol=1e-3)
    whole, _ = spectral_frames(y, SR, block_frames=10**6)
    # Block size changes the FFT batch shape, which may change float32
    # rounding in the last bits (seen: 4e-7 relative); nothing more.
    np.testing.assert_allclose(mel, whole, rtol=1e-5, atol=1e-6 * float(whole.max()))


@pytest.mark.parametrize("n_fft, hop, block, length", [
    (2048, 512, 37, None),       # the default analysis, blocks that do not divide the frame count
    (512, 128, 1, -7),           # one frame per block, length not a multiple of the hop
    (1023, 300, 10**6, None),    # odd FFT size, one block
    (2048, 512, 5, 700),         # signal shorter than one FFT: every frame is edge padding
])
def test_blockwise_stft_matches_librosa_stft(n_fft, hop, block, length):
    import warnings

    import librosa

    from chandra.segment import _stft_magnitude_blocks

    rng = np.random.default_rng(0)
    y = tone_bursts(KNOWN[:4], duration=2.3)
    y = (y + 0.01 * rng.standard_normal(y.size)).astype(np.float32)
    if length is not None:
        y = y[:length]
    blocks = list(_stft_magnitude_blocks(y, n_fft=n_fft, hop_length=hop, block_frames=block))
    assert [k0 for k0, _, _ in blocks] == list(range(0, 1 + y.size // hop, block))
    mag = np.concatenate([m for _, _, m in blocks])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa: "n_fft is too large for input"
        ref = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)).T  # center=True, zero padding, Hann
    assert mag.shape == ref.shape and mag.dtype == np.float32
    # Both are float32 FFTs of the same windowed frames; a length-N float32
    # FFT is exact to ~eps32 * log2(N) ~ 1.3e-6 of the frame's energy, so
    # 1e-5 of the largest magnitude bounds rounding (measured: <= 1e-7).
    np.testing.assert_allclose(mag, ref, rtol=0, atol=1e-5 * float(ref.max()))


def test_batched_yin_matches_librosa_yin():
    """40 harmonic tones (55-950 Hz, random partials and phases, faint noise):
    each segment's f0 against librosa.yin on the same 2048-sample window."""
    import librosa

    rng = np.random.default_rng(0)
    f0s = np.exp(rng.uniform(np.log(55.0), np.log(950.0), 40))
    seg = 0.3
    t = np.arange(int(seg * SR)) / SR
    notes = []
    for f in f0s:
        amps = rng.uniform(0.2, 1.0, 6) / np.arange(1, 7)
        phases = rng.uniform(0, 2 * np.pi, 6)
        notes.append(0.3 * sum(a * np.sin(2 * np.pi * f * h * t + p) for h, (a, p) in enumerate(zip(amps, phases), 1)))
    y = np.concatenate(notes) + 0.001 * rng.standard_normal(len(f0s) * t.size)
    starts = np.arange(len(f0s)) * seg
    ours = estimate_f0(y, SR, starts, starts + seg, fmin=50.0, fmax=1000.0, window=2048, threshold=0.2)
    ref = []
    for s in starts:
        lo = int(s * SR) + int(0.01 * SR)  # the documented window: 10 ms after the segment start
        ref.append(librosa.yin(y[lo: lo + 2048], fmin=50.0, fmax=1000.0, sr=SR, frame_length=2048, center=False,
                               trough_threshold=0.2)[0])
    ref = np.asarray(ref)
    assert np.isfinite(ours).all()
    cents = lambda a, b: 1200 * np.abs(np.log2(a / b))  # noqa: E731
    # Both are YIN with parabolic interpolation; they differ in the
    # difference function's integration window (ours shrinks with the lag,
    # YIN eq. 6; librosa's is fixed at frame_length / 2), which moves the
    # interpolated dip by a few cents on real harmonic tones (measured <= 3.2
    # cents here). 5 cents is a twentieth of a semitone, well inside any
    # pitch a musician would call the same note.
    assert cents(ours, ref).max() < 5.0, np.c_[f0s, ours, ref][np.argmax(cents(ours, ref))]
    assert cents(ours, f0s).max() < 5.0
