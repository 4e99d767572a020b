"""The generation record: one JSON document per improvisation, beside its WAV.

Written by the dashboard's Generate page and meant for any front end (the
CLI's ``generate`` can write the same document), so a generation made in
one can be read by the other::

    {
      "format": "chandra-generation", "version": "1.0",
      "model_path": "/abs/path/model.chandra" | null,
      "wav": "gen_<digest>.wav",          # file name, in the record's folder
      "sample_rate": 22050,               # Hz, of the WAV
      "params": {...},                    # Generation.params (effective options, crossfade, output)
      "summary": {...},                   # Generation.summary(model)
      "fallbacks": [...],                 # Generation.fallbacks
      "generation": {...},                # Generation.to_dict(): frames, steps, jumps, ...
      "ledger_entry": {...},              # the "generated" ledger stage
      "takes": [...]                      # a corpus model only: its file table (take, name, path,
                                          # sha256, duration); generation["takes"] gives each frame's take
    }

The summary and fallbacks are the same keys ``chandra generate --json``
prints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chandra.errors import ChandraError

__all__ = ["RECORD_FORMAT", "RECORD_VERSION", "generation_record", "write_generation_record",
           "read_generation_record", "MAX_RECORD_BYTES"]

RECORD_FORMAT = "chandra-generation"
RECORD_VERSION = "1.0"
#: Largest record read back (a 10-minute generation is well under 10 MB).
MAX_RECORD_BYTES = 256 * 1024 * 1024


def generation_record(model: Any, generation: Any, *, wav_path: str | os.PathLike,
                      model_path: str | os.PathLike | None = None) -> dict:
    """The JSON-able record of ``generation`` (a :class:`chandra.generate.Generation`
    made from ``model`` and written to ``wav_path``)."""
    from chandra.ledger import json_safe

    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "model_path": None if model_path is None else str(model_path),
        "wav": Path(wav_path).name,
        "sample_rate": None if getattr(model, "sample_rate", None) is None else int(model.sample_rate),
        "params": dict(generation.params),
        "summary": generation.summary(model),
        "fallbacks": list(generation.fallbacks),
        "generation": generation.to_dict(),
        "ledger_entry": generation.ledger_entry(model),
    }
    if getattr(model, "is_corpus", False):
        record["takes"] = [{"take": k, "name": row.get("name"), "path": row.get("path"), "sha256": row.get("sha256"),
                            "duration": row.get("duration"), "label": row.get("label")}
                           for k, row in enumerate(model.files())]
    return json_safe(record)


def write_generation_record(record: dict, path: str | os.PathLike) -> Path:
    """Write ``record`` atomically to ``path``; returns the path."""
    from chandra.io_utils import dump_json_atomic

    if record.get("format") != RECORD_FORMAT:
        raise ChandraError(f"not a generation record (format {record.get('format')!r})")
    dump_json_atomic(record, path)
    return Path(path)


def read_generation_record(path: str | os.PathLike) -> dict:
    """Read a record written by :func:`write_generation_record`.

    Raises
    ------
    ChandraError
        Missing, too large, not JSON, or not a record of a version this
        chandra reads.
    """
    from chandra import safejson

    path = Path(path)
    doc = safejson.load(path, max_bytes=MAX_RECORD_BYTES)
    if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
        raise ChandraError(f"{path}: not a chandra generation record")
    if str(doc.get("version", "")).split(".")[0] != RECORD_VERSION.split(".")[0]:
        raise ChandraError(f"{path}: generation record version {doc.get('version')!r}; this chandra reads "
                           f"{RECORD_VERSION}")
    for key in ("wav", "generation", "ledger_entry"):
        if key not in doc:
            raise ChandraError(f"{path}: generation record without {key!r}")
    wav = doc["wav"]
    if not isinstance(wav, str) or not wav or Path(wav).name != wav or wav.startswith("."):
        # The WAV lies beside its record; a path could point a reader anywhere.
        raise ChandraError(f"{path}: the record's 'wav' must be a file name in the record's folder")
    return doc
