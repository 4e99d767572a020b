"""MusicHal 9000 training summaries: recognised, described, judged.

Besides the model (``…_model.json``, read by :mod:`chandra.musichal`),
MusicHal 9000's trainer writes a *training summary*: a JSON object with what
the run did — ``training_successful``, ``events_processed``,
``audio_oracle_stats`` (``total_states``, ``total_patterns``,
``sequence_length``, ``distance_threshold``, ``distance_function``,
``feature_dimensions``, ``is_trained``, …), ``training_statistics`` (times and
counters), sometimes ``rhythm_oracle_stats`` and analysis sections, and in
the modular trainer the same under ``{"metadata": …, "data": …}``. It holds
no frames and no graph, so it is not a model; it is still worth reading,
because its numbers can betray a broken run (one distinct pattern for
thousands of events, no frame with a gesture token).

:func:`summary_document` tells a summary from anything else;
:func:`describe_summary` turns one into the facts chandra shows (``chandra
inspect``, the Model inspector) and :func:`summary_findings` into findings.
Files are read with the bounded reader of :mod:`chandra.safejson`
(:func:`read_summary`); :func:`chandra.musichal.load_musichal` raises
:class:`MusicHalSummaryError` (a :class:`~chandra.errors.ModelFormatError`)
for a summary, carrying the document it already parsed.

Only the key names below are MusicHal's; every value is checked for its
type before use, so any JSON document is described or refused with a
one-line error, never a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chandra.errors import ModelFormatError

__all__ = ["SUMMARY_FORMAT", "SUMMARY_MARKERS", "MAX_SUMMARY_BYTES", "MusicHalSummaryError", "summary_document",
           "read_summary", "describe_summary", "summary_findings", "inspect_summary", "format_summary_report"]

#: ``format`` of a summary in ``chandra inspect`` reports.
SUMMARY_FORMAT = "musichal-summary"
#: Keys of which at least one marks a training summary (no model has them at its top level).
SUMMARY_MARKERS = ("audio_oracle_stats", "training_statistics", "training_stats", "training_successful",
                   "events_processed", "rhythm_oracle_stats", "training_result")
#: Largest summary read whole (they hold statistics and samples: kilobytes to a few megabytes).
MAX_SUMMARY_BYTES = 256 * 1024 * 1024
#: Events below this make no pattern count suspicious.
MIN_EVENTS_FOR_PATTERNS = 20
#: Feature dimensions at or below this are the documented low-dimensional pathology (6-, 15-, 16-D).
LOW_DIM_MAX = 16

_GRAPH_KEYS = ("audio_frames", "states", "transitions", "suffix_links")
_UNIQUE_TOKEN_KEYS = ("unique_gesture_tokens", "gesture_tokens_unique", "unique_tokens", "gesture_token_unique",
                      "unique_gesture_patterns", "unique_tokens_assigned", "active_tokens")
_TOKEN_FRAME_KEYS = ("frames_with_gesture_token", "frames_with_gesture_tokens", "gesture_token_frames",
                     "events_with_gesture_token", "events_with_tokens", "frames_with_tokens")
_MODEL_FILE_KEYS = ("model_file", "model_path", "output_file", "output_path", "saved_model", "model_json",
                    "audio_oracle_file", "oracle_file")
_SOURCE_KEYS = ("audio_file", "training_source", "input_file", "source_file", "file")
_ORACLE_KEYS = ("total_states", "total_patterns", "sequence_length", "max_pattern_length", "is_trained",
                "distance_threshold", "distance_function", "feature_dimensions", "adaptive_threshold",
                "threshold_adjustments", "total_distances_calculated", "average_distance", "harmonic_patterns",
                "polyphonic_patterns", "chord_progressions", "rhythmic_patterns", "polyphonic_frames",
                "memory_usage")


class MusicHalSummaryError(ModelFormatError):
    """The JSON file is a MusicHal training summary, not a model.

    Attributes
    ----------
    document : dict
        The summary's training part (the ``data`` object of a modular file).
    metadata : dict or None
        A modular file's ``metadata``.
    """

    def __init__(self, message: str, *, document: dict, metadata: dict | None = None) -> None:
        super().__init__(message)
        self.document = document
        self.metadata = metadata


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _count(value: Any) -> int | None:
    x = _number(value)
    return int(x) if x is not None and x >= 0 and float(x).is_integer() else None


def summary_document(value: Any) -> tuple[dict, dict | None] | None:
    """``(training part, metadata)`` when ``value`` is a MusicHal training
    summary (a JSON object with one of :data:`SUMMARY_MARKERS` and none of a
    model's graph keys, at the top or under a modular file's ``data``), else None."""
    if not isinstance(value, Mapping):
        return None
    if any(key in value for key in _GRAPH_KEYS):
        return None
    if any(key in value for key in SUMMARY_MARKERS):
        return dict(value), None
    data = value.get("data")
    if isinstance(data, Mapping) and not any(key in data for key in ("audio_oracle", *_GRAPH_KEYS)) \
            and any(key in data for key in SUMMARY_MARKERS):
        metadata = value.get("metadata")
        return dict(data), dict(metadata) if isinstance(metadata, Mapping) else None
    return None


def not_a_model_message(path: str | os.PathLike) -> str:
    return (f"{path}: a MusicHal training summary, not a model: it records what training did but holds no frames "
            "or oracle graph (inspect it to see its statistics; the model is the trainer's …_model.json file)")


def read_summary(path: str | os.PathLike) -> tuple[dict, dict | None]:
    """Read a summary file with the bounded JSON reader.

    Raises
    ------
    ModelFormatError
        Not JSON, beyond :mod:`chandra.safejson`'s limits or
        :data:`MAX_SUMMARY_BYTES`, or not a training summary.
    """
    from chandra import safejson

    doc = safejson.load(path, max_bytes=MAX_SUMMARY_BYTES)
    found = summary_document(doc)
    if found is None:
        raise ModelFormatError(f"{path}: not a MusicHal training summary (none of "
                               f"{', '.join(SUMMARY_MARKERS[:4])} among its top-level keys)")
    return found


def _walk(node: Any, depth: int = 0, path: str = ""):
    """(path, key, value) for every mapping entry down to depth 3."""
    if depth > 3 or not isinstance(node, Mapping):
        return
    for key, value in node.items():
        if not isinstance(key, str):
            continue
        here = f"{path}.{key}" if path else key
        yield here, key, value
        if isinstance(value, Mapping):
            yield from _walk(value, depth + 1, here)


def _first(doc: Mapping, names: tuple[str, ...], kind) -> tuple[str, Any] | None:
    for where, key, value in _walk(doc):
        if key in names:
            converted = kind(value)
            if converted is not None:
                return where, converted
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() and len(value) <= 4096 else None


def _short(value: Any, limit: int = 200) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + "…"
    return value


def describe_summary(document: Mapping, *, metadata: Mapping | None = None,
                     path: str | os.PathLike | None = None) -> dict:
    """The facts a MusicHal training summary records.

    Parameters
    ----------
    document : mapping
        The summary's training part (:func:`summary_document`).
    metadata : mapping, optional
        A modular file's ``metadata``.
    path : path, optional
        The summary file (to name a model file that sits beside it).

    Returns
    -------
    dict
        JSON-able: ``training_successful`` (bool or None),
        ``events_processed`` (int or None), ``oracle`` (the known
        ``audio_oracle_stats`` values present), ``rhythm_oracle`` (numbers of
        ``rhythm_oracle_stats``), ``times`` ({path: seconds} for keys naming
        a time or duration), ``counts`` (other whole numbers of
        ``training_statistics``), ``flags`` ({path: bool}), ``tokens``
        (``unique`` and ``frames_with_token`` when recorded, with where they
        were found), ``model_file`` (the model the summary names, and
        whether it exists beside it), ``source`` (the audio it names),
        ``metadata`` (scalars of a modular file's metadata), ``sections``
        (every top-level key with its JSON type).
    """
    doc = dict(document)
    oracle_stats = doc.get("audio_oracle_stats") if isinstance(doc.get("audio_oracle_stats"), Mapping) else {}
    oracle = {}
    for key in _ORACLE_KEYS:
        value = oracle_stats.get(key)
        if isinstance(value, bool) or _number(value) is not None or _text(value) is not None:
            oracle[key] = _short(value)
    rhythm_stats = doc.get("rhythm_oracle_stats") if isinstance(doc.get("rhythm_oracle_stats"), Mapping) else {}
    rhythm = {k: v for k, v in rhythm_stats.items() if isinstance(k, str) and _number(v) is not None}
    success = doc.get("training_successful")
    events = _count(doc.get("events_processed"))
    stats = None
    for name in ("training_statistics", "training_stats"):
        if isinstance(doc.get(name), Mapping):
            stats = doc[name]
            break
    times, counts, flags = {}, {}, {}
    for where, key, value in _walk(doc):
        lowered = key.lower()
        if isinstance(value, bool):
            if len(flags) < 64:
                flags[where] = value
        elif _number(value) is not None and (lowered.endswith(("_time", "_seconds", "_duration", "_secs"))
                                             or lowered in ("duration", "duration_seconds", "elapsed")):
            if len(times) < 64:
                times[where] = float(value)
    if isinstance(stats, Mapping):
        for key, value in stats.items():
            if isinstance(key, str) and _count(value) is not None and key not in times and len(counts) < 64:
                counts[key] = int(value)
        if events is None:
            events = _count(stats.get("events_processed"))
    tokens: dict[str, Any] = {}
    found = _first(doc, _UNIQUE_TOKEN_KEYS, _count)
    if found:
        tokens["unique"], tokens["unique_from"] = found[1], found[0]
    found = _first(doc, _TOKEN_FRAME_KEYS, _count)
    if found:
        tokens["frames_with_token"], tokens["frames_with_token_from"] = found[1], found[0]
    model_file: dict[str, Any] = {}
    found = _first(doc, _MODEL_FILE_KEYS, _text) or (_first(metadata, _MODEL_FILE_KEYS, _text) if metadata else None)
    if found:
        model_file = {"named": _short(found[1], 1000), "named_in": found[0]}
    if path is not None:
        here = Path(path)
        stem = here.name[: -len("_summary.json")] if here.name.endswith("_summary.json") else None
        candidates = [here.with_name(f"{stem}_model.json"), here.with_name(f"{stem}.json")] if stem else []
        if model_file.get("named"):
            # Only the summary's own folder is looked at: a path named inside a
            # user's file is never tested for existence elsewhere (DESIGN §9).
            try:
                candidates.insert(0, here.parent / Path(model_file["named"]).name)
            except (TypeError, ValueError):
                pass
        for candidate in candidates:
            try:
                if candidate.name and candidate != here and candidate.is_file():
                    model_file["beside"] = str(candidate)
                    break
            except (OSError, ValueError):
                continue
    source = _first(doc, _SOURCE_KEYS, _text) or (_first(metadata, _SOURCE_KEYS, _text) if metadata else None)
    meta = {}
    if isinstance(metadata, Mapping):
        meta = {k: _short(v) for k, v in metadata.items() if isinstance(k, str)
                and (isinstance(v, (str, bool)) or _number(v) is not None)}
    sections = {k: type(v).__name__ for k, v in list(doc.items())[:64] if isinstance(k, str)}
    return {"training_successful": success if isinstance(success, bool) else None,
            "events_processed": events, "oracle": oracle, "rhythm_oracle": rhythm, "times": times,
            "counts": counts, "flags": flags, "tokens": tokens, "model_file": model_file or None,
            "source": _short(source[1], 1000) if source else None, "metadata": meta, "sections": sections}


def summary_findings(facts: Mapping) -> list:
    """Findings where a summary's numbers betray a fault (stage ``"summary"``).

    * ``TRAINING_FAILED`` (error): ``training_successful`` or the oracle's
      ``is_trained`` is false.
    * ``PATTERNS_COLLAPSED`` (error): at most one distinct pattern
      (``total_patterns``) for :data:`MIN_EVENTS_FOR_PATTERNS` or more events.
    * ``TOKEN_COLLAPSE`` (error): one distinct gesture token recorded for that many events.
    * ``TOKENS_MISSING`` (error): no frame (or only some) with a gesture token.
    * ``RECORDS_LOST`` (warning): the oracle holds fewer frames
      (``sequence_length``) than the events processed.
    * ``FEATURES_LOW_DIM`` (warning): the oracle's ``feature_dimensions`` is
      :data:`LOW_DIM_MAX` or less.
    """
    from chandra.findings import (
        FEATURES_LOW_DIM,
        PATTERNS_COLLAPSED,
        RECORDS_LOST,
        TOKEN_COLLAPSE,
        TOKENS_MISSING,
        TRAINING_FAILED,
        Finding,
        sort_findings,
    )

    out = []
    oracle = facts.get("oracle") or {}
    events = facts.get("events_processed")
    length = _count(oracle.get("sequence_length"))
    n = events if events is not None else length
    if facts.get("training_successful") is False or oracle.get("is_trained") is False:
        which = "training_successful is false" if facts.get("training_successful") is False \
            else "the audio oracle says is_trained: false"
        out.append(Finding("error", TRAINING_FAILED, "summary", f"the trainer reports failure ({which})",
                           {"training_successful": facts.get("training_successful"),
                            "is_trained": oracle.get("is_trained")}))
    patterns = _count(oracle.get("total_patterns"))
    if patterns is not None and n is not None and n >= MIN_EVENTS_FOR_PATTERNS and patterns <= 1:
        out.append(Finding("error", PATTERNS_COLLAPSED, "summary",
                           f"{patterns} distinct pattern{'s' * (patterns != 1)} for {n} events "
                           f"(audio_oracle_stats.total_patterns)",
                           {"total_patterns": patterns, "events": n, "total_states": oracle.get("total_states")}))
    tokens = facts.get("tokens") or {}
    unique = tokens.get("unique")
    if unique is not None and n is not None and n >= MIN_EVENTS_FOR_PATTERNS and unique <= 1:
        out.append(Finding("error", TOKEN_COLLAPSE, "summary",
                           f"{unique} distinct gesture token{'s' * (unique != 1)} for {n} events "
                           f"({tokens.get('unique_from')})",
                           {"unique": unique, "present": n, "source": tokens.get("unique_from")}))
    with_token = tokens.get("frames_with_token")
    if with_token is not None and n is not None and n > 0 and with_token < n:
        out.append(Finding("error", TOKENS_MISSING, "summary",
                           f"{with_token} of {n} frames carry a gesture token ({tokens.get('frames_with_token_from')})",
                           {"present": with_token, "n_records": n, "source": tokens.get("frames_with_token_from")}))
    if events is not None and length is not None and length < events:
        out.append(Finding("warning", RECORDS_LOST, "summary",
                           f"the audio oracle holds {length} frames (sequence_length) but {events} events were "
                           f"processed: {events - length} did not reach it",
                           {"events_processed": events, "sequence_length": length}))
    dims = _count(oracle.get("feature_dimensions"))
    if dims is not None and 0 < dims <= LOW_DIM_MAX:
        out.append(Finding("warning", FEATURES_LOW_DIM, "summary",
                           f"the audio oracle was trained on {dims}-D features (feature_dimensions), not the "
                           "encoder's full output",
                           {"dim": dims}))
    return sort_findings(out)


def inspect_summary(path: str | os.PathLike, *, document: Mapping | None = None,
                    metadata: Mapping | None = None) -> dict:
    """The ``chandra inspect`` document of a training summary
    (``format`` :data:`SUMMARY_FORMAT`; no frames, fields, tokens or oracle
    of its own: see ``training``).

    Parameters
    ----------
    path : path
    document, metadata : mapping, optional
        Already parsed (from :class:`MusicHalSummaryError`); read otherwise.
    """
    from chandra.findings import count_by_severity, findings_to_dicts
    from chandra.inspect import REPORT_FORMAT
    from chandra.ledger import json_safe

    path = Path(path)
    if document is None:
        document, metadata = read_summary(path)
    facts = describe_summary(document, metadata=metadata, path=path)
    findings = summary_findings(facts)
    dims = _count((facts.get("oracle") or {}).get("feature_dimensions"))
    report = {
        "report_format": REPORT_FORMAT, "path": str(path), "size_bytes": path.stat().st_size,
        "format": SUMMARY_FORMAT, "frames": 0, "feature_dim": dims or 0, "feature_lengths": None,
        "fields": {}, "tokens": {}, "features": None, "time": None, "oracle": None, "vocabulary": None,
        "ledger_stages": [], "provenance": {}, "training": facts,
        "findings": findings_to_dicts(findings), "summary": count_by_severity(findings),
    }
    return json_safe(report)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_summary_report(report: Mapping) -> str:
    """Human-readable text of :func:`inspect_summary`'s document, findings first."""
    from chandra.findings import format_findings

    facts = report.get("training") or {}
    lines = [f"training summary: {report.get('path') or '(in memory)'}",
             f"format: {report.get('format')}   (a MusicHal 9000 training summary: statistics, no frames or graph)"]
    lines.append("")
    lines.extend(format_findings(report.get("findings") or [], report.get("summary")))
    lines.append("")
    model = facts.get("model_file") or {}
    if model.get("named"):
        lines.append(f"describes model: {model['named']} (named in {model.get('named_in')})")
    if model.get("beside"):
        lines.append(f"model file beside it: {model['beside']}  (chandra inspect that file for frames and graph)")
    if facts.get("source"):
        lines.append(f"trained on: {facts['source']}")
    lines.append(f"training successful: {_fmt(facts.get('training_successful')) if facts.get('training_successful') is not None else 'not recorded'}"
                 f"   events processed: {_fmt(facts.get('events_processed')) if facts.get('events_processed') is not None else 'not recorded'}")
    oracle = facts.get("oracle") or {}
    if oracle:
        lines.append("audio oracle: " + ", ".join(f"{k} {_fmt(v)}" for k, v in oracle.items()))
    if facts.get("rhythm_oracle"):
        lines.append("rhythm oracle: " + ", ".join(f"{k} {_fmt(v)}" for k, v in facts["rhythm_oracle"].items()))
    tokens = facts.get("tokens") or {}
    if tokens:
        lines.append("gesture tokens: " + ", ".join(f"{k} {_fmt(v)}" for k, v in tokens.items()))
    if facts.get("times"):
        lines.append("times (s): " + ", ".join(f"{k} {_fmt(v)}" for k, v in facts["times"].items()))
    if facts.get("counts"):
        lines.append("counts: " + ", ".join(f"{k} {_fmt(v)}" for k, v in facts["counts"].items()))
    if facts.get("flags"):
        lines.append("flags: " + ", ".join(f"{k} {_fmt(v)}" for k, v in facts["flags"].items()))
    if facts.get("metadata"):
        lines.append("metadata: " + ", ".join(f"{k} {_fmt(v)}" for k, v in facts["metadata"].items()))
    if facts.get("sections"):
        lines.append("sections: " + ", ".join(facts["sections"]))
    return "\n".join(lines)
