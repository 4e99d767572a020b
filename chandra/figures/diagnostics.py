"""Diagnostic figures: ledger field matrix, token strips, findings, feature and
oracle health, generation timelines, token histograms, IR curves.

Every builder takes plain data (ledger entries, finding dicts, health dicts,
arrays) and returns a :class:`plotly.graph_objects.Figure` or a
:class:`pandas.DataFrame`; nothing here imports streamlit. Each copes with
empty or missing input by returning a figure that says so, never raising.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from chandra.findings import SEVERITIES

__all__ = [
    "CELL_ABSENT",
    "CELL_COMPLETE",
    "CELL_PARTIAL",
    "CELL_LOST",
    "field_status",
    "field_matrix_figure",
    "token_strip_figure",
    "findings_table",
    "feature_health_figure",
    "oracle_shape",
    "oracle_health_figure",
    "generation_timeline_figure",
    "spaced_labels",
    "token_histogram_comparison",
    "ir_curve_figure",
    "empty_figure",
]

#: Cell states of the field matrix (values of :func:`field_status`).
CELL_ABSENT = 0  # the stage does not list the field (not carried here)
CELL_COMPLETE = 1  # every record carries it
CELL_PARTIAL = 2  # some records lack it
CELL_LOST = 3  # it was present earlier and is missing / fewer now

GREEN = "#2e9d4b"
AMBER = "#f0a202"
RED = "#d7191c"
GREY = "#d9d9d9"
BLUE = "#3b6fb6"

_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}
# Finding codes that name one field without saying so in their evidence.
_FIELD_OF_CODE = {"TOKENS_MISSING": "gesture_token"}
_LOSS_CODES = frozenset({"FIELD_LOST", "TOKENS_MISSING", "ROUNDTRIP_CHANGED"})
# With a different number of records, a field is lost when its share falls
# below this fraction of its best earlier share (as chandra.findings does).
_FRACTION_DROP = 0.5
# A fraction counts as "fewer" when it drops by more than this (float noise).
_TOL = 1e-9


def empty_figure(message: str, *, height: int = 220) -> go.Figure:
    """A blank figure with a centred message (for missing data)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 14, "color": "#666"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin={"l": 20, "r": 20, "t": 30, "b": 20},
                      plot_bgcolor="white")
    return fig


def _as_dict(item: Any) -> dict:
    if item is None:
        return {}
    if isinstance(item, Mapping):
        return dict(item)
    if hasattr(item, "to_dict"):
        return dict(item.to_dict())
    if hasattr(item, "__dict__"):
        return {k: v for k, v in vars(item).items() if not k.startswith("_")}
    return {}


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- field matrix


def _finding_cells(findings: Sequence[Any] | None, stages: list[str], fields: list[str]) -> set[tuple[int, int]]:
    """(stage row, field column) cells that an error/warning finding names."""
    cells: set[tuple[int, int]] = set()
    if not findings:
        return cells
    col = {name: j for j, name in enumerate(fields)}
    for raw in findings:
        f = _as_dict(raw)
        code = str(f.get("code") or "")
        if f.get("severity") not in ("error", "warning"):
            continue
        # Only findings about data that is gone mark a cell lost; a bad value
        # (epoch times, constant consonance) is a finding, not a lost field.
        if not (code in _LOSS_CODES or "LOST" in code or "MISSING" in code):
            continue
        ev = f.get("evidence") or {}
        if not isinstance(ev, Mapping):
            continue
        names: list[str] = []
        if f.get("code") in _FIELD_OF_CODE:
            names.append(_FIELD_OF_CODE[f["code"]])
        for key in ("field", "fields", "lost_fields", "missing_fields"):
            value = ev.get(key)
            if isinstance(value, str):
                names.append(value)
            elif isinstance(value, (list, tuple)):
                names.extend(str(v) for v in value)
        if not names:
            continue
        stage_names = {str(f.get("stage"))}
        for key in ("stage", "to_stage", "checkpoint", "to"):
            if isinstance(ev.get(key), str):
                stage_names.add(ev[key])
        for i, stage in enumerate(stages):
            if stage in stage_names:
                for name in names:
                    if name in col:
                        cells.add((i, col[name]))
    return cells


