"""The ledger: what survives each stage boundary.

A ledger entry is a small JSON-able summary of the records at one stage
boundary (segments, features, normalised, tokens, events, oracle, saved,
reloaded, generated, or any checkpoint name a foreign trainer chooses):

* per field, how many records carry it (present: key exists, value not None
  and not a float NaN) as a count and a fraction;
* the token distribution (:func:`token_stats`, the one implementation of
  the token statistics; :func:`chandra.vocabulary.token_metrics` is its
  strict form. It lives here, free of scikit-learn, so that
  :mod:`chandra.trace` stays cheap to import inside somebody else's
  trainer);
* feature-matrix statistics (dimension, norms, dead and never-used
  dimensions, duplicates, all-zero and non-finite rows, zero-padding);
* the time axis (range, monotonicity, share inside the audio duration);
* optionally a summary of an oracle's health and invariant violations.

Entries hold no per-record lists except the token histogram, so a ledger of
a long recording stays a few kilobytes. Judging an entry (is a field lost, a
vocabulary collapsed, a time axis wall-clock?) is :mod:`chandra.findings`'
job; this module only measures.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from chandra.errors import ChandraError

__all__ = [
    "LEDGER_STAGES",
    "TIME_FIELDS",
    "TOKEN_FIELD",
    "FEATURE_FIELD",
    "to_records",
    "is_present",
    "ledger_entry",
    "model_ledger_entry",
    "token_stats",
    "feature_stats",
    "time_stats",
    "oracle_summary",
    "field_matrix",
    "json_safe",
    "stringified_container",
    "is_number_text",
    "token_feature_agreement",
    "STRINGIFIED_MAX_CHARS",
    "check_entry",
    "add_per_file",
    "TAKE_FIELD",
]

#: Canonical ledger boundaries (what the records are after each step), in
#: pipeline order. Not the pipeline's stages (the steps themselves, load ...
#: save): those are :data:`chandra.pipeline.STAGES`.
LEDGER_STAGES = (
    "segments", "features", "normalised", "tokens", "events",
    "oracle", "saved", "reloaded", "generated",
)
#: Record keys tried, in order, for the time axis of a stage.
TIME_FIELDS = ("t", "start", "time", "timestamp")
#: Field of a corpus record naming its take (row of the model's file table).
TAKE_FIELD = "take"
#: Record key holding a record's gesture token.
TOKEN_FIELD = "gesture_token"
#: Record key (or ``features=`` argument) holding a record's feature vector.
FEATURE_FIELD = "features"

# Rows are reduced in blocks so that a 100k x 768 matrix never needs a second
# full-size temporary.
_BLOCK_ROWS = 4096
# A token histogram wider than this is not a vocabulary (ids are probably
# hashes or frame numbers); it is summarised by distinct values instead.
_MAX_HISTOGRAM = 65536
# Tolerance (seconds) when asking whether a time lies inside [0, duration]:
# onset times are quantised to hops, so the last one may overshoot slightly.
_TIME_TOLERANCE_S = 0.05


# ---------------------------------------------------------------------------
# record normalisation
# ---------------------------------------------------------------------------


def _object_to_dict(item: Any) -> dict:
    if isinstance(item, Mapping):
        return dict(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        # Not dataclasses.asdict: it deep-copies every nested array.
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    if hasattr(item, "_asdict"):  # namedtuple
        return dict(item._asdict())
    if hasattr(item, "__dict__"):
        return {k: v for k, v in vars(item).items() if not k.startswith("_")}
    slots = getattr(type(item), "__slots__", None)
    if slots:
        names = [slots] if isinstance(slots, str) else list(slots)
        return {n: getattr(item, n) for n in names if not n.startswith("_") and hasattr(item, n)}
    raise ChandraError(
        f"cannot read a record from a {type(item).__name__}: give dicts, dataclasses, "
        "objects with attributes, or a pandas DataFrame"
    )


def _columns_to_records(columns: Mapping[str, Any]) -> list[dict] | None:
    """Rows of a column mapping whose values are equal-length 1-D+ arrays, else None."""
    lengths = set()
    for value in columns.values():
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            lengths.add(value.shape[0])
        elif isinstance(value, (list, tuple)):
            lengths.add(len(value))
        else:
            return None
    if len(lengths) != 1:
        return None
    n = lengths.pop()
    names = list(columns)
    return [{name: columns[name][i] for name in names} for i in range(n)]


def to_records(obj: Any) -> list[dict]:
    """Normalise any record container to a list of dicts.

    Parameters
    ----------
    obj : list of dict | pandas.DataFrame | list of objects | columnar object | None
        Accepted shapes: a sequence of mappings, dataclass instances,
        namedtuples or plain objects (their public attributes); a pandas
        DataFrame (one record per row); a numpy structured array; a single
        dataclass or mapping whose values are all equal-length arrays
        (columnar, e.g. :class:`chandra.segment.Segments`); ``None`` (no
        records).

    Returns
    -------
    list of dict
        Shallow copies; values are not converted.

    Raises
    ------
    ChandraError
        When the container or an item cannot be read as records.
    """
    if obj is None:
        return []
    # pandas is duck-typed so that importing the ledger never imports pandas.
    if hasattr(obj, "to_dict") and hasattr(obj, "columns") and hasattr(obj, "iloc"):
        return obj.to_dict(orient="records")
    if isinstance(obj, np.ndarray):
        if obj.dtype.names:
            return [{name: row[name] for name in obj.dtype.names} for row in obj]
        raise ChandraError(
            f"a plain {obj.ndim}-D array is not a record container; pass records and "
            "give the matrix as features="
        )
    if isinstance(obj, Mapping):
        rows = _columns_to_records(obj)
        if rows is None:
            raise ChandraError(
                "a single mapping is read as columns and needs equal-length list/array "
                "values; wrap a single record in a list"
            )
        return rows
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        rows = _columns_to_records(_object_to_dict(obj))
        if rows is None:
            raise ChandraError(
                f"{type(obj).__name__} is not columnar (fields of equal length); "
                "wrap a single record in a list"
            )
        return rows
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        raise ChandraError(f"cannot read records from a {type(obj).__name__}")
    return [_object_to_dict(item) for item in obj]


def is_present(value: Any) -> bool:
    """True when a field value counts as present: not None and not a float NaN."""
    if value is None:
        return False
    if isinstance(value, (float, np.floating)):
        return not math.isnan(value)
    return True


def _type_name(value: Any) -> str:
    """Coarse JSON-level type, so a round trip (numpy -> JSON -> python) compares equal."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "sequence"
    if isinstance(value, Mapping):
        return "mapping"
    return type(value).__name__


