"""What every encoder shares: the :class:`Encoder` protocol, signal checks,
resampling and package versions for provenance."""

from __future__ import annotations

from importlib import metadata
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np

from chandra.errors import EncoderError
from chandra.progress import ProgressCallback

__all__ = ["Encoder", "resample"]


@runtime_checkable
class Encoder(Protocol):
    """What every encoder offers.

    Attributes
    ----------
    name : str
        Short encoder name recorded in provenance (``"dsp"``, ``"wav2vec2"``).
    """

    name: str

    def encode(
        self, y: np.ndarray, sr: int, segments: Any, *, progress: Optional[ProgressCallback] = None
    ) -> np.ndarray:
        """Return float32 ``(n_segments, dim)`` vectors, row i for segment i."""
        ...

    def provenance(self) -> dict:
        """Return a JSON-able description of the encoder and its settings."""
        ...



def _check_signal(y: Any, sr: Any) -> tuple[np.ndarray, int]:
    y = np.asarray(y)
    if y.ndim != 1:
        raise EncoderError(f"encoders need a mono 1-D signal, got shape {y.shape}")
    if y.size == 0:
        raise EncoderError("encoders need a non-empty signal")
    if not np.issubdtype(y.dtype, np.floating):
        raise EncoderError(f"encoders need a floating-point signal, got dtype {y.dtype}")
    if not np.all(np.isfinite(y)):
        raise EncoderError("the signal contains NaN or infinite samples")
    try:
        sr_int = int(sr)
    except (TypeError, ValueError) as exc:
        raise EncoderError(f"sample rate must be a positive integer, got {sr!r}") from exc
    if sr_int <= 0 or sr_int != sr:
        raise EncoderError(f"sample rate must be a positive integer, got {sr!r}")
    return y.astype(np.float32, copy=False), sr_int



def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float signal with librosa (soxr high quality).

    Parameters
    ----------
    y : np.ndarray, float (n,)
    orig_sr, target_sr : int
        Sample rates in Hz.

    Returns
    -------
    np.ndarray, float32 (m,), m ≈ n * target_sr / orig_sr
    """
    if int(orig_sr) == int(target_sr):
        return np.asarray(y, dtype=np.float32)
    import librosa

    out = librosa.resample(np.asarray(y, dtype=np.float32), orig_sr=int(orig_sr), target_sr=int(target_sr))
    return np.asarray(out, dtype=np.float32)



def _versions(*names: str) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out