def field_status(ledger: Sequence[Mapping], *, findings: Sequence[Any] | None = None
                 ) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Classify every (stage, field) cell of a ledger.

    A stage *carries* its predecessor's records when it lists at least half
    of the fields the predecessor had present (``events -> oracle -> saved``
    do; ``segments -> features`` is a projection that keeps only ids and
    times, so fields it does not list are "not carried", not lost). Along a
    chain of carrying stages a field whose share of records falls below the
    best share it had earlier in the chain is **lost** at that stage and at
    every later stage of the chain where it stays below, unless a later
    stage carries it in full again (then the stage merely did not carry
    it). Cells named by an error or warning finding about missing data
    (``FIELD_LOST``, ``TOKENS_MISSING``, ``ROUNDTRIP_CHANGED``, via
    ``evidence["field"]`` at the finding's stage) are lost too.

    Returns
    -------
    stages, fields : list of str
    present : int64 (n_stages, n_fields)
    fraction : float64 (n_stages, n_fields), NaN where a stage has no records
    status : int64 (n_stages, n_fields) of ``CELL_*``
    """
    from chandra.ledger import field_matrix

    stages, fields, present, fraction, listed = field_matrix(ledger, listed=True)
    status = np.full(present.shape, CELL_ABSENT, dtype=np.int64)
    frac0 = np.nan_to_num(fraction, nan=0.0)
    for i in range(len(stages)):
        for j in range(len(fields)):
            if listed[i, j]:
                status[i, j] = CELL_COMPLETE if frac0[i, j] >= 1.0 - _TOL and present[i, j] > 0 else CELL_PARTIAL
    n_records = np.array([int(e.get("n_records") or 0) for e in ledger], dtype=np.int64)
    best = np.zeros(len(fields))  # best share since the chain began
    best_n = np.zeros(len(fields), dtype=np.int64)  # records at the stage that had it
    for i in range(len(stages)):
        if i > 0:
            prev_present = (present[i - 1] > 0)
            kept = np.count_nonzero(prev_present & listed[i])
            carries = prev_present.any() and kept * 2 >= np.count_nonzero(prev_present)
            if not carries:
                best = np.zeros(len(fields))
                best_n = np.zeros(len(fields), dtype=np.int64)
            else:
                for j in range(len(fields)):
                    if best[j] <= 0:
                        continue
                    if n_records[i] == best_n[j]:
                        fewer = frac0[i, j] < best[j] - _TOL
                    else:
                        # A different set of records (a generation replays a
                        # sample of frames): only a gone or halved field counts.
                        fewer = present[i, j] == 0 or frac0[i, j] < _FRACTION_DROP * best[j]
                    if not fewer:
                        continue
                    # A field that comes back in full later was only not
                    # carried by this intermediate stage (e.g. "tokens" holds
                    # ids and tokens, "events" has features again).
                    later = frac0[i + 1:, j]
                    if not np.any(later >= best[j] - _TOL):
                        status[i, j] = CELL_LOST
        better = frac0[i] > best
        best = np.where(better, frac0[i], best)
        best_n = np.where(better, n_records[i], best_n)
    for i, j in _finding_cells(findings, stages, fields):
        status[i, j] = CELL_LOST
    return stages, fields, present, fraction, status


def field_matrix_figure(ledger: Sequence[Mapping] | None, *, findings: Sequence[Any] | None = None,
                        title: str = "Fields surviving each stage") -> go.Figure:
    """Stage x field heatmap of how many records carry each field.

    Rows are the ledger's stages in ledger order, columns the union of fields
    in first-seen order. Each cell reads ``count (pct%)``. Colours: green =
    every record carries the field, amber = some records lack it, **red** = a
    field present at an earlier stage is missing or fewer here (see
    :func:`field_status`), grey = the stage does not carry the field. Red
    cells also get a thick red border and a "LOST" label. A legend under the
    matrix names each colour that appears in it.

    Parameters
    ----------
    ledger : list of ledger entries (dicts with ``stage``, ``n_records``, ``fields``)
    findings : list of finding dicts, optional
        Error/warning findings whose evidence names a field mark that cell red.
    """
    ledger = [e for e in (ledger or []) if isinstance(e, Mapping)]
    if not ledger:
        return empty_figure("No ledger yet: run the pipeline or open a model")
    stages, fields, present, fraction, status = field_status(ledger, findings=findings)
    if not fields:
        return empty_figure("The ledger lists no fields")
    n_records = [int(e.get("n_records") or 0) for e in ledger]
    # Many columns make narrow cells: break "count (pct%)" over two lines.
    sep = "<br>" if len(fields) > 9 else " "
    text = []
    hover = []
    for i, stage in enumerate(stages):
        row_t, row_h = [], []
        for j, name in enumerate(fields):
            st = status[i, j]
            if st == CELL_ABSENT:
                cell = "—"
                note = "not carried at this stage"
            else:
                pct = 0.0 if math.isnan(fraction[i, j]) else 100.0 * fraction[i, j]
                cell = f"{present[i, j]}{sep}({pct:.0f}%)"
                note = {CELL_COMPLETE: "complete", CELL_PARTIAL: "partial", CELL_LOST: "LOST"}.get(int(st), "")
            if st == CELL_LOST:
                cell = f"<b>LOST{sep}{cell}</b>"
            row_t.append(cell)
            row_h.append(f"{stage} · {name}: {present[i, j]} of {n_records[i]} records — {note}")
        text.append(row_t)
        hover.append(row_h)
    # Discrete colour scale over the four states.
    colorscale = [
        [0.0, GREY], [0.25, GREY],
        [0.25, GREEN], [0.5, GREEN],
        [0.5, AMBER], [0.75, AMBER],
        [0.75, RED], [1.0, RED],
    ]
    z = status.astype(float) + 0.5  # centre each state in its band of [0, 4]
    ylabels = [f"{s} (n={n})" for s, n in zip(stages, n_records)]
    fig = go.Figure(go.Heatmap(
        z=z, x=fields, y=ylabels, text=text, texttemplate="%{text}", textfont={"size": 11 if sep == " " else 10},
        customdata=hover, hovertemplate="%{customdata}<extra></extra>",
        colorscale=colorscale, zmin=0, zmax=4, showscale=False, xgap=2, ygap=2,
    ))
    for i, j in zip(*np.nonzero(status == CELL_LOST)):
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                      line={"color": "#7f0000", "width": 3}, xref="x", yref="y")
    # A legend of the cell colours present, so amber and grey cells under a
    # "no field lost" title are explained where they are seen.
    legend_text = {
        CELL_COMPLETE: "on every record",
        CELL_PARTIAL: "on some records (e.g. f0 only where pitched)",
        CELL_LOST: "LOST: fewer than at an earlier stage",
        CELL_ABSENT: "— not carried by this stage",
    }
    colours = {CELL_COMPLETE: GREEN, CELL_PARTIAL: AMBER, CELL_LOST: RED, CELL_ABSENT: GREY}
    for state in (CELL_COMPLETE, CELL_PARTIAL, CELL_LOST, CELL_ABSENT):
        if np.any(status == state):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=legend_text[state],
                                     marker={"symbol": "square", "size": 12, "color": colours[state]},
                                     hoverinfo="skip"))
    n_lost = int(np.count_nonzero(status == CELL_LOST))
    n_partial = int(np.count_nonzero(status == CELL_PARTIAL))
    subtitle = (f" — <span style='color:{RED}'><b>{n_lost} lost cell(s)</b></span>" if n_lost
                else " — no field lost")
    if n_partial:
        subtitle += f" · {n_partial} partial cell(s)"
    # The colour key (the legend entries above, only for the states present), so
    # an amber cell under "no field lost" is not a mystery: partial = some
    # records have no value (f0 of unpitched segments, say).
    fig.update_layout(
        title={"text": title + subtitle, "x": 0.0, "xanchor": "left", "yref": "container", "y": 1.0,
               "yanchor": "top", "pad": {"t": 12}},
        height=max(240, 160 + (34 if sep == " " else 46) * len(stages)),
        margin={"l": 10, "r": 10, "t": 120, "b": 40},
        plot_bgcolor="white", showlegend=True,
        legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.02, "yanchor": "top",
                "font": {"size": 12}},
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(side="top", type="category", tickangle=-30)
    return fig


# --------------------------------------------------------------------------- token strip


def token_strip_figure(ledger: Sequence[Mapping] | None, *, n_tokens: int | None = None,
                       title: str = "Token distribution per stage") -> go.Figure:
    """One row per stage, one cell per token id: the share of records with it.

    Empty tokens (count 0) are grey with an ``×``; a stage whose tokens
    collapsed to a single id is labelled "COLLAPSED" in red; a stage without
    token data has an all-grey row labelled "no tokens".

    Parameters
    ----------
    ledger : list of ledger entries (``tokens`` key from :func:`chandra.ledger.token_stats`)
    n_tokens : int, optional
        Vocabulary size K (columns). Defaults to the widest histogram.
    """
    ledger = [e for e in (ledger or []) if isinstance(e, Mapping)]
    if not ledger:
        return empty_figure("No ledger yet: nothing to show")
    hists: list[np.ndarray | None] = []
    stats: list[dict] = []
    for e in ledger:
        tok = e.get("tokens") if isinstance(e.get("tokens"), Mapping) else None
        stats.append(dict(tok or {}))
        counts = tok.get("counts") if tok else None
        hists.append(np.asarray(counts, dtype=np.int64) if counts is not None else None)
    widths = [h.size for h in hists if h is not None]
    k = int(n_tokens) if n_tokens else 0
    k = max([k] + widths)
    if k <= 0 or not any(h is not None and h.sum() > 0 for h in hists):
        if k <= 0:
            return empty_figure("No token histograms in this ledger")
    z = np.full((len(ledger), k), np.nan)
    text = [["" for _ in range(k)] for _ in ledger]
    labels = []
    empty_x, empty_y = [], []
    collapsed_rows = []
    for i, (e, h, tok) in enumerate(zip(ledger, hists, stats)):
        stage = str(e.get("stage", f"stage {i}"))
        if h is None or h.sum() == 0:
            labels.append(f"{stage} · no tokens")
            continue
        counts = np.zeros(k, dtype=np.int64)
        counts[: h.size] = h[:k]
        total = counts.sum()
        z[i] = counts / total
        unique = int(np.count_nonzero(counts))
        ent = _finite(tok.get("entropy_bits"))
        mx = _finite(tok.get("max_entropy_bits"))
        label = f"{stage} · {unique}/{k}"
        if ent is not None and mx is not None:
            label += f" · {ent:.2f}/{mx:.2f} bits"
        if unique <= 1 and k > 1:
            label = f"<span style='color:{RED}'><b>{label} · COLLAPSED</b></span>"
            collapsed_rows.append(i)
        labels.append(label)
        for j in np.flatnonzero(counts == 0):
            empty_x.append(int(j))
            empty_y.append(i)
        for j in range(k):
            text[i][j] = f"token {j}: {counts[j]} ({100.0 * counts[j] / total:.1f}%)"
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(k)), y=list(range(len(ledger))), customdata=text,
        hovertemplate="%{customdata}<extra></extra>", colorscale="Viridis", zmin=0,
        colorbar={"title": "share", "thickness": 12}, xgap=1, ygap=3,
    ))
    if empty_x:
        fig.add_trace(go.Scatter(
            x=empty_x, y=empty_y, mode="markers", name="empty token",
            marker={"symbol": "x-thin", "size": 7, "color": "#888", "line": {"width": 1, "color": "#888"}},
            hovertemplate="token %{x}: empty<extra></extra>", showlegend=True,
        ))
    for i in collapsed_rows:
        fig.add_shape(type="rect", x0=-0.5, x1=k - 0.5, y0=i - 0.5, y1=i + 0.5,
                      line={"color": RED, "width": 3}, xref="x", yref="y")
    fig.update_layout(
        title={"text": title + f" (K={k})"},
        height=max(220, 70 + 34 * len(ledger)),
        margin={"l": 10, "r": 10, "t": 50, "b": 30},
        plot_bgcolor=GREY,
        legend={"orientation": "h", "y": -0.15},
    )
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(ledger))), ticktext=labels,
                     autorange="reversed", showgrid=False, zeroline=False)
    fig.update_xaxes(title="token id", range=[-0.5, k - 0.5], showgrid=False, zeroline=False)
    return fig


# --------------------------------------------------------------------------- findings


def findings_table(findings: Sequence[Any] | None) -> pd.DataFrame:
    """Findings as a table (severity, code, stage, message), errors first.

    Accepts finding dicts or objects with ``to_dict()``. Always returns those
    four columns, also when there are no findings.
    """
    rows = []
    for i, raw in enumerate(findings or []):
        f = _as_dict(raw)
        rows.append({
            "severity": str(f.get("severity", "info")),
            "code": str(f.get("code", "")),
            "stage": "" if f.get("stage") is None else str(f.get("stage")),
            "message": str(f.get("message", "")),
            "_order": (_SEVERITY_ORDER.get(str(f.get("severity")), len(SEVERITIES)), i),
        })
    if not rows:
        return pd.DataFrame(columns=["severity", "code", "stage", "message"])
    df = pd.DataFrame(rows).sort_values("_order", kind="stable").drop(columns="_order")
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------- feature health


def feature_health_figure(entry: Mapping | None, *, title: str | None = None) -> go.Figure:
    """Bar chart of a feature matrix's warning signs, as shares in [0, 1].

    ``entry`` is a ledger entry (its ``features`` statistics are used) or the
    statistics dict itself (:func:`chandra.ledger.feature_stats`). Bars:
    dead dimensions, never-used dimensions, zero-padded rows, duplicate rows,
    all-zero rows, non-finite rows; red above 5 %, amber above 0. The title
    gives the dimension, the median non-zero entries per row and the norms.
    """
    entry = entry if isinstance(entry, Mapping) else {}
    stats = entry.get("features") if isinstance(entry.get("features"), Mapping) else None
    if stats is None and "dim" in entry:
        stats = entry
    if not stats:
        return empty_figure("No feature statistics for this stage")
    n = max(int(stats.get("n_rows") or 0), 1)
    dim = max(int(stats.get("dim") or 0), 1)
    nonzero = stats.get("nonzero_dims")
    items = [
        ("dead dims", (stats.get("dead_dims") or 0) / dim, f"{stats.get('dead_dims', 0)} of {dim}"),
        ("never-used dims", (dim - nonzero) / dim if nonzero is not None else 0.0,
         f"{dim - nonzero if nonzero is not None else '?'} of {dim}"),
        ("zero-padded rows", (stats.get("padded_rows") or 0) / n, f"{stats.get('padded_rows', 0)} of {n}"),
        ("duplicate rows", float(stats.get("duplicate_rate") or 0.0),
         f"{100 * float(stats.get('duplicate_rate') or 0.0):.1f}%"),
        ("all-zero rows", (stats.get("zero_rows") or 0) / n, f"{stats.get('zero_rows', 0)} of {n}"),
        ("non-finite rows", (stats.get("nonfinite_rows") or 0) / n, f"{stats.get('nonfinite_rows', 0)} of {n}"),
    ]
    names = [k for k, _, _ in items]
    values = [float(v) for _, v, _ in items]
    labels = [t for _, _, t in items]
    colours = [RED if v > 0.05 else AMBER if v > 0 else GREEN for v in values]
    fig = go.Figure(go.Bar(
        x=values, y=names, orientation="h", marker_color=colours, text=labels,
        # "outside": a healthy (zero) bar still shows its "0 of n", so the chart is never blank.
        textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{text}<extra></extra>",
    ))
    if not any(values):
        fig.add_annotation(text="no warning sign: every share is 0%", x=0.98, y=0.02, xref="paper", yref="paper",
                           xanchor="right", yanchor="bottom", showarrow=False, font={"color": GREEN, "size": 13})
    parts = [f"dim {stats.get('dim')}"]
    if stats.get("effective_dim_median") is not None:
        parts.append(f"median non-zero per row {stats.get('effective_dim_median')}")
    if stats.get("used_dim_max") is not None:
        parts.append(f"used up to {stats.get('used_dim_max')}")
    nm = [_finite(stats.get(k)) for k in ("norm_min", "norm_mean", "norm_max")]
    if all(v is not None for v in nm):
        parts.append(f"norm {nm[0]:.3g}/{nm[1]:.3g}/{nm[2]:.3g}")
    if stats.get("ragged"):
        parts.append(f"ragged rows {stats.get('row_dim_min')}–{stats.get('row_dim_max')}")
    head = title or f"Feature health ({entry.get('stage', 'features')})"
    fig.update_layout(
        title={"text": f"{head}<br><sup>{' · '.join(parts)}</sup>"},
        height=300, margin={"l": 10, "r": 10, "t": 70, "b": 30}, plot_bgcolor="white",
    )
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title="share", gridcolor="#eee")
    fig.update_yaxes(autorange="reversed")
    return fig


# --------------------------------------------------------------------------- oracle health


def _oracle_arrays(oracle: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        sfx = np.asarray(oracle.sfx, dtype=np.int64)
        lrs = np.asarray(oracle.lrs, dtype=np.int64)
        ptr = np.asarray(oracle.trn_ptr, dtype=np.int64)
    except AttributeError:
        return None
    return sfx, lrs, ptr


def oracle_shape(oracle: Any, *, lrs_bins: int = 32) -> dict | None:
    """Small JSON-able summary of an oracle's arrays for :func:`oracle_health_figure`.

    The keys of :func:`chandra.oracle.oracle_health` that the figure uses
    (``kind``, ``n_frames``, ``n_transitions``, ``root_out_degree``,
    ``sfx_to_root_share``, ``sfx_to_previous_share``, ``lrs_histogram``,
    ``threshold``, ``metric``) plus the out-degree distribution
    (``out_degree_values``, ``out_degree_counts``) and the median distance
    a suffix link reaches back (``sfx_back_median``, frames). Cheap to cache
    where the oracle itself is not.
    """
    arrays = _oracle_arrays(oracle) if oracle is not None else None
    if arrays is None:
        return None
    sfx, lrs, ptr = arrays
    n = int(sfx.size - 1)
    deg = np.diff(ptr)[: n + 1] if ptr.size >= 2 else np.zeros(0, np.int64)
    states = np.arange(1, n + 1)
    back = (states - sfx[1:])[sfx[1:] > 0] if n else np.zeros(0, np.int64)
    vals, cnt = np.unique(deg, return_counts=True) if deg.size else (np.zeros(0), np.zeros(0))
    lrs_hist = np.bincount(np.minimum(lrs[1:], lrs_bins), minlength=lrs_bins + 1) if n else \
        np.zeros(lrs_bins + 1, np.int64)
    thr = getattr(oracle, "threshold", None)
    # The link shares come from oracle_health itself, so this figure and the
    # Oracle page's metrics can never disagree on a definition (state 1's
    # link to the root is not a "link to s-1").
    from chandra.oracle import Oracle, oracle_health

    health = oracle_health(oracle) if isinstance(oracle, Oracle) else None
    return {
        "kind": getattr(oracle, "kind", None),
        "n_frames": n,
        "n_transitions": int(ptr[-1]) if ptr.size else 0,
        "root_out_degree": int(deg[0]) if deg.size else 0,
        "sfx_to_root_share": float(health["sfx_to_root_share"]) if health else
        (float(np.mean(sfx[1:] == 0)) if n else 0.0),
        "sfx_to_previous_share": float(health["sfx_to_previous_share"]) if health else
        (float(np.sum(sfx[2:] == states[1:] - 1)) / n if n else 0.0),
        "lrs_histogram": [int(c) for c in lrs_hist],
        "threshold": None if thr is None else float(thr),
        "metric": getattr(oracle, "metric", None),
        "out_degree_values": [int(v) for v in vals],
        "out_degree_counts": [int(c) for c in cnt],
        "sfx_back_median": float(np.median(back)) if back.size else None,
    }


def oracle_health_figure(health: Any, *, oracle: Any = None, lrs_bins: int = 32) -> go.Figure:
    """Four panels of oracle shape.

    * suffix-link targets: share of states linking to the root, to the
      previous state (s-1), and elsewhere;
    * transitions per state (histogram of out-degrees when known, mean/max
      bars from a health dict otherwise);
    * root out-degree against the number of frames n (root ≈ n means every
      frame was a new symbol: nothing recurs);
    * LRS histogram.

    Parameters
    ----------
    health : dict or Oracle or None
        :func:`oracle_shape`, :func:`chandra.oracle.oracle_health`, a ledger
        ``oracle`` summary, an inspect report's ``oracle``, or an
        :class:`~chandra.oracle.Oracle` itself.
    oracle : Oracle, optional
        The arrays, for the per-state distributions.
    """
    if health is not None and not isinstance(health, Mapping) and _oracle_arrays(health) is not None:
        oracle, health = health, None
    h = dict(health) if isinstance(health, Mapping) else {}
    if oracle is not None:
        h.update(oracle_shape(oracle, lrs_bins=lrs_bins) or {})
    if not h:
        return empty_figure("No oracle in this model")
    n = h.get("n_frames")
    if n is None:
        n = max(int(h.get("n_states") or h.get("states") or 1) - 1, 0)
    n = int(n)
    to_root = float(h.get("sfx_to_root_share") or 0.0)
    to_prev = float(h.get("sfx_to_previous_share") or 0.0)
    root_out = int(h.get("root_out_degree") or 0)
    lrs_hist = np.asarray(h.get("lrs_histogram") or [], dtype=np.int64)
    n_trans = int(h.get("n_transitions") or h.get("transitions") or 0)
    # Shares as oracle_health defines them: state 1 counts as a link to the root only.
    elsewhere = max(0.0, 1.0 - to_root - to_prev) if n else 0.0
    # One row of four panels: the figure is as wide as the page and about as tall as its neighbours.
    fig = make_subplots(rows=1, cols=4, horizontal_spacing=0.07, subplot_titles=(
        "Suffix-link targets", "Transitions per state", "Root out-degree vs frames", "LRS (frames)"))
    fig.add_trace(go.Bar(
        x=["to root (0)", "to s−1", "elsewhere"], y=[to_root, to_prev, elsewhere],
        marker_color=[RED if to_root > 0.9 else BLUE, RED if to_prev > 0.9 else BLUE, BLUE],
        text=[f"{100 * v:.0f}%" for v in (to_root, to_prev, elsewhere)], textposition="auto",
        name="suffix links", showlegend=False,
    ), row=1, col=1)
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%", row=1, col=1)
    if h.get("out_degree_values"):
        fig.add_trace(go.Bar(x=h["out_degree_values"], y=h["out_degree_counts"], marker_color=BLUE,
                             name="states", showlegend=False,
                             hovertemplate="%{y} states with %{x} transitions<extra></extra>"), row=1, col=2)
        fig.update_xaxes(title="out-degree", type="category", row=1, col=2)
    else:
        mean = _finite(h.get("transitions_per_state_mean"))
        if mean is None and n:
            mean = n_trans / (n + 1)
        mx = h.get("transitions_per_state_max")
        fig.add_trace(go.Bar(x=["mean", "max"], y=[mean or 0.0, mx or 0], marker_color=BLUE,
                             showlegend=False, name="out-degree"), row=1, col=2)
    share = root_out / n if n else 0.0
    fig.add_trace(go.Bar(
        x=["root out-degree", "frames n"], y=[root_out, n],
        marker_color=[RED if n > 10 and share > 0.9 else BLUE, "#999"],
        text=[f"{root_out} ({100 * share:.0f}% of n)", str(n)], textposition="auto", showlegend=False,
        name="root",
    ), row=1, col=3)
    if lrs_hist.size:
        labels = [str(i) for i in range(lrs_hist.size)]
        if lrs_hist.size > 1:
            labels[-1] = f"≥{lrs_hist.size - 1}"
        fig.add_trace(go.Bar(x=labels, y=lrs_hist, marker_color=BLUE, showlegend=False, name="LRS"),
                      row=1, col=4)
        fig.update_xaxes(type="category", row=1, col=4)
    # A short title and the numbers on a second, smaller line: nothing is cut at the figure's edge.
    parts = [f"{h.get('kind') or 'graph'}", f"n = {n} frames", f"{n_trans} transitions"]
    if h.get("sfx_back_median") is not None:
        parts.append(f"median suffix link back {h['sfx_back_median']:.0f} frames")
    thr = _finite(h.get("threshold"))
    if thr is not None:
        parts.append(f"θ = {thr:.3g}")
    fig.update_layout(title={"text": f"Oracle health<br><sup>{' · '.join(parts)}</sup>"}, height=340,
                      margin={"l": 10, "r": 10, "t": 90, "b": 40}, plot_bgcolor="white")
    return fig


# --------------------------------------------------------------------------- generation


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def generation_timeline_figure(generation: Any, model: Any = None, *, max_points: int = 50_000) -> go.Figure:
    """Source position (s) of each played frame against output time (s).

    Forward runs are lines; jumps are red markers with the shared context
    (LRS) as text and hover; restarts are purple diamonds, fallbacks orange
    crosses. Without event times (no model) the axes fall back to frame
    indices and step numbers.

    Parameters
    ----------
    generation : chandra.generate.Generation (or its ``to_dict()``)
    model : chandra.model.Model, optional
        For ``t`` and ``duration`` of the source events.
    """
    raw = _get(generation, "frames") if generation is not None else None
    frames = np.asarray([] if raw is None else raw, dtype=np.int64).ravel()
    if frames.size == 0:
        return empty_figure("Nothing generated yet")
    steps = list(_get(generation, "steps") or [])
    events = getattr(model, "events", None) if model is not None else None
    times = durations = None
    if events is not None and len(events) and frames.max() < len(events):
        try:
            times = np.array([float(events[int(f)].get("t")) for f in frames])
            durations = np.array([float(events[int(f)].get("duration") or 0.0) for f in frames])
        except (TypeError, ValueError):
            times = durations = None
    if times is not None:
        out_t = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
        src = times
        xlab, ylab = "output time (s)", "source position (s)"
    else:
        out_t = np.arange(frames.size, dtype=float)
        src = frames.astype(float)
        xlab, ylab = "output step", "source frame"
    kinds = [str(_get(s, "kind", "")) for s in steps] if len(steps) == frames.size else None
    if kinds is None:
        kinds = ["start"] + ["forward" if frames[i] == frames[i - 1] + 1 else "jump" for i in range(1, frames.size)]
    lrs = [(_get(s, "lrs") if steps and len(steps) == frames.size else None) for s in (steps or [None] * frames.size)]
    # Break the line at every discontinuity so a jump is a gap, not a slanted line.
    xs, ys = [], []
    for i in range(frames.size):
        if i and kinds[i] != "forward":
            xs.append(None)
            ys.append(None)
        xs.append(out_t[i])
        ys.append(src[i])
    step_idx = np.arange(frames.size)
    stride = max(1, int(math.ceil(len(xs) / max_points)))
    fig = go.Figure(go.Scattergl(x=xs[::stride], y=ys[::stride], mode="lines", name="path",
                                 line={"color": BLUE, "width": 2}, hoverinfo="skip"))
    custom = np.stack([step_idx, frames], axis=1)
    fig.add_trace(go.Scattergl(
        x=out_t[::stride], y=src[::stride], mode="markers", name="frames",
        marker={"size": 4, "color": BLUE}, customdata=custom[::stride],
        hovertemplate="step %{customdata[0]} · frame %{customdata[1]}<br>%{x:.2f} → %{y:.2f}<extra></extra>",
    ))
    # Dotted connectors show where each discontinuity leaves from and lands.
    cx, cy = [], []
    for i in range(1, frames.size):
        if kinds[i] != "forward" and len(cx) < 3 * max_points:
            prev_end = src[i - 1] + (durations[i - 1] if times is not None else 1.0)
            cx += [out_t[i], out_t[i], None]
            cy += [prev_end, src[i], None]
    if cx:
        fig.add_trace(go.Scattergl(x=cx, y=cy, mode="lines", name="leap", hoverinfo="skip",
                                   line={"color": "rgba(215,25,28,0.35)", "width": 1, "dash": "dot"},
                                   showlegend=False))
    styles = {
        "jump": ("jump", RED, "circle", 9),
        "restart": ("restart", "#7b3294", "diamond", 10),
        "fallback": ("fallback", "#e66101", "x", 10),
    }
    x_span = (float(np.nanmax(out_t)) - float(np.nanmin(out_t))) or 1.0
    y_span = (float(np.nanmax(src)) - float(np.nanmin(src))) or 1.0
    placed: list[tuple[float, float]] = []  # labels already drawn, in fractions of the spans
    marked = np.asarray([i for i, k in enumerate(kinds) if k in styles], dtype=np.int64)
    obstacles = (out_t[marked] / x_span, src[marked] / y_span)  # no label covers a marker
    n_labelled = n_labels = 0
    for kind, (name, colour, symbol, size) in styles.items():
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if not idx:
            continue
        idx = np.asarray(idx)
        lab = ["" if lrs[i] is None else f"LRS {lrs[i]}" for i in idx]
        # Labels only where they cannot overprint one another; every value stays in the hover.
        has = np.array([bool(v) for v in lab])
        priority = np.array([-(float(lrs[i]) if lrs[i] is not None else -1.0) for i in idx])
        show = spaced_labels(out_t[idx] / x_span, src[idx] / y_span, order=np.argsort(priority, kind="stable"),
                             allowed=has, placed=placed, obstacles=obstacles)
        n_labels += int(has.sum())
        n_labelled += int(show.sum())
        reasons = [str(_get(steps[i], "reason") or "") if steps and len(steps) == frames.size else ""
                   for i in idx]
        fig.add_trace(go.Scatter(
            x=out_t[idx], y=src[idx], mode="markers+text" if show.any() else "markers", name=name,
            marker={"size": size, "color": colour, "symbol": symbol, "line": {"width": 1, "color": "white"}},
            text=[v if s else "" for v, s in zip(lab, show)], textposition="top center",
            textfont={"size": 10, "color": colour}, cliponaxis=False,
            customdata=np.stack([idx, frames[idx], np.array(lab, dtype=object), np.array(reasons, dtype=object)],
                                axis=1),
            hovertemplate=(f"{name} at step %{{customdata[0]}} → frame %{{customdata[1]}}<br>"
                           "%{customdata[2]} %{customdata[3]}<extra></extra>"),
        ))
    n_j = kinds.count("jump")
    note = ""
    if n_labelled < n_labels:
        note = f"<br><sup>LRS written on {n_labelled} of {n_labels} jumps where there is room; hover for all</sup>"
    fig.update_layout(
        title={"text": f"Improvisation path: {frames.size} frames, {n_j} jumps" + note},
        xaxis_title=xlab, yaxis_title=ylab, height=380,
        margin={"l": 10, "r": 10, "t": 50, "b": 40}, plot_bgcolor="white",
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    )
    fig.update_xaxes(gridcolor="#eee")
    fig.update_yaxes(gridcolor="#eee")
    return fig


def spaced_labels(x: np.ndarray, y: np.ndarray, *, width: float = 0.045, height: float = 0.075,
                  order: np.ndarray | None = None, allowed: np.ndarray | None = None,
                  placed: list[tuple[float, float]] | None = None,
                  obstacles: tuple[np.ndarray, np.ndarray] | None = None, lift: float = 0.025,
                  radius: tuple[float, float] = (0.006, 0.02)) -> np.ndarray:
    """Which point labels can be drawn without overprinting one another or a marker.

    Each label is a box ``width`` x ``height`` (fractions of the axis spans;
    the defaults fit "LRS 12" at 10 px in a 1000 x 300 px plot) centred
    horizontally on its point and starting ``lift`` above it (plotly's
    ``textposition="top center"``). Labels are taken greedily in ``order``
    (most important first) and kept when their box overlaps no box kept
    before and no marker in ``obstacles`` (markers are boxes of half-size
    ``radius``).

    Parameters
    ----------
    x, y : float (n,)
        Point positions as fractions of the axis spans.
    order : int (n,), optional
        Priority order (default: left to right).
    allowed : bool (n,), optional
        Points that have a label at all.
    placed : list of (x, y), optional
        Points whose labels are already drawn (by other traces); extended in place.
    obstacles : (x, y) arrays, optional
        Markers a label must not cover (fractions of the spans).

    Returns
    -------
    bool (n,)
        True where the label is drawn.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    show = np.zeros(x.size, dtype=bool)
    boxes = placed if placed is not None else []
    ox = oy = np.zeros(0)
    if obstacles is not None:
        ox, oy = (np.asarray(v, dtype=np.float64) for v in obstacles)
    rx, ry = radius
    for i in (np.argsort(x, kind="stable") if order is None else np.asarray(order)):
        if allowed is not None and not allowed[i]:
            continue
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        if not all(abs(x[i] - bx) >= width or abs(y[i] - by) >= height for bx, by in boxes):
            continue
        bottom, top = y[i] + lift, y[i] + lift + height
        covers = (np.abs(ox - x[i]) < width / 2 + rx) & (oy + ry > bottom) & (oy - ry < top)
        if covers.any():
            continue
        boxes.append((float(x[i]), float(y[i])))
        show[i] = True
    return show


def _token_counts(tokens: Any, k: int) -> np.ndarray:
    if tokens is None:
        return np.zeros(k, dtype=np.int64)
    vals = []
    for v in (tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)):
        if v is None or isinstance(v, bool):
            continue
        try:
            fv = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(fv) and fv.is_integer() and 0 <= fv < k:
            vals.append(int(fv))
    return np.bincount(np.asarray(vals, dtype=np.int64), minlength=k)[:k] if k else np.zeros(0, np.int64)


