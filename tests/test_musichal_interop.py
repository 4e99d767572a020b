"""MusicHal 9000 can perform with chandra's exports (docs/MUSICHAL.md).

Conformance of every kind of export with what MusicHal reads, MusicHal's
consonance scale, the token-matching threshold, and the round trip through a
MusicHal re-save (simulated by tests/helpers_musichal.py from the spec).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chandra.errors import ChandraError
from chandra.inspect import inspect_model
from chandra.model import Model, load_model
from chandra.musichal import check_musichal_conformance, export_musichal, load_musichal
from chandra.musichal_conformance import (
    MUSICHAL_DISTANCE_FUNCTIONS,
    MUSICHAL_INTERVALS,
    MUSICHAL_NUMBER_FIELDS,
    MUSICHAL_STATS_KEYS,
    event_pitches,
    musichal_audio_data,
    musichal_consonance,
    musichal_pair_distances,
    musichal_token_threshold,
    restore_audio_data,
)
from chandra.oracle import build_audio_oracle, build_factor_oracle, check_oracle
from helpers_musichal import MusicHalStandIn, musichal_resave

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path("/work/shared/reference/musichal_base_model_test_error_fix.json")
if not REFERENCE.exists():  # pragma: no cover - another checkout layout
    REFERENCE = REPO.parent / "shared" / "reference" / "musichal_base_model_test_error_fix.json"


# ---------------------------------------------------------------------------
# models of every kind, built once


def _with_audio_oracle(model: Model) -> Model:
    """The same frames under an audio oracle (cosine, a threshold that links some frames)."""
    X = np.asarray(model.features, dtype=np.float64)
    d = musichal_pair_distances(X, "cosine")[np.triu_indices(X.shape[0], 1)]
    oracle = build_audio_oracle(model.features, threshold=float(np.quantile(d, 0.05)), metric="cosine")
    assert np.any(oracle.sfx[1:] > 0)
    return dataclasses.replace(model, oracle=oracle)


@pytest.fixture(scope="module")
def dsp_tokens(prepared_run) -> Model:
    model = load_model(prepared_run.model_path())
    assert model.oracle.kind == "tokens" and model.feature_dim > 15
    return model


@pytest.fixture(scope="module")
def neural_tokens(tmp_path_factory, synthetic_audio) -> Model:
    from helpers_models import TINY_HIDDEN_SIZE, save_tiny_wav2vec2

    from chandra.pipeline import TrainConfig, train

    root = tmp_path_factory.mktemp("neural")
    model_dir = save_tiny_wav2vec2(root / "tiny")
    train(synthetic_audio, TrainConfig(encoder="wav2vec2", model=str(model_dir), layer=1, n_tokens=8, seed=0),
          output=root / "neural.chandra")
    model = load_model(root / "neural.chandra")
    assert model.feature_dim == TINY_HIDDEN_SIZE and model.provenance["encoder"]["encoder"] == "wav2vec2"
    return model


@pytest.fixture(scope="module")
def models(dsp_tokens, neural_tokens) -> dict[str, Model]:
    return {
        "dsp-tokens": dsp_tokens,
        "dsp-features": _with_audio_oracle(dsp_tokens),
        "neural-tokens": neural_tokens,
        "neural-features": _with_audio_oracle(neural_tokens),
    }


KINDS = ["dsp-tokens", "dsp-features", "neural-tokens", "neural-features"]


def _export(model: Model, path: Path) -> dict:
    export_musichal(model, path)
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------
# a model comparison for the round trips


def _same(a, b) -> bool:
    """Equal values of equal types, dict key order included, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _meta(oracle) -> dict:
    return {k: v for k, v in oracle.to_meta().items() if k != "search"}


