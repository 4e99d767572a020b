"""What MusicHal 9000 reads from a model file, and how chandra meets it.

This module is the executable form of ``docs/MUSICHAL.md``: the keys, types
and ranges MusicHal 9000's loaders and performance code read from a v2.0
model file (:func:`check_musichal_conformance`), MusicHal's own consonance
scale (:func:`musichal_consonance`), the distance threshold that lets
MusicHal's ``distance < threshold`` matching stand in for token equality
(:func:`musichal_token_threshold`), and the per-event conversion between
chandra's event fields and the values MusicHal expects
(:func:`musichal_audio_data` / :func:`restore_audio_data`). The facts were
established by reading MusicHal's code (its oracle classes, request masks and
phrase generator) and its saved files; they are restated here in our own
words, nothing is copied.

Conversion of an event for MusicHal
-----------------------------------
MusicHal reads some event fields with a different meaning or type than
chandra writes them (its ``consonance`` is an interval-table score, its
``midi`` an integer, a missing ``f0`` means 440 Hz to it and ``None`` breaks
its arithmetic). :func:`musichal_audio_data` writes MusicHal's value under the
field's own name and keeps chandra's original under ``"chandra_<field>"``
(``chandra_consonance``, ``chandra_midi``, ...). Fields MusicHal needs but the
event lacks are listed in ``"chandra_added"``; when a field had to be left out
(``midi`` of an unpitched event) the original key order is kept in
``"chandra_order"``. Original keys that start with ``"chandra_"`` are escaped
by one more ``"chandra_"``. :func:`restore_audio_data` undoes all of it
exactly; both work on the ``chandra-tagged-1`` encoded form of the event.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from chandra.errors import ChandraError, ModelFormatError

__all__ = [
    "MUSICHAL_INTERVALS",
    "MUSICHAL_CONSONANCE_TOLERANCE",
    "MUSICHAL_DISTANCE_FUNCTIONS",
    "MUSICHAL_STATS_KEYS",
    "MUSICHAL_NUMBER_FIELDS",
    "MUSICHAL_CONVERTED_FIELDS",
    "EXPORT_MARKER",
    "NO_TOKEN",
    "musichal_consonance",
    "musichal_token_threshold",
    "musichal_pair_distances",
    "musichal_audio_data",
    "restore_audio_data",
    "event_pitches",
    "check_musichal_conformance",
]

# ---------------------------------------------------------------------------
# MusicHal's consonance scale

#: MusicHal's interval table: (name, octave-reduced just ratio, score), in
#: Helmholtz's order of consonance. Every ratio in (1, 2] lies within 6 % of
#: some entry.
MUSICHAL_INTERVALS: tuple[tuple[str, float, float], ...] = (
    ("unison", 1.0, 1.00),
    ("minor second", 16 / 15, 0.30),
    ("major second", 9 / 8, 0.60),
    ("minor third", 6 / 5, 0.82),
    ("major third", 5 / 4, 0.85),
    ("perfect fourth", 4 / 3, 0.90),
    ("tritone", 45 / 32, 0.25),
    ("perfect fifth", 3 / 2, 0.95),
    ("minor sixth", 8 / 5, 0.80),
    ("major sixth", 5 / 3, 0.85),
    ("minor seventh", 16 / 9, 0.50),
    ("major seventh", 15 / 8, 0.55),
    ("octave", 2.0, 0.98),
)
#: Largest relative error ``|r - r_table| / r_table`` at which an interval
#: still counts as a table interval.
MUSICHAL_CONSONANCE_TOLERANCE = 0.06
#: Score of an interval no table entry is within the tolerance of.
MUSICHAL_UNMATCHED_INTERVAL = 0.4
#: Consonance of a sound with fewer than two pitch classes.
MUSICHAL_NEUTRAL_CONSONANCE = 0.5


def _pitch_class(f: float, lowest: float) -> int:
    return int(math.floor(12.0 * math.log2(f / lowest) + 0.5)) % 12


def _interval_score(ratio: float) -> float:
    """Score of one octave-reduced ratio in [1, 2]: the best table entry within
    the tolerance, scaled by its closeness; 0.4 when none is within it."""
    best = None
    for _name, ideal, score in MUSICHAL_INTERVALS:
        err = abs(ratio - ideal) / ideal
        if err < MUSICHAL_CONSONANCE_TOLERANCE:
            value = score * (1.0 - err / MUSICHAL_CONSONANCE_TOLERANCE)
            if best is None or value > best:
                best = value
    return MUSICHAL_UNMATCHED_INTERVAL if best is None else best


def musichal_consonance(pitches_hz: Iterable[float]) -> float:
    """MusicHal 9000's consonance of a set of simultaneous pitches.

    Parameters
    ----------
    pitches_hz : iterable of float
        Detected pitches in Hz (any order; every value finite and > 0).

    Returns
    -------
    float
        In [0, 1]. The mean, over every pair of pitches, of the pair's
        interval score: the ratio of the higher to the lower pitch is
        octave-reduced into [1, 2] (halved while above 2), compared with each
        entry of :data:`MUSICHAL_INTERVALS`, and scored
        ``score * (1 - err / 0.06)`` for the best entry whose relative error
        ``err`` is below 6 % (0.4 when there is none). 0.5 when the pitches
        hold fewer than two pitch classes — one note, octaves, or nothing.
        A pitch's class is its distance in equal-tempered semitones from the
        lowest pitch, rounded, modulo 12, so the result depends only on the
        intervals: transposing every pitch leaves it unchanged.

    Raises
    ------
    ChandraError
        A pitch that is not a finite positive number.
    """
    f = []
    for p in pitches_hz:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise ChandraError(f"pitches must be numbers in Hz, got {type(p).__name__}")
        p = float(p)
        if not (math.isfinite(p) and p > 0):
            raise ChandraError(f"pitches must be finite positive frequencies in Hz, got {p}")
        f.append(p)
    if not f or len({_pitch_class(p, min(f)) for p in f}) < 2:
        return MUSICHAL_NEUTRAL_CONSONANCE
    f.sort()
    scores = []
    for i in range(len(f)):
        for j in range(i + 1, len(f)):
            ratio = f[j] / f[i]
            while ratio > 2.0:
                ratio /= 2.0
            scores.append(_interval_score(ratio))
    return float(sum(scores) / len(scores))


def _finite(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def event_pitches(event: Mapping) -> list[float] | None:
    """The detected pitches of a chandra event (up to a common factor), or None.

    ``pitches_hz`` when it is a non-empty list of positive numbers. Else,
    for models from before events carried it, ``ratios`` (the same pitches
    relative to the lowest): times ``f0`` when the event has a positive one,
    as they are otherwise. Intervals, and so :func:`musichal_consonance`, do
    not depend on the common factor, so both give the value ``pitches_hz``
    would. None when the event has neither.
    """
    pitches = event.get("pitches_hz")
    if isinstance(pitches, list) and pitches:
        values = [_finite(p) for p in pitches]
        if all(v is not None and v > 0 for v in values):
            return values  # type: ignore[return-value]
    ratios = event.get("ratios")
    if isinstance(ratios, list) and ratios:
        values = [_finite(r) for r in ratios]
        if all(v is not None and v > 0 for v in values):
            f0 = _finite(event.get("f0"))
            scale = f0 if f0 is not None and f0 > 0 else 1.0
            return [scale * v for v in values]  # type: ignore[operator]
    return None


# ---------------------------------------------------------------------------
# matching: a threshold under which MusicHal's distance test mirrors tokens

#: Distance functions MusicHal's base oracle implements (a file naming another
#: one makes every distance fail).
MUSICHAL_DISTANCE_FUNCTIONS = ("euclidean", "cosine", "manhattan", "weighted_euclidean", "chebyshev", "minkowski")


def musichal_pair_distances(X: np.ndarray, metric: str) -> np.ndarray:
    """All pairwise distances between rows of ``X`` as MusicHal computes them.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    metric : {"euclidean", "cosine"}
        Euclidean norm of the difference; cosine distance ``1 - cos`` with
        1.0 whenever either vector is all zeros (MusicHal's rule), never
        below 0.

    Returns
    -------
    ndarray, float64, shape (n, n)
    """
    X = np.asarray(X, dtype=np.float64)
    gram = X @ X.T
    sq = np.einsum("ij,ij->i", X, X)
    if metric == "euclidean":
        return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0))
    if metric == "cosine":
        norms = np.sqrt(sq)
        denom = norms[:, None] * norms[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.maximum(1.0 - gram / denom, 0.0)  # rounding can dip below 0 for equal vectors
        d[denom == 0.0] = 1.0
        return d
    raise ChandraError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")


def _best_cut(d: np.ndarray, same: np.ndarray) -> dict:
    """Threshold on sorted-able distances ``d`` that best separates ``same``
    pairs (matched when ``d < threshold``) from the others; see
    :func:`musichal_token_threshold`."""
    order = np.argsort(d, kind="stable")
    d, same = d[order], same[order]
    m = d.size
    n_same = int(same.sum())
    n_diff = m - n_same
    tp = np.concatenate([[0], np.cumsum(same)])   # same-token pairs matched by a cut before position k
    fp = np.concatenate([[0], np.cumsum(~same)])  # different-token pairs matched
    recall = tp / n_same if n_same else None
    reject = (n_diff - fp) / n_diff if n_diff else None
    agreement = (tp + (n_diff - fp)) / m
    # A cut at k means d[k-1] < threshold <= d[k]: only between distinct
    # values, and never at or below 0 (a frame must match itself).
    ok = np.ones(m + 1, dtype=bool)
    ok[1:m] = d[1:] > d[:-1]
    ok[0] = d[0] > 0.0
    k = int(np.argmax(np.where(ok, agreement, -1.0)))
    if k == 0:
        threshold = 0.5 * float(d[0])
    elif k == m:
        threshold = float(d[-1]) + max(1e-9, 1e-3 * float(d[-1]))
    else:
        threshold = 0.5 * (float(d[k - 1]) + float(d[k]))
    matched = int(tp[k] + fp[k])
    if recall is None or reject is None:
        balanced = float((recall if reject is None else reject)[k])
    else:
        balanced = float(0.5 * (recall[k] + reject[k]))
    return {
        "threshold": threshold,
        "agreement": float(agreement[k]),
        "balanced_agreement": balanced,
        "same_token_matched": None if recall is None else float(recall[k]),
        "different_token_rejected": None if reject is None else float(reject[k]),
        "n_pairs": m,
        "n_same_token_pairs": n_same,
        "n_pairs_matched": matched,
    }


def musichal_token_threshold(
    features: Any,
    tokens: Any,
    *,
    metrics: Sequence[str] = ("euclidean", "cosine"),
    max_frames: int = 2000,
    seed: int = 0,
) -> dict | None:
    """Metric and threshold under which MusicHal's ``distance < threshold``
    reproduces token equality, with the measured agreement.

    MusicHal matches frames by comparing feature vectors with its distance
    function and a threshold; a factor oracle over gesture tokens matches
    frames whose tokens are equal. This picks, for each metric, the threshold
    at which MusicHal's similarity (``distance < threshold``) agrees with
    token equality on the largest share of frame pairs, and keeps the metric
    that agrees best: the similarity relation closest to token equivalence,
    counted in pairs.

    Parameters
    ----------
    features : array_like, shape (n, d)
        The feature vectors MusicHal will see (the exported ones).
    tokens : array_like of int, shape (n,)
        Gesture token per frame; negative values (no token) are left out.
    metrics : sequence of {"euclidean", "cosine"}
        Candidates; ties go to the first. On unit-norm features the two order
        pairs alike, so only the first is measured.
    max_frames : int
        At most this many frames (a seeded uniform sample, in time order)
        enter the all-pairs measurement; ``max_frames * (max_frames - 1) / 2``
        pairs cost ``O(max_frames**2)`` memory and time.
    seed : int
        Seed of that sample (exports are deterministic).

    Returns
    -------
    dict or None
        None when fewer than two frames carry a token. Otherwise
        ``metric``, ``threshold`` (> 0), ``agreement`` (share of frame pairs
        whose MusicHal similarity equals token equality: the criterion
        maximised), ``same_token_matched`` (share of same-token pairs MusicHal
        finds similar; None without such pairs), ``different_token_rejected``
        (share of different-token pairs it does not), ``balanced_agreement``
        (the mean of those two), ``n_pairs``, ``n_same_token_pairs``,
        ``n_pairs_matched``, ``n_frames`` (measured) and ``n_frames_total``
        (with a token).

    Notes
    -----
    With K tokens about (K - 1) / K of all pairs are different-token pairs,
    so the plain share weighs a wrongly matched pair as much as a missed
    one; that keeps MusicHal's similar frames mostly of the right token
    (precision) at the price of missing some same-token frames, which
    ``same_token_matched`` reports. The threshold is never 0 (a frame must
    match itself) and lies halfway between the two distances it separates, so
    rounding cannot move a pair across it.
    """
    X = np.asarray(features, dtype=np.float64)
    tok = np.asarray(tokens).astype(np.int64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != tok.shape[0]:
        raise ChandraError(f"features {X.shape} and tokens {tok.shape} do not describe the same frames")
    valid = np.flatnonzero(tok >= 0)
    total = int(valid.size)
    if total < 2:
        return None
    if valid.size > max_frames:
        rng = np.random.default_rng(seed)
        valid = np.sort(rng.choice(valid, size=int(max_frames), replace=False))
    Xv, tv = X[valid], tok[valid]
    iu = np.triu_indices(valid.size, 1)
    same = (tv[:, None] == tv[None, :])[iu]
    metrics = list(metrics)
    norms = np.linalg.norm(Xv, axis=1)
    if {"euclidean", "cosine"} <= set(metrics) and np.all(np.abs(norms - 1.0) < 1e-4):
        # On unit vectors |a - b|^2 = 2 (1 - cos): both distances order the
        # pairs alike, so they agree equally well; measure the first only.
        first = next(m for m in metrics if m in ("euclidean", "cosine"))
        metrics = [m for m in metrics if m not in ("euclidean", "cosine") or m == first]
    best = None
    for metric in metrics:
        result = _best_cut(musichal_pair_distances(Xv, metric)[iu], same)
        if best is None or result["agreement"] > best["agreement"] + 1e-12:
            best = {"metric": metric, **result}
    best.update({"n_frames": int(valid.size), "n_frames_total": total})
    return best


# ---------------------------------------------------------------------------
# converting events for MusicHal and back

#: ``gesture_token`` written for a frame without a token: never equal to a
#: requested token (MusicHal would read a missing token as 0).
NO_TOKEN = -1
#: audio_data fields MusicHal's performance, request and retraining code
#: reads as plain numbers (``float(...)``, comparisons, request masks): when
#: present they must be finite numbers, never null, text or NaN.
MUSICHAL_NUMBER_FIELDS = (
    "t", "duration", "rms_db", "centroid", "rolloff", "bandwidth", "contrast", "flatness",
    "mfcc_1", "mfcc_2", "mfcc_3", "zcr", "attack_time", "release_time", "ioi", "tempo",
    "beat_position", "cents", "pitch_hz", "fundamental_freq", "midi_note", "barlow_complexity",
    "midi_relative", "rhythm_ratio", "deviation_polarity", "harmonic_token", "percussive_token",
)
#: Every field :func:`musichal_audio_data` may convert (and
#: :func:`restore_audio_data` restores).
MUSICHAL_CONVERTED_FIELDS = ("gesture_token", "consonance", "midi", "f0", "onset") + MUSICHAL_NUMBER_FIELDS
#: ``stats["chandra_export"]["format"]`` of a chandra export (``stats`` is the
#: one free-form object MusicHal's save writes back unchanged).
EXPORT_MARKER = "chandra-musichal-export"

_PREFIX = "chandra_"
_ADDED = "chandra_added"
_ORDER = "chandra_order"
_OMIT = object()


def _same_json(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def musichal_audio_data(
    encoded: Mapping[str, Any],
    event: Mapping[str, Any],
    *,
    keep_consonance: bool = False,
    added_fields: Mapping[str, Any] | None = None,
) -> tuple[dict, float, float | None]:
    """One event's ``audio_data`` for MusicHal, with chandra's values kept.

    Parameters
    ----------
    encoded : mapping
        The event in ``chandra-tagged-1`` encoding (what is written).
    event : mapping
        The same event decoded (what the conversions are computed from).
    keep_consonance : bool
        The event's ``consonance`` is already on MusicHal's scale (a model
        imported from MusicHal): keep a valid one instead of recomputing it.
    added_fields : mapping, optional
        Fields written for MusicHal only (JSON values), e.g. a corpus
        frame's ``source_file``; listed in ``chandra_added`` like the
        conversions' additions, so a re-import drops them. A field the event
        already has is not added.

    Returns
    -------
    audio_data : dict
        See the module docstring: MusicHal's values under the field names,
        chandra's originals under ``chandra_<field>``.
    consonance : float
        The MusicHal-scale consonance written.
    fundamental : float or None
        Hz for MusicHal's per-state ``fundamentals``: ``root_hz`` when valid,
        else ``f0`` when positive.
    """
    conv: dict[str, Any] = {}
    token = event.get("gesture_token")
    if isinstance(token, (int, np.integer)) and not isinstance(token, (bool, np.bool_)):
        conv["gesture_token"] = int(token)
    else:
        value = _finite(token)
        conv["gesture_token"] = int(value) if value is not None and value.is_integer() else NO_TOKEN
    consonance = _finite(event.get("consonance")) if keep_consonance else None
    if consonance is None or not 0.0 <= consonance <= 1.0:
        pitches = event_pitches(event)
        consonance = MUSICHAL_NEUTRAL_CONSONANCE if pitches is None else musichal_consonance(pitches)
    conv["consonance"] = consonance
    f0 = _finite(event.get("f0"))
    conv["f0"] = f0 if f0 is not None and f0 >= 0.0 else 0.0
    midi = _finite(event.get("midi"))
    if midi is None and f0 is not None and f0 > 0.0:
        midi = 69.0 + 12.0 * math.log2(f0 / 440.0)
    midi_int = None if midi is None else _round_half_up(midi)
    conv["midi"] = midi_int if midi_int is not None and 0 <= midi_int <= 127 else _OMIT
    if "onset" in event and not isinstance(event["onset"], (bool, np.bool_)) and _finite(event["onset"]) is None:
        conv["onset"] = _OMIT
    for name in MUSICHAL_NUMBER_FIELDS:
        if name in event and _finite(event[name]) is None:
            conv[name] = _OMIT

    out: dict[str, Any] = {}
    originals: dict[str, Any] = {}
    omitted = False
    for key, value in encoded.items():
        if key.startswith(_PREFIX):
            out[_PREFIX + key] = value  # escape: never read back as a kept original
        elif key in conv:
            new = conv[key]
            if new is _OMIT:
                originals[key] = value
                omitted = True
            elif _same_json(new, value):
                out[key] = value
            else:
                out[key] = new
                originals[key] = value
        else:
            out[key] = value
    added = [key for key, new in conv.items() if key not in encoded and new is not _OMIT]
    for key in added:
        out[key] = conv[key]
    for key, value in (added_fields or {}).items():
        if key not in encoded and key not in out:
            out[key] = value
            added.append(key)
    for key, value in originals.items():
        out[_PREFIX + key] = value
    if added:
        out[_ADDED] = added
    if omitted:
        out[_ORDER] = list(encoded)
    root = _finite(event.get("root_hz"))
    fundamental = root if root is not None and root > 0 else (f0 if f0 is not None and f0 > 0 else None)
    return out, float(consonance), fundamental


def restore_audio_data(audio_data: Any, fields: Iterable[str] = MUSICHAL_CONVERTED_FIELDS) -> Any:
    """Undo :func:`musichal_audio_data` (still in the tagged encoding).

    Parameters
    ----------
    audio_data : Any
        One frame's ``audio_data`` from an export; anything else is returned
        unchanged.
    fields : iterable of str
        The fields the export may have converted (its marker lists them).
    """
    if not isinstance(audio_data, dict):
        return audio_data
    fields = set(fields)
    added = audio_data.get(_ADDED)
    added = set(added) if isinstance(added, list) and all(isinstance(k, str) for k in added) else set()
    order = audio_data.get(_ORDER)
    order = order if isinstance(order, list) and all(isinstance(k, str) for k in order) else None
    out: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for key, value in audio_data.items():
        if key in (_ADDED, _ORDER):
            continue
        if key.startswith(_PREFIX):
            rest = key[len(_PREFIX):]
            if rest.startswith(_PREFIX):
                out[rest] = value
            elif rest in fields:
                kept[rest] = value
            else:
                out[key] = value
        elif key not in added:
            out[key] = value
    for key, value in kept.items():
        out[key] = value
    if order is not None and set(order) == set(out):
        out = {key: out[key] for key in order}
    return out


# ---------------------------------------------------------------------------
# conformance

#: ``stats`` keys MusicHal's own files carry, with their JSON types. MusicHal
#: replaces its statistics with the file's ``stats`` on load and then
#: increments ``total_distances_calculated`` on every distance (and
#: ``threshold_adjustments`` when it adapts the threshold), so those must be
#: there; the others it overwrites or reports.
MUSICHAL_STATS_KEYS: dict[str, tuple[type, ...]] = {
    "total_patterns": (int,),
    "total_states": (int,),
    "sequence_length": (int,),
    "max_pattern_length": (int,),
    "is_trained": (bool,),
    "last_update": (int, float, type(None)),
    "memory_usage": (int,),
    "distance_threshold": (int, float),
    "distance_function": (str,),
    "feature_dimensions": (int,),
    "adaptive_threshold": (bool,),
    "total_distances_calculated": (int,),
    "average_distance": (int, float),
    "threshold_adjustments": (int,),
    "harmonic_patterns": (int,),
    "polyphonic_patterns": (int,),
    "chord_progressions": (int,),
    "rhythmic_patterns": (int,),
    "musical_insights_used": (int,),
    "polyphonic_frames": (int,),
    "chord_types": (dict,),
    "average_pitches_per_frame": (int, float),
}
#: Feature length from which MusicHal's polyphonic oracle blends the last
#: three dimensions into every distance with ``chord_similarity_weight``.
CHORD_BLEND_MIN_DIM = 15
_MAX_HISTORY = 1000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_key(key: Any) -> int | None:
    if not isinstance(key, str):
        return None
    text = key[1:] if key.startswith("-") else key
    if not text.isdigit() or not text.isascii():
        return None
    return int(key)


def _numbered(entries: dict, container: str, what: str, p: "_Problems"):
    """``(id, value, where)`` for each entry of a MusicHal object keyed by decimal ids; other keys are problems."""
    for key, value in entries.items():
        number = _int_key(key)
        where = f"{what} {key!r}"
        if number is None or number < 0:
            p.add(f"{container} keys must be decimal {what} ids", where)
            continue
        yield number, value, where


class _Problems:
    """Problems aggregated per rule: a count and the first few places."""

    def __init__(self, examples: int):
        self.examples = examples
        self.rules: dict[str, list] = {}

    def add(self, rule: str, where: str) -> None:
        entry = self.rules.setdefault(rule, [0, []])
        entry[0] += 1
        if len(entry[1]) < self.examples:
            entry[1].append(where)

    def lines(self) -> list[str]:
        out = []
        for rule, (count, places) in self.rules.items():
            if count == 1 and places and places[0] == "":
                out.append(rule)
            else:
                shown = ", ".join(p for p in places if p)
                more = f" (and {count - len(places)} more)" if count > len(places) else ""
                out.append(f"{rule}: {count} case{'s' if count != 1 else ''}" + (f", e.g. {shown}{more}" if shown else ""))
        return out


def _load_doc(doc: Any) -> Mapping:
    if isinstance(doc, Mapping):
        return doc
    if isinstance(doc, (str, Path)):
        from chandra.musichal import FALLBACK_MAX_BYTES

        path = Path(doc)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ModelFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if size > FALLBACK_MAX_BYTES:
            raise ModelFormatError(f"{path}: {size} bytes exceeds the {FALLBACK_MAX_BYTES}-byte limit of the checker")
        try:
            with open(path, "rb") as fh:
                value = json.load(fh)
        except (ValueError, RecursionError) as exc:
            raise ModelFormatError(f"{path}: malformed JSON ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        if not isinstance(value, dict):
            raise ModelFormatError(f"{path}: JSON top level is not an object")
        return value
    raise ChandraError(f"check_musichal_conformance needs a parsed JSON object or a path, got {type(doc).__name__}")


def check_musichal_conformance(doc: Any, *, examples: int = 3) -> list[str]:
    """Everything in a MusicHal v2.0 model that MusicHal 9000 could not use as intended.

    The rules are those of ``docs/MUSICHAL.md``: every key MusicHal's v2.0
    and base loaders and its performance path (similarity search, live
    learning, generation with requests, note extraction, root-hint bias)
    read, with its JSON type and range, integer ids written as decimal
    strings where MusicHal converts them with ``int()``, and the graph and
    frames consistent with each other. When the file carries chandra's export
    marker (``stats["chandra_export"]``), the promises of a chandra export
    are checked too: the written threshold is the one MusicHal matches with
    (no adaptive threshold, no chord blending) and the marker is complete.

    Parameters
    ----------
    doc : mapping, str or Path
        The parsed JSON object (``json.load`` output), or a path to read
        (whole, with Python's ``json``; at most ``FALLBACK_MAX_BYTES``).
    examples : int
        Places named per problem.

    Returns
    -------
    list of str
        One line per rule broken, with how often and where; empty when the
        file conforms.
    """
    doc = _load_doc(doc)
    p = _Problems(max(0, int(examples)))

    def need(key: str, ok, what: str) -> Any:
        if key not in doc:
            p.add(f"missing top-level key '{key}'", "")
            return None
        value = doc[key]
        if not ok(value):
            p.add(f"top-level '{key}' must be {what}, got {_show(value)}", "")
            return None
        return value

    if doc.get("format_version") != "2.0":
        p.add(f"'format_version' must be \"2.0\", got {_show(doc.get('format_version'))}", "")
    threshold = need("distance_threshold", lambda v: _is_number(v) and v > 0, "a positive finite number")
    metric = need("distance_function", lambda v: v in MUSICHAL_DISTANCE_FUNCTIONS,
                  f"one of {', '.join(MUSICHAL_DISTANCE_FUNCTIONS)}")
    need("max_pattern_length", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    dim = need("feature_dimensions", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    adaptive = need("adaptive_threshold", lambda v: isinstance(v, bool), "true or false")
    weight = need("chord_similarity_weight", lambda v: _is_number(v) and 0.0 <= v <= 1.0, "a number in [0, 1]")
    size = need("size", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    last = need("last", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    frame_counter = need("frame_counter", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    sequence_length = need("sequence_length", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    need("is_trained", lambda v: v is True, "true (MusicHal generates nothing from an untrained oracle)")
    need("last_update", lambda v: v is None or _is_number(v), "a number or null")
    need("pattern_counter", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    need("threshold_adjustments", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    need("chord_progressions", lambda v: isinstance(v, dict) and all(_is_int(x) for x in v.values()),
         "an object of integer counts")
    need("harmonic_patterns", lambda v: isinstance(v, dict) and all(_is_number(x) for x in v.values()),
         "an object of counts")
    need("distance_history", lambda v: isinstance(v, list) and len(v) <= _MAX_HISTORY
         and all(_is_number(x) for x in v), f"a list of at most {_MAX_HISTORY} finite numbers")
    stats = need("stats", lambda v: isinstance(v, dict), "an object")
    if stats is not None:
        for key, types in MUSICHAL_STATS_KEYS.items():
            if key not in stats:
                p.add(f"stats lacks '{key}'", "")
            elif not isinstance(stats[key], types) or (bool not in types and isinstance(stats[key], bool)) \
                    or (isinstance(stats[key], float) and not math.isfinite(stats[key])):
                p.add(f"stats['{key}'] must be {'/'.join(t.__name__ for t in types)}, got {_show(stats[key])}", "")
        chord_types = stats.get("chord_types")
        if isinstance(chord_types, dict) and not all(_is_int(v) for v in chord_types.values()):
            p.add("stats['chord_types'] must map chord qualities to integer counts", "")

    # graph
    states = need("states", lambda v: isinstance(v, dict) and len(v) > 0, "a non-empty object")
    frames = need("audio_frames", lambda v: isinstance(v, dict), "an object")
    transitions = need("transitions", lambda v: isinstance(v, dict), "an object")
    suffix_links = need("suffix_links", lambda v: isinstance(v, dict), "an object")
    sequence = need("sequence", lambda v: isinstance(v, list) and all(_is_int(x) for x in v), "a list of frame ids")

    frame_ids: set[int] = set()
    if frames is not None:
        for fid, frame, where in _numbered(frames, "audio_frames", "frame", p):
            frame_ids.add(fid)
            if not isinstance(frame, dict):
                p.add("an audio frame must be an object", where)
                continue
            for field in ("timestamp", "features", "audio_data", "frame_id"):
                if field not in frame:
                    p.add(f"audio frames need '{field}'", where)
            if "frame_id" in frame and not (_is_int(frame["frame_id"]) and frame["frame_id"] == fid):
                p.add("a frame's 'frame_id' must be the integer of its key", where)
            if "timestamp" in frame and not _is_number(frame["timestamp"]):
                p.add("a frame's 'timestamp' must be a finite number", where)
            feats = frame.get("features")
            if "features" in frame:
                if not isinstance(feats, list) or not all(_is_number(x) for x in feats):
                    p.add("a frame's 'features' must be a list of finite numbers", where)
                elif dim is not None and len(feats) != dim:
                    p.add(f"features must have feature_dimensions = {dim} values", f"{where} ({len(feats)})")
            if "audio_data" in frame:
                _check_audio_data(frame["audio_data"], where, p)
        n = len(frames)
        if frame_ids and frame_ids != set(range(n)):
            p.add(f"frame ids must be 0..{n - 1} (MusicHal looks frames up by position)", "")
        if sequence_length is not None and sequence_length != n:
            p.add(f"'sequence_length' {sequence_length} differs from the {n} frames", "")
        if frame_counter is not None and frame_ids and frame_counter <= max(frame_ids):
            p.add(f"'frame_counter' {frame_counter} must exceed the largest frame id {max(frame_ids)} "
                  "(live learning would overwrite a frame)", "")
        if sequence is not None and sequence != sorted(frame_ids):
            p.add("'sequence' must list the frame ids in order", "")

    state_ids: set[int] = set()
    edges: set[tuple[int, int, int]] = set()
    if states is not None:
        for sid, state, where in _numbered(states, "states", "state", p):
            state_ids.add(sid)
            if not isinstance(state, dict) or not all(k in state for k in ("len", "link", "next")):
                p.add("a state must be an object with 'len', 'link' and 'next'", where)
                continue
            if not (_is_int(state["len"]) and state["len"] >= 0):
                p.add("a state's 'len' must be an integer >= 0", where)
            link = state["link"]
            if not _is_int(link) or (sid == 0 and link != -1) or (sid > 0 and not 0 <= link < sid):
                p.add("'link' must be -1 for state 0 and 0..s-1 for state s", where)
            nxt = state["next"]
            if not isinstance(nxt, dict):
                p.add("a state's 'next' must be an object", where)
                continue
            for label, dst in nxt.items():
                fid = _int_key(label)
                if fid is None or not _is_int(dst):
                    p.add("'next' must map decimal frame ids to integer states", where)
                    continue
                edges.add((sid, fid, dst))
        if state_ids != set(range(len(states))):
            p.add(f"state ids must be 0..{len(states) - 1}", "")
        if size is not None and size != len(states):
            p.add(f"'size' {size} differs from the {len(states)} states", "")
        if last is not None and last != len(states) - 1:
            p.add(f"'last' {last} must be the last state {len(states) - 1} (live learning continues from it)", "")
        if frames is not None and len(states) != len(frames) + 1:
            p.add(f"{len(states)} states for {len(frames)} frames (expected one more state than frames)", "")
        for sid, fid, dst in edges:
            if dst not in state_ids or dst == 0:
                p.add("a transition leads to a state that does not exist", f"state {sid}")
            if frame_ids and fid not in frame_ids:
                p.add("a transition is labelled by a frame that does not exist", f"state {sid}")
    if transitions is not None:
        listed: set[tuple[int, int, int]] = set()
        for key, dst in transitions.items():
            src_text, sep, label = key.partition("_") if isinstance(key, str) else ("", "", "")
            src, fid = _int_key(src_text), _int_key(label)
            if not sep or src is None or fid is None or not _is_int(dst):
                p.add("'transitions' keys must be '<state>_<frame id>' mapping to an integer state", repr(key))
                continue
            listed.add((src, fid, dst))
        if states is not None and listed != edges:
            p.add(f"'transitions' and states' 'next' disagree ({len(listed - edges)} only in transitions, "
                  f"{len(edges - listed)} only in next)", "")
    if suffix_links is not None and states is not None:
        for key, link in suffix_links.items():
            sid = _int_key(key)
            state = states.get(key)
            if sid is None or not _is_int(link) or not isinstance(state, dict) or state.get("link") != link:
                p.add("'suffix_links' must map decimal state ids to the states' 'link'", repr(key))
        missing = len([k for k in states if k != "0"]) - len([k for k in suffix_links if k != "0"])
        if missing > 0:
            p.add(f"'suffix_links' lacks {missing} states", "")

    for name, check, what in (("fundamentals", lambda v: _is_number(v) and v > 0, "positive Hz"),
                              ("consonances", lambda v: _is_number(v) and 0.0 <= v <= 1.0, "numbers in [0, 1]")):
        mapping = need(name, lambda v: isinstance(v, dict), "an object")
        if mapping is None:
            continue
        for key, value in mapping.items():
            sid = _int_key(key)
            if sid is None or (state_ids and sid not in state_ids):
                p.add(f"'{name}' keys must be decimal ids of existing states", repr(key))
            if not check(value):
                p.add(f"'{name}' values must be {what}", f"state {key!r}: {_show(value)}")

    marker = stats.get("chandra_export") if isinstance(stats, dict) else None
    if marker is not None:
        _check_marker(marker, p)
        if adaptive is True:
            p.add("a chandra export must set 'adaptive_threshold' false (MusicHal would move its threshold)", "")
        if weight is not None and weight != 0.0 and (dim is None or dim >= CHORD_BLEND_MIN_DIM):
            p.add("a chandra export must set 'chord_similarity_weight' 0 (MusicHal would blend the last three "
                  "feature dimensions into every distance)", "")
        if isinstance(stats, dict) and isinstance(marker, dict):
            for key, value in (("distance_threshold", threshold), ("distance_function", metric)):
                if value is not None and stats.get(key) != value:
                    p.add(f"stats['{key}'] must equal the top-level '{key}'", "")
    return p.lines()


def _check_marker(marker: Any, p: _Problems) -> None:
    if not isinstance(marker, dict) or marker.get("format") != EXPORT_MARKER:
        p.add(f"stats['chandra_export'] is not a chandra export marker (format {EXPORT_MARKER!r})", "")
        return
    if marker.get("oracle_kind") not in ("tokens", "features"):
        p.add("stats['chandra_export']['oracle_kind'] must be 'tokens' or 'features'", "")
    fields = marker.get("converted_fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        p.add("stats['chandra_export']['converted_fields'] must list field names", "")
    if not isinstance(marker.get("value_encoding"), str):
        p.add("stats['chandra_export']['value_encoding'] must name the value encoding", "")


def _check_audio_data(data: Any, where: str, p: _Problems) -> None:
    if not isinstance(data, dict):
        p.add("a frame's 'audio_data' must be an object", where)
        return
    token = data.get("gesture_token")
    if "gesture_token" not in data:
        p.add("audio_data lacks 'gesture_token' (MusicHal's token requests read a missing one as token 0)", where)
    elif not (_is_int(token) and token >= NO_TOKEN):
        p.add(f"audio_data 'gesture_token' must be an integer >= {NO_TOKEN}", f"{where}: {_show(token)}")
    if "consonance" not in data:
        p.add("audio_data lacks 'consonance' (MusicHal's consonance requests read a missing one as 0)", where)
    elif not (_is_number(data["consonance"]) and 0.0 <= data["consonance"] <= 1.0):
        p.add("audio_data 'consonance' must be a number in [0, 1]", f"{where}: {_show(data['consonance'])}")
    if "f0" not in data:
        p.add("audio_data lacks 'f0' (MusicHal takes a missing f0 for 440 Hz)", where)
    elif not (_is_number(data["f0"]) and data["f0"] >= 0.0):
        p.add("audio_data 'f0' must be a number >= 0 (0 = unpitched)", f"{where}: {_show(data['f0'])}")
    if "midi" in data and not (_is_int(data["midi"]) and 0 <= data["midi"] <= 127):
        p.add("audio_data 'midi' must be an integer 0..127 (MusicHal truncates it with int())",
              f"{where}: {_show(data['midi'])}")
    if "onset" in data and not (isinstance(data["onset"], bool) or _is_number(data["onset"])):
        p.add("audio_data 'onset' must be true/false or a number", f"{where}: {_show(data['onset'])}")
    for name in MUSICHAL_NUMBER_FIELDS:
        if name in data and not _is_number(data[name]):
            p.add(f"audio_data '{name}' must be a finite number when present", f"{where}: {_show(data[name])}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
