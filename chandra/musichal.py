"""MusicHal 9000 model files: a memory-frugal reader and a v2.0 writer.

Three JSON shapes exist (see DESIGN.md §5): *base* (graph keys, ``audio_frames``
and a few scalars at the top level), *v2.0* (the same plus
``"format_version": "2.0"`` and polyphonic extras) and *modular*
(``{"metadata": ..., "data": {"audio_oracle": <v2.0 object>,
"rhythm_oracle": ...}}``).

Reading
-------
The file is streamed token by token with ijson (its C backend when
available) through :mod:`chandra.safejson`, which screens every block for
nesting depth and number-literal length before the parser sees it. A large
file is never held as one Python dict tree: each frame's feature list is
turned into a float32 row as soon as it ends, and only the per-frame
``audio_data`` dicts (the events) and the graph survive as Python objects.
What becomes of each part:

* ``events`` are the ``audio_data`` dicts exactly as in the file, in
  ``frame_id`` order; nothing is added or renamed (``t`` keeps whatever clock
  the file used), so diagnostics see what is really there. A chandra export
  (its ``chandra`` block, or after a MusicHal re-save the
  ``stats["chandra_export"]`` marker) gets its own event values back.
* ``features`` is a float32 matrix; frames of different lengths are padded
  with zeros to the longest and each original length is kept in
  ``extra_arrays["feature_lengths"]``. Frame timestamps and ids go to
  ``extra_arrays["frame_timestamps"]`` / ``["frame_ids"]``.
* the oracle comes from ``states`` (``link``, ``next``), falling back to
  ``transitions`` / ``suffix_links`` when ``states`` lacks them. MusicHal
  labels a transition by a frame id; only the destination state is kept.
  MusicHal stores no LRS, so ``lrs`` is recomputed from the suffix links with
  the Lefebvre–Lecroq common-suffix recursion
  (:func:`chandra.oracle.lefebvre_lecroq_lrs`: the context shared with the
  suffix link as far as the graph tells; zeros with a note when the links
  are not strictly backwards), and ``rep`` is the suffix link.
  The oracle is an audio oracle (``kind="features"``) with the file's
  ``distance_threshold``/``distance_function``; an unknown distance function
  gives a ``"tokens"`` oracle and a note. A chandra export's graph is a
  factor oracle (``"tokens"``) when its block says so, or, once MusicHal
  re-saved it, when its marker says so and the graph is identical to the
  factor oracle of the frames' ``gesture_token`` sequence.
* raw graph facts (state and transition counts, root out-degree, declared
  counters, ``stats``), per-state ``fundamentals``/``consonances`` and the
  import notes go to ``provenance``.

A file the C tokenizer cannot read (NaN/Infinity literals, integers beyond
64 bits) is read again with Python's ``json`` module when it is small enough
(:data:`FALLBACK_MAX_BYTES`), under the same depth and number limits, with a
note saying so; a file cut short is not read twice. Nothing in the file is
ever executed.

Writing
-------
:func:`export_musichal` writes a v2.0 object MusicHal 9000 can load and
perform with, meeting ``docs/MUSICHAL.md`` (checked by
:func:`check_musichal_conformance`): complete ``stats``, a threshold MusicHal
matches with (a factor oracle's is measured against token equality), event
fields converted to what MusicHal reads (its consonance scale, integer
``midi``, no nulls) with chandra's own values kept beside them, and a small
marker in ``stats`` that survives MusicHal's own save. Frame ``timestamp`` is
the event's ``t`` (seconds from file start, not epoch time). Everything
MusicHal has no place for — the oracle kind and LRS, provenance, vocabulary,
ledger, centres, extra arrays — goes under an extra top-level ``"chandra"``
key, which :func:`load_musichal` uses to give back the same model. Values
JSON cannot hold (NaN, ints beyond 64 bits) are tagged as in
:mod:`chandra.model`; the source audio is not exported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from chandra import safejson
from chandra.errors import ChandraError, ModelFormatError, first_line
from chandra.io_utils import atomic_write
from chandra.model import (
    VALUE_ENCODING,
    Model,
    decode_json_value,
    encode_json_value,
)
from chandra.musichal_conformance import (
    EXPORT_MARKER,
    MUSICHAL_CONVERTED_FIELDS,
    MUSICHAL_DISTANCE_FUNCTIONS,
    check_musichal_conformance,
    musichal_consonance,
    musichal_audio_data,
    musichal_pair_distances,
    musichal_token_threshold,
    restore_audio_data,
)
from chandra.progress import report

__all__ = ["load_musichal", "export_musichal", "musichal_shape", "FALLBACK_MAX_BYTES", "CHANDRA_BLOCK",
           "check_musichal_conformance", "musichal_consonance", "musichal_token_threshold"]

#: Largest file re-read with Python's ``json`` when the streaming tokenizer
#: refuses it (NaN literals, huge ints); beyond this the load fails instead.
FALLBACK_MAX_BYTES = 512 * 1024 * 1024
#: Marker of the extra ``"chandra"`` key written by :func:`export_musichal`.
CHANDRA_BLOCK = "chandra-musichal-export"
_BLOCK_VERSION = "1.1"
# Blocks of 1.0 exports (audio_data = the event, unconverted) are still read.
_BLOCK_VERSIONS = ("1.0", "1.1")
_GRAPH_KEYS = ("audio_frames", "states", "transitions", "suffix_links")
_MODULAR_KEYS = ("metadata", "data")
_DECLARED_KEYS = (
    "format_version", "sequence_length", "frame_counter", "size", "last", "is_trained", "max_pattern_length",
    "pattern_counter", "adaptive_threshold", "chord_similarity_weight", "last_update", "threshold_adjustments",
    "feature_dimensions", "distance_threshold", "distance_function", "stats",
)
# yajl overflows on the extreme int64 values; stay one short of them.
_INT_LIMIT = 2**63 - 1
_ProgressFn = Callable[[str, int, int], None]


# ---------------------------------------------------------------------------
# reading


def musichal_shape(path: str | Path) -> str:
    """Which MusicHal shape a JSON file has, from its first top-level key.

    Returns
    -------
    str
        ``"modular"`` when the first key is ``metadata`` or ``data``, else
        ``"flat"`` (base or v2.0; told apart by ``format_version`` later).

    Raises
    ------
    ModelFormatError
        The file is not a JSON object or is malformed before its first key.
    """
    path = Path(path)
    with open(path, "rb") as fh, safejson.events(fh, str(path)) as (tokens, _reader):
        for prefix, event, value in tokens:
            if prefix == "" and event == "start_map":
                continue
            if prefix == "" and event == "map_key":
                return "modular" if value in _MODULAR_KEYS else "flat"
            if prefix == "" and event == "end_map":
                raise ModelFormatError(f"{path}: empty JSON object; not a MusicHal model")
            raise ModelFormatError(f"{path}: JSON top level is a {event.replace('start_', '')}, "
                                   "expected a MusicHal object")
    raise ModelFormatError(f"{path}: file holds no JSON value")


class _Reader:
    """Token-stream consumer that collects frames, graph and small values."""

    def __init__(self, path: Path, root: str, *, progress: _ProgressFn | None, size: int):
        self.path = path
        self.root = root
        self.progress = progress
        self.size = size
        self.events: list[dict] = []
        self.rows: list[np.ndarray] = []
        self.timestamps: list[float] = []
        self.frame_ids: list[Any] = []
        self.frame_keys: list[str] = []
        self.states: list[tuple[str, Any]] = []
        self.transitions: list[tuple[str, Any]] = []
        self.suffix_links: list[tuple[str, Any]] = []
        self.top: dict[str, Any] = {}
        self.outer: dict[str, Any] = {}      # modular: top-level keys other than "data"
        self.data_extra: dict[str, Any] = {}  # modular: "data" keys other than "audio_oracle"
        self.seen: set[str] = set()
        self.frames_without_audio_data = 0
        self.frames_without_features = 0
        self.odd_frame_fields: dict[str, int] = {}
        self.tell: Callable[[], int] | None = None

    def consume(self, tokens: Iterable[tuple[str, str, Any]]) -> None:
        from ijson.common import ObjectBuilder

        path = self.path
        root = self.root
        rp = root + "." if root else ""
        af, st, tr, sl = (rp + k for k in _GRAPH_KEYS)
        feat_item = feat_arr = frame_prefix = None
        frame_key = None
        frame: dict[str, Any] = {}
        feats: list = []
        capturing = False
        builder = None
        depth = 0
        sink: Callable[[Any], None] | None = None
        expect_prefix = None
        expect_event = ""
        expect_what = ""

        for prefix, event, value in tokens:
            # Hot path: one comparison per feature number.
            if prefix == feat_item:
                if event == "number":
                    feats.append(value)
                    continue
                raise ModelFormatError(
                    f"{path}: frame {_label(frame_key)} 'features' holds a {event}, expected numbers")
            if capturing:
                builder.event(event, value)
                if event == "start_map" or event == "start_array":
                    depth += 1
                elif event == "end_map" or event == "end_array":
                    depth -= 1
                if depth == 0:
                    capturing = False
                    sink(builder.value)
                continue
            if expect_prefix is not None:
                if prefix != expect_prefix or event != expect_event:
                    got = event.replace("start_", "") if event.startswith("start_") else event
                    raise ModelFormatError(f"{path}: {expect_what} is a {got}, expected "
                                           f"{'an object' if expect_event == 'start_map' else 'an array'}")
                expect_prefix = None
                continue
            if event == "map_key":
                target = None
                if prefix == frame_prefix:
                    if value == "features":
                        feats = []
                        feat_arr = frame_prefix + ".features"
                        feat_item = feat_arr + ".item"
                        expect_prefix, expect_event, expect_what = feat_arr, "start_array", f"frame {_label(frame_key)} 'features'"
                        continue
                    target = (lambda v, k=value, f=frame: f.__setitem__(k, v))
                elif prefix == af:
                    frame_key = value
                    frame_prefix = af + "." + value
                    frame = {}
                    feats = None
                    expect_prefix, expect_event, expect_what = frame_prefix, "start_map", f"audio frame {_label(value)}"
                    continue
                elif prefix == st:
                    target = (lambda v, k=value: self.states.append((k, v)))
                elif prefix == tr:
                    target = (lambda v, k=value: self.transitions.append((k, v)))
                elif prefix == sl:
                    target = (lambda v, k=value: self.suffix_links.append((k, v)))
                elif prefix == root:
                    self.seen.add(value)
                    if value in _GRAPH_KEYS:
                        expect_prefix, expect_event, expect_what = rp + value, "start_map", f"'{value}'"
                        continue
                    target = (lambda v, k=value: self.top.__setitem__(k, v))
                elif root and prefix == "":
                    if value == "data":
                        expect_prefix, expect_event, expect_what = "data", "start_map", "'data'"
                        continue
                    target = (lambda v, k=value: self.outer.__setitem__(k, v))
                elif root and prefix == "data":
                    if value == "audio_oracle":
                        self.seen.add("<audio_oracle>")
                        expect_prefix, expect_event, expect_what = root, "start_map", "'data.audio_oracle'"
                        continue
                    target = (lambda v, k=value: self.data_extra.__setitem__(k, v))
                if target is not None:
                    builder = ObjectBuilder()
                    depth = 0
                    capturing = True
                    sink = target
                continue
            if event == "end_array" and prefix == feat_arr:
                frame["features"] = feats
                feat_item = feat_arr = None
            elif event == "end_map" and prefix == frame_prefix:
                self._finish_frame(frame_key, frame)
                frame_prefix = None
                frame = {}

    def _finish_frame(self, key: str, frame: dict) -> None:
        feats = frame.pop("features", None)
        if feats is None:
            self.frames_without_features += 1
            row = np.zeros(0, dtype=np.float32)
        else:
            try:
                row = np.array(feats, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise ModelFormatError(f"{self.path}: frame {_label(key)} features are not float32 numbers "
                                       f"({type(exc).__name__})") from None
        audio_data = frame.pop("audio_data", None)
        if audio_data is None:
            self.frames_without_audio_data += 1
            audio_data = {}
        elif not isinstance(audio_data, dict):
            raise ModelFormatError(f"{self.path}: frame {_label(key)} audio_data is a {type(audio_data).__name__}, "
                                   "expected an object")
        timestamp = frame.pop("timestamp", None)
        frame_id = frame.pop("frame_id", None)
        for extra in frame:
            self.odd_frame_fields[extra] = self.odd_frame_fields.get(extra, 0) + 1
        self.events.append(audio_data)
        self.rows.append(row)
        self.timestamps.append(float(timestamp) if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool)
                               else math.nan)
        self.frame_ids.append(frame_id)
        self.frame_keys.append(key)
        if self.progress is not None and len(self.events) % 512 == 0 and self.tell is not None:
            report(self.progress, "load", min(self.tell(), self.size), self.size)


def _label(key: Any) -> str:
    """A frame key fit for an error message: short integer ids as they are, else elided."""
    text = str(key)
    return text if text.isdigit() and len(text) <= 20 else f"with a {len(text)}-character non-numeric key"


def _walk_tokens(value: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """ijson-style ``(prefix, event, value)`` tokens for an in-memory value."""
    if isinstance(value, dict):
        yield prefix, "start_map", None
        for key, item in value.items():
            yield prefix, "map_key", key
            yield from _walk_tokens(item, f"{prefix}.{key}" if prefix else key)
        yield prefix, "end_map", None
    elif isinstance(value, list):
        yield prefix, "start_array", None
        child = f"{prefix}.item" if prefix else "item"
        for item in value:
            yield from _walk_tokens(item, child)
        yield prefix, "end_array", None
    elif value is None:
        yield prefix, "null", None
    elif isinstance(value, bool):
        yield prefix, "boolean", value
    elif isinstance(value, (int, float)):
        yield prefix, "number", value
    else:
        yield prefix, "string", value


def _read(path: Path, progress: _ProgressFn | None) -> tuple[_Reader, list[str]]:
    notes: list[str] = []
    shape = musichal_shape(path)
    root = "data.audio_oracle" if shape == "modular" else ""
    size = path.stat().st_size
    reader = _Reader(path, root, progress=progress, size=size)
    try:
        with open(path, "rb") as fh, safejson.events(fh, str(path)) as (tokens, screened):
            reader.tell = screened.tell
            reader.consume(tokens)
        return reader, notes
    except safejson.JSONSyntaxError as exc:
        problem = str(exc).removeprefix(f"{path}: ")
        if "premature EOF" in problem or "closing bracket" in problem:
            # A truncated or unbalanced file: Python's json would fail the same way, after
            # holding the whole tree; say so now.
            raise
    if size > FALLBACK_MAX_BYTES:
        raise ModelFormatError(f"{path}: malformed JSON or values the streaming reader cannot hold ({problem})")
    # The C tokenizer rejects NaN/Infinity literals (which Python's json
    # writes by default) and integers beyond 64 bits; Python's json accepts
    # both, at the cost of holding the whole tree. The same limits apply
    # (depth, number length, and FALLBACK_MAX_BYTES for the size).
    document = safejson.load(path, max_bytes=FALLBACK_MAX_BYTES)
    if not isinstance(document, dict):
        raise ModelFormatError(f"{path}: JSON top level is a {type(document).__name__}, expected a MusicHal object")
    notes.append(f"streaming reader refused the file ({problem}); read whole with Python's json instead")
    reader = _Reader(path, root, progress=progress, size=size)
    reader.consume(_walk_tokens(document))
    del document
    return reader, notes


def _int_or_none(value: Any) -> int | None:
    """An integer id/link/length from a JSON value, or None (also beyond int64: no such state exists)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        out = value
    elif isinstance(value, str):
        if len(value) > 20:
            return None
        try:
            out = int(value)
        except ValueError:
            return None
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    else:
        return None
    return out if -_INT_LIMIT <= out <= _INT_LIMIT else None


