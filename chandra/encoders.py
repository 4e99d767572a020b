"""Segment encoders: one feature vector per onset segment.

Two encoders share one interface (:class:`Encoder`):

* :class:`DSPEncoder` (``"dsp"``, the default) — librosa descriptors computed
  once over the whole signal, then pooled per segment. Needs no weights.
* :class:`Wav2Vec2Encoder` (``"wav2vec2"``; aliases ``"hubert"``, ``"wavlm"``,
  ``"mert"``) — hidden states of a self-supervised speech/music transformer
  loaded with ``transformers`` from a local directory or the local Hugging Face
  cache only (never the network). The whole file is run in overlapping chunks,
  several chunks per forward pass; segment vectors are means of the frames
  whose centre lies inside the segment.

Both encoders see the whole signal once and pool afterwards, so the cost does
not grow with the number of segments and a short segment still gets context.

Segments are duck-typed: any object with float arrays ``start`` and ``end``
(seconds from file start) of equal length works, e.g.
:class:`chandra.segment.Segments`.

Frame-to-segment rule (both encoders): frame ``i`` has a centre time
``c_i`` in seconds; segment ``[start, end)`` takes the frames with
``start <= c_i < end``; when there are none (a segment shorter than a frame
hop) it takes the single frame whose centre is nearest the segment midpoint.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from pathlib import Path
from typing import Any, Optional, Protocol, runtime_checkable

import numpy as np

from chandra.errors import EncoderError, ModelFormatError, WeightsNotFoundError, first_line
from chandra.progress import ProgressCallback, report

#: Where a neural encoder runs: "auto" = a CUDA GPU when torch sees one (and
#: the model is not quantised), else the CPU.
DEVICES = ("auto", "cpu", "cuda")
#: Neural encoder precision: "none" (float32) or "int8" (dynamic int8
#: quantisation of the linear maps, CPU only; see :class:`Wav2Vec2Encoder`).
QUANTIZE_MODES = ("none", "int8")
#: Transient memory of one chunk second through a wav2vec2-base-size model
#: (float32 activations of the convolutional front end dominate; measured on
#: CPU as ~0.5 GB per extra 20 s chunk), used to size batches on a GPU.
_BYTES_PER_CHUNK_SECOND = 25e6
_MAX_GPU_BATCH = 32

__all__ = [
    "Encoder",
    "DSPEncoder",
    "Wav2Vec2Encoder",
    "ENCODER_NAMES",
    "DEVICES",
    "QUANTIZE_MODES",
    "resolve_device",
    "make_encoder",
    "available_encoders",
    "segment_bounds",
    "pool_frames",
    "resample",
]


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


# ---------------------------------------------------------------------------
# shared helpers


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


def segment_bounds(segments: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated segment start and end times.

    Parameters
    ----------
    segments : object
        Anything with array-like attributes ``start`` and ``end`` (seconds from
        file start), equal length.

    Returns
    -------
    start, end : np.ndarray, float64 (n_segments,)
        Seconds from file start.

    Raises
    ------
    EncoderError
        Missing attributes, unequal lengths, non-finite values, negative
        times or ``end < start``.
    """
    try:
        start = np.asarray(segments.start, dtype=np.float64).reshape(-1)
        end = np.asarray(segments.end, dtype=np.float64).reshape(-1)
    except AttributeError as exc:
        raise EncoderError(
            "segments must have 'start' and 'end' arrays (seconds from file start); "
            f"got {type(segments).__name__}"
        ) from exc
    if start.shape != end.shape:
        raise EncoderError(
            f"segments have {start.size} start times but {end.size} end times"
        )
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(end))):
        raise EncoderError("segment start/end times must be finite seconds")
    if np.any(start < 0):
        raise EncoderError(
            "segment start times must be seconds from file start (>= 0); "
            f"smallest is {start.min():.6g}"
        )
    bad = np.flatnonzero(end < start)
    if bad.size:
        i = int(bad[0])
        raise EncoderError(
            f"segment {i} ends before it starts ({start[i]:.6g} s > {end[i]:.6g} s)"
        )
    return start, end


def _frame_ranges(
    frame_times: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Half-open frame index ranges ``[lo, hi)`` per segment, never empty."""
    n_frames = frame_times.size
    lo = np.searchsorted(frame_times, start, side="left")
    hi = np.searchsorted(frame_times, end, side="left")
    empty = hi <= lo
    if np.any(empty):
        mid = 0.5 * (start[empty] + end[empty])
        right = np.clip(np.searchsorted(frame_times, mid, side="left"), 0, n_frames - 1)
        left = np.clip(right - 1, 0, n_frames - 1)
        nearest = np.where(
            np.abs(frame_times[left] - mid) <= np.abs(frame_times[right] - mid), left, right
        )
        lo = lo.copy()
        hi = hi.copy()
        lo[empty] = nearest
        hi[empty] = nearest + 1
    return lo, hi


#: Frames per prefix-sum block in :func:`pool_frames` (bounds its memory).
_POOL_BLOCK = 16384


def pool_frames(
    frames: np.ndarray,
    frame_times: np.ndarray,
    segments: Any,
    *,
    with_std: bool = False,
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Mean (and optionally standard deviation) of frames inside each segment.

    Parameters
    ----------
    frames : np.ndarray, (n_frames, dim)
        Frame-level features.
    frame_times : np.ndarray, float64 (n_frames,)
        Centre time of each frame in seconds from file start, increasing.
    segments : object
        With ``start`` and ``end`` arrays in seconds (see :func:`segment_bounds`).
    with_std : bool
        Also return the per-segment population standard deviation.

    Returns
    -------
    mean : np.ndarray, float64 (n_segments, dim)
    std : np.ndarray, float64 (n_segments, dim) or None
        Zero for segments pooled from a single frame.

    Notes
    -----
    A segment takes the frames whose centre lies in ``[start, end)``; a segment
    containing no frame centre takes the frame nearest its midpoint. Sums are
    prefix sums in float64 over blocks of consecutive segments, so cost is
    O(n_frames + n_segments) whatever the segment lengths, and memory is
    bounded by the block, not the file.
    """
    frames = np.asarray(frames)
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] != frame_times.size:
        raise EncoderError(
            f"frames {frames.shape} and frame_times {frame_times.shape} do not match"
        )
    if frames.shape[0] == 0:
        raise EncoderError("no frames to pool (signal shorter than one analysis frame?)")
    start, end = segment_bounds(segments)
    dim = frames.shape[1]
    if start.size == 0:
        empty = np.zeros((0, dim), dtype=np.float64)
        return empty, (empty.copy() if with_std else None)
    lo, hi = _frame_ranges(frame_times, start, end)
    n_seg = start.size
    mean = np.empty((n_seg, dim), dtype=np.float64)
    std = np.empty((n_seg, dim), dtype=np.float64) if with_std else None
    # Prefix sums over groups of segments spanning at most _POOL_BLOCK frames:
    # float64 sums of a whole hour of 768-D frames would need 2 x 1.1 GB.
    i = 0
    while i < n_seg:
        a, b, j = int(lo[i]), int(hi[i]), i + 1
        while j < n_seg and max(b, int(hi[j])) - min(a, int(lo[j])) <= _POOL_BLOCK:
            a, b, j = min(a, int(lo[j])), max(b, int(hi[j])), j + 1
        x = frames[a:b].astype(np.float64)
        csum = np.zeros((x.shape[0] + 1, dim), dtype=np.float64)
        np.cumsum(x, axis=0, out=csum[1:])
        l, h = lo[i:j] - a, hi[i:j] - a
        count = (h - l).astype(np.float64)[:, None]
        mean[i:j] = (csum[h] - csum[l]) / count
        if with_std:
            csq = np.zeros_like(csum)
            np.cumsum(x * x, axis=0, out=csq[1:])
            var = (csq[h] - csq[l]) / count - mean[i:j] * mean[i:j]
            # prefix-sum variance can dip slightly below zero by cancellation
            block_std = np.sqrt(np.maximum(var, 0.0))
            block_std[(h - l) == 1] = 0.0  # exact, rather than the rounding residue of the prefix sums
            std[i:j] = block_std
        i = j
    return mean, std


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
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ---------------------------------------------------------------------------
# DSP encoder


_CONTRAST_FMIN = 200.0
_MAX_CONTRAST_BANDS = 6
_N_CHROMA = 12
_N_MELS = 128
_EPS_RMS = 1e-5


class DSPEncoder:
    """librosa descriptors pooled per segment; works offline, the default.

    All descriptors come from one STFT of the whole signal (resampled to
    ``sr`` first when needed); frame ``t`` is centred at ``t * hop_length / sr``
    seconds (librosa ``center=True``). Per segment the frames are pooled as
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

    def __init__(self, *, sr: int = 22050, n_mfcc: int = 20, hop_length: int = 512, n_fft: int = 2048):
        self.sr = sr
        self.n_mfcc = n_mfcc
        self.hop_length = hop_length
        self.n_fft = n_fft
        for label, value in (("sr", sr), ("n_mfcc", n_mfcc), ("hop_length", hop_length), ("n_fft", n_fft)):
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

        y, sr = _check_signal(y, sr)
        y = resample(y, sr, self.sr)
        sr = self.sr
        mag = np.abs(librosa.stft(y, n_fft=self.n_fft, hop_length=self.hop_length, center=True))
        power = mag.astype(np.float64) ** 2
        n_frames = mag.shape[1]

        mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=self.n_fft, n_mels=_N_MELS)
        # absolute dB (no top_db) so a segment's MFCCs do not depend on the loudest moment elsewhere
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=1.0, top_db=None), n_mfcc=self.n_mfcc)
        if n_frames >= 3:
            width = min(9, n_frames if n_frames % 2 else n_frames - 1)
            d1 = librosa.feature.delta(mfcc, width=width, order=1)
            d2 = librosa.feature.delta(mfcc, width=width, order=2)
        else:
            d1 = np.zeros_like(mfcc)
            d2 = np.zeros_like(mfcc)
        # tuning=0 skips pitch-tuning estimation, which warns on silence and varies with the file
        chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=self.n_fft, tuning=0.0, n_chroma=_N_CHROMA)
        contrast = librosa.feature.spectral_contrast(
            S=mag, sr=sr, n_fft=self.n_fft, fmin=_CONTRAST_FMIN, n_bands=self.n_contrast_bands
        )
        rms = librosa.feature.rms(S=mag, frame_length=self.n_fft)
        rms_db = 20.0 * np.log10(rms + _EPS_RMS)
        flatness = librosa.feature.spectral_flatness(S=mag)
        centroid = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=self.n_fft) / (0.5 * sr)

        frames = np.vstack([mfcc, d1, d2, chroma, contrast, rms_db, flatness, centroid]).T
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


# ---------------------------------------------------------------------------
# transformer encoder


def _conv_output_length(n_samples: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Frames produced by the conv front end for ``n_samples`` (as transformers computes it)."""
    n = int(n_samples)
    for k, s in zip(kernels, strides):
        n = (n - k) // s + 1
    return max(n, 0)