def _scalar_key(value: Any) -> Any:
    """Hashable value for constancy checks, or None when not a plain scalar."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str) and len(value) <= 200:
        return value
    return None


#: Longest string inspected for a stringified container (longer ones are
#: never parsed: the check must stay cheap and bounded on untrusted files).
STRINGIFIED_MAX_CHARS = 4096
# Deepest bracket nesting handed to the parser; deeper text is not parsed.
_STRINGIFIED_MAX_DEPTH = 20
# Parses per field per entry; the rest of a field's candidates are counted as
# candidates only (the finding says how many were checked).
_STRINGIFIED_MAX_PARSES = 2000
_BRACKETS = {"{": "}", "[": "]", "(": ")"}
_NUMBER_TEXT = re.compile(
    r"^[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)$", re.IGNORECASE)
# str() of a numpy array: numbers separated by blanks, "..." where elided, brackets per axis.
_NDARRAY_TEXT = re.compile(
    r"^\[[\[\]\s]*(?:[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|nan|inf)[\[\]\s]*|\.\.\.[\[\]\s]*)+$",
    re.IGNORECASE)
_DECIMAL_INT = re.compile(r"^-?\d+$")


def is_number_text(value: Any) -> bool:
    """True for a short string that spells a number (``"60"``, ``"0.5"``, ``"nan"``)."""
    return isinstance(value, str) and len(value) <= 64 and bool(_NUMBER_TEXT.match(value.strip()))


def _bracket_depth(text: str) -> int:
    depth = best = 0
    for ch in text:
        if ch in "[{(":
            depth += 1
            best = max(best, depth)
        elif ch in "]})":
            depth -= 1
    return best


_LITERAL_NAMES = frozenset({"inf", "nan", "infinity", "Infinity", "NaN", "True", "False", "None",
                            "true", "false", "null"})
_CONTAINER_NODES = {ast.Dict: "dict", ast.List: "list", ast.Tuple: "tuple", ast.Set: "set"}


def _literal_tree(node: ast.AST) -> bool:
    """Only literals: containers, constants, signs, and the bare names str() and JSON print."""
    if isinstance(node, (ast.Dict, ast.List, ast.Tuple, ast.Set)):
        children = ([k for k in node.keys if k is not None] + node.values) if isinstance(node, ast.Dict) \
            else node.elts
        return all(_literal_tree(child) for child in children)
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _literal_tree(node.operand)
    if isinstance(node, ast.Name):
        return node.id in _LITERAL_NAMES
    return False


def stringified_container(value: Any) -> str | None:
    """The container type a string is the ``str()``/``repr()`` (or JSON text) of, else None.

    A field value such as ``"{'a': 1}"``, ``"[1, 2]"``, ``'{"a": 1}'`` or
    ``"[0.1 0.2 0.3]"`` (``str`` of a numpy array) is a container that was
    turned into text on its way into the field. Recognised without evaluating
    anything: the text must be at most :data:`STRINGIFIED_MAX_CHARS` long,
    open and close with matching brackets and nest at most 20 deep; then it
    is parsed (never evaluated) with :func:`ast.parse` and accepted only when
    the tree holds nothing but containers, constants, signs and the bare
    names ``str()`` and JSON print (``inf``, ``nan``, ``True``, ``null``, …),
    or it matches the numpy array print format.

    Returns
    -------
    str or None
        ``"dict"``, ``"list"``, ``"tuple"``, ``"set"`` or ``"ndarray"``.
    """
    if not isinstance(value, str) or len(value) > STRINGIFIED_MAX_CHARS:
        return None
    text = value.strip()
    if len(text) < 2:
        return None
    if text.startswith("array(") and text.endswith(")"):
        return "ndarray"
    if _BRACKETS.get(text[0]) != text[-1] or _bracket_depth(text) > _STRINGIFIED_MAX_DEPTH:
        return None
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        tree = None
    if tree is not None and type(tree) in _CONTAINER_NODES and _literal_tree(tree):
        return _CONTAINER_NODES[type(tree)]
    if text[0] == "[" and _NDARRAY_TEXT.match(text):
        return "ndarray"
    return None


def _key_kind(key: Any) -> str:
    """Coarse type of a mapping key (:func:`_type_name`); decimal-integer strings are told apart from other text."""
    if isinstance(key, str) and _DECIMAL_INT.match(key):
        return "int-str"
    return _type_name(key)


class _TextStats:
    """Per-field counters of suspicious text and mapping keys (only built when seen)."""

    __slots__ = ("candidates", "checked", "stringified", "kinds", "example", "numeric", "numeric_example",
                 "key_kinds")

    def __init__(self) -> None:
        self.candidates = self.checked = self.stringified = self.numeric = 0
        self.kinds: dict[str, int] = {}
        self.example: str | None = None
        self.numeric_example: str | None = None
        self.key_kinds: set[str] = set()

    def text(self, value: str) -> None:
        head = value[:1] if value[:1] not in (" ", "\t", "\n") else value.lstrip()[:1]
        if head in ("[", "{", "(") or (head == "a" and value.lstrip().startswith("array(")):
            self.candidates += 1
            if self.checked < _STRINGIFIED_MAX_PARSES:
                self.checked += 1
                kind = stringified_container(value)
                if kind is not None:
                    self.stringified += 1
                    self.kinds[kind] = self.kinds.get(kind, 0) + 1
                    if self.example is None:
                        self.example = value[:60] + ("..." if len(value) > 60 else "")
        elif is_number_text(value):
            self.numeric += 1
            if self.numeric_example is None:
                self.numeric_example = value[:20]

    def info(self) -> dict:
        out: dict[str, Any] = {}
        if self.stringified:
            out["stringified"] = {"count": self.stringified, "checked": self.checked,
                                  "candidates": self.candidates, "kinds": dict(sorted(self.kinds.items())),
                                  "example": self.example}
        if self.numeric:
            out["numeric_strings"] = {"count": self.numeric, "example": self.numeric_example}
        if self.key_kinds:
            out["key_types"] = sorted(self.key_kinds)
        return out


def _field_summary(records: Sequence[Mapping], extra: Iterable[str]) -> dict[str, dict]:
    n = len(records)
    counts: dict[str, int] = {}
    types: dict[str, set] = {}
    first: dict[str, Any] = {}
    constant: dict[str, bool] = {}
    text: dict[str, _TextStats] = {}
    for rec in records:
        for key, value in rec.items():
            key = str(key)
            if key not in counts:
                counts[key] = 0
                types[key] = set()
                constant[key] = True
            if not is_present(value):
                continue
            counts[key] += 1
            types[key].add(_type_name(value))
            if isinstance(value, str):
                stats = text.get(key)
                if stats is None:
                    stats = text[key] = _TextStats()
                stats.text(value)
            elif isinstance(value, Mapping):
                stats = text.get(key)
                if stats is None:
                    stats = text[key] = _TextStats()
                if len(stats.key_kinds) < 8:
                    for k in list(value)[:64]:
                        stats.key_kinds.add(_key_kind(k))
            if constant[key]:
                sk = _scalar_key(value)
                if sk is None:
                    constant[key] = False
                elif key not in first:
                    first[key] = sk
                elif first[key] != sk:
                    constant[key] = False
    for key in extra:
        if key not in counts:
            counts[key] = 0
            types[key] = set()
            constant[key] = False
    out: dict[str, dict] = {}
    for key, count in counts.items():
        info: dict[str, Any] = {
            "present": int(count),
            "fraction": float(count / n) if n else 0.0,
            "types": sorted(types[key]),
        }
        # Only scalar fields seen at least twice can be "stuck"; one value is no evidence.
        if constant[key] and count >= 2 and key in first:
            info["constant"] = first[key]
        if key in text:
            info.update(text[key].info())
        out[key] = info
    return out


# ---------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------


def token_stats(tokens: Any, *, n_tokens: int | None = None) -> dict:
    """Distribution statistics of a token sequence, tolerant of bad ids.

    The one implementation of the token statistics: the ledger, the
    findings, the dashboard and (through
    :func:`chandra.vocabulary.token_metrics`, which first refuses bad ids)
    the vocabulary's fit-set and assigned metrics all come from here. Where
    ``token_metrics`` raises on an id outside ``[0, K)`` this function counts
    it, because a diagnostic must describe broken data rather than refuse it.

    Parameters
    ----------
    tokens : sequence, shape (n,)
        Token ids; None, NaN and -1 count as missing. Integer-valued floats
        count as their integer.
    n_tokens : int, optional
        Vocabulary size K. Defaults to ``max id + 1``.

    Returns
    -------
    dict
        ``n`` (records given), ``present`` (records with an integer id,
        in range or not), ``missing`` (None / NaN / -1, plus non-integers),
        ``unique`` (distinct ids present) and ``active`` (= unique),
        ``n_tokens`` (K), ``entropy_bits`` (Shannon, base 2, over present
        ids; each distinct out-of-range id is a symbol of its own),
        ``max_entropy_bits`` (log2 K, 0 when K <= 1), ``normalised_entropy``
        (H / log2 K, 0 when K <= 1), ``perplexity`` (2**H; 0 when nothing is
        present), ``top_token`` (most frequent id, lowest id on ties; None
        when nothing is present), ``top_share`` (its share of present ids),
        ``counts`` (list of K ints, None when K > 65536),
        ``empty_tokens`` (ids in ``[0, K)`` never used; None when K >
        65536), ``out_of_range`` (ids outside ``[0, K)``), ``non_integer``
        (values that are not integer ids, e.g. ``"x"``, ``True``, ``2.5``).
    """
    missing = 0
    non_integer = 0
    if isinstance(tokens, np.ndarray) and tokens.ndim == 1 and tokens.dtype.kind in "iu":
        # The common case (a pipeline's token array) without a Python loop.
        ids = tokens.astype(np.int64)
        absent = ids == -1
        missing = int(np.count_nonzero(absent))
        arr = ids[~absent]
    else:
        values: list[int] = []
        seq = tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)
        for v in seq:
            if not is_present(v):
                missing += 1
                continue
            if isinstance(v, (bool, np.bool_)):
                non_integer += 1
                continue
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                v = int(v)
            if isinstance(v, (int, np.integer)):
                if int(v) == -1:
                    missing += 1
                elif -(2**63) <= int(v) < 2**63:
                    values.append(int(v))
                else:  # not an id any vocabulary could have (beyond int64)
                    non_integer += 1
            else:
                non_integer += 1
        arr = np.asarray(values, dtype=np.int64)
    if n_tokens is None:
        n_tokens = int(arr.max()) + 1 if arr.size and arr.max() >= 0 else 0
    k = int(n_tokens)
    in_range = (arr >= 0) & (arr < k) if k > 0 else np.zeros(arr.shape, dtype=bool)
    out_of_range = int(arr.size - np.count_nonzero(in_range))
    good = arr[in_range]
    n_present = int(arr.size)
    if k <= _MAX_HISTOGRAM:
        counts = np.bincount(good, minlength=k).astype(np.int64) if k else np.zeros(0, np.int64)
        empty = np.flatnonzero(counts == 0).tolist()
        hist_counts = counts
    else:
        _, hist_counts = np.unique(good, return_counts=True)
        counts = None
        empty = None
    # Out-of-range ids still shape the distribution: each distinct one is a symbol.
    _, oor_counts = np.unique(arr[~in_range], return_counts=True)
    dist = np.concatenate([hist_counts[hist_counts > 0], oor_counts]).astype(np.float64)
    unique = int(dist.size)
    if n_present:
        p = dist / n_present
        entropy = max(float(-(p * np.log2(p)).sum()), 0.0)
        top_idx = int(np.argmax(hist_counts)) if hist_counts.size else None
        top_count = int(hist_counts[top_idx]) if top_idx is not None else 0
        if oor_counts.size and oor_counts.max() > top_count:
            top_count = int(oor_counts.max())
            top_token = int(np.unique(arr[~in_range])[np.argmax(oor_counts)])
        else:
            top_token = (int(np.unique(good)[top_idx]) if counts is None else top_idx)
        top_share = top_count / n_present
    else:
        entropy, top_token, top_share = 0.0, None, 0.0
    max_entropy = math.log2(k) if k > 1 else 0.0
    return {
        "n": n_present + missing + non_integer,
        "present": n_present,
        "missing": missing + non_integer,
        "unique": unique,
        "active": unique,
        "n_tokens": k,
        "entropy_bits": entropy,
        "max_entropy_bits": max_entropy,
        "normalised_entropy": entropy / max_entropy if max_entropy > 0 else 0.0,
        "perplexity": float(2.0**entropy) if n_present else 0.0,
        "top_token": top_token,
        "top_share": float(top_share),
        "counts": counts.tolist() if counts is not None else None,
        "empty_tokens": empty,
        "out_of_range": out_of_range,
        "non_integer": non_integer,
    }


# ---------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------


def _feature_rows(records: Sequence[Mapping]) -> tuple[np.ndarray | None, dict]:
    """Stack the ``features`` vectors found in records (zero-padding ragged rows)."""
    vectors = []
    for rec in records:
        value = rec.get(FEATURE_FIELD)
        if not is_present(value):
            continue
        if isinstance(value, (list, tuple, np.ndarray)):
            vectors.append(np.asarray(value, dtype=np.float64).ravel())
    if not vectors:
        return None, {}
    lengths = np.fromiter((v.size for v in vectors), dtype=np.int64, count=len(vectors))
    dim = int(lengths.max())
    matrix = np.zeros((len(vectors), dim), dtype=np.float64)
    for i, v in enumerate(vectors):
        matrix[i, : v.size] = v
    notes = {}
    if lengths.min() != dim:
        notes = {"ragged": True, "row_dim_min": int(lengths.min()), "row_dim_max": dim}
    return matrix, notes


def feature_stats(features: Any) -> dict | None:
    """Statistics of a feature matrix, computed block-wise.

    Parameters
    ----------
    features : array-like, shape (n, d)

    Returns
    -------
    dict or None
        None for an empty matrix. Otherwise ``n_rows``, ``dim``,
        ``norm_min/norm_mean/norm_max`` (L2, finite rows), ``dead_dims``
        (dimensions with zero variance, i.e. max == min over finite rows; 0
        with fewer than two rows), ``nonzero_dims`` (dimensions non-zero in
        at least one row), ``effective_dim_median`` (median count of non-zero
        entries per row), ``used_dim_max`` (largest ``last non-zero index + 1``
        over rows), ``padded_rows`` (rows whose trailing zeros cover at least
        half of ``dim``, counted only when ``dim >= 32``), ``duplicate_rate``
        (share of finite rows equal to an earlier row), ``zero_rows``,
        ``nonfinite_rows``.
    """
    X = np.asarray(features)
    if X.ndim == 1:
        X = X.reshape(-1, 1) if X.size else X.reshape(0, 0)
    if X.ndim != 2 or X.shape[0] == 0:
        return None
    n, d = X.shape
    col_min = np.full(d, np.inf)
    col_max = np.full(d, -np.inf)
    col_nonzero = np.zeros(d, dtype=bool)
    norms: list[np.ndarray] = []
    eff_dims: list[np.ndarray] = []
    used: list[np.ndarray] = []
    zero_rows = 0
    nonfinite_rows = 0
    seen: set[bytes] = set()
    duplicates = 0
    for start in range(0, n, _BLOCK_ROWS):
        block = np.asarray(X[start : start + _BLOCK_ROWS], dtype=np.float64)
        finite = np.isfinite(block).all(axis=1)
        nonfinite_rows += int(np.count_nonzero(~finite))
        fb = block[finite]
        if fb.shape[0] == 0:
            continue
        nz = fb != 0
        col_min = np.minimum(col_min, fb.min(axis=0))
        col_max = np.maximum(col_max, fb.max(axis=0))
        col_nonzero |= nz.any(axis=0)
        counts = nz.sum(axis=1)
        zero_rows += int(np.count_nonzero(counts == 0))
        eff_dims.append(counts)
        # last non-zero index + 1 per row (0 for an all-zero row)
        last = d - np.argmax(nz[:, ::-1], axis=1)
        used.append(np.where(counts > 0, last, 0))
        norms.append(np.sqrt(np.einsum("ij,ij->i", fb, fb)))
        for row in np.asarray(fb, dtype=np.float32):
            key = row.tobytes()
            if key in seen:
                duplicates += 1
            else:
                seen.add(key)
    n_finite = n - nonfinite_rows
    if n_finite:
        all_norms = np.concatenate(norms)
        all_eff = np.concatenate(eff_dims)
        all_used = np.concatenate(used)
        dead = int(np.count_nonzero(col_max == col_min)) if n_finite >= 2 else 0
        padded = int(np.count_nonzero((d - all_used) * 2 >= d)) if d >= 32 else 0
        stats_norm = (float(all_norms.min()), float(all_norms.mean()), float(all_norms.max()))
        eff_median = float(np.median(all_eff))
        used_max = int(all_used.max())
    else:
        dead, padded, eff_median, used_max = 0, 0, 0.0, 0
        stats_norm = (None, None, None)
    return {
        "n_rows": int(n),
        "dim": int(d),
        "norm_min": stats_norm[0],
        "norm_mean": stats_norm[1],
        "norm_max": stats_norm[2],
        "dead_dims": dead,
        "nonzero_dims": int(np.count_nonzero(col_nonzero)),
        "effective_dim_median": eff_median,
        "used_dim_max": used_max,
        "padded_rows": padded,
        "duplicate_rate": float(duplicates / n_finite) if n_finite else 0.0,
        "zero_rows": zero_rows,
        "nonfinite_rows": nonfinite_rows,
    }


# ---------------------------------------------------------------------------
# tokens against features
# ---------------------------------------------------------------------------

#: Rows compared at most (evenly spaced) when checking tokens against features.
AGREEMENT_MAX_ROWS = 20000
#: Distinct tokens above which the centroid check is not attempted (ids are
#: then not a vocabulary, e.g. frame numbers).
AGREEMENT_MAX_TOKENS = 4096
#: Rows (in tokens with at least two rows) needed before token centroids are judged.
AGREEMENT_MIN_ROWS = 20
#: Without centres, tokens are judged only when random tokens of the same
#: counts agree on at most ``1 - AGREEMENT_MIN_SEPARATION`` of the rows.
AGREEMENT_MIN_SEPARATION = 0.1
# Relative tolerance on squared distances: a row whose own token's centre is
# as near as the nearest centre within it agrees (ties, float32 rounding).
_AGREE_RTOL = 1e-6
_AGREE_ATOL = 1e-12


def _token_ids(values: Sequence[Any]) -> np.ndarray:
    """int64 ids, -1 where a value is missing, negative or not an integer."""
    out = np.full(len(values), -1, dtype=np.int64)
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not is_present(v):
            continue
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        if isinstance(v, (int, np.integer)) and 0 <= int(v) < 2**63:
            out[i] = int(v)
    return out


def _nearest_agreement(X: np.ndarray, rows: np.ndarray, own: np.ndarray, C: np.ndarray,
                       transform: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """For rows ``X[rows]`` (optionally transformed): does centre ``own[i]`` lie as
    near as the nearest centre (within tolerance)? And which centre is nearest.
    Works block by block, so only one block is ever copied to float64."""
    C64 = np.asarray(C, dtype=np.float64)
    cc = np.einsum("ij,ij->i", C64, C64)
    agree = np.zeros(rows.size, dtype=bool)
    nearest = np.zeros(rows.size, dtype=np.int64)
    for start in range(0, rows.size, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, rows.size)
        B = np.asarray(X[rows[start:stop]], dtype=np.float64)
        if transform is not None:
            B = transform(B)
        d2 = np.einsum("ij,ij->i", B, B)[:, None] - 2.0 * (B @ C64.T) + cc[None, :]
        np.maximum(d2, 0.0, out=d2)
        best = d2.min(axis=1)
        mine = d2[np.arange(B.shape[0]), own[start:stop]]
        agree[start:stop] = mine <= best * (1.0 + _AGREE_RTOL) + _AGREE_ATOL
        nearest[start:stop] = np.argmin(d2, axis=1)
    return agree, nearest


def _sample_rows(n: int, limit: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _group_means(X: np.ndarray, rows: np.ndarray, group: np.ndarray, n_groups: int,
                 transforms: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Mean of the rows ``X[rows]`` per group, in each transformed space, in
    one O(n d) pass without a full-size copy."""
    order = np.argsort(group, kind="stable")
    rows, group = rows[order], group[order]
    sums = {name: np.zeros((n_groups, X.shape[1]), dtype=np.float64) for name in transforms}
    for start in range(0, rows.size, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, rows.size)
        raw = np.asarray(X[rows[start:stop]], dtype=np.float64)
        g = group[start:stop]
        heads = np.concatenate([[0], np.flatnonzero(np.diff(g)) + 1])
        for name, transform in transforms.items():
            sums[name][g[heads]] += np.add.reduceat(transform(raw), heads, axis=0)
    counts = np.maximum(np.bincount(group, minlength=n_groups).astype(np.float64), 1.0)[:, None]
    return {name: total / counts for name, total in sums.items()}


