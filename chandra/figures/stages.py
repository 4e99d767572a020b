"""Figures, tables and small sonifications for the per-stage pages.

Every builder takes arrays (or ledger dicts) and returns a plotly figure or a
pandas DataFrame; none imports streamlit. Figures never carry more than
:data:`MAX_POINTS` points: waveforms are drawn as min/max envelopes,
spectrograms are decimated, scatters and arc diagrams are subsampled.
Scatter points carry their segment id in ``customdata`` because plotly's
``point_index`` is per trace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from chandra.figures.palette import EMPTY_COLOR, MISSING_COLOR, SPECTROGRAM_COLORSCALE, token_color, token_symbol

__all__ = [
    "MAX_POINTS",
    "MAX_MARKERS",
    "count_points",
    "envelope",
    "log_mel",
    "pool_spectrogram",
    "thin_indices",
    "segment_ends",
    "rug_colours",
    "waveform_spectrogram_figure",
    "segment_table",
    "slice_signal",
    "concat_segments",
    "click_track",
    "row_norms",
    "norms_figure",
    "feature_health_table",
    "token_order",
    "projection_figure",
    "subsample_indices",
    "selection_ids",
    "token_histogram_figure",
    "token_grids",
    "token_grid_figure",
    "entropy_figure",
    "token_examples",
    "field_presence",
    "field_presence_figure",
    "field_matrix_table",
    "time_axis_table",
    "lost_fields",
    "suffix_arc_figure",
    "lrs_figure",
    "ir_over_k_figure",
    "stage_headline",
]

#: Most points any figure sends to the browser.
MAX_POINTS = 50_000
#: Onset ticks drawn at most in the waveform's rug (evenly thinned beyond).
MAX_MARKERS = 2000

_PRE_EVENT_STAGES = ("segments", "features", "normalised")


def count_points(fig: go.Figure) -> int:
    """Points a figure sends: x/y values of scatter-like traces, cells of
    heatmaps, values of histograms and bars."""
    total = 0
    for trace in fig.data:
        z = getattr(trace, "z", None)
        if z is not None:
            total += int(np.asarray(z, dtype=object).size)
            continue
        for attr in ("x", "y"):
            values = getattr(trace, attr, None)
            if values is not None:
                total += len(values)
                break
    return total


def subsample_indices(n: int, max_n: int) -> np.ndarray:
    """Evenly spaced, sorted indices of at most ``max_n`` of ``n`` items (all when n <= max_n)."""
    if n <= max_n:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, max(1, max_n)).round().astype(np.int64))


# ---------------------------------------------------------------------------
# audio and segments
# ---------------------------------------------------------------------------


def envelope(y: np.ndarray, sr: int, *, n_columns: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope of a signal, one pair per pixel column.

    Column ``j`` covers samples ``edges[j]:edges[j + 1]`` with
    ``edges[j] = floor(j * n / m)`` (exact integers), so every sample lies
    in exactly one column and columns differ in width by at most one sample.

    Parameters
    ----------
    y : float array (n_samples,)
    sr : int
        Sample rate in Hz.
    n_columns : int
        Number of columns (at most ``n_samples``).

    Returns
    -------
    t : float64 (m,)
        Column centres in seconds.
    lo, hi : float32 (m,)
        Minimum and maximum sample in each column.
    """
    y = np.asarray(y, dtype=np.float32).ravel()
    n = y.size
    if n == 0:
        return np.zeros(0), np.zeros(0, np.float32), np.zeros(0, np.float32)
    m = max(1, min(int(n_columns), n))
    # Exact integer edges: float linspace can round j*n/m to the wrong side.
    edges = (np.arange(m + 1, dtype=np.int64) * n) // m
    lo = np.minimum.reduceat(y, edges[:-1])
    hi = np.maximum.reduceat(y, edges[:-1])
    t = (edges[:-1] + edges[1:]) / 2.0 / float(sr)
    return t, lo, hi


