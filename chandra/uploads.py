"""Storing files that users upload to a server (the dashboard's one saver).

An upload is untrusted bytes with an untrusted name. :func:`store_upload`

* keeps only a safe version of the file's base name (letters, digits,
  ``._-``; at most 100 characters; the extension must be one the kind
  accepts);
* checks the content *before* keeping it: audio is opened and its header
  read, then a short stretch is decoded (:func:`probe_audio`), so a file that
  is not audio, is empty or cannot be decoded is refused now, with one
  readable line, not minutes later when a stage runs;
* stores it content-addressed as ``<folder>/<sha256[:16]>/<safe name>``: the
  same bytes uploaded twice are one file, two different uploads never share
  a path, and the stored file keeps its original (sanitised) name for
  display;
* writes through a uniquely named temporary file and an atomic rename, so
  two sessions uploading at once never see half a file, and a refused
  upload leaves nothing behind.

Streamlit-free, so it is tested without a browser.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from chandra.errors import AudioError, ChandraError

__all__ = ["store_upload", "probe_audio", "safe_name", "MODEL_EXTENSIONS", "UploadError", "PROBE_SECONDS"]

#: Extensions accepted for model uploads (chandra archives, MusicHal JSON).
MODEL_EXTENSIONS = (".chandra", ".json", ".zip")
#: Seconds of audio decoded when an upload arrives.
PROBE_SECONDS = 2.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class UploadError(ChandraError):
    """An uploaded file was refused (name, type or content)."""


def safe_name(name: str, *, max_chars: int = 100) -> str:
    """A file name safe on any file system: the base name only, runs of other
    characters replaced by ``_``, no leading dot, the extension kept when the
    name is shortened."""
    base = Path(str(name).replace("\\", "/")).name
    safe = _UNSAFE.sub("_", base).lstrip(".") or "upload"
    if len(safe) > max_chars:
        stem, ext = os.path.splitext(safe)
        ext = ext[:16]
        safe = stem[: max_chars - len(ext)] + ext
    return safe


def probe_audio(path: str | os.PathLike, *, seconds: float = PROBE_SECONDS, name: str | None = None) -> dict:
    """Read an audio file's header and decode its first ``seconds``.

    Parameters
    ----------
    path : path-like
    seconds : float
        How much audio to decode (from the start).
    name : str, optional
        Name used in error messages (default: the file name).

    Returns
    -------
    dict
        ``sample_rate`` (Hz), ``channels``, ``frames`` (declared by the
        header), ``duration`` (s, from the header), ``format``, ``subtype``,
        ``probed_frames`` (frames actually decoded).

    Raises
    ------
    AudioError
        Not decodable, no samples, a sample rate or channel count that
        makes no sense, or an unreadable first stretch.
    """
    import numpy as np
    import soundfile as sf

    label = name or Path(path).name
    try:
        with sf.SoundFile(str(path)) as f:
            sr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
            fmt, subtype = f.format, f.subtype
            if sr <= 0 or sr > 1_536_000:
                raise AudioError(f"{label}: implausible sample rate {sr} Hz in the header")
            if channels <= 0 or channels > 256:
                raise AudioError(f"{label}: implausible channel count {channels} in the header")
            want = int(min(max(frames, 0), max(1, round(seconds * sr)))) if frames > 0 else int(seconds * sr)
            block = f.read(frames=want, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise AudioError(f"{label}: not a readable audio file ({reason})") from exc
    if block.shape[0] == 0:
        raise AudioError(f"{label}: the file holds no audio samples")
    if not np.all(np.isfinite(block)):
        raise AudioError(f"{label}: non-finite samples (NaN or inf) in the first {seconds:g} s")
    return {"sample_rate": sr, "channels": channels, "frames": frames,
            "duration": frames / float(sr) if frames > 0 else None, "format": fmt, "subtype": subtype,
            "probed_frames": int(block.shape[0])}


def store_upload(folder: str | os.PathLike, name: str, data: bytes, *, kind: str = "audio",
                 max_bytes: int | None = None) -> Path:
    """Check uploaded bytes and keep them under ``folder``.

    Parameters
    ----------
    folder : path-like
        The uploads folder (created when missing).
    name : str
        The name the client sent (untrusted; only a safe base name is used).
    data : bytes
        The file's content.
    kind : {"audio", "model"}
        ``"audio"``: one of :data:`chandra.audio.SUPPORTED_EXTENSIONS`, probed
        with :func:`probe_audio`. ``"model"``: one of :data:`MODEL_EXTENSIONS`;
        its content is checked by the loader when it is opened.
    max_bytes : int, optional
        Refuse larger uploads.

    Returns
    -------
    Path
        ``<folder>/<sha256[:16]>/<safe name>``.

    Raises
    ------
    UploadError
        Unsupported type, empty or too large.
    AudioError
        Audio that cannot be decoded (see :func:`probe_audio`).
    """
    from chandra.audio import SUPPORTED_EXTENSIONS

    if kind == "audio":
        allowed = SUPPORTED_EXTENSIONS
    elif kind == "model":
        allowed = MODEL_EXTENSIONS
    else:
        raise ValueError(f"kind must be 'audio' or 'model', got {kind!r}")
    safe = safe_name(name)
    ext = Path(safe).suffix.lower()
    shown = safe_name(name, max_chars=80)
    if ext not in allowed:
        raise UploadError(f"{shown}: unsupported {kind} file type '{ext or '(none)'}'; use one of {', '.join(allowed)}")
    data = bytes(data)
    if not data:
        raise UploadError(f"{shown}: the upload is empty (0 bytes)")
    if max_bytes is not None and len(data) > max_bytes:
        raise UploadError(f"{shown}: {len(data)} bytes is more than the limit of {max_bytes} bytes")
    digest = hashlib.sha256(data).hexdigest()[:16]
    target_dir = Path(folder) / digest
    target = target_dir / safe
    if target.is_file() and target.stat().st_size == len(data):
        return target  # the same bytes under the same name: already checked and kept
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload.", suffix=ext, dir=target_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if kind == "audio":
            probe_audio(tmp, name=shown)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        with contextlib.suppress(OSError):
            target_dir.rmdir()  # only when empty: nothing is left behind by a refused upload
        raise
    return target


def _umask() -> int:
    """The process umask, read without changing it where the system allows
    (``os.umask`` to read it would briefly change it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