def compare_models(back: Model, model: Model) -> dict[str, bool]:
    """Which parts of ``model`` ``back`` carries unchanged."""
    arrays, back_arrays = model.oracle.to_arrays(), back.oracle.to_arrays() if back.oracle else {}
    return {
        "events": _same(back.events, model.events),
        "features": np.array_equal(back.features, model.features),
        "oracle_graph": all(np.array_equal(back_arrays.get(k), arrays[k]) for k in ("sfx", "trn_ptr", "trn_dst")),
        "oracle_lrs": np.array_equal(back_arrays.get("lrs"), arrays["lrs"]),
        "oracle_meta": back.oracle is not None and _meta(back.oracle) == _meta(model.oracle),
        # how an audio oracle was searched (exact or approximate): chandra's record, not MusicHal's
        "oracle_search": back.oracle is not None and back.oracle.search == model.oracle.search,
        "provenance": all(_same(back.provenance.get(k), v) for k, v in model.provenance.items()),
        "vocabulary": back.vocabulary == model.vocabulary,
        "ledger": back.ledger == model.ledger,
        "centers": (back.centers is None and model.centers is None)
        or (back.centers is not None and model.centers is not None and np.array_equal(back.centers, model.centers)),
        "sample_rate": back.sample_rate == model.sample_rate,
    }


#: What a MusicHal re-save cannot carry (docs/MUSICHAL.md, "What survives").
LOST_IN_RESAVE = {"provenance", "vocabulary", "ledger", "centers", "sample_rate"}


# ---------------------------------------------------------------------------
# MusicHal's consonance scale


def test_consonance_of_just_intervals_is_the_table():
    for name, ratio, score in MUSICHAL_INTERVALS:
        if name == "unison":
            continue  # one pitch class: neutral
        if name == "octave":
            assert musichal_consonance([220.0, 440.0]) == 0.5  # octaves are one pitch class
            continue
        assert musichal_consonance([220.0, 220.0 * ratio]) == pytest.approx(score, abs=1e-12), name


def test_consonance_known_answers():
    # equal-tempered fifth: 0.113 % off 3/2
    err = abs(2 ** (7 / 12) - 1.5) / 1.5
    assert musichal_consonance([261.63, 261.63 * 2 ** (7 / 12)]) == pytest.approx(0.95 * (1 - err / 0.06))
    # ET major triad: mean of major third, fifth and minor third
    c = 261.63
    third, fifth, minor = 2 ** (4 / 12), 2 ** (7 / 12), 2 ** (3 / 12)
    expected = np.mean([0.85 * (1 - abs(third - 1.25) / 1.25 / 0.06), 0.95 * (1 - abs(fifth - 1.5) / 1.5 / 0.06),
                        0.82 * (1 - abs(minor - 1.2) / 1.2 / 0.06)])
    assert musichal_consonance([c, c * third, c * fifth]) == pytest.approx(expected)
    # a fifth plus its octave: the pair 2:1 scores the octave entry
    assert musichal_consonance([220.0, 330.0, 440.0]) == pytest.approx(np.mean([0.95, 0.98, 0.90]))
    # a twelfth reduces to a fifth; compound intervals reduce by octaves
    assert musichal_consonance([100.0, 300.0]) == pytest.approx(0.95)
    assert musichal_consonance([100.0, 100.0 * 4 * 5 / 4]) == pytest.approx(0.85)
    # ET tritone against 45/32
    tt = 2 ** 0.5
    assert musichal_consonance([300.0, 300.0 * tt]) == pytest.approx(0.25 * (1 - abs(tt - 45 / 32) / (45 / 32) / 0.06))
    # fewer than two pitch classes
    for pitches in ([], [440.0], [110.0, 220.0, 880.0], [440.0, 441.0]):
        assert musichal_consonance(pitches) == 0.5, pitches


def test_consonance_rejects_non_pitches():
    for bad in ([440.0, -1.0], [440.0, math.nan], [440.0, "a"], [440.0, True]):
        with pytest.raises(ChandraError):
            musichal_consonance(bad)


@settings(max_examples=60, deadline=None)
@given(pitches=st.lists(st.floats(30.0, 4000.0), min_size=0, max_size=6), factor=st.floats(0.25, 4.0))
def test_consonance_depends_only_on_intervals(pitches, factor):
    c = musichal_consonance(pitches)
    assert 0.0 <= c <= 1.0
    assert musichal_consonance(list(reversed(pitches))) == pytest.approx(c, abs=1e-12)
    # transposing the whole chord changes no interval (rounding of the
    # semitone count at a half-semitone boundary aside)
    semis = [12 * math.log2(p / min(pitches)) % 1 for p in pitches] if pitches else []
    if all(abs(s - 0.5) > 1e-6 for s in semis):
        assert musichal_consonance([p * factor for p in pitches]) == pytest.approx(c, abs=1e-9)


def test_event_pitches_prefers_pitches_hz_then_ratios():
    assert event_pitches({"pitches_hz": [220.0, 330.0], "f0": 100.0, "ratios": [1.0, 2.0]}) == [220.0, 330.0]
    assert event_pitches({"f0": 200.0, "ratios": [1.0, 1.5]}) == [200.0, 300.0]
    assert event_pitches({"f0": None, "ratios": [1.0, 1.5]}) == [1.0, 1.5]
    assert event_pitches({"pitches_hz": [], "f0": 200.0}) is None
    assert event_pitches({"pitches_hz": [220.0, None], "ratios": [1.0, 1.25]}) == [1.0, 1.25]
    assert event_pitches({"ratios": [1.0, math.nan]}) is None


# ---------------------------------------------------------------------------
# the token-matching threshold


def test_token_threshold_separates_clusters_exactly():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10.0
    tokens = rng.integers(0, 4, 120)
    X = centres[tokens] + 0.1 * rng.standard_normal((120, 4))
    result = musichal_token_threshold(X, tokens)
    d = musichal_pair_distances(X, result["metric"])
    same = tokens[:, None] == tokens[None, :]
    off = ~np.eye(120, dtype=bool)
    assert d[same & off].max() < result["threshold"] < d[~same].min()
    assert result["agreement"] == result["balanced_agreement"] == 1.0
    assert result["same_token_matched"] == result["different_token_rejected"] == 1.0
    assert result["n_pairs"] == 120 * 119 // 2 and result["n_frames"] == result["n_frames_total"] == 120


def test_token_threshold_maximises_pair_agreement():
    # 40 tokens with overlapping clusters: no threshold reproduces them
    # exactly; the chosen one agrees on the largest share of pairs.
    rng = np.random.default_rng(1)
    tokens = np.repeat(np.arange(40), 4)
    X = rng.standard_normal((40, 8))[tokens] + 0.4 * rng.standard_normal((160, 8))
    result = musichal_token_threshold(X, tokens, metrics=("euclidean",))
    iu = np.triu_indices(160, 1)
    d = musichal_pair_distances(X, "euclidean")[iu]
    same = (tokens[:, None] == tokens[None, :])[iu]
    matched = d < result["threshold"]
    assert result["agreement"] == pytest.approx(np.mean(matched == same))
    assert result["same_token_matched"] == pytest.approx(np.mean(matched[same]))
    assert result["different_token_rejected"] == pytest.approx(np.mean(~matched[~same]))
    assert result["balanced_agreement"] == pytest.approx(
        0.5 * (result["same_token_matched"] + result["different_token_rejected"]))
    assert result["n_pairs_matched"] == int(matched.sum()) and 0 < result["same_token_matched"] < 1
    # no threshold does better (brute force over every cut)
    cuts = np.unique(np.concatenate([d, d + 1e-9]))
    cuts = cuts[cuts > 0]
    d_same, d_diff = np.sort(d[same]), np.sort(d[~same])
    agreeing = np.searchsorted(d_same, cuts) + (d_diff.size - np.searchsorted(d_diff, cuts))
    best = agreeing.max() / d.size
    assert result["agreement"] == pytest.approx(best)
    # and over both metrics the better one is kept
    both = musichal_token_threshold(X, tokens)
    assert both["agreement"] >= result["agreement"]


def test_token_threshold_edge_cases():
    X = np.arange(12, dtype=float).reshape(6, 2)
    assert musichal_token_threshold(X, [-1, -1, -1, -1, -1, 3]) is None
    # every frame its own token: a frame matches only itself
    result = musichal_token_threshold(X, np.arange(6))
    assert 0 < result["threshold"] < musichal_pair_distances(X, "euclidean")[0, 1]
    assert result["same_token_matched"] is None and result["different_token_rejected"] == 1.0
    # one token: everything matches
    result = musichal_token_threshold(X, np.zeros(6, dtype=int))
    assert result["threshold"] > musichal_pair_distances(X, result["metric"]).max()
    # sampling is seeded: the same frames twice, fewer pairs than all
    big = np.random.default_rng(2).standard_normal((300, 3))
    tok = np.random.default_rng(3).integers(0, 5, 300)
    a = musichal_token_threshold(big, tok, max_frames=100)
    assert a == musichal_token_threshold(big, tok, max_frames=100)
    assert a["n_frames"] == 100 and a["n_frames_total"] == 300 and a["n_pairs"] == 4950
    with pytest.raises(ChandraError):
        musichal_token_threshold(big, tok[:10])


def test_cosine_distance_of_silence_follows_musichal():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    d = musichal_pair_distances(X, "cosine")
    assert d[0, 1] == 1.0 and d[0, 2] == 1.0 and d[2, 2] == pytest.approx(0.0)


# ---------------------------------------------------------------------------
# conformance of every export


def _check_stats_like_musichal(obj: dict) -> None:
    reference = json.loads(REFERENCE.read_text())["stats"]
    for key, value in reference.items():
        assert key in obj["stats"], key
        assert type(obj["stats"][key]) is type(value) or key == "last_update", (key, obj["stats"][key], value)
    assert set(MUSICHAL_STATS_KEYS) <= set(obj["stats"])


@pytest.mark.parametrize("kind", KINDS)
def test_every_export_conforms(models, kind, tmp_path):
    model = models[kind]
    obj = _export(model, tmp_path / "out.json")
    assert check_musichal_conformance(obj) == []
    assert check_musichal_conformance(tmp_path / "out.json") == []
    _check_stats_like_musichal(obj)
    n = model.n_frames
    assert obj["feature_dimensions"] == model.feature_dim and obj["frame_counter"] == n
    assert obj["adaptive_threshold"] is False and obj["chord_similarity_weight"] == 0.0
    assert obj["distance_function"] in MUSICHAL_DISTANCE_FUNCTIONS and obj["distance_threshold"] > 0
    # ids MusicHal turns into ints with int() are decimal strings
    for mapping in (obj["states"], obj["audio_frames"], obj["suffix_links"], obj["fundamentals"], obj["consonances"]):
        assert all(re.fullmatch(r"\d+", key) for key in mapping)
    assert all(re.fullmatch(r"\d+_\d+", key) for key in obj["transitions"])
    assert all(re.fullmatch(r"\d+", key) for s in obj["states"].values() for key in s["next"])
    marker = obj["stats"]["chandra_export"]
    assert marker["oracle_kind"] == model.oracle.kind
    if model.oracle.kind == "features":
        assert obj["distance_threshold"] == model.oracle.threshold and obj["distance_function"] == model.oracle.metric
        assert marker["matching"] is None
    else:
        matching = marker["matching"]
        assert obj["distance_threshold"] == matching["threshold"] and obj["distance_function"] == matching["metric"]
        assert matching["agreement"] > 0.9 and matching["same_token_matched"] > 0.5, matching
    # consonance on MusicHal's scale, chandra's own kept beside it
    for i, frame in enumerate(obj["audio_frames"].values()):
        data, event = frame["audio_data"], model.events[i]
        pitches = event_pitches(event)
        assert data["consonance"] == (0.5 if pitches is None else musichal_consonance(pitches))
        assert obj["consonances"][str(i + 1)] == data["consonance"]
        assert data.get("chandra_consonance", data["consonance"]) == event["consonance"]
        if event["midi"] is None:
            assert "midi" not in data and data["f0"] == 0.0 and data["chandra_midi"] is None
        else:
            assert data["midi"] == math.floor(event["midi"] + 0.5)


def test_reference_model_reexport_conforms(tmp_path):
    model = load_model(REFERENCE)
    obj = _export(model, tmp_path / "ref.json")
    assert check_musichal_conformance(obj) == []
    # the original file itself lacks what MusicHal's requests need
    problems = check_musichal_conformance(REFERENCE)
    assert any("gesture_token" in p for p in problems) and any("consonance" in p for p in problems)
    assert any("format_version" in p for p in problems)


