"""Audio loading: any common format, any rate, bit depth and channel count,
returned as a mono float32 signal.

Decoding uses libsndfile (through ``soundfile``), which reads WAV, FLAC, OGG
Vorbis/Opus, AIFF and MP3. Nothing is decoded by spawning external programs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chandra.errors import AudioError, first_line

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "load_audio",
    "decode_audio",
    "DecodedAudio",
    "validate_signal",
    "summarize_signal",
    "SILENCE_PEAK",
    "MIN_FILE_SAMPLE_RATE",
]

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".mp3")

#: Lowest file sample rate (Hz) a recording may have. Below it a file holds no
#: music (nothing above 500 Hz), and resampling it is the attack: a 200 kB
#: WAV declaring 1 Hz would decode to 9 GB at 22 050 Hz.
MIN_FILE_SAMPLE_RATE = 1000

#: Peak amplitude below which a signal counts as silence (about -80 dBFS).
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded signal and how much of the file it covers.

    Attributes
    ----------
    y : np.ndarray, float32, shape (n_samples,) or (n_channels, n_samples)
        Samples in [-1, 1] at ``sr``.
    sr : int
        Sample rate of ``y`` in Hz.
    file_sample_rate : int
        The file's own rate in Hz.
    frames_declared : int or None
        Frames the file's header promises (WAV ``data`` chunk size / block
        align, AIFF ``COMM`` frame count, FLAC ``STREAMINFO``, ...), None
        when the header does not say.
    frames_read : int
        Frames the decoder delivered, at the file's rate.
    decode_error : str or None
        The decoder's complaint when it stopped early (the frames before it
        are kept).
    """

    y: np.ndarray
    sr: int
    file_sample_rate: int
    frames_declared: int | None
    frames_read: int
    decode_error: str | None = None

    @property
    def truncated(self) -> bool:
        """The decoder delivered fewer frames than the header declares."""
        return self.frames_declared is not None and self.frames_read < self.frames_declared

    def report(self) -> dict:
        """JSON-able summary: ``frames_declared``, ``frames_read``, ``file_sample_rate``,
        ``truncated``, ``decode_error``."""
        return {"frames_declared": self.frames_declared, "frames_read": int(self.frames_read),
                "file_sample_rate": int(self.file_sample_rate), "truncated": self.truncated,
                "decode_error": self.decode_error}


#: Frames per block when the one-shot read fails (a decoder error loses at most one block) or the
#: header's frame count is implausible.
_BLOCK_FRAMES = 4096
#: Decoded float32 bytes per file byte beyond which a header's frame count is not trusted for
#: allocation (FLAC of near-silence compresses far, but not this far).
_MAX_EXPANSION = 256


def _header_frames(path: Path) -> int | None:
    """Frame count a WAV (RIFF/RIFX/RF64) or AIFF header declares, from the header bytes alone."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if len(head) < 12:
        return None
    kind, form = head[:4], head[8:12]
    if kind in (b"RIFF", b"RIFX", b"RF64") and form == b"WAVE":
        endian = ">" if kind == b"RIFX" else "<"
        block_align = data_size = None
        pos = 12
        while pos + 8 <= len(head):
            cid = head[pos:pos + 4]
            (size,) = struct.unpack(endian + "I", head[pos + 4:pos + 8])
            body = head[pos + 8:pos + 8 + min(size, 64)]
            if cid == b"fmt " and len(body) >= 14:
                (block_align,) = struct.unpack(endian + "H", body[12:14])
            elif cid == b"ds64" and len(body) >= 16:
                (data_size,) = struct.unpack("<Q", body[8:16])
            elif cid == b"data":
                if kind != b"RF64" and size not in (0, 0xFFFFFFFF):
                    data_size = size
                break
            pos += 8 + size + (size & 1)
        if block_align and data_size:
            return int(data_size // block_align)
        return None
    if kind == b"FORM" and form in (b"AIFF", b"AIFC"):
        pos = 12
        while pos + 8 <= len(head):
            cid = head[pos:pos + 4]
            (size,) = struct.unpack(">I", head[pos + 4:pos + 8])
            if cid == b"COMM" and pos + 14 <= len(head):
                (frames,) = struct.unpack(">I", head[pos + 10:pos + 14])
                return int(frames)
            pos += 8 + size + (size & 1)
    return None


def _read_blocks(path: Path) -> tuple[np.ndarray, str | None]:
    """Decode block by block until the end or the first decoder error (frames before it kept)."""
    import soundfile as sf

    blocks = []
    error = None
    with sf.SoundFile(str(path)) as f:
        channels = f.channels
        try:
            while True:
                block = f.read(frames=_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    break
                blocks.append(block)
        except (sf.LibsndfileError, RuntimeError) as exc:
            error = first_line(exc)
    if not blocks:
        return np.zeros((0, channels), dtype=np.float32), error
    return np.concatenate(blocks), error


#: Samples per block when checking or summarising a signal.
_CHECK_BLOCK = 1 << 20

#: Frames per block of the streamed decoder (about 6 s at 44.1 kHz).
_STREAM_FRAMES = 1 << 18


def _resampled_length(n: int, orig_sr: int, target_sr: int) -> int:
    """Samples ``librosa.resample(..., fix=True)`` returns for ``n`` input samples."""
    return int(np.ceil(n * (float(target_sr) / orig_sr)))


def _decode_mono_stream(f, declared: int, file_sr: int, sr: int | None) -> tuple[np.ndarray, int]:
    """Read an open ``soundfile.SoundFile`` block by block into one mono float32 array.

    Channels are averaged per block (the same arithmetic as a whole-file
    ``data.mean(axis=1)``, so the samples are identical), and when ``sr``
    differs from ``file_sr`` each block goes through one streaming soxr
    resampler at the quality librosa's ``"soxr_hq"`` uses: the output equals
    ``librosa.resample(y, res_type="soxr_hq")`` of the whole mono signal
    sample for sample (streamed soxr is exact, tested), including librosa's
    length ``ceil(n * sr / file_sr)``.

    Returns the signal and the number of frames read at the file's rate;
    raises what the decoder raises (the caller falls back to small blocks).
    """
    resampler = None
    if sr is not None and int(sr) != int(file_sr):
        import soxr

        resampler = soxr.ResampleStream(float(file_sr), float(sr), 1, dtype="float32", quality="HQ")
        capacity = _resampled_length(declared, file_sr, int(sr)) + 64
    else:
        capacity = declared
    out = np.zeros(max(capacity, 1), dtype=np.float32)
    written = frames_read = 0

    def put(piece: np.ndarray) -> None:
        nonlocal out, written
        if written + piece.size > out.size:  # the header undercounted: grow
            grown = np.zeros(max(2 * out.size, written + piece.size), dtype=np.float32)
            grown[:written] = out[:written]
            out = grown
        out[written:written + piece.size] = piece
        written += piece.size

    while True:
        block = f.read(frames=_STREAM_FRAMES, dtype="float32", always_2d=True)
        n = len(block)
        last = n < _STREAM_FRAMES
        if n:
            frames_read += n
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            put(mono if resampler is None else resampler.resample_chunk(mono, last=last))
        elif resampler is not None:
            put(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        if last:
            break
    length = frames_read if resampler is None else _resampled_length(frames_read, file_sr, int(sr))
    if length > out.size:
        put(np.zeros(length - written, dtype=np.float32))
    # librosa pads a short soxr output with zeros and cuts a long one (fix_length)
    out[min(written, length):length] = 0.0
    if out.size - length > (1 << 20):
        return out[:length].copy(), frames_read  # a header that overcounted by a lot: give the memory back
    return out[:length], frames_read


def decode_audio(path: str | os.PathLike, *, sr: int | None = None, mono: bool = True) -> DecodedAudio:
    """Decode an audio file, noting how much of it the decoder delivered.

    Like :func:`load_audio`, but returns a :class:`DecodedAudio` that also
    says how many frames the header declared and how many were read: a
    truncated file (a recording cut short, a partial download) decodes to
    the frames that are there, with :attr:`DecodedAudio.truncated` set,
    instead of failing or passing silently.

    Raises
    ------
    AudioError
        Missing, empty, unsupported or undecodable file (nothing decoded).
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes)")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise AudioError(
            f"{path}: unsupported extension '{ext or '(none)'}'; "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    decode_error = data = y = None
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"{path}: cannot decode as audio ({first_line(exc)})") from exc
    with f:
        file_sr, channels, decoder_frames = int(f.samplerate), int(f.channels), int(f.frames)
        if file_sr < MIN_FILE_SAMPLE_RATE:
            raise AudioError(f"{path}: sample rate {file_sr} Hz is below {MIN_FILE_SAMPLE_RATE:,} Hz, too low to "
                             f"hold music (nothing above {file_sr / 2:g} Hz); is it an audio recording?")
        # Trust the header's frame count for allocation only when it could come
        # from a file this size (otherwise the allocation itself is the attack).
        plausible = 0 <= decoder_frames * channels * 4 <= _MAX_EXPANSION * size + (1 << 20)
        if plausible and mono:
            # Streamed: blocks are mixed down (and resampled) as they are read, so
            # neither the multichannel file nor the signal at the file's rate is
            # ever held whole (a 2-hour 44.1 kHz stereo file would be 2.5 GB).
            try:
                y, frames_read = _decode_mono_stream(f, decoder_frames, file_sr, sr)
            except (sf.LibsndfileError, RuntimeError) as exc:
                decode_error = first_line(exc)
        elif plausible:
            try:
                data = f.read(dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                decode_error = first_line(exc)
    if y is None:
        if data is None:
            data, block_error = _read_blocks(path)
            decode_error = decode_error or block_error
        if data.shape[0] == 0:
            reason = f" ({decode_error})" if decode_error else ""
            raise AudioError(f"{path}: the file decodes to 0 samples{reason}")
        frames_read = int(data.shape[0])
        y = data.mean(axis=1) if mono else data.T
        del data
        y = np.ascontiguousarray(y, dtype=np.float32)
        if sr is not None and int(sr) != int(file_sr):
            import librosa

            y = librosa.resample(y, orig_sr=int(file_sr), target_sr=int(sr), res_type="soxr_hq").astype(np.float32)
    elif frames_read == 0:
        raise AudioError(f"{path}: the file decodes to 0 samples")
    declared = _header_frames(path)
    if declared is None and decoder_frames > 0:
        declared = decoder_frames
    out_sr = int(sr) if sr is not None else file_sr
    return DecodedAudio(y=y, sr=out_sr, file_sample_rate=file_sr, frames_declared=declared,
                        frames_read=frames_read, decode_error=decode_error)


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

    See Also
    --------
    decode_audio : the same, also telling whether the file was truncated.
    """
    decoded = decode_audio(path, sr=sr, mono=mono)
    return decoded.y, decoded.sr


def validate_signal(y: np.ndarray, sr: int, *, min_duration: float = 0.5, name: str = "audio") -> None:
    """Raise :class:`AudioError` when a signal cannot be trained on.

    Checks, in order: non-finite samples (NaN or inf), length shorter than
    ``min_duration`` seconds, and silence (peak below :data:`SILENCE_PEAK`).
    """
    y = np.asarray(y)
    if y.size == 0:
        raise AudioError(f"{name}: no samples")
    flat = y.reshape(-1)
    # In blocks: an hour's bool mask or |y| copy would cost as much as the signal.
    n_bad, first, peak = 0, None, 0.0
    for a in range(0, flat.size, _CHECK_BLOCK):
        block = flat[a:a + _CHECK_BLOCK]
        bad = ~np.isfinite(block)
        if bad.any():
            n_bad += int(bad.sum())
            if first is None:
                first = a + int(np.flatnonzero(bad)[0])
        elif not n_bad:
            peak = max(peak, float(block.max()), -float(block.min()))
    if n_bad:
        raise AudioError(f"{name}: {n_bad} non-finite samples (NaN or inf), first at {first / sr:.3f} s")
    duration = y.shape[-1] / float(sr)
    if duration < min_duration:
        raise AudioError(f"{name}: only {duration:.2f} s of audio; at least {min_duration:.2f} s is needed")
    if peak < SILENCE_PEAK:
        raise AudioError(f"{name}: the signal is silent (peak {peak:.2g}, below {SILENCE_PEAK:g})")


def summarize_signal(y: np.ndarray, sr: int) -> dict:
    """Scalars describing a signal: duration (s), sample rate, peak, RMS (dBFS)."""
    y = np.asarray(y)
    flat = y.reshape(-1)
    # float64 sums in blocks (the whole signal in float64 would be twice its size)
    sq, peak = 0.0, 0.0
    for a in range(0, flat.size, _CHECK_BLOCK):
        block = flat[a:a + _CHECK_BLOCK].astype(np.float64)
        sq += float(np.dot(block, block))
        peak = max(peak, float(np.max(np.abs(block))))
    rms = float(np.sqrt(sq / flat.size)) if flat.size else 0.0
    return {
        "duration": y.shape[-1] / float(sr),
        "sample_rate": int(sr),
        "n_samples": int(y.shape[-1]),
        "peak": peak,
        "rms_db": float(20 * np.log10(max(rms, 1e-10))),
    }
