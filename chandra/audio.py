"""Audio loading: any common format, any rate, bit depth and channel count,
returned as a mono float32 signal.

Decoding uses libsndfile (through ``soundfile``), which reads WAV, FLAC, OGG
Vorbis/Opus, AIFF and MP3. Nothing is decoded by spawning external programs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from chandra.errors import AudioError, first_line

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "load_audio",
    "validate_signal",
    "summarize_signal",
    "SILENCE_PEAK",
]

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".mp3")

#: Peak amplitude below which a signal counts as silence (about -80 dBFS).
SILENCE_PEAK = 1e-4


def load_audio(path: str | os.PathLike, *, sr: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode an audio file to a float32 signal.

    Parameters
    ----------
    path : str or path-like
        A ``.wav``, ``.flac``, ``.ogg``, ``.aiff``/``.aif`` or ``.mp3`` file.
    sr : int, optional
        Target sample rate in Hz; the file's own rate when ``None``.
    mono : bool
        Mix all channels down to one (mean of channels).

    Returns
    -------
    y : np.ndarray, float32, shape (n_samples,) or (n_channels, n_samples)
        Samples in [-1, 1].
    sr : int
        Sample rate of ``y`` in Hz.

    Raises
    ------
    AudioError
        Missing, empty, unsupported or undecodable file.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes)")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise AudioError(
            f"{path}: unsupported extension '{ext or '(none)'}'; "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"{path}: cannot decode as audio ({first_line(exc)})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file decodes to 0 samples")
    y = data.mean(axis=1) if mono else data.T
    y = np.ascontiguousarray(y, dtype=np.float32)
    if sr is not None and int(sr) != int(file_sr):
        import librosa

        y = librosa.resample(y, orig_sr=int(file_sr), target_sr=int(sr), res_type="soxr_hq").astype(np.float32)
        file_sr = int(sr)
    return y, int(file_sr)


def validate_signal(y: np.ndarray, sr: int, *, min_duration: float = 0.5, name: str = "audio") -> None:
    """Raise :class:`AudioError` when a signal cannot be trained on.

    Checks, in order: non-finite samples (NaN or inf), length shorter than
    ``min_duration`` seconds, and silence (peak below :data:`SILENCE_PEAK`).
    """
    y = np.asarray(y)
    if y.size == 0:
        raise AudioError(f"{name}: no samples")
    bad = ~np.isfinite(y)
    if bad.any():
        first = int(np.flatnonzero(bad.reshape(-1))[0])
        raise AudioError(
            f"{name}: {int(bad.sum())} non-finite samples (NaN or inf), first at {first / sr:.3f} s"
        )
    duration = y.shape[-1] / float(sr)
    if duration < min_duration:
        raise AudioError(f"{name}: only {duration:.2f} s of audio; at least {min_duration:.2f} s is needed")
    peak = float(np.max(np.abs(y)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"{name}: the signal is silent (peak {peak:.2g}, below {SILENCE_PEAK:g})")


def summarize_signal(y: np.ndarray, sr: int) -> dict:
    """Scalars describing a signal: duration (s), sample rate, peak, RMS (dBFS)."""
    y = np.asarray(y, dtype=np.float64)
    rms = float(np.sqrt(np.mean(y**2))) if y.size else 0.0
    return {
        "duration": y.shape[-1] / float(sr),
        "sample_rate": int(sr),
        "n_samples": int(y.shape[-1]),
        "peak": float(np.max(np.abs(y))) if y.size else 0.0,
        "rms_db": float(20 * np.log10(max(rms, 1e-10))),
    }
