"""Views of a corpus for the pages that show one take at a time.

A corpus run (:meth:`chandra.rundir.RunDirectory.create_corpus`) stores its
takes end to end: one signal (the model's audio, take after take), segments
in *corpus* seconds (the take's offset added), and a file table
(``files.json``) with each take's ``offset_samples``. The functions here cut
one take back out, in that take's own seconds, so a page can show it exactly
as it shows a one-file run; they also split a corpus ledger per take and
tell which take each passage of a generation came from.

Streamlit-free (the dashboard's pages call these).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from chandra.errors import ChandraError

__all__ = ["TakeView", "describe_takes", "take_options", "take_label", "take_view", "take_ledger", "take_ledgers", "passages",
           "generation_takes"]


@dataclass
class TakeView:
    """One take of a corpus run, in its own time (what a one-file run's page reads).

    Attributes
    ----------
    take : int
        Its row in the file table.
    name : str
    signal : float32 (n_samples,) or None
        The take's audio at ``sample_rate`` (None when the corpus keeps no audio).
    sample_rate : int
    duration : float
        Seconds.
    offset_s : float
        Where the take starts in the corpus signal (s).
    segments : chandra.segment.Segments or None
        The take's segments, ``start``/``end`` in seconds from the take's
        start, ``id`` counting from 0 within the take (the events'
        ``segment_id``).
    rows : int64 (n,)
        The rows of these segments in the corpus arrays (features, tokens).
    tokens : int64 (n,) or None
    """

    take: int
    name: str
    signal: np.ndarray | None
    sample_rate: int
    duration: float
    offset_s: float
    segments: Any
    rows: np.ndarray
    tokens: np.ndarray | None


def take_label(row: Mapping) -> str:
    """``"2 · take2.wav · 4.2 s"``: a take's index, name and duration."""
    duration = row.get("duration")
    text = f"{int(row.get('take', 0))} · {row.get('name') or '?'}"
    if isinstance(duration, (int, float)):
        text += f" · {float(duration):.1f} s"
    if row.get("label"):
        text += f" · {row['label']}"
    return text


def take_options(files: Sequence[Mapping]) -> list[int]:
    """The take indices of a file table, in order (for a picker)."""
    return [int(row.get("take", k)) for k, row in enumerate(files)]


def take_view(state: Any, files: Sequence[Mapping], segment_takes: np.ndarray | None, take: int) -> TakeView:
    """Take ``take`` of a corpus run's state, in the take's own seconds.

    Parameters
    ----------
    state : chandra.pipeline.RunState
        As :meth:`chandra.rundir.RunDirectory.load_state` rebuilds it for a
        corpus run (signal and segments in corpus time).
    files : list of dict
        :meth:`~chandra.rundir.RunDirectory.corpus_files` (``offset_samples``,
        ``n_samples``, ``name``, ``duration``).
    segment_takes : int64 (n_segments,) or None
        :meth:`~chandra.rundir.RunDirectory.segment_takes`.
    take : int

    Raises
    ------
    ChandraError
        ``take`` is not a row of the file table, or the run's arrays disagree
        with it.
    """
    from chandra.segment import Segments

    if not 0 <= int(take) < len(files):
        raise ChandraError(f"take {take} is not in this corpus (takes 0 to {len(files) - 1})")
    row = files[int(take)]
    sr = int(state.sample_rate)
    start = int(row["offset_samples"])
    n = int(row["n_samples"])
    signal = None
    if state.signal is not None:
        if start + n > len(state.signal):
            raise ChandraError(f"take {take} ends at sample {start + n}, after the run's audio "
                               f"({len(state.signal)} samples)")
        signal = state.signal[start:start + n]
    offset_s = start / float(sr)
    segments = None
    rows = np.zeros(0, dtype=np.int64)
    tokens = None
    if state.segments is not None:
        if segment_takes is None or len(segment_takes) != len(state.segments):
            raise ChandraError("this corpus run has no take per segment (takes.npy); train it again")
        rows = np.flatnonzero(np.asarray(segment_takes) == int(take)).astype(np.int64)
        arrays = {name: np.asarray(values)[rows] for name, values in state.segments.to_arrays().items()}
        arrays["start"] = arrays["start"] - offset_s
        arrays["end"] = arrays["end"] - offset_s
        arrays["id"] = np.arange(rows.size, dtype=np.int64)
        segments = Segments.from_arrays(arrays, params=dict(state.segments.params))
        if state.tokens is not None and len(state.tokens) == len(state.segments):
            tokens = np.asarray(state.tokens, dtype=np.int64)[rows]
    return TakeView(take=int(take), name=str(row.get("name") or f"take {take}"), signal=signal, sample_rate=sr,
                    duration=n / float(sr), offset_s=offset_s, segments=segments, rows=rows, tokens=tokens)


def take_ledger(ledger: Sequence[Mapping], take: int) -> list[dict]:
    """The ledger of one take: every entry's ``per_file`` section for ``take``
    as an entry of its own (``stage``, ``n_records``, ``fields`` with
    ``present``), so the field matrix can be drawn for that take.

    Entries without a per-file section (e.g. a "generated" entry of another
    origin) are left out. Field names keep the entry's order.
    """
    out: list[dict] = []
    for entry in ledger or []:
        if not isinstance(entry, Mapping):
            continue
        sections = entry.get("per_file")
        if not isinstance(sections, list):
            continue
        section = next((s for s in sections if isinstance(s, Mapping) and s.get("take") == int(take)), None)
        if section is None:
            continue
        present = section.get("fields") or {}
        fields = {}
        for name in (entry.get("fields") or {}):
            if name in present:
                fields[name] = {"present": int(present[name])}
        out.append({"stage": entry.get("stage"), "n_records": int(section.get("n_records") or 0),
                    "fields": fields, "take": int(take)})
    return out


def take_ledgers(ledger: Sequence[Mapping], n_takes: int) -> list[list[dict]]:
    """:func:`take_ledger` for takes ``0 .. n_takes - 1``."""
    return [take_ledger(ledger, k) for k in range(int(n_takes))]


def generation_takes(generation: Any, model: Any) -> np.ndarray:
    """Take of every played frame, int64 (m,): the generation's own ``takes``
    when it recorded them, else looked up in the model (zeros for one file)."""
    raw = generation.get("takes") if isinstance(generation, Mapping) else getattr(generation, "takes", None)
    frames_raw = generation.get("frames") if isinstance(generation, Mapping) else getattr(generation, "frames", None)
    frames = np.asarray([] if frames_raw is None else frames_raw, dtype=np.int64).reshape(-1)
    if raw is not None and len(raw) == frames.size:
        return np.asarray(raw, dtype=np.int64)
    takes = model.takes() if model is not None else np.zeros(0, dtype=np.int64)
    if frames.size and (frames.min() < 0 or frames.max() >= len(takes)):
        raise ChandraError("the generation plays frames this model does not have")
    return takes[frames] if frames.size else np.zeros(0, dtype=np.int64)


def passages(generation: Any, model: Any) -> list[dict]:
    """The passages of a generation: maximal runs of forward steps (a jump,
    restart or change of take starts a new one), each with the take it was
    played from.

    Returns
    -------
    list of dict
        ``passage`` (0, 1, …), ``first_step``, ``steps``, ``output_start_s``
        and ``output_end_s`` (s of the output, summing played events'
        durations), ``take``, ``take_name``, ``source_start_s`` and
        ``source_end_s`` (s from the start of that take), ``first_frame``,
        ``last_frame``.
    """
    get = (lambda key: generation.get(key)) if isinstance(generation, Mapping) \
        else (lambda key: getattr(generation, key, None))
    frames = np.asarray(get("frames") if get("frames") is not None else [], dtype=np.int64).reshape(-1)
    if frames.size == 0:
        return []
    takes = generation_takes(generation, model)
    events = model.events
    files = model.files() if hasattr(model, "files") else []
    names = [str(row.get("name") or f"take {k}") for k, row in enumerate(files)] or ["(source)"]
    t = np.array([float(events[int(f)].get("t") or 0.0) for f in frames])
    d = np.array([float(events[int(f)].get("duration") or 0.0) for f in frames])
    out_t = np.concatenate([[0.0], np.cumsum(d)])
    steps = list(get("steps") or [])
    kinds = [str((s or {}).get("kind", "")) for s in steps] if len(steps) == frames.size else None
    breaks = np.ones(frames.size, dtype=bool)
    breaks[1:] = (np.diff(frames) != 1) | (np.diff(takes) != 0)
    if kinds is not None:
        breaks[1:] |= np.array([k != "forward" for k in kinds[1:]], dtype=bool)
    starts = np.flatnonzero(breaks)
    ends = np.concatenate([starts[1:], [frames.size]])
    out = []
    for p, (a, b) in enumerate(zip(starts, ends)):
        take = int(takes[a])
        out.append({"passage": p, "first_step": int(a), "steps": int(b - a),
                    "output_start_s": round(float(out_t[a]), 3), "output_end_s": round(float(out_t[b]), 3),
                    "take": take, "take_name": names[take] if 0 <= take < len(names) else f"take {take}",
                    "source_start_s": round(float(t[a]), 3), "source_end_s": round(float(t[b - 1] + d[b - 1]), 3),
                    "first_frame": int(frames[a]), "last_frame": int(frames[b - 1])})
    return out


def describe_takes(paths: Sequence[Any]) -> list[dict]:
    """What a page shows about chosen takes before training: one row per
    file, ``take``, ``name``, ``duration (s)``, ``sample rate (Hz)``,
    ``channels`` and ``problem`` (None, or why the file cannot be read; the
    header is read, not the audio, where the format allows).

    Parameters
    ----------
    paths : sequence of path
        Files already checked against the allowed folders.
    """
    from pathlib import Path

    rows = []
    for k, path in enumerate(paths):
        row = {"take": k, "name": Path(path).name, "duration (s)": None, "sample rate (Hz)": None,
               "channels": None, "problem": None}
        try:
            import soundfile as sf

            info = sf.info(str(path))
            row.update({"duration (s)": round(float(info.frames) / float(info.samplerate), 2),
                        "sample rate (Hz)": int(info.samplerate), "channels": int(info.channels)})
        except Exception:  # noqa: BLE001 - not a format libsndfile knows: decode it
            try:
                from chandra.audio import decode_audio

                decoded = decode_audio(path)
                row.update({"duration (s)": round(len(decoded.y) / float(decoded.sr), 2),
                            "sample rate (Hz)": int(decoded.file_sample_rate or decoded.sr), "channels": None})
            except Exception as exc:  # noqa: BLE001 - reported in the row
                from chandra.errors import first_line

                row["problem"] = first_line(exc) if isinstance(exc, ChandraError) else f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows
