"""Figures of a phrase and its answer (the Play page): plotly only, no streamlit.

:func:`phrase_match_figure` lines a phrase up against the training recording:
the top row is the phrase, one bar per onset segment coloured by its gesture
token (the colours of :mod:`chandra.figures.palette`), faded by coverage;
the bottom row is the training recording's waveform with the source frames
the phrase was matched to highlighted in the same colours and numbered like
the phrase's segments, the matched ending outlined, and the frames the
answer plays marked underneath. Both take a response *summary*
(:meth:`chandra.respond.Response.summary`, also what a stored pair keeps), so
a replayed pair draws the same picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from chandra.figures.palette import token_color
from chandra.figures.stages import envelope
from chandra.respond import take_name

__all__ = ["COVERAGE_OPACITY", "phrase_match_figure", "phrase_table"]

#: Bar opacity of a phrase segment by coverage: what the model knows stands out.
COVERAGE_OPACITY = {"often": 1.0, "rarely": 0.55, "never": 0.2}
_OUTLINE = "#1f2430"
_ANSWER = "#3b6fb6"


def _take_offsets_s(model: Any) -> np.ndarray | None:
    """Start of each take in ``model.audio`` in seconds (a corpus holds its takes end to end), or None."""
    sr = getattr(model, "sample_rate", None)
    offsets = model.take_offsets() if callable(getattr(model, "take_offsets", None)) else None
    if offsets is None or not sr or len(offsets) <= 2:
        return None
    return np.asarray(offsets[:-1], dtype=np.float64) / float(sr)


def _event_bounds(model: Any, frames: Sequence[int], *, on_audio: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (s) of each frame's event: on ``model.audio``'s time axis (a corpus take's events
    shifted by the take's start), or with ``on_audio=False`` in the event's own file."""
    events = getattr(model, "events", None) or []
    shift = _take_offsets_s(model) if on_audio else None
    starts, ends = [], []
    for f in frames:
        ev = events[int(f)] if 0 <= int(f) < len(events) else {}
        t = ev.get("t") if isinstance(ev, Mapping) else None
        d = ev.get("duration") if isinstance(ev, Mapping) else None
        ok = isinstance(t, (int, float)) and isinstance(d, (int, float)) and not isinstance(t, bool)
        offset = 0.0
        if ok and shift is not None:
            take = ev.get("take")
            offset = float(shift[take]) if isinstance(take, int) and 0 <= take < len(shift) else np.nan
        starts.append(float(t) + offset if ok else np.nan)
        ends.append(float(t) + float(d) + offset if ok else np.nan)
    return np.asarray(starts), np.asarray(ends)


