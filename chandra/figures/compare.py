"""Figures and tables of a comparison (:func:`chandra.compare.compare` documents).

* :func:`compare_matrix_figure`: the two ledgers as one stage x field
  matrix, each cell ``A → B`` with changed cells coloured and outlined;
* :func:`token_overlay_figure`: the two token histograms of one stage overlaid;
* :func:`findings_diff_frames`: resolved / unchanged / introduced findings;
* :func:`mapping_diff_frame`: parameters or provenance that differ;
* :func:`differences_frame`: the ranked differences.

Nothing here imports streamlit; every builder copes with missing input by
returning a figure or table that says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from chandra.figures.diagnostics import AMBER, BLUE, GREY, RED, empty_figure

__all__ = [
    "CHANGE_COLOURS",
    "compare_matrix_figure",
    "changed_cells",
    "token_overlay_figure",
    "token_stages",
    "findings_diff_frames",
    "mapping_diff_frame",
    "differences_frame",
]

#: Cell colour per change (``change`` of a comparison's field cell).
CHANGE_COLOURS = {
    "same": "#e8f3ea",
    "absent": "#ffffff",
    "lost": RED,
    "restored": BLUE,
    "thinned": AMBER,
    "thickened": "#9ecae1",
    "schema": "#ececec",
    "one-sided": GREY,
}
_ORDER = ("same", "absent", "lost", "restored", "thinned", "thickened", "schema", "one-sided")
_LABEL = {"lost": "LOST", "restored": "BACK", "thinned": "FEWER", "thickened": "MORE"}
TYPES_COLOUR = "#6a3d9a"


def _category(cell: Mapping) -> str:
    change = str(cell.get("change"))
    if change.startswith("stage only"):
        return "one-sided"
    if change in ("lost", "restored") and cell.get("known") != "both":
        return "schema"
    return change if change in CHANGE_COLOURS else "same"


def changed_cells(doc: Mapping | None) -> list[dict]:
    """Field cells that differ between the sides (the outlined cells of the matrix)."""
    cells = (doc or {}).get("fields") or []
    return [c for c in cells if _category(c) in ("lost", "restored", "thinned", "thickened") or c.get("types_changed")]


def compare_matrix_figure(doc: Mapping | None, *, title: str = "Fields surviving each stage, A → B",
                          max_fields: int = 60) -> go.Figure:
    """Stage x field matrix of both sides, each cell ``present_A → present_B``.

    Colours: red = B lost a field A carried; blue = B carries a field A lost;
    amber = fewer records carry it in B; light blue = more; pale green =
    unchanged; light grey = a field only one side ever records; grey = a
    stage only one side has. Changed cells are outlined and labelled; a
    purple outline marks a change of value or key types.

    Parameters
    ----------
    doc : dict
        A :func:`chandra.compare.compare` document.
    max_fields : int
        Columns shown at most (changed fields first, then the rest in order).
    """
    doc = doc or {}
    stages = [s["name"] for s in doc.get("stages") or []]
    cells = doc.get("fields") or []
    if not stages or not cells:
        return empty_figure("Nothing to compare: neither side lists any field")
    fields: list[str] = []
    for c in cells:
        if c["field"] not in fields:
            fields.append(c["field"])
    changed_fields = {c["field"] for c in changed_cells(doc)}
    if len(fields) > max_fields:
        fields = [f for f in fields if f in changed_fields] + [f for f in fields if f not in changed_fields]
        fields = fields[:max_fields]
    index = {(c["stage"], c["field"]): c for c in cells}
    z = np.full((len(stages), len(fields)), _ORDER.index("absent") + 0.5)
    text = [["" for _ in fields] for _ in stages]
    hover = [["" for _ in fields] for _ in stages]
    marks: list[tuple[int, int, str]] = []
    for i, stage in enumerate(stages):
        for j, name in enumerate(fields):
            c = index.get((stage, name))
            if c is None:
                text[i][j] = ""
                hover[i][j] = f"{stage} · {name}: listed by neither side here"
                continue
            cat = _category(c)
            z[i, j] = _ORDER.index(cat) + 0.5
            a, b = c.get("a"), c.get("b")
            left = f"{a['present']}" if a else "—"
            right = f"{b['present']}" if b else "—"
            cell = f"{left}→{right}"
            if cat in _LABEL:
                cell = f"<b>{_LABEL[cat]}<br>{cell}</b>"
                marks.append((i, j, "#7f0000" if cat == "lost" else "#333333"))
            elif c.get("types_changed"):
                cell = f"<b>TYPES<br>{cell}</b>"
            if c.get("types_changed"):
                marks.append((i, j, TYPES_COLOUR))
            text[i][j] = cell
            hover[i][j] = (f"{stage} · {name}: A {left} of {a['n'] if a else '—'}, B {right} of "
                           f"{b['n'] if b else '—'} — {c['change']}"
                           + (f"; types {a.get('types')} → {b.get('types')}" if c.get("types_changed") else ""))
    n = len(_ORDER)
    colorscale = []
    for k, name in enumerate(_ORDER):
        colorscale += [[k / n, CHANGE_COLOURS[name]], [(k + 1) / n, CHANGE_COLOURS[name]]]
    fig = go.Figure(go.Heatmap(
        z=z, x=fields, y=stages, text=text, texttemplate="%{text}", textfont={"size": 10},
        customdata=hover, hovertemplate="%{customdata}<extra></extra>",
        colorscale=colorscale, zmin=0, zmax=n, showscale=False, xgap=2, ygap=2,
    ))
    for i, j, colour in marks:
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                      line={"color": colour, "width": 3}, xref="x", yref="y")
    n_changed = len(changed_cells(doc))
    subtitle = (f" — <span style='color:{RED}'><b>{n_changed} changed cell(s)</b></span>" if n_changed
                else " — no field changed")
    fig.update_layout(
        title={"text": title + subtitle, "x": 0.0, "xanchor": "left", "yref": "container", "y": 1.0,
               "yanchor": "top", "pad": {"t": 12}},
        height=max(260, 140 + 46 * len(stages)),
        margin={"l": 10, "r": 10, "t": 120, "b": 10},
        plot_bgcolor="white",
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(side="top", type="category", tickangle=-30)
    return fig


def token_stages(doc: Mapping | None) -> list[str]:
    """Aligned stages where at least one side has a token histogram, last first."""
    rows = [t for t in (doc or {}).get("tokens") or [] if t.get("counts_a") or t.get("counts_b")]
    return [t["stage"] for t in reversed(rows)]


def token_overlay_figure(doc: Mapping | None, stage: str | None = None, *, ranked: bool = False) -> go.Figure:
    """The two sides' token histograms at one aligned stage, overlaid.

    Parameters
    ----------
    doc : dict
        A :func:`chandra.compare.compare` document.
    stage : str, optional
        Aligned stage name; default the last stage with a histogram.
    ranked : bool
        Sort each histogram by count (token ids of two independently fitted
        vocabularies are arbitrary; ranked bars compare the shapes).
    """
    rows = {t["stage"]: t for t in (doc or {}).get("tokens") or []}
    names = token_stages(doc)
    if not names:
        return empty_figure("Neither side has gesture tokens")
    stage = stage if stage in rows else names[0]
    row = rows[stage]
    fig = go.Figure()
    width = 0
    for label, counts, colour in (("A", row.get("counts_a"), "#7f7f7f"), ("B", row.get("counts_b"), BLUE)):
        if not counts:
            continue
        c = np.asarray(counts, dtype=np.float64)
        if ranked:
            c = np.sort(c)[::-1]
        total = c.sum()
        share = c / total if total else c
        width = max(width, c.size)
        fig.add_trace(go.Bar(
            x=list(range(c.size)), y=share, name=f"{label} (n={int(total)})", marker_color=colour, opacity=0.6,
            customdata=c, hovertemplate=f"{label} {'rank' if ranked else 'token'} %{{x}}: %{{customdata:.0f}} "
                                        "(%{y:.1%})<extra></extra>"))
    js = row.get("js_distance_ranked" if ranked else "js_distance")
    a, b = row.get("a") or {}, row.get("b") or {}
    fig.update_layout(
        barmode="overlay", bargap=0.1, height=320,
        title={"text": f"Tokens at {stage}: A {a.get('unique', 0)} distinct, B {b.get('unique', 0)} distinct"
                       + (f" — Jensen–Shannon distance {js:.3f}" if js is not None else "")},
        xaxis_title="rank (most used first)" if ranked else "token id", yaxis_title="share",
        yaxis_tickformat=".0%", margin={"l": 10, "r": 10, "t": 50, "b": 40}, plot_bgcolor="white",
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    )
    if width == 0:
        return empty_figure(f"No token histogram at {stage}")
    return fig


def _findings_frame(items: Sequence[Mapping]) -> pd.DataFrame:
    rows = [{"severity": f.get("severity"), "code": f.get("code"), "stage": f.get("stage"),
             "message": f.get("message")} for f in items]
    return pd.DataFrame(rows, columns=["severity", "code", "stage", "message"])


def findings_diff_frames(doc: Mapping | None) -> dict[str, pd.DataFrame]:
    """``{"resolved", "unchanged", "introduced"}`` → tables of findings (severity, code, stage, message)."""
    found = (doc or {}).get("findings") or {}
    return {key: _findings_frame(found.get(key) or []) for key in ("resolved", "unchanged", "introduced")}


def mapping_diff_frame(items: Sequence[Mapping] | None) -> pd.DataFrame:
    """Parameters or provenance that differ: key, A, B, change (values as short text)."""
    def show(value: Any, absent: bool) -> str:
        if absent:
            return "(absent)"
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        return text if len(text) <= 120 else text[:117] + "..."

    rows = [{"key": p["key"], "A": show(p.get("a"), p.get("change") == "only in B"),
             "B": show(p.get("b"), p.get("change") == "only in A"), "change": p.get("change")}
            for p in items or []]
    return pd.DataFrame(rows, columns=["key", "A", "B", "change"])


def differences_frame(doc: Mapping | None, *, limit: int | None = None) -> pd.DataFrame:
    """The ranked differences (kind, stage, message)."""
    diffs = list((doc or {}).get("differences") or [])
    if limit is not None:
        diffs = diffs[:limit]
    rows = [{"kind": d.get("kind"), "stage": d.get("stage") if isinstance(d.get("stage"), str) else None,
             "difference": d.get("message")} for d in diffs]
    return pd.DataFrame(rows, columns=["kind", "stage", "difference"])