def test_stats_make_musichal_distances_work(models, tmp_path):
    """The reported failure: without the counters in stats every MusicHal
    distance is infinite and nothing matches; with them every frame finds
    itself and its same-token frames."""
    model = models["dsp-tokens"]
    obj = _export(model, tmp_path / "out.json")
    standin = MusicHalStandIn(copy.deepcopy(obj))
    tokens = model.tokens()
    agree = 0
    for fid in range(20):
        similar = set(standin.similar_frames(standin.frames[fid]["features"]))
        assert fid in similar
        same = set(np.flatnonzero(tokens == tokens[fid]).tolist())
        agree += len(similar & same) / len(same)
    assert standin.stats["total_distances_calculated"] == 20 * model.n_frames
    assert agree / 20 > 0.8
    # all pairs, as MusicHal judges them, against the measurement in the file
    matched = np.array([[standin.distance(a["features"], b["features"]) < standin.distance_threshold
                         for b in standin.frames.values()] for a in standin.frames.values()])
    iu = np.triu_indices(model.n_frames, 1)
    same = (tokens[:, None] == tokens[None, :])[iu]
    assert np.mean(matched[iu] == same) == pytest.approx(obj["stats"]["chandra_export"]["matching"]["agreement"])
    broken = copy.deepcopy(obj)
    del broken["stats"]["total_distances_calculated"]
    assert MusicHalStandIn(broken).similar_frames(standin.frames[0]["features"]) == []
    assert any("total_distances_calculated" in p for p in check_musichal_conformance(broken))


def _mutations():
    def set_(path, value):
        def apply(obj):
            target = obj
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return apply

    def delete(path):
        def apply(obj):
            target = obj
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]
        return apply

    def int_keys(obj):
        obj["fundamentals"] = {f"s{k}": v for k, v in obj["fundamentals"].items()}

    return [
        (delete(["stats", "average_distance"]), "stats lacks 'average_distance'"),
        (set_(["stats", "threshold_adjustments"], 1.5), "stats['threshold_adjustments']"),
        (set_(["distance_threshold"], 0.0), "'distance_threshold' must be a positive"),
        (set_(["distance_function"], "mahalanobis"), "'distance_function'"),
        (set_(["adaptive_threshold"], True), "adaptive_threshold"),
        (set_(["chord_similarity_weight"], 0.3), "chord_similarity_weight"),
        (set_(["frame_counter"], 3), "frame_counter"),
        (set_(["last"], 0), "'last'"),
        (set_(["audio_frames", "2", "audio_data", "midi"], 60.4), "'midi' must be an integer"),
        (set_(["audio_frames", "2", "audio_data", "consonance"], None), "'consonance' must be a number"),
        (delete(["audio_frames", "2", "audio_data", "gesture_token"]), "lacks 'gesture_token'"),
        (set_(["audio_frames", "2", "audio_data", "gesture_token"], 3.0), "'gesture_token' must be an integer"),
        (set_(["audio_frames", "2", "audio_data", "f0"], None), "'f0' must be a number"),
        (set_(["audio_frames", "2", "audio_data", "rms_db"], "loud"), "'rms_db' must be a finite number"),
        (set_(["audio_frames", "2", "features"], [0.0]), "feature_dimensions"),
        (set_(["audio_frames", "2", "frame_id"], 7), "'frame_id'"),
        (set_(["states", "3", "link"], 5), "'link'"),
        (delete(["transitions", "0_0"]), "disagree"),
        (int_keys, "'fundamentals' keys"),
        (set_(["consonances", "1"], 1.5), "'consonances' values"),
        (set_(["stats", "chandra_export", "oracle_kind"], "other"), "oracle_kind"),
        (delete(["sequence"]), "missing top-level key 'sequence'"),
    ]


@pytest.mark.parametrize("mutate,expected", _mutations())
def test_checker_names_each_broken_rule(models, tmp_path_factory, mutate, expected):
    path = tmp_path_factory.getbasetemp() / "mutation-base.json"
    if not path.exists():
        export_musichal(models["dsp-tokens"], path)
    obj = json.loads(path.read_text())
    mutate(obj)
    problems = check_musichal_conformance(obj)
    assert any(expected in p for p in problems), problems


# ---------------------------------------------------------------------------
# event conversion


