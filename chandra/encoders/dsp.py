"""The dsp encoder: librosa descriptors of the whole signal pooled per segment."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from chandra.encoders.base import _check_signal, _versions, resample
from chandra.encoders.pooling import pool_frames, segment_bounds
from chandra.errors import EncoderError
from chandra.progress import ProgressCallback, report

__all__ = ["DSPEncoder"]


_CONTRAST_FMIN = 200.0
_MAX_CONTRAST_BANDS = 6
_N_CHROMA = 12
_N_MELS = 128
_EPS_RMS = 1e-5


class DSPEncoder:
    """librosa descriptors pooled per segment; works offline, the default.

    All descriptors come from one STFT of the whole signal (resampled to
    ``sr`` first when needed), computed ``block_frames`` frames at a time so
    memory does not grow with the file beyond the (n_frames, 82) descriptor
    matrix; frame ``t`` is centred at ``t * hop_length / sr`` seconds (librosa
    ``center=True``). Per segment the frames are pooled as
    described in the module docstring.

    Parameters
    ----------
    sr : int
        Analysis sample rate in Hz; the signal is resampled to it.
    n_mfcc : int
        Number of MFCCs (including c0).
    hop_length : int
        STFT hop in samples at ``sr`` (512 at 22050 Hz ≈ 23.2 ms).
    n_fft : int
        STFT window in samples at ``sr``.
    block_frames : int
        STFT frames analysed at a time (memory only: the features are those
        of the whole-file analysis, within float32 rounding of the FFT).

    Notes
    -----
    Vector layout, with ``M = n_mfcc`` and ``B`` spectral-contrast bands
    (``B = 6`` for ``sr >= 12800``; fewer so that the top octave band stays
    below Nyquist), dimension ``4*M + 12 + (B+1) + 3`` (102 by default):

    ====================  =========  ==============================================
    block                 size       content (per segment)
    ====================  =========  ==============================================
    ``mfcc_mean``         M          mean MFCC (from dB mel power, 128 mels, ref 1)
    ``mfcc_std``          M          std of MFCC — how much the timbre moves
    ``mfcc_delta_mean``   M          mean first difference (direction of change)
    ``mfcc_delta2_mean``  M          mean second difference
    ``chroma_mean``       12         ``chroma_stft`` (tuning fixed at 0), C..B
    ``contrast_mean``     B+1        ``spectral_contrast`` in dB, fmin 200 Hz
    ``rms_db``            1          mean 20·log10(RMS + 1e-5), dB re full scale
    ``flatness``          1          mean spectral flatness, 0 (tonal) .. 1 (noise)
    ``centroid_norm``     1          mean spectral centroid / Nyquist, 0 .. 1
    ====================  =========  ==============================================

    :meth:`feature_names` gives one name per column. Digital silence gives
    finite values (MFCCs at the -100 dB floor, zero chroma, flatness ≈ 1).
    """

    name = "dsp"

    def __init__(self, *, sr: int = 22050, n_mfcc: int = 20, hop_length: int = 512, n_fft: int = 2048,
                 block_frames: int = 4096):
        self.sr = sr
        self.block_frames = block_frames
        self.n_mfcc = n_mfcc
        self.hop_length = hop_length
        self.n_fft = n_fft
        for label, value in (("sr", sr), ("n_mfcc", n_mfcc), ("hop_length", hop_length), ("n_fft", n_fft),
                             ("block_frames", block_frames)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise EncoderError(f"DSPEncoder {label} must be a positive integer, got {value!r}")
        if 0.5 * sr <= _CONTRAST_FMIN:
            raise EncoderError(
                f"DSPEncoder sr={sr} Hz is too low: spectral contrast needs a Nyquist above "
                f"{_CONTRAST_FMIN:g} Hz"
            )

    # -- layout -------------------------------------------------------------

    @property
    def n_contrast_bands(self) -> int:
        """Spectral-contrast octave bands ``B`` that fit below Nyquist at ``sr``."""
        n = _MAX_CONTRAST_BANDS
        while n > 1 and _CONTRAST_FMIN * 2.0 ** (n - 1) >= 0.5 * self.sr:
            n -= 1
        return n

    def _blocks(self) -> list[tuple[str, int]]:
        m = self.n_mfcc
        return [
            ("mfcc_mean", m),
            ("mfcc_std", m),
            ("mfcc_delta_mean", m),
            ("mfcc_delta2_mean", m),
            ("chroma_mean", _N_CHROMA),
            ("contrast_mean", self.n_contrast_bands + 1),
            ("rms_db", 1),
            ("flatness", 1),
            ("centroid_norm", 1),
        ]

    @property
    def dim(self) -> int:
        """Vector dimension (102 with the defaults)."""
        return sum(size for _, size in self._blocks())

    def feature_names(self) -> list[str]:
        """One name per output column, in order (e.g. ``"mfcc_mean_00"``, ``"chroma_mean_C"``)."""
        pitch = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
        names: list[str] = []
        for block, size in self._blocks():
            if size == 1:
                names.append(block)
            elif block == "chroma_mean":
                names.extend(f"{block}_{p}" for p in pitch)
            else:
                names.extend(f"{block}_{i:02d}" for i in range(size))
        return names

    # -- computation --------------------------------------------------------

    def frame_features(self, y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame-level descriptors of the whole signal.

        Parameters
        ----------
        y : np.ndarray, float (n,)
            Mono signal.
        sr : int
            Its sample rate in Hz (resampled to ``self.sr`` when different).

        Returns
        -------
        frames : np.ndarray, float64 (n_frames, 3*M + 12 + B+1 + 3)
            Columns: MFCC, delta, delta-delta, chroma, contrast, rms_db,
            flatness, centroid_norm (the MFCC std is added at pooling time).
        frame_times : np.ndarray, float64 (n_frames,)
            Frame centres in seconds from file start.
        """
        import librosa

        from chandra.segment import _stft_magnitude_blocks

        y, sr = _check_signal(y, sr)
        y = resample(y, sr, self.sr)
        sr = self.sr
        m = self.n_mfcc
        n_frames = 1 + len(y) // self.hop_length
        width = 3 * m + _N_CHROMA + self.n_contrast_bands + 1 + 3
        frames = np.empty((n_frames, width), dtype=np.float64)
        # One STFT in blocks of frames (librosa.stft(center=True) frames; see
        # chandra.segment._stft_magnitude_blocks): every descriptor but the MFCC
        # deltas is a function of one frame, so the complex spectrogram of the
        # file (1.3 GB an hour) and its float64 power (another 1.3 GB) are never
        # held whole; the deltas run over the whole (M, n_frames) MFCC matrix.
        c = 3 * m
        n_bands = self.n_contrast_bands + 1
        bands = _contrast_bands(sr, self.n_fft, self.n_contrast_bands)
        peaks = np.empty((n_bands, n_frames), dtype=np.float64)
        valleys = np.empty((n_bands, n_frames), dtype=np.float64)
        for k0, k1, mag_t in _stft_magnitude_blocks(y, n_fft=self.n_fft, hop_length=self.hop_length,
                                                    block_frames=self.block_frames, float64=True):
            mag = mag_t.T
            power = mag.astype(np.float64) ** 2
            mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=self.n_fft, n_mels=_N_MELS)
            # absolute dB (no top_db) so a segment's MFCCs do not depend on the loudest moment elsewhere
            frames[k0:k1, :m] = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=1.0, top_db=None),
                                                     n_mfcc=m).T
            # tuning=0 skips pitch-tuning estimation, which warns on silence and varies with the file
            chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=self.n_fft, tuning=0.0, n_chroma=_N_CHROMA)
            peaks[:, k0:k1], valleys[:, k0:k1] = _contrast_peaks_valleys(mag, bands)
            rms = librosa.feature.rms(S=mag, frame_length=self.n_fft)
            rms_db = 20.0 * np.log10(rms + _EPS_RMS)
            flatness = librosa.feature.spectral_flatness(S=mag)
            centroid = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=self.n_fft) / (0.5 * sr)
            frames[k0:k1, c:c + _N_CHROMA] = chroma.T
            frames[k0:k1, c + _N_CHROMA + n_bands:] = np.vstack([rms_db, flatness, centroid]).T
        # librosa's spectral_contrast converts peaks and valleys to dB with a
        # floor 80 dB below the loudest of the whole file, so the conversion
        # waits for the last block: the result is librosa's whole-file contrast.
        frames[:, c + _N_CHROMA:c + _N_CHROMA + n_bands] = (
            librosa.power_to_db(peaks) - librosa.power_to_db(valleys)).T
        del peaks, valleys
        mfcc = frames[:, :m].T
        if n_frames >= 3:
            width = min(9, n_frames if n_frames % 2 else n_frames - 1)
            frames[:, m:2 * m] = librosa.feature.delta(mfcc, width=width, order=1).T
            frames[:, 2 * m:3 * m] = librosa.feature.delta(mfcc, width=width, order=2).T
        else:
            frames[:, m:3 * m] = 0.0
        if not np.all(np.isfinite(frames)):
            # librosa keeps silence finite (amin floors); a non-finite value here is a bug, not data
            bad = np.argwhere(~np.isfinite(frames))[0]
            raise EncoderError(
                f"DSP descriptors produced a non-finite value at frame {bad[0]}, column {bad[1]}"
            )
        frame_times = librosa.frames_to_time(np.arange(n_frames), sr=sr, hop_length=self.hop_length)
        return frames, np.asarray(frame_times, dtype=np.float64)

    def encode(
        self, y: np.ndarray, sr: int, segments: Any, *, progress: Optional[ProgressCallback] = None
    ) -> np.ndarray:
        """One descriptor vector per segment.

        Parameters
        ----------
        y : np.ndarray, float (n,)
            Mono signal.
        sr : int
            Sample rate of ``y`` in Hz.
        segments : object
            ``start``/``end`` arrays in seconds from file start.
        progress : callable, optional
            ``progress("encode", done, total)``: 0/2, 1/2 after frame
            analysis, 2/2 after pooling.

        Returns
        -------
        np.ndarray, float32 (n_segments, dim)
            Layout in the class docstring; always finite.
        """
        segment_bounds(segments)  # fail fast before the analysis
        report(progress, "encode", 0, 2)
        frames, times = self.frame_features(y, sr)
        report(progress, "encode", 1, 2)
        m = self.n_mfcc
        mean, std = pool_frames(frames, times, segments, with_std=True)
        out = np.concatenate([mean[:, :m], std[:, :m], mean[:, m:]], axis=1).astype(np.float32)
        report(progress, "encode", 2, 2)
        return out

    def provenance(self) -> dict:
        """Settings, layout and versions as a JSON-able dict."""
        return {
            "encoder": "dsp",
            "sample_rate": self.sr,
            "n_mfcc": self.n_mfcc,
            "hop_length": self.hop_length,
            "n_fft": self.n_fft,
            "hop_seconds": self.hop_length / self.sr,
            "window_seconds": self.n_fft / self.sr,
            "pooling": "mean (mfcc also std)",
            "dim": self.dim,
            "blocks": [{"name": name, "size": size} for name, size in self._blocks()],
            "versions": _versions("librosa", "numpy"),
        }

    def get_params(self) -> dict:
        """Constructor options, for hashing and provenance."""
        return {"sr": self.sr, "n_mfcc": self.n_mfcc, "hop_length": self.hop_length, "n_fft": self.n_fft}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"DSPEncoder({params})"


