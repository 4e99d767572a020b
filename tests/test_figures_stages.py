"""Figure builders of the stage pages: traces, point budgets, customdata,
palette, and the small sonification helpers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from chandra.figures import stages as figs
from chandra.figures.palette import EMPTY_COLOR, N_COLORS, PALETTE, SPECTROGRAM_COLORSCALE, token_color, token_colors
from chandra.projection import compute_pca, nearest_neighbours, umap_params
from chandra.segment import Segments

SR = 22050


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def _segments(n: int, *, step: float = 0.25) -> Segments:
    start = np.arange(n) * step
    f0 = np.where(np.arange(n) % 3 == 0, np.nan, 220.0)
    return Segments(id=np.arange(n), start=start, end=start + step * 0.9, rms=np.full(n, 0.1), f0=f0,
                    centroid=np.full(n, 1500.0))


def _ledger_entry(stage: str, n: int, fields: dict[str, int], *, counts=None) -> dict:
    return {"stage": stage, "n_records": n,
            "fields": {k: {"present": v, "fraction": v / n, "types": ["int"]} for k, v in fields.items()},
            "tokens": {"counts": counts, "entropy_bits": 1.0, "max_entropy_bits": 2.0} if counts else None,
            "features": None, "time": {"field": "t", "t_min": 0.0, "t_max": 5.0, "duration": 6.0,
                                       "monotonic": True, "n_decreasing": 0, "fraction_in_range": 1.0}}


# --------------------------------------------------------------------------- palette


def test_palette_has_64_distinct_valid_colours():
    assert N_COLORS == 64 and len(PALETTE) == 64
    assert len(set(PALETTE)) == 64
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in PALETTE)
    rgb = np.array([_rgb(c) for c in PALETTE])
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 15  # no two tokens look the same
    assert token_colors(64) == list(PALETTE)
    assert token_color(3) == PALETTE[3] and token_color(64 + 3) == PALETTE[3]
    assert token_color(None) != token_color(0) and token_color(-1) == token_color(None)


def test_palette_is_deterministic_and_avoids_streamlit_placeholders():
    import importlib

    import chandra.figures.palette as palette

    again = importlib.reload(palette)
    assert again.PALETTE == PALETTE
    # Streamlit's frontend repaints #000001..#000030 (theme placeholders).
    colours = list(PALETTE) + [c for _, c in SPECTROGRAM_COLORSCALE] + [EMPTY_COLOR]
    assert not [c for c in colours if re.fullmatch(r"#0000[0-3][0-9]", c.lower())]


# --------------------------------------------------------------------------- audio and segments


def test_envelope_is_min_max_per_column():
    y = np.sin(np.linspace(0, 40 * np.pi, 10_000)).astype(np.float32)
    t, lo, hi = figs.envelope(y, 1000, n_columns=100)
    assert t.shape == lo.shape == hi.shape == (100,)
    assert np.all(lo <= hi) and hi.max() == pytest.approx(y.max()) and lo.min() == pytest.approx(y.min())
    assert t[0] == pytest.approx(0.05) and t[-1] == pytest.approx(9.95)
    t, lo, hi = figs.envelope(y[:10], 1000, n_columns=100)
    assert t.size == 10  # never more columns than samples


def test_waveform_spectrogram_of_a_long_signal_stays_under_the_point_budget():
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(SR * 600)).astype(np.float32)  # ten minutes
    onsets = np.arange(0, 600, 0.2)  # 3000 onsets
    mel = figs.log_mel(y, SR, n_mels=48, max_frames=800)
    times, freqs, S = mel
    assert S.shape == (48, times.size) and times.size <= 800 and freqs.size == 48
    assert times[-1] <= 600.5
    fig = figs.waveform_spectrogram_figure(y, SR, onsets=onsets, mel=mel)
    assert figs.count_points(fig) <= figs.MAX_POINTS
    by_meta = {t.meta: t for t in fig.data}
    assert by_meta["wave"].name == "waveform (min/max)" and by_meta["mel"].type == "heatmap"
    rug = by_meta["onsets"]
    assert len(rug.x) == figs.MAX_MARKERS and "2000 of 3000 drawn" in rug.name
    # three rows on one time axis: waveform, rug, spectrogram
    assert by_meta["wave"].xaxis == "x" and rug.xaxis == "x2" and by_meta["mel"].xaxis == "x3"
    assert fig.layout.xaxis.matches == "x3" and fig.layout.xaxis2.matches == "x3"
    assert fig.layout.xaxis3.rangeslider.visible
    assert all(fig.layout[f"yaxis{k}"].fixedrange for k in ("", "2", "3"))  # only time zooms


def test_waveform_figure_computes_its_own_spectrogram():
    y = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32)
    fig = figs.waveform_spectrogram_figure(y, SR, onsets=[0.0, 0.5])
    assert next(t for t in fig.data if t.meta == "mel").type == "heatmap"
    assert figs.count_points(fig) < figs.MAX_POINTS


def test_segment_table_columns_and_tokens():
    segs = _segments(6)
    df = figs.segment_table(segs, tokens=[0, 1, 2, 3, 4, 5])
    assert list(df.columns) == ["id", "start", "end", "duration", "rms_db", "f0", "centroid", "token"]
    assert df["rms_db"].iloc[0] == pytest.approx(-20.0)
    assert np.isnan(df["f0"].iloc[0]) and df["f0"].iloc[1] == 220.0
    assert "token" not in figs.segment_table(segs).columns


def test_slice_concat_and_click_track():
    y = np.arange(SR, dtype=np.float32) / SR
    clip = figs.slice_signal(y, SR, 0.25, 0.5)
    assert clip.size == round(0.5 * SR) - round(0.25 * SR) and clip[0] == pytest.approx(0.25, abs=1e-4)
    assert figs.slice_signal(y, SR, 2.0, 3.0).size == 0
    joined = figs.concat_segments(y, SR, [(0.0, 0.1), (0.5, 0.6)], gap_s=0.1)
    assert joined.size == pytest.approx(4 * int(0.1 * SR), abs=4)
    mixed = figs.click_track(0.1 * np.ones(SR, np.float32), SR, [0.0, 0.5])
    assert mixed.shape == (SR,) and np.abs(mixed).max() == pytest.approx(0.99, abs=1e-3)
    assert np.abs(mixed[SR // 2: SR // 2 + 50]).max() > np.abs(mixed[SR // 4])


# --------------------------------------------------------------------------- features


def test_projection_figure_carries_segment_ids_in_customdata():
    rng = np.random.default_rng(1)
    coords = rng.standard_normal((300, 2))
    tokens = rng.integers(0, 16, 300)
    ids = np.arange(1000, 1300)
    fig = figs.projection_figure(coords, tokens, segment_ids=ids)
    assert len(fig.data) == len(np.unique(tokens))
    seen = []
    counts = np.bincount(tokens)
    for trace in fig.data:
        k = int(trace.name.split()[1])
        assert trace.name == f"token {k} ({counts[k]})"
        assert trace.marker.color == token_color(k)
        cd = np.asarray(trace.customdata)
        assert np.all(tokens[cd - 1000] == k)  # each point's id leads back to its own token
        assert all(f"token {k} ({counts[k]} segments)" in t for t in trace.text)  # identity in the hover
        seen.extend(cd.tolist())
    assert sorted(seen) == ids.tolist()
    # legend from the most used token to the least used
    by_rank = sorted(fig.data, key=lambda t: t.legendrank)
    assert [int(t.name.split()[1]) for t in by_rank] == figs.token_order(counts).tolist()


def test_projection_highlight_and_colour_by_time():
    rng = np.random.default_rng(7)
    coords = rng.standard_normal((200, 2))
    tokens = rng.integers(0, 8, 200)
    fig = figs.projection_figure(coords, tokens, highlight_token=3)
    top = fig.data[-1]  # drawn last, on top
    assert top.name.startswith("token 3 ") and top.marker.opacity == 1.0 and top.marker.line.width > 1
    assert all(t.marker.opacity < 0.5 for t in fig.data[:-1])
    times = np.linspace(0.0, 60.0, 200)
    by_time = figs.projection_figure(coords, tokens, colour_by="time", times=times, highlight_token=3)
    base, mine = by_time.data
    assert np.allclose(np.asarray(base.marker.color), times[np.asarray(base.customdata)])
    assert set(tokens[np.asarray(mine.customdata)]) == {3}
    assert sorted(np.concatenate([base.customdata, mine.customdata]).tolist()) == list(range(200))
    with pytest.raises(ValueError):
        figs.projection_figure(coords, tokens, colour_by="time")
    # K > 64: a token sharing a colour with another differs in shape
    wide = figs.projection_figure(coords[:4], np.array([3, 67, 3, 67]))
    shapes = {t.name.split()[1]: (t.marker.color, t.marker.symbol) for t in wide.data}
    assert shapes["3"][0] == shapes["67"][0] and shapes["3"][1] != shapes["67"][1]


def test_projection_figure_subsamples_to_the_budget():
    coords = np.random.default_rng(2).standard_normal((200_000, 2))
    fig = figs.projection_figure(coords, np.zeros(200_000, int))
    assert figs.count_points(fig) <= figs.MAX_POINTS
    grey = figs.projection_figure(coords[:10], None)
    assert len(grey.data) == 1 and list(grey.data[0].customdata) == list(range(10))


def test_selection_ids_read_customdata_not_point_index():
    event = {"selection": {"points": [
        {"curve_number": 0, "point_index": 0, "customdata": 41},
        {"curve_number": 1, "point_index": 0, "customdata": [7]},
        {"curve_number": 1, "point_index": 1, "customdata": 41},
        {"curve_number": 2, "point_index": 3},
    ], "point_indices": [0, 0, 1, 3], "box": [], "lasso": []}}
    assert figs.selection_ids(event) == [7, 41]

    class Attr:  # streamlit's PlotlyState gives attribute access
        class selection:
            points = [{"customdata": 3}]
    assert figs.selection_ids(Attr) == [3]
    assert figs.selection_ids(None) == [] and figs.selection_ids({"selection": {"points": []}}) == []


def test_norms_figure_and_feature_health_table():
    X = np.random.default_rng(3).standard_normal((50, 8)) * 5
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    fig = figs.norms_figure(X, Xn)
    assert len(fig.data) == 2 and np.allclose(fig.data[1].x, 1.0)
    ledger = [{"stage": "features", "features": {"n_rows": 50, "dim": 8, "dead_dims": 1, "duplicate_rate": 0.1}},
              {"stage": "tokens", "features": None}]
    table = figs.feature_health_table(ledger)
    assert table["stage"].tolist() == ["features"] and table["dead_dims"].iloc[0] == 1


def test_pca_and_nearest_neighbours():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 6))
    a, b = compute_pca(X, seed=0), compute_pca(X, seed=0)
    assert a.shape == (40, 2) and a.dtype == np.float32 and np.array_equal(a, b)
    assert compute_pca(X[:1]).shape == (1, 2)
    X[7] = X[3] * 2.0  # same direction: cosine distance 0
    idx, dist = nearest_neighbours(X, 3, k=5)
    assert idx[0] == 7 and dist[0] == pytest.approx(0.0, abs=1e-9)
    assert 3 not in idx and np.all(np.diff(dist) >= 0) and idx.size == 5
    assert umap_params({"n_neighbors": 50}, n_rows=10)["n_neighbors"] == 9


@pytest.mark.slow
def test_umap_is_seeded():
    from chandra.projection import compute_umap

    X = np.random.default_rng(5).standard_normal((60, 8))
    a = compute_umap(X, {"n_neighbors": 5, "min_dist": 0.1, "seed": 3})
    b = compute_umap(X, {"n_neighbors": 5, "min_dist": 0.1, "seed": 3})
    assert a.shape == (60, 2) and np.allclose(a, b)


# --------------------------------------------------------------------------- vocabulary


def test_token_histogram_marks_empty_tokens():
    fig = figs.token_histogram_figure([3, 0, 5, 0], order="id")
    bars, empty = fig.data
    assert list(bars.y) == [3, 0, 5, 0] and list(bars.marker.color) == token_colors(4)
    assert list(empty.x) == ["1", "3"] and empty.name == "empty tokens (2)"
    assert len(figs.token_histogram_figure([1, 2]).data) == 1


def test_token_histogram_most_used_first_and_highlight():
    counts = [3, 0, 5, 9, 5]
    fig = figs.token_histogram_figure(counts, highlight_token=2)
    bars = fig.data[0]
    assert list(bars.x) == ["3", "2", "4", "0", "1"] and list(bars.y) == [9, 5, 5, 3, 0]  # ties by id
    assert list(fig.layout.xaxis.categoryarray) == list(bars.x)
    assert list(bars.marker.color) == [token_color(k) for k in (3, 2, 4, 0, 1)]
    assert list(bars.marker.opacity) == [0.3, 1.0, 0.3, 0.3, 0.3]
    assert np.asarray(bars.customdata)[:, 0].tolist() == [3, 2, 4, 0, 1]  # selection reads the token id
    assert figs.selection_ids({"selection": {"points": [{"customdata": [4, 0.23]}]}}) == [4]
    assert fig.layout.xaxis.title.text == "token (most used first)"


def test_token_grids_and_grid_figure():
    ledger = [_ledger_entry("tokens", 8, {"gesture_token": 8}, counts=[4, 4, 0, 0]),
              _ledger_entry("saved", 8, {"gesture_token": 0})]
    grids = figs.token_grids(ledger, fit_counts=[2, 2, 2, 2])
    assert grids == {"fit set": [2, 2, 2, 2], "assigned": [4, 4, 0, 0], "saved": [], "reloaded": None}
    fig = figs.token_grid_figure(grids, n_tokens=4)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 4
    texts = [a.text for a in fig.layout.annotations]
    assert "no tokens" in texts and "not recorded" in texts
    empty_markers = [t for t in fig.data if t.type == "scatter"]
    assert len(empty_markers) == 1 and sorted(empty_markers[0].customdata) == [2, 3]


def test_entropy_figure_draws_the_ceiling():
    fig = figs.entropy_figure([{"label": "fit set", "entropy_bits": 3.5, "max_entropy_bits": 4.0},
                               {"label": "saved", "entropy_bits": 0.0, "max_entropy_bits": 4.0}])
    assert list(fig.data[0].y) == [3.5, 0.0]
    assert any(s.y0 == 4.0 for s in fig.layout.shapes)
    # The ceiling is named in the legend, never as text on the plot where it overprints a bar.
    assert not fig.layout.annotations
    assert fig.data[1].name == "ceiling log2 K = 4.00 bits" and fig.layout.showlegend
    assert fig.data[0].textposition == "auto"


def test_token_examples_spread_over_the_recording():
    tokens = np.array([1, 0, 1, 1, 2, 1, 1])
    assert figs.token_examples(tokens, 1, n=2).tolist() == [0, 6]
    assert figs.token_examples(tokens, 5).size == 0


# --------------------------------------------------------------------------- events and fields


def test_field_presence_figure_bins_many_frames():
    events = [{"t": i * 0.01, "gesture_token": (i if i % 2 else None), "f0": 1.0} for i in range(100_000)]
    names, present = figs.field_presence(events[:4])
    assert names == ["t", "gesture_token", "f0"]
    assert present[:, 1].tolist() == [False, True, False, True]
    fig = figs.field_presence_figure(events, duration=1000.0)
    heat = fig.data[0]
    assert np.asarray(heat.z).shape[0] == 3
    assert figs.count_points(fig) <= figs.MAX_POINTS
    z = np.asarray(heat.z, dtype=float)
    assert np.allclose(z[1], 0.5, atol=0.08) and z[1].mean() == pytest.approx(0.5, abs=0.01)  # share present
    assert np.all(z[0] == 1.0)


def test_field_matrix_table_and_lost_fields():
    healthy = [_ledger_entry("segments", 10, {"segment_id": 10, "start": 10}),
               _ledger_entry("features", 10, {"segment_id": 10}),
               _ledger_entry("tokens", 10, {"segment_id": 10, "gesture_token": 10}),
               _ledger_entry("events", 10, {"segment_id": 10, "gesture_token": 10, "f0": 6}),
               _ledger_entry("saved", 10, {"segment_id": 10, "gesture_token": 10, "f0": 6})]
    assert figs.lost_fields(healthy) == []
    table = figs.field_matrix_table(healthy)
    assert table.loc["events", "f0"] == "6 (60%)" and table.loc["features", "start"] == "—"
    assert table["records"].tolist() == [10] * 5
    broken = healthy[:4] + [_ledger_entry("saved", 10, {"segment_id": 10, "gesture_token": 0, "f0": 3})]
    lost = figs.lost_fields(broken)
    assert [(f["code"], f["field"], f["stage"], f["severity"]) for f in lost] == [
        ("FIELD_LOST", "gesture_token", "saved", "error"), ("FIELD_THINNED", "f0", "saved", "warning")]


def test_time_axis_table():
    table = figs.time_axis_table([_ledger_entry("events", 3, {"t": 3}), {"stage": "x", "time": None}])
    assert table["t_max"].iloc[0] == 5.0 and bool(table["monotonic"].iloc[0])
    assert table["field"].isna().iloc[1]


# --------------------------------------------------------------------------- oracle


def test_suffix_arcs_subsampled_and_root_links_skipped():
    n = 100_000
    rng = np.random.default_rng(6)
    sfx = np.concatenate([[-1], [0], rng.integers(0, np.arange(2, n + 1))])
    lrs = np.where(sfx > 0, 1, 0)
    lrs[0] = 0
    fig = figs.suffix_arc_figure(sfx, lrs=lrs, max_arcs=1500)
    assert figs.count_points(fig) <= figs.MAX_POINTS
    assert "of" in fig.layout.title.text and "go to the root" in fig.layout.title.text
    small = figs.suffix_arc_figure(np.array([-1, 0, 0, 1, 2]), times=np.array([0.0, 1.0, 2.0, 3.0]))
    arcs = [t for t in small.data]
    assert len(arcs) == 1
    xs = np.asarray(arcs[0].x, dtype=float)
    # two links (3 -> 1, 4 -> 2), each an arc ending at its states' times
    assert np.nanmin(xs) == pytest.approx(0.0) and np.nanmax(xs) == pytest.approx(3.0)


def test_lrs_figure_keeps_peaks_when_pooled():
    lrs = np.zeros(200_001, dtype=np.int64)
    lrs[12345] = 99
    fig = figs.lrs_figure(lrs, max_points=1000)
    assert figs.count_points(fig) <= figs.MAX_POINTS
    assert max(fig.data[0].y) == 99
    assert fig.data[1].type == "bar"


def test_ir_over_k_marks_the_recommendation_and_the_runs_k():
    curve = {"k": [2, 3, 4, 6, 8, 12, 16, 24, 32], "ir": [0.1, 0.3, 0.6, 0.8, 0.9, 1.0, 1.1, 0.8, 0.7],
             "rare_share": [0, 0, 0, 0, 0, 0, 0.1, 0.4, 0.7], "best_k": 16, "best_ir": 1.1, "recommended_k": 12}
    fig = figs.ir_over_k_figure(curve, chosen=32)
    assert list(fig.data[0].x) == curve["k"]
    assert list(fig.data[0].marker.color[-2:]) == ["white", "white"]  # sparse sizes drawn hollow
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["information rate", "recommended: K = 12", "this run: K = 32"]
    rec = next(t for t in fig.data if t.name == "recommended: K = 12")
    assert list(rec.x) == [12] and list(rec.y) == [1.0]
    axis = fig.layout.xaxis
    assert axis.type == "log" and list(axis.tickvals) == curve["k"]
    # the axis spans exactly the tested K values (log10 units), with a small margin
    assert axis.range[0] < np.log10(2) < np.log10(32) < axis.range[1]
    assert axis.range[1] - np.log10(32) < 0.15 and np.log10(2) - axis.range[0] < 0.15
    assert not fig.layout.annotations and not fig.layout.shapes  # no text on the plot to overprint
    same = figs.ir_over_k_figure(curve, chosen=12)
    assert [t.name for t in same.data if t.showlegend is not False][-1] == "recommended = this run: K = 12"
    assert figs.ir_over_k_figure(None).layout.annotations


# --------------------------------------------------------------------------- home


def test_stage_headlines():
    summaries = {"load": {"duration": 12.5, "sample_rate": 22050}, "segment": {"n_segments": 40},
                 "vocabulary": {"n_tokens": 16, "assigned_unique": 15, "assigned_entropy_bits": 3.8,
                                "max_entropy_bits": 4.0},
                 "oracle": {"states": 41, "transitions": 70}}
    assert figs.stage_headline("load", summaries) == "12.5 s @ 22050 Hz"
    assert figs.stage_headline("segment", summaries) == "40 segments"
    assert figs.stage_headline("vocabulary", summaries) == "15/16 tokens, H 3.80/4.00 bits"
    assert figs.stage_headline("oracle", summaries) == "41 states, 70 transitions"
    assert figs.stage_headline("harmony", {}) == ""
    saved = [_ledger_entry("saved", 40, {"gesture_token": 0})]
    assert figs.stage_headline("save", {}, saved) == "40 frames, 0 with gesture_token"


def test_figure_modules_import_neither_streamlit_nor_umap():
    import subprocess
    import sys

    code = ("import sys, chandra.figures.stages, chandra.figures.palette, chandra.figures.player, chandra.projection; "
            "bad = [m for m in ('streamlit', 'umap', 'torch') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