def _events_model(events, dim=3) -> Model:
    n = len(events)
    features = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    tokens = [e.get("gesture_token") if isinstance(e.get("gesture_token"), int) else 0 for e in events]
    return Model(events=events, features=features, oracle=build_factor_oracle(tokens))


def test_midi_is_rounded_half_up_and_unpitched_events_have_no_note(tmp_path):
    events = [
        {"t": 0.0, "gesture_token": 0, "midi": 60.5, "f0": 269.3, "consonance": 0.2, "ratios": [1.0, 1.5]},
        {"t": 0.5, "gesture_token": 1, "midi": 59.49, "f0": 246.0, "consonance": 0.3, "ratios": []},
        {"t": 1.0, "gesture_token": 0, "midi": None, "f0": None, "consonance": 0.9, "ratios": [1.0, 1.25]},
        {"t": 1.5, "gesture_token": 2, "midi": 61.0, "f0": 277.2, "consonance": 0.1, "ratios": [1.0]},
    ]
    path = tmp_path / "m.json"
    obj = _export(_events_model(events), path)
    data = [f["audio_data"] for f in obj["audio_frames"].values()]
    assert [d.get("midi") for d in data] == [61, 59, None, 61]
    assert "midi" not in data[2] and data[2]["f0"] == 0.0 and data[2]["chandra_f0"] is None
    assert data[3]["chandra_midi"] == 61.0 and isinstance(data[3]["midi"], int)
    assert data[0]["consonance"] == pytest.approx(0.95) and data[0]["chandra_consonance"] == 0.2
    assert data[1]["consonance"] == 0.5 and data[2]["consonance"] == pytest.approx(0.85)
    assert data[2]["chandra_order"] == list(events[2])
    assert obj["fundamentals"] == {"1": 269.3, "2": 246.0, "4": 277.2}
    assert check_musichal_conformance(obj) == []
    assert load_musichal(path).events == events
    obj.pop("chandra")
    path.write_text(json.dumps(obj))
    back = load_musichal(path)
    assert _same(back.events, events)


def test_conversion_keeps_odd_events_exactly():
    from chandra.model import encode_json_value

    events = [
        {"chandra_consonance": "mine", "chandra_added": 3, "chandra_order": [1], "chandra": {"x": 1},
         "consonance": math.nan, "rms_db": None, "midi": "C4", "gesture_token": True, "f0": -3.0, "$t": 1},
        {"onset": "yes", "harmonic_token": 2, "percussive_token": None, "t": math.inf},
        {},
    ]
    for event in events:
        encoded = encode_json_value(event)
        data, consonance, fundamental = musichal_audio_data(encoded, event)
        json.dumps(data, allow_nan=False)
        assert data["gesture_token"] == -1 and data["consonance"] == 0.5 and data["f0"] == 0.0
        for name in MUSICHAL_NUMBER_FIELDS:
            assert name not in data or isinstance(data[name], (int, float))
        assert "midi" not in data and "onset" not in data and "rms_db" not in data
        restored = restore_audio_data(data)
        assert _same(restored, encoded), (restored, encoded)


# ---------------------------------------------------------------------------
# through a MusicHal re-save


@pytest.mark.parametrize("kind", KINDS)
def test_musichal_resave_round_trip_loses_only_what_musichal_cannot_carry(models, kind, tmp_path):
    model = models[kind]
    exported = tmp_path / "export.json"
    export_musichal(model, exported)
    with_block = compare_models(load_musichal(exported), model)
    assert all(with_block.values()), with_block

    saved = musichal_resave(exported, tmp_path / "resaved.json", queries=5)
    assert "chandra" not in saved and "sequence" not in saved
    assert saved["stats"]["total_distances_calculated"] == 5 * model.n_frames
    assert check_musichal_conformance(saved) == [
        "missing top-level key 'pattern_counter'", "missing top-level key 'sequence'"]
    back = load_musichal(tmp_path / "resaved.json")
    result = compare_models(back, model)
    kept = {k for k, ok in result.items() if ok}
    lost = LOST_IN_RESAVE | ({"oracle_search"} if model.oracle.search is not None else set())
    assert kept == set(result) - lost, result
    assert back.source_format == "musichal-v2"
    assert back.oracle.kind == model.oracle.kind
    symbols, features = (back.tokens(), None) if back.oracle.kind == "tokens" else (None, back.features)
    found = check_oracle(back.oracle, symbols=symbols, features=features)
    assert not [v for v in found if v["severity"] == "error"], found
    # (an audio oracle may carry lrs_context_mismatch warnings: matching is not
    # transitive; they are the original model's own)
    assert found == check_oracle(model.oracle, symbols=symbols, features=features)
    report = inspect_model(tmp_path / "resaved.json")
    assert not [f for f in report["findings"] if f["code"] == "ORACLE_INVARIANT" and f["severity"] == "error"]
    assert set(report["oracle"]["violations"]) <= ({"lrs_context_mismatch"} if kind.endswith("features") else set())