def _nearest_agreements(X: np.ndarray, rows: np.ndarray, own: np.ndarray, means: Mapping[str, np.ndarray],
                        transforms: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`_nearest_agreement` in several spaces, reading each block of rows once."""
    out = {name: (np.zeros(rows.size, dtype=bool), np.zeros(rows.size, dtype=np.int64)) for name in transforms}
    for start in range(0, rows.size, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, rows.size)
        raw = np.asarray(X[rows[start:stop]], dtype=np.float64)
        for name, transform in transforms.items():
            agree, nearest = _nearest_agreement(transform(raw), np.arange(stop - start), own[start:stop],
                                                means[name])
            out[name][0][start:stop] = agree
            out[name][1][start:stop] = nearest
    return out


def _l2_rows(B: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(B, axis=1, keepdims=True)
    return B / np.where(norms > 0, norms, 1.0)


def token_feature_agreement(features: Any, tokens: Any, *, centers: Any = None,
                            max_rows: int = AGREEMENT_MAX_ROWS) -> dict | None:
    """Whether each record's token is the vocabulary's assignment of its features.

    A token is the index of the centre nearest to the record's (normalised)
    feature vector. Smoothing the token sequence, re-assigning tokens after
    the fact or fitting the vocabulary on other features all break that, and
    no token histogram shows it.

    With the vocabulary's ``centers`` (in the space of ``features``) the
    check is exact: a row agrees when its token's centre is the nearest one
    (ties within a relative 1e-6 count as agreeing). Without centres (a
    MusicHal file, a trace), the tokens' own mean feature vectors stand in:
    K-means stops at a fixed point where every row is nearest the mean of its
    own token, so tokens that are the nearest-centre assignment of these
    features agree (almost) everywhere, and smoothed or re-assigned tokens do
    not. The means are tried on the features as stored, L2-normalised and
    standardised (the vocabulary may have clustered any of them) and the
    best agreement is reported; only rows of tokens with at least two rows
    are judged (a single row is its own mean). Because a row pulls its own
    token's mean towards itself, the same token counts dealt at random also
    agree on some share (``chance_agreement``, high for weakly clustered
    high-dimensional features); ``consistency`` = (agreement - chance) /
    (1 - chance) is the share of rows whose token the features support
    beyond chance, and nothing is judged when chance exceeds 90 %.

    Parameters
    ----------
    features : array (n, d)
        Row i belongs to token i.
    tokens : sequence (n,)
        Token ids; None, NaN, negative or non-integer values are not judged.
    centers : array (K, d'), optional
        Vocabulary centres in the features' space.
    max_rows : int
        Rows judged at most (evenly spaced) against centres; a quarter of it
        against token means. The means use every row.

    Returns
    -------
    dict or None
        None when no row has both a token and a finite feature vector.
        Otherwise ``method`` (``"centres"`` or ``"token-centroids"``),
        ``n_rows`` (rows with both), ``checked``, ``agree``, ``disagree``,
        ``agreement`` (share of checked rows), ``examples`` (up to five
        ``{row, token, nearest}`` that disagree); for centroids also
        ``n_tokens``, ``space`` and ``spaces`` (agreement per space tried),
        ``chance_agreement`` and ``consistency``;
        ``skipped`` (why nothing was judged) with ``centres_dim`` /
        ``features_dim`` when the centres do not fit the features.
    """
    X = np.asarray(features)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        return None
    ids = _token_ids(tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens))
    n = min(X.shape[0], ids.shape[0])
    X, ids = X[:n], ids[:n]
    finite = np.ones(n, dtype=bool)
    for start in range(0, n, _BLOCK_ROWS):
        finite[start: start + _BLOCK_ROWS] = np.isfinite(
            np.asarray(X[start: start + _BLOCK_ROWS], dtype=np.float64)).all(axis=1)
    rows = np.flatnonzero(finite & (ids >= 0))
    if rows.size == 0:
        return None
    out: dict[str, Any] = {"n_rows": int(rows.size)}
    if centers is not None:
        C = np.asarray(centers, dtype=np.float64)
        out.update(method="centres", n_centres=int(C.shape[0]) if C.ndim == 2 else 0)
        if C.ndim != 2 or C.shape[1] != X.shape[1]:
            out.update(skipped="the vocabulary's centres and the features differ in dimension",
                       centres_dim=int(C.shape[1]) if C.ndim == 2 else None, features_dim=int(X.shape[1]))
            return out
        rows = rows[ids[rows] < C.shape[0]]
        if rows.size == 0:
            out["skipped"] = "no token is an index of a centre"
            return out
        pick = rows[_sample_rows(rows.size, max_rows)]
        agree, nearest = _nearest_agreement(X, pick, ids[pick], C)
        out.update(_agreement_counts(pick, ids, agree, nearest))
        return out

    out["method"] = "token-centroids"
    uniq, inv, counts = np.unique(ids[rows], return_inverse=True, return_counts=True)
    out["n_tokens"] = int(uniq.size)
    if uniq.size > AGREEMENT_MAX_TOKENS:
        out["skipped"] = f"{uniq.size} distinct token ids is not a vocabulary"
        return out
    judged = np.flatnonzero(counts[inv] >= 2)
    if judged.size < AGREEMENT_MIN_ROWS or np.count_nonzero(counts >= 2) < 2:
        out["skipped"] = (f"too few rows per token to judge without the vocabulary's centres "
                          f"({judged.size} rows in tokens with two or more rows)")
        return out
    pick = judged[_sample_rows(judged.size, max(1, max_rows // 4))]
    # Three passes over the rows in all: per-dimension moments (for the
    # standardised space), the per-token sums of every space, and the
    # judged rows against every space's means.
    total = np.zeros(X.shape[1])
    total_sq = np.zeros(X.shape[1])
    for start in range(0, rows.size, _BLOCK_ROWS):
        B = np.asarray(X[rows[start: start + _BLOCK_ROWS]], dtype=np.float64)
        total += B.sum(axis=0)
        total_sq += np.einsum("ij,ij->j", B, B)
    mean = total / rows.size
    sd = np.sqrt(np.maximum(total_sq / rows.size - mean**2, 0.0))
    sd = np.where(sd > 1e-12 * np.maximum(np.abs(mean), 1.0), sd, 1.0)
    transforms = {"as stored": lambda B: B, "l2-normalised": _l2_rows,
                  "standardised": lambda B: (B - mean) / sd}
    means = _group_means(X, rows, inv, uniq.size, transforms)
    results = _nearest_agreements(X, rows[pick], inv[pick], means, transforms)
    spaces = {space: float(np.count_nonzero(agree) / agree.size) for space, (agree, _) in results.items()}
    space = max(spaces, key=spaces.get)  # first of equals: the features as stored
    agree, nearest = results[space]
    out.update(space=space, spaces=spaces)
    out.update(_agreement_counts(rows[pick], ids, agree, uniq[nearest]))
    # Chance level: the same token counts dealt at random. In high dimensions a
    # row pulls its own token's mean towards itself, so even random tokens can
    # agree often; only the agreement above chance says anything.
    shuffled = np.random.default_rng(0).permutation(inv)
    one = {space: transforms[space]}
    chance_pick = pick[counts[shuffled[pick]] >= 2]
    if chance_pick.size:
        chance_means = _group_means(X, rows, shuffled, uniq.size, one)
        chance_agree, _ = _nearest_agreements(X, rows[chance_pick], shuffled[chance_pick], chance_means, one)[space]
        chance = float(np.count_nonzero(chance_agree) / chance_agree.size)
    else:
        chance = 0.0
    out["chance_agreement"] = chance
    if chance > 1.0 - AGREEMENT_MIN_SEPARATION:
        out["skipped"] = (f"the features hardly separate the tokens (tokens dealt at random agree on {chance:.0%}): "
                          "cannot judge without the vocabulary's centres")
        return out
    out["consistency"] = float(max(0.0, (out["agreement"] - chance) / (1.0 - chance)))
    return out


def _agreement_counts(rows: np.ndarray, ids: np.ndarray, agree: np.ndarray, nearest: np.ndarray) -> dict:
    bad = np.flatnonzero(~agree)
    return {
        "checked": int(agree.size),
        "agree": int(np.count_nonzero(agree)),
        "disagree": int(bad.size),
        "agreement": float(np.count_nonzero(agree) / agree.size) if agree.size else 1.0,
        "examples": [{"row": int(rows[i]), "token": int(ids[rows[i]]), "nearest": int(nearest[i])}
                     for i in bad[:5]],
    }


# ---------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------


def time_stats(records: Sequence[Mapping], *, duration: float | None = None) -> dict | None:
    """Range and order of the records' time axis.

    The first key of :data:`TIME_FIELDS` that some record carries as a number
    is the time axis.

    Returns
    -------
    dict or None
        None when no record has a numeric time. Otherwise ``field``, ``n``,
        ``t_min``, ``t_max`` (seconds as given), ``duration`` (the audio
        duration passed in, or None), ``monotonic`` (non-decreasing in record
        order), ``n_decreasing`` (steps where t goes backwards),
        ``fraction_in_range`` (share with ``0 <= t <= duration`` plus a small
        tolerance; None without a duration).
    """
    for field in TIME_FIELDS:
        values = [
            float(rec[field]) for rec in records
            if isinstance(rec.get(field), (int, float, np.integer, np.floating))
            and not isinstance(rec.get(field), (bool, np.bool_))
            and math.isfinite(float(rec[field]))
        ]
        if values:
            break
    else:
        return None
    t = np.asarray(values, dtype=np.float64)
    steps = np.diff(t)
    n_decreasing = int(np.count_nonzero(steps < 0))
    in_range = None
    if duration is not None:
        ok = (t >= -_TIME_TOLERANCE_S) & (t <= float(duration) + _TIME_TOLERANCE_S)
        in_range = float(np.count_nonzero(ok) / t.size)
    return {
        "field": field,
        "n": int(t.size),
        "t_min": float(t.min()),
        "t_max": float(t.max()),
        "duration": float(duration) if duration is not None else None,
        "monotonic": n_decreasing == 0,
        "n_decreasing": n_decreasing,
        "fraction_in_range": in_range,
    }


# ---------------------------------------------------------------------------
# oracle
# ---------------------------------------------------------------------------


def oracle_summary(oracle: Any, *, symbols: Any = None, features: Any = None) -> dict:
    """Health numbers and invariant violations of an oracle, JSON-able.

    Parameters
    ----------
    oracle : chandra.oracle.Oracle
    symbols : sequence of int, optional
        The token sequence of a factor oracle (enables the LRS context check).
    features : array (n, d), optional
        The frames of an audio oracle (enables the threshold check).

    Returns
    -------
    dict
        :func:`chandra.oracle.oracle_health` (``kind``, ``n_states``,
        ``n_frames``, ``n_transitions``, ``root_out_degree``,
        ``sfx_to_root_share``, ``sfx_to_previous_share``, LRS statistics and
        histogram, ``transition_density``, ``threshold``, ``metric``) plus
        ``violations`` ({invariant code: states violating it}),
        ``violation_severity`` ({code: "error"|"warning"}) and
        ``violation_examples`` (first few :func:`chandra.oracle.check_oracle`
        records).
    """
    # Imported here: the oracle module pulls numba, which the trace path avoids.
    from chandra.oracle import check_oracle, oracle_health

    from chandra.errors import OracleError

    summary: dict[str, Any] = dict(oracle_health(oracle))
    try:
        violations = check_oracle(oracle, symbols=symbols, features=features)
    except OracleError as exc:
        # Inputs unusable for the context checks (e.g. missing tokens): check
        # the structure alone and say why the rest was skipped.
        summary["check_note"] = f"context checks skipped: {exc}"
        violations = check_oracle(oracle)
    codes: dict[str, int] = {}
    severities: dict[str, str] = {}
    for v in violations:
        # check_oracle caps records per code but gives each the total count.
        codes[v["code"]] = max(codes.get(v["code"], 0), int(v.get("count", 1) or 1))
        if severities.get(v["code"]) != "error":
            severities[v["code"]] = str(v.get("severity", "error"))
    summary["violations"] = codes
    summary["violation_severity"] = severities
    summary["violation_examples"] = [_json_safe_small(v, 16) for v in violations[:5]]
    return _json_safe_small(summary)


def _json_safe_small(value: Any, limit: int | None = None) -> Any:
    """Plain-Python copy with NaN -> None; lists cut to ``limit`` items when given."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe_small(v, limit) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        items = value if limit is None else value[:limit]
        return [_json_safe_small(v, limit) for v in items]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# ---------------------------------------------------------------------------
# entries
# ---------------------------------------------------------------------------


def _entry_agreement(recs: Sequence[Mapping], matrix: np.ndarray | None, token_values: list | None,
                     centers: Any) -> dict | None:
    """Tokens against features for an entry: the matrix row by row, else the
    records that carry both a token and a vector of the common length."""
    if token_values is None:
        return None
    if matrix is not None:
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            return None
        return token_feature_agreement(matrix, token_values, centers=centers)
    vectors, tokens = [], []
    for rec, tok in zip(recs, token_values):
        value = rec.get(FEATURE_FIELD)
        if isinstance(value, (list, tuple, np.ndarray)) and is_present(tok):
            vectors.append(value)
            tokens.append(tok)
    if not vectors:
        return None
    lengths = {len(v) if not isinstance(v, np.ndarray) else v.size for v in vectors}
    if len(lengths) != 1:
        return None  # ragged vectors: FEATURES_LOW_DIM's evidence already says so
    try:
        matrix = np.asarray([np.asarray(v, dtype=np.float64).ravel() for v in vectors])
    except (TypeError, ValueError):
        return None
    return token_feature_agreement(matrix, tokens, centers=centers)


def ledger_entry(
    stage: str,
    records: Any,
    *,
    features: Any = None,
    tokens: Any = None,
    n_tokens: int | None = None,
    duration: float | None = None,
    fields: Iterable[str] | None = None,
    oracle: Any = None,
    symbols: Any = None,
    centers: Any = None,
    provenance: Mapping | None = None,
) -> dict:
    """Summarise the records at one stage boundary.

    Parameters
    ----------
    stage : str
        Boundary name (see :data:`LEDGER_STAGES`) or any checkpoint name.
    records : list of dict | DataFrame | list of objects | columnar object | None
        See :func:`to_records`.
    features : array (n, d), optional
        Feature matrix, row i belonging to record i. Adds the field
        ``"features"``, present for each row that exists and is entirely
        finite (an all-zero row is present: it is a vector, just a suspicious
        one, and is counted in ``features.zero_rows``). Without it, vectors
        stored in the records' ``"features"`` key are summarised.
    tokens : sequence of int (n,), optional
        Token per record. Adds the field ``"gesture_token"`` (present where
        the id is not None/NaN/-1). Without it, the records'
        ``"gesture_token"`` values are used.
    n_tokens : int, optional
        Vocabulary size K for the token histogram and entropy ceiling.
    duration : float, optional
        Audio duration in seconds, to judge the time axis against.
    fields : iterable of str, optional
        Field names always listed (with count 0 when absent).
    oracle : chandra.oracle.Oracle, optional
        Adds ``"oracle"`` (see :func:`oracle_summary`).
    symbols : sequence of int, optional
        Symbols the oracle was built from, for its invariant check; defaults
        to the stage tokens for a ``"tokens"`` oracle.
    centers : array (K, d), optional
        The vocabulary's centres in the space of ``features``: makes the
        tokens-against-features check exact (see
        :func:`token_feature_agreement`).
    provenance : mapping, optional
        What the producer declares about this stage (e.g. ``{"encoder":
        {...}, "vocabulary": {...}}``), kept under ``"provenance"`` so the
        findings can compare a vocabulary's declared origin with the encoder
        in use.

    Returns
    -------
    dict
        ``stage``, ``n_records``, ``fields`` ({name: {present, fraction,
        types[, constant][, stringified][, numeric_strings][, key_types]}}),
        ``tokens`` (:func:`token_stats` or None), ``features``
        (:func:`feature_stats` or None), ``time`` (:func:`time_stats` or
        None); ``token_features`` (:func:`token_feature_agreement`) where
        records carry both tokens and feature vectors; with ``oracle``,
        ``oracle``; with ``provenance``, ``provenance``.
    """
    recs = to_records(records)
    n = len(recs)
    feat_matrix = None
    feat_notes: dict = {}
    if features is not None:
        feat_matrix = np.asarray(features)
        if feat_matrix.ndim == 1:
            feat_matrix = feat_matrix.reshape(-1, 1)
        n = max(n, int(feat_matrix.shape[0]))
    token_values = None
    if tokens is not None:
        token_values = tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)
        n = max(n, len(token_values))

    extra = list(fields or [])
    field_info = _field_summary(recs, extra)
    if feat_matrix is not None:
        finite_rows = 0
        for start in range(0, feat_matrix.shape[0], _BLOCK_ROWS):
            block = feat_matrix[start : start + _BLOCK_ROWS]
            finite_rows += int(np.count_nonzero(np.isfinite(block).all(axis=1)))
        field_info[FEATURE_FIELD] = {
            "present": finite_rows,
            "fraction": finite_rows / n if n else 0.0,
            "types": ["sequence"] if finite_rows else [],
        }
    if token_values is not None:
        present = sum(1 for v in token_values if is_present(v) and v != -1)
        field_info[TOKEN_FIELD] = {
            "present": present,
            "fraction": present / n if n else 0.0,
            "types": ["int"] if present else [],
        }
    # Records shorter than the matrices: their fractions are over the longer n.
    if n != len(recs):
        for key, info in field_info.items():
            info["fraction"] = info["present"] / n if n else 0.0

    if token_values is None and TOKEN_FIELD in field_info:
        token_values = [rec.get(TOKEN_FIELD) for rec in recs]
    tok = token_stats(token_values, n_tokens=n_tokens) if token_values is not None else None

    if feat_matrix is None:
        feat_matrix, feat_notes = _feature_rows(recs)
    feats = feature_stats(feat_matrix) if feat_matrix is not None else None
    if feats is not None and feat_notes:
        feats.update(feat_notes)

    entry: dict[str, Any] = {
        "stage": str(stage),
        "n_records": int(n),
        "fields": field_info,
        "tokens": tok,
        "features": feats,
        "time": time_stats(recs, duration=duration),
    }
    agreement = _entry_agreement(recs, feat_matrix if features is not None else None, token_values, centers)
    if agreement is not None:
        entry["token_features"] = agreement
    if provenance is not None:
        entry["provenance"] = json_safe(provenance, max_items=64, max_chars=500, max_keys=64)
    if oracle is not None:
        if symbols is None and getattr(oracle, "kind", None) == "tokens" and token_values is not None \
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in token_values):
            symbols = token_values
        feat_for_oracle = None
        if getattr(oracle, "kind", None) == "features" and features is not None:
            feat_for_oracle = features
        entry["oracle"] = oracle_summary(oracle, symbols=symbols, features=feat_for_oracle)
    return entry


