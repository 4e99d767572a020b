"""Feature cache: encoder outputs kept per audio content and analysis settings.

Encoding is the expensive step of training (a neural encoder runs at a
fraction of real time on a CPU); everything after it (normalisation, K,
PCA, the oracle and its threshold) is cheap. So the vectors of one file are
stored under a key made of everything that changes them:

* the file's content (SHA-256 of its bytes, not its name or date);
* the analysis sample rate;
* the segmentation: its parameters and a digest of the actual segment
  bounds (so a change in the onset detector also misses);
* the encoder: its name and every constructor option
  (``encoder.get_params()``: for dsp ``sr``, ``n_mfcc``, ``hop_length``,
  ``n_fft``; for neural encoders model, layer, chunking, batch size,
  device, ...), and for a neural model a fingerprint of its files (names,
  sizes and modification times of a local directory, the cached revision
  of a hub name);
* the versions of chandra and of the packages that compute the vectors
  (librosa and numpy; torch and transformers for neural encoders).

Retraining with another K, threshold, normalisation or oracle kind hits the
cache; another layer, model, segmentation or file misses it.

Layout and safety
-----------------
``<directory>/<key[:2]>/<key>.npy`` (float32, ``(n_segments, dim)``) and
``<key>.json`` (``format``, ``version``, ``key``, ``identity``, ``shape``,
``dtype``, the encoder's ``provenance``). Both are written atomically
(:func:`chandra.io_utils.atomic_write`), the array first, so the JSON is the
commit mark. Reading never trusts an entry: the JSON goes through
:mod:`chandra.safejson` (small size limit) and must name the same key and
identity; the ``.npy`` header must declare float32 and the expected shape
(as many rows as the file has segments) and match the file size before the
data is read with ``allow_pickle=False``; every value must be finite. An
entry that fails any check is a miss (reported as ``"invalid"``) and is
recomputed and rewritten.

The default directory is ``$CHANDRA_CACHE_DIR/features`` when that variable
is set, else ``<platform user cache dir>/chandra/features``
(``~/.cache/chandra/features`` on Linux, ``~/Library/Caches/chandra/features``
on macOS, ``%LOCALAPPDATA%\\chandra\\Cache\\features`` on Windows).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chandra.errors import ChandraError, ModelFormatError
from chandra.progress import ProgressCallback

__all__ = [
    "FeatureCache",
    "CacheEntryInfo",
    "default_cache_dir",
    "encoder_identity",
    "segmentation_identity",
    "cached_encode",
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "CACHE_ENV_VAR",
]

CACHE_FORMAT = "chandra-feature-cache"
CACHE_VERSION = 1
#: Environment variable naming chandra's cache root (features go to ``<root>/features``).
CACHE_ENV_VAR = "CHANDRA_CACHE_DIR"
#: Largest entry description read (it holds the key, the identity and the encoder provenance).
MAX_ENTRY_JSON_BYTES = 1 << 20
_KEY = re.compile(r"^[0-9a-f]{64}$")
_MAX_FINGERPRINT_FILES = 4096


def default_cache_dir() -> Path:
    """Where features are cached by default (see the module docstring)."""
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        return Path(root).expanduser() / "features"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("chandra", appauthor=False)) / "features"


def _model_fingerprint(model: Any) -> dict | None:
    """What identifies a neural model's weights without reading them.

    A local directory: the names, sizes and modification times of its files.
    A hub name: the revision the local Hugging Face cache holds for it.
    """
    if not model:
        return None
    path = Path(str(model)).expanduser()
    if path.is_dir():
        digest = hashlib.sha256()
        count = 0
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = item.stat()
            digest.update(f"{item.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            count += 1
            if count >= _MAX_FINGERPRINT_FILES:
                break
        return {"directory": str(path.resolve()), "files": count, "digest": digest.hexdigest()}
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(Path.home(), ".cache", "huggingface"), "hub")
    ref = Path(hub) / ("models--" + str(model).replace("/", "--")) / "refs" / "main"
    try:
        revision = ref.read_text(encoding="utf-8").strip()[:64]
    except OSError:
        revision = None
    return {"hub_name": str(model), "revision": revision}


def encoder_identity(encoder_name: str, encoder_options: dict) -> dict:
    """The encoder part of a cache key: name, every constructor option, model fingerprint, versions.

    Builds the encoder (cheap: neural weights load on first use) to read its
    ``get_params()``, so an option added to an encoder later is part of the
    key without a change here.
    """
    from chandra.encoders import make_encoder

    encoder = make_encoder(encoder_name, **encoder_options)
    params = encoder.get_params() if hasattr(encoder, "get_params") else dict(encoder_options)
    neural = str(encoder_name).lower() != "dsp"
    from chandra import __version__
    from chandra.io_utils import installed_versions

    identity = {
        "encoder": str(encoder_name).lower(),
        "class": type(encoder).__name__,
        "params": params,
        "versions": {"chandra": __version__,
                     **installed_versions(("numpy", "librosa") + (("torch", "transformers") if neural else ()))},
    }
    if neural:
        identity["model_fingerprint"] = _model_fingerprint(params.get("model"))
    return json.loads(json.dumps(identity, sort_keys=True, default=str))


def segmentation_identity(segments: Any) -> dict:
    """The segmentation part of a cache key: parameters and a digest of the bounds (float64 seconds)."""
    start = np.ascontiguousarray(np.asarray(segments.start, dtype=np.float64))
    end = np.ascontiguousarray(np.asarray(segments.end, dtype=np.float64))
    digest = hashlib.sha256(start.tobytes() + b"|" + end.tobytes()).hexdigest()
    params = getattr(segments, "params", {}) or {}
    return {"n_segments": int(start.size), "bounds_sha256": digest,
            "params": json.loads(json.dumps(params, sort_keys=True, default=str))}


@dataclass(frozen=True)
class CacheEntryInfo:
    """One cached entry: its key, encoder, shape and size on disk (bytes)."""

    key: str
    encoder: str | None
    shape: tuple[int, ...] | None
    bytes: int


@dataclass
class FeatureCache:
    """A directory of cached encoder outputs (see the module docstring).

    Parameters
    ----------
    directory : path
        Created on the first write.

    Attributes
    ----------
    hits, misses, invalid : int
        Lookups answered, lookups without an entry, and entries refused
        (then recomputed) in this process.
    last_problem : str or None
        Why the last refused entry was refused.
    """

    directory: Path
    hits: int = field(default=0, compare=False)
    misses: int = field(default=0, compare=False)
    invalid: int = field(default=0, compare=False)
    last_problem: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).expanduser()

    @classmethod
    def default(cls) -> "FeatureCache":
        """The cache in :func:`default_cache_dir`."""
        return cls(default_cache_dir())

    @staticmethod
    def key(identity: dict) -> str:
        """SHA-256 of the identity's canonical JSON."""
        text = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "identity": identity},
                          sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not _KEY.match(key):
            raise ChandraError(f"feature cache key must be 64 hex digits, got {key[:80]!r}")
        folder = self.directory / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def get(self, identity: dict, *, n_rows: int) -> tuple[np.ndarray, dict] | None:
        """The cached ``(features float32 (n_rows, dim), encoder provenance)``, or None.

        None when there is no entry, and also when an entry fails a check
        (counted in :attr:`invalid`, reason in :attr:`last_problem`): a
        corrupt entry is recomputed, never used.
        """
        key = self.key(identity)
        npy, meta_path = self._paths(key)
        if not meta_path.exists():
            self.misses += 1
            return None
        try:
            features, provenance = self._read(key, identity, npy, meta_path, n_rows)
        except (ModelFormatError, OSError, ValueError) as exc:
            self.invalid += 1
            self.last_problem = f"{meta_path.name}: {' '.join(str(exc).split())[:300]}"
            return None
        self.hits += 1
        return features, provenance

    def _read(self, key: str, identity: dict, npy: Path, meta_path: Path, n_rows: int) -> tuple[np.ndarray, dict]:
        from chandra import safejson

        meta = safejson.load(meta_path, max_bytes=MAX_ENTRY_JSON_BYTES)
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
            raise ValueError("not a chandra feature cache entry of this version")
        if meta.get("key") != key or meta.get("identity") != json.loads(json.dumps(identity, default=str)):
            raise ValueError("entry describes other features than its key")
        shape = meta.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) and d >= 0 for d in shape)
                and shape[0] == n_rows and shape[1] >= 1):
            raise ValueError(f"entry shape {str(shape)[:40]} does not fit {n_rows} segments")
        provenance = meta.get("provenance")
        if not isinstance(provenance, dict):
            raise ValueError("entry has no encoder provenance")
        fmt = np.lib.format
        with open(npy, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                got_shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                got_shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype != np.dtype("<f4") or list(got_shape) != shape or fortran:
                raise ValueError(f"array holds {dtype} {list(got_shape)}, expected float32 {shape}")
            expected = fh.tell() + shape[0] * shape[1] * 4
            if os.fstat(fh.fileno()).st_size != expected:
                raise ValueError("array file size does not match its header")
            fh.seek(0)
            features = np.load(fh, allow_pickle=False)
        if not np.all(np.isfinite(features)):
            raise ValueError("array holds NaN or infinite values")
        return features, provenance

    def put(self, identity: dict, features: np.ndarray, provenance: dict) -> Path:
        """Store ``features`` (float32 (n, dim)) and the encoder's ``provenance`` under ``identity``."""
        from chandra import __version__
        from chandra.io_utils import atomic_write, json_default

        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or not np.all(np.isfinite(features)):
            raise ChandraError("only finite 2-D features are cached")
        key = self.key(identity)
        npy, meta_path = self._paths(key)
        npy.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(npy, "wb") as fh:
            np.save(fh, features, allow_pickle=False)
        meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key,
                "identity": json.loads(json.dumps(identity, default=str)), "shape": list(features.shape),
                "dtype": "<f4", "provenance": provenance, "written_by": f"chandra {__version__}"}
        with atomic_write(meta_path, "w") as fh:
            fh.write(json.dumps(meta, default=json_default, allow_nan=False, sort_keys=True))
        return npy

    def entries(self) -> list[CacheEntryInfo]:
        """Every entry in the directory (a description without its array is counted as such)."""
        out = []
        if not self.directory.is_dir():
            return out
        for folder in sorted(p for p in self.directory.iterdir() if p.is_dir() and len(p.name) == 2):
            for meta_path in sorted(folder.glob("*.json")):
                key = meta_path.stem
                if not _KEY.match(key) or key[:2] != folder.name:
                    continue
                npy = meta_path.with_suffix(".npy")
                size = meta_path.stat().st_size + (npy.stat().st_size if npy.exists() else 0)
                encoder = shape = None
                try:
                    from chandra import safejson

                    meta = safejson.load(meta_path, max_bytes=MAX_ENTRY_JSON_BYTES)
                    encoder = str(((meta.get("identity") or {}).get("encoder") or {}).get("encoder"))
                    shape = tuple(int(d) for d in meta.get("shape") or ())
                except (ModelFormatError, OSError, ValueError, TypeError, AttributeError):
                    pass
                out.append(CacheEntryInfo(key=key, encoder=encoder, shape=shape, bytes=size))
        return out

    def info(self) -> dict:
        """``directory``, ``entries``, ``bytes`` and ``by_encoder`` ({encoder: entries})."""
        entries = self.entries()
        by_encoder: dict[str, int] = {}
        for entry in entries:
            by_encoder[entry.encoder or "unknown"] = by_encoder.get(entry.encoder or "unknown", 0) + 1
        return {"directory": str(self.directory), "exists": self.directory.is_dir(), "entries": len(entries),
                "bytes": int(sum(e.bytes for e in entries)), "by_encoder": dict(sorted(by_encoder.items()))}

    def clear(self) -> int:
        """Remove every entry (only files named as this cache names them). Returns the entries removed."""
        removed = 0
        if not self.directory.is_dir():
            return 0
        for folder in [p for p in self.directory.iterdir() if p.is_dir() and len(p.name) == 2]:
            keys = {p.stem for p in folder.iterdir() if p.suffix in (".npy", ".json") and _KEY.match(p.stem)}
            for key in keys:
                if key[:2] != folder.name:
                    continue
                for suffix in (".json", ".npy"):  # the mark first: a half-removed entry is a miss
                    try:
                        (folder / f"{key}{suffix}").unlink()
                    except FileNotFoundError:
                        pass
                removed += 1
            try:
                folder.rmdir()
            except OSError:
                pass  # something else lives there
        return removed


def cached_encode(signal: np.ndarray, sample_rate: int, segments: Any, *, encoder_name: str,
                  encoder_options: dict, audio_sha256: str, cache: FeatureCache | None = None,
                  encoder: Any = None,
                  progress: ProgressCallback | None = None) -> tuple[np.ndarray, dict, str]:
    """Encode one file's segments, through the cache when one is given.

    Parameters
    ----------
    signal : float32 (n_samples,)
    sample_rate : int
        Hz of ``signal``.
    segments : chandra.segment.Segments
    encoder_name, encoder_options
        As for :func:`chandra.encoders.make_encoder`.
    audio_sha256 : str
        Content hash of the audio file (the key's file part).
    cache : FeatureCache, optional
    encoder : Encoder, optional
        An encoder already built from the same name and options (e.g. one
        neural model kept loaded across files); built when None and needed.

    Returns
    -------
    features : float32 (n_segments, dim)
    provenance : dict
        The encoder's provenance (from the cache on a hit).
    status : {"hit", "miss", "invalid", "off"}
        ``invalid``: an entry existed but failed its checks and was
        recomputed.

    Raises
    ------
    ChandraError
        The encoder's own errors, or a vector count other than the number
        of segments.
    """
    n = len(segments)
    identity = None
    status = "off"
    if cache is not None:
        identity = {"audio_sha256": str(audio_sha256), "sample_rate": int(sample_rate),
                    "segmentation": segmentation_identity(segments),
                    "encoder": encoder_identity(encoder_name, encoder_options)}
        before = cache.invalid
        found = cache.get(identity, n_rows=n)
        if found is not None:
            return found[0], found[1], "hit"
        status = "invalid" if cache.invalid > before else "miss"
    if encoder is None:
        from chandra.encoders import make_encoder

        encoder = make_encoder(encoder_name, **encoder_options)
    features = np.asarray(encoder.encode(signal, sample_rate, segments, progress=progress), dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != n:
        raise ChandraError(f"encoder returned {features.shape[0] if features.ndim else 0} vectors for {n} segments")
    provenance = encoder.provenance()
    if cache is not None and np.all(np.isfinite(features)):
        try:
            cache.put(identity, features, provenance)
        except (OSError, ValueError, TypeError) as exc:
            # The cache saves time, never correctness: a full disk or a
            # read-only directory costs the next run an encode, nothing more.
            cache.last_problem = f"not cached: {' '.join(str(exc).split())[:300]}"
    return features, provenance, status
