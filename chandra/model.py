"""The trained model and its file format.

A :class:`Model` is everything an improvisation needs and everything a
diagnosis needs: the per-frame events, the feature matrix, the oracle, the
vocabulary, the provenance and the stage ledger.

File format (``.chandra``, version 1.1)
---------------------------------------
An uncompressed zip archive (``ZIP_STORED``: float features do not compress,
and stored members can be read without inflating) holding

``model.json``
    ``{"format": "chandra-model", "format_version": "1.1",
    "value_encoding": "chandra-tagged-1", "source_format", "n_frames",
    "feature_dim", "sample_rate", "oracle" (kind, threshold, metric, n_frames
    or null), "provenance", "vocabulary", "ledger", "events", "arrays"}``.
    ``arrays`` maps an array name to ``{"member", "dtype", "shape"}``.
``arrays/<name>.npy``
    One NumPy ``.npy`` member per array: ``features`` (float32), ``centers``,
    ``oracle.sfx``, ``oracle.lrs``, ``oracle.trn_ptr``, ``oracle.trn_dst``,
    ``oracle.rep`` (since 1.1, when ``lrs`` became the exact longest
    repeated suffix; version 1.0 files hold the Lefebvre-Lecroq ``lrs`` and
    load with ``rep = sfx``),
    ``audio`` (float32) and ``extra.<name>`` for :attr:`Model.extra_arrays`.

Every member carries a fixed timestamp, so saving the same model twice gives
byte-identical files. Loading never unpickles: members are read with
``np.load(..., allow_pickle=False)`` and an object array is refused.

JSON values are stored losslessly (the ``chandra-tagged-1`` value encoding):
ints of any size, floats by their shortest round-trip repr, nested dicts and
lists, unicode. JSON has no NaN or infinity, so a non-finite float is written
as ``{"$float": "nan" | "inf" | "-inf"}``; to keep that tag unambiguous, a
user dict key that starts with ``$`` is stored with one more ``$`` in front.
Tuples come back as lists; dict keys must be strings (an int key would come
back as a string, so it is refused rather than silently changed).
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from chandra.errors import ModelFormatError
from chandra.io_utils import atomic_write
from chandra.progress import report

if TYPE_CHECKING:  # pragma: no cover - typing only
    from chandra.oracle import Oracle

__all__ = [
    "Model",
    "save_model",
    "load_model",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SUPPORTED_VERSIONS",
    "VALUE_ENCODING",
    "encode_json_value",
    "decode_json_value",
    "decode_object_hook",
]

FORMAT_NAME = "chandra-model"
FORMAT_VERSION = "1.1"
# 1.1: oracle.rep and exact lrs (see chandra.oracle); 1.0 files load with rep = sfx.
SUPPORTED_VERSIONS = ("1.0", "1.1")
VALUE_ENCODING = "chandra-tagged-1"

_MODEL_JSON = "model.json"
# The zip format cannot store dates before 1980; any fixed date makes saves
# reproducible byte for byte.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ORACLE_ARRAYS = ("sfx", "lrs", "trn_ptr", "trn_dst")
# Written since format 1.1; absent from 1.0 files, which load with rep = sfx
# (their lrs is the Lefebvre-Lecroq context shared with sfx).
_ORACLE_OPTIONAL = ("rep",)
_EXTRA_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_FLOAT_TAG = "$float"
_INT_TAG = "$int"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# ---------------------------------------------------------------------------
# lossless JSON values


def _where(path: tuple) -> str:
    return "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in path) or "<root>"


def encode_json_value(value: Any, *, context: str = "value", int_limit: int | None = None) -> Any:
    """Return a JSON-safe copy of ``value`` in the ``chandra-tagged-1`` encoding.

    Parameters
    ----------
    value : Any
        None, bool, int, float, str, dict with str keys, list or tuple, nested
        freely; NumPy scalars and arrays are converted to Python values.
    context : str
        Named in error messages (e.g. ``"event 12"``).
    int_limit : int or None
        When given, ints with ``abs(i) >= int_limit`` are written as
        ``{"$int": "<digits>"}`` (for readers that overflow on big ints).

    Returns
    -------
    Any
        A value ``json.dumps(..., allow_nan=False)`` accepts.

    Raises
    ------
    ModelFormatError
        A value that JSON cannot hold losslessly (a set, bytes, an object, a
        non-string dict key), naming ``context`` and the field path.
    """
    return _encode(value, (), context, int_limit)


def _encode(value: Any, path: tuple, context: str, int_limit: int | None) -> Any:
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is float:
        if value - value == 0.0:  # finite
            return value
        return {_FLOAT_TAG: "nan" if value != value else ("inf" if value > 0 else "-inf")}
    if t is int:
        if int_limit is not None and not -int_limit < value < int_limit:
            return {_INT_TAG: str(value)}
        return value
    if t is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                if isinstance(key, str):
                    key = str(key)
                else:
                    raise ModelFormatError(
                        f"{context}: field {_where(path)} has a {type(key).__name__} key {key!r}; "
                        "JSON keys must be strings")
            out["$" + key if key.startswith("$") else key] = _encode(item, path + (key,), context, int_limit)
        return out
    if t is list or t is tuple:
        return [_encode(item, path + (i,), context, int_limit) for i, item in enumerate(value)]
    # Subclasses and NumPy values are rarer; normalise them to plain values.
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return _encode(int(value), path, context, int_limit)
    if isinstance(value, (float, np.floating)):
        return _encode(float(value), path, context, int_limit)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return _encode(value.tolist(), path, context, int_limit)
    if isinstance(value, (list, tuple)):
        return [_encode(item, path + (i,), context, int_limit) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return _encode(dict(value), path, context, int_limit)
    raise ModelFormatError(
        f"{context}: field {_where(path)} holds a {type(value).__name__}, which JSON cannot store")


def decode_object_hook(obj: dict) -> Any:
    """``json.loads(object_hook=...)`` inverse of :func:`encode_json_value`."""
    if len(obj) == 1:
        ((key, item),) = obj.items()
        if key == _FLOAT_TAG and item in _NONFINITE:
            return _NONFINITE[item]
        if key == _INT_TAG and isinstance(item, str):
            return int(item)
    for key in obj:
        if key.startswith("$"):
            return {(k[1:] if k.startswith("$") else k): v for k, v in obj.items()}
    return obj


def decode_json_value(value: Any) -> Any:
    """Undo :func:`encode_json_value` on an already parsed value (bottom-up)."""
    t = type(value)
    if t is dict:
        return decode_object_hook({k: decode_json_value(v) for k, v in value.items()})
    if t is list:
        return [decode_json_value(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# the model


@dataclass
class Model:
    """A trained (or imported) improvisation model.

    Attributes
    ----------
    events : list of dict
        One JSON-able dict per frame (``t`` in seconds from file start,
        ``gesture_token``, ``consonance``, ...). Features are not in the dicts.
    features : ndarray, float32, shape (n_frames, dim)
        Row ``i`` is event ``i``'s feature vector.
    oracle : Oracle or None
        Factor oracle (``kind="tokens"``) or audio oracle (``"features"``)
        over the frames.
    provenance : dict
        Where the model came from: encoder, layer, K, seed, versions, input
        hash; for imports ``imported_from`` and ``import_notes``.
    vocabulary : dict or None
        ``{"params", "fit_metrics", "assigned_metrics", ...}``.
    centers : ndarray or None, shape (K, dim')
        Vocabulary centres (float32).
    ledger : list of dict
        Ledger entries in stage order.
    audio : ndarray or None, float32, shape (n_samples,)
        Mono source signal for resynthesis.
    sample_rate : int or None
        Sample rate of ``audio`` in Hz.
    source_format : str
        ``"chandra"``, ``"musichal-base"``, ``"musichal-v2"`` or
        ``"musichal-modular"``.
    extra_arrays : dict of str to ndarray
        Further numeric arrays saved with the model (e.g. a MusicHal import's
        ``frame_timestamps``, ``frame_ids``, ``feature_lengths``). Names use
        letters, digits, ``_``, ``.`` and ``-``.
    """

    events: list[dict]
    features: np.ndarray
    oracle: "Oracle | None" = None
    provenance: dict = field(default_factory=dict)
    vocabulary: dict | None = None
    centers: np.ndarray | None = None
    ledger: list[dict] = field(default_factory=list)
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    source_format: str = "chandra"
    extra_arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames (events)."""
        return len(self.events)

    @property
    def feature_dim(self) -> int:
        """Feature dimension (columns of :attr:`features`; 0 when there are none)."""
        features = np.asarray(self.features)
        return int(features.shape[1]) if features.ndim == 2 else 0

    def tokens(self) -> np.ndarray:
        """Gesture token per frame.

        Returns
        -------
        ndarray, int64, shape (n_frames,)
            ``-1`` where an event has no integer ``gesture_token``.
        """
        out = np.full(len(self.events), -1, dtype=np.int64)
        for i, event in enumerate(self.events):
            token = event.get("gesture_token") if isinstance(event, dict) else None
            if isinstance(token, (int, np.integer)) and not isinstance(token, (bool, np.bool_)):
                out[i] = int(token)
        return out

    def event_records(self, *, include_features: bool = False) -> list[dict]:
        """Shallow copies of the events, optionally with ``features`` lists.

        Parameters
        ----------
        include_features : bool
            Add ``"features": list[float]`` (row ``i`` of :attr:`features`).
        """
        if not include_features:
            return [dict(event) for event in self.events]
        rows = np.asarray(self.features).tolist()
        return [{**event, "features": row} for event, row in zip(self.events, rows)]

    def validate(self) -> None:
        """Check shapes and types that every consumer relies on.

        Raises
        ------
        ModelFormatError
            Events not a list of dicts, features not 2-D with one row per
            event, an oracle over a different number of frames, a bad
            ``centers``/``audio`` shape or an invalid extra-array name.
        """
        if not isinstance(self.events, list):
            raise ModelFormatError(f"model events must be a list of dicts, not {type(self.events).__name__}")
        for i, event in enumerate(self.events):
            if not isinstance(event, dict):
                raise ModelFormatError(f"event {i} is a {type(event).__name__}, not a dict")
        features = np.asarray(self.features)
        if features.ndim != 2 or features.shape[0] != len(self.events):
            raise ModelFormatError(
                f"features have shape {features.shape}; expected ({len(self.events)}, dim), one row per event")
        if features.dtype.kind not in "fiu":
            raise ModelFormatError(f"features have dtype {features.dtype}; expected float32")
        if self.oracle is not None and int(self.oracle.n_frames) != len(self.events):
            raise ModelFormatError(
                f"oracle covers {self.oracle.n_frames} frames but the model has {len(self.events)} events")
        if self.centers is not None and np.asarray(self.centers).ndim != 2:
            raise ModelFormatError(f"centers have shape {np.asarray(self.centers).shape}; expected (K, dim)")
        if self.audio is not None and np.asarray(self.audio).ndim != 1:
            raise ModelFormatError(f"audio has shape {np.asarray(self.audio).shape}; expected mono (n_samples,)")
        for name, array in self.extra_arrays.items():
            if not isinstance(name, str) or not _EXTRA_NAME.match(name):
                raise ModelFormatError(f"extra array name {name!r} is not a plain name")
            if np.asarray(array).dtype.kind not in "biuf":
                raise ModelFormatError(f"extra array {name!r} has dtype {np.asarray(array).dtype}; expected numeric")


# ---------------------------------------------------------------------------
# save


def _json_section(value: Any, context: str) -> Any:
    return encode_json_value(value, context=context)


def _arrays_of(model: Model) -> list[tuple[str, np.ndarray]]:
    arrays: list[tuple[str, np.ndarray]] = [("features", np.ascontiguousarray(model.features, dtype=np.float32))]
    if model.centers is not None:
        centers = np.asarray(model.centers)
        if centers.dtype.kind != "f":
            centers = centers.astype(np.float32)
        arrays.append(("centers", np.ascontiguousarray(centers)))
    if model.oracle is not None:
        oracle_arrays = model.oracle.to_arrays()
        for key in _ORACLE_ARRAYS + _ORACLE_OPTIONAL:
            arrays.append((f"oracle.{key}", np.ascontiguousarray(oracle_arrays[key], dtype=np.int64)))
    if model.audio is not None:
        arrays.append(("audio", np.ascontiguousarray(model.audio, dtype=np.float32)))
    for name in sorted(model.extra_arrays):
        arrays.append((f"extra.{name}", np.ascontiguousarray(model.extra_arrays[name])))
    return arrays


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


def save_model(model: Model, path: str | Path, *, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Write ``model`` to ``path`` as a chandra model file, atomically.

    Parameters
    ----------
    model : Model
        The model; :meth:`Model.validate` must pass.
    path : str or Path
        Destination (conventionally ``*.chandra``). Written to a temporary
        file beside it and renamed, so a failed save leaves no file and an
        existing file untouched.
    progress : callable, optional
        ``progress("save", done, total)``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ModelFormatError
        The model is inconsistent or an event field cannot be stored in JSON
        (the message names the event and the field).
    """
    path = Path(path)
    model.validate()
    events = [encode_json_value(event, context=f"event {i}") for i, event in enumerate(model.events)]
    arrays = _arrays_of(model)
    oracle_meta = None
    if model.oracle is not None:
        oracle_meta = _json_section(model.oracle.to_meta(), "oracle meta")
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "value_encoding": VALUE_ENCODING,
        "source_format": str(model.source_format),
        "n_frames": len(model.events),
        "feature_dim": int(arrays[0][1].shape[1]),
        "sample_rate": None if model.sample_rate is None else int(model.sample_rate),
        "oracle": oracle_meta,
        "provenance": _json_section(model.provenance, "provenance"),
        "vocabulary": _json_section(model.vocabulary, "vocabulary"),
        "ledger": _json_section(model.ledger, "ledger"),
        "arrays": {name: {"member": f"arrays/{name}.npy", "dtype": array.dtype.str, "shape": list(array.shape)}
                   for name, array in arrays},
        "events": events,
    }
    text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    total = len(arrays) + 1
    report(progress, "save", 0, total)
    with atomic_write(path, "wb") as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(_zip_info(_MODEL_JSON), text.encode("utf-8"))
            report(progress, "save", 1, total)
            for done, (name, array) in enumerate(arrays, start=2):
                # force_zip64 must be decided before writing a member whose
                # size the zip header cannot know in advance.
                with zf.open(_zip_info(f"arrays/{name}.npy"), "w", force_zip64=array.nbytes > (1 << 31) - 4096) as member:
                    np.save(member, array, allow_pickle=False)
                report(progress, "save", done, total)
    return path


# ---------------------------------------------------------------------------
# load


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _sniff(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot be read ({_first_line(exc)})") from None
    if not head:
        raise ModelFormatError(f"{path}: file is empty; expected a chandra model (zip) or a MusicHal JSON file")
    if head.startswith(b"PK"):
        return "zip"
    stripped = head.lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if stripped.startswith(b"{"):
        return "json"
    if stripped.startswith(b"["):
        raise ModelFormatError(
            f"{path}: JSON whose top level is a list; expected a chandra model (zip) or a MusicHal JSON object")
    if not stripped:
        raise ModelFormatError(f"{path}: file holds only whitespace; expected a chandra model or MusicHal JSON")
    preview = stripped[:16]
    raise ModelFormatError(
        f"{path}: not a chandra model (zip) or MusicHal JSON (file starts with {preview!r})")


def load_model(path: str | Path, *, progress: Callable[[str, int, int], None] | None = None) -> Model:
    """Read a chandra model file or a MusicHal 9000 JSON model.

    Parameters
    ----------
    path : str or Path
        A ``.chandra`` zip, or a MusicHal JSON file (base, v2.0 or modular
        shape; see :mod:`chandra.musichal`).
    progress : callable, optional
        ``progress("load", done, total)``.

    Returns
    -------
    Model
        ``source_format`` tells which kind of file it was.

    Raises
    ------
    ModelFormatError
        An empty, truncated, unknown or malformed file, an unsupported
        format version, arrays of the wrong shape, or a pickled member; the
        one-line message names the file and what is wrong.
    """
    path = Path(path)
    kind = _sniff(path)
    if kind == "json":
        from chandra.musichal import load_musichal

        return load_musichal(path, progress=progress)
    try:
        return _load_zip(path, progress)
    except zipfile.BadZipFile as exc:
        raise ModelFormatError(f"{path}: not a readable zip archive ({_first_line(exc)})") from None
    except (EOFError, zipfile.LargeZipFile) as exc:
        raise ModelFormatError(f"{path}: truncated or damaged zip archive ({_first_line(exc)})") from None


def _load_zip(path: Path, progress) -> Model:
    with zipfile.ZipFile(path, "r") as zf:
        names = set(zf.namelist())
        if _MODEL_JSON not in names:
            raise ModelFormatError(f"{path}: zip archive without model.json; not a chandra model")
        raw = zf.read(_MODEL_JSON)
        try:
            document = json.loads(raw.decode("utf-8"), object_hook=decode_object_hook)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path}: model.json is not valid JSON ({_first_line(exc)})") from None
        if not isinstance(document, dict):
            raise ModelFormatError(f"{path}: model.json holds a {type(document).__name__}, expected an object")
        if document.get("format") != FORMAT_NAME:
            raise ModelFormatError(
                f"{path}: model.json format is {document.get('format')!r}, expected {FORMAT_NAME!r}")
        version = document.get("format_version")
        if version not in SUPPORTED_VERSIONS:
            raise ModelFormatError(
                f"{path}: chandra model format version {version!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_VERSIONS)})")
        index = document.get("arrays")
        events = document.get("events")
        if not isinstance(index, dict) or not isinstance(events, list):
            raise ModelFormatError(f"{path}: model.json lacks its 'arrays' index or 'events' list")
        if any(not isinstance(e, dict) for e in events):
            raise ModelFormatError(f"{path}: model.json events must all be objects")
        total = len(index) + 1
        report(progress, "load", 1, total)
        arrays: dict[str, np.ndarray] = {}
        for done, (name, entry) in enumerate(index.items(), start=2):
            arrays[name] = _read_member(zf, path, name, entry, names)
            report(progress, "load", done, total)
    return _assemble(path, document, events, arrays)


def _read_member(zf: zipfile.ZipFile, path: Path, name: str, entry: Any, names: set) -> np.ndarray:
    if not isinstance(entry, dict) or not isinstance(entry.get("member"), str):
        raise ModelFormatError(f"{path}: array index entry {name!r} is malformed")
    member = entry["member"]
    if member not in names:
        raise ModelFormatError(f"{path}: array {name!r} is listed but member {member!r} is missing")
    try:
        with zf.open(member) as fh:
            array = np.load(fh, allow_pickle=False)
    except ValueError as exc:
        # NumPy refuses object arrays without allow_pickle: that refusal is
        # exactly the protection we want, reported as a format error.
        raise ModelFormatError(f"{path}: member {member!r} is not a plain numeric array ({_first_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise ModelFormatError(f"{path}: member {member!r} is unreadable ({_first_line(exc)})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise ModelFormatError(f"{path}: member {member!r} is not a numeric array")
    if entry.get("dtype") is not None and np.dtype(array.dtype).str != entry.get("dtype"):
        raise ModelFormatError(
            f"{path}: member {member!r} has dtype {array.dtype.str}, index says {entry.get('dtype')}")
    if entry.get("shape") is not None and list(array.shape) != list(entry["shape"]):
        raise ModelFormatError(
            f"{path}: member {member!r} has shape {list(array.shape)}, index says {entry['shape']}")
    return array


def _assemble(path: Path, document: dict, events: list, arrays: dict[str, np.ndarray]) -> Model:
    n = len(events)
    if "features" not in arrays:
        raise ModelFormatError(f"{path}: model has no features array")
    features = arrays["features"]
    if features.ndim != 2 or features.shape[0] != n:
        raise ModelFormatError(f"{path}: features have shape {features.shape} but there are {n} events")
    if features.dtype != np.float32:
        features = features.astype(np.float32)
    declared = document.get("n_frames")
    if declared is not None and declared != n:
        raise ModelFormatError(f"{path}: model.json says n_frames={declared} but holds {n} events")
    oracle = None
    meta = document.get("oracle")
    if meta is not None:
        required = _ORACLE_ARRAYS + (_ORACLE_OPTIONAL if document.get("format_version") != "1.0" else ())
        missing = [k for k in required if f"oracle.{k}" not in arrays]
        if missing or not isinstance(meta, dict):
            raise ModelFormatError(f"{path}: oracle arrays missing: {', '.join(missing) or 'meta'}")
        from chandra.errors import ChandraError
        from chandra.oracle import Oracle

        try:
            oracle = Oracle.from_arrays(meta, {k: arrays[f"oracle.{k}"] for k in _ORACLE_ARRAYS + _ORACLE_OPTIONAL
                                               if f"oracle.{k}" in arrays})
        except ChandraError as exc:
            raise ModelFormatError(f"{path}: oracle is invalid ({_first_line(exc)})") from None
        if int(oracle.n_frames) != n:
            raise ModelFormatError(f"{path}: oracle covers {oracle.n_frames} frames but there are {n} events")
    audio = arrays.get("audio")
    sample_rate = document.get("sample_rate")
    extra = {name[len("extra."):]: array for name, array in arrays.items() if name.startswith("extra.")}
    return Model(
        events=events,
        features=features,
        oracle=oracle,
        provenance=document.get("provenance") or {},
        vocabulary=document.get("vocabulary"),
        centers=arrays.get("centers"),
        ledger=document.get("ledger") or [],
        audio=audio,
        sample_rate=None if sample_rate is None else int(sample_rate),
        source_format=str(document.get("source_format") or "chandra"),
        extra_arrays=extra,
    )