def _summary(value: Any) -> Any:
    """Small values verbatim, containers as type and size (keeps provenance small)."""
    if isinstance(value, (dict, list)):
        if len(value) <= 64 and len(json.dumps(value, default=str)) <= 2000:
            return value
        return {"type": type(value).__name__, "size": len(value)}
    return value


def _per_state_list(mapping: Any, n_states: int, name: str, notes: list[str]) -> list | None:
    if mapping is None:
        return None
    if not isinstance(mapping, dict):
        notes.append(f"'{name}' is a {type(mapping).__name__}, expected an object; ignored")
        return None
    out: list = [None] * n_states
    stray = 0
    for key, item in mapping.items():
        state = _int_or_none(key)
        if state is None or not 0 <= state < n_states:
            stray += 1
            continue
        out[state] = item
    if stray:
        notes.append(f"'{name}' has {stray} keys that are not states 0..{n_states - 1}; ignored")
    return out


def _build_graph(reader: _Reader, n: int, facts: dict, notes: list[str]):
    """Suffix links and CSR transitions from states / transitions / suffix_links."""
    n_states = n + 1
    states: dict[int, Any] = {}
    bad_keys = 0
    for key, value in reader.states:
        sid = _int_or_none(key)
        if sid is None or not isinstance(value, dict):
            bad_keys += 1
            continue
        states[sid] = value
    facts["n_states"] = len(reader.states)
    facts["n_transitions_map"] = len(reader.transitions)
    facts["n_suffix_links_map"] = len(reader.suffix_links)
    if bad_keys:
        notes.append(f"{bad_keys} 'states' entries have a non-integer id or are not objects; ignored")

    # transitions map "<state>_<frame_id>" -> state
    by_state_map: dict[int, list[int]] = {}
    bad_trn = 0
    for key, dst in reader.transitions:
        src_text, _, _label = str(key).partition("_")
        src, dst_i = _int_or_none(src_text), _int_or_none(dst)
        if src is None or dst_i is None:
            bad_trn += 1
            continue
        by_state_map.setdefault(src, []).append(dst_i)
    if bad_trn:
        notes.append(f"{bad_trn} 'transitions' entries are not '<state>_<frame>': state; ignored")

    have_next = bool(states) and all(isinstance(v.get("next"), dict) for v in states.values())
    by_state: dict[int, list[int]] = {}
    label_mismatch = 0
    if have_next:
        for sid, value in states.items():
            dsts = []
            for label, dst in value["next"].items():
                dst_i = _int_or_none(dst)
                if dst_i is None:
                    bad_trn += 1
                    continue
                if _int_or_none(label) != dst_i - 1:
                    label_mismatch += 1
                dsts.append(dst_i)
            by_state[sid] = dsts
        if reader.transitions:
            a = {(s, d) for s, ds in by_state.items() for d in ds}
            b = {(s, d) for s, ds in by_state_map.items() for d in ds}
            if a != b:
                notes.append(f"states[*].next and 'transitions' disagree ({len(a - b)} pairs only in next, "
                             f"{len(b - a)} only in transitions); used states[*].next")
    else:
        by_state = by_state_map
        if reader.transitions:
            notes.append("transitions taken from the 'transitions' map (states carry no 'next')")
    facts["n_transitions"] = sum(len(v) for v in by_state.values())
    facts["root_out_degree"] = len(by_state.get(0, []))
    facts["transition_label_mismatches"] = label_mismatch

    sfx = np.full(n_states, -2, dtype=np.int64)
    have_link = bool(states) and all(_int_or_none(v.get("link")) is not None for v in states.values())
    if have_link:
        for sid, value in states.items():
            if 0 <= sid < n_states:
                sfx[sid] = _int_or_none(value["link"])
        link_map = {_int_or_none(k): _int_or_none(v) for k, v in reader.suffix_links}
        mismatched = sum(1 for k, v in link_map.items() if k is not None and 0 <= k < n_states and sfx[k] != v)
        if mismatched:
            notes.append(f"{mismatched} 'suffix_links' entries disagree with states[*].link; used states[*].link")
    else:
        for key, value in reader.suffix_links:
            k, v = _int_or_none(key), _int_or_none(value)
            if k is not None and v is not None and 0 <= k < n_states:
                sfx[k] = v
        if reader.suffix_links:
            notes.append("suffix links taken from the 'suffix_links' map (states carry no 'link')")
        if sfx[0] == -2:
            sfx[0] = -1
    state_len = np.full(n_states, -1, dtype=np.int64)
    for sid, value in states.items():
        length = _int_or_none(value.get("len"))
        if 0 <= sid < n_states and length is not None:
            state_len[sid] = length

    problems = []
    ids = set(states) | set(by_state)
    if ids and (min(ids) < 0 or max(ids) >= n_states):
        problems.append(f"state ids span {min(ids)}..{max(ids)} but {n} frames need states 0..{n}")
    if states and len(states) != n_states:
        problems.append(f"{len(states)} states for {n} frames (expected {n_states})")
    if np.any(sfx == -2):
        problems.append(f"{int(np.sum(sfx == -2))} states have no suffix link")
    elif sfx[0] != -1 or np.any(sfx[1:] < 0) or np.any(sfx > n):
        problems.append("suffix links out of range (root must link to -1, others to 0..n)")
    all_dst = [d for ds in by_state.values() for d in ds]
    if all_dst and (min(all_dst) < 1 or max(all_dst) > n):
        problems.append(f"transition destinations outside 1..{n}")
    if problems:
        notes.append("oracle not imported: " + "; ".join(problems))
        return None, state_len
    counts = np.zeros(n_states + 1, dtype=np.int64)
    for sid, dsts in by_state.items():
        counts[sid + 1] = len(dsts)
    trn_ptr = np.cumsum(counts)
    trn_dst = np.fromiter((d for sid in range(n_states) for d in by_state.get(sid, ())), dtype=np.int64,
                          count=int(trn_ptr[-1]))
    return (sfx, trn_ptr, trn_dst), state_len


