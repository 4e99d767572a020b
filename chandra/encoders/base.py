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
    """Resample a mono float signal (soxr, high quality), as librosa does.

    The result equals ``librosa.resample(y, orig_sr=..., target_sr=...)``
    (librosa's default ``res_type="soxr_hq"``) sample for sample, including
    its length ``ceil(n * target_sr / orig_sr)`` (a short soxr output is
    padded with zeros, a long one cut), but calls soxr directly: importing
    librosa costs about two seconds, which a neural encoder would otherwise
    pay before its first forward pass.

    Parameters
    ----------
    y : np.ndarray, float (n,)
    orig_sr, target_sr : int
        Sample rates in Hz.

    Returns
    -------
    np.ndarray, float32 (m,), m = ceil(n * target_sr / orig_sr)
    """
    if int(orig_sr) == int(target_sr):
        return np.asarray(y, dtype=np.float32)
    import soxr

    x = np.ascontiguousarray(y, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample takes a mono signal (1-D), got shape {x.shape}")
    length = int(np.ceil(x.size * (float(target_sr) / int(orig_sr))))
    out = np.asarray(soxr.resample(x, int(orig_sr), int(target_sr), quality="soxr_hq"), dtype=np.float32)
    if out.size > length:
        return out[:length]
    if out.size < length:
        return np.concatenate([out, np.zeros(length - out.size, dtype=np.float32)])
    return out


def _versions(*names: str) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out