def add_per_file(entry: dict, records: Any, *, takes: Any, durations: Sequence[float] | None = None,
                 features: Any = None, tokens: Any = None, n_tokens: int | None = None,
                 histogram: bool = False) -> dict:
    """Add the per-file view of a corpus entry: ``entry["per_file"]``, and a time axis judged per take.

    A corpus lays several takes end to end; each record's time ``t`` counts
    from the start of its own file. So the time section is re-judged take
    by take: ``duration`` becomes the longest take's, ``fraction_in_range``
    counts each record against its own take's duration, and ``monotonic`` /
    ``n_decreasing`` count backward steps within takes only (the restart of
    ``t`` at a take's first record is not one). ``per_take`` is set true.

    Parameters
    ----------
    entry : dict
        From :func:`ledger_entry` over the same records.
    records : records as for :func:`ledger_entry`
    takes : sequence of int, shape (n,)
        Take of every record (its row in the file table).
    durations : sequence of float, optional
        Audio duration of every take in seconds (length T).
    features : array (n, d), optional
        As given to :func:`ledger_entry` (counted as field ``features``).
    tokens : sequence of int, optional
        As given to :func:`ledger_entry` (else the records' tokens).
    n_tokens : int, optional
        K, for the per-take token histogram.
    histogram : bool
        Add each take's token counts (``tokens.counts``, K ints).

    Returns
    -------
    dict
        ``entry``, with ``per_file``: one dict per take ``{"take",
        "n_records", "fields": {name: present}, "time": {"t_min", "t_max",
        "duration", "fraction_in_range", "n_decreasing"} or None, "tokens":
        {"present", "unique"[, "counts"]} or None}``.
    """
    recs = to_records(records)
    take = np.asarray(list(takes) if not isinstance(takes, np.ndarray) else takes, dtype=np.int64).reshape(-1)
    n = int(take.size)
    n_takes = int(take.max()) + 1 if n else 0
    if durations is not None:
        n_takes = max(n_takes, len(durations))
    names = list((entry.get("fields") or {}).keys())
    present: dict[str, np.ndarray] = {}
    for name in names:
        if name == FEATURE_FIELD and features is not None:
            matrix = np.asarray(features)
            matrix = matrix.reshape(matrix.shape[0], -1) if matrix.ndim else matrix.reshape(0, 1)
            flags = np.zeros(n, dtype=bool)
            rows = min(n, matrix.shape[0])
            flags[:rows] = np.isfinite(matrix[:rows]).all(axis=1)
        elif name == TOKEN_FIELD and tokens is not None:
            values = tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)
            flags = np.fromiter((is_present(v) and v != -1 for v in values[:n]), dtype=bool, count=min(n, len(values)))
            flags = np.concatenate([flags, np.zeros(n - flags.size, dtype=bool)])
        else:
            flags = np.fromiter((is_present(rec.get(name)) for rec in recs[:n]), dtype=bool, count=min(n, len(recs)))
            flags = np.concatenate([flags, np.zeros(n - flags.size, dtype=bool)])
        present[name] = flags
    token_ids = None
    if tokens is not None:
        token_ids = _token_ids(tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens))
    elif TOKEN_FIELD in present:
        token_ids = _token_ids([rec.get(TOKEN_FIELD) for rec in recs])
    if token_ids is not None:
        token_ids = np.concatenate([token_ids[:n], np.full(max(0, n - token_ids.size), -1, dtype=np.int64)])
    time_field = (entry.get("time") or {}).get("field")
    times = None
    if time_field is not None:
        times = np.full(n, np.nan)
        for i, rec in enumerate(recs[:n]):
            value = rec.get(time_field)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
                    and math.isfinite(float(value)):
                times[i] = float(value)
    per_file = []
    in_range_total = decreasing_total = timed_total = 0
    for k in range(n_takes):
        mask = take == k
        item: dict[str, Any] = {"take": k, "n_records": int(np.count_nonzero(mask)),
                                "fields": {name: int(np.count_nonzero(flags & mask)) for name, flags in present.items()},
                                "time": None, "tokens": None}
        if times is not None:
            t = times[mask]
            t = t[np.isfinite(t)]
            if t.size:
                duration = float(durations[k]) if durations is not None else None
                in_range = None
                if duration is not None:
                    ok = (t >= -_TIME_TOLERANCE_S) & (t <= duration + _TIME_TOLERANCE_S)
                    in_range = float(np.count_nonzero(ok) / t.size)
                    in_range_total += int(np.count_nonzero(ok))
                decreasing = int(np.count_nonzero(np.diff(t) < 0))
                decreasing_total += decreasing
                timed_total += int(t.size)
                item["time"] = {"t_min": float(t.min()), "t_max": float(t.max()), "duration": duration,
                                "fraction_in_range": in_range, "n_decreasing": decreasing}
        if token_ids is not None:
            ids = token_ids[mask]
            ids = ids[ids >= 0]
            tok: dict[str, Any] = {"present": int(ids.size), "unique": int(np.unique(ids).size)}
            if histogram and n_tokens is not None and 0 < int(n_tokens) <= _MAX_HISTOGRAM:
                counts = np.bincount(ids[ids < int(n_tokens)], minlength=int(n_tokens))
                tok["counts"] = [int(c) for c in counts]
            item["tokens"] = tok
        per_file.append(item)
    entry["per_file"] = per_file
    time = entry.get("time")
    if isinstance(time, dict) and timed_total:
        time["per_take"] = True
        time["n_decreasing"] = decreasing_total
        time["monotonic"] = decreasing_total == 0
        if durations is not None and len(durations):
            time["duration"] = float(max(durations))
            time["fraction_in_range"] = float(in_range_total / timed_total)
    return entry


