"""The trained model and its file format.

A :class:`Model` is everything an improvisation needs and everything a
diagnosis needs: the per-frame events, the feature matrix, the oracle, the
vocabulary, the provenance and the stage ledger.

File format (``.chandra``, versions 1.1 to 1.3)
-----------------------------------------------
An uncompressed zip archive (``ZIP_STORED``: float features do not compress,
and stored members can be read without inflating) holding

``model.json``
    ``{"format": "chandra-model", "format_version": "1.3",
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
    ``audio`` (float32) and ``extra.<name>`` for :attr:`Model.extra_arrays`;
    since 1.2 ``oracle.take_starts`` for an oracle over a corpus of takes;
    since 1.3 ``vocabulary.<name>`` for :attr:`Model.vocabulary_arrays` (the
    fitted vocabulary's ``norm_mean``, ``norm_scale``, ``pca_mean``,
    ``pca_components``, ``pca_explained_variance_ratio`` where it has them;
    with ``vocabulary["state"]`` and ``centers`` they rebuild the fitted
    :class:`~chandra.vocabulary.GestureVocabulary`, so the model can assign
    tokens to new audio, see :mod:`chandra.respond`).
``audio/take-<k>.flac`` or ``audio/take-<k>.npy`` (1.2, a corpus model with
embedded audio)
    Take ``k``'s samples (six-digit ``k``): FLAC, 24-bit, mono at the
    model's sample rate, where that is smaller than float32 and holds the
    samples exactly (a corpus model's audio is kept on the 24-bit grid), else
    a float32 ``.npy``. ``model.json`` then has ``"audio": {"layout":
    "takes", "takes": [{"member", "encoding", "frames"}, ...]}`` in file
    order, one per row of ``provenance["files"]``, instead of an ``audio``
    array. A FLAC member's stream header must declare exactly its indexed
    frames, one channel and the model's rate before a sample is decoded, it
    may declare at most :data:`MAX_FLAC_EXPANSION` bytes of samples per
    member byte, and decoding fills a buffer of the declared size and no more.
``reloaded.json`` (optional, last)
    ``{"format": "chandra-reload-check", "entry": <ledger entry>}``: the
    "reloaded" ledger entry computed from this file's own bytes after they
    were written (see :func:`save_model`); :func:`load_model` puts it in the
    ledger after "saved". Readers that do not know it lose nothing else.

Version 1.2 adds the corpus: ``provenance["files"]`` (the file table, see
:meth:`Model.files`), an int ``take`` in every event, ``oracle.take_starts``
and per-take audio. Version 1.3 adds the vocabulary's fitted state
(``vocabulary["state"]`` and the ``vocabulary.*`` arrays). A model is
written with the oldest version that holds what it has (:func:`written_version`):
one file without vocabulary state as 1.1, byte for byte as before, so older
readers keep reading what they can.

Reading is bounded (:func:`load_model`): every member must be stored
uncompressed, as written; ``model.json`` goes through
:mod:`chandra.safejson`; the array index may name only the arrays above,
each at ``arrays/<name>.npy``, and each ``.npy`` header must match its
index entry and its member's size before any data is read.

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

import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from chandra import safejson
from chandra.errors import ChandraError, ModelFormatError, first_line, reading
from chandra.safejson import MAX_NUMBER_CHARS, brief as _brief
from chandra.io_utils import atomic_path
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
    "SAMPLE_RATE_RANGE",
    "MAX_ARCHIVE_MEMBERS",
    "MAX_EMBEDDED_TAKES",
    "MAX_FLAC_EXPANSION",
    "FILE_TABLE_KEYS",
    "quantize_audio",
    "written_version",
    "VOCABULARY_ARRAYS",
]

FORMAT_NAME = "chandra-model"
#: The newest version written; a model is written with the oldest version that holds what it has.
FORMAT_VERSION = "1.3"
#: Version of models without corpus structure or vocabulary state.
BASE_FORMAT_VERSION = "1.1"
#: Version of corpus models without vocabulary state.
CORPUS_FORMAT_VERSION = "1.2"
# 1.1: oracle.rep and exact lrs (see chandra.oracle); 1.0 files load with rep = sfx.
# 1.2: corpus of takes (file table, event take, oracle.take_starts, per-take audio members).
# 1.3: the vocabulary's fitted state (vocabulary["state"] and the vocabulary.* arrays),
#      so a model can hear new audio; older files load without it (chandra.respond
#      rebuilds what it can from the centres and says what is missing otherwise).
SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
VALUE_ENCODING = "chandra-tagged-1"

_MODEL_JSON = "model.json"
_RELOAD_MEMBER = "reloaded.json"
#: Format name of the optional ``reloaded.json`` member (see :func:`save_model`).
RELOAD_FORMAT = "chandra-reload-check"
#: Largest ``reloaded.json`` member read (one ledger entry).
MAX_RELOAD_MEMBER_BYTES = 16 * 1024 * 1024
# The zip format cannot store dates before 1980; any fixed date makes saves
# reproducible byte for byte.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ORACLE_ARRAYS = ("sfx", "lrs", "trn_ptr", "trn_dst")
# Written since format 1.1; absent from 1.0 files, which load with rep = sfx
# (their lrs is the Lefebvre-Lecroq context shared with sfx).
_ORACLE_OPTIONAL = ("rep",)
# Since 1.2, only for an oracle over several takes.
_ORACLE_TAKES = ("take_starts",)
_EXTRA_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
#: Arrays of the fitted vocabulary's state beyond its centres (format 1.2), with their dimensions.
VOCABULARY_ARRAYS = {"norm_mean": 1, "norm_scale": 1, "pca_mean": 1, "pca_components": 2,
                     "pca_explained_variance_ratio": 1}
_FLOAT_TAG = "$float"
_INT_TAG = "$int"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_INT_TEXT = re.compile(r"-?[0-9]{1,%d}" % MAX_NUMBER_CHARS)
#: Sample rates (Hz) a model may declare: 1 Hz to 768 kHz, the highest rate audio interfaces offer.
SAMPLE_RATE_RANGE = (1, 768_000)
_REQUIREMENTS = {"oracle", "durations", "timing", "audio", "finite_features"}
# Provenance sections chandra writes and reads back as objects.
_PROVENANCE_SECTIONS = ("input", "encoder", "segmentation", "vocabulary", "oracle", "config", "versions", "musichal",
                        "audio")
#: Keys of a file-table row (``provenance["files"][k]``, see :meth:`Model.files`).
FILE_TABLE_KEYS = ("path", "name", "sha256", "duration", "sample_rate", "n_samples", "label", "n_events",
                   "first_event")
#: Most takes whose audio one model file embeds (one archive member each); larger corpora reference their audio.
MAX_EMBEDDED_TAKES = 4096
#: Most bytes of float32 samples a FLAC member may declare per byte it holds (silence compresses
#: far, music 1.5-3x; a member that would exceed it is written as .npy instead).
MAX_FLAC_EXPANSION = 64
_FLAC_SCALE = float(1 << 23)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
            if not _INT_TEXT.fullmatch(item):
                raise ModelFormatError(f"a tagged integer holds {_brief(item)}, not at most {MAX_NUMBER_CHARS} digits")
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
    vocabulary_arrays : dict of str to ndarray
        The fitted vocabulary's arrays besides :attr:`centers` (names in
        :data:`VOCABULARY_ARRAYS`: standardisation statistics, PCA mean and
        components), saved as ``vocabulary.<name>``; with
        ``vocabulary["state"]`` they rebuild the vocabulary
        (:meth:`chandra.vocabulary.GestureVocabulary.from_state`). Empty for
        models saved before format 1.2 and for imports.
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
    vocabulary_arrays: dict[str, np.ndarray] = field(default_factory=dict)

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
            if isinstance(token, (int, np.integer)) and not isinstance(token, (bool, np.bool_)) \
                    and -(2**63) <= token < 2**63:
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

    @property
    def is_corpus(self) -> bool:
        """True when the model carries a file table (``provenance["files"]``): a corpus of takes."""
        return isinstance(self.provenance, dict) and isinstance(self.provenance.get("files"), list)

    def files(self) -> list[dict]:
        """The files the frames came from, one row per take, in take order.

        Returns
        -------
        list of dict
            A corpus model's ``provenance["files"]``: ``path`` (as given
            when training), ``name``, ``sha256`` (of the file's bytes),
            ``duration`` (s), ``sample_rate`` (the file's own rate, Hz),
            ``n_samples`` (samples of the take at :attr:`sample_rate`),
            ``label`` (str or None), ``n_events``, ``first_event`` and the
            decoder's report ``decode``. A one-file chandra model gives one
            row built from ``provenance["input"]``; a model that says
            nothing about its source gives ``[]``.
        """
        if self.is_corpus:
            return [dict(row) for row in self.provenance["files"]]
        source = self.provenance.get("input") if isinstance(self.provenance, dict) else None
        if not isinstance(source, dict) or not source.get("path"):
            return []
        n_samples = len(self.audio) if self.audio is not None else None
        if n_samples is None and isinstance(source.get("duration"), (int, float)) and self.sample_rate:
            n_samples = int(round(float(source["duration"]) * int(self.sample_rate)))
        return [{"path": source.get("path"), "name": source.get("name"), "sha256": source.get("sha256"),
                 "duration": source.get("duration"), "sample_rate": (source.get("decode") or {}).get(
                     "file_sample_rate") if isinstance(source.get("decode"), dict) else None,
                 "n_samples": n_samples, "label": None, "n_events": len(self.events), "first_event": 0,
                 "decode": source.get("decode")}]

    def takes(self) -> np.ndarray:
        """Take (index into :meth:`files`) of every frame, int64 (n_frames,); zeros for a one-file model."""
        if not self.is_corpus:
            return np.zeros(len(self.events), dtype=np.int64)
        return np.fromiter((event.get("take") for event in self.events), dtype=np.int64, count=len(self.events))

    def take_starts(self) -> np.ndarray | None:
        """Frame index where each take begins, int64 (T,), for a corpus of two or more takes; else None."""
        if not self.is_corpus or len(self.provenance["files"]) < 2:
            return None
        return np.asarray([row["first_event"] for row in self.provenance["files"]], dtype=np.int64)

    def take_offsets(self) -> np.ndarray | None:
        """Sample offset of each take in :attr:`audio`, int64 (T + 1,) (the last is the total length).

        None without audio. A one-file model's single take is the whole signal.
        """
        if self.audio is None:
            return None
        if not self.is_corpus:
            return np.asarray([0, len(self.audio)], dtype=np.int64)
        lengths = [int(row["n_samples"]) for row in self.provenance["files"]]
        return np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))).astype(np.int64)

    def validate(self, *, require: Iterable[str] = (), name: str = "model") -> None:
        """Check every field before use: the one place a model's contents are judged.

        Always checked (what every consumer relies on): ``events`` is a list
        of dicts with string keys; ``features`` is a 2-D numeric array with
        one row per event; the oracle covers every event; ``provenance`` is a
        dict, ``vocabulary`` a dict or None, ``ledger`` a list of entries
        that pass :func:`chandra.ledger.check_entry`, ``source_format`` a
        string; ``sample_rate`` is None or an integer in
        :data:`SAMPLE_RATE_RANGE` (Hz) and is given when ``audio`` is;
        ``audio`` is None or a 1-D float array of finite samples;
        ``centers`` is None or a 2-D numeric array of finite values; extra
        arrays are numeric with plain names; the provenance sections chandra
        reads (``input``, ``encoder``, ``segmentation``, ``vocabulary``,
        ``oracle``, ``config``, ``versions``, ``musichal``) are objects and
        ``import_notes`` a list of texts; the vocabulary's ``params``,
        ``fit_metrics`` and ``assigned_metrics`` are objects. A corpus model
        (``provenance["files"]``, see :meth:`files`) must have well-typed
        rows, an int ``take`` in every event naming a row, takes in order
        with each row's ``first_event`` and ``n_events``, an oracle whose
        ``take_starts`` are those first events, and embedded audio of the
        summed ``n_samples``.

        Event *values* are not judged here unless asked for with ``require``:
        a model is loaded to be diagnosed, so odd values (epoch times, text
        where a number belongs, NaN features) are left for the ledger and the
        findings to report.

        Parameters
        ----------
        require : iterable of str
            What the caller is about to use, checked on top:

            ``"oracle"``
                an oracle is present (and has frames);
            ``"durations"``
                every event has a finite ``duration`` >= 0 (seconds);
            ``"timing"``
                every event has a finite ``t`` >= 0 and ``duration`` >= 0
                (seconds from the start of its own file), and ``t +
                duration`` lies inside the audio (of its take) when the
                model has audio;
            ``"audio"``
                ``audio`` and ``sample_rate`` are present;
            ``"finite_features"``
                ``features`` holds no NaN or infinity.
        name : str
            Names the model in messages (a file path when loading).

        Raises
        ------
        ModelFormatError
            One line naming the field, what it holds and what was expected.
        """
        require = set(require)
        unknown = require - _REQUIREMENTS
        if unknown:
            raise ValueError(f"unknown requirement(s) {sorted(unknown)}; choose from {sorted(_REQUIREMENTS)}")
        if not isinstance(self.events, list):
            raise ModelFormatError(f"{name}: events must be a list of dicts, not {type(self.events).__name__}")
        for i, event in enumerate(self.events):
            if type(event) is not dict:
                if not isinstance(event, dict):
                    raise ModelFormatError(f"{name}: event {i} is a {type(event).__name__}, not a dict")
            for key in event:
                if not isinstance(key, str):
                    raise ModelFormatError(f"{name}: event {i} has a {type(key).__name__} key; keys must be strings")
        n = len(self.events)
        features = self.features
        if not isinstance(features, np.ndarray):
            raise ModelFormatError(f"{name}: features must be a NumPy array, not {type(features).__name__}")
        if features.ndim != 2 or features.shape[0] != n:
            raise ModelFormatError(
                f"{name}: features have shape {features.shape}; expected ({n}, dim), one row per event")
        if features.dtype.kind not in "fiu":
            raise ModelFormatError(f"{name}: features have dtype {features.dtype}; expected float32")
        if self.oracle is not None:
            from chandra.oracle import Oracle

            if not isinstance(self.oracle, Oracle):
                raise ModelFormatError(f"{name}: oracle is a {type(self.oracle).__name__}, not an Oracle")
            if int(self.oracle.n_frames) != n:
                raise ModelFormatError(
                    f"{name}: oracle covers {self.oracle.n_frames} frames but the model has {n} events")
        for field_name, value, kinds in (("provenance", self.provenance, (dict,)),
                                         ("vocabulary", self.vocabulary, (dict, type(None))),
                                         ("ledger", self.ledger, (list,)),
                                         ("source_format", self.source_format, (str,)),
                                         ("extra_arrays", self.extra_arrays, (dict,)),
                                         ("vocabulary_arrays", self.vocabulary_arrays, (dict,))):
            if not isinstance(value, kinds):
                expected = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
                raise ModelFormatError(f"{name}: {field_name} is a {type(value).__name__}; expected {expected}")
        for key in _PROVENANCE_SECTIONS:
            if self.provenance.get(key) is not None and not isinstance(self.provenance[key], dict):
                raise ModelFormatError(f"{name}: provenance[{key!r}] is a {type(self.provenance[key]).__name__}; "
                                       "expected an object")
        notes = self.provenance.get("import_notes")
        if notes is not None and not (isinstance(notes, list) and all(isinstance(x, str) for x in notes)):
            raise ModelFormatError(f"{name}: provenance['import_notes'] is not a list of texts")
        if self.vocabulary is not None:
            for key in ("params", "fit_metrics", "assigned_metrics", "state"):
                if self.vocabulary.get(key) is not None and not isinstance(self.vocabulary[key], dict):
                    raise ModelFormatError(f"{name}: vocabulary[{key!r}] is a "
                                           f"{type(self.vocabulary[key]).__name__}; expected an object")
        if self.ledger:
            from chandra.ledger import check_entry

            for i, entry in enumerate(self.ledger):
                problem = check_entry(entry)
                if problem:
                    raise ModelFormatError(f"{name}: ledger entry {i} {problem}")
        sr = self.sample_rate
        if sr is not None:
            lo, hi = SAMPLE_RATE_RANGE
            if isinstance(sr, (bool, np.bool_)) or not isinstance(sr, (int, np.integer)) or not lo <= sr <= hi:
                raise ModelFormatError(f"{name}: sample_rate {_brief(sr)} is not an integer in {lo}..{hi} Hz")
        if self.audio is not None:
            audio = self.audio
            if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.dtype.kind != "f":
                shape = getattr(audio, "shape", None)
                kind = f"{getattr(audio, 'dtype', type(audio).__name__)} of shape {shape}"
                raise ModelFormatError(f"{name}: audio is {kind}; expected mono float samples, shape (n_samples,)")
            if sr is None:
                raise ModelFormatError(f"{name}: audio is present but sample_rate is missing")
            bad, first = _nonfinite(audio)
            if bad:
                raise ModelFormatError(f"{name}: audio holds {bad} non-finite samples (first at sample {first})")
        if self.centers is not None:
            centers = self.centers
            if not isinstance(centers, np.ndarray) or centers.ndim != 2 or centers.dtype.kind not in "fiu":
                raise ModelFormatError(f"{name}: centers have shape {getattr(centers, 'shape', None)}; "
                                       "expected a numeric (K, dim) array")
            if _nonfinite(centers)[0]:
                raise ModelFormatError(f"{name}: centers hold non-finite values")
        for key, array in self.extra_arrays.items():
            if not isinstance(key, str) or not _EXTRA_NAME.match(key):
                raise ModelFormatError(f"{name}: extra array name {_brief(key)} is not a plain name")
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
                raise ModelFormatError(f"{name}: extra array {key!r} has dtype "
                                       f"{getattr(array, 'dtype', type(array).__name__)}; expected numeric")
        for key, array in self.vocabulary_arrays.items():
            if key not in VOCABULARY_ARRAYS:
                raise ModelFormatError(f"{name}: vocabulary array {_brief(key)} is not one of "
                                       f"{', '.join(VOCABULARY_ARRAYS)}")
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu" \
                    or array.ndim != VOCABULARY_ARRAYS[key]:
                raise ModelFormatError(f"{name}: vocabulary array {key!r} is {getattr(array, 'dtype', '')} of shape "
                                       f"{getattr(array, 'shape', None)}; expected a {VOCABULARY_ARRAYS[key]}-D "
                                       "numeric array")
            if _nonfinite(array)[0]:
                raise ModelFormatError(f"{name}: vocabulary array {key!r} holds non-finite values")

        if self.is_corpus:
            self._validate_corpus(name)
        elif self.oracle is not None and self.oracle.take_starts is not None and len(self.oracle.take_starts) > 1:
            raise ModelFormatError(f"{name}: the oracle spans {len(self.oracle.take_starts)} takes but the model "
                                   "has no file table (provenance['files'])")

        if "oracle" in require and (self.oracle is None or n == 0):
            raise ModelFormatError(f"{name}: the model has no oracle over its frames; build one first")
        if "audio" in require and self.audio is None:
            storage = self.provenance.get("audio") if isinstance(self.provenance.get("audio"), dict) else {}
            if storage.get("storage") == "reference":
                raise ModelFormatError(f"{name}: the model references its audio files; attach them first "
                                       "(chandra.corpus.attach_audio; chandra generate does it)")
            raise ModelFormatError(f"{name}: the model has no source audio; retrain with audio embedded")
        if "finite_features" in require:
            bad, first = _nonfinite(features)
            if bad:
                raise ModelFormatError(f"{name}: features of {bad} frames hold NaN or infinity "
                                       f"(first: frame {first})")
        if "timing" in require or "durations" in require:
            self._validate_timing(name, with_t="timing" in require)

    def _validate_corpus(self, name: str) -> None:
        rows = self.provenance["files"]
        if not rows:
            raise ModelFormatError(f"{name}: provenance['files'] is empty; a corpus has at least one file")
        checks = {"path": lambda v: isinstance(v, str) and v != "",
                  "name": lambda v: v is None or isinstance(v, str),
                  "sha256": lambda v: isinstance(v, str) and bool(_SHA256.match(v)),
                  "label": lambda v: v is None or isinstance(v, str),
                  "duration": lambda v: _is_number(v) and v >= 0,
                  "sample_rate": lambda v: v is None or (_is_whole(v) and v > 0),
                  "n_samples": lambda v: _is_whole(v) and v >= 0,
                  "n_events": lambda v: _is_whole(v) and v >= 1,
                  "first_event": lambda v: _is_whole(v) and v >= 0}
        expected_first = 0
        for k, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ModelFormatError(f"{name}: file table row {k} is a {type(row).__name__}, not an object")
            for key, ok in checks.items():
                if not ok(row.get(key)):
                    raise ModelFormatError(f"{name}: file table row {k} field {key!r} is {_brief(row.get(key))}")
            if row["first_event"] != expected_first:
                raise ModelFormatError(f"{name}: file table row {k} starts at event {row['first_event']}, "
                                       f"expected {expected_first} (takes follow one another)")
            expected_first += int(row["n_events"])
        n = len(self.events)
        if expected_first != n:
            raise ModelFormatError(f"{name}: the file table accounts for {expected_first} events; the model "
                                   f"has {n}")
        for k, row in enumerate(rows):
            first = int(row["first_event"])
            for i in range(first, first + int(row["n_events"])):
                take = self.events[i].get("take")
                if take != k or not _is_whole(take):
                    raise ModelFormatError(f"{name}: event {i} has take {_brief(take)}; the file table "
                                           f"puts it in take {k}")
        starts = self.oracle.take_starts if self.oracle is not None else None
        expected = np.asarray([row["first_event"] for row in rows], dtype=np.int64)
        if self.oracle is not None and len(rows) > 1 and (
                starts is None or not np.array_equal(np.asarray(starts, dtype=np.int64), expected)):
            raise ModelFormatError(f"{name}: the oracle's take starts {_brief(None if starts is None else list(starts))}"
                                   f" differ from the file table's first events")
        if self.audio is not None:
            total = sum(int(row["n_samples"]) for row in rows)
            if total != len(self.audio):
                raise ModelFormatError(f"{name}: the file table declares {total} samples of audio; the model "
                                       f"holds {len(self.audio)}")

    def _validate_timing(self, name: str, *, with_t: bool) -> None:
        end = None
        take_ends = None
        if with_t and self.audio is not None:
            # one sample of slack for rounding in t + duration
            end = (len(self.audio) + 1) / float(self.sample_rate)
            if self.is_corpus:
                take_ends = [(int(row["n_samples"]) + 1) / float(self.sample_rate)
                             for row in self.provenance["files"]]
        fields = ("t", "duration") if with_t else ("duration",)
        for i, event in enumerate(self.events):
            if take_ends is not None:
                end = take_ends[event["take"]]
            values = []
            for key in fields:
                value = event.get(key)
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                    raise ModelFormatError(f"{name}: event {i} field {key!r} is {_brief(value)}; "
                                           "expected a number of seconds")
                value = float(value)
                if not math.isfinite(value) or value < 0:
                    raise ModelFormatError(f"{name}: event {i} field {key!r} is {value!r}; "
                                           "expected a finite number of seconds >= 0")
                values.append(value)
            if end is not None and values[0] + values[1] > end:
                where = f"take {event['take']}'s audio" if take_ends is not None else "the model's audio"
                raise ModelFormatError(f"{name}: event {i} ends at {values[0] + values[1]:.6g} s, after the "
                                       f"end of {where} ({end:.6g} s)")


def _is_whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(value)


def _nonfinite(array: np.ndarray, *, block: int = 1 << 20) -> tuple[int, int | None]:
    """Rows (or samples, for 1-D) holding NaN or infinity, and the first one, in blocks
    of about ``block`` values so a long recording needs no full-size temporary."""
    if array.dtype.kind not in "fc" or array.size == 0:
        return 0, None
    rows = array.reshape(array.shape[0], -1)
    step = max(1, block // max(1, rows.shape[1]))
    bad, first = 0, None
    for start in range(0, rows.shape[0], step):
        flags = ~np.isfinite(rows[start:start + step]).all(axis=1)
        count = int(np.count_nonzero(flags))
        if count and first is None:
            first = start + int(np.argmax(flags))
        bad += count
    return bad, first


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
        for key in _ORACLE_ARRAYS + _ORACLE_OPTIONAL + _ORACLE_TAKES:
            if key in oracle_arrays:
                arrays.append((f"oracle.{key}", np.ascontiguousarray(oracle_arrays[key], dtype=np.int64)))
    if model.audio is not None and not model.is_corpus:
        arrays.append(("audio", np.ascontiguousarray(model.audio, dtype=np.float32)))
    for name in sorted(model.vocabulary_arrays):
        array = np.asarray(model.vocabulary_arrays[name])
        arrays.append((f"vocabulary.{name}", np.ascontiguousarray(array, dtype=np.float64)))
    for name in sorted(model.extra_arrays):
        arrays.append((f"extra.{name}", np.ascontiguousarray(model.extra_arrays[name])))
    return arrays


#: Samples per block when audio is rounded to the 24-bit grid or encoded as FLAC.
_AUDIO_BLOCK = 1 << 20


def quantize_audio(y: np.ndarray) -> np.ndarray:
    """Samples rounded to the 24-bit grid (steps of 2^-23, about -138 dBFS), float32 (n,).

    A corpus model keeps its audio on this grid, so its FLAC members hold it
    exactly: the model saved and loaded back has the same samples. Works in
    blocks (float64 temporaries of :data:`_AUDIO_BLOCK` samples, not of the
    whole signal).
    """
    y = np.asarray(y)
    out = np.empty(y.shape, dtype=np.float32)
    flat_in, flat_out = y.reshape(-1), out.reshape(-1)
    for a in range(0, flat_in.size, _AUDIO_BLOCK):
        y64 = np.asarray(flat_in[a:a + _AUDIO_BLOCK], dtype=np.float64)
        flat_out[a:a + _AUDIO_BLOCK] = np.round(y64 * _FLAC_SCALE) / _FLAC_SCALE
    return out


def _flac_bytes(take: np.ndarray, sample_rate: int) -> bytes | None:
    """``take`` as a 24-bit mono FLAC stream when that holds it exactly, else None.

    Checked and encoded in blocks of :data:`_AUDIO_BLOCK` samples, so the
    temporaries are a block's, not the take's (an hour at 22 050 Hz would
    otherwise need three 640 MB copies); the stream is the same as one
    whole-take write.
    """
    import soundfile as sf

    take = np.asarray(take).reshape(-1)
    if take.size == 0:
        return None
    buffer = io.BytesIO()
    try:
        with sf.SoundFile(buffer, "w", samplerate=int(sample_rate), channels=1, format="FLAC",
                          subtype="PCM_24") as out:
            for a in range(0, take.size, _AUDIO_BLOCK):
                scaled = np.asarray(take[a:a + _AUDIO_BLOCK], dtype=np.float64) * _FLAC_SCALE
                ints = np.round(scaled)
                if not np.array_equal(ints, scaled) or ints.min() < -_FLAC_SCALE or ints.max() >= _FLAC_SCALE:
                    return None
                # libsndfile maps int32 full scale onto 24 bits: pass the samples shifted up by 8.
                out.write((ints.astype(np.int32) << 8).reshape(-1, 1))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        return None  # e.g. a sample rate FLAC cannot carry: the take is stored as .npy
    return buffer.getvalue()


def _take_audio_members(model: Model) -> list[tuple[str, str, int, Any]]:
    """Per-take audio members of a corpus model: ``(member, encoding, frames, payload)``.

    ``payload`` is the FLAC bytes or the float32 array of the take. FLAC is
    chosen when it holds the samples exactly, is smaller than the array and
    within :data:`MAX_FLAC_EXPANSION` (so the reader will accept it).
    """
    offsets = model.take_offsets()
    audio = np.ascontiguousarray(model.audio, dtype=np.float32)
    if len(offsets) - 1 > MAX_EMBEDDED_TAKES:
        raise ModelFormatError(f"a model embeds the audio of at most {MAX_EMBEDDED_TAKES} takes; this corpus has "
                               f"{len(offsets) - 1}: train it with its audio referenced (audio='reference')")
    out = []
    for k in range(len(offsets) - 1):
        take = audio[int(offsets[k]):int(offsets[k + 1])]
        flac = _flac_bytes(take, int(model.sample_rate))
        if flac is not None and len(flac) < take.nbytes and len(flac) * MAX_FLAC_EXPANSION >= take.nbytes:
            out.append((f"audio/take-{k:06d}.flac", "flac", int(take.size), flac))
        else:
            out.append((f"audio/take-{k:06d}.npy", "npy", int(take.size), take))
    return out


def written_version(model: Model) -> str:
    """The format version :func:`save_model` writes for ``model``: the oldest that holds what it has.

    1.3 with the vocabulary's fitted state, else 1.2 for a corpus, else 1.1.
    """
    if model.vocabulary_arrays or (isinstance(model.vocabulary, dict) and "state" in model.vocabulary):
        return FORMAT_VERSION
    takes = model.oracle is not None and model.oracle.take_starts is not None
    return CORPUS_FORMAT_VERSION if model.is_corpus or takes else BASE_FORMAT_VERSION


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


def save_model(model: Model, path: str | Path, *, progress: Callable[[str, int, int], None] | None = None,
               reload_check: Callable[[Model], dict] | None = None) -> Path:
    """Write ``model`` to ``path`` as a chandra model file, atomically.

    Parameters
    ----------
    model : Model
        The model; :meth:`Model.validate` must pass.
    path : str or Path
        Destination (conventionally ``*.chandra``). Written to a temporary
        file beside it and renamed, so a failed save leaves no file and an
        existing file untouched (see :func:`chandra.io_utils.atomic_path`).
    progress : callable, optional
        ``progress("save", done, total)``.
    reload_check : callable, optional
        ``reload_check(reloaded_model) -> dict``: called with the model read
        back from the written temporary file (before it is renamed into
        place); the ledger entry it returns is appended to the archive as
        the small member ``reloaded.json``, which :func:`load_model` adds to
        the ledger. So the file carries a record of what came back from its
        own bytes, with one write of the model and one read.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ModelFormatError
        The model is inconsistent or an event field cannot be stored in JSON
        (the message names the event and the field), or the written file
        does not read back.
    """
    path = Path(path)
    model.validate()
    events = [encode_json_value(event, context=f"event {i}") for i, event in enumerate(model.events)]
    arrays = _arrays_of(model)
    take_audio = _take_audio_members(model) if model.is_corpus and model.audio is not None else []
    oracle_meta = None
    if model.oracle is not None:
        oracle_meta = _json_section(model.oracle.to_meta(), "oracle meta")
    document = {
        "format": FORMAT_NAME,
        "format_version": written_version(model),
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
    if take_audio:
        document["audio"] = {"layout": "takes", "takes": [{"member": member, "encoding": encoding, "frames": frames}
                                                          for member, encoding, frames, _ in take_audio]}
    text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    total = len(arrays) + len(take_audio) + 1
    report(progress, "save", 0, total)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED,
                                                      allowZip64=True) as zf:
            zf.writestr(_zip_info(_MODEL_JSON), text.encode("utf-8"))
            report(progress, "save", 1, total)
            for done, (name, array) in enumerate(arrays, start=2):
                # force_zip64 must be decided before writing a member whose
                # size the zip header cannot know in advance.
                with zf.open(_zip_info(f"arrays/{name}.npy"), "w", force_zip64=array.nbytes > (1 << 31) - 4096) as member:
                    np.save(member, array, allow_pickle=False)
                report(progress, "save", done, total)
            for done, (name, encoding, _, payload) in enumerate(take_audio, start=len(arrays) + 2):
                size = len(payload) if encoding == "flac" else payload.nbytes
                with zf.open(_zip_info(name), "w", force_zip64=size > (1 << 31) - 4096) as member:
                    if encoding == "flac":
                        member.write(payload)
                    else:
                        np.save(member, payload, allow_pickle=False)
                report(progress, "save", done, total)
        if reload_check is not None:
            entry = reload_check(load_model(tmp))
            if not isinstance(entry, dict):
                raise TypeError(f"reload_check must return a ledger entry dict, not {type(entry).__name__}")
            member = {"format": RELOAD_FORMAT, "entry": encode_json_value(entry, context="reload check entry")}
            with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                zf.writestr(_zip_info(_RELOAD_MEMBER),
                            json.dumps(member, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
    return path


# ---------------------------------------------------------------------------
# load


def _sniff(path: Path) -> str:
    with reading(str(path), expected="a model file"), open(path, "rb") as fh:
        head = fh.read(4096)
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
    # Never quote the file: it may be anything the process can read.
    raise ModelFormatError(f"{path}: not a chandra model (zip) or MusicHal JSON (neither a zip archive nor "
                           "a JSON object)")


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
        ``source_format`` tells which kind of file it was; it has passed
        :meth:`Model.validate`.

    Raises
    ------
    ModelFormatError
        An empty, truncated, unknown or malformed file, an unsupported
        format version, arrays of the wrong shape, a compressed or
        oversized member, a pickled member, a JSON document beyond the
        limits of :mod:`chandra.safejson`, or a field that fails
        :meth:`Model.validate`; the one-line message names the file and
        what is wrong, and never quotes the file's contents.
    """
    path = Path(path)
    kind = _sniff(path)
    if kind == "json":
        from chandra.musichal import load_musichal

        model = load_musichal(path, progress=progress)
    else:
        try:
            model = _load_zip(path, progress)
        except zipfile.BadZipFile as exc:
            raise ModelFormatError(f"{path}: not a readable zip archive ({first_line(exc)})") from None
        except (EOFError, zipfile.LargeZipFile) as exc:
            raise ModelFormatError(f"{path}: truncated or damaged zip archive ({first_line(exc)})") from None
    model.validate(name=str(path))
    return model


#: Most members a model archive may hold (chandra writes model.json, about ten arrays and, for a
#: corpus, one audio member per take).
MAX_ARCHIVE_MEMBERS = 1024 + MAX_EMBEDDED_TAKES
#: Largest ``model.json`` read (it is parsed whole: about ten times its size in memory).
MAX_MODEL_JSON_BYTES = safejson.MAX_DOCUMENT_BYTES
_FIXED_ARRAYS = {"features": 2, "centers": 2, "audio": 1,
                 **{f"oracle.{k}": 1 for k in _ORACLE_ARRAYS + _ORACLE_OPTIONAL + _ORACLE_TAKES},
                 **{f"vocabulary.{k}": ndim for k, ndim in VOCABULARY_ARRAYS.items()}}
_TAKE_MEMBER = re.compile(r"^audio/take-([0-9]{6})\.(flac|npy)$")
_MAX_EXTRA_NDIM = 4
_MAX_NPY_HEADER = 65536


def _member_count(fh: Any) -> int | None:
    """Entries the zip's end-of-central-directory record declares (None if unknown)."""
    end_rec = getattr(zipfile, "_EndRecData", None)
    index = getattr(zipfile, "_ECD_ENTRIES_TOTAL", None)
    if end_rec is None or index is None:  # pragma: no cover - private zipfile API changed
        return None
    try:
        record = end_rec(fh)
    except OSError:
        return None
    fh.seek(0)
    return None if not record else int(record[index])


def _load_zip(path: Path, progress) -> Model:
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        declared_members = _member_count(raw)
        if declared_members is not None and declared_members > MAX_ARCHIVE_MEMBERS:
            raise ModelFormatError(f"{path}: zip archive declares {declared_members} members; a chandra model "
                                   f"has at most {MAX_ARCHIVE_MEMBERS}")
        with zipfile.ZipFile(raw, "r") as zf:
            members = _check_members(zf, path, size)
            if _MODEL_JSON not in members:
                raise ModelFormatError(f"{path}: zip archive without model.json; not a chandra model")
            info = members[_MODEL_JSON]
            if info.file_size > MAX_MODEL_JSON_BYTES:
                raise ModelFormatError(f"{path}: model.json is {info.file_size} bytes, beyond the "
                                       f"{MAX_MODEL_JSON_BYTES}-byte limit")
            document = safejson.loads(zf.read(info), f"{path} (model.json)", object_hook=decode_object_hook,
                                      max_bytes=MAX_MODEL_JSON_BYTES)
            if not isinstance(document, dict):
                raise ModelFormatError(f"{path}: model.json holds a {type(document).__name__}, expected an object")
            if document.get("format") != FORMAT_NAME:
                raise ModelFormatError(
                    f"{path}: model.json format is {_brief(document.get('format'))}, expected {FORMAT_NAME!r}")
            version = document.get("format_version")
            if version not in SUPPORTED_VERSIONS:
                raise ModelFormatError(
                    f"{path}: chandra model format version {_brief(version)} is not supported "
                    f"(supported: {', '.join(SUPPORTED_VERSIONS)})")
            index = document.get("arrays")
            events = document.get("events")
            if not isinstance(index, dict) or not isinstance(events, list):
                raise ModelFormatError(f"{path}: model.json lacks its 'arrays' index or 'events' list")
            if any(not isinstance(e, dict) for e in events):
                raise ModelFormatError(f"{path}: model.json events must all be objects")
            if _RELOAD_MEMBER in members:
                document["ledger"] = _merge_reload_entry(path, zf, members[_RELOAD_MEMBER], document.get("ledger"))
            plan = _plan_arrays(path, index, members, size)
            audio_plan = _plan_take_audio(path, document, members, size)
            if audio_plan and "audio" in index:
                raise ModelFormatError(f"{path}: model holds both an 'audio' array and per-take audio")
            total = len(plan) + len(audio_plan) + 1
            report(progress, "load", 1, total)
            arrays: dict[str, np.ndarray] = {}
            for done, (name, member, dtype, shape) in enumerate(plan, start=2):
                arrays[name] = _read_member(zf, path, member, dtype, shape)
                report(progress, "load", done, total)
            if audio_plan:
                audio = np.empty(sum(frames for _, _, frames in audio_plan), dtype=np.float32)
                at = 0
                for done, (member, encoding, frames) in enumerate(audio_plan, start=len(plan) + 2):
                    if encoding == "npy":
                        audio[at:at + frames] = _read_member(zf, path, member, np.dtype("<f4"), (frames,))
                    else:
                        _read_flac_member(zf, path, member, frames, document.get("sample_rate"),
                                          audio[at:at + frames])
                    at += frames
                    report(progress, "load", done, total)
                arrays["audio"] = audio
    return _assemble(path, document, events, arrays)


def _plan_take_audio(path: Path, document: dict, members: dict[str, zipfile.ZipInfo],
                     size: int) -> list[tuple[str, str, int]]:
    """Check a 1.2 model's per-take audio index before reading any of it: ``[(member, encoding, frames)]``."""
    section = document.get("audio")
    if section is None:
        return []
    if document.get("format_version") in ("1.0", "1.1"):
        raise ModelFormatError(f"{path}: per-take audio needs format version 1.2, the file says "
                               f"{_brief(document.get('format_version'))}")
    takes = section.get("takes") if isinstance(section, dict) and section.get("layout") == "takes" else None
    if not isinstance(takes, list):
        raise ModelFormatError(f"{path}: model.json 'audio' must be {{'layout': 'takes', 'takes': [...]}}")
    if len(takes) > MAX_EMBEDDED_TAKES:
        raise ModelFormatError(f"{path}: model.json lists audio for {len(takes)} takes; a model embeds at most "
                               f"{MAX_EMBEDDED_TAKES}")
    plan = []
    declared = 0
    for k, entry in enumerate(takes):
        if not isinstance(entry, dict):
            raise ModelFormatError(f"{path}: audio entry {k} is not an object")
        member, encoding, frames = entry.get("member"), entry.get("encoding"), entry.get("frames")
        match = _TAKE_MEMBER.match(member) if isinstance(member, str) else None
        if match is None or int(match.group(1)) != k or match.group(2) != encoding:
            raise ModelFormatError(f"{path}: audio entry {k} must name member 'audio/take-{k:06d}.flac' or "
                                   f"'.npy' with its encoding, not {_brief(member)} / {_brief(encoding)}")
        if member not in members:
            raise ModelFormatError(f"{path}: audio member {member!r} is listed but missing")
        if not _is_whole(frames) or frames < 0:
            raise ModelFormatError(f"{path}: audio entry {k} declares {_brief(frames)} frames")
        nbytes = int(frames) * 4
        held = members[member].file_size
        limit = held if encoding == "npy" else held * MAX_FLAC_EXPANSION
        if nbytes > limit:
            raise ModelFormatError(
                f"{path}: audio member {member!r} declares {frames} samples ({nbytes} bytes) in {held} bytes"
                + ("" if encoding == "npy" else f", beyond the {MAX_FLAC_EXPANSION}x a FLAC member may expand"))
        declared += nbytes
        plan.append((member, encoding, int(frames)))
    if declared > size * MAX_FLAC_EXPANSION:
        raise ModelFormatError(f"{path}: the audio members declare {declared} bytes of samples in a {size}-byte file")
    return plan


def _read_flac_member(zf: zipfile.ZipFile, path: Path, member: str, frames: int, sample_rate: Any,
                      out: np.ndarray) -> None:
    """Decode one FLAC take into ``out`` (float32, ``frames`` long) after checking its stream header.

    The header must declare FLAC, one channel, ``sample_rate`` and exactly
    ``frames`` frames before anything is decoded; at most ``frames`` frames
    are decoded (into a buffer of that size), and fewer is an error.
    """
    import soundfile as sf

    with zf.open(zf.getinfo(member)) as fh:
        try:
            with sf.SoundFile(fh, "r") as stream:
                declared = (stream.format, stream.channels, stream.samplerate, stream.frames)
                if declared != ("FLAC", 1, sample_rate, frames):
                    raise ModelFormatError(
                        f"{path}: audio member {member!r} declares {stream.format} {stream.channels} channel(s) at "
                        f"{stream.samplerate} Hz, {stream.frames} frames; the model says FLAC, 1 channel at "
                        f"{_brief(sample_rate)} Hz, {frames} frames")
                ints = np.empty((frames, 1), dtype=np.int32)
                got = stream.read(frames, dtype="int32", out=ints) if frames else ints
        except ModelFormatError:
            raise
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError, OSError,
                zipfile.BadZipFile) as exc:
            raise ModelFormatError(f"{path}: audio member {member!r} is not a readable FLAC stream "
                                   f"({first_line(exc)})") from None
    if len(got) != frames:
        raise ModelFormatError(f"{path}: audio member {member!r} holds {len(got)} of its {frames} declared frames")
    np.divide(ints[:, 0] >> 8, _FLAC_SCALE, out=out, casting="unsafe")


def _check_members(zf: zipfile.ZipFile, path: Path, size: int) -> dict[str, zipfile.ZipInfo]:
    """Every member stored (not compressed), unencrypted, inside the file, named once."""
    members: dict[str, zipfile.ZipInfo] = {}
    infos = zf.infolist()
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        raise ModelFormatError(f"{path}: zip archive holds {len(infos)} members; a chandra model has at most "
                               f"{MAX_ARCHIVE_MEMBERS}")
    for info in infos:
        shown = _member_label(info.filename)
        if info.filename in members:
            raise ModelFormatError(f"{path}: zip archive holds member {shown} twice")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelFormatError(
                f"{path}: member {shown} is compressed (zip method {info.compress_type}); chandra models store "
                "every member uncompressed, so a compressed one is refused rather than inflated")
        if info.flag_bits & 0x1:
            raise ModelFormatError(f"{path}: member {shown} is encrypted")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
            raise ModelFormatError(f"{path}: member {shown} declares {info.file_size} bytes, which the "
                                   f"{size}-byte file cannot hold")
        members[info.filename] = info
    return members


def _merge_reload_entry(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, ledger: Any) -> Any:
    """The ledger with the ``reloaded.json`` entry in place of any "reloaded" entry (after "saved")."""
    if info.file_size > MAX_RELOAD_MEMBER_BYTES:
        raise ModelFormatError(f"{path}: reloaded.json is {info.file_size} bytes, beyond the "
                               f"{MAX_RELOAD_MEMBER_BYTES}-byte limit")
    record = safejson.loads(zf.read(info), f"{path} (reloaded.json)", object_hook=decode_object_hook)
    entry = record.get("entry") if isinstance(record, dict) and record.get("format") == RELOAD_FORMAT else None
    if not isinstance(entry, dict) or entry.get("stage") != "reloaded":
        raise ModelFormatError(f"{path}: reloaded.json is not a chandra reload-check record")
    if not isinstance(ledger, list):
        return ledger  # Model.validate reports it
    out = [e for e in ledger if not (isinstance(e, dict) and e.get("stage") == "reloaded")]
    saved = [i for i, e in enumerate(out) if isinstance(e, dict) and e.get("stage") == "saved"]
    out.insert(saved[-1] + 1 if saved else len(out), entry)
    return out


def _member_label(name: str) -> str:
    return repr(name) if len(name) <= 60 and name.isprintable() else f"of a {len(name)}-character name"


def _plan_arrays(path: Path, index: dict, members: dict[str, zipfile.ZipInfo],
                 size: int) -> list[tuple[str, str, np.dtype, tuple[int, ...]]]:
    """Check the whole array index against the archive before reading any array.

    Each entry must name a known array, point at its own member
    (``arrays/<name>.npy``, so no member is read twice), and declare a
    numeric dtype and a shape whose byte size fits its member; the declared
    sizes together must fit in the file.
    """
    plan = []
    declared_total = 0
    for name, entry in index.items():
        if name in _FIXED_ARRAYS:
            max_ndim = _FIXED_ARRAYS[name]
        elif name.startswith("extra.") and _EXTRA_NAME.match(name[len("extra."):]):
            max_ndim = _MAX_EXTRA_NDIM
        else:
            raise ModelFormatError(f"{path}: the array index names an unknown array {_brief(name)}")
        member = f"arrays/{name}.npy"
        if not isinstance(entry, dict) or entry.get("member") != member:
            raise ModelFormatError(f"{path}: array index entry {name!r} must point at member {member!r}")
        if member not in members:
            raise ModelFormatError(f"{path}: array {name!r} is listed but member {member!r} is missing")
        try:
            dtype = np.dtype(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
        except (TypeError, ValueError):
            dtype = None
        if dtype is None or dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
            raise ModelFormatError(f"{path}: array {name!r} declares dtype {_brief(entry.get('dtype'))}; "
                                   "expected a numeric NumPy dtype string such as '<f4'")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not 1 <= len(shape) <= max_ndim or any(
                isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
            raise ModelFormatError(f"{path}: array {name!r} declares shape {_brief(shape)}; expected a list of "
                                   f"at most {max_ndim} non-negative integers")
        nbytes = math.prod(shape) * dtype.itemsize
        available = members[member].file_size
        if nbytes > available:
            raise ModelFormatError(f"{path}: array {name!r} declares {nbytes} bytes ({dtype.str} {shape}) but its "
                                   f"member holds {available}")
        declared_total += nbytes
        plan.append((name, member, dtype, tuple(shape)))
    if declared_total > size:
        raise ModelFormatError(f"{path}: the arrays declare {declared_total} bytes in a {size}-byte file")
    return plan


def _read_member(zf: zipfile.ZipFile, path: Path, member: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Read one ``.npy`` member whose header must match the index exactly.

    The header is checked before any data is read: dtype and shape as the
    index declares them, and header plus data exactly the member's size.
    Object arrays (pickles) are refused by the dtype check.
    """
    fmt = np.lib.format
    info = zf.getinfo(member)
    with zf.open(info) as fh:
        try:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                got_shape, fortran, got_dtype = fmt.read_array_header_1_0(fh, max_header_size=_MAX_NPY_HEADER)
            elif version == (2, 0):
                got_shape, fortran, got_dtype = fmt.read_array_header_2_0(fh, max_header_size=_MAX_NPY_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, SyntaxError, TypeError, EOFError) as exc:
            raise ModelFormatError(f"{path}: member {member!r} is not a readable .npy array "
                                   f"({type(exc).__name__})") from None
        if got_dtype.kind not in "biuf" or got_dtype.fields is not None:
            raise ModelFormatError(f"{path}: member {member!r} is not a plain numeric array")
        if got_dtype.str != dtype.str or tuple(got_shape) != shape:
            raise ModelFormatError(f"{path}: member {member!r} holds {got_dtype.str} {list(got_shape)}, "
                                   f"the index says {dtype.str} {list(shape)}")
        nbytes = math.prod(shape) * dtype.itemsize
        if fh.tell() + nbytes != info.file_size:
            raise ModelFormatError(f"{path}: member {member!r} is {info.file_size} bytes; its header and "
                                   f"{dtype.str} {list(shape)} data need {fh.tell() + nbytes}")
        buffer = bytearray(nbytes)
        view = memoryview(buffer)
        got = 0
        while got < nbytes:
            chunk = fh.read(min(1 << 24, nbytes - got))
            if not chunk:
                raise ModelFormatError(f"{path}: member {member!r} is truncated")
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        fh.read(1)  # reach the end of the member, so zipfile checks its CRC
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


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
        raise ModelFormatError(f"{path}: model.json says n_frames={_brief(declared)} but holds {n} events")
    oracle = None
    meta = document.get("oracle")
    if meta is not None:
        required = _ORACLE_ARRAYS + (_ORACLE_OPTIONAL if document.get("format_version") != "1.0" else ())
        missing = [k for k in required if f"oracle.{k}" not in arrays]
        if missing or not isinstance(meta, dict):
            raise ModelFormatError(f"{path}: oracle arrays missing: {', '.join(missing) or 'meta'}")
        from chandra.oracle import Oracle

        try:
            oracle = Oracle.from_arrays(meta, {k: arrays[f"oracle.{k}"]
                                               for k in _ORACLE_ARRAYS + _ORACLE_OPTIONAL + _ORACLE_TAKES
                                               if f"oracle.{k}" in arrays})
        except ChandraError as exc:
            raise ModelFormatError(f"{path}: oracle is invalid ({first_line(exc)})") from None
        if int(oracle.n_frames) != n:
            raise ModelFormatError(f"{path}: oracle covers {oracle.n_frames} frames but there are {n} events")
    extra = {name[len("extra."):]: array for name, array in arrays.items() if name.startswith("extra.")}
    vocabulary_arrays = {name[len("vocabulary."):]: array for name, array in arrays.items()
                         if name.startswith("vocabulary.")}
    provenance = document.get("provenance")
    ledger = document.get("ledger")
    source_format = document.get("source_format")
    # Values are taken as they are; Model.validate (called by load_model) judges them.
    return Model(
        events=events,
        features=features,
        oracle=oracle,
        provenance={} if provenance is None else provenance,
        vocabulary=document.get("vocabulary"),
        centers=arrays.get("centers"),
        ledger=[] if ledger is None else ledger,
        audio=arrays.get("audio"),
        sample_rate=document.get("sample_rate"),
        source_format="chandra" if source_format is None else source_format,
        extra_arrays=extra,
        vocabulary_arrays=vocabulary_arrays,
    )
