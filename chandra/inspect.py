"""Inspect a saved model: what it holds, what it lost, and what is wrong with it.

:func:`inspect_model` is the ``chandra inspect --json`` document for chandra
``.chandra`` files and for the three MusicHal 9000 JSON shapes (read through
:func:`chandra.model.load_model`, whose MusicHal import streams the file);
:func:`format_report` is the human-readable text of the same document, with
the findings first because they are what a user came for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from chandra.findings import (
    count_by_severity,
    findings_to_dicts,
    format_findings,
    model_findings,
    oracle_check_inputs,
)
from chandra.ledger import (
    FEATURE_FIELD,
    TOKEN_FIELD,
    json_safe,
    model_ledger_entry,
    oracle_summary,
)

__all__ = ["inspect_model", "inspect_loaded", "format_report", "REPORT_FORMAT"]

#: ``format`` key of the JSON document is the model's source format; this
#: names the document itself, so a consumer can check what it parses.
REPORT_FORMAT = "chandra-inspect-1"

# Provenance of an import can carry per-state lists (fundamentals,
# consonances); the report keeps their head and length, not every value.
_PROVENANCE_MAX_ITEMS = 32
_PROVENANCE_MAX_CHARS = 500

_ORACLE_KEYS = (
    "kind", "n_states", "n_frames", "n_transitions", "root_out_degree", "root_out_degree_share",
    "sfx_to_root_share", "sfx_to_previous_share", "transitions_per_state_mean",
    "transitions_per_state_max", "transition_density", "lrs_mean", "lrs_median", "lrs_max",
    "lrs_histogram", "threshold", "metric", "violations",
)


def inspect_model(path: str | os.PathLike) -> dict:
    """Load a model file and describe it.

    Parameters
    ----------
    path : path
        A chandra ``.chandra`` model, a MusicHal 9000 JSON model, or a
        MusicHal training summary (``format`` ``"musichal-summary"``: see
        :func:`chandra.musichal_summary.inspect_summary`).

    Returns
    -------
    dict
        JSON-able: ``report_format``, ``path``, ``size_bytes``, ``format``
        (the model's source format), ``frames``, ``feature_dim``, ``fields``
        ({name: {present, fraction}} over the frames; ``features`` and
        ``gesture_token`` always listed), ``tokens`` (``unique``,
        ``entropy_bits``, ``max_entropy_bits``, ``top_token``, ``top_share``,
        ``n_tokens``, ``present``, ``missing``, ``counts``), ``features``
        (:func:`chandra.ledger.feature_stats`), ``time``
        (:func:`chandra.ledger.time_stats`), ``oracle`` (``kind``,
        ``states``, ``transitions``, ``root_out_degree``,
        ``sfx_to_root_share``, ... or None), ``vocabulary`` (fit and assigned
        metrics or None), ``ledger_stages``, ``provenance`` (long lists cut),
        ``findings`` (list of finding dicts, errors first) and ``summary``
        ({error, warning, info} counts).

    Raises
    ------
    ModelFormatError
        The file is not a readable model (from :func:`chandra.model.load_model`).
    """
    from chandra.model import load_model
    from chandra.musichal_summary import MusicHalSummaryError, inspect_summary

    path = Path(path)
    try:
        model = load_model(path)
    except MusicHalSummaryError as exc:
        # A training summary is no model, but it records what training did.
        return inspect_summary(path, document=exc.document, metadata=exc.metadata)
    report = inspect_loaded(model)
    report["path"] = str(path)
    report["size_bytes"] = path.stat().st_size
    return report


def inspect_loaded(model: Any) -> dict:
    """:func:`inspect_model` for a :class:`chandra.model.Model` already in memory.

    ``path`` and ``size_bytes`` are None.
    """
    entry = model_ledger_entry(model, stage="model")
    summary = None
    if getattr(model, "oracle", None) is not None:
        summary = oracle_summary(model.oracle, **oracle_check_inputs(model))
    findings = model_findings(model, entry=entry, oracle_summary_=summary)

    provenance = getattr(model, "provenance", None) or {}
    if summary is None and isinstance(provenance.get("musichal"), dict):
        summary = {k: v for k, v in provenance["musichal"].items() if not isinstance(v, (list, dict))}
    fields = {name: {"present": int(info["present"]), "fraction": float(info["fraction"])}
              for name, info in entry["fields"].items()}
    for name in (FEATURE_FIELD, TOKEN_FIELD):
        fields.setdefault(name, {"present": 0, "fraction": 0.0})
    tok = entry.get("tokens") or {}
    tokens = {key: tok.get(key) for key in (
        "unique", "entropy_bits", "max_entropy_bits", "normalised_entropy", "top_token", "top_share",
        "n_tokens", "present", "missing", "counts")}
    if not tok:
        tokens.update(unique=0, present=0, missing=entry["n_records"], entropy_bits=0.0, top_share=0.0)

    oracle = None
    if summary is not None:
        oracle = {key: summary.get(key) for key in _ORACLE_KEYS if key in summary}
        # The CLI and dashboard read these two names; keep them stable.
        oracle["states"] = summary.get("n_states")
        oracle["transitions"] = summary.get("n_transitions")
        search = getattr(model.oracle, "search", None)
        if search:
            oracle["search"] = search.get("mode")

    vocabulary = None
    vocab = getattr(model, "vocabulary", None)
    if isinstance(vocab, dict):
        vocabulary = {}
        for part in ("fit_metrics", "assigned_metrics"):
            metrics = vocab.get(part) or {}
            vocabulary[part] = {k: metrics.get(k) for k in (
                "active", "unique", "entropy_bits", "max_entropy_bits", "top_share", "n_tokens")
                if k in metrics}
        vocabulary["n_tokens"] = vocab.get("n_tokens")

    features = getattr(model, "features", None)
    feature_dim = int(features.shape[1]) if features is not None and getattr(features, "ndim", 0) == 2 else 0
    # A MusicHal import pads ragged rows; the original lengths say by how much.
    lengths = (getattr(model, "extra_arrays", None) or {}).get("feature_lengths")
    feature_lengths = None
    if lengths is not None and len(lengths):
        arr = np.asarray(lengths)
        feature_lengths = {"min": int(arr.min()), "max": int(arr.max()),
                           "distinct": [int(v) for v in np.unique(arr)[:16]]}
    report = {
        "report_format": REPORT_FORMAT,
        "path": None,
        "size_bytes": None,
        "format": getattr(model, "source_format", "chandra"),
        "frames": int(entry["n_records"]),
        "files": _files_table(model, entry),
        "audio": _audio_storage(model),
        "feature_dim": feature_dim,
        "feature_lengths": feature_lengths,
        "fields": fields,
        "tokens": tokens,
        "features": entry.get("features"),
        "time": entry.get("time"),
        "oracle": oracle,
        "vocabulary": vocabulary,
        "ledger_stages": [e.get("stage") for e in (getattr(model, "ledger", None) or [])
                          if isinstance(e, dict)],
        "provenance": json_safe(provenance, max_items=_PROVENANCE_MAX_ITEMS,
                                max_chars=_PROVENANCE_MAX_CHARS, max_keys=4 * _PROVENANCE_MAX_ITEMS),
        "findings": findings_to_dicts(findings),
        "summary": count_by_severity(findings),
    }
    return json_safe(report)


def _files_table(model: Any, entry: dict) -> list[dict]:
    """One row per source file (take): what it is, how much of the model it is, the vocabulary it uses."""
    files = model.files() if callable(getattr(model, "files", None)) else []
    if not files:
        return []
    per_file = {item.get("take"): item for item in entry.get("per_file") or [] if isinstance(item, dict)}
    vocab = getattr(model, "vocabulary", None)
    usage = vocab.get("per_file") if isinstance(vocab, dict) and isinstance(vocab.get("per_file"), dict) else {}
    rows = []
    for k, row in enumerate(files):
        item = per_file.get(k) or {}
        tokens = (item.get("tokens") or {}).get("unique")
        if tokens is None and len(files) == 1:
            tokens = (entry.get("tokens") or {}).get("unique")
        rows.append({
            "take": k, "name": row.get("name"), "path": row.get("path"), "label": row.get("label"),
            "sha256": row.get("sha256"), "duration": row.get("duration"), "sample_rate": row.get("sample_rate"),
            "frames": item.get("n_records", row.get("n_events")), "tokens_used": tokens,
            "tokens_exclusive": (usage.get("exclusive") or [None] * len(files))[k]
            if isinstance(usage.get("exclusive"), list) and len(usage["exclusive"]) == len(files) else None,
        })
    return rows


def _audio_storage(model: Any) -> str:
    prov = getattr(model, "provenance", None) or {}
    declared = prov.get("audio") if isinstance(prov.get("audio"), dict) else {}
    if declared.get("storage") in ("embedded", "reference", "none"):
        return declared["storage"]
    return "embedded" if getattr(model, "audio", None) is not None else "none"


def _pct(x: Any) -> str:
    return f"{100.0 * float(x):.1f}%" if isinstance(x, (int, float)) else "n/a"


def _num(x: Any, fmt: str = ".4g") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and not isinstance(x, bool) else "n/a"


def format_report(report: dict) -> str:
    """Human-readable text of an :func:`inspect_model` document, findings first.

    Parameters
    ----------
    report : dict

    Returns
    -------
    str
        Several lines, no trailing newline.
    """
    if report.get("format") == "musichal-summary":
        from chandra.musichal_summary import format_summary_report

        return format_summary_report(report)
    lines: list[str] = []
    lines.append(f"model: {report.get('path') or '(in memory)'}")
    lines.append(f"format: {report.get('format')}   frames: {report.get('frames')}   "
                 f"feature dim: {report.get('feature_dim')}")
    findings = report.get("findings") or []
    summary = report.get("summary") or {}
    lines.append("")
    lines.extend(format_findings(findings, summary))

    files = report.get("files") or []
    if files:
        lines.append("")
        lines.append(f"files ({len(files)}, audio {report.get('audio')}):")
        width = min(40, max(len(str(f.get("name"))) for f in files))
        lines.append(f"  {'take':>4}  {'name':<{width}}  {'seconds':>8}  {'rate':>6}  {'frames':>7}  {'tokens':>6}  "
                     f"{'sha256':<12}  label")
        for f in files:
            name = str(f.get("name"))
            name = name if len(name) <= width else name[:width - 3] + "..."
            lines.append(f"  {f['take']:>4}  {name:<{width}}  {_num(f.get('duration'), '8.2f')}  "
                         f"{str(f.get('sample_rate') or '?'):>6}  {str(f.get('frames')):>7}  "
                         f"{str(f.get('tokens_used') if f.get('tokens_used') is not None else '?'):>6}  "
                         f"{str(f.get('sha256') or '')[:12]:<12}  {f.get('label') or ''}".rstrip())

    frames = report.get("frames") or 0
    lines.append("")
    lines.append(f"fields over {frames} frames:")
    fields = report.get("fields") or {}
    width = max((len(n) for n in fields), default=5)
    for name, info in sorted(fields.items(), key=lambda kv: (-kv[1]["present"], kv[0])):
        lines.append(f"  {name:<{width}}  {info['present']:>8} of {frames}  {_pct(info['fraction']):>7}")

    tok = report.get("tokens") or {}
    lines.append("")
    lines.append(
        f"tokens: {tok.get('present', 0)} of {frames} frames carry one; {tok.get('unique', 0)} distinct"
        f" (K={tok.get('n_tokens')}), entropy {_num(tok.get('entropy_bits'), '.2f')} of "
        f"{_num(tok.get('max_entropy_bits'), '.2f')} bits, top token {tok.get('top_token')} "
        f"{_pct(tok.get('top_share'))}")
    vocab = report.get("vocabulary")
    if vocab and vocab.get("fit_metrics"):
        fit = vocab["fit_metrics"]
        lines.append(f"vocabulary fit set: {fit.get('active')} active tokens, entropy "
                     f"{_num(fit.get('entropy_bits'), '.2f')} bits")

    feats = report.get("features")
    if feats:
        lines.append(
            f"features: {feats['dim']}-D, {feats['nonzero_dims']} dims ever non-zero, "
            f"{feats['dead_dims']} dead, norms {_num(feats['norm_min'])}..{_num(feats['norm_max'])}, "
            f"{feats['zero_rows']} zero rows, {_pct(feats['duplicate_rate'])} duplicates")
    else:
        lines.append("features: none")

    time = report.get("time")
    if time:
        in_range = time.get("fraction_in_range")
        lines.append(
            f"time ('{time['field']}'): {_num(time['t_min'], '.6g')} .. {_num(time['t_max'], '.6g')} s, "
            f"{'monotonic' if time['monotonic'] else 'NOT monotonic'}"
            + (f", {_pct(in_range)} inside the audio ({_num(time['duration'], '.4g')} s)"
               if in_range is not None else ""))
    else:
        lines.append("time: no time field")

    oracle = report.get("oracle")
    lines.append("")
    if oracle:
        lines.append(
            f"oracle: {oracle.get('kind') or 'graph'}, {oracle.get('states')} states, "
            f"{oracle.get('transitions')} transitions, root out-degree {oracle.get('root_out_degree')}, "
            f"suffix links to root {_pct(oracle.get('sfx_to_root_share'))}, "
            f"to previous {_pct(oracle.get('sfx_to_previous_share'))}"
            + (f", threshold {_num(oracle['threshold'])} ({oracle.get('metric')})"
               if oracle.get("threshold") is not None else "")
            + (", approximate root search" if oracle.get("search") == "approximate" else ""))
        if oracle.get("violations"):
            shown = ", ".join(f"{k}: {v}" for k, v in oracle["violations"].items())
            lines.append(f"  invariant violations: {shown}")
    else:
        lines.append("oracle: none")

    stages = report.get("ledger_stages") or []
    if stages:
        lines.append(f"ledger stages: {', '.join(str(s) for s in stages)}")
    prov = report.get("provenance") or {}
    encoder = prov.get("encoder") if isinstance(prov.get("encoder"), dict) else None
    if encoder:
        # The encoder's identity decides what the features mean; show it in full.
        keys = ("encoder", "model", "model_type", "layer", "pooling", "sample_rate", "dim")
        parts = [f"{k}={encoder[k]}" for k in keys if encoder.get(k) is not None]
        versions = encoder.get("versions")
        if isinstance(versions, dict):
            parts.append("versions " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
        lines.append("encoder: " + "  ".join(parts))
    source = prov.get("input") if isinstance(prov.get("input"), dict) else None
    if source:
        lines.append(f"input: {source.get('name')} ({_fmt_num(source.get('duration'))} s, "
                     f"sha256 {str(source.get('sha256', ''))[:12]})")
    if prov:
        lines.append("provenance: " + ", ".join(sorted(str(k) for k in prov)))
    return "\n".join(lines)


def _fmt_num(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "?"