def phrase_match_figure(summary: Mapping, model: Any, *, answer_frames: Sequence[int] | None = None,
                        n_columns: int = 2000, height: int = 430) -> go.Figure:
    """The phrase's segments and tokens over where they were found in the training recording.

    Parameters
    ----------
    summary : Mapping
        :meth:`chandra.respond.Response.summary` (keys ``phrase`` and
        ``match``), or a stored response record's ``summary``.
    model : chandra.model.Model
        For the source events' times (``t``, ``duration``, seconds) and its
        ``audio`` (the waveform row is left empty without it).
    answer_frames : sequence of int, optional
        Frames the answer plays, marked under the waveform.
    n_columns : int
        Waveform envelope columns.

    Returns
    -------
    plotly.graph_objects.Figure
        Row 1: traces ``"phrase"`` (bars: ``base`` = segment start, ``x`` =
        duration, seconds of the phrase). Row 2: ``"training recording"``
        (envelope), ``"matched"`` (one marker per aligned segment at its
        source frame, with ``customdata`` = (phrase segment, frame)),
        ``"answer"`` (markers at the answer's frames); the matched frames are
        layout shapes on row 2, the matched ending outlined.
    """
    phrase = summary.get("phrase") or {}
    match = summary.get("match") or {}
    rows = list(phrase.get("segments") or [])
    fig = make_subplots(rows=2, cols=1, row_heights=[0.3, 0.7], vertical_spacing=0.2,
                        subplot_titles=("the phrase (s): onset segments, #segment · gesture token "
                                        "(faded: rarely or never heard)",
                                        "the training recording (s): where the phrase was found"))
    if rows:
        starts = np.array([float(r["start"]) for r in rows])
        ends = np.array([float(r["end"]) for r in rows])
        tokens = [int(r["token"]) for r in rows]
        coverage = [str(r.get("coverage", "often")) for r in rows]
        fig.add_trace(go.Bar(
            name="phrase", orientation="h", y=["phrase"] * len(rows), x=ends - starts, base=starts,
            marker={"color": [token_color(t) for t in tokens],
                    "opacity": [COVERAGE_OPACITY.get(c, 1.0) for c in coverage],
                    "line": {"color": "white", "width": 1}},
            text=[f"#{i} · {t}" for i, t in enumerate(tokens)], textposition="inside", insidetextanchor="middle",
            customdata=np.array([[i, t, c, float(r.get("distance_ratio", np.nan)), int(r.get("token_count", 0))]
                                 for i, (t, c, r) in enumerate(zip(tokens, coverage, rows))], dtype=object),
            hovertemplate=("segment #%{customdata[0]} · token %{customdata[1]}<br>%{base:.2f}–%{x:.2f} s"
                           "<br>coverage: %{customdata[2]} (distance ratio %{customdata[3]:.2f}, "
                           "%{customdata[4]} training frames with this token)<extra></extra>"),
            showlegend=False), row=1, col=1)
        fig.update_xaxes(range=[0, max(float(ends[-1]), 1e-3)], row=1, col=1)

    audio, sr = getattr(model, "audio", None), getattr(model, "sample_rate", None)
    if audio is not None and sr:
        t, lo, hi = envelope(np.asarray(audio), int(sr), n_columns=n_columns)
        fig.add_trace(go.Scatter(x=np.r_[t, t[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", mode="lines",
                                 name="training recording", line={"color": "#9aa5b1", "width": 0.5},
                                 fillcolor="rgba(154,165,177,0.55)", hoverinfo="skip", showlegend=False),
                      row=2, col=1)
        fig.update_xaxes(range=[0, len(audio) / float(sr)], row=2, col=1)
    frames = [int(f) for f in match.get("frames") or []]
    first = int(match.get("first_segment") or 0)
    if frames:
        a, b = _event_bounds(model, frames)
        seg_tokens = [int(rows[first + i]["token"]) if first + i < len(rows) else -1 for i in range(len(frames))]
        end_frame = match.get("end_frame")
        for i, (x0, x1, tok, frame) in enumerate(zip(a, b, seg_tokens, frames)):
            if not np.isfinite(x0):
                continue
            last = i == len(frames) - 1 and frame == end_frame
            fig.add_shape(type="rect", x0=x0, x1=x1, y0=0.0, y1=1.0, xref="x2", yref="y2 domain",
                          fillcolor=token_color(tok), opacity=0.45, layer="below",
                          line={"color": _OUTLINE if last else "rgba(0,0,0,0)", "width": 2 if last else 0})
        mid = (a + b) / 2.0
        moves = list(match.get("moves") or [""] * len(frames))
        fig.add_trace(go.Scatter(
            x=mid, y=[1.08] * len(frames), mode="markers+text", name="matched",
            text=[f"#{first + i}" for i in range(len(frames))], textposition="top center",
            marker={"color": [token_color(t) for t in seg_tokens], "size": 9, "symbol": "triangle-down",
                    "line": {"color": _OUTLINE, "width": 1}},
            customdata=np.array([[first + i, f, m] for i, (f, m) in enumerate(zip(frames, moves))], dtype=object),
            hovertemplate="phrase segment #%{customdata[0]} → source frame %{customdata[1]} (%{x:.2f} s)"
                          "<br>move: %{customdata[2]}<extra></extra>",
            showlegend=False), row=2, col=1)
    if answer_frames is not None and len(answer_frames):
        a, b = _event_bounds(model, answer_frames)
        keep = np.isfinite(a)
        order = np.arange(len(a))[keep]
        fig.add_trace(go.Scatter(
            x=((a + b) / 2.0)[keep], y=[-1.12] * int(keep.sum()), mode="markers", name="answer",
            marker={"color": _ANSWER, "size": 6, "symbol": "line-ns-open", "line": {"width": 2}},
            customdata=order, hovertemplate="answer step %{customdata} · %{x:.2f} s<extra></extra>",
            showlegend=False), row=2, col=1)
    fig.update_yaxes(range=[-1.25, 1.3], showticklabels=False, title_text="", row=2, col=1)
    fig.update_xaxes(title_text="▼ phrase segments where they were matched · | the answer's frames", row=2, col=1)
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 50, "b": 40}, bargap=0.1,
                      plot_bgcolor="white")
    return fig


def phrase_table(summary: Mapping, model: Any = None) -> pd.DataFrame:
    """One row per phrase segment: times, token, coverage, distance ratio, matched frame and its source time."""
    phrase = summary.get("phrase") or {}
    match = summary.get("match") or {}
    rows = list(phrase.get("segments") or [])
    frames = list(match.get("frames") or [])
    first = int(match.get("first_segment") or 0)
    aligned = {first + i: int(f) for i, f in enumerate(frames)}
    moves = {first + i: m for i, m in enumerate(match.get("moves") or [])}
    out = []
    for r in rows:
        i = int(r["index"])
        frame = aligned.get(i)
        src = None
        take = None
        if frame is not None and model is not None:
            a, _ = _event_bounds(model, [frame], on_audio=False)
            src = None if not np.isfinite(a[0]) else round(float(a[0]), 3)
            take = take_name(model, frame)
        out.append({"segment": i, "start (s)": round(float(r["start"]), 3), "end (s)": round(float(r["end"]), 3),
                    "token": int(r["token"]), "coverage": r.get("coverage"),
                    "distance ratio": round(float(r.get("distance_ratio", np.nan)), 2),
                    "frames with token": int(r.get("token_count", 0)),
                    "matched frame": frame, **({"take": take} if getattr(model, "is_corpus", False) else {}),
                    "source time (s)": src, "move": moves.get(i)})
    return pd.DataFrame(out)