def _max_token(tokens: Any) -> int:
    best = -1
    if tokens is None:
        return best
    for v in (tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)):
        try:
            fv = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(fv) and fv.is_integer():
            best = max(best, int(fv))
    return best


def token_histogram_comparison(train_tokens: Any, generated_tokens: Any, *, n_tokens: int | None = None
                               ) -> go.Figure:
    """Share of each token id in the training frames and in the generated path.

    Missing ids (None, NaN, -1) are left out of both. Tokens the generation
    never played but training has are visible as a lone grey bar.
    """
    k = int(n_tokens) if n_tokens else 0
    k = max(k, _max_token(train_tokens) + 1, _max_token(generated_tokens) + 1)
    if k <= 0:
        return empty_figure("No gesture tokens to compare")
    train = _token_counts(train_tokens, k)
    gen = _token_counts(generated_tokens, k)
    if train.sum() == 0 and gen.sum() == 0:
        return empty_figure("No gesture tokens to compare")
    fig = go.Figure()
    for name, counts, colour in (("training", train, "#999999"), ("generated", gen, BLUE)):
        total = counts.sum()
        share = counts / total if total else np.zeros(k)
        fig.add_trace(go.Bar(x=list(range(k)), y=share, name=f"{name} (n={int(total)})", marker_color=colour,
                             customdata=counts,
                             hovertemplate=f"{name} token %{{x}}: %{{customdata}} (%{{y:.1%}})<extra></extra>"))
    used_t = int(np.count_nonzero(train))
    used_g = int(np.count_nonzero(gen))
    fig.update_layout(
        barmode="group", bargap=0.15, height=300,
        title={"text": f"Token histogram: training uses {used_t}/{k}, generation uses {used_g}/{k}"},
        xaxis_title="token id", yaxis_title="share", yaxis_tickformat=".0%",
        margin={"l": 10, "r": 10, "t": 50, "b": 40}, plot_bgcolor="white",
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
    )
    return fig