def _restore_block(block: Any, notes: list[str]) -> dict | None:
    if not isinstance(block, dict) or block.get("format") != CHANDRA_BLOCK:
        if block is not None:
            notes.append("top-level 'chandra' key is not a chandra export block; ignored")
        return None
    if block.get("format_version") not in _BLOCK_VERSIONS:
        notes.append(f"chandra export block version {safejson.brief(block.get('format_version'))} unknown; ignored")
        return None
    return decode_json_value(block)


def _export_marker(marker: Any, notes: list[str]) -> dict | None:
    """chandra's export marker from ``stats`` (it survives a MusicHal re-save)."""
    if marker is None:
        return None
    if not isinstance(marker, dict) or marker.get("format") != EXPORT_MARKER \
            or marker.get("format_version") not in _BLOCK_VERSIONS:
        notes.append("stats['chandra_export'] is not a chandra export marker this version reads; ignored")
        return None
    return marker


def _restore_events(events: list, block: dict | None, marker: dict | None, notes: list[str]) -> list:
    """Undo the export's MusicHal conversions and value encoding of the events.

    The block (when the file still has it) or else the ``stats`` marker says
    which fields the export converted and how values were encoded.
    """
    source = block if block is not None else marker
    if source is None:
        return events
    fields = source.get("converted_fields")
    if isinstance(fields, list) and all(isinstance(f, str) for f in fields):
        events = [restore_audio_data(e, fields) for e in events]
        if block is None:
            notes.append("chandra export marker found in stats (the chandra block is gone, as after a MusicHal "
                         "re-save): chandra's event values restored from the chandra_* fields")
    encoded = block.get("events_encoded") if block is not None else marker.get("value_encoding") == VALUE_ENCODING
    if encoded:
        events = [decode_json_value(e) for e in events]
    return events