def model_ledger_entry(model: Any, *, stage: str = "saved", with_oracle: bool = False) -> dict:
    """Ledger entry of a :class:`chandra.model.Model`'s frames.

    K comes from ``model.vocabulary`` (``n_tokens``, then fit metrics, then
    params) or the number of centres; the audio duration from the embedded
    audio, else ``provenance["input"]["duration"]`` or
    ``provenance["duration"]``.

    The pipeline should record its ``"saved"`` entry with this function and
    the inspector records the loaded file's entry with it too, so the two are
    comparable field for field (a round trip that changes anything is then a
    finding, never an artefact of two summaries built differently).

    Parameters
    ----------
    model : chandra.model.Model
    stage : str
    with_oracle : bool
        Include :func:`oracle_summary` of ``model.oracle`` (checks invariants,
        which costs O(n) to O(n d)).
    """
    n_tokens = None
    vocab = getattr(model, "vocabulary", None) or {}
    params = vocab.get("params") or {}
    fit = vocab.get("fit_metrics") or {}
    for candidate in (vocab.get("n_tokens"), fit.get("n_tokens"), params.get("n_tokens_effective"),
                      params.get("n_tokens")):
        if isinstance(candidate, (int, np.integer)) and candidate > 0:
            n_tokens = int(candidate)
            break
    centers = getattr(model, "centers", None)
    if centers is not None and n_tokens is None:
        n_tokens = int(np.asarray(centers).shape[0])
    duration = None
    audio = getattr(model, "audio", None)
    sr = getattr(model, "sample_rate", None)
    if audio is not None and sr:
        duration = float(np.asarray(audio).shape[0] / float(sr))
    else:
        prov = getattr(model, "provenance", None) or {}
        source = prov.get("input") if isinstance(prov.get("input"), Mapping) else prov
        value = source.get("duration") if isinstance(source, Mapping) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            duration = float(value)
    features = getattr(model, "features", None)
    if features is not None and np.asarray(features).size == 0 and not model.events:
        features = None
    oracle = getattr(model, "oracle", None) if with_oracle else None
    if getattr(model, "is_corpus", False):
        files = model.provenance["files"]
        durations = [float(row["n_samples"]) / float(sr) if sr else float(row["duration"]) for row in files]
        duration = max(durations) if durations else None
    entry = ledger_entry(
        stage,
        model.events,
        features=features,
        n_tokens=n_tokens,
        duration=duration,
        fields=(FEATURE_FIELD, TOKEN_FIELD),
        oracle=oracle,
        centers=centers,
    )
    if getattr(model, "is_corpus", False):
        add_per_file(entry, model.events, takes=model.takes(), durations=durations, features=features,
                     n_tokens=n_tokens)
    return entry


