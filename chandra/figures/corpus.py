"""Figures of a corpus of takes: which take uses which token, the ledger per
take, and which take a generation's passages came from.

Builders return plotly figures or plain rows (no streamlit). Token identity
never rests on colour alone: the heatmap's columns are labelled with token
ids in palette order (token ``k`` is ``PALETTE[k]``, shown as a colour strip
above the cells) and every hover names take, token and count.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from chandra.figures.palette import token_color

__all__ = ["take_names", "take_token_heatmap", "token_usage_rows", "take_field_matrices", "generation_take_band",
           "take_colour", "TAKE_COLOURS"]

#: Colours of takes (a qualitative set, distinct from the token palette's order).
TAKE_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d",
                "#bab0ac", "#eeca3b")


def take_colour(take: int) -> str:
    """Colour of take ``take`` (cycles after ten takes; hovers name the take)."""
    return TAKE_COLOURS[int(take) % len(TAKE_COLOURS)]


def take_names(files: Sequence[Mapping]) -> list[str]:
    """``"0 · take0.wav"`` per row of a file table (names may repeat across
    folders, so the index comes first)."""
    return [f"{k} · {row.get('name') or '?'}" for k, row in enumerate(files)]


def take_token_heatmap(usage: Mapping, *, names: Sequence[str], value: str = "counts",
                       title: str = "Tokens per take") -> go.Figure:
    """Takes × tokens heatmap of a corpus's token usage.

    Parameters
    ----------
    usage : dict
        :func:`chandra.corpus.token_usage` (the model's
        ``vocabulary["per_file"]``): ``counts`` is T lists of K ints.
    names : sequence of str, length T
        Row labels (e.g. :func:`take_names`).
    value : {"counts", "share"}
        Colour by frame counts, or by each take's share of its own frames
        (rows sum to 1). The hover always gives the count and the share.

    Returns
    -------
    plotly.graph_objects.Figure
        Row 1: a one-row strip of the tokens' palette colours; row 2: the
        heatmap (``z`` = counts or shares, T x K, rows top to bottom in take
        order, columns token 0 .. K-1). ``customdata[t][k]`` = (count, share).
    """
    if value not in ("counts", "share"):
        raise ValueError(f"value must be 'counts' or 'share', got {value!r}")
    counts = np.asarray(usage.get("counts") or [], dtype=np.int64)
    if counts.ndim != 2 or counts.size == 0:
        fig = go.Figure()
        fig.add_annotation(text="No token usage recorded", showarrow=False, x=0.5, y=0.5, xref="paper",
                           yref="paper")
        return fig
    n_takes, k = counts.shape
    if len(names) != n_takes:
        raise ValueError(f"{len(names)} names for {n_takes} takes")
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)
    z = counts if value == "counts" else share
    tokens = list(range(k))
    custom = np.dstack([counts, share])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.06, 0.94], vertical_spacing=0.01)
    # palette strip: one cell per token in its own colour
    fig.add_trace(go.Heatmap(z=[tokens], x=tokens, y=["colour"], showscale=False, meta="palette",
                             colorscale=[[i / max(1, k - 1), token_color(i)] for i in range(k)] if k > 1
                             else [[0, token_color(0)], [1, token_color(0)]],
                             hovertemplate="token %{x}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=z, x=tokens, y=list(names), customdata=custom, meta="usage",
                             colorscale="Blues", zmin=0, colorbar={"title": "frames" if value == "counts"
                                                                   else "share of take"},
                             hovertemplate="%{y}<br>token %{x}: %{customdata[0]} frames "
                                           "(%{customdata[1]:.1%} of the take)<extra></extra>"), row=2, col=1)
    fig.update_yaxes(autorange="reversed", row=2, col=1, title_text="take")
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_xaxes(title_text="token (palette order)", row=2, col=1, dtick=1 if k <= 32 else None)
    fig.update_layout(title=title, height=int(120 + 32 * n_takes), margin={"l": 10, "r": 10, "t": 40, "b": 40})
    return fig


def token_usage_rows(usage: Mapping, files: Sequence[Mapping]) -> list[dict]:
    """One row per take of the token-usage table: name, frames, share of the
    corpus's frames, tokens used, tokens only it uses, tokens it owns (has
    the most frames of) and its share of the active tokens."""
    counts = np.asarray(usage.get("counts") or [], dtype=np.int64)
    rows = []
    for k, row in enumerate(files):
        frames = int(counts[k].sum()) if k < len(counts) else 0
        rows.append({
            "take": k,
            "name": row.get("name"),
            "duration (s)": None if row.get("duration") is None else round(float(row["duration"]), 2),
            "frames": frames,
            "frame share": round(float((usage.get("frame_share") or [0.0] * (k + 1))[k]), 4),
            "tokens used": int((usage.get("unique") or [0] * (k + 1))[k]),
            "only this take": int((usage.get("exclusive") or [0] * (k + 1))[k]),
            "owned": int((usage.get("owned") or [0] * (k + 1))[k]),
            "token share": round(float((usage.get("token_share") or [0.0] * (k + 1))[k]), 4),
        })
    return rows


def take_field_matrices(ledger: Sequence[Mapping], files: Sequence[Mapping], *,
                        findings: Sequence[Any] | None = None) -> list[tuple[str, go.Figure]]:
    """The field matrix drawn once per take from the ledger's per-file
    sections: ``[(take name, figure), ...]`` in take order.

    A finding whose evidence names ``takes`` marks cells only in those
    takes' matrices; one that names none applies to every take.
    """
    from chandra.corpus_view import take_ledger
    from chandra.figures.diagnostics import field_matrix_figure

    def applies(finding: Any, take: int) -> bool:
        evidence = (finding.get("evidence") if isinstance(finding, Mapping)
                    else getattr(finding, "evidence", None)) or {}
        takes = evidence.get("takes") if isinstance(evidence, Mapping) else None
        return not isinstance(takes, list) or take in takes

    out = []
    for k, name in enumerate(take_names(files)):
        mine = [f for f in (findings or []) if applies(f, k)]
        out.append((name, field_matrix_figure(take_ledger(ledger, k), findings=mine,
                                              title=f"Fields surviving each stage: take {name}")))
    return out


def generation_take_band(generation: Any, model: Any) -> go.Figure:
    """Which take each step of a generation played, along output time: one
    coloured bar per passage (a run of steps from one take), hover naming
    the take, the passage and its source times.

    Parameters
    ----------
    generation : chandra.generate.Generation or its ``to_dict()``
    model : chandra.model.Model
    """
    from chandra.corpus_view import passages

    rows = passages(generation, model)
    files = model.files()
    names = take_names(files) if files else ["0 · (source)"]
    fig = go.Figure()
    for take in sorted({r["take"] for r in rows}):
        mine = [r for r in rows if r["take"] == take]
        name = names[take] if 0 <= take < len(names) else f"take {take}"
        fig.add_trace(go.Bar(
            x=[r["output_end_s"] - r["output_start_s"] for r in mine], base=[r["output_start_s"] for r in mine],
            y=["take"] * len(mine), orientation="h", name=name, meta=f"take {take}",
            marker={"color": take_colour(take), "line": {"width": 0}},
            customdata=[[r["passage"], r["source_start_s"], r["source_end_s"], r["steps"], r["output_start_s"],
                         r["output_end_s"]] for r in mine],
            hovertemplate=f"{name}<br>passage %{{customdata[0]}} (%{{customdata[3]}} steps)<br>"
                          "output %{customdata[4]:.2f}–%{customdata[5]:.2f} s<br>"
                          "source %{customdata[1]:.2f}–%{customdata[2]:.2f} s in the take"
                          "<extra></extra>"))
    fig.update_layout(barmode="overlay", height=150, title="Take of each passage",
                      xaxis_title="output time (s)", yaxis={"showticklabels": False},
                      margin={"l": 10, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": -0.6})
    return fig