def _recognise_factor_oracle(events: list, graph: tuple, threshold: Any, marker: dict | None, notes: list[str]):
    """The factor oracle of the frames' gesture tokens when the file's graph is it.

    Tried when chandra's export marker says the graph was a factor oracle over
    tokens, or when the file has no usable positive threshold (older chandra
    exports wrote 0.0): then the graph is compared with the factor oracle
    built from the ``gesture_token`` sequence, and only an identical graph
    (suffix links and transitions) is read as kind ``"tokens"``. That is what
    keeps the distance checks of an audio oracle away from a graph whose
    links were made by token equality.
    """
    marker_kind = marker.get("oracle_kind") if marker is not None else None
    positive = _finite_number(threshold) is not None and threshold > 0
    if marker_kind != "tokens" and positive:
        return None
    tokens = []
    for event in events:
        token = event.get("gesture_token") if isinstance(event, dict) else None
        if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < 2**63:
            tokens = None
            break
        tokens.append(token)
    factor = None
    if tokens:
        from chandra.oracle import build_factor_oracle

        sfx, trn_ptr, trn_dst = graph
        candidate = build_factor_oracle(np.asarray(tokens, dtype=np.int64))
        if np.array_equal(candidate.sfx, sfx) and np.array_equal(candidate.trn_ptr, trn_ptr):
            src = np.repeat(np.arange(sfx.shape[0], dtype=np.int64), np.diff(trn_ptr))
            if np.array_equal(trn_dst[np.lexsort((trn_dst, src))], candidate.trn_dst):
                factor = candidate
    if factor is not None:
        notes.append("graph is the factor oracle of the frames' gesture_token sequence; imported as kind 'tokens' "
                     "(lrs from that oracle)")
    elif marker_kind == "tokens":
        notes.append("chandra export marker says the graph was a factor oracle over gesture tokens, but it is not "
                     "the factor oracle of the frames' tokens (frames added or changed after export?); read as an "
                     "audio oracle with the file's distance function and threshold")
    return factor


def _array_from_block(entry: Any, name: str) -> np.ndarray:
    """A numeric array stored in the export block as ``{"dtype", "shape", "data"}``."""
    what = f"chandra export block array {safejson.brief(name)}"
    if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str) and isinstance(entry.get("data"), list)):
        raise ModelFormatError(f"{what} is malformed (expected an object with dtype, shape and a data list)")
    try:
        dtype = np.dtype(entry["dtype"])
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise ModelFormatError(f"{what} has dtype {safejson.brief(entry['dtype'])}; expected a numeric dtype")
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > 8 or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
        raise ModelFormatError(f"{what} has shape {safejson.brief(shape)}; expected a list of non-negative ints")
    if math.prod(shape) != len(entry["data"]):
        raise ModelFormatError(f"{what} holds {len(entry['data'])} values for shape {shape}")
    try:
        return np.asarray(entry["data"], dtype=dtype).reshape(shape)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelFormatError(f"{what} does not hold {dtype.str} numbers ({type(exc).__name__})") from None


