"""Diagnostic figure builders: the lost-field cell is red where it should be,
token strips show collapse and empty tokens, every builder copes with
missing data."""

from __future__ import annotations


import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from chandra.figures.diagnostics import (
    CELL_ABSENT,
    CELL_COMPLETE,
    CELL_LOST,
    CELL_PARTIAL,
    feature_health_figure,
    field_matrix_figure,
    field_status,
    findings_table,
    generation_timeline_figure,
    ir_curve_figure,
    oracle_health_figure,
    oracle_shape,
    token_histogram_comparison,
    token_strip_figure,
)
from chandra.ledger import ledger_entry

K = 8
N = 40


def _events(n=N, *, drop=(), partial=None):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        ev = {"t": 0.5 * i, "duration": 0.5, "segment_id": i, "gesture_token": int(i % K),
              "consonance": float(rng.uniform()), "rms_db": -20.0 - i % 5,
              "f0": None if i % 4 == 0 else 220.0}
        for name in drop:
            ev.pop(name, None)
        if partial and i % 2 == 0:
            ev.pop(partial, None)
        out.append(ev)
    return out


def _pipeline_ledger():
    """A healthy ledger shaped like the pipeline's: projection stages in the
    middle carry only ids/times (+ features or tokens)."""
    feats = np.random.default_rng(1).normal(size=(N, 6)).astype(np.float32)
    segs = [{"id": i, "start": 0.5 * i, "end": 0.5 * i + 0.5, "rms": 0.1, "f0": None if i % 4 == 0 else 220.0,
             "centroid": 1000.0, "t": 0.5 * i, "duration": 0.5} for i in range(N)]
    ids = [{"segment_id": i, "t": 0.5 * i} for i in range(N)]
    tokens = np.arange(N) % K
    events = _events()
    return [
        ledger_entry("segments", segs, duration=20.0),
        ledger_entry("features", ids, features=feats, duration=20.0),
        ledger_entry("normalised", ids, features=feats, duration=20.0),
        ledger_entry("tokens", [{**r, "gesture_token": int(k)} for r, k in zip(ids, tokens)], tokens=tokens,
                     n_tokens=K, duration=20.0),
        ledger_entry("events", events, features=feats, n_tokens=K, duration=20.0),
        ledger_entry("oracle", events, features=feats, n_tokens=K, duration=20.0),
        ledger_entry("saved", events, features=feats, n_tokens=K, duration=20.0),
        ledger_entry("reloaded", events, features=feats, n_tokens=K, duration=20.0),
    ]


def _lost_ledger():
    """The documented fault: the save path strips gesture_token."""
    led = _pipeline_ledger()
    feats = np.random.default_rng(1).normal(size=(N, 6)).astype(np.float32)
    stripped = _events(drop=("gesture_token",))
    led[6] = ledger_entry("saved", stripped, features=feats, n_tokens=K, duration=20.0)
    led[7] = ledger_entry("reloaded", stripped, features=feats, n_tokens=K, duration=20.0)
    return led


def _heatmap(fig):
    return next(t for t in fig.data if isinstance(t, go.Heatmap))


def _cell(fig, stages, fields, stage, field):
    hm = _heatmap(fig)
    i, j = stages.index(stage), fields.index(field)
    return hm.z[i][j], hm.text[i][j].replace("<br>", " ")


# --------------------------------------------------------------------------- field matrix


def test_healthy_pipeline_ledger_has_no_lost_cell():
    stages, fields, present, fraction, status = field_status(_pipeline_ledger())
    assert stages[:2] == ["segments", "features"]
    assert not np.any(status == CELL_LOST), [(stages[i], fields[j]) for i, j in zip(*np.nonzero(status == 3))]
    # "tokens" does not carry features but "events" has them again: a gap, not a loss.
    assert status[stages.index("tokens"), fields.index("features")] == CELL_ABSENT
    # f0 is None for every fourth record: partial (amber), not lost.
    assert status[stages.index("events"), fields.index("f0")] == CELL_PARTIAL
    assert status[stages.index("events"), fields.index("gesture_token")] == CELL_COMPLETE