def log_mel(y: np.ndarray, sr: int, *, n_mels: int = 48, max_frames: int = 800,
            hop_length: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-mel spectrogram decimated in time to at most ``max_frames`` columns.

    Frames are computed at ``hop_length`` and then mean-pooled in power
    (not skipped), so short events still show after decimation.

    Returns
    -------
    times : float64 (f,) column centres in seconds (evenly spaced)
    freqs : float64 (n_mels,) mel band centres in Hz
    S_db : float32 (n_mels, f) power in dB relative to the maximum, in [-80, 0]
    """
    import librosa  # deferred: heavy import

    y = np.asarray(y, dtype=np.float32).ravel()
    if y.size == 0:
        return np.zeros(0), np.zeros(n_mels), np.zeros((n_mels, 0), np.float32)
    n_fft = 2048 if y.size >= 2048 else int(2 ** math.floor(math.log2(max(y.size, 16))))
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                       center=True)
    n_frames = S.shape[1]
    group = max(1, math.ceil(n_frames / max_frames))
    n_cols = math.ceil(n_frames / group)
    pad = n_cols * group - n_frames
    if pad:
        S = np.concatenate([S, np.repeat(S[:, -1:], pad, axis=1)], axis=1)
    S = S.reshape(n_mels, n_cols, group).mean(axis=2)
    S_db = librosa.power_to_db(S, ref=np.max, top_db=80.0).astype(np.float32)
    frame_times = librosa.frames_to_time(np.arange(n_cols) * group + (group - 1) / 2.0, sr=sr,
                                         hop_length=hop_length)
    freqs = librosa.mel_frequencies(n_mels=n_mels, fmax=sr / 2.0)
    return np.asarray(frame_times, dtype=np.float64), freqs, S_db


def pool_spectrogram(mel: tuple[np.ndarray, np.ndarray, np.ndarray], max_frames: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A :func:`log_mel` result pooled in time to at most ``max_frames`` columns.

    Groups of ``ceil(f / max_frames)`` columns are averaged in power (dB
    converted back, averaged, converted again), as :func:`log_mel` pools
    frames, so a finer spectrogram computed once can serve every width.
    """
    times, freqs, S_db = mel
    S_db = np.asarray(S_db, dtype=np.float32)
    n = S_db.shape[1]
    if n <= max(1, int(max_frames)):
        return np.asarray(times, dtype=np.float64), freqs, S_db
    group = math.ceil(n / max(1, int(max_frames)))
    starts = np.arange(0, n, group)
    counts = np.diff(np.append(starts, n)).astype(np.float64)  # the last group may be short
    power = np.power(10.0, S_db.astype(np.float64) / 10.0)
    pooled = np.add.reduceat(power, starts, axis=1) / counts
    t_mean = np.add.reduceat(np.asarray(times, dtype=np.float64), starts) / counts
    db = np.clip(10.0 * np.log10(np.maximum(pooled, 1e-10)), -80.0, 0.0).astype(np.float32)
    return t_mean, freqs, db


def thin_indices(times: Sequence[float] | np.ndarray, *, max_markers: int, start: float | None = None,
                 end: float | None = None) -> np.ndarray:
    """Indices of the sorted ``times`` inside ``[start, end)``, evenly thinned
    to at most ``max_markers`` (first and last in the window kept).

    This is how the waveform's onset rug stays readable and bounded at any
    length: the whole recording shows an even sample of its onsets, and a
    zoomed window (the player recomputes it in the browser with the same
    rule) shows every onset once few enough fall inside it.
    """
    t = np.asarray(times, dtype=np.float64)
    i0 = 0 if start is None else int(np.searchsorted(t, float(start), side="left"))
    i1 = t.size if end is None else int(np.searchsorted(t, float(end), side="left"))
    if i1 <= i0 or max_markers <= 0:
        return np.zeros(0, dtype=np.int64)
    return i0 + subsample_indices(i1 - i0, int(max_markers))


def segment_ends(starts: np.ndarray, ends: np.ndarray | None, duration: float) -> np.ndarray:
    """Segment ends (seconds), defaulting to the next start (the last one to ``duration``)."""
    starts = np.asarray(starts, dtype=np.float64)
    if ends is not None:
        return np.asarray(ends, dtype=np.float64)
    return np.append(starts[1:], max(float(duration), float(starts[-1]) if starts.size else 0.0))


def _rect_path(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """x, y of closed rectangles [a_i, b_i] x [lo, hi], NaN-separated (one trace)."""
    k = a.size
    xs = np.stack([a, b, b, a, a, np.full(k, np.nan)], axis=1).ravel()
    ys = np.tile([lo, lo, hi, hi, lo, np.nan], k)
    return xs, ys


def waveform_spectrogram_figure(y: np.ndarray, sr: int, *, onsets: Sequence[float] | None = None,
                                ends: Sequence[float] | None = None, segment_ids: Sequence[int] | None = None,
                                tokens: Sequence[int] | None = None, highlight_token: int | None = None,
                                n_columns: int = 2000, n_mels: int = 48, max_frames: int = 800,
                                mel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                                max_markers: int = MAX_MARKERS, rangeslider: bool = True,
                                height: int = 560) -> go.Figure:
    """Waveform envelope, onset rug and log-mel spectrogram on one time axis.

    Three rows share the time axis: the min/max envelope of the signal; a
    thin rug with one tick per onset (one trace, at most ``max_markers``
    ticks, evenly thinned beyond: see :func:`thin_indices`), coloured by
    token when tokens are given; and the log-mel spectrogram, which no
    overlay covers. Only the time axis zooms (every y axis is fixed); a
    range slider under the spectrogram is the minimap.

    Traces carry a ``meta`` name the browser player finds them by:
    ``"highlight"`` (segments of ``highlight_token`` shaded on the waveform,
    drawn under it), ``"wave"``, ``"mel"``, ``"mel_detail"`` (empty: the
    player draws a zoomed window's finer spectrogram there) and ``"onsets"``.

    Parameters
    ----------
    y, sr : signal and its sample rate (Hz)
    onsets : seconds (n_segments,), sorted, optional
        Segment starts.
    ends : seconds (n_segments,), optional
        Segment ends (for the highlight); default: the next onset.
    segment_ids : int (n_segments,), optional
        Ids carried in the rug's ``customdata`` (default: the row index).
    tokens : int (n_segments,), optional
        Token per segment (rug colour and hover).
    highlight_token : int, optional
        Shade this token's segments on the waveform and dim the other ticks.
    mel : (times, freqs, S_db), optional
        A precomputed :func:`log_mel` (pages cache it), pooled here to
        ``max_frames`` columns when finer; computed when absent.
    max_markers : int
        Rug ticks (and highlighted segments) drawn at most.
    rangeslider : bool
        Show the range slider (minimap) under the time axis.
    """
    t, lo, hi = envelope(y, sr, n_columns=n_columns)
    duration = len(y) / float(sr) if sr else 0.0
    mel = mel if mel is not None else log_mel(y, sr, n_mels=n_mels, max_frames=max_frames)
    times, freqs, S_db = pool_spectrogram(mel, max_frames)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.012, row_heights=[0.36, 0.07, 0.57])
    amp = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0), 1e-6))
    on = None if onsets is None else np.asarray(onsets, dtype=np.float64)
    toks = None
    if on is not None and on.size:
        if np.any(np.diff(on) < 0):
            raise ValueError("onsets must be sorted in time")
        ids = np.arange(on.size) if segment_ids is None else np.asarray(segment_ids, dtype=np.int64)
        toks = None if tokens is None or len(tokens) != on.size else np.asarray(tokens, dtype=np.int64)
        if highlight_token is not None and toks is not None:
            mine = np.flatnonzero(toks == int(highlight_token))
            keep = mine[subsample_indices(mine.size, max_markers)]
            ends_all = segment_ends(on, ends, duration)
            xs, ys = _rect_path(on[keep], ends_all[keep], -amp, amp)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", fill="toself", meta="highlight",
                                     fillcolor=_rgba(token_color(int(highlight_token)), 0.5), line=dict(width=0),
                                     name=f"token {int(highlight_token)} ({mine.size} segments)", hoverinfo="skip"),
                          row=1, col=1)
    fig.add_trace(go.Scatter(x=np.concatenate([t, t[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                             mode="lines", line=dict(width=0.6, color="#3b6ea5"), fillcolor="rgba(59,110,165,0.55)",
                             name="waveform (min/max)", meta="wave", hoveron="points", hoverinfo="none",
                             showlegend=False), row=1, col=1)
    fig.add_trace(go.Heatmap(x=times, y=freqs, z=S_db, colorscale=SPECTROGRAM_COLORSCALE, zmin=-80, zmax=0,
                             name="log-mel", meta="mel", colorbar=dict(title="dB", len=0.5, y=0.0, yanchor="bottom",
                                                                     thickness=12),
                             hovertemplate="%{x:.2f} s · %{y:.0f} Hz · %{z:.0f} dB<extra></extra>"),
                  row=3, col=1)
    # The player draws a zoomed window's finer spectrogram here, over the
    # overview, so the range slider (which draws every trace of its axis)
    # keeps showing the whole recording.
    fig.add_trace(go.Heatmap(x=[], y=freqs, z=[], colorscale=SPECTROGRAM_COLORSCALE, zmin=-80, zmax=0,
                             showscale=False, name="log-mel (zoomed)", meta="mel_detail",
                             hovertemplate="%{x:.2f} s · %{y:.0f} Hz · %{z:.0f} dB<extra></extra>"),
                  row=3, col=1)
    if on is not None and on.size:
        keep = thin_indices(on, max_markers=max_markers)
        colours = rug_colours(toks[keep], highlight_token) if toks is not None else RUG_COLOUR
        custom = np.stack([ids[keep], toks[keep] if toks is not None else np.full(keep.size, -1)], axis=1)
        fig.add_trace(go.Scatter(
            x=on[keep], y=np.zeros(keep.size), mode="markers", meta="onsets",
            name=(f"onsets ({keep.size} of {on.size} drawn)" if keep.size < on.size else f"onsets ({on.size})"),
            marker=dict(symbol="line-ns-open", size=16, color=colours, line=dict(width=1.4)),
            customdata=custom,
            hovertemplate=("segment %{customdata[0]}" + ("" if toks is None else " · token %{customdata[1]}")
                           + "<br>%{x:.3f} s<extra></extra>"),
            showlegend=False), row=2, col=1)
    fig.update_yaxes(title_text="amplitude", range=[-1.05 * amp, 1.05 * amp], fixedrange=True, row=1, col=1)
    fig.update_yaxes(range=[-1, 1], fixedrange=True, tickvals=[0], ticktext=["onsets"], showgrid=False,
                     zeroline=False, row=2, col=1)
    # Explicit ticks: plotly's default log ticks abbreviate 200/500 Hz to "2"/"5".
    ticks = [v for v in (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000) if v <= sr / 2.0]
    fig.update_yaxes(title_text="Hz (mel)", type="log", fixedrange=True, row=3, col=1, tickvals=ticks,
                     ticktext=[f"{v // 1000}k" if v >= 1000 else str(v) for v in ticks])
    fig.update_xaxes(range=[0.0, max(duration, 1e-3)], showspikes=False)
    fig.update_xaxes(title_text="time (s)", row=3, col=1)
    if rangeslider:
        fig.update_xaxes(rangeslider=dict(visible=True, thickness=0.07, bgcolor="#f2f5f9", autorange=False,
                                          range=[0.0, max(duration, 1e-3)]), row=3, col=1)
    fig.update_layout(height=height, margin=dict(l=60, r=10, t=10 if highlight_token is None else 30, b=30),
                      hovermode="x", dragmode="zoom", showlegend=highlight_token is not None,
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0.0, xanchor="left"))
    return fig


#: Rug tick colour without tokens, and of the other tokens' ticks when one is highlighted.
RUG_COLOUR = "#3a3a3a"
RUG_DIM_COLOUR = "#c8ccd4"


def rug_colours(tokens: Sequence[int] | np.ndarray | None, highlight_token: int | None = None) -> list[str]:
    """Colour of each rug tick: its token's colour; with ``highlight_token``,
    that token's colour for its ticks and a pale grey for the rest (the
    player's script applies the same rule when it redraws)."""
    if tokens is None:
        return []
    toks = np.asarray(tokens, dtype=np.int64)
    if highlight_token is None:
        return [token_color(int(k)) for k in toks]
    mine = token_color(int(highlight_token))
    return [mine if int(k) == int(highlight_token) else RUG_DIM_COLOUR for k in toks]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def segment_table(segments: Any, *, tokens: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per segment: id, start, end, duration (s), rms_db, f0 (Hz,
    NaN when unpitched), centroid (Hz) and token when given."""
    rms = np.asarray(segments.rms, dtype=np.float64)
    df = pd.DataFrame({
        "id": np.asarray(segments.id, dtype=np.int64),
        "start": np.round(np.asarray(segments.start, dtype=np.float64), 3),
        "end": np.round(np.asarray(segments.end, dtype=np.float64), 3),
        "duration": np.round(np.asarray(segments.end) - np.asarray(segments.start), 3),
        "rms_db": np.round(20.0 * np.log10(np.maximum(rms, 1e-10)), 1),
        "f0": np.round(np.asarray(segments.f0, dtype=np.float64), 1),
        "centroid": np.round(np.asarray(segments.centroid, dtype=np.float64), 0),
    })
    if tokens is not None and len(tokens) == len(df):
        df["token"] = np.asarray(tokens, dtype=np.int64)
    return df


def slice_signal(y: np.ndarray, sr: int, start: float, end: float) -> np.ndarray:
    """Samples of ``y`` between ``start`` and ``end`` seconds (clipped to the signal)."""
    n = len(y)
    a = int(np.clip(round(float(start) * sr), 0, n))
    b = int(np.clip(round(float(end) * sr), a, n))
    return np.asarray(y[a:b], dtype=np.float32)


def concat_segments(y: np.ndarray, sr: int, bounds: Sequence[tuple[float, float]], *, gap_s: float = 0.15,
                    max_total_s: float = 10.0, fade_ms: float = 5.0, return_count: bool = False
                    ) -> np.ndarray | tuple[np.ndarray, int]:
    """Segments joined with short silences (and tiny fades against clicks),
    stopping before ``max_total_s`` seconds (the first segment always
    plays). With ``return_count``, also the number of segments included."""
    gap = np.zeros(int(gap_s * sr), dtype=np.float32)
    fade = max(1, int(fade_ms * sr / 1000.0))
    parts: list[np.ndarray] = []
    total = 0
    used = 0
    for start, end in bounds:
        clip = slice_signal(y, sr, start, end).copy()
        if clip.size == 0:
            continue
        if total + clip.size > max_total_s * sr and parts:
            break
        k = min(fade, clip.size // 2)
        if k:
            ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
            clip[:k] *= ramp
            clip[-k:] *= ramp[::-1]
        parts += [clip, gap]
        total += clip.size + gap.size
        used += 1
    out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return (out, used) if return_count else out


def click_track(y: np.ndarray, sr: int, onsets: Sequence[float], *, click_hz: float = 2000.0,
                click_ms: float = 20.0, gain: float = 0.5) -> np.ndarray:
    """The signal with a short decaying sine click mixed in at every onset,
    peak-normalised to 0.99 (float32, same length as ``y``)."""
    y = np.asarray(y, dtype=np.float32).ravel()
    out = y.copy()
    n_click = max(1, int(click_ms * sr / 1000.0))
    tt = np.arange(n_click) / float(sr)
    peak = float(np.abs(y).max(initial=0.0)) or 1.0
    click = (gain * peak * np.sin(2 * np.pi * click_hz * tt) * np.exp(-tt / (click_ms / 4000.0))).astype(np.float32)
    for t in onsets:
        a = int(round(float(t) * sr))
        if 0 <= a < out.size:
            b = min(out.size, a + n_click)
            out[a:b] += click[: b - a]
    top = float(np.abs(out).max(initial=0.0))
    if top > 0:
        out *= 0.99 / top
    return out


# ---------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------


def row_norms(X: np.ndarray) -> np.ndarray:
    """L2 norm of each row, float64 (n,)."""
    X = np.asarray(X, dtype=np.float64)
    return np.sqrt(np.einsum("ij,ij->i", X, X)) if X.ndim == 2 else np.zeros(0)


def norms_figure(raw: np.ndarray, normalised: np.ndarray | None, *, nbins: int = 50) -> go.Figure:
    """Histograms of row norms before and after normalisation (side by side:
    their scales differ by orders of magnitude)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("before normalisation", "after normalisation"))
    fig.add_trace(go.Histogram(x=row_norms(raw), nbinsx=nbins, marker_color="#3b6ea5", name="raw"), row=1, col=1)
    if normalised is not None:
        fig.add_trace(go.Histogram(x=row_norms(normalised), nbinsx=nbins, marker_color="#2ca02c",
                                   name="normalised"), row=1, col=2)
    fig.update_xaxes(title_text="L2 norm")
    if normalised is not None and len(normalised):
        after = row_norms(normalised)
        if np.ptp(after) < 1e-3:  # all unit norm: show a readable window, not float noise
            mid = float(np.median(after))
            fig.update_xaxes(range=[mid - 0.05, mid + 0.05], row=1, col=2)
    fig.update_yaxes(title_text="segments", col=1)
    fig.update_layout(height=300, showlegend=False, margin=dict(l=50, r=20, t=40, b=40), bargap=0.05)
    return fig


_FEATURE_COLUMNS = ("n_rows", "dim", "norm_min", "norm_mean", "norm_max", "dead_dims", "nonzero_dims",
                    "duplicate_rate", "zero_rows", "nonfinite_rows", "padded_rows")


def feature_health_table(ledger: Sequence[Mapping]) -> pd.DataFrame:
    """Feature statistics per ledger stage that recorded a feature matrix."""
    rows = []
    for entry in ledger:
        feats = entry.get("features")
        if not feats:
            continue
        rows.append({"stage": entry.get("stage"), **{k: feats.get(k) for k in _FEATURE_COLUMNS}})
    return pd.DataFrame(rows, columns=["stage", *_FEATURE_COLUMNS])


def token_order(counts: Sequence[int]) -> np.ndarray:
    """Token ids from the most used to the least used (ties by id), int64 (K,)."""
    c = np.asarray(counts, dtype=np.int64)
    return np.lexsort((np.arange(c.size), -c)).astype(np.int64)


def projection_figure(coords: np.ndarray, tokens: Sequence[int] | None, *, segment_ids: Sequence[int] | None = None,
                      title: str = "", max_points: int = MAX_POINTS, marker_size: int = 7,
                      hover: Sequence[str] | None = None, highlight_token: int | None = None,
                      colour_by: str = "token", times: Sequence[float] | None = None) -> go.Figure:
    """2-D scatter of segments, each point's ``customdata`` its segment id.

    Coloured by token, the scatter has one trace per token, named
    ``"token k (count)"`` and listed in the legend from the most used token
    to the least used (a legend entry hides its token, a double click
    isolates it). Colours repeat beyond 64 tokens (the marker shape changes
    when they do: :func:`~chandra.figures.palette.token_symbol`) and
    neighbouring hues are hard to tell apart in a dense cloud, so identity
    never rests on colour alone: the hover names the segment and its token, and
    ``highlight_token`` draws one token's points on top, larger and outlined,
    with every other point faded.

    Parameters
    ----------
    coords : float (n, 2)
    tokens : int (n,) or None
        Colour by token; None draws one grey trace.
    segment_ids : int (n,), optional
        Defaults to the row index.
    max_points : int
        Evenly subsampled beyond this many points.
    hover : str (n,), optional
        Extra hover text per point (e.g. its time span).
    highlight_token : int, optional
        The token to single out.
    colour_by : {"token", "time"}
        "time" colours by ``times`` (continuous scale, one trace) so the
        path of the recording through the space shows; tokens stay in the
        hover and the highlight.
    times : float (n,), optional
        Segment start times (s), needed for ``colour_by="time"``.
    """
    coords = np.asarray(coords, dtype=np.float64)
    n = coords.shape[0]
    ids = np.arange(n, dtype=np.int64) if segment_ids is None else np.asarray(segment_ids, dtype=np.int64)
    keep = subsample_indices(n, max_points // 2)  # x and y both count as points
    toks = None if tokens is None else np.asarray(tokens, dtype=np.int64)
    if colour_by not in ("token", "time"):
        raise ValueError(f"colour_by must be 'token' or 'time', got {colour_by!r}")
    if colour_by == "time" and times is None:
        raise ValueError("colour_by='time' needs the segment times")
    hl = None if highlight_token is None or toks is None else int(highlight_token)
    counts = np.bincount(toks[toks >= 0], minlength=int(toks.max(initial=-1)) + 1) if toks is not None else None

    def text_of(idx: np.ndarray) -> list[str]:
        out = []
        for i in idx:
            parts = []
            if toks is not None:
                k = int(toks[i])
                parts.append(f"token {k} ({int(counts[k])} segments)" if k >= 0 else "no token")
            if hover is not None:
                parts.append(str(hover[i]))
            out.append("<br>".join(parts))
        return out

    template = "segment %{customdata}<br>%{text}<extra></extra>"
    fig = go.Figure()
    if colour_by == "time":
        tt = np.asarray(times, dtype=np.float64)
        base = keep if hl is None else keep[toks[keep] != hl]
        fig.add_trace(go.Scattergl(
            x=coords[base, 0], y=coords[base, 1], mode="markers", name="segments",
            marker=dict(size=marker_size, color=tt[base], colorscale="Viridis", cmin=float(tt.min(initial=0.0)),
                        cmax=float(tt.max(initial=1.0)), colorbar=dict(title="time (s)", thickness=12),
                        opacity=1.0 if hl is None else 0.25, line=dict(width=0.3, color="#333")),
            customdata=ids[base], text=text_of(base), hovertemplate=template, showlegend=False))
        if hl is not None:
            mine = keep[toks[keep] == hl]
            fig.add_trace(go.Scattergl(
                x=coords[mine, 0], y=coords[mine, 1], mode="markers", name=f"token {hl} ({int(counts[hl])})",
                marker=dict(size=marker_size + 5, color=tt[mine], colorscale="Viridis",
                            cmin=float(tt.min(initial=0.0)), cmax=float(tt.max(initial=1.0)),
                            line=dict(width=1.5, color="#111")),
                customdata=ids[mine], text=text_of(mine), hovertemplate=template))
    elif toks is None:
        fig.add_trace(go.Scattergl(
            x=coords[keep, 0], y=coords[keep, 1], mode="markers", name="segments",
            marker=dict(size=marker_size, color=MISSING_COLOR, line=dict(width=0.3, color="#333")),
            customdata=ids[keep], text=text_of(keep), hovertemplate=template))
    else:
        present = [int(k) for k in token_order(counts) if counts[k] > 0 and np.any(toks[keep] == k)]
        if np.any(toks[keep] < 0):
            present.append(-1)
        # Drawing order puts the highlighted token last (on top); the legend keeps frequency order.
        drawing = [k for k in present if k != hl] + ([hl] if hl in present else [])
        rank = {k: r for r, k in enumerate(present)}
        for k in drawing:
            idx = keep[toks[keep] == k]
            mine = hl is not None and k == hl
            fig.add_trace(go.Scattergl(
                x=coords[idx, 0], y=coords[idx, 1], mode="markers",
                name=f"token {k} ({int(counts[k])})" if k >= 0 else "no token", legendrank=1000 + rank[k],
                marker=dict(size=marker_size + (5 if mine else 0), color=token_color(k), symbol=token_symbol(k),
                            opacity=1.0 if hl is None or mine else 0.15,
                            line=dict(width=1.5 if mine else 0.3, color="#111" if mine else "#333")),
                customdata=ids[idx], text=text_of(idx), hovertemplate=template))
    # Dragging zooms; in Streamlit a click then selects a point (with the
    # lasso or box tool active, a click selects nothing), and the lasso and
    # box tools are one click away in the mode bar.
    fig.update_layout(title=title or None, height=560, dragmode="zoom", margin=dict(l=40, r=20, t=40, b=40),
                      legend=dict(itemsizing="constant", font=dict(size=10), title=dict(text="most used first")
                                  if toks is not None and colour_by == "token" else None))
    if n > keep.size:
        fig.add_annotation(text=f"showing {keep.size} of {n} segments", xref="paper", yref="paper", x=0, y=1.06,
                           showarrow=False)
    return fig


def selection_ids(selection: Any) -> list[int]:
    """Segment ids of the points in a plotly selection event (as returned by
    ``st.plotly_chart(..., on_select="rerun")``), read from ``customdata``
    because ``point_index`` counts within one trace. Sorted, unique."""
    points: Any = None
    for getter in (lambda s: s.selection.points, lambda s: s["selection"]["points"], lambda s: s["points"]):
        try:
            points = getter(selection)
            break
        except (AttributeError, KeyError, TypeError):
            continue
    ids = set()
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            try:
                ids.add(int(cd))
            except (TypeError, ValueError):
                continue
    return sorted(ids)


# ---------------------------------------------------------------------------
# vocabulary
# ---------------------------------------------------------------------------


def token_histogram_figure(counts: Sequence[int], *, title: str = "", order: str = "frequency",
                           highlight_token: int | None = None) -> go.Figure:
    """Bar per token coloured by the palette, most used first (``order=
    "frequency"``) or by id (``order="id"``); empty tokens get a red cross
    on the axis and are counted in the legend entry; ``highlight_token`` is
    outlined and the other bars fade. The hover gives each token's count
    and share; each bar's ``customdata`` starts with its token id (for
    :func:`selection_ids`)."""
    counts = np.asarray(counts, dtype=np.int64)
    k = counts.size
    if order not in ("frequency", "id"):
        raise ValueError(f"order must be 'frequency' or 'id', got {order!r}")
    ids = token_order(counts) if order == "frequency" else np.arange(k)
    labels = [str(int(i)) for i in ids]
    total = max(1, int(counts.sum()))
    hl = None if highlight_token is None or not 0 <= int(highlight_token) < k else int(highlight_token)
    fig = go.Figure(go.Bar(
        x=labels, y=counts[ids], marker_color=[token_color(int(i)) for i in ids], name="segments",
        marker_opacity=None if hl is None else [1.0 if int(i) == hl else 0.3 for i in ids],
        marker_line=dict(width=[2.0 if int(i) == hl else 0.0 for i in ids], color="#111"),
        customdata=np.stack([ids, counts[ids] / total], axis=1),
        hovertemplate="token %{x}: %{y} segments (%{customdata[1]:.1%})<extra></extra>"))
    empty = [str(int(i)) for i in ids if counts[i] == 0]
    if empty:
        fig.add_trace(go.Scatter(x=empty, y=np.zeros(len(empty)), mode="markers",
                                 marker=dict(symbol="x", size=11, color=EMPTY_COLOR, line=dict(width=2)),
                                 name=f"empty tokens ({len(empty)})",
                                 hovertemplate="token %{x} is empty<extra></extra>"))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels,
                     title_text="token (most used first)" if order == "frequency" else "token id")
    fig.update_layout(title=title or None, height=320, yaxis_title="segments",
                      margin=dict(l=50, r=20, t=40 if title else 20, b=40), bargap=0.1,
                      legend=dict(orientation="h", y=1.12), showlegend=bool(empty))
    return fig


def token_grids(ledger: Sequence[Mapping], *, fit_counts: Sequence[int] | None = None,
                stages: Sequence[tuple[str, str]] = (("tokens", "assigned"), ("saved", "saved"),
                                                     ("reloaded", "reloaded"))) -> dict[str, list[int] | None]:
    """Token counts per view: the K-means fit set, then the named ledger stages.

    Returns ``{label: counts or None}`` (None where the stage is not recorded).
    """
    by_stage = {e.get("stage"): e for e in ledger}
    grids: dict[str, list[int] | None] = {"fit set": list(fit_counts) if fit_counts is not None else None}
    for stage, label in stages:
        tok = (by_stage.get(stage) or {}).get("tokens")
        if stage in by_stage and not tok:
            grids[label] = []  # stage recorded, but no tokens at all
        else:
            grids[label] = list(tok["counts"]) if tok and tok.get("counts") is not None else None
    return grids


def token_grid_figure(grids: Mapping[str, Sequence[int] | None], *, n_tokens: int) -> go.Figure:
    """One K-cell grid (heatmap, ``ceil(sqrt K)`` columns) per view of the
    token counts; empty cells are marked with a red cross, a view without
    any tokens says so."""
    labels = list(grids)
    k = max(1, int(n_tokens))
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    fig = make_subplots(rows=1, cols=max(1, len(labels)), subplot_titles=labels, horizontal_spacing=0.03)
    for j, label in enumerate(labels, start=1):
        counts = grids[label]
        if counts is None or len(counts) == 0:
            msg = "not recorded" if counts is None else "no tokens"
            fig.add_trace(go.Heatmap(z=np.full((rows, cols), np.nan), showscale=False, hoverinfo="skip"),
                          row=1, col=j)
            fig.add_annotation(text=msg, x=(cols - 1) / 2, y=(rows - 1) / 2, showarrow=False,
                               font=dict(color=EMPTY_COLOR, size=14), row=1, col=j)
        else:
            c = np.zeros(rows * cols)
            c[:] = np.nan
            vals = np.asarray(counts, dtype=np.float64)[:k]
            c[: vals.size] = vals
            z = c.reshape(rows, cols)
            ids = np.arange(rows * cols).reshape(rows, cols)
            text = np.where(np.isnan(z), "", np.where(z == 0, "×", z.astype("U8")))
            text = np.vectorize(lambda s: s[:-2] if s.endswith(".0") else s)(text)
            fig.add_trace(go.Heatmap(z=np.where(z == 0, np.nan, z), text=text, texttemplate="%{text}",
                                     customdata=ids, colorscale="Blues", showscale=False, xgap=1, ygap=1,
                                     hovertemplate="token %{customdata}: %{z} segments<extra></extra>"),
                          row=1, col=j)
            empty = np.argwhere(z == 0)
            if empty.size:
                fig.add_trace(go.Scatter(x=empty[:, 1], y=empty[:, 0], mode="markers",
                                         marker=dict(symbol="square", size=14, color="rgba(214,39,40,0.25)",
                                                     line=dict(color=EMPTY_COLOR, width=1)),
                                         customdata=ids[empty[:, 0], empty[:, 1]], showlegend=False,
                                         hovertemplate="token %{customdata}: empty<extra></extra>"),
                              row=1, col=j)
        fig.update_xaxes(showticklabels=False, row=1, col=j)
        fig.update_yaxes(showticklabels=False, autorange="reversed", scaleanchor=f"x{j if j > 1 else ''}",
                         row=1, col=j)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def entropy_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Entropy of the token distribution per view, against its ceiling log2 K.

    ``rows``: dicts with ``label``, ``entropy_bits``, ``max_entropy_bits``.
    The ceiling is a dashed line named in the legend (not a label on the
    plot, where it would sit on the bars), and each bar's value is written
    inside it.
    """
    labels = [r["label"] for r in rows]
    ent = [float(r.get("entropy_bits") or 0.0) for r in rows]
    ceiling = max((float(r.get("max_entropy_bits") or 0.0) for r in rows), default=0.0)
    fig = go.Figure(go.Bar(x=labels, y=ent, marker_color="#3b6ea5", text=[f"{e:.2f}" for e in ent],
                           textposition="auto", insidetextanchor="end", textfont=dict(size=12),
                           cliponaxis=False, name="entropy (bits)",
                           hovertemplate="%{x}: %{y:.3f} bits<extra></extra>"))
    if ceiling > 0:
        fig.add_hline(y=ceiling, line_dash="dash", line_color=EMPTY_COLOR)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(dash="dash", color=EMPTY_COLOR),
                                 name=f"ceiling log2 K = {ceiling:.2f} bits"))
    fig.update_layout(height=300, yaxis_title="bits", yaxis_range=[0, max(ceiling, max(ent, default=0)) * 1.08 + 0.1],
                      margin=dict(l=50, r=20, t=30, b=40), showlegend=ceiling > 0,
                      legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    return fig


def token_examples(tokens: Sequence[int], token: int, *, n: int = 4) -> np.ndarray:
    """Up to ``n`` segment indices with ``token``, spread over the recording."""
    idx = np.flatnonzero(np.asarray(tokens) == int(token))
    return idx[subsample_indices(idx.size, n)] if idx.size else idx


# ---------------------------------------------------------------------------
# events and fields
# ---------------------------------------------------------------------------


def field_presence(events: Sequence[Mapping], *, fields: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Which event carries which field (present: key there, value not None/NaN).

    Returns
    -------
    fields : list of str (union in first-seen order, or as given)
    present : bool array (n_events, n_fields)
    """
    from chandra.ledger import is_present

    if fields is None:
        seen: dict[str, None] = {}
        for ev in events:
            for key in ev:
                seen.setdefault(str(key), None)
        fields = list(seen)
    fields = list(fields)
    present = np.zeros((len(events), len(fields)), dtype=bool)
    for i, ev in enumerate(events):
        for j, name in enumerate(fields):
            present[i, j] = is_present(ev.get(name))
    return fields, present


def field_presence_figure(events: Sequence[Mapping], *, fields: Sequence[str] | None = None,
                          duration: float | None = None, max_cells: int = 40_000) -> go.Figure:
    """Per-frame field presence (heatmap, fields x frames; frames binned to
    the share present when there are many) above the time axis ``t`` per
    frame, with the audio duration marked."""
    names, present = field_presence(events, fields=fields)
    n = present.shape[0]
    n_fields = max(1, len(names))
    n_bins = max(1, min(n, max_cells // n_fields))
    if n > n_bins:
        edges = np.linspace(0, n, n_bins + 1).astype(np.int64)
        share = np.add.reduceat(present.astype(np.float64), edges[:-1], axis=0) / np.diff(edges)[:, None]
        x = (edges[:-1] + edges[1:] - 1) / 2.0
    else:
        share = present.astype(np.float64)
        x = np.arange(n)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06,
                        subplot_titles=("field present per frame", "time axis t per frame"))
    fig.add_trace(go.Heatmap(x=x, y=names, z=share.T, zmin=0, zmax=1,
                             colorscale=[[0, EMPTY_COLOR], [0.5, "#ffd166"], [1, "#2ca02c"]],
                             colorbar=dict(title="present", len=0.6, y=0.7),
                             hovertemplate="frame %{x}<br>%{y}: %{z:.0%}<extra></extra>"), row=1, col=1)
    t = np.array([float(ev["t"]) if isinstance(ev.get("t"), (int, float)) and ev.get("t") is not None else np.nan
                  for ev in events], dtype=np.float64)
    keep = subsample_indices(n, 5000)
    fig.add_trace(go.Scatter(x=keep, y=t[keep], mode="lines", name="t (s)", line=dict(color="#3b6ea5")),
                  row=2, col=1)
    if duration is not None:
        fig.add_hline(y=float(duration), line_dash="dash", line_color="#888", row=2, col=1,
                      annotation_text=f"duration {duration:.1f} s", annotation_position="top left")
        fig.add_hline(y=0.0, line_dash="dot", line_color="#888", row=2, col=1)
    fig.update_xaxes(title_text="frame", row=2, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1)  # first field on top
    fig.update_yaxes(title_text="t (s)", row=2, col=1)
    fig.update_layout(height=max(360, 26 * len(names) + 220), showlegend=False, margin=dict(l=90, r=20, t=40, b=40))
    return fig


def field_matrix_table(ledger: Sequence[Mapping]) -> pd.DataFrame:
    """Stage x field table of ``"count (pct%)"`` strings (``"—"`` where the
    stage does not list the field), stages as rows."""
    from chandra.ledger import field_matrix

    stages, fields, present, fraction = field_matrix(ledger)
    listed = [set((e.get("fields") or {})) for e in ledger]
    cells = []
    for i, _stage in enumerate(stages):
        row = []
        for j, name in enumerate(fields):
            if name not in listed[i]:
                row.append("—")
            else:
                pct = fraction[i, j]
                row.append(f"{present[i, j]} ({pct * 100:.0f}%)" if np.isfinite(pct) else f"{present[i, j]}")
        cells.append(row)
    df = pd.DataFrame(cells, index=stages, columns=fields)
    df.insert(0, "records", [int(e.get("n_records", 0) or 0) for e in ledger])
    df.index.name = "stage"
    return df


def time_axis_table(ledger: Sequence[Mapping]) -> pd.DataFrame:
    """Per ledger stage: time field, t range, audio duration, monotonic,
    share of times inside [0, duration]."""
    rows = []
    for entry in ledger:
        tm = entry.get("time")
        if not tm:
            rows.append({"stage": entry.get("stage"), "field": None})
            continue
        rows.append({"stage": entry.get("stage"), "field": tm.get("field"), "t_min": tm.get("t_min"),
                     "t_max": tm.get("t_max"), "duration": tm.get("duration"), "monotonic": tm.get("monotonic"),
                     "n_decreasing": tm.get("n_decreasing"), "in_range": tm.get("fraction_in_range")})
    return pd.DataFrame(rows, columns=["stage", "field", "t_min", "t_max", "duration", "monotonic",
                                       "n_decreasing", "in_range"])


def lost_fields(ledger: Sequence[Mapping], *, partial_drop: float = 0.01) -> list[dict]:
    """Fields present at one stage boundary and missing (or thinned) at the next.

    Only boundaries from the token stage onwards are compared: before it the
    stages legitimately carry different fields (segments have ``start``,
    feature stages do not). A field with records at stage A and none at the
    next stage B (absent or zero count) is an ``error``; a drop of its
    present share by more than ``partial_drop`` is a ``warning``.

    Returns
    -------
    list of dict
        ``severity``, ``code`` ("FIELD_LOST" | "FIELD_THINNED"), ``field``,
        ``stage`` (where it was lost), ``from_stage``, ``before``, ``after``
        (counts), ``message``.
    """
    out = []
    chain = [e for e in ledger if e.get("stage") not in _PRE_EVENT_STAGES]
    for prev, cur in zip(chain, chain[1:]):
        pf, cf = (prev.get("fields") or {}), (cur.get("fields") or {})
        for name, info in pf.items():
            before = int(info.get("present", 0))
            if before == 0:
                continue
            after_info = cf.get(name)
            after = int(after_info.get("present", 0)) if after_info else 0
            frac_before = float(info.get("fraction", 0.0))
            frac_after = float(after_info.get("fraction", 0.0)) if after_info else 0.0
            if after == 0:
                out.append({"severity": "error", "code": "FIELD_LOST", "field": name, "stage": cur.get("stage"),
                            "from_stage": prev.get("stage"), "before": before, "after": 0,
                            "message": f"'{name}' is on {before} records at '{prev.get('stage')}' and on none "
                                       f"at '{cur.get('stage')}'"})
            elif frac_before - frac_after > partial_drop:
                out.append({"severity": "warning", "code": "FIELD_THINNED", "field": name, "stage": cur.get("stage"),
                            "from_stage": prev.get("stage"), "before": before, "after": after,
                            "message": f"'{name}' drops from {frac_before:.0%} of records at '{prev.get('stage')}' "
                                       f"to {frac_after:.0%} at '{cur.get('stage')}'"})
    return out


# ---------------------------------------------------------------------------
# oracle
# ---------------------------------------------------------------------------


def suffix_arc_figure(sfx: np.ndarray, *, times: np.ndarray | None = None, max_arcs: int = 1500,
                      points_per_arc: int = 21, lrs: np.ndarray | None = None) -> go.Figure:
    """Suffix links as arcs from state ``i`` back to ``sfx[i]`` over time.

    Links to the root (``sfx[i] == 0``) are not drawn (their share is in the
    title); beyond ``max_arcs`` links an even subsample is drawn. Arcs are
    coloured by LRS when given (one trace per LRS band).

    Parameters
    ----------
    sfx : int (n+1,), sfx[0] = -1
    times : float (n,), optional
        Time of frame i-1 = state i; the x axis is the state index without it.
    """
    sfx = np.asarray(sfx, dtype=np.int64)
    n = sfx.size - 1
    states = np.arange(1, n + 1)
    targets = sfx[1:]
    linked = states[targets > 0]
    to_root = int(np.count_nonzero(targets == 0))
    keep = linked[subsample_indices(linked.size, max_arcs)]

    def pos(state: np.ndarray) -> np.ndarray:
        if times is None:
            return state.astype(np.float64)
        tt = np.asarray(times, dtype=np.float64)
        return tt[np.clip(state - 1, 0, tt.size - 1)]

    x0, x1 = pos(sfx[keep]), pos(keep)
    theta = np.linspace(0.0, np.pi, points_per_arc)
    centre = (x0 + x1) / 2.0
    radius = (x1 - x0) / 2.0
    band_edges = [0, 1, 3, 8, 10**9]
    band_names = ["lrs 0", "lrs 1-2", "lrs 3-7", "lrs >= 8"]
    band_colors = ["#9e9e9e", "#6baed6", "#2171b5", "#d62728"]
    lrs_keep = np.asarray(lrs, dtype=np.int64)[keep] if lrs is not None else np.zeros(keep.size, np.int64)
    fig = go.Figure()
    for b in range(len(band_names)):
        mask = (lrs_keep >= band_edges[b]) & (lrs_keep < band_edges[b + 1])
        if lrs is None and b > 0:
            break
        if not mask.any():
            continue
        xs = (centre[mask, None] - radius[mask, None] * np.cos(theta)[None, :])
        ys = radius[mask, None] * np.sin(theta)[None, :]
        xs = np.concatenate([xs, np.full((xs.shape[0], 1), np.nan)], axis=1).ravel()
        ys = np.concatenate([ys, np.full((ys.shape[0], 1), np.nan)], axis=1).ravel()
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(width=0.8, color=band_colors[b]),
                                 name=band_names[b] if lrs is not None else "suffix link", hoverinfo="skip",
                                 connectgaps=False))
    shown = f"{keep.size} of {linked.size} links drawn" if keep.size < linked.size else f"{linked.size} links"
    fig.update_layout(title=f"suffix links ({shown}; {to_root} of {n} go to the root, not drawn)",
                      height=360, xaxis_title="time (s)" if times is not None else "state",
                      yaxis=dict(visible=False), margin=dict(l=30, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def lrs_figure(lrs: np.ndarray, *, times: np.ndarray | None = None, max_points: int = 20_000) -> go.Figure:
    """LRS per state over time (max-pooled when long, so peaks survive) and
    its histogram."""
    lrs = np.asarray(lrs, dtype=np.int64)[1:]
    n = lrs.size
    x = np.asarray(times, dtype=np.float64)[:n] if times is not None else np.arange(1, n + 1, dtype=np.float64)
    if n > max_points:
        edges = np.linspace(0, n, max_points + 1).astype(np.int64)
        y = np.maximum.reduceat(lrs, edges[:-1])
        x = x[edges[:-1]]
    else:
        y = lrs
    fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3], subplot_titles=("LRS over time", "LRS histogram"))
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color="#3b6ea5", width=1), name="LRS"), row=1, col=1)
    values, counts = np.unique(lrs, return_counts=True) if n else (np.zeros(0), np.zeros(0))
    fig.add_trace(go.Bar(x=values, y=counts, marker_color="#3b6ea5", name="states"), row=1, col=2)
    fig.update_xaxes(title_text="time (s)" if times is not None else "state", row=1, col=1)
    fig.update_xaxes(title_text="LRS (frames)", row=1, col=2)
    fig.update_yaxes(title_text="LRS (frames)", row=1, col=1)
    fig.update_yaxes(title_text="states", row=1, col=2)
    fig.update_layout(height=300, showlegend=False, margin=dict(l=50, r=20, t=40, b=40))
    return fig