def _refuse_summary(path: Path, top: dict) -> None:
    """Raise MusicHalSummaryError when the object read is a training summary."""
    from chandra.musichal_summary import MusicHalSummaryError, not_a_model_message, summary_document

    found = summary_document(top)
    if found is not None:
        raise MusicHalSummaryError(not_a_model_message(path), document=found[0], metadata=found[1])


def load_musichal(path: str | Path, *, progress: _ProgressFn | None = None) -> Model:
    """Read a MusicHal 9000 model (base, v2.0 or modular JSON), streaming.

    Parameters
    ----------
    path : str or Path
        The JSON file.
    progress : callable, optional
        ``progress("load", bytes_read, file_size)``.

    Returns
    -------
    Model
        ``source_format`` is ``"musichal-base"``, ``"musichal-v2"`` or
        ``"musichal-modular"``; see the module docstring for what goes where.

    Raises
    ------
    ModelFormatError
        Malformed JSON, a JSON value that is not a MusicHal object, frames
        whose features are not numbers.
    chandra.musichal_summary.MusicHalSummaryError
        The file is a MusicHal *training summary* (statistics, no frames or
        graph); a :class:`ModelFormatError` carrying the parsed document.
    """
    path = Path(path)
    reader, notes = _read(path, progress)
    modular = reader.root != ""
    if modular and "<audio_oracle>" not in reader.seen:
        _refuse_summary(path, {"data": reader.data_extra, **reader.outer})
        raise ModelFormatError(f"{path}: modular MusicHal file without data.audio_oracle")
    if not reader.seen & {"audio_frames", "states"}:
        if not modular:
            _refuse_summary(path, reader.top)
        n_keys = len(reader.top) if not modular else len(reader.outer)
        raise ModelFormatError(f"{path}: JSON object is not a MusicHal model (no 'audio_frames' or 'states' "
                               f"among its {n_keys} top-level keys)")
    top = reader.top
    format_version = top.get("format_version")
    source_format = "musichal-modular" if modular else ("musichal-v2" if format_version is not None else "musichal-base")
    if format_version is not None and format_version != "2.0":
        notes.append(f"format_version {format_version!r} is not the known '2.0'; read as v2.0")

    # frames, in frame_id order
    n = len(reader.events)
    ids = [_int_or_none(f) for f in reader.frame_ids]
    if any(i is None for i in ids):
        keys = [_int_or_none(k) for k in reader.frame_keys]
        ids = [i if i is not None else (k if k is not None else pos) for pos, (i, k) in enumerate(zip(ids, keys))]
        notes.append("some frames lack an integer frame_id; used their key (or file position)")
    order = sorted(range(n), key=ids.__getitem__)
    if len(set(ids)) != n:
        notes.append(f"{n - len(set(ids))} duplicate frame ids; kept file order among equals")
    reordered = order != list(range(n))
    if reordered:
        notes.append("audio_frames were not in frame_id order; sorted")
    events = [reader.events[i] for i in order]
    lengths = np.fromiter((reader.rows[i].shape[0] for i in order), dtype=np.int64, count=n)
    dim = int(lengths.max()) if n else 0
    features = np.zeros((n, dim), dtype=np.float32)
    for out_row, i in enumerate(order):
        row = reader.rows[i]
        features[out_row, : row.shape[0]] = row
        reader.rows[i] = None  # free as we go: peak stays near one copy
    if n and lengths.min() != dim:
        counts = {int(k): int(v) for k, v in zip(*np.unique(lengths, return_counts=True))}
        notes.append(f"frames have different feature lengths {counts}; zero-padded to {dim}")
    timestamps = np.asarray([reader.timestamps[i] for i in order], dtype=np.float64)
    frame_ids = np.asarray([ids[i] for i in order], dtype=np.int64)
    if reader.frames_without_features:
        notes.append(f"{reader.frames_without_features} frames have no 'features'")
    if reader.frames_without_audio_data:
        notes.append(f"{reader.frames_without_audio_data} frames have no 'audio_data'; their events are empty")
    if reader.odd_frame_fields:
        notes.append(f"frames carry fields beyond timestamp/features/audio_data/frame_id: "
                     f"{dict(sorted(reader.odd_frame_fields.items()))}; not imported")

    facts: dict[str, Any] = {"n_frames": n}
    graph, state_len = _build_graph(reader, n, facts, notes)
    block = _restore_block(top.get("chandra"), notes)
    stats_top = top.get("stats")
    marker = _export_marker(stats_top.get("chandra_export") if isinstance(stats_top, dict) else None, notes)
    events = _restore_events(events, block, marker, notes)

    threshold = top.get("distance_threshold")
    metric = top.get("distance_function")
    oracle = None
    if graph is not None:
        from chandra.oracle import METRICS, Oracle, audio_oracle_lrs, lefebvre_lecroq_lrs

        sfx, trn_ptr, trn_dst = graph
        lrs = rep = take_starts = None
        meta: dict[str, Any]
        if block is not None and isinstance(block.get("oracle"), dict):
            stored = block["oracle"]
            meta = {"kind": stored.get("kind"), "threshold": stored.get("threshold"), "metric": stored.get("metric"),
                    "search": stored.get("search")}
            try:
                lrs = np.asarray(stored.get("lrs", []), dtype=np.int64)
            except (TypeError, ValueError, OverflowError):
                lrs = np.zeros(0, dtype=np.int64)
            if lrs.shape != sfx.shape:
                notes.append("chandra block lrs has the wrong length; recomputed from suffix links")
                lrs = None
            elif stored.get("rep") is not None:
                try:
                    rep = np.asarray(stored["rep"], dtype=np.int64)
                except (TypeError, ValueError, OverflowError):
                    rep = np.zeros(0, dtype=np.int64)
                if rep.shape != sfx.shape:
                    notes.append("chandra block rep has the wrong length; recomputed from suffix links")
                    lrs = rep = None
            if stored.get("take_starts") is not None:
                try:
                    take_starts = np.asarray(stored["take_starts"], dtype=np.int64).reshape(-1)
                except (TypeError, ValueError, OverflowError):
                    take_starts = None
                if take_starts is None or take_starts.size == 0 or take_starts[0] != 0 \
                        or np.any(np.diff(take_starts) <= 0) or take_starts[-1] >= max(n, 1):
                    notes.append("chandra block take_starts are not increasing frame indices; not imported")
                    take_starts = None
        elif (factor := _recognise_factor_oracle(events, graph, threshold, marker, notes)) is not None:
            meta = {"kind": "tokens", "threshold": None, "metric": None}
            sfx, lrs, rep = factor.sfx, factor.lrs, factor.rep
            trn_ptr, trn_dst = factor.trn_ptr, factor.trn_dst
        elif metric in METRICS and isinstance(threshold, (int, float)) and not isinstance(threshold, bool) \
                and math.isfinite(threshold):
            meta = {"kind": "features", "threshold": float(threshold), "metric": metric}
        else:
            meta = {"kind": "tokens", "threshold": None, "metric": None}
            notes.append(f"distance_function {metric!r} / threshold {threshold!r} not usable by chandra's audio "
                         "oracle; graph imported as kind 'tokens'")
        if lrs is None and meta["kind"] == "features" and n and features.shape[1] > 0:
            lrs = audio_oracle_lrs(features, sfx, threshold=meta["threshold"], metric=meta["metric"])
            if lrs is not None:
                notes.append("MusicHal stores no LRS; lrs recomputed from the features, threshold and suffix links")
        if lrs is None:
            lrs = lefebvre_lecroq_lrs(sfx, trn_ptr, trn_dst)
            if lrs is None:
                lrs = np.zeros_like(sfx)
                notes.append("MusicHal stores no LRS and its suffix links are not strictly backwards; lrs set to 0")
            else:
                notes.append("MusicHal stores no LRS; lrs recomputed from suffix links (Lefebvre-Lecroq)")
        try:
            arrays = {"sfx": sfx, "lrs": lrs, "trn_ptr": trn_ptr, "trn_dst": trn_dst}
            if rep is not None:
                arrays["rep"] = rep
            if take_starts is not None:
                arrays["take_starts"] = take_starts
            oracle = Oracle.from_arrays(meta, arrays)
        except ChandraError as exc:
            notes.append(f"oracle not imported: {first_line(exc)}")
    facts["suffix_links_to_root"] = int(np.sum(oracle.sfx[1:] == 0)) if oracle is not None else None

    sequence = top.get("sequence")
    extra: dict[str, np.ndarray] = {"frame_timestamps": timestamps, "frame_ids": frame_ids, "feature_lengths": lengths}
    if reader.states:
        extra["state_len"] = state_len
    if isinstance(sequence, list):
        facts["sequence_actual_length"] = len(sequence)
        if all(_int_or_none(v) is not None and not isinstance(v, str) for v in sequence):
            extra["sequence"] = np.asarray(sequence, dtype=np.int64)
    history = top.get("distance_history")
    if isinstance(history, list) and history:
        try:
            extra["distance_history"] = np.asarray(history, dtype=np.float64).ravel()
        except (TypeError, ValueError, OverflowError):
            notes.append("distance_history is not a list of numbers; not imported")

    n_states = n + 1
    declared = {k: top[k] for k in _DECLARED_KEYS if k in top}
    for key in ("chord_progressions", "harmonic_patterns", "distance_history"):
        if key in top:
            declared[key] = _summary(top[key])
    known = set(_DECLARED_KEYS) | {"sequence", "fundamentals", "consonances", "chandra", "chord_progressions",
                                   "harmonic_patterns", "distance_history"}
    musichal = {
        **facts,
        "declared": declared,
        "fundamentals": _per_state_list(top.get("fundamentals"), n_states, "fundamentals", notes),
        "consonances": _per_state_list(top.get("consonances"), n_states, "consonances", notes),
        "other_keys": {k: _summary(v) for k, v in top.items() if k not in known},
        "frames_without_audio_data": reader.frames_without_audio_data,
        "frames_without_features": reader.frames_without_features,
    }
    if modular:
        musichal["metadata"] = reader.outer.get("metadata")
        musichal["outer_keys"] = {k: _summary(v) for k, v in reader.outer.items() if k != "metadata"}
        musichal["data_keys"] = {k: _summary(v) for k, v in reader.data_extra.items()}
    stats = top.get("stats") if isinstance(top.get("stats"), dict) else {}
    provenance: dict[str, Any] = {}
    vocabulary = ledger = centers = sample_rate = None
    if block is not None:
        provenance = block.get("provenance")
        if provenance is None:
            provenance = {}
        elif not isinstance(provenance, dict):
            raise ModelFormatError(f"{path}: chandra export block provenance is a {type(provenance).__name__}; "
                                   "expected an object")
        provenance = dict(provenance)
        vocabulary = block.get("vocabulary")
        ledger = block.get("ledger")
        sample_rate = block.get("sample_rate")
        if block.get("centers") is not None:
            centers = _array_from_block(block["centers"], "centers")
        stored_extra = block.get("extra_arrays")
        if stored_extra is not None and not isinstance(stored_extra, dict):
            raise ModelFormatError(f"{path}: chandra export block extra_arrays is a {type(stored_extra).__name__}; "
                                   "expected an object")
        for name, entry in (stored_extra or {}).items():
            extra[name] = _array_from_block(entry, name)
        notes.append("chandra export block found: oracle kind and lrs, provenance, vocabulary and ledger restored")
    provenance.update({
        "imported_from": str(path),
        "musichal_format": {"musichal-base": "base", "musichal-v2": "v2.0", "musichal-modular": "modular"}[source_format],
        "distance_threshold": threshold,
        "distance_function": metric,
        "feature_dimensions": top.get("feature_dimensions", stats.get("feature_dimensions")),
        "import_notes": notes,
        "musichal": musichal,
    })
    report(progress, "load", reader.size, reader.size)
    return Model(
        events=events,
        features=features,
        oracle=oracle,
        provenance=provenance,
        vocabulary=vocabulary,
        centers=centers,
        ledger=[] if ledger is None else ledger,
        audio=None,
        sample_rate=sample_rate,  # judged by Model.validate (load_model)
        source_format=source_format,
        extra_arrays=extra,
    )