def field_matrix(ledger: Sequence[Mapping], *, listed: bool = False) -> tuple:
    """Stage x field presence matrices for the dashboard.

    Parameters
    ----------
    ledger : sequence of ledger entries, in stage order
    listed : bool
        Also return which fields each stage lists.

    Returns
    -------
    stages : list of str
        Each entry's ``stage`` (``"stage i"`` when it has none).
    fields : list of str
        Union of fields over stages, in first-seen order.
    present : int64 array (n_stages, n_fields)
        Records carrying the field (0 where the stage does not list it).
    fraction : float64 array (n_stages, n_fields)
        ``present / n_records`` (0.0 where the stage does not list the
        field); NaN where the stage has no records.
    listed : bool array (n_stages, n_fields)
        Only with ``listed=True``: the stage's entry lists the field.
    """
    stages = [str(e.get("stage", f"stage {i}")) for i, e in enumerate(ledger)]
    fields: list[str] = []
    seen: set[str] = set()
    for e in ledger:
        for name in (e.get("fields") or {}):
            if name not in seen:
                seen.add(name)
                fields.append(str(name))
    shape = (len(stages), len(fields))
    present = np.zeros(shape, dtype=np.int64)
    fraction = np.full(shape, np.nan)
    is_listed = np.zeros(shape, dtype=bool)
    for i, e in enumerate(ledger):
        n = int(e.get("n_records") or 0)
        info = e.get("fields") or {}
        for j, name in enumerate(fields):
            is_listed[i, j] = name in info
            count = int((info.get(name) or {}).get("present", 0) or 0)
            present[i, j] = count
            if n:
                fraction[i, j] = count / n
    if listed:
        return stages, fields, present, fraction, is_listed
    return stages, fields, present, fraction


