"""The ledger: what survives each stage boundary.

A ledger entry is a small JSON-able summary of the records at one stage
boundary (segments, features, normalised, tokens, events, oracle, saved,
reloaded, generated, or any checkpoint name a foreign trainer chooses):

* per field, how many records carry it (present: key exists, value not None
  and not a float NaN) as a count and a fraction;
* the token distribution (the same statistics as
  :func:`chandra.vocabulary.token_metrics`, computed here without importing
  scikit-learn so that :mod:`chandra.trace` stays cheap to import inside
  somebody else's trainer);
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

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from chandra.errors import ChandraError

__all__ = [
    "STAGES",
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
    "check_entry",
]

#: Canonical stage names, in pipeline order.
STAGES = (
    "segments", "features", "normalised", "tokens", "events",
    "oracle", "saved", "reloaded", "generated",
)
#: Alias of :data:`STAGES` (the name the pipeline imports).
LEDGER_STAGES = STAGES
#: Record keys tried, in order, for the time axis of a stage.
TIME_FIELDS = ("t", "start", "time", "timestamp")
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


def _field_summary(records: Sequence[Mapping], extra: Iterable[str]) -> dict[str, dict]:
    n = len(records)
    counts: dict[str, int] = {}
    types: dict[str, set] = {}
    first: dict[str, Any] = {}
    constant: dict[str, bool] = {}
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
        out[key] = info
    return out


# ---------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------


def token_stats(tokens: Any, *, n_tokens: int | None = None) -> dict:
    """Distribution statistics of a token sequence, tolerant of bad ids.

    Same keys as :func:`chandra.vocabulary.token_metrics` (``n``, ``present``,
    ``missing``, ``unique``, ``active``, ``n_tokens``, ``entropy_bits``,
    ``max_entropy_bits``, ``normalised_entropy``, ``perplexity``,
    ``top_token``, ``top_share``, ``counts``, ``empty_tokens``) plus
    ``out_of_range`` and ``non_integer``. Where ``token_metrics`` raises on an
    id outside ``[0, K)`` this function counts it, because a diagnostic must
    describe broken data rather than refuse it.

    Parameters
    ----------
    tokens : sequence, shape (n,)
        Token ids; None, NaN and -1 count as missing.
    n_tokens : int, optional
        Vocabulary size K. Defaults to ``max id + 1``.

    Returns
    -------
    dict
    """
    values: list[int] = []
    missing = 0
    non_integer = 0
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
) -> dict:
    """Summarise the records at one stage boundary.

    Parameters
    ----------
    stage : str
        Stage name (see :data:`STAGES`) or any checkpoint name.
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

    Returns
    -------
    dict
        ``stage``, ``n_records``, ``fields`` ({name: {present, fraction,
        types[, constant]}}), ``tokens`` (:func:`token_stats` or None),
        ``features`` (:func:`feature_stats` or None), ``time``
        (:func:`time_stats` or None) and, with ``oracle``, ``oracle``.
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
    if oracle is not None:
        if symbols is None and getattr(oracle, "kind", None) == "tokens" and token_values is not None \
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in token_values):
            symbols = token_values
        feat_for_oracle = None
        if getattr(oracle, "kind", None) == "features" and features is not None:
            feat_for_oracle = features
        entry["oracle"] = oracle_summary(oracle, symbols=symbols, features=feat_for_oracle)
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
    return ledger_entry(
        stage,
        model.events,
        features=features,
        n_tokens=n_tokens,
        duration=duration,
        fields=(FEATURE_FIELD, TOKEN_FIELD),
        oracle=oracle,
    )


def field_matrix(ledger: Sequence[Mapping]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Stage x field presence matrices for the dashboard.

    Parameters
    ----------
    ledger : sequence of ledger entries, in stage order

    Returns
    -------
    stages : list of str
    fields : list of str
        Union of fields over stages, in first-seen order.
    present : int64 array (n_stages, n_fields)
        Records carrying the field (0 where the stage does not list it).
    fraction : float64 array (n_stages, n_fields)
        ``present / n_records``; NaN where the stage has no records.
    """
    stages = [str(e.get("stage")) for e in ledger]
    fields: list[str] = []
    seen: set[str] = set()
    for e in ledger:
        for name in e.get("fields", {}):
            if name not in seen:
                seen.add(name)
                fields.append(name)
    present = np.zeros((len(stages), len(fields)), dtype=np.int64)
    fraction = np.full((len(stages), len(fields)), np.nan)
    for i, e in enumerate(ledger):
        n = int(e.get("n_records", 0) or 0)
        info = e.get("fields", {})
        for j, name in enumerate(fields):
            count = int(info.get(name, {}).get("present", 0))
            present[i, j] = count
            if n:
                fraction[i, j] = count / n
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
    "monotonic": _bool, "n_decreasing": _count, "fraction_in_range": _optional(_number),
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
    return None