# ---------------------------------------------------------------------------
# writing


def _array_entry(array: np.ndarray) -> dict:
    array = np.asarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.ravel().tolist()}


def _finite_number(value: Any) -> float | None:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        value = float(value)
        if math.isfinite(value):
            return value
    return None


def _musichal_threshold(model: Model, oracle: Any) -> tuple[float, str, dict | None]:
    """Distance function and threshold MusicHal should match frames with.

    An audio oracle's own. For a factor oracle over tokens, the metric and
    threshold under which ``distance < threshold`` best reproduces token
    equality on the exported features (:func:`musichal_token_threshold`);
    without two tokened frames, a MusicHal import's own values, or else half
    the smallest distance between distinct frames (every frame similar only
    to itself and its exact duplicates).
    """
    if oracle.kind == "features":
        return float(oracle.threshold), str(oracle.metric), None
    features = np.asarray(model.features, dtype=np.float64)
    matching = musichal_token_threshold(features, model.tokens())
    if matching is not None:
        return float(matching["threshold"]), str(matching["metric"]), matching
    prov = model.provenance or {}
    theta, metric = prov.get("distance_threshold"), prov.get("distance_function")
    if metric in MUSICHAL_DISTANCE_FUNCTIONS and _finite_number(theta) is not None and theta > 0:
        return float(theta), str(metric), None
    n = features.shape[0]
    if n >= 2:
        sample = features[: min(n, 2000)]
        d = musichal_pair_distances(sample, "euclidean")[np.triu_indices(sample.shape[0], 1)]
        d = d[d > 0]
        if d.size:
            return 0.5 * float(d.min()), "euclidean", None
    return 1e-6, "euclidean", None