def json_safe(value: Any, *, max_items: int | None = None, max_chars: int | None = None,
              max_keys: int | None = None, _depth: int = 0) -> Any:
    """A plain-JSON copy of ``value`` (strict JSON: NaN and infinities become None).

    Parameters
    ----------
    value : any
        numpy scalars and arrays become Python numbers and lists; tuples and
        sets become lists; other objects become their ``repr``.
    max_items : int, optional
        Lists (and arrays) longer than this keep their first ``max_items``
        items followed by a string ``"... (N items)"``.
    max_chars : int, optional
        Strings longer than this are cut, ending in ``"..."``.
    max_keys : int, optional
        Mappings keep their first ``max_keys`` keys and a ``"..."`` key
        saying how many more there were.
    """
    kw = {"max_items": max_items, "max_chars": max_chars, "max_keys": max_keys, "_depth": _depth + 1}
    if _depth > 32:
        return "..."
    if value is None or isinstance(value, (bool, int, str)) and not isinstance(value, np.generic):
        if isinstance(value, str) and max_chars is not None and len(value) > max_chars:
            return value[:max_chars] + "..."
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        items = list(value.items())
        if max_keys is not None and len(items) > max_keys:
            out = {str(k): json_safe(v, **kw) for k, v in items[:max_keys]}
            out["..."] = f"{len(items) - max_keys} more keys"
            return out
        return {str(k): json_safe(v, **kw) for k, v in items}
    if isinstance(value, np.ndarray):
        if max_items is not None and value.ndim >= 1 and value.shape[0] > max_items:
            head = [json_safe(v, **kw) for v in value[:max_items].tolist()]
            return head + [f"... ({value.shape[0]} items)"]
        return json_safe(value.tolist(), **kw)
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        if max_items is not None and len(seq) > max_items:
            return [json_safe(v, **kw) for v in seq[:max_items]] + [f"... ({len(seq)} items)"]
        return [json_safe(v, **kw) for v in seq]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(_object_to_dict(value), **kw)
    text = repr(value)
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars] + "..."
    return text