# ---------------------------------------------------------------------------
# home
# ---------------------------------------------------------------------------


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "?"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def stage_headline(stage: str, summaries: Mapping, ledger: Sequence[Mapping] = ()) -> str:
    """One short line with a stage's key number, for the pipeline strip."""
    s = summaries or {}
    by_stage = {e.get("stage"): e for e in ledger}
    if stage == "load":
        info = s.get("load", {})
        return f"{_fmt(info.get('duration'), '.1f')} s @ {_fmt(info.get('sample_rate'))} Hz" if info else ""
    if stage == "segment":
        info = s.get("segment", {})
        n = info.get("n_segments", info.get("n", (by_stage.get("segments") or {}).get("n_records")))
        return f"{_fmt(n)} segments" if n is not None else ""
    if stage == "encode":
        info = s.get("encode", {})
        return f"{_fmt(info.get('dim'))}-D {info.get('encoder', '')}".strip() if info else ""
    if stage == "vocabulary":
        info = s.get("vocabulary", {})
        if not info:
            return ""
        return (f"{_fmt(info.get('assigned_unique'))}/{_fmt(info.get('n_tokens'))} tokens, "
                f"H {_fmt(info.get('assigned_entropy_bits'), '.2f')}/{_fmt(info.get('max_entropy_bits'), '.2f')} bits")
    if stage == "harmony":
        info = s.get("harmony", {})
        return f"consonance {_fmt(info.get('consonance_mean'), '.2f')} ± {_fmt(info.get('consonance_std'), '.2f')}" \
            if info else ""
    if stage == "events":
        info = s.get("events", {})
        return f"{_fmt(info.get('n_events'))} events" if info else ""
    if stage == "oracle":
        info = (s.get("oracle") or {})
        return f"{_fmt(info.get('states'))} states, {_fmt(info.get('transitions'))} transitions" if info else ""
    if stage == "save":
        saved = by_stage.get("reloaded") or by_stage.get("saved")
        if not saved:
            return ""
        tok = (saved.get("fields") or {}).get("gesture_token", {})
        return f"{saved.get('n_records')} frames, {_fmt(tok.get('present', 0))} with gesture_token"
    return ""