# --------------------------------------------------------------------------- IR curve


def ir_curve_figure(curve: Mapping | None, *, chosen: float | None = None) -> go.Figure:
    """Information rate against the audio-oracle threshold, the chosen value marked.

    Parameters
    ----------
    curve : dict from :func:`chandra.oracle.ir_threshold_sweep`
        ``thresholds``, ``ir``, optionally ``root_out_degree`` (plotted on a
        second axis), ``best_threshold``, ``best_ir``.
    chosen : float, optional
        Threshold actually used (defaults to ``best_threshold``).
    """
    if not isinstance(curve, Mapping):
        return empty_figure("No threshold sweep (factor oracle, or a fixed threshold)")
    th = np.asarray(curve.get("thresholds") or [], dtype=float)
    ir = np.asarray(curve.get("ir") or [], dtype=float)
    if th.size == 0 or th.size != ir.size:
        return empty_figure("No threshold sweep (factor oracle, or a fixed threshold)")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=th, y=ir, mode="lines+markers", name="IR (bits/frame)",
                             line={"color": BLUE}), secondary_y=False)
    roots = curve.get("root_out_degree")
    if roots is not None and len(roots) == th.size:
        fig.add_trace(go.Scatter(x=th, y=roots, mode="lines", name="root out-degree (clusters)",
                                 line={"color": "#999", "dash": "dot"}), secondary_y=True)
        fig.update_yaxes(title_text="clusters", secondary_y=True, showgrid=False)
    pick = _finite(chosen) if chosen is not None else _finite(curve.get("best_threshold"))
    if pick is None:
        pick = float(th[int(np.nanargmax(ir))])
    y_pick = float(np.interp(pick, th, ir)) if th.size > 1 else float(ir[0])
    fig.add_vline(x=pick, line={"color": RED, "dash": "dash"})
    fig.add_trace(go.Scatter(x=[pick], y=[y_pick], mode="markers+text", name="chosen",
                             marker={"symbol": "star", "size": 14, "color": RED},
                             text=[f"θ={pick:.3g}"], textposition="top center"), secondary_y=False)
    fig.update_layout(title={"text": f"Information rate vs threshold (chosen θ={pick:.3g})"}, height=320,
                      margin={"l": 10, "r": 10, "t": 50, "b": 40}, plot_bgcolor="white",
                      legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(title_text="threshold θ", gridcolor="#eee")
    fig.update_yaxes(title_text="IR (bits/frame)", secondary_y=False, gridcolor="#eee")
    return fig