# ---------------------------------------------------------------------------
# checking entries read from files
# ---------------------------------------------------------------------------

def _count(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 0


def _int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(v)


def _optional(check):
    return lambda v: v is None or check(v)


def _list_of(check):
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool, int, float, np.generic))


_FIELD_SCHEMA = {"present": _count, "fraction": _number, "types": _list_of(_str), "constant": _scalar}
_TOKEN_SCHEMA = {
    **{k: _count for k in ("n", "present", "missing", "unique", "active", "n_tokens", "out_of_range", "non_integer")},
    **{k: _number for k in ("entropy_bits", "max_entropy_bits", "normalised_entropy", "perplexity", "top_share")},
    "top_token": _optional(_int), "counts": _optional(_list_of(_count)), "empty_tokens": _optional(_list_of(_int)),
}
_FEATURE_SCHEMA = {
    **{k: _count for k in ("n_rows", "dim", "dead_dims", "nonzero_dims", "used_dim_max", "padded_rows",
                           "zero_rows", "nonfinite_rows", "row_dim_min", "row_dim_max")},
    **{k: _optional(_number) for k in ("norm_min", "norm_mean", "norm_max")},
    "effective_dim_median": _number, "duplicate_rate": _number, "ragged": _bool,
}
_TIME_SCHEMA = {
    "field": _str, "n": _count, "t_min": _number, "t_max": _number, "duration": _optional(_number),
    "monotonic": _bool, "n_decreasing": _count, "fraction_in_range": _optional(_number), "per_take": _bool,
}
_ORACLE_SCHEMA = {
    "kind": _str, "metric": _optional(_str), "threshold": _optional(_number), "check_note": _str,
    **{k: _count for k in ("n_states", "n_frames", "n_transitions", "transitions_per_state_max", "root_out_degree",
                           "lrs_max", "lrs_histogram_cap")},
    **{k: _optional(_number) for k in ("transitions_per_state_mean", "root_out_degree_share", "sfx_to_root_share",
                                       "sfx_to_previous_share", "lrs_mean", "lrs_median", "transition_density")},
    "lrs_histogram": _list_of(_count),
    "violations": lambda v: isinstance(v, dict) and all(_str(k) and _count(c) for k, c in v.items()),
    "violation_severity": lambda v: isinstance(v, dict) and all(_str(k) and _str(c) for k, c in v.items()),
    "violation_examples": _list_of(lambda x: isinstance(x, dict)),
}


_PER_FILE_TIME_SCHEMA = {"t_min": _number, "t_max": _number, "duration": _optional(_number),
                         "fraction_in_range": _optional(_number), "n_decreasing": _count}
_PER_FILE_TOKEN_SCHEMA = {"present": _count, "unique": _count, "counts": _optional(_list_of(_count))}


def _check_per_file(value: Any) -> str | None:
    if not isinstance(value, list):
        return "per_file is not a list"
    for k, item in enumerate(value):
        where = f"per_file[{k}]"
        if not isinstance(item, dict):
            return f"{where} is not an object"
        if not _count(item.get("take")) or not _count(item.get("n_records")):
            return f"{where} lacks a take index or a record count"
        fields = item.get("fields")
        if fields is not None and not (isinstance(fields, dict) and all(_count(c) for c in fields.values())):
            return f"{where}.fields is not an object of counts"
        for key, schema in (("time", _PER_FILE_TIME_SCHEMA), ("tokens", _PER_FILE_TOKEN_SCHEMA)):
            if item.get(key) is not None:
                problem = _check_section(item[key], schema, f"{where}.{key}")
                if problem:
                    return problem
    return None


def _check_section(value: Any, schema: dict, where: str) -> str | None:
    if not isinstance(value, dict):
        return f"{where} is a {type(value).__name__}, not an object"
    for key, check in schema.items():
        if key in value and not check(value[key]):
            return f"{where}.{key} has the wrong type or range"
    return None


def check_entry(entry: Any) -> str | None:
    """Why ``entry`` is not a ledger entry as :func:`ledger_entry` writes them, or None.

    Ledger entries read from files (a model's ledger, a trace checkpoint)
    are checked before findings and figures read them: an object whose
    ``stage`` is a string, ``n_records`` a count, ``fields`` an object of
    ``{present, fraction, types}`` objects, and whose
    ``tokens``/``features``/``time``/``oracle`` sections are None or objects,
    every known key holding a count, finite number, string or flag as this
    module writes them. Keys may be missing (readers use defaults) and
    unknown keys are allowed, so hand-made and older entries still pass.

    Returns
    -------
    str or None
        The key path and the problem, e.g. ``"fields['t'].present has the
        wrong type or range"``.
    """
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, not an object"
    if "stage" in entry and not isinstance(entry["stage"], str):
        return "stage is not a string"
    if "n_records" in entry and not _count(entry["n_records"]):
        return "n_records is not a count"
    fields = entry.get("fields")
    if fields is not None and not isinstance(fields, dict):
        return "fields is not an object"
    for name, info in (fields or {}).items():
        problem = _check_section(info, _FIELD_SCHEMA, f"fields[{str(name)[:40]!r}]")
        if problem:
            return problem
    for key, schema in (("tokens", _TOKEN_SCHEMA), ("features", _FEATURE_SCHEMA), ("time", _TIME_SCHEMA),
                        ("oracle", _ORACLE_SCHEMA)):
        if entry.get(key) is not None:
            problem = _check_section(entry[key], schema, key)
            if problem:
                return problem
    if entry.get("per_file") is not None:
        return _check_per_file(entry["per_file"])
    return None