def ir_over_k_figure(curve: dict | None, *, chosen: int | None = None) -> go.Figure:
    """Information rate of the token sequence against the vocabulary size K.

    A log x axis spanning exactly the tested K values (each one a labelled
    tick), the IR curve, this run's K and the recommended K marked on the
    curve and named in the legend (never as text on the plot, so no label
    overprints another or is cut at the edge). Sizes whose tokens would
    mostly be used once or twice are drawn hollow; hover tells the numbers.

    Parameters
    ----------
    curve : dict from :func:`chandra.pipeline.ir_over_k`
        ``k``, ``ir``; optionally ``rare_share`` and ``recommended_k`` (older
        curves without it fall back to ``best_k``, the raw IR maximum).
    chosen : int, optional
        The K the run uses.
    """
    fig = go.Figure()
    if not curve or not curve.get("k"):
        fig.add_annotation(text="No K sweep yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(height=220)
        return fig
    ks = np.asarray(curve["k"], dtype=float)
    ir = np.asarray(curve["ir"], dtype=float)
    rare = np.asarray(curve.get("rare_share") or [np.nan] * len(ks), dtype=float)
    sparse = np.isfinite(rare) & (rare > 0.25)
    hover = [f"K = {int(k)}<br>IR {v:.3f} bits per segment"
             + (f"<br>{r:.0%} of tokens used once or twice" if np.isfinite(r) else "")
             for k, v, r in zip(ks, ir, rare)]
    fig.add_trace(go.Scatter(
        x=ks, y=ir, mode="lines+markers", name="information rate", line={"color": "#3b6ea5"},
        marker={"size": 8, "color": ["white" if s else "#3b6ea5" for s in sparse],
                "line": {"color": "#3b6ea5", "width": 2}},
        hovertext=hover, hoverinfo="text"))
    recommended = curve.get("recommended_k", curve.get("best_k"))
    y_top = float(np.nanmax(ir)) if np.isfinite(ir).any() else 1.0
    y_top = y_top * 1.12 if y_top > 0 else 1.0

    def mark(k: int, name: str, symbol: str, color: str, size: int) -> None:
        at = np.flatnonzero(ks == float(k))
        if at.size:
            fig.add_trace(go.Scatter(x=[float(k)], y=[float(ir[at[0]])], mode="markers", name=name,
                                     marker={"symbol": symbol, "size": size, "color": color,
                                             "line": {"color": "white", "width": 1}},
                                     hovertext=[f"{name}<br>IR {ir[at[0]]:.3f} bits per segment"],
                                     hoverinfo="text"))
        # A dashed vertical line as a trace: shapes on log axes take log10
        # coordinates, traces take the values themselves.
        fig.add_trace(go.Scatter(x=[float(k), float(k)], y=[0.0, y_top], mode="lines", showlegend=False,
                                 line={"color": color, "dash": "dash", "width": 1.5}, hoverinfo="skip"))

    same = recommended is not None and chosen is not None and int(recommended) == int(chosen)
    if recommended is not None:
        mark(int(recommended), f"recommended{' = this run' if same else ''}: K = {int(recommended)}",
             "star", "#d62728", 16)
    if chosen is not None and not same:
        mark(int(chosen), f"this run: K = {int(chosen)}", "diamond", "#555555", 12)
    lo, hi = float(ks.min()), float(ks.max())
    if chosen is not None:
        lo, hi = min(lo, float(chosen)), max(hi, float(chosen))
    pad = 0.06 * max(np.log10(hi) - np.log10(lo), 0.3)
    ticks = sorted(set(ks.tolist()) | ({float(chosen)} if chosen is not None else set()))
    fig.update_xaxes(type="log", title_text="vocabulary size K (log scale)", tickvals=ticks,
                     ticktext=[str(int(k)) for k in ticks], range=[np.log10(lo) - pad, np.log10(hi) + pad],
                     showgrid=True, gridcolor="#eeeeee")
    fig.update_yaxes(title_text="IR (bits per segment)", range=[0.0, y_top], rangemode="tozero")
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 70, "b": 50}, plot_bgcolor="white",
                      title={"text": "Information rate over K", "x": 0.0, "xanchor": "left", "y": 0.98,
                             "yanchor": "top"},
                      legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"},
                      hovermode="closest")
    return fig