def test_lost_field_is_red_at_the_right_cells():
    ledger = _lost_ledger()
    stages, fields, present, fraction, status = field_status(ledger)
    lost = {(stages[i], fields[j]) for i, j in zip(*np.nonzero(status == CELL_LOST))}
    assert lost == {("saved", "gesture_token"), ("reloaded", "gesture_token")}

    fig = field_matrix_figure(ledger)
    z, text = _cell(fig, stages, fields, "saved", "gesture_token")
    assert z == pytest.approx(CELL_LOST + 0.5)
    assert "LOST" in text and "0 (0%)" in text
    # The colour scale maps the lost band to red, and the cell has a border.
    hm = _heatmap(fig)
    red_stops = [c for v, c in hm.colorscale if v > 0.75]  # z = 3.5 of 4 falls here
    assert red_stops and all(c.lower() == "#d7191c" for c in red_stops)
    i, j = stages.index("saved"), fields.index("gesture_token")
    assert any(s.x0 == j - 0.5 and s.y0 == i - 0.5 for s in fig.layout.shapes)
    # Healthy neighbours stay green.
    z_ok, text_ok = _cell(fig, stages, fields, "events", "gesture_token")
    assert z_ok == pytest.approx(CELL_COMPLETE + 0.5)
    assert text_ok == f"{N} (100%)"
    assert "2 lost cell" in fig.layout.title.text


def test_fewer_records_carrying_a_field_is_lost():
    feats = np.ones((N, 3), np.float32)
    ledger = [ledger_entry("events", _events(), features=feats),
              ledger_entry("saved", _events(partial="consonance"), features=feats)]
    stages, fields, present, _, status = field_status(ledger)
    assert status[1, fields.index("consonance")] == CELL_LOST
    assert present[1, fields.index("consonance")] == N // 2


