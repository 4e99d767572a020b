"""MusicHal 9000 JSON import (base, v2.0, modular) and v2.0 export."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chandra.errors import ModelFormatError
from chandra.model import Model, load_model, save_model
from chandra.musichal import export_musichal, load_musichal
from chandra.musichal_conformance import restore_audio_data
from chandra.oracle import build_factor_oracle
from helpers_musichal import write_musichal_file
from helpers_values import same

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "musichal_base_model_test_error_fix.json"
if not REFERENCE.exists():
    REFERENCE = Path("/work/shared/reference/musichal_base_model_test_error_fix.json")


def musichal_object(n: int, dim: int = 4, *, seed: int = 0, v2: bool = False) -> dict:
    """A small MusicHal-shaped object: every frame links to the root (MusicHal's usual outcome)."""
    rng = np.random.default_rng(seed)
    states = {"0": {"len": 0, "link": -1, "next": {str(i): i + 1 for i in range(n)}}}
    for i in range(1, n + 1):
        states[str(i)] = {"len": i, "link": 0, "next": {str(i): i + 1} if i < n else {}}
    transitions = {f"0_{i}": i + 1 for i in range(n)}
    transitions.update({f"{i}_{i}": i + 1 for i in range(1, n)})
    frames = {
        str(i): {
            "timestamp": 1.75e9 + i,
            "features": rng.standard_normal(dim).tolist(),
            "audio_data": {"t": 1.75e9 + i, "f0": 220.0 + i, "midi": 57, "onset": True, "tags": ["a", {"b": None}]},
            "frame_id": i,
        }
        for i in range(n)
    }
    obj = {
        "states": states, "transitions": transitions, "suffix_links": {str(i): 0 for i in range(1, n + 1)},
        "sequence": list(range(n)), "sequence_length": n, "audio_frames": frames, "frame_counter": n,
        "distance_threshold": 0.2, "distance_function": "cosine", "pattern_counter": 0,
        "max_pattern_length": 50, "is_trained": True, "stats": {"feature_dimensions": dim},
    }
    if v2:
        obj.update({
            "format_version": "2.0", "feature_dimensions": dim, "adaptive_threshold": False,
            "chord_similarity_weight": 0.3, "size": n + 1, "last": n, "last_update": 1.75e9,
            "chord_progressions": {}, "harmonic_patterns": {}, "distance_history": [0.1, 0.3],
            "threshold_adjustments": 0, "fundamentals": {str(i): 110.0 * i for i in range(1, n + 1)},
            "consonances": {str(i): 0.5 for i in range(1, n + 1)},
        })
        for i, frame in frames.items():
            frame["audio_data"].update({"gesture_token": int(i) % 3, "harmonic_token": 1, "percussive_token": 2})
    return obj


def write(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_reference_file_loads_with_its_pathologies_visible():
    model = load_model(REFERENCE)
    assert model.source_format == "musichal-base"
    assert model.n_frames == 1000
    assert not any("gesture_token" in e for e in model.events)
    assert (model.tokens() == -1).all()
    assert model.features.shape == (1000, 6) and model.features.dtype == np.float32
    assert model.oracle is not None and model.oracle.kind == "features"
    assert (model.oracle.sfx[1:] == 0).all() and model.oracle.sfx[0] == -1
    assert (model.oracle.lrs == 0).all()
    assert model.oracle.transitions(0).size == 1000
    assert min(e["t"] for e in model.events) > 1e9
    facts = model.provenance["musichal"]
    assert facts["root_out_degree"] == 1000 and facts["n_states"] == 1001 and facts["n_transitions"] == 1999
    assert facts["declared"]["sequence_length"] == 1000 and facts["declared"]["frame_counter"] == 1000
    assert model.provenance["distance_function"] == "euclidean"
    assert model.provenance["feature_dimensions"] == 6
    assert any("LRS" in note for note in model.provenance["import_notes"])
    assert model.extra_arrays["frame_timestamps"].min() > 1e9
    # events are the file's audio_data dicts, untouched
    raw = json.loads(REFERENCE.read_text())
    assert model.events[17] == raw["audio_frames"]["17"]["audio_data"]
    assert np.array_equal(model.features[17], np.float32(raw["audio_frames"]["17"]["features"]))


def test_v2_and_modular_shapes_load(tmp_path):
    v2 = musichal_object(6, v2=True)
    model = load_model(write(tmp_path, "v2.json", v2))
    assert model.source_format == "musichal-v2"
    assert model.tokens().tolist() == [0, 1, 2, 0, 1, 2]
    assert model.events[2] == v2["audio_frames"]["2"]["audio_data"]
    facts = model.provenance["musichal"]
    assert facts["fundamentals"] == [None] + [110.0 * i for i in range(1, 7)]
    assert facts["consonances"][1:] == [0.5] * 6
    assert np.array_equal(model.extra_arrays["distance_history"], [0.1, 0.3])
    assert model.oracle.metric == "cosine" and model.oracle.threshold == 0.2

    modular = {"metadata": {"trainer": "modular", "version": 3},
               "data": {"audio_oracle": v2, "rhythm_oracle": {"patterns": [1, 2]}, "training_time": 12.5}}
    model_m = load_model(write(tmp_path, "modular.json", modular))
    assert model_m.source_format == "musichal-modular"
    assert model_m.events == model.events
    assert np.array_equal(model_m.features, model.features)
    assert model_m.provenance["musichal"]["metadata"] == {"trainer": "modular", "version": 3}
    assert "rhythm_oracle" in model_m.provenance["musichal"]["data_keys"]


def test_frames_out_of_order_and_ragged_features(tmp_path):
    obj = musichal_object(4, dim=3)
    frames = obj["audio_frames"]
    frames["2"]["features"] = [1.0, 2.0]
    obj["audio_frames"] = {k: frames[k] for k in ["3", "1", "0", "2"]}
    model = load_model(write(tmp_path, "ragged.json", obj))
    assert [e["f0"] for e in model.events] == [220.0, 221.0, 222.0, 223.0]
    assert model.extra_arrays["feature_lengths"].tolist() == [3, 3, 2, 3]
    assert model.features[2].tolist() == [1.0, 2.0, 0.0]
    notes = " ".join(model.provenance["import_notes"])
    assert "zero-padded" in notes and "sorted" in notes


def test_transitions_map_used_when_states_lack_next(tmp_path):
    obj = musichal_object(5)
    for state in obj["states"].values():
        del state["next"]
    model = load_model(write(tmp_path, "nonext.json", obj))
    assert model.oracle.n_transitions == 9
    assert model.provenance["musichal"]["root_out_degree"] == 5


def test_nan_literals_fall_back_to_python_json(tmp_path):
    obj = musichal_object(3)
    text = json.dumps(obj).replace('"f0": 221.0', '"f0": NaN')
    path = tmp_path / "nan.json"
    path.write_text(text)
    model = load_model(path)
    assert math.isnan(model.events[1]["f0"])
    assert any("read whole" in note for note in model.provenance["import_notes"])


@pytest.mark.parametrize("kind", ["tokens", "features"])
def test_lrs_recomputed_from_graph_matches_chandra_oracle(tmp_path, kind):
    from chandra.oracle import build_audio_oracle

    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 3, 200)
    features = (np.eye(3)[tokens] + 0.01 * rng.standard_normal((200, 3))).astype(np.float32)
    oracle = (build_factor_oracle(tokens) if kind == "tokens"
              else build_audio_oracle(features, threshold=0.1, metric="euclidean"))
    assert oracle.lrs.max() > 2
    model = Model(events=[{"t": i * 0.1, "gesture_token": int(k)} for i, k in enumerate(tokens)],
                  features=features, oracle=oracle)
    path = export_musichal(model, tmp_path / "fo.json")
    # with chandra's block the exact context comes back as it was
    restored = load_model(path).oracle
    assert np.array_equal(restored.lrs, oracle.lrs) and np.array_equal(restored.rep, oracle.rep)
    obj = json.loads(path.read_text())
    del obj["chandra"]  # as MusicHal itself re-saves it: no LRS anywhere, the stats marker kept
    back = load_model(write(tmp_path, "resaved.json", obj))
    assert np.array_equal(back.oracle.sfx, oracle.sfx)
    assert np.array_equal(back.oracle.trn_dst, oracle.trn_dst)
    from chandra.oracle import check_oracle, lefebvre_lecroq_lrs

    if kind == "tokens":
        # the marker says "factor oracle over gesture tokens": the importer
        # rebuilds it from the frames' tokens, exact context included
        assert back.oracle.kind == "tokens"
        assert np.array_equal(back.oracle.lrs, oracle.lrs) and np.array_equal(back.oracle.rep, oracle.rep)
    # a file that is not ours (no block, no marker) is read as the audio oracle
    # its threshold describes: its context comes back exactly from the
    # features and threshold (for our own audio oracle: the stored lrs)
    del obj["stats"]["chandra_export"]
    plain = load_model(write(tmp_path, "plain.json", obj))
    assert plain.oracle.kind == "features"
    assert np.array_equal(plain.oracle.sfx, oracle.sfx)
    if kind == "features":
        assert np.array_equal(plain.oracle.lrs, oracle.lrs)
    errors = [r for r in check_oracle(plain.oracle, features=plain.features) if r["severity"] == "error"]
    assert errors == []
    # without usable features only the graph is left: the Lefebvre-Lecroq
    # context shared with the suffix link, a lower bound of the exact one
    for frame in obj["audio_frames"].values():
        frame["features"] = []
    bare = load_model(write(tmp_path, "bare.json", obj))
    assert np.array_equal(bare.oracle.lrs, lefebvre_lecroq_lrs(oracle.sfx, oracle.trn_ptr, oracle.trn_dst))
    assert np.array_equal(bare.oracle.rep, bare.oracle.sfx)
    if kind == "tokens":
        assert np.all(bare.oracle.lrs <= oracle.lrs)


keys = st.one_of(st.text(max_size=6), st.sampled_from(["$float", "$$", "ü", "t.x"]))
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**30), 10**30),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extras=st.lists(st.dictionaries(keys, values, max_size=4), min_size=1, max_size=10),
       seed=st.integers(0, 10_000), audio_oracle=st.booleans())