def test_token_export_resaved_is_not_read_as_an_audio_oracle(models, tmp_path):
    """Why a re-saved token export used to report ORACLE_INVARIANT: without the
    chandra block it was read as an audio oracle with the file's threshold,
    and links made by token equality were checked against distances. The
    graph is the factor oracle of the frames' tokens, so it is read as one."""
    model = models["dsp-tokens"]
    export_musichal(model, tmp_path / "export.json")
    musichal_resave(tmp_path / "export.json", tmp_path / "resaved.json")
    back = load_musichal(tmp_path / "resaved.json")
    # what the old import did with the 0.0 threshold older exports wrote
    as_audio = dataclasses.replace(back.oracle, kind="features", threshold=0.0, metric="euclidean")
    wrong = [v for v in check_oracle(as_audio, features=back.features) if v["code"] == "sfx_distance_above_threshold"]
    assert wrong and wrong[0]["count"] == int(np.sum(model.oracle.sfx[1:] > 0))
    assert back.oracle.kind == "tokens" and np.array_equal(back.oracle.lrs, model.oracle.lrs)
    assert any("factor oracle of the frames' gesture_token" in n for n in back.provenance["import_notes"])


def test_old_token_exports_are_recognised_after_a_resave(models, tmp_path):
    """Exports written before the marker (threshold 0.0, no stats marker)."""
    model = models["dsp-tokens"]
    obj = _export(model, tmp_path / "export.json")
    obj.pop("chandra")
    del obj["stats"]["chandra_export"]
    obj["distance_threshold"] = 0.0
    for frame in obj["audio_frames"].values():
        frame["audio_data"] = restore_audio_data(frame["audio_data"])
    (tmp_path / "old.json").write_text(json.dumps(obj))
    back = load_musichal(tmp_path / "old.json")
    assert back.oracle.kind == "tokens"
    assert check_oracle(back.oracle, symbols=back.tokens()) == []


def test_a_graph_changed_after_export_is_read_by_its_threshold(models, tmp_path):
    model = models["dsp-tokens"]
    obj = _export(model, tmp_path / "export.json")
    obj.pop("chandra")
    # the tokens changed (re-tokenised elsewhere), the graph did not
    for frame in obj["audio_frames"].values():
        frame["audio_data"]["gesture_token"] = 0
    (tmp_path / "changed.json").write_text(json.dumps(obj))
    back = load_musichal(tmp_path / "changed.json")
    assert back.oracle.kind == "features" and back.oracle.threshold == obj["distance_threshold"]
    assert any("not the factor oracle" in n for n in back.provenance["import_notes"])


def test_frame_ids_are_positions_and_a_model_keeps_its_own(tmp_path):
    events = [{"t": 0.1 * i, "gesture_token": i % 2, "midi": 60.0, "f0": 261.6, "consonance": 0.5} for i in range(4)]
    model = _events_model(events)
    model.extra_arrays["frame_ids"] = np.array([5, 9, 12, 40], dtype=np.int64)
    path = tmp_path / "ids.json"
    obj = _export(model, path)
    assert list(obj["audio_frames"]) == ["0", "1", "2", "3"] and obj["frame_counter"] == 4
    assert check_musichal_conformance(obj) == []
    assert load_musichal(path).extra_arrays["frame_ids"].tolist() == [5, 9, 12, 40]