#: Share of a band's bins averaged as its peak (top) and valley (bottom), librosa's default.
_CONTRAST_QUANTILE = 0.02


def _contrast_bands(sr: int, n_fft: int, n_bands: int) -> list[tuple[np.ndarray, int]]:
    """Bin mask and quantile count of each spectral-contrast octave band.

    The bands of ``librosa.feature.spectral_contrast(fmin=_CONTRAST_FMIN)``:
    band 0 is [0, fmin], band k [fmin 2^(k-1), fmin 2^k] plus the bin just
    below, the last runs to Nyquist; every band but the last drops its top bin.
    """
    freq = np.fft.rfftfreq(n_fft, 1.0 / sr)
    octa = np.zeros(n_bands + 2)
    octa[1:] = _CONTRAST_FMIN * (2.0 ** np.arange(0, n_bands + 1))
    out = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        band = (freq >= f_low) & (freq <= f_high)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == n_bands:
            band[idx[-1] + 1:] = True
        count = int(max(np.rint(_CONTRAST_QUANTILE * np.sum(band)), 1))
        rows = np.flatnonzero(band)
        if k < n_bands:
            rows = rows[:-1]
        out.append((rows, count))
    return out


def _contrast_peaks_valleys(mag: np.ndarray, bands: list) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the top and of the bottom quantile of magnitudes per band and frame, ``(n_bands + 1, n)`` each."""
    peaks = np.empty((len(bands), mag.shape[1]), dtype=np.float64)
    valleys = np.empty_like(peaks)
    for k, (rows, count) in enumerate(bands):
        ordered = np.sort(mag[rows], axis=0)
        valleys[k] = np.mean(ordered[:count], axis=0)
        peaks[k] = np.mean(ordered[-count:], axis=0)
    return peaks, valleys