def test_export_import_round_trip_is_lossless(tmp_path, extras, seed, audio_oracle):
    from chandra.oracle import build_audio_oracle

    rng = np.random.default_rng(seed)
    n = len(extras)
    tokens = rng.integers(0, 4, n)
    events = [{**extra, "t": i * 0.25, "gesture_token": int(tokens[i]), "f0": None} for i, extra in enumerate(extras)]
    features = (rng.standard_normal((n, 7)) * 10.0 ** rng.integers(-30, 30)).astype(np.float32)
    oracle = (build_audio_oracle(features, threshold=0.5, metric="cosine") if audio_oracle
              else build_factor_oracle(tokens))
    model = Model(events=events, features=features, oracle=oracle, provenance={"seed": seed, "x": [1.5, None]},
                  vocabulary={"n_tokens": 4}, centers=rng.standard_normal((4, 7)).astype(np.float32),
                  ledger=[{"stage": "events", "n": n}], sample_rate=22050)
    path = export_musichal(model, tmp_path / "out.json")
    back = load_musichal(path)
    assert back.source_format == "musichal-v2"
    assert same(back.events, model.events)
    assert np.array_equal(back.features, model.features)
    for key, value in model.oracle.to_arrays().items():
        assert np.array_equal(back.oracle.to_arrays()[key], value), key
    assert back.oracle.to_meta() == model.oracle.to_meta()
    assert same({k: v for k, v in back.provenance.items() if k in model.provenance}, model.provenance)
    assert back.vocabulary == model.vocabulary and back.ledger == model.ledger
    assert np.array_equal(back.centers, model.centers) and back.sample_rate == 22050
    assert back.extra_arrays["frame_timestamps"].tolist() == [e["t"] for e in events]
    # and the chandra round trip of the imported model keeps it all
    again = load_model(save_model(back, tmp_path / "again.chandra"))
    assert same(again.events, back.events) and same(again.provenance, back.provenance)