def test_generated_stage_sampling_is_not_a_loss():
    """A generation replays a sample of frames: a partial field's share moves
    a little without anything being lost; a field gone entirely is lost."""
    feats = np.ones((N, 3), np.float32)
    sample = _events()[: N // 2 + 3]  # f0 share differs from the full set
    gone = [{k: v for k, v in e.items() if k != "consonance"} for e in sample]
    ledger = [ledger_entry("events", _events(), features=feats),
              ledger_entry("saved", _events(), features=feats),
              ledger_entry("generated", sample, features=feats[: len(sample)])]
    stages, fields, _, fraction, status = field_status(ledger)
    j = fields.index("f0")
    assert fraction[2, j] != fraction[1, j]
    assert not np.any(status == CELL_LOST)
    ledger[2] = ledger_entry("generated", gone, features=feats[: len(gone)])
    stages, fields, _, _, status = field_status(ledger)
    assert {(stages[i], fields[j]) for i, j in zip(*np.nonzero(status == CELL_LOST))} == {
        ("generated", "consonance")}


def test_findings_mark_cells_but_bad_values_are_not_lost():
    entry = ledger_entry("model", _events(drop=("gesture_token",)), fields=("gesture_token",))
    missing = {"severity": "error", "code": "TOKENS_MISSING", "stage": "model", "message": "0 of 40",
               "evidence": {"present": 0}}
    epoch = {"severity": "error", "code": "EPOCH_TIME", "stage": "model", "message": "epoch",
             "evidence": {"field": "t"}}
    stages, fields, _, _, status = field_status([entry], findings=[missing, epoch])
    assert status[0, fields.index("gesture_token")] == CELL_LOST
    assert status[0, fields.index("t")] == CELL_COMPLETE
    fig = field_matrix_figure([entry], findings=[missing])
    assert "LOST" in _cell(fig, stages, fields, "model", "gesture_token")[1]


def test_field_matrix_copes_with_empty_input():
    for ledger in (None, [], [{"stage": "x", "n_records": 0, "fields": {}}]):
        fig = field_matrix_figure(ledger)
        assert isinstance(fig, go.Figure) and fig.layout.annotations


# --------------------------------------------------------------------------- token strip


def test_token_strip_shape_collapse_and_empty_tokens():
    ledger = _pipeline_ledger()
    collapsed = [{**e, "gesture_token": 3} for e in _events()]
    ledger.append(ledger_entry("joined", collapsed, n_tokens=K))
    fig = token_strip_figure(ledger, n_tokens=K)
    hm = _heatmap(fig)
    z = np.array(hm.z, dtype=float)
    assert z.shape == (len(ledger), K)
    # Stages without tokens (segments, features, normalised) are blank rows.
    assert np.all(np.isnan(z[0])) and "no tokens" in fig.layout.yaxis.ticktext[0]
    # Stages with tokens: shares sum to one.
    assert np.nansum(z[3]) == pytest.approx(1.0)
    assert "COLLAPSED" in fig.layout.yaxis.ticktext[-1]
    assert "COLLAPSED" not in fig.layout.yaxis.ticktext[3]
    empty = next(t for t in fig.data if t.name == "empty token")
    # The collapsed row has K - 1 empty tokens; all others use every token.
    assert len(empty.x) == K - 1 and set(empty.y) == {len(ledger) - 1}


def test_token_strip_widens_to_k_and_handles_missing():
    ledger = [ledger_entry("tokens", [{"gesture_token": 0}, {"gesture_token": 1}], n_tokens=2)]
    fig = token_strip_figure(ledger, n_tokens=16)
    assert np.array(_heatmap(fig).z).shape == (1, 16)
    assert isinstance(token_strip_figure(None), go.Figure)
    assert isinstance(token_strip_figure([{"stage": "a", "n_records": 0, "fields": {}}]), go.Figure)


# --------------------------------------------------------------------------- findings table


def test_findings_table_orders_errors_first():
    class F:
        def to_dict(self):
            return {"severity": "info", "code": "C", "stage": None, "message": "m3", "evidence": {}}

    df = findings_table([
        {"severity": "warning", "code": "A", "stage": "s1", "message": "m1"},
        {"severity": "error", "code": "B", "stage": "s2", "message": "m2", "evidence": {"x": 1}},
        F(),
    ])
    assert list(df.columns) == ["severity", "code", "stage", "message"]
    assert list(df["code"]) == ["B", "A", "C"]
    assert df.loc[2, "stage"] == ""
    empty = findings_table([])
    assert isinstance(empty, pd.DataFrame) and empty.empty
    assert list(empty.columns) == ["severity", "code", "stage", "message"]


# --------------------------------------------------------------------------- feature / oracle health


def test_feature_health_marks_dead_dimensions():
    X = np.random.default_rng(0).normal(size=(50, 10))
    X[:, :4] = 0.0
    entry = ledger_entry("features", [{} for _ in range(50)], features=X)
    fig = feature_health_figure(entry)
    bar = fig.data[0]
    dead = list(bar.y).index("dead dims")
    assert bar.x[dead] == pytest.approx(0.4)
    assert bar.marker.color[dead] == "#d7191c"
    assert "dim 10" in fig.layout.title.text
    # the stats dict alone works too, and missing data gives a message
    assert isinstance(feature_health_figure(entry["features"]), go.Figure)
    assert feature_health_figure(None).layout.annotations
    assert feature_health_figure({"stage": "x", "features": None}).layout.annotations


def test_oracle_health_figure_flags_all_root_links():
    from chandra.oracle import build_factor_oracle, oracle_health

    healthy = build_factor_oracle(np.tile(np.arange(4), 20))
    fig = oracle_health_figure(healthy)
    assert len(fig.data) == 4
    assert fig.data[0].y[0] < 0.2  # few links to the root in a repeating sequence

    novel = build_factor_oracle(np.arange(100))  # nothing recurs: every link to the root
    shape = oracle_shape(novel)
    assert shape["sfx_to_root_share"] == 1.0 and shape["root_out_degree"] == 100
    fig = oracle_health_figure(shape)
    assert fig.data[0].marker.color[0] == "#d7191c"  # to-root bar
    assert fig.data[2].marker.color[0] == "#d7191c"  # root out-degree ~ n
    # plain health dicts (oracle_health, an inspect report's oracle) work too
    assert len(oracle_health_figure(oracle_health(novel)).data) == 4
    assert len(oracle_health_figure({"states": 11, "root_out_degree": 10, "sfx_to_root_share": 1.0}).data) >= 3
    assert oracle_health_figure(None).layout.annotations


# --------------------------------------------------------------------------- generation


class _Model:
    def __init__(self, n=10):
        self.events = [{"t": float(i), "duration": 1.0, "gesture_token": i % 3} for i in range(n)]


def _generation():
    frames = [0, 1, 2, 6, 7, 3, 4]
    kinds = ["start", "forward", "forward", "jump", "forward", "jump", "forward"]
    lrs = [None, None, None, 2, None, 5, None]
    steps = [{"step": i, "frame": f, "kind": k, "lrs": l, "reason": None}
             for i, (f, k, l) in enumerate(zip(frames, kinds, lrs))]
    return {"frames": frames, "steps": steps, "jumps": [3, 5], "fallbacks": [], "params": {}}


def test_generation_timeline_marks_jumps_with_lrs():
    fig = generation_timeline_figure(_generation(), _Model())
    jumps = next(t for t in fig.data if t.name == "jump")
    assert list(jumps.x) == [3.0, 5.0]  # output time = cumulative durations
    assert list(jumps.y) == [6.0, 3.0]  # source position of the frame jumped to
    assert list(jumps.text) == ["LRS 2", "LRS 5"]
    path = fig.data[0]
    assert None in list(path.y)  # the line breaks at a jump
    assert fig.layout.xaxis.title.text == "output time (s)"
    # without a model: frame indices against steps
    fig2 = generation_timeline_figure(_generation(), None)
    assert fig2.layout.yaxis.title.text == "source frame"
    assert generation_timeline_figure(None, None).layout.annotations
    assert generation_timeline_figure({"frames": []}, None).layout.annotations


def test_spaced_labels_never_overprint():
    from chandra.figures.diagnostics import spaced_labels

    x = np.array([0.10, 0.12, 0.50, 0.90])
    y = np.array([0.50, 0.51, 0.50, 0.10])
    # 0 and 1 collide: the more important one (1, first in the order) keeps its label
    assert spaced_labels(x, y, order=np.array([1, 0, 2, 3])).tolist() == [False, True, True, True]
    # a marker just above point 2 takes its room; a label never covers a marker
    shown = spaced_labels(x, y, obstacles=(np.array([0.5]), np.array([0.55])))
    assert shown.tolist() == [True, False, False, True]
    # boxes placed by an earlier trace count too
    placed = [(0.9, 0.12)]
    assert spaced_labels(x, y, placed=placed)[3] == False  # noqa: E712
    assert len(placed) == 3
    # with many jumps close together, the figure writes fewer labels and says so
    frames = list(range(0, 400, 2))
    steps = [{"step": i, "frame": f, "kind": "start" if i == 0 else "jump", "lrs": 3} for i, f in enumerate(frames)]
    fig = generation_timeline_figure({"frames": frames, "steps": steps}, None)
    jumps = next(t for t in fig.data if t.name == "jump")
    n_text = sum(1 for t in jumps.text if t)
    assert 0 < n_text < len(jumps.text)
    assert f"LRS written on {n_text} of {len(jumps.text)} jumps" in fig.layout.title.text


def test_generation_timeline_with_real_generation():
    from chandra.generate import improvise
    from chandra.model import Model
    from chandra.oracle import build_factor_oracle

    tokens = np.tile([0, 1, 2, 1], 10)
    events = [{"t": 0.25 * i, "duration": 0.25, "gesture_token": int(k)} for i, k in enumerate(tokens)]
    model = Model(events=events, features=np.zeros((len(events), 2), np.float32),
                  oracle=build_factor_oracle(tokens))
    gen = improvise(model, n_frames=30, seed=3, continuity=0.5)
    fig = generation_timeline_figure(gen, model)
    n_jump = sum(1 for s in gen.steps if s["kind"] == "jump")
    traces = {t.name: t for t in fig.data}
    assert (len(traces["jump"].x) if "jump" in traces else 0) == n_jump
    assert f"{n_jump} jumps" in fig.layout.title.text


def test_token_histogram_comparison():
    fig = token_histogram_comparison([0, 0, 1, 2, None, -1], np.array([2, 2, 2]), n_tokens=4)
    train, gen = fig.data
    assert len(train.x) == 4
    assert sum(train.y) == pytest.approx(1.0) and sum(gen.y) == pytest.approx(1.0)
    assert gen.y[2] == pytest.approx(1.0)
    assert "generation uses 1/4" in fig.layout.title.text
    assert token_histogram_comparison(None, None).layout.annotations
    assert token_histogram_comparison([None], [], n_tokens=None).layout.annotations


def test_ir_curve_marks_chosen_threshold():
    curve = {"thresholds": [0.1, 0.2, 0.3], "ir": [0.5, 1.5, 1.0], "root_out_degree": [30, 10, 3],
             "best_threshold": 0.2, "best_ir": 1.5}
    fig = ir_curve_figure(curve)
    chosen = next(t for t in fig.data if t.name == "chosen")
    assert list(chosen.x) == [0.2] and list(chosen.y) == [1.5]
    assert "0.2" in fig.layout.title.text
    assert ir_curve_figure(curve, chosen=0.3).data[-1].x[0] == 0.3
    for bad in (None, {}, {"thresholds": [0.1], "ir": []}):
        assert ir_curve_figure(bad).layout.annotations


# --------------------------------------------------------------------------- real runs (conftest fixtures)


def test_field_matrix_on_prepared_and_lost_field_runs(prepared_run, lost_field_run):
    healthy = prepared_run.meta()["ledger"]
    _, _, _, _, status = field_status(healthy)
    assert not np.any(status == CELL_LOST)

    ledger = lost_field_run.meta()["ledger"]
    stages, fields, _, _, status = field_status(ledger)
    lost = {(stages[i], fields[j]) for i, j in zip(*np.nonzero(status == CELL_LOST))}
    assert lost == {("saved", "gesture_token"), ("reloaded", "gesture_token")}
    fig = field_matrix_figure(ledger)
    z, text = _cell(fig, stages, fields, "saved", "gesture_token")
    assert z == pytest.approx(CELL_LOST + 0.5) and "LOST" in text
    # The strip shows the tokens vanish at saved / reloaded.
    strip = token_strip_figure(ledger, n_tokens=16)
    labels = list(strip.layout.yaxis.ticktext)
    assert "no tokens" in labels[stages.index("saved")]
    assert "no tokens" not in labels[stages.index("events")]


def test_oracle_shape_agrees_with_oracle_health():
    import numpy as np

    from chandra.figures.diagnostics import oracle_shape
    from chandra.oracle import build_factor_oracle, oracle_health

    oracle = build_factor_oracle(np.array([0, 1, 1, 1, 0, 0, 1, 2, 2, 2, 2]))
    shape, health = oracle_shape(oracle), oracle_health(oracle)
    for key in ("sfx_to_root_share", "sfx_to_previous_share", "root_out_degree", "n_transitions"):
        assert shape[key] == health[key], key
