"""Trace any trainer: one-line checkpoints, then a report naming where data broke.

Drop a :class:`Tracer` into a training script (chandra's or anybody's)::

    from chandra.trace import Tracer
    tracer = Tracer("trace_out")
    tracer.checkpoint("segments", segments, duration=audio_seconds)
    tracer.checkpoint("events", events)
    tracer.checkpoint("save", reloaded_events)

Each checkpoint writes one small JSON file (the ledger entry of the records,
the time since the tracer started and since the previous checkpoint, and a
few sample records) plus an updated ``index.json``, all atomically, so a
crashed run still leaves a readable trace up to its last checkpoint.
:func:`trace_report` reads a trace directory back and runs the same findings
as chandra's own ledger, with the checkpoint names as stages.

Importing this module costs numpy and nothing heavier (no torch, no
scikit-learn, no numba), so instrumenting a trainer does not slow it down.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from chandra import safejson
from chandra.errors import ChandraError, ModelFormatError, TraceError
from chandra.findings import count_by_severity, findings_to_dicts, format_findings, ledger_findings
from chandra.io_utils import dump_json_atomic
from chandra.ledger import check_entry, field_matrix, json_safe, ledger_entry, to_records

__all__ = ["Tracer", "trace_report", "format_trace_report", "TRACE_FORMAT", "CHECKPOINT_FORMAT"]

TRACE_FORMAT = "chandra-trace"
CHECKPOINT_FORMAT = "chandra-trace-checkpoint"
TRACE_VERSION = 1
INDEX_NAME = "index.json"
#: Largest trace index or checkpoint file read (each holds one ledger entry and a few sample records).
MAX_TRACE_FILE_BYTES = 64 * 1024 * 1024

# Sample records are for a human glancing at the shape of the data: vectors
# and long strings are cut so a checkpoint stays a few kilobytes.
_SAMPLE_MAX_ITEMS = 8
_SAMPLE_MAX_CHARS = 200
_CHECKPOINT_FILE = re.compile(r"^\d{3,}_[A-Za-z0-9_.-]*\.json$")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:60] or "checkpoint"


class Tracer:
    """Write checkpoints of a training run into ``directory``.

    Parameters
    ----------
    directory : path
        Created if needed. A previous trace there is replaced: its indexed
        checkpoint files are removed when the tracer starts, other files are
        left alone.
    sample_size : int
        Records kept per checkpoint as a sample (evenly spaced, first and last
        included).
    n_tokens : int, optional
        Vocabulary size K for token histograms (default: largest id + 1).
    """

    def __init__(self, directory: str | os.PathLike, *, sample_size: int = 5, n_tokens: int | None = None):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise TraceError(f"trace directory {self.directory} exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sample_size = int(sample_size)
        self.n_tokens = n_tokens
        self._started = time.perf_counter()
        self._last = self._started
        self._checkpoints: list[dict] = []
        self._remove_previous()
        self._write_index()

    def _remove_previous(self) -> None:
        index = self.directory / INDEX_NAME
        if not index.exists():
            return
        try:
            old = safejson.load(index, max_bytes=MAX_TRACE_FILE_BYTES)
            listed = old.get("checkpoints", []) if isinstance(old, dict) else None
            if not isinstance(listed, list):
                raise ModelFormatError(f"{index}: no checkpoint list")
            files = [c.get("file") for c in listed if isinstance(c, dict)]
        except ModelFormatError as exc:
            raise TraceError(
                f"{index} exists but is not a readable trace index ({exc}); "
                "remove it or choose another directory") from None
        for name in files:
            # Only names this module writes: an index must not be able to delete arbitrary files.
            if isinstance(name, str) and _CHECKPOINT_FILE.match(name):
                (self.directory / name).unlink(missing_ok=True)

    def _write_index(self) -> None:
        dump_json_atomic({
            "format": TRACE_FORMAT,
            "version": TRACE_VERSION,
            "checkpoints": [{k: c[k] for k in ("index", "name", "file", "n_records")}
                            for c in self._checkpoints],
        }, self.directory / INDEX_NAME)

    @property
    def checkpoints(self) -> list[str]:
        """Names of the checkpoints written so far, in order."""
        return [c["name"] for c in self._checkpoints]

    def checkpoint(
        self,
        name: str,
        records: Any,
        *,
        duration: float | None = None,
        features: Any = None,
        tokens: Any = None,
        n_tokens: int | None = None,
        centers: Any = None,
        provenance: dict | None = None,
    ) -> dict:
        """Record one stage boundary.

        Parameters
        ----------
        name : str
            Checkpoint (stage) name, shown in reports.
        records : list of dict | DataFrame | list of objects | columnar object
            See :func:`chandra.ledger.to_records`. A ``"features"`` key
            holding vectors is summarised as a feature matrix, a
            ``"gesture_token"`` key as tokens, ``"t"`` (or ``start``,
            ``time``, ``timestamp``) as the time axis.
        duration : float, optional
            Audio duration in seconds, to judge times against.
        features, tokens : optional
            Feature matrix / token sequence kept outside the records (row i
            belongs to record i).
        n_tokens : int, optional
            Overrides the tracer's K for this checkpoint.
        centers : array (K, d), optional
            The vocabulary's centres, in the space of the features here: the
            check that each token is the nearest centre of its features
            (TOKENS_DESYNC) is then exact instead of estimated from the
            tokens' mean features.
        provenance : dict, optional
            What the trainer declares at this step, e.g. ``{"encoder":
            {"encoder": "wav2vec2", "layer": 12, "dim": 768}}`` where features
            are made and ``{"vocabulary": {"fitted_on": {...},
            "normalisation": "l2"}}`` where a vocabulary is applied; a
            vocabulary fitted on other features than the declared encoder's
            is reported (VOCAB_ENCODER_MISMATCH). Kept small (long lists cut).

        Returns
        -------
        dict
            The checkpoint document that was written.

        Raises
        ------
        TraceError
            An empty name or records that cannot be read.
        """
        if not isinstance(name, str) or not name.strip():
            raise TraceError("a checkpoint needs a non-empty name")
        now = time.perf_counter()
        try:
            recs = to_records(records)
        except ChandraError as exc:
            raise TraceError(f"checkpoint {name!r}: {exc}") from exc
        if provenance is not None and not isinstance(provenance, dict):
            raise TraceError(f"checkpoint {name!r}: provenance must be a dict, got {type(provenance).__name__}")
        entry = ledger_entry(name, recs, features=features, tokens=tokens,
                             n_tokens=n_tokens if n_tokens is not None else self.n_tokens,
                             duration=duration, centers=centers, provenance=provenance)
        index = len(self._checkpoints)
        file_name = f"{index:03d}_{_slug(name)}.json"
        document = {
            "format": CHECKPOINT_FORMAT,
            "version": TRACE_VERSION,
            "index": index,
            "name": name,
            "ledger": json_safe(entry),
            "timing": {
                "wall_s": now - self._started,
                "since_last_s": now - self._last,
            },
            "sample": self._sample(recs),
        }
        dump_json_atomic(document, self.directory / file_name)
        self._checkpoints.append({"index": index, "name": name, "file": file_name,
                                  "n_records": entry["n_records"]})
        self._write_index()
        # The clock restarts after writing so I/O is not billed to the next stage.
        self._last = time.perf_counter()
        return document

    def _sample(self, recs: list[dict]) -> list[dict]:
        n = len(recs)
        if n == 0 or self.sample_size <= 0:
            return []
        k = min(self.sample_size, n)
        if k == 1:
            picks = [0]
        else:
            picks = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
        return [{"index": i, "record": json_safe(recs[i], max_items=_SAMPLE_MAX_ITEMS,
                                                  max_chars=_SAMPLE_MAX_CHARS)} for i in picks]


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise TraceError(f"{what} {path} is missing")
    try:
        return safejson.load(path, max_bytes=MAX_TRACE_FILE_BYTES)
    except safejson.JSONSyntaxError as exc:
        raise TraceError(f"{what} is not valid JSON: {exc}") from None
    except ModelFormatError as exc:
        raise TraceError(f"{what} unreadable: {exc}") from None


def trace_report(directory: str | os.PathLike) -> dict:
    """Read a trace directory and judge it.

    Parameters
    ----------
    directory : path
        A directory written by :class:`Tracer`.

    Returns
    -------
    dict
        ``directory``; ``checkpoints`` (list of ``{index, name, n_records,
        timing, ledger, sample}`` in order); ``matrix`` (``stages``,
        ``fields``, ``present`` and ``fraction`` as nested lists, fraction
        None where a stage has no records); ``findings`` (finding dicts,
        errors first, each naming its checkpoint in ``stage``); ``summary``
        ({error, warning, info} counts).

    Raises
    ------
    TraceError
        Not a directory, no ``index.json``, malformed JSON, a checkpoint
        file missing or of the wrong format.
    """
    directory = Path(directory)
    if not directory.exists():
        raise TraceError(f"trace directory {directory} does not exist")
    if not directory.is_dir():
        raise TraceError(f"{directory} is not a directory")
    index_path = directory / INDEX_NAME
    if not index_path.exists():
        raise TraceError(f"{directory} is not a trace directory: no {INDEX_NAME} (write one with chandra.trace.Tracer)")
    index = _read_json(index_path, "trace index")
    if not isinstance(index, dict) or index.get("format") != TRACE_FORMAT:
        raise TraceError(f"{index_path} is not a chandra trace index (format should be {TRACE_FORMAT!r})")
    if index.get("version") != TRACE_VERSION:
        raise TraceError(f"{index_path} has trace version {index.get('version')!r}; this chandra reads {TRACE_VERSION}")
    listed = index.get("checkpoints")
    if not isinstance(listed, list):
        raise TraceError(f"{index_path} has no checkpoint list")
    checkpoints = []
    for item in listed:
        if not isinstance(item, dict) or not isinstance(item.get("file"), str) \
                or not _CHECKPOINT_FILE.match(item["file"]):
            raise TraceError(f"{index_path} lists a malformed checkpoint: {safejson.brief(item)}")
        path = directory / item["file"]
        doc = _read_json(path, "checkpoint")
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
            raise TraceError(f"{path} is not a chandra trace checkpoint")
        entry = doc.get("ledger")
        if not isinstance(entry, dict) or not isinstance(entry.get("fields"), dict) \
                or "n_records" not in entry:
            raise TraceError(f"{path} has no ledger entry")
        problem = check_entry(entry)
        if problem:
            raise TraceError(f"{path}: ledger entry {problem}")
        checkpoints.append({
            "index": doc.get("index"),
            "name": doc.get("name"),
            "n_records": entry.get("n_records"),
            "timing": doc.get("timing") or {},
            "ledger": entry,
            "sample": doc.get("sample") or [],
        })
    ledger = [c["ledger"] for c in checkpoints]
    findings = ledger_findings(ledger)
    stages, fields, present, fraction = field_matrix(ledger)
    return json_safe({
        "directory": str(directory),
        "checkpoints": checkpoints,
        "matrix": {"stages": stages, "fields": fields, "present": present, "fraction": fraction},
        "findings": findings_to_dicts(findings),
        "summary": count_by_severity(findings),
    })


def format_trace_report(report: dict) -> str:
    """Human-readable text of a :func:`trace_report` document, findings first."""
    lines = [f"trace: {report.get('directory')}"]
    summary = report.get("summary") or {}
    findings = report.get("findings") or []
    lines.extend(format_findings(findings, summary, where="at '{stage}':"))
    lines.append("")
    lines.append("checkpoints:")
    checkpoints = report.get("checkpoints") or []
    width = max((len(str(c.get("name"))) for c in checkpoints), default=4)
    for c in checkpoints:
        entry = c.get("ledger") or {}
        tok = entry.get("tokens")
        tim = entry.get("time")
        parts = [f"{c.get('n_records', 0):>7} records"]
        if tok:
            parts.append(f"tokens {tok.get('unique')} distinct, top {100 * (tok.get('top_share') or 0):.0f}%")
        if entry.get("features"):
            parts.append(f"features {entry['features'].get('dim')}-D")
        if tim:
            parts.append(f"{tim['field']} {tim['t_min']:.6g}..{tim['t_max']:.6g}")
        timing = c.get("timing") or {}
        if timing.get("since_last_s") is not None:
            parts.append(f"+{timing['since_last_s']:.3f} s")
        lines.append(f"  {str(c.get('name')):<{width}}  " + ", ".join(parts))
    matrix = report.get("matrix") or {}
    stages, fields = matrix.get("stages") or [], matrix.get("fields") or []
    if stages and fields:
        lines.append("")
        lines.append("fields present (records carrying each field):")
        fw = max(len(f) for f in fields)
        cw = max(8, *(len(str(s)) for s in stages))
        lines.append("  " + " " * fw + "  " + "".join(f"{str(s):>{cw + 1}}" for s in stages))
        present = matrix.get("present") or []
        for j, name in enumerate(fields):
            row = "".join(f"{present[i][j]:>{cw + 1}}" for i in range(len(stages)))
            lines.append(f"  {name:<{fw}}  {row}")
    return "\n".join(lines)