def export_musichal(model: Model, path: str | Path, *, progress: _ProgressFn | None = None,
                    timestamp: float | None = None) -> Path:
    """Write ``model`` as a MusicHal 9000 v2.0 JSON object, atomically and streaming.

    The file meets ``docs/MUSICHAL.md`` (check it with
    :func:`check_musichal_conformance`): MusicHal's loaders, similarity
    search, live learning and request-driven generation all work on it.

    Parameters
    ----------
    model : Model
        Must have an oracle (MusicHal's graph keys are required).
    path : str or Path
        Destination ``.json``.
    progress : callable, optional
        ``progress("export", frames_written, n_frames)``.
    timestamp : float, optional
        Written as MusicHal's ``last_update`` (epoch seconds, e.g.
        ``time.time()``). By default ``last_update`` is ``0.0``, so two
        exports of one model are identical byte for byte.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ModelFormatError
        The model is inconsistent, has no oracle, has NaN or infinite
        features, or holds event values JSON cannot carry.

    Notes
    -----
    * Frames are numbered 0..n-1 (MusicHal looks frames up by position); a
      model's own ``frame_ids`` go to the ``chandra`` block when they differ.
      Frame ``timestamp`` is the event's ``t`` (seconds from file start, not
      epoch time; 0.0 when the event has no numeric ``t``).
    * ``audio_data`` is the event with the fields MusicHal reads differently
      converted to MusicHal's form, chandra's originals kept under
      ``chandra_<field>`` (:func:`chandra.musichal_conformance.musichal_audio_data`):
      ``consonance`` on MusicHal's interval-table scale (chandra's perceptual
      one in ``chandra_consonance``), ``midi`` an integer rounded half up
      (absent when unpitched), ``f0`` 0.0 when unpitched, ``gesture_token``
      -1 when missing, null or non-finite numbers left out.
    * ``distance_threshold``/``distance_function``: an audio oracle's own;
      for a factor oracle over tokens, the ones under which MusicHal's
      ``distance < threshold`` best reproduces token equality, measured
      (``stats["chandra_export"]["matching"]``). ``adaptive_threshold`` is
      false and ``chord_similarity_weight`` 0, so MusicHal matches with
      exactly that threshold.
    * ``stats`` carries every key MusicHal's own files carry (MusicHal
      increments some of them on every distance) plus ``chandra_export``, a
      small marker MusicHal's save keeps: the oracle kind, the converted
      fields and the value encoding, so :func:`load_musichal` restores the
      events and recognises a factor oracle after MusicHal re-saved the file
      (which drops the ``chandra`` block).
    * Everything else MusicHal has no place for — the oracle's LRS,
      provenance, vocabulary, ledger, centres, extra arrays — goes under the
      top-level ``"chandra"`` key, which :func:`load_musichal` uses to give
      back the same model. The source audio is not exported.
    """
    path = Path(path)
    model.validate(require=("finite_features",))
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, (int, float))
                                  or not math.isfinite(timestamp)):
        raise ModelFormatError(f"timestamp must be a finite number of epoch seconds, got {timestamp!r}")
    oracle = model.oracle
    if oracle is None:
        raise ModelFormatError("cannot export to MusicHal: the model has no oracle (build one first)")
    n = len(model.events)
    features = np.asarray(model.features, dtype=np.float32)
    extra = model.extra_arrays or {}
    lengths = extra.get("feature_lengths")
    if lengths is None or np.asarray(lengths).shape != (n,) or np.any(np.asarray(lengths) > features.shape[1]):
        lengths = None
    own_ids = extra.get("frame_ids")
    keep_ids = own_ids is not None and np.asarray(own_ids).shape == (n,) and np.asarray(own_ids).dtype.kind in "iu" \
        and not np.array_equal(np.asarray(own_ids), np.arange(n))
    fid = list(range(n))
    events = [encode_json_value(e, context=f"event {i}", int_limit=_INT_LIMIT) for i, e in enumerate(model.events)]
    keep_consonance = str(model.source_format).startswith("musichal")
    # A corpus frame says which file it came from (``take`` is already in the event, ``t`` counts
    # from that file's start); the path is added for MusicHal and dropped again on import.
    sources = [str(row.get("path")) for row in model.provenance["files"]] if model.is_corpus else None
    audio_data: list[dict] = []
    fundamentals: dict[str, float] = {}
    consonances: dict[str, float] = {}
    for i, (encoded, event) in enumerate(zip(events, model.events)):
        source = None
        if sources is not None:
            source = {"source_file": sources[event["take"]]}
        data, consonance, fundamental = musichal_audio_data(encoded, event, keep_consonance=keep_consonance,
                                                            added_fields=source)
        audio_data.append(data)
        consonances[str(i + 1)] = consonance
        if fundamental is not None:
            fundamentals[str(i + 1)] = fundamental
    arrays = oracle.to_arrays()
    sfx, lrs, ptr, dst = (arrays[k].tolist() for k in ("sfx", "lrs", "trn_ptr", "trn_dst"))
    n_states = n + 1
    state_len = extra.get("state_len")
    state_len = (np.asarray(state_len).tolist() if state_len is not None and np.asarray(state_len).shape == (n_states,)
                 and np.asarray(state_len).dtype.kind in "iu" else list(range(n_states)))

    musichal_prov = (model.provenance or {}).get("musichal")
    musichal_prov = musichal_prov if isinstance(musichal_prov, dict) else {}
    declared = musichal_prov.get("declared")
    declared = declared if isinstance(declared, dict) else {}
    stored_f, stored_c = musichal_prov.get("fundamentals"), musichal_prov.get("consonances")
    if isinstance(stored_f, list) and len(stored_f) == n_states:
        fundamentals = {str(s): float(v) for s, v in enumerate(stored_f)
                        if _finite_number(v) is not None and v > 0}
    if isinstance(stored_c, list) and len(stored_c) == n_states:
        consonances = {str(s): float(v) for s, v in enumerate(stored_c)
                       if _finite_number(v) is not None and 0.0 <= v <= 1.0}

    threshold, metric, matching = _musichal_threshold(model, oracle)
    block_extra = {k: _array_entry(v) for k, v in sorted(extra.items())
                   if k not in ("frame_timestamps", "frame_ids", "feature_lengths", "state_len", "sequence")}
    if keep_ids:
        block_extra["frame_ids"] = _array_entry(np.asarray(own_ids))
    block = {
        "format": CHANDRA_BLOCK,
        "format_version": _BLOCK_VERSION,
        "value_encoding": VALUE_ENCODING,
        "events_encoded": True,
        "converted_fields": list(MUSICHAL_CONVERTED_FIELDS),
        "source_format": model.source_format,
        "oracle": {**oracle.to_meta(), "lrs": lrs, "rep": arrays["rep"].tolist(),
                   **({"take_starts": arrays["take_starts"].tolist()} if "take_starts" in arrays else {})},
        "provenance": model.provenance,
        "vocabulary": model.vocabulary,
        "ledger": model.ledger,
        "sample_rate": model.sample_rate,
        "centers": None if model.centers is None else _array_entry(model.centers),
        "extra_arrays": block_extra,
        "notes": "timestamps are event t in seconds from the start of the frame's own file (take); "
                 "source audio not exported",
    }
    block = encode_json_value(block, context="chandra block", int_limit=_INT_LIMIT)
    d = int(features.shape[1])
    declared_max = declared.get("max_pattern_length", 50)
    max_pattern_length = declared_max if isinstance(declared_max, int) and not isinstance(declared_max, bool) \
        and declared_max >= 1 else 50
    header = {
        "format_version": "2.0",
        "chandra": block,
        "distance_threshold": threshold,
        "distance_function": metric,
        "max_pattern_length": max_pattern_length,
        "feature_dimensions": d,
        "adaptive_threshold": False,
        "chord_similarity_weight": 0.0,
        "size": n_states,
        "last": n,
        "frame_counter": n,
        "sequence_length": n,
        "is_trained": True,
        "last_update": 0.0 if timestamp is None else float(timestamp),
        "stats": {},
        "chord_progressions": {},
        "harmonic_patterns": {},
        "distance_history": [],
        "threshold_adjustments": 0,
        "fundamentals": fundamentals,
        "consonances": consonances,
        "pattern_counter": 0,
        "sequence": fid,
    }
    header["stats"] = _musichal_stats(model, header, n_transitions=len(dst), oracle_kind=oracle.kind,
                                      matching=matching)
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    report(progress, "export", 0, n)
    with atomic_write(path, "w") as fh:
        fh.write("{")
        fh.write(",".join(f"{dumps(k)}:{dumps(v)}" for k, v in header.items()))
        fh.write(',"suffix_links":{')
        fh.write(",".join(f'"{s}":{sfx[s]}' for s in range(1, n_states)))
        fh.write('},"transitions":{')
        fh.write(",".join(f'"{s}_{fid[dst[j] - 1]}":{dst[j]}' for s in range(n_states) for j in range(ptr[s], ptr[s + 1])))
        fh.write('},"states":{')
        for s in range(n_states):
            nxt = ",".join(f'"{fid[dst[j] - 1]}":{dst[j]}' for j in range(ptr[s], ptr[s + 1]))
            fh.write(f'{"," if s else ""}"{s}":{{"len":{int(state_len[s])},"link":{sfx[s]},"next":{{{nxt}}}}}')
        fh.write('},"audio_frames":{')
        for i in range(n):
            row = features[i] if lengths is None else features[i, : int(lengths[i])]
            t = _finite_number(model.events[i].get("t"))
            fh.write(f'{"," if i else ""}"{fid[i]}":{{"timestamp":{dumps(0.0 if t is None else t)},'
                     f'"features":{dumps(row.tolist())},"audio_data":{dumps(audio_data[i])},"frame_id":{fid[i]}}}')
            if progress is not None and (i + 1) % 1024 == 0:
                report(progress, "export", i + 1, n)
        fh.write("}}")
    report(progress, "export", n, n)
    return path