def test_export_writes_the_v2_keys(tmp_path):
    model = load_model(REFERENCE)
    path = export_musichal(model, tmp_path / "ref.json")
    obj = json.loads(path.read_text())
    for key in ("states", "transitions", "suffix_links", "sequence", "sequence_length", "audio_frames",
                "frame_counter", "distance_threshold", "distance_function", "max_pattern_length",
                "feature_dimensions", "adaptive_threshold", "chord_similarity_weight", "size", "last",
                "is_trained", "last_update", "stats", "chord_progressions", "harmonic_patterns",
                "distance_history", "threshold_adjustments", "fundamentals", "consonances"):
        assert key in obj, key
    assert obj["format_version"] == "2.0"
    assert len(obj["audio_frames"]) == 1000 and len(obj["transitions"]) == 1999
    frame = obj["audio_frames"]["5"]
    assert frame["frame_id"] == 5
    # audio_data is the event plus what MusicHal reads and the event lacks:
    # no token (-1, never a requested token) and MusicHal's neutral
    # consonance (no pitches to score); the import takes them off again.
    added = ("gesture_token", "consonance", "chandra_added")
    assert {k: v for k, v in frame["audio_data"].items() if k not in added} == model.events[5]
    assert frame["audio_data"]["gesture_token"] == -1 and frame["audio_data"]["consonance"] == 0.5
    assert frame["audio_data"]["chandra_added"] == ["gesture_token", "consonance"]
    assert restore_audio_data(frame["audio_data"]) == model.events[5]
    assert frame["timestamp"] == model.events[5]["t"]


def test_export_without_oracle_is_refused(tmp_path):
    model = Model(events=[{"t": 0.0}], features=np.zeros((1, 2), dtype=np.float32))
    with pytest.raises(ModelFormatError, match="no oracle"):
        export_musichal(model, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_large_file_is_streamed(tmp_path):
    path = tmp_path / "large.json"
    write_musichal_file(path, n_frames=1300, dim=768)
    size = path.stat().st_size
    assert size > 15e6
    tracemalloc.start()
    try:
        model = load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.features.shape == (1300, 768)
    # json.load alone needs ~3x the file for a float-heavy file; streaming
    # needs the float32 matrix (~1/5 of the text) plus one frame at a time.
    assert peak < 1.0 * size, (peak, size)