def _receptive_field(kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Samples seen by one conv-front-end frame."""
    rf = 1
    jump = 1
    for k, s in zip(kernels, strides):
        rf += (k - 1) * jump
        jump *= s
    return rf


def _hf_cache_dir(cache_dir: Optional[str | os.PathLike]) -> str:
    if cache_dir is not None:
        return str(Path(cache_dir).expanduser())
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return str(Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub")


# "name" or "org/name" as the hub accepts them; anything else can only be a path
#: Largest model ``config.json`` read (real ones are a few kilobytes).
_MAX_CONFIG_BYTES = 16 * 1024 * 1024
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")


def _looks_like_hub_id(model: str) -> bool:
    return bool(_HUB_ID.match(model)) and ".." not in model


class Wav2Vec2Encoder:
    """Transformer hidden states (wav2vec2, HuBERT, WavLM, MERT) pooled per segment.

    The model is loaded with ``transformers.AutoModel`` and
    ``AutoFeatureExtractor`` from a local directory or, for a hub name such as
    ``"facebook/wav2vec2-base"``, from the local Hugging Face cache only
    (``local_files_only=True``): it never touches the network.

    Processing: the signal is resampled to the feature extractor's
    ``sampling_rate`` and, when the extractor normalises (``do_normalize``),
    scaled to zero mean and unit variance over the *whole file* — so chunk
    boundaries do not change the gain. It is cut into chunks of
    ``chunk_seconds`` overlapping by ``overlap_seconds``, all of the same
    length (the last chunk is anchored at the file end, padded by less than
    one hop), so no padding mask is needed. ``batch_size`` chunks go through
    one forward pass with ``output_hidden_states=True``; ``hidden_states[layer]``
    is kept. When stitching, each overlap is split at its middle and the
    frames on the far side of the split are dropped, keeping every frame from
    the chunk where it has the most context.

    Frame ``i`` covers samples ``[i*hop, i*hop + rf)`` where ``hop`` is the
    product of ``config.conv_stride`` (320 samples = 20 ms at 16 kHz for
    wav2vec2-base) and ``rf`` the conv receptive field (400 samples = 25 ms);
    its centre time is ``(i*hop + rf/2) / sample_rate`` seconds.

    Parameters
    ----------
    model : str or path
        Hub name (looked up in the local cache only) or a directory holding
        ``config.json``, weights and ``preprocessor_config.json``.
    layer : int
        Index into ``hidden_states`` (0 = input of the first transformer layer,
        ``num_hidden_layers`` = last; negative counts from the end, -1 = last).
    chunk_seconds : float
        Chunk length in seconds (rounded down to whole hops).
    overlap_seconds : float
        Overlap between consecutive chunks in seconds (rounded to whole hops);
        must be smaller than ``chunk_seconds``.
    batch_size : int or None
        Chunks per forward pass; None (default) sizes it for the device: 2
        on the CPU (2 chunks of 15 s keep the transient memory of a
        full-size model near 1 GB; larger CPU batches are no faster,
        measured: 4 x 20 s and 1 x 20 s both RTF ~0.08 on 2 cores, but cost
        ~0.5 GB per extra 20 s chunk in the convolutional feature encoder),
        and on a GPU as many chunks as fit in half its free memory (at
        most 32).
    trust_remote_code : bool
        Allow models whose code lives in the model repository (MERT needs it).
    device : {"auto", "cpu", "cuda"} or str
        torch device: ``"auto"`` (default) runs on a CUDA GPU when torch sees
        one and the model is not quantised, else on the CPU; ``"cuda"`` (or
        ``"cuda:N"``) without a usable GPU is an error, not a silent CPU run.
    quantize : {"none", "int8"}
        ``"int8"``: dynamic int8 quantisation on the CPU
        (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations
        quantised per batch) of every linear layer, and of the convolutional
        feature encoder's layers after the first, which run as the same
        linear map over their input windows (mathematically the convolution;
        without them the front end, half the compute of wav2vec2-base,
        would stay float32). Faster on CPUs, slightly different features
        (measured in benchmarks/RESULTS.md); recorded in :meth:`provenance`
        as ``quantize``, so a vocabulary fitted on float32 features and
        applied to int8 ones is flagged (``VOCAB_ENCODER_MISMATCH``, warning).
    cache_dir : str or path, optional
        Hugging Face hub cache to look in (default: ``HF_HUB_CACHE``).

    Attributes
    ----------
    model_, feature_extractor_, config_ :
        Set by :meth:`load` (called on first :meth:`encode`).
    """

    name = "wav2vec2"

    def __init__(
        self,
        *,
        model: str | os.PathLike = "facebook/wav2vec2-base",
        layer: int = -1,
        chunk_seconds: float = 15.0,
        overlap_seconds: float = 1.0,
        batch_size: Optional[int] = None,
        trust_remote_code: bool = False,
        device: str = "auto",
        quantize: str = "none",
        cache_dir: Optional[str | os.PathLike] = None,
    ):
        self.model = os.fspath(model)
        self.layer = layer
        self.chunk_seconds = chunk_seconds
        self.overlap_seconds = overlap_seconds
        self.batch_size = batch_size
        self.trust_remote_code = trust_remote_code
        self.device = device
        self.quantize = quantize
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        if not self.model:
            raise EncoderError("Wav2Vec2Encoder needs a model name or directory")
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise EncoderError(f"layer must be an integer, got {layer!r}")
        if batch_size is not None and not (
            isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size >= 1
        ):
            raise EncoderError(f"batch_size must be a positive integer or None (sized for the device), "
                               f"got {batch_size!r}")
        if quantize not in QUANTIZE_MODES:
            raise EncoderError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {quantize!r}")
        if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
            raise EncoderError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        if quantize == "int8" and device.startswith("cuda"):
            raise EncoderError("quantize='int8' runs on the CPU only (torch's dynamic quantisation); "
                               "use device='cpu' or 'auto', or quantize='none' on the GPU")
        if not (math.isfinite(chunk_seconds) and chunk_seconds > 0):
            raise EncoderError(f"chunk_seconds must be positive, got {chunk_seconds!r}")
        if not (math.isfinite(overlap_seconds) and 0 <= overlap_seconds < chunk_seconds):
            raise EncoderError(
                f"overlap_seconds must be in [0, chunk_seconds={chunk_seconds}), got {overlap_seconds!r}"
            )
        self.model_ = None
        self.feature_extractor_ = None
        self.config_ = None
        self.resolved_path_: Optional[str] = None
        self.device_: Optional[str] = None
        self.batch_size_: Optional[int] = None
        self.quantized_: dict = {}

    # -- loading ------------------------------------------------------------

    def _missing(self, where: str, detail: str, *, cache: Optional[str] = None) -> WeightsNotFoundError:
        """The one error for absent weights; ``cache`` is the hub cache for hub names, None for paths."""
        name = self.model
        if cache is None:
            how = (
                "A model directory must hold config.json, the weights (model.safetensors or "
                "pytorch_model.bin) and preprocessor_config.json, as `save_pretrained(DIR)` writes them "
                "for the model and its feature extractor; make one on a networked machine (e.g. after "
                "`huggingface-cli download facebook/wav2vec2-base`), copy it here and pass model=DIR"
            )
        else:
            folder = "models--" + name.replace("/", "--")
            how = (
                f"To supply weights: on a networked machine run `huggingface-cli download {name}` and copy "
                f"its cache folder {folder} into {cache} (or point HF_HUB_CACHE at a copy), "
                f"or there call `save_pretrained(DIR)` on the model and its feature extractor, copy DIR here "
                f"and pass model=DIR"
            )
        return WeightsNotFoundError(
            f"encoder weights for '{name}' not found: {detail}. Lookup was local-only "
            f"(local_files_only=True, as with HF_HUB_OFFLINE=1; the network is never used) in {where}. {how}.",
            parameter="model",
        )

    def _resolve(self) -> tuple[str, str]:
        """Return (path or hub name to load, human description of where)."""
        local = Path(self.model).expanduser()
        if local.is_dir():
            if not (local / "config.json").is_file():
                raise self._missing(
                    f"local directory {local.resolve()}", "the directory has no config.json"
                )
            return str(local), f"local directory {local.resolve()}"
        if local.exists():
            raise self._missing(
                f"local path {local.resolve()}", "the path is a file, not a model directory"
            )
        if not _looks_like_hub_id(self.model):
            raise self._missing(f"local path {local.absolute()}", "no such directory")
        cache = _hf_cache_dir(self.cache_dir)
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(self.model, "config.json", cache_dir=cache)
        except ValueError as exc:  # not a valid repo id
            raise self._missing(
                f"the Hugging Face cache {cache}",
                f"'{self.model}' is neither a directory nor a valid hub name ({exc})",
                cache=cache,
            ) from exc
        if not isinstance(found, str):
            raise self._missing(
                f"the Hugging Face cache {cache}",
                f"it is neither a local directory (checked {Path(self.model).absolute()}) nor in the local cache",
                cache=cache,
            )
        return self.model, f"the Hugging Face cache {cache}"

    def _check_remote_code(self, source: str, where: str) -> None:
        """Refuse early and clearly when the config needs repository code."""
        if Path(source).is_dir():
            config_path = Path(source) / "config.json"
        else:
            from huggingface_hub import try_to_load_from_cache

            config_path = Path(try_to_load_from_cache(source, "config.json", cache_dir=_hf_cache_dir(self.cache_dir)))
        from chandra import safejson

        try:
            raw = safejson.load(config_path, max_bytes=_MAX_CONFIG_BYTES)
        except ModelFormatError as exc:
            raise EncoderError(f"cannot read model config: {exc}") from None
        model_type = raw.get("model_type") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not (model_type is None or isinstance(model_type, str)):
            raise EncoderError(f"model config {config_path} is not a JSON object with a text 'model_type'")
        from transformers import CONFIG_MAPPING

        custom = "auto_map" in raw and model_type not in CONFIG_MAPPING
        if custom and not self.trust_remote_code:
            raise EncoderError(
                f"model '{self.model}' (model_type {model_type!r}, from {where}) needs code from its "
                f"repository (MERT models do); re-run with trust_remote_code=True if you trust that code",
                parameter="trust_remote_code",
            )

    def load(self) -> "Wav2Vec2Encoder":
        """Load model, feature extractor and config (once; later calls are free).

        Returns
        -------
        self

        Raises
        ------
        WeightsNotFoundError
            The directory or cached hub files are missing or incomplete.
        EncoderError
            Remote code needed but not allowed, unsupported architecture
            (no conv front end), or ``layer`` out of range.
        """
        if self.model_ is not None:
            return self
        source, where = self._resolve()
        self._check_remote_code(source, where)
        from transformers import AutoFeatureExtractor, AutoModel

        kwargs = {"local_files_only": True, "trust_remote_code": bool(self.trust_remote_code)}
        if self.cache_dir is not None:
            kwargs["cache_dir"] = self.cache_dir
        try:
            with _quiet_transformers_progress():
                model = AutoModel.from_pretrained(source, **kwargs)
        except OSError as exc:
            raise self._missing(
                where, f"loading the model failed ({first_line(exc)})", cache=None if Path(source).is_dir() else _hf_cache_dir(self.cache_dir)
            ) from exc
        except ValueError as exc:
            raise EncoderError(f"cannot load model '{self.model}' from {where}: {first_line(exc)}") from exc
        try:
            extractor = AutoFeatureExtractor.from_pretrained(source, **kwargs)
        except OSError as exc:
            raise self._missing(
                where,
                f"the feature extractor (preprocessor_config.json) is missing ({first_line(exc)})",
                cache=None if Path(source).is_dir() else _hf_cache_dir(self.cache_dir),
            ) from exc
        config = model.config
        strides = tuple(int(s) for s in getattr(config, "conv_stride", ()) or ())
        kernels = tuple(int(k) for k in getattr(config, "conv_kernel", ()) or ())
        if not strides or len(strides) != len(kernels):
            raise EncoderError(
                f"model '{self.model}' (model_type {config.model_type!r}) has no convolutional "
                "front end (config.conv_stride/conv_kernel); only wav2vec2-style audio models are supported"
            )
        sampling_rate = getattr(extractor, "sampling_rate", None)
        if not sampling_rate:
            raise EncoderError(f"feature extractor of '{self.model}' declares no sampling_rate")
        self._hop = int(np.prod(strides))
        self._rf = _receptive_field(kernels, strides)
        self._kernels, self._strides = kernels, strides
        self._sampling_rate = int(sampling_rate)
        self._n_hidden = int(config.num_hidden_layers) + 1
        self._effective_layer = self._validate_layer(self.layer, self._n_hidden)
        model.eval()
        device = resolve_device(self.device, quantize=self.quantize)
        if self.quantize == "int8":
            model, self.quantized_ = _quantize_int8(model)
        try:
            model.to(device)
        except (RuntimeError, AssertionError, ValueError) as exc:
            # torch reports an unusable device as AssertionError ("not compiled with CUDA") or RuntimeError
            raise EncoderError(f"cannot run the encoder on device {self.device!r}: {first_line(exc)}") from exc
        self.device_ = device
        self.batch_size_ = self.batch_size if self.batch_size is not None else _batch_for(
            device, self.chunk_seconds, getattr(config, "conv_dim", (512,)))
        self.model_, self.feature_extractor_, self.config_ = model, extractor, config
        self.resolved_path_ = source
        return self

    def _validate_layer(self, layer: int, n_hidden: int) -> int:
        if not -n_hidden <= layer < n_hidden:
            raise EncoderError(
                f"layer {layer} is out of range for '{self.model}', which has {n_hidden} hidden states "
                f"(embedding output + {n_hidden - 1} transformer layers): valid layers are "
                f"0..{n_hidden - 1} or -{n_hidden}..-1"
            )
        return int(layer) % n_hidden

    # -- geometry -----------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """Model input rate in Hz (loads the model)."""
        self.load()
        return self._sampling_rate

    @property
    def hop_seconds(self) -> float:
        """Seconds between frames (loads the model)."""
        self.load()
        return self._hop / self._sampling_rate

    @property
    def dim(self) -> int:
        """Hidden size = vector dimension (loads the model)."""
        self.load()
        return int(self.config_.hidden_size)

    @property
    def effective_layer(self) -> int:
        """Non-negative index into ``hidden_states`` (loads the model)."""
        self.load()
        return self._effective_layer

    def n_frames(self, n_samples: int) -> int:
        """Frames the model produces for ``n_samples`` at its own sample rate."""
        self.load()
        return _conv_output_length(n_samples, self._kernels, self._strides)

    def chunk_plan(self, n_samples: int) -> tuple[int, list[int]]:
        """Chunk length and start offsets (samples, at the model rate).

        Returns
        -------
        chunk_len : int
            Samples per chunk (all chunks equal).
        starts : list[int]
            Start sample of each chunk, multiples of the hop; the last chunk
            may run past the signal end by less than one hop (zero padding).
        """
        self.load()
        hop, sr = self._hop, self._sampling_rate
        chunk = max(int(self.chunk_seconds * sr) // hop * hop, self._rf + hop)
        overlap = int(round(self.overlap_seconds * sr / hop)) * hop
        step = chunk - overlap
        if step <= 0:
            raise EncoderError(
                f"overlap_seconds={self.overlap_seconds} leaves no step inside chunk_seconds={self.chunk_seconds} "
                f"at hop {hop / sr * 1000:g} ms"
            )
        if n_samples <= chunk:
            return max(n_samples, self._rf), [0]
        starts = list(range(0, n_samples - chunk, step))
        starts.append(-(-(n_samples - chunk) // hop) * hop)
        return chunk, starts

    # -- computation --------------------------------------------------------

    def encode_frames(
        self, y: np.ndarray, sr: int, *, progress: Optional[ProgressCallback] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states of the chosen layer for the whole signal.

        Parameters
        ----------
        y : np.ndarray, float (n,)
            Mono signal.
        sr : int
            Its sample rate in Hz (resampled to :attr:`sample_rate`).
        progress : callable, optional
            ``progress("encode", done, total)`` once per batch of chunks.

        Returns
        -------
        frames : np.ndarray, float32 (n_frames, dim)
            ``n_frames`` = :meth:`n_frames` of the resampled length (the
            count one unchunked pass would give).
        frame_times : np.ndarray, float64 (n_frames,)
            Frame centres in seconds from file start.
        """
        y, sr = _check_signal(y, sr)
        self.load()
        import torch

        # Memory matters here (an hour at 16 kHz is 230 MB per copy), so the
        # signal is normalised in place, the tail is zero-padded per chunk
        # rather than by copying the file, and coverage is tracked with one
        # bool per frame instead of a NaN-filled float matrix.
        x = np.asarray(resample(y, sr, self._sampling_rate), dtype=np.float32)
        if x is y:
            x = x.copy()  # never normalise the caller's array in place
        if getattr(self.feature_extractor_, "do_normalize", False):
            # same formula as Wav2Vec2FeatureExtractor, but over the whole file, not per chunk
            mean, std = float(x.mean(dtype=np.float64)), float(np.sqrt(x.var(dtype=np.float64) + 1e-7))
            x -= mean
            x /= std
        n = x.size
        total_frames = self.n_frames(max(n, self._rf))
        chunk, starts = self.chunk_plan(n)
        per_chunk = self.n_frames(chunk)
        hop = self._hop
        first = [s // hop for s in starts]
        # overlap split: chunk k keeps global frames [keep_lo[k], keep_hi[k])
        keep_lo = [0]
        for k in range(1, len(starts)):
            keep_lo.append((first[k] + first[k - 1] + per_chunk) // 2)
        keep_hi = keep_lo[1:] + [total_frames]

        out = np.empty((total_frames, self.dim), dtype=np.float32)
        covered = np.zeros(total_frames, dtype=bool)
        size = self.batch_size_
        batches = [list(range(i, min(i + size, len(starts)))) for i in range(0, len(starts), size)]
        report(progress, "encode", 0, len(batches))
        with torch.inference_mode():
            for b, idx in enumerate(batches):
                batch = np.zeros((len(idx), chunk), dtype=np.float32)
                for row, k in enumerate(idx):
                    piece = x[starts[k]: starts[k] + chunk]
                    batch[row, : piece.size] = piece
                inputs = torch.from_numpy(batch).to(self.device_)
                result = self.model_(inputs, output_hidden_states=True)
                hidden = result.hidden_states[self._effective_layer].float().cpu().numpy()
                del result
                if hidden.shape[1] != per_chunk:
                    raise EncoderError(
                        f"model '{self.model}' returned {hidden.shape[1]} frames for {chunk} samples; "
                        f"expected {per_chunk} from its conv_stride/conv_kernel"
                    )
                for row, k in enumerate(idx):
                    lo, hi = keep_lo[k], min(keep_hi[k], first[k] + per_chunk)
                    rows = hidden[row, lo - first[k] : hi - first[k]]
                    out[lo:hi] = rows
                    covered[lo:hi] = np.isfinite(rows).all(axis=1)
                report(progress, "encode", b + 1, len(batches))
        if not covered.all():
            missing = np.flatnonzero(~covered)
            raise EncoderError(
                f"{missing.size} of {total_frames} frames are missing or non-finite after stitching "
                f"(first at frame {missing[0]}); model '{self.model}', chunks {len(starts)}"
            )
        times = (np.arange(total_frames, dtype=np.float64) * hop + 0.5 * self._rf) / self._sampling_rate
        return out, times

    def encode(
        self, y: np.ndarray, sr: int, segments: Any, *, progress: Optional[ProgressCallback] = None
    ) -> np.ndarray:
        """Mean of the chosen layer's frames inside each segment.

        Parameters
        ----------
        y : np.ndarray, float (n,)
            Mono signal.
        sr : int
            Sample rate of ``y`` in Hz.
        segments : object
            ``start``/``end`` arrays in seconds from file start.
        progress : callable, optional
            ``progress("encode", done, total)`` once per batch of chunks.

        Returns
        -------
        np.ndarray, float32 (n_segments, hidden_size)
        """
        start, _ = segment_bounds(segments)
        if start.size == 0:
            _check_signal(y, sr)
            report(progress, "encode", 1, 1)
            return np.zeros((0, self.dim), dtype=np.float32)
        frames, times = self.encode_frames(y, sr, progress=progress)
        mean, _ = pool_frames(frames, times, segments)
        return mean.astype(np.float32)

    def provenance(self) -> dict:
        """Model, layer, geometry and versions as a JSON-able dict (loads the model)."""
        self.load()
        versions = _versions("torch", "transformers")
        local = Path(self.resolved_path_).is_dir()
        return {
            "encoder": "wav2vec2",
            "model": self.model,
            "model_path": str(Path(self.resolved_path_).resolve()) if local else None,
            "model_source": "local directory" if local else "huggingface cache",
            "model_type": self.config_.model_type,
            "layer": self.layer,
            "effective_layer": self._effective_layer,
            "n_hidden_states": self._n_hidden,
            "pooling": "mean",
            "sample_rate": self._sampling_rate,
            "hop_seconds": self._hop / self._sampling_rate,
            "receptive_field_seconds": self._rf / self._sampling_rate,
            "dim": self.dim,
            "chunk_seconds": self.chunk_seconds,
            "overlap_seconds": self.overlap_seconds,
            "batch_size": self.batch_size_,
            "batch_size_configured": self.batch_size,
            "normalisation": "zero mean, unit variance over the whole file"
            if getattr(self.feature_extractor_, "do_normalize", False)
            else "none",
            "trust_remote_code": bool(self.trust_remote_code),
            "device": str(self.device_),
            "device_configured": self.device,
            # Precision of the features: a vocabulary fitted at one precision
            # and applied at another is flagged (findings.vocabulary_findings).
            "quantize": self.quantize,
            **({"quantized_modules": dict(self.quantized_)} if self.quantized_ else {}),
            "versions": versions,
        }

    def get_params(self) -> dict:
        """Constructor options, for hashing and provenance."""
        return {
            "model": self.model,
            "layer": self.layer,
            "chunk_seconds": self.chunk_seconds,
            "overlap_seconds": self.overlap_seconds,
            "batch_size": self.batch_size,
            "trust_remote_code": self.trust_remote_code,
            "device": self.device,
            "quantize": self.quantize,
            "cache_dir": self.cache_dir,
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"Wav2Vec2Encoder({params})"


def resolve_device(device: str = "auto", *, quantize: str = "none") -> str:
    """The torch device a neural encoder will run on.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or "cuda:N"
    quantize : {"none", "int8"}
        int8 models run on the CPU, so ``"auto"`` resolves to ``"cpu"``.

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises
    ------
    EncoderError
        ``cuda`` asked for but torch sees no usable CUDA device (a CPU-only
        torch build, no driver, or no such GPU index): said plainly rather
        than falling back to the CPU behind the user's back.
    """
    import torch

    if device == "cpu" or (device == "auto" and quantize == "int8"):
        return "cpu"
    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if not available:
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "torch finds no CUDA GPU or driver")
        raise EncoderError(f"device {device!r} was asked for, but {why} (torch {torch.__version__}); "
                           "use device='cpu' or 'auto'")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise EncoderError(f"device {device!r} was asked for, but torch sees {torch.cuda.device_count()} "
                           "CUDA GPU(s)")
    return device


def _batch_for(device: str, chunk_seconds: float, conv_dim: Any) -> int:
    """Chunks per forward pass for a device: 2 on the CPU; on a GPU, what fits in half its free memory."""
    if not device.startswith("cuda"):
        return 2
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    width = float(conv_dim[0]) / 512.0 if len(conv_dim) else 1.0
    per_chunk = _BYTES_PER_CHUNK_SECOND * chunk_seconds * width
    return int(max(1, min(_MAX_GPU_BATCH, (0.5 * free) // per_chunk)))


def _quantize_int8(model: Any) -> tuple[Any, dict]:
    """Dynamic int8 quantisation of a transformers audio model, for the CPU.

    Every ``Conv1d`` that is a plain sliding linear map (one group, no
    padding or dilation, an input window of at least 32 values: the
    feature encoder's layers after the first) is replaced by that linear
    map over its unfolded input windows, then every ``Linear`` gets int8
    weights and per-batch int8 activations
    (``torch.ao.quantization.quantize_dynamic``). Returns the model and the
    counts of what was quantised.
    """
    import warnings

    import torch

    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:  # torch.ao.quantization is deprecated upstream
        raise EncoderError(f"quantize='int8' needs torch.ao.quantization.quantize_dynamic, which torch "
                           f"{torch.__version__} lacks ({first_line(exc)}); use quantize='none'") from exc
    if "fbgemm" not in torch.backends.quantized.supported_engines and \
            "x86" not in torch.backends.quantized.supported_engines:
        raise EncoderError("quantize='int8' needs torch's x86 (fbgemm) quantised kernels, which this build "
                           f"lacks (engines: {', '.join(torch.backends.quantized.supported_engines)})")
    convs = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _unfoldable(child):
                setattr(parent, name, _WindowLinear(child))
                convs += 1
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model, {"linear": linears - convs, "conv_as_linear": convs}


def _unfoldable(module: Any) -> bool:
    import torch

    return (isinstance(module, torch.nn.Conv1d) and module.groups == 1 and module.padding in (0, (0,))
            and module.dilation == (1,) and module.padding_mode == "zeros"
            and module.in_channels * module.kernel_size[0] >= 32)


def _window_linear_class():
    import torch

    class WindowLinear(torch.nn.Module):
        """A ``Conv1d`` (one group, no padding) as a ``Linear`` over its input windows.

        Each window is divided by its largest magnitude before the linear map
        and the output multiplied back (exact in real arithmetic): the front
        end's activations follow the loudness of the music (a quiet frame's
        values are ~1/1000 of the loudest), and a dynamically quantised
        linear map scales its input per tensor, which would round quiet
        frames to zero. Per window, every frame keeps its 8 bits.
        """

        def __init__(self, conv):
            super().__init__()
            c_out, c_in, k = conv.weight.shape
            self.kernel, self.stride = int(k), int(conv.stride[0])
            self.linear = torch.nn.Linear(c_in * k, c_out, bias=False)
            with torch.no_grad():
                self.linear.weight.copy_(conv.weight.reshape(c_out, c_in * k))
            self.bias = None if conv.bias is None else torch.nn.Parameter(conv.bias.detach().clone())

        def forward(self, x):
            batch, channels, _ = x.shape
            windows = x.unfold(2, self.kernel, self.stride)  # (batch, channels, frames, kernel)
            windows = windows.permute(0, 2, 1, 3).reshape(batch, windows.shape[2], channels * self.kernel)
            scale = windows.abs().amax(dim=2, keepdim=True).clamp_min(1e-30)
            out = self.linear(windows / scale) * scale
            if self.bias is not None:
                out = out + self.bias
            return out.transpose(1, 2)

    return WindowLinear


def _WindowLinear(conv: Any) -> Any:
    global _WINDOW_LINEAR
    if _WINDOW_LINEAR is None:
        _WINDOW_LINEAR = _window_linear_class()
    return _WINDOW_LINEAR(conv)


_WINDOW_LINEAR = None


class _quiet_transformers_progress:
    """Hide transformers' own weight-loading bars; chandra reports progress through callbacks."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._was_enabled = hf_logging.is_progress_bar_enabled()
        if self._was_enabled:
            hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc_info):
        from transformers.utils import logging as hf_logging

        if self._was_enabled:
            hf_logging.enable_progress_bar()
        return False


# ---------------------------------------------------------------------------
# registry


_ALIASES: dict[str, tuple[type, dict]] = {
    "dsp": (DSPEncoder, {}),
    "wav2vec2": (Wav2Vec2Encoder, {"model": "facebook/wav2vec2-base"}),
    "hubert": (Wav2Vec2Encoder, {"model": "facebook/hubert-base-ls960"}),
    "wavlm": (Wav2Vec2Encoder, {"model": "microsoft/wavlm-base-plus"}),
    # MERT's model code ships with its weights; running it stays an explicit
    # opt-in (trust_remote_code=True / --trust-remote-code), never a default.
    "mert": (Wav2Vec2Encoder, {"model": "m-a-p/MERT-v1-95M"}),
}

#: Names :func:`make_encoder` accepts (the CLI's and dashboard's choices).
ENCODER_NAMES: tuple[str, ...] = tuple(_ALIASES)


def available_encoders() -> dict[str, dict]:
    """Encoder names accepted by :func:`make_encoder` with their default options.

    Returns
    -------
    dict
        ``{name: {"class": class name, "defaults": {option: value}}}``.
    """
    return {name: {"class": cls.__name__, "defaults": dict(defaults)} for name, (cls, defaults) in _ALIASES.items()}


def make_encoder(name: str, **options: Any) -> Encoder:
    """Build an encoder by name.

    Parameters
    ----------
    name : str
        ``"dsp"``, ``"wav2vec2"``, or an alias of the transformer encoder with
        its own default model: ``"hubert"`` (facebook/hubert-base-ls960),
        ``"wavlm"`` (microsoft/wavlm-base-plus), ``"mert"``
        (m-a-p/MERT-v1-95M, ``trust_remote_code=True``). Case-insensitive.
    **options
        Constructor options; they override the alias defaults (e.g.
        ``model=DIR``).

    Returns
    -------
    Encoder

    Raises
    ------
    EncoderError
        Unknown name or an option the encoder does not take.
    """
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise EncoderError(f"unknown encoder {name!r}; choose one of: {', '.join(_ALIASES)}")
    cls, defaults = _ALIASES[key]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise EncoderError(
            f"encoder {key!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(sorted(accepted))}"
        )
    return cls(**{**defaults, **options})