def test_chandra_block_of_earlier_exports_still_reads(models, tmp_path):
    """A 1.0 block (audio_data unconverted, no marker) gives the model back."""
    model = models["dsp-tokens"]
    obj = _export(model, tmp_path / "export.json")
    obj["chandra"]["format_version"] = "1.0"
    del obj["chandra"]["converted_fields"]
    del obj["stats"]["chandra_export"]
    from chandra.model import decode_json_value, encode_json_value

    for i, frame in enumerate(obj["audio_frames"].values()):
        frame["audio_data"] = encode_json_value(model.events[i])
    (tmp_path / "v10.json").write_text(json.dumps(obj))
    back = load_musichal(tmp_path / "v10.json")
    assert _same(back.events, model.events) and back.oracle.kind == "tokens"
    assert decode_json_value(obj["chandra"]["oracle"]["lrs"]) == model.oracle.lrs.tolist()


# ---------------------------------------------------------------------------
# the spec document


def test_spec_document_names_every_checked_key():
    text = (REPO / "docs" / "MUSICHAL.md").read_text()
    names = (list(MUSICHAL_STATS_KEYS) + list(MUSICHAL_NUMBER_FIELDS) + [
        "format_version", "distance_threshold", "distance_function", "max_pattern_length", "feature_dimensions",
        "adaptive_threshold", "chord_similarity_weight", "size", "last", "frame_counter", "sequence_length",
        "is_trained", "last_update", "pattern_counter", "chord_progressions", "harmonic_patterns",
        "distance_history", "fundamentals", "consonances", "sequence", "states", "transitions", "suffix_links",
        "audio_frames", "timestamp", "features", "audio_data", "frame_id", "gesture_token", "consonance", "midi",
        "f0", "onset", "chandra_export", "chandra_consonance", "chandra_added", "chandra_order"])
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, missing
    for name, ratio, score in MUSICHAL_INTERVALS:
        assert name in text and f"{score:.2f}" in text, name


def test_unit_norm_features_measure_one_metric_for_both():
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, 6, 90)
    X = rng.standard_normal((6, 5))[tokens] + 0.3 * rng.standard_normal((90, 5))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    both = musichal_token_threshold(X, tokens)
    cosine = musichal_token_threshold(X, tokens, metrics=("cosine",))
    assert both["metric"] == "euclidean" and both["agreement"] == pytest.approx(cosine["agreement"])
    # the thresholds are the same cut: |a - b|^2 = 2 (1 - cos)
    assert both["threshold"] ** 2 / 2 == pytest.approx(cosine["threshold"], rel=0.05)


def test_threshold_without_tokens(tmp_path):
    # a MusicHal file with a distance function chandra's audio oracle lacks:
    # imported as a graph ("tokens" kind) without tokens; the export keeps
    # MusicHal's own threshold and function
    from test_musichal import musichal_object

    obj = musichal_object(6, v2=True)
    for frame in obj["audio_frames"].values():
        del frame["audio_data"]["gesture_token"]
    obj["distance_function"] = "manhattan"
    (tmp_path / "manhattan.json").write_text(json.dumps(obj))
    model = load_musichal(tmp_path / "manhattan.json")
    assert model.oracle.kind == "tokens" and (model.tokens() == -1).all()
    out = _export(model, tmp_path / "out.json")
    assert out["distance_function"] == "manhattan" and out["distance_threshold"] == 0.2
    assert check_musichal_conformance(out) == []
    # nothing to go by: a frame is similar only to itself and its duplicates
    bare = Model(events=[{"t": float(i)} for i in range(4)],
                 features=np.array([[0, 0], [3, 4], [0, 0], [6, 8]], dtype=np.float32),
                 oracle=build_factor_oracle([0, 1, 0, 2]))
    out = _export(bare, tmp_path / "bare.json")
    assert out["distance_function"] == "euclidean" and out["distance_threshold"] == 2.5
    assert check_musichal_conformance(out) == []


def test_cli_export_conforms(prepared_run, tmp_path, capsys):
    from chandra.cli import main

    out = tmp_path / "cli.json"
    assert main(["export", str(prepared_run.model_path()), "--format", "musichal", "-o", str(out)]) == 0
    capsys.readouterr()
    assert check_musichal_conformance(out) == []
