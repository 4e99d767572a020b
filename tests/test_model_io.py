"""Saving and loading chandra model files: lossless, deterministic, atomic, strict."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chandra.errors import ChandraError, ModelFormatError
from chandra.model import FORMAT_VERSION, Model, load_model, save_model
from chandra.oracle import build_factor_oracle
from helpers_values import same


keys = st.one_of(st.text(max_size=8), st.sampled_from(["$float", "$int", "$$x", "$", "t", "ünï€ode", "a.b"]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
event_strategy = st.fixed_dictionaries(
    {"t": st.floats(min_value=0, max_value=600), "gesture_token": st.integers(0, 7)},
    optional={"consonance": st.floats(0, 1), "f0": st.one_of(st.none(), st.floats(20, 4000))},
).flatmap(lambda base: st.dictionaries(keys, json_values, max_size=5).map(lambda extra: {**base, **extra}))


def make_model(events, *, dim=5, seed=0, with_audio=True) -> Model:
    rng = np.random.default_rng(seed)
    n = len(events)
    tokens = np.array([e["gesture_token"] if isinstance(e.get("gesture_token"), int) and not isinstance(
        e.get("gesture_token"), bool) else 0 for e in events], dtype=np.int64)
    return Model(
        events=events,
        features=rng.standard_normal((n, dim)).astype(np.float32),
        oracle=build_factor_oracle(tokens),
        provenance={"encoder": {"name": "dsp"}, "seed": seed, "nested": {"list": [1, 2.5, None, "x"]}},
        vocabulary={"params": {"n_tokens": 8}, "fit_metrics": {"entropy_bits": 2.5}},
        centers=rng.standard_normal((8, dim)).astype(np.float32),
        ledger=[{"stage": "events", "fields": {"t": {"count": n}}}],
        audio=rng.standard_normal(1000).astype(np.float32) if with_audio else None,
        sample_rate=22050 if with_audio else None,
        extra_arrays={"frame_ids": np.arange(n, dtype=np.int64)},
    )


def assert_models_equal(a: Model, b: Model) -> None:
    assert same(a.events, b.events)
    assert a.features.dtype == np.float32 and np.array_equal(a.features, b.features)
    for key, value in a.oracle.to_arrays().items():
        assert np.array_equal(value, b.oracle.to_arrays()[key]), key
    assert a.oracle.to_meta() == b.oracle.to_meta()
    assert same(a.provenance, b.provenance)
    assert same(a.vocabulary, b.vocabulary)
    assert same(a.ledger, b.ledger)
    assert np.array_equal(a.centers, b.centers)
    assert (a.audio is None and b.audio is None) or np.array_equal(a.audio, b.audio)
    assert a.sample_rate == b.sample_rate
    assert a.extra_arrays.keys() == b.extra_arrays.keys()
    for key in a.extra_arrays:
        assert np.array_equal(a.extra_arrays[key], b.extra_arrays[key])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_strategy, min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_round_trip_is_lossless(tmp_path, events, seed):
    model = make_model(events, seed=seed)
    path = save_model(model, tmp_path / "m.chandra")
    back = load_model(path)
    assert back.source_format == "chandra"
    assert_models_equal(model, back)


def test_empty_model_round_trips(tmp_path):
    model = Model(events=[], features=np.zeros((0, 4), dtype=np.float32))
    back = load_model(save_model(model, tmp_path / "e.chandra"))
    assert back.events == [] and back.features.shape == (0, 4) and back.oracle is None


def test_model_helpers():
    model = make_model([{"t": 0.0, "gesture_token": 3}, {"t": 1.0}, {"t": 2.0, "gesture_token": None},
                        {"t": 3.0, "gesture_token": True}], dim=3)
    assert model.n_frames == 4 and model.feature_dim == 3
    assert model.tokens().tolist() == [3, -1, -1, -1]
    records = model.event_records(include_features=True)
    assert records[1]["features"] == model.features[1].tolist()
    assert "features" not in model.events[1]
    assert "features" not in model.event_records()[0]


def test_same_model_saves_byte_identical(tmp_path):
    model = make_model([{"t": i * 0.5, "gesture_token": i % 3, "x": [i, {"y": None}]} for i in range(20)])
    a = save_model(model, tmp_path / "a.chandra").read_bytes()
    b = save_model(model, tmp_path / "b.chandra").read_bytes()
    assert a == b
    with zipfile.ZipFile(io.BytesIO(a)) as zf:
        assert zf.namelist()[0] == "model.json"
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())


def test_file_is_stored_and_small(tmp_path):
    model = make_model([{"t": float(i), "gesture_token": i % 4} for i in range(500)], dim=64, with_audio=False)
    path = save_model(model, tmp_path / "m.chandra")
    assert path.stat().st_size <= 1.2 * model.features.nbytes + 64 * 1024


def test_failed_save_leaves_nothing_and_keeps_existing_file(tmp_path, monkeypatch):
    model = make_model([{"t": 0.0, "gesture_token": 1}, {"t": 1.0, "gesture_token": 2}])
    target = tmp_path / "m.chandra"
    target.write_bytes(b"previous contents")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, target)
    with pytest.raises(OSError):
        save_model(model, tmp_path / "new.chandra")
    assert target.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.chandra"]


def test_unstorable_event_value_names_event_and_field(tmp_path):
    model = make_model([{"t": 0.0, "gesture_token": 1}, {"t": 1.0, "gesture_token": 2, "tags": {"set": {1, 2}}}])
    with pytest.raises(ModelFormatError, match=r"event 1.*\['tags'\]\['set'\].*set"):
        save_model(model, tmp_path / "m.chandra")
    bad_key = make_model([{"t": 0.0, "gesture_token": 1, "m": {3: "x"}}])
    with pytest.raises(ModelFormatError, match="event 0.*int key"):
        save_model(bad_key, tmp_path / "m.chandra")
    assert not list(tmp_path.iterdir())


def test_inconsistent_model_is_refused(tmp_path):
    model = make_model([{"t": 0.0, "gesture_token": 1}, {"t": 1.0, "gesture_token": 2}])
    model.features = model.features[:1]
    with pytest.raises(ModelFormatError, match="one row per event"):
        save_model(model, tmp_path / "m.chandra")


def _rezip(src: Path, dst: Path, *, drop=(), replace=None):
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            zout.writestr(name, replace.get(name, zin.read(name)))
        for name, data in replace.items():
            if name not in zin.namelist():
                zout.writestr(name, data)


@pytest.fixture()
def good_file(tmp_path) -> Path:
    return save_model(make_model([{"t": 0.0, "gesture_token": 1}, {"t": 1.0, "gesture_token": 2}]),
                      tmp_path / "good.chandra")


def _one_line_error(path) -> str:
    with pytest.raises(ModelFormatError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert isinstance(info.value, ChandraError)
    return message


def test_bad_files_give_readable_errors(tmp_path, good_file):
    empty = tmp_path / "empty.chandra"
    empty.write_bytes(b"")
    assert "empty" in _one_line_error(empty)

    text = tmp_path / "notes.chandra"
    text.write_text("hello, this is not a model\n")
    assert "not a chandra model" in _one_line_error(text)

    truncated = tmp_path / "truncated.chandra"
    truncated.write_bytes(good_file.read_bytes()[: good_file.stat().st_size // 2])
    assert "zip" in _one_line_error(truncated)

    no_json = tmp_path / "nojson.chandra"
    _rezip(good_file, no_json, drop=("model.json",))
    assert "model.json" in _one_line_error(no_json)

    doc = json.loads(zipfile.ZipFile(good_file).read("model.json"))
    doc["format_version"] = "9.9"
    future = tmp_path / "future.chandra"
    _rezip(good_file, future, replace={"model.json": json.dumps(doc)})
    message = _one_line_error(future)
    assert "'9.9'" in message and FORMAT_VERSION in message and "supported" in message

    broken_json = tmp_path / "brokenjson.chandra"
    _rezip(good_file, broken_json, replace={"model.json": "{not json"})
    message = _one_line_error(broken_json)
    assert "model.json" in message and "malformed JSON" in message and "{not" not in message

    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"states": {"0": {"len": 0, ')
    assert "malformed JSON" in _one_line_error(malformed)

    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2, 3]")
    assert "list" in _one_line_error(a_list)

    other = tmp_path / "other.json"
    other.write_text('{"name": "not a model", "values": [1, 2]}')
    assert "not a MusicHal model" in _one_line_error(other)

    assert "no such file" in _one_line_error(tmp_path / "missing.chandra")


def test_array_shape_mismatch_is_refused(tmp_path, good_file):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 5), dtype=np.float32))
    doc = json.loads(zipfile.ZipFile(good_file).read("model.json"))
    doc["arrays"]["features"]["shape"] = [3, 5]
    bad = tmp_path / "shape.chandra"
    _rezip(good_file, bad, replace={"arrays/features.npy": buffer.getvalue(), "model.json": json.dumps(doc)})
    assert "features" in _one_line_error(bad) and "3" in _one_line_error(bad)


def test_pickled_member_is_refused(tmp_path, good_file):
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    bad = tmp_path / "pickle.chandra"
    _rezip(good_file, bad, replace={"arrays/centers.npy": buffer.getvalue()})
    message = _one_line_error(bad)
    assert "arrays/centers.npy" in message


def test_format_1_0_files_load_with_rep_on_the_suffix_link(tmp_path):
    # Version 1.1 added oracle.rep (exact context); a 1.0 file has none and
    # its lrs is the Lefebvre-Lecroq context shared with the suffix link.
    from chandra.oracle import check_oracle, lefebvre_lecroq_lrs

    tokens = [0, 1, 1, 2, 0, 1, 2, 3, 0, 1, 2]  # "abbcabcdabc": state 11's repeat ends at 7, its link is 4
    model = make_model([{"t": float(i), "gesture_token": k} for i, k in enumerate(tokens)])
    current = save_model(model, tmp_path / "current.chandra")
    doc = json.loads(zipfile.ZipFile(current).read("model.json"))
    # A one-file model without vocabulary state needs nothing of 1.2 (corpus) or 1.3, so it is written as 1.1.
    assert doc["format_version"] == "1.1" and FORMAT_VERSION == "1.3" and "oracle.rep" in doc["arrays"]
    assert np.array_equal(load_model(current).oracle.rep, model.oracle.rep)

    old_lrs = lefebvre_lecroq_lrs(model.oracle.sfx, model.oracle.trn_ptr, model.oracle.trn_dst)
    buffer = io.BytesIO()
    np.save(buffer, old_lrs)
    member = doc["arrays"].pop("oracle.rep")["member"]
    doc["format_version"] = "1.0"
    legacy = tmp_path / "legacy.chandra"
    _rezip(current, legacy, drop=(member,),
           replace={"model.json": json.dumps(doc), doc["arrays"]["oracle.lrs"]["member"]: buffer.getvalue()})
    back = load_model(legacy)
    assert np.array_equal(back.oracle.rep, back.oracle.sfx) and np.array_equal(back.oracle.lrs, old_lrs)
    found = check_oracle(back.oracle, symbols=np.array(tokens))
    assert {r["code"] for r in found} == {"lrs_not_longest"} and all(r["severity"] == "warning" for r in found)

    doc["format_version"] = "1.1"  # a 1.1 file must carry rep
    broken = tmp_path / "broken.chandra"
    _rezip(current, broken, drop=(member,), replace={"model.json": json.dumps(doc)})
    assert "rep" in _one_line_error(broken)
