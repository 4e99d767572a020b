"""The transformer encoder (wav2vec2, HuBERT, WavLM, MERT): local weights only,
the file run in overlapping chunks, hidden states pooled per segment."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from chandra.encoders.base import _check_signal, _versions, resample
from chandra.encoders.devices import QUANTIZE_MODES, _batch_for, resolve_device
from chandra.encoders.pooling import pool_frames, segment_bounds
from chandra.encoders.quantize import _quantize_int8
from chandra.errors import EncoderError, ModelFormatError, WeightsNotFoundError, first_line
from chandra.progress import ProgressCallback, report

__all__ = ["Wav2Vec2Encoder"]


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
        self, y: np.ndarray, sr: int, *, progress: Optional[ProgressCallback] = None,
        on_frames: Optional[Callable[[np.ndarray, np.ndarray, int], None]] = None,
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
        on_frames : callable, optional
            ``on_frames(frames, frame_times, ready)``: called (in this thread)
            before the first batch with ``ready=0`` and after every batch;
            rows ``frames[:ready]`` are final (the same arrays are
            returned), the rows after them are still being written. Lets
            other work use the frames while the forward passes go on
            (:class:`chandra.encoders.pooling.IncrementalPooler`).

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
        times = (np.arange(total_frames, dtype=np.float64) * hop + 0.5 * self._rf) / self._sampling_rate
        size = self.batch_size_
        batches = [list(range(i, min(i + size, len(starts)))) for i in range(0, len(starts), size)]
        report(progress, "encode", 0, len(batches))
        if on_frames is not None:
            on_frames(out, times, 0)
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
                if on_frames is not None:
                    k = idx[-1]
                    on_frames(out, times, min(keep_hi[k], first[k] + per_chunk))
                report(progress, "encode", b + 1, len(batches))
        if not covered.all():
            missing = np.flatnonzero(~covered)
            raise EncoderError(
                f"{missing.size} of {total_frames} frames are missing or non-finite after stitching "
                f"(first at frame {missing[0]}); model '{self.model}', chunks {len(starts)}"
            )
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