def _musichal_stats(model: Model, header: dict, *, n_transitions: int, oracle_kind: str,
                    matching: dict | None) -> dict:
    """``stats`` as MusicHal's own files carry it (MusicHal replaces its
    statistics with these and updates them as it performs), plus chandra's
    export marker. Counters of work MusicHal has not done yet start at 0."""
    n = len(model.events)
    chord_types: dict[str, int] = {}
    n_pitches = 0.0
    for event in model.events:
        quality = event.get("chord_quality", "single")
        quality = quality if isinstance(quality, str) else "single"
        chord_types[quality] = chord_types.get(quality, 0) + 1
        count = _finite_number(event.get("num_pitches"))
        n_pitches += 1.0 if count is None else count
    if "single" not in chord_types:
        chord_types["single"] = 0  # MusicHal counts events without a chord quality here
    marker = {
        "format": EXPORT_MARKER,
        "format_version": _BLOCK_VERSION,
        "value_encoding": VALUE_ENCODING,
        "oracle_kind": oracle_kind,
        "token_field": "gesture_token",
        "n_frames": n,
        "source_format": model.source_format,
        "converted_fields": list(MUSICHAL_CONVERTED_FIELDS),
        "consonance_scale": "musichal-interval-table",
        "matching": matching,
    }
    return {
        "total_patterns": 0,
        "total_states": header["size"],
        "sequence_length": n,
        "max_pattern_length": header["max_pattern_length"],
        "is_trained": True,
        "last_update": header["last_update"],
        "memory_usage": n,
        "distance_threshold": header["distance_threshold"],
        "distance_function": header["distance_function"],
        "feature_dimensions": header["feature_dimensions"],
        "adaptive_threshold": header["adaptive_threshold"],
        "total_distances_calculated": 0,
        "average_distance": 0.0,
        "threshold_adjustments": 0,
        "harmonic_patterns": 0,
        "polyphonic_patterns": 0,
        "chord_progressions": 0,
        "rhythmic_patterns": 0,
        "musical_insights_used": 0,
        "polyphonic_frames": n,
        "chord_types": chord_types,
        "average_pitches_per_frame": n_pitches / n if n else 0.0,
        "total_transitions": n_transitions,
        "chandra_export": marker,
    }
