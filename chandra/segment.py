"""Onset segmentation: a signal becomes contiguous segments bounded by onsets.

Times are seconds from the start of the file (never wall-clock). Segments
tile the file: the first starts at 0, each ends where the next starts, and
the last ends at the signal's duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chandra.errors import SegmentationError
from chandra.progress import ProgressCallback, report

__all__ = [
    "Segments",
    "segment_audio",
    "detect_onsets",
    "spectral_frames",
    "onset_envelope",
    "bound_durations",
    "estimate_f0",
    "segment_rms",
    "validate_segments",
    "summarize_segments",
]


@dataclass
class Segments:
    """Per-segment arrays, all of length ``n``.

    Attributes
    ----------
    id : int64 (n,)
        0-based segment id, equal to the row index.
    start, end : float64 (n,)
        Bounds in seconds from file start; ``start[i] < end[i]``.
    rms : float64 (n,)
        Root mean square of the samples in the segment (linear amplitude).
    f0 : float64 (n,)
        Fundamental frequency in Hz, NaN where the segment is not pitched.
    centroid : float64 (n,)
        Mean spectral centroid in Hz.
    """

    id: np.ndarray
    start: np.ndarray
    end: np.ndarray
    rms: np.ndarray
    f0: np.ndarray
    centroid: np.ndarray
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @property
    def duration(self) -> np.ndarray:
        """Segment durations in seconds, float64 (n,)."""
        return self.end - self.start

    def to_records(self) -> list[dict]:
        """One JSON-able dict per segment (``f0`` None when unpitched)."""
        return [
            {
                "segment_id": int(i),
                "start": float(s),
                "end": float(e),
                "rms": float(r),
                "f0": None if not np.isfinite(f) else float(f),
                "centroid": float(c),
            }
            for i, s, e, r, f, c in zip(self.id, self.start, self.end, self.rms, self.f0, self.centroid)
        ]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ("id", "start", "end", "rms", "f0", "centroid")}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, params: dict | None = None) -> "Segments":
        return cls(
            id=np.asarray(arrays["id"], dtype=np.int64),
            start=np.asarray(arrays["start"], dtype=np.float64),
            end=np.asarray(arrays["end"], dtype=np.float64),
            rms=np.asarray(arrays["rms"], dtype=np.float64),
            f0=np.asarray(arrays["f0"], dtype=np.float64),
            centroid=np.asarray(arrays["centroid"], dtype=np.float64),
            params=dict(params or {}),
        )


def spectral_frames(y: np.ndarray, sr: int, *, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128,
                    block_frames: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Mel power spectrogram and spectral centroid from ONE short-time Fourier
    analysis, computed in blocks of frames.

    The frames are those of ``librosa.stft(center=True)`` (frame k centred on
    sample ``k * hop_length``, zero padding at the edges, Hann window), so the
    results match librosa's ``melspectrogram`` and ``spectral_centroid``; the
    block loop only bounds memory: an hour of audio never holds its whole
    complex spectrogram (~1.3 GB at 22 050 Hz), only (n_mels, n_frames).

    Returns
    -------
    mel_power : float32 (n_mels, n_frames)
    centroid : float64 (n_frames,), Hz
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    n_frames = 1 + len(y) // hop_length
    mel_basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    mel = np.empty((n_mels, n_frames), dtype=np.float32)
    centroid = np.empty(n_frames, dtype=np.float64)
    for k0, k1, mag in _stft_magnitude_blocks(y, n_fft=n_fft, hop_length=hop_length, block_frames=block_frames):
        mel[:, k0:k1] = mel_basis @ (mag**2).T
        total = mag.sum(axis=1)
        centroid[k0:k1] = np.where(total > 0, (mag @ freqs) / np.maximum(total, 1e-20), 0.0)
    return mel, centroid


def _stft_magnitude_blocks(y: np.ndarray, *, n_fft: int, hop_length: int, block_frames: int,
                           float64: bool = False):
    """``|librosa.stft(y, n_fft=n_fft, hop_length=hop_length)|`` (``center=True``,
    zero padding, Hann window), transposed, in blocks of at most
    ``block_frames`` frames.

    Yields
    ------
    k0, k1 : int
        The block's frame range ``[k0, k1)``; the blocks tile
        ``[0, 1 + len(y) // hop_length)`` in order.
    mag : float32 (k1 - k0, 1 + n_fft // 2)
        Magnitudes of the windowed frames; frame k is centred on sample
        ``k * hop_length``, with zeros beyond both ends of ``y``.

    With ``float64=True`` the windowing and FFT run in float64 and the
    spectrum is rounded to complex64 before the magnitude, as
    ``librosa.stft`` does for a float32 signal: the magnitudes are then
    librosa's exactly (the dsp encoder's descriptors need this; near-silent
    bins are otherwise only float32-accurate, a dB or so in the valleys of
    spectral contrast).
    """
    import scipy.signal

    n_frames = 1 + len(y) // hop_length
    pad = n_fft // 2
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)
    if not float64:
        window = window.astype(np.float32)
    for k0 in range(0, n_frames, block_frames):
        k1 = min(n_frames, k0 + block_frames)
        a, b = k0 * hop_length - pad, (k1 - 1) * hop_length + pad + (n_fft % 2)
        chunk = np.zeros(b - a, dtype=np.float32)
        lo, hi = max(a, 0), min(b, len(y))
        if hi > lo:
            chunk[lo - a: hi - a] = y[lo:hi]
        frames = np.lib.stride_tricks.sliding_window_view(chunk, n_fft)[::hop_length][: k1 - k0]
        if float64:
            yield k0, k1, np.abs(np.fft.rfft(frames * window, axis=1).astype(np.complex64))
        else:
            yield k0, k1, np.abs(np.fft.rfft(frames * window, axis=1)).astype(np.float32)


#: Frames per block of :func:`onset_envelope`.
_ENVELOPE_BLOCK = 8192


def onset_envelope(mel_power: np.ndarray, *, hop_length: int = 512, n_fft: int = 2048,
                   block_frames: int | None = None) -> np.ndarray:
    """librosa's spectral-flux onset strength of a mel power spectrogram, in blocks of frames.

    The same values as ``librosa.onset.onset_strength(S=librosa.power_to_db(mel_power),
    hop_length=hop_length, n_fft=n_fft)`` (tested): dB with ``ref=1``, ``amin=1e-10`` and
    a floor 80 dB below the loudest bin of the whole file (found in a first pass), the mean
    over mel bands of the positive difference from the previous frame, delayed by
    ``1 + n_fft // (2 * hop_length)`` frames. Each block carries the last frame of the one
    before, so no difference is lost or counted twice at a block edge, and the whole-file dB
    matrix and its difference (four copies of the mel matrix, some float64) are never held.

    Returns
    -------
    float32 (n_frames,)
    """
    # at least 2 frames a block: numpy sums a single column in another order (1 ulp apart)
    block = max(int(block_frames or _ENVELOPE_BLOCK), 2)
    n = mel_power.shape[1]
    amin = 1e-10

    def to_db(part: np.ndarray) -> np.ndarray:
        out = 10.0 * np.log10(np.maximum(amin, part))
        out -= 10.0 * np.log10(np.maximum(amin, 1.0))  # ref=1.0, as power_to_db computes it
        return out

    peak = max(float(to_db(mel_power[:, k:k + block]).max()) for k in range(0, n, block))
    floor = peak - 80.0
    flux = np.zeros(max(n - 1, 0), dtype=np.float32)
    k0 = 1
    while k0 < n:
        k1 = min(n, k0 + block)
        if n - k1 == 1:
            k1 = n  # no block of one frame (see above)
        db = np.maximum(to_db(mel_power[:, k0 - 1:k1]), floor)
        flux[k0 - 1:k1 - 1] = np.mean(np.maximum(0.0, db[:, 1:] - db[:, :-1]), axis=0)
        k0 = k1
    delay = 1 + n_fft // (2 * hop_length)
    envelope = np.zeros(n, dtype=flux.dtype)
    if n > delay:
        envelope[delay:] = flux[: n - delay]
    return envelope


def detect_onsets(y: np.ndarray, sr: int, *, hop_length: int = 512, backtrack: bool = True,
                  delta: float = 0.07, wait: int = 2, mel_power: np.ndarray | None = None) -> np.ndarray:
    """Onset times in seconds (float64, sorted), from librosa's spectral-flux
    onset strength (on the log-mel spectrogram, as librosa computes it) with
    peak picking. ``mel_power`` (from :func:`spectral_frames`) avoids a second
    spectral analysis."""
    import librosa

    if mel_power is None:
        mel_power, _ = spectral_frames(y, sr, hop_length=hop_length)
    envelope = onset_envelope(mel_power, hop_length=hop_length)
    # Backtracking (on the onset-strength curve, librosa's default) moves each
    # onset to the preceding local minimum of spectral flux, so a segment
    # starts just before its attack rather than in it.
    frames = librosa.onset.onset_detect(
        onset_envelope=envelope, sr=sr, hop_length=hop_length, backtrack=backtrack, delta=delta, wait=wait,
        units="frames",
    )
    times = librosa.frames_to_time(np.unique(frames), sr=sr, hop_length=hop_length)
    return np.asarray(times, dtype=np.float64)


def bound_durations(boundaries: np.ndarray, *, duration: float, min_duration: float,
                    max_duration: float) -> np.ndarray:
    """Turn onset times into segment boundaries obeying duration bounds.

    Parameters
    ----------
    boundaries : float64 (m,)
        Candidate cut points in seconds.
    duration : float
        Signal duration in seconds; boundaries are clipped to [0, duration].
    min_duration, max_duration : float
        Bounds in seconds. A segment shorter than ``min_duration`` is merged
        into its predecessor (the first into its successor); one longer than
        ``max_duration`` is split into equal parts.

    Returns
    -------
    edges : float64 (n + 1,)
        ``edges[0] == 0``, ``edges[-1] == duration``, strictly increasing.
    """
    if min_duration <= 0 or max_duration <= min_duration:
        raise SegmentationError(
            f"need 0 < min_duration < max_duration, got {min_duration} and {max_duration}"
        )
    inner = np.asarray(boundaries, dtype=np.float64)
    inner = np.unique(inner[(inner > 0) & (inner < duration)])
    edges = [0.0]
    for cut in inner:
        if cut - edges[-1] >= min_duration:
            edges.append(float(cut))
    if duration - edges[-1] < min_duration and len(edges) > 1:
        edges.pop()  # the tail is too short: merge it into the previous segment
    edges.append(float(duration))
    out = [edges[0]]
    for left, right in zip(edges[:-1], edges[1:]):
        parts = int(np.ceil((right - left) / max_duration - 1e-9))
        if parts > 1:
            out.extend(np.linspace(left, right, parts + 1)[1:-1].tolist())
        out.append(right)
    return np.asarray(out, dtype=np.float64)


#: Samples per block of :func:`segment_rms` (bounds its float64 temporaries).
_RMS_BLOCK = 1 << 21
#: Segments per batch of :func:`estimate_f0` (bounds its FFT buffers).
_F0_BATCH = 1024


def segment_rms(y: np.ndarray, sr: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Root mean square of the samples of each segment.

    Sample bounds are ``round(start * sr)`` and ``round(end * sr)`` (at least
    one sample). Sums of squares are float64 over runs of whole segments of at
    most ``_RMS_BLOCK`` samples (a longer segment is its own run), so memory
    is bounded by the run, not the file (a float64 prefix sum over an hour at
    22 050 Hz would be 635 MB, with its temporaries about 2 GB).

    Returns
    -------
    float64 (n,)
    """
    n = len(starts)
    a = np.clip(np.round(np.asarray(starts) * sr).astype(np.int64), 0, len(y))
    b = np.clip(np.round(np.asarray(ends) * sr).astype(np.int64), 0, len(y))
    b = np.maximum(b, a + 1)
    bb = np.minimum(b, len(y))
    out = np.zeros(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i + 1
        while j < n and bb[j] - a[i] <= _RMS_BLOCK:
            j += 1
        lo, hi = int(a[i]), int(max(bb[i:j].max(), a[i]))
        x = y[lo:hi].astype(np.float64)
        csum = np.concatenate([[0.0], np.cumsum(x * x)])
        out[i:j] = np.maximum(csum[bb[i:j] - lo] - csum[a[i:j] - lo], 0.0)
        i = j
    return np.sqrt(out / np.maximum(bb - a, 1))


def estimate_f0(y: np.ndarray, sr: int, starts: np.ndarray, ends: np.ndarray, *, fmin: float = 50.0,
                fmax: float = 1000.0, window: int = 2048, threshold: float = 0.2) -> np.ndarray:
    """YIN fundamental frequency (de Cheveigné & Kawahara 2002), one per segment.

    A window of ``window`` samples starting 10 ms after each segment's start
    (or centred on short segments) is analysed
    with the cumulative-mean-normalised difference function; the segment is
    pitched when its first dip below ``threshold`` (aperiodicity) exists
    inside [sr / fmax, sr / fmin].

    Returns
    -------
    f0 : float64 (n,)
        Hz, NaN where unpitched.
    """
    n = len(starts)
    f0 = np.full(n, np.nan)
    tau_max = min(int(sr / fmin), window // 2)
    tau_min = max(int(sr / fmax), 2)
    if n == 0 or tau_max <= tau_min + 2:
        return f0
    if n > _F0_BATCH:
        # Each segment's analysis is independent; batches bound the FFT buffers
        # ((n, 2 * window) complex: 0.5 GB for an hour's 16,000 segments).
        for k in range(0, n, _F0_BATCH):
            f0[k:k + _F0_BATCH] = estimate_f0(y, sr, starts[k:k + _F0_BATCH], ends[k:k + _F0_BATCH], fmin=fmin,
                                              fmax=fmax, window=window, threshold=threshold)
        return f0
    frames = np.zeros((n, window), dtype=np.float64)
    for i, (s, e) in enumerate(zip(starts, ends)):
        a, b = int(s * sr), int(e * sr)
        # Analyse just after the attack, where a decaying note is loudest and
        # most stable (the segment's middle may already be silence).
        lo = a + int(0.01 * sr) if b - a >= window + int(0.01 * sr) else (a + b) // 2 - window // 2
        lo = max(0, min(lo, len(y) - window))
        seg = y[lo: lo + window]
        frames[i, : len(seg)] = seg
    # Difference function via FFT autocorrelation, all segments at once.
    spec = np.fft.rfft(frames, n=2 * window, axis=1)
    acf = np.fft.irfft(spec * np.conj(spec), axis=1)[:, : tau_max + 1]
    energy = np.cumsum(frames**2, axis=1)
    total = energy[:, -1:]
    # Energy of the window [0, W - tau) and [tau, W): the standard YIN terms.
    taus = np.arange(tau_max + 1)
    e_head = energy[:, window - 1 - taus]
    e_tail = total - np.concatenate([np.zeros((n, 1)), energy[:, :tau_max]], axis=1)
    diff = np.maximum(e_head + e_tail - 2 * acf, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, tau_max + 1)
    cmnd = np.ones_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = np.where(cum > 0, diff[:, 1:] / cum, 1.0)
    for i in range(n):
        if total[i, 0] <= 1e-8:
            continue
        curve = cmnd[i]
        below = np.flatnonzero(curve[tau_min: tau_max] < threshold)
        if below.size == 0:
            continue
        tau = tau_min + int(below[0])
        while tau + 1 < tau_max and curve[tau + 1] < curve[tau]:
            tau += 1  # walk down to the dip's local minimum
        if 1 <= tau < tau_max:
            a, b, c = curve[tau - 1], curve[tau], curve[tau + 1]
            denom = a - 2 * b + c
            shift = 0.5 * (a - c) / denom if abs(denom) > 1e-12 else 0.0
            f0[i] = sr / (tau + float(np.clip(shift, -1, 1)))
    return f0


def segment_audio(y: np.ndarray, sr: int, *, min_duration: float = 0.1, max_duration: float = 2.0,
                  hop_length: int = 512, progress: ProgressCallback | None = None) -> Segments:
    """Onset-based segmentation with per-segment descriptors.

    Parameters
    ----------
    y : float32 (n_samples,)
        Mono signal.
    sr : int
        Sample rate in Hz.
    min_duration, max_duration : float
        Segment duration bounds in seconds (see :func:`bound_durations`).
    hop_length : int
        Analysis hop in samples for onset strength and spectral centroid.

    Returns
    -------
    Segments
        Contiguous segments covering [0, duration].
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise SegmentationError(f"segment_audio needs a mono signal, got shape {y.shape}")
    duration = len(y) / float(sr)
    if duration < min_duration:
        raise SegmentationError(f"{duration:.3f} s of audio is shorter than min_duration={min_duration} s")
    report(progress, "segment", 0, 3)
    mel_power, centroid_frames = spectral_frames(y, sr, hop_length=hop_length)
    onsets = detect_onsets(y, sr, hop_length=hop_length, mel_power=mel_power)
    del mel_power
    edges = bound_durations(onsets, duration=duration, min_duration=min_duration, max_duration=max_duration)
    starts, ends = edges[:-1], edges[1:]
    n = len(starts)
    report(progress, "segment", 1, 3)

    rms = segment_rms(y, sr, starts, ends)

    frame_times = librosa.frames_to_time(np.arange(len(centroid_frames)), sr=sr, hop_length=hop_length)
    # Mean centroid of the frames starting inside each segment, via cumulative
    # sums (O(frames + segments)); a segment shorter than a hop takes the
    # frame it starts in.
    lo = np.searchsorted(frame_times, starts, side="left")
    hi = np.searchsorted(frame_times, ends, side="left")
    csum = np.concatenate([[0.0], np.cumsum(centroid_frames, dtype=np.float64)])
    count = hi - lo
    nearest = np.minimum((starts * sr / hop_length).astype(np.int64), len(centroid_frames) - 1)
    centroid = np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), centroid_frames[nearest])
    report(progress, "segment", 2, 3)
    f0 = estimate_f0(y, sr, starts, ends)
    report(progress, "segment", 3, 3)
    return Segments(
        id=np.arange(n, dtype=np.int64), start=starts.astype(np.float64), end=ends.astype(np.float64),
        rms=rms, f0=f0, centroid=np.nan_to_num(centroid),
        params={"min_duration": min_duration, "max_duration": max_duration, "hop_length": hop_length,
                "n_onsets": int(len(onsets)), "method": "librosa spectral flux, backtracked"},
    )


def validate_segments(segments: Segments, *, duration: float | None = None) -> None:
    """Raise :class:`SegmentationError` unless segments are well formed:
    ids 0..n-1, start < end, contiguous and sorted, inside [0, duration]."""
    n = len(segments)
    if n == 0:
        raise SegmentationError("no segments")
    if not np.array_equal(segments.id, np.arange(n)):
        raise SegmentationError("segment ids must be 0..n-1 in order")
    if np.any(segments.end <= segments.start):
        bad = int(np.flatnonzero(segments.end <= segments.start)[0])
        raise SegmentationError(f"segment {bad} has end <= start")
    if n > 1 and np.any(np.diff(segments.start) <= 0):
        raise SegmentationError("segment starts are not strictly increasing")
    if segments.start[0] < 0 or (duration is not None and segments.end[-1] > duration + 1e-6):
        raise SegmentationError(
            f"segments span [{segments.start[0]:.3f}, {segments.end[-1]:.3f}] s, outside the audio"
        )


def summarize_segments(segments: Segments) -> dict:
    """Scalars: count, duration stats (s), pitched share, rms range."""
    d = segments.duration
    n = len(segments)
    return {
        "n_segments": n,
        "duration_min": float(d.min()) if n else 0.0,
        "duration_median": float(np.median(d)) if n else 0.0,
        "duration_max": float(d.max()) if n else 0.0,
        "pitched_share": float(np.isfinite(segments.f0).mean()) if n else 0.0,
        "n_onsets": int(segments.params.get("n_onsets", 0)),
    }
