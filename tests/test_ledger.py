"""Ledger entries: exact counts on hand-made records."""

from __future__ import annotations

import json
import math
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from chandra.errors import ChandraError
from chandra.ledger import (
    LEDGER_STAGES,
    feature_stats,
    field_matrix,
    is_present,
    json_safe,
    ledger_entry,
    time_stats,
    to_records,
    token_stats,
)


def _records():
    return [
        {"t": 0.0, "gesture_token": 0, "f0": 110.0, "label": "a"},
        {"t": 0.5, "gesture_token": 1, "f0": None, "label": "b"},
        {"t": 1.0, "gesture_token": 1, "f0": float("nan")},
        {"t": 1.5, "gesture_token": None, "f0": 220.0, "label": None},
    ]


def test_field_counts_exact():
    entry = ledger_entry("events", _records())
    assert entry["stage"] == "events"
    assert entry["n_records"] == 4
    f = entry["fields"]
    assert f["t"]["present"] == 4 and f["t"]["fraction"] == 1.0
    assert f["gesture_token"]["present"] == 3
    assert f["f0"]["present"] == 2  # None and NaN are both absent
    assert f["label"]["present"] == 2  # missing key and None
    assert f["label"]["fraction"] == 0.5


def test_forced_fields_listed_with_zero():
    entry = ledger_entry("events", _records(), fields=["features", "consonance"])
    assert entry["fields"]["features"] == {"present": 0, "fraction": 0.0, "types": []}
    assert entry["fields"]["consonance"]["present"] == 0


def test_entry_is_json_and_small():
    rng = np.random.default_rng(0)
    recs = [{"t": i * 0.1, "gesture_token": int(k)} for i, k in enumerate(rng.integers(0, 8, 5000))]
    entry = ledger_entry("tokens", recs, features=rng.normal(size=(5000, 64)), n_tokens=8)
    text = json.dumps(entry, allow_nan=False)
    assert len(text) < 4000


def test_token_metrics_from_records():
    entry = ledger_entry("events", _records(), n_tokens=4)
    tok = entry["tokens"]
    assert tok["n"] == 4 and tok["present"] == 3 and tok["missing"] == 1
    assert tok["unique"] == 2 and tok["n_tokens"] == 4
    assert tok["counts"] == [1, 2, 0, 0]
    assert tok["empty_tokens"] == [2, 3]
    assert tok["top_token"] == 1
    assert tok["top_share"] == pytest.approx(2 / 3)
    p = np.array([1 / 3, 2 / 3])
    assert tok["entropy_bits"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert tok["max_entropy_bits"] == pytest.approx(2.0)


def test_token_argument_overrides_records_and_adds_field():
    recs = [{"t": float(i)} for i in range(6)]
    entry = ledger_entry("tokens", recs, tokens=np.array([0, 0, 1, 2, -1, 3]), n_tokens=4)
    assert entry["fields"]["gesture_token"]["present"] == 5
    assert entry["tokens"]["unique"] == 4
    assert entry["tokens"]["missing"] == 1


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.uint8])
def test_token_stats_integer_array_path_matches_record_path(dtype):
    # An integer token array is summarised without a Python loop; it must
    # give exactly what the same ids as a list of records give, including
    # missing (-1) and out-of-range ids.
    rng = np.random.default_rng(4)
    ids = rng.integers(-1 if np.issubdtype(dtype, np.signedinteger) else 0, 12, size=400).astype(dtype)
    for k in (8, 12, None):
        assert token_stats(ids, n_tokens=k) == token_stats(ids.tolist(), n_tokens=k)


def test_token_metrics_is_the_strict_form_of_token_stats():
    from chandra.errors import VocabularyError
    from chandra.vocabulary import token_metrics

    tokens = [0, 1, 1, 2, 5, 5, 5, None, -1]
    stats = token_stats(tokens, n_tokens=8)
    assert stats.pop("out_of_range") == 0 and stats.pop("non_integer") == 0
    assert token_metrics(iter(tokens), n_tokens=8) == stats  # an iterator is read once
    for bad in ([0, 9], [0, "x"], [0, True], [0, 2.5]):
        token_stats(bad, n_tokens=8)  # counted ...
        with pytest.raises(VocabularyError):  # ... refused
            token_metrics(bad, n_tokens=8)


def test_token_stats_counts_out_of_range_instead_of_raising():
    stats = token_stats([0, 1, 9, 9, "x"], n_tokens=4)
    assert stats["out_of_range"] == 2
    assert stats["non_integer"] == 1
    assert stats["unique"] == 3
    assert stats["top_token"] == 9


def test_no_tokens_field_means_no_token_stats():
    entry = ledger_entry("segments", [{"t": 0.0}, {"t": 1.0}])
    assert entry["tokens"] is None


def test_feature_stats_exact():
    X = np.array([
        [1.0, 0.0, 0.0, 2.0],
        [1.0, 3.0, 0.0, 2.0],
        [1.0, 0.0, 0.0, 2.0],   # duplicate of row 0
        [0.0, 0.0, 0.0, 0.0] ,  # zero row
        [np.nan, 1.0, 0.0, 0.0],  # non-finite
    ])
    stats = feature_stats(X)
    assert stats["n_rows"] == 5 and stats["dim"] == 4
    assert stats["nonfinite_rows"] == 1
    assert stats["zero_rows"] == 1
    # over the 4 finite rows: col 2 is always 0 -> dead; others vary (zero row included)
    assert stats["dead_dims"] == 1
    assert stats["nonzero_dims"] == 3
    assert stats["duplicate_rate"] == pytest.approx(1 / 4)
    assert stats["norm_min"] == 0.0
    assert stats["norm_max"] == pytest.approx(math.sqrt(14))
    assert stats["effective_dim_median"] == 2.0
    assert stats["used_dim_max"] == 4


def test_feature_stats_detects_zero_padding():
    X = np.zeros((10, 768))
    X[:, :15] = np.random.default_rng(1).normal(size=(10, 15))
    stats = feature_stats(X)
    assert stats["nonzero_dims"] == 15
    assert stats["used_dim_max"] == 15
    assert stats["padded_rows"] == 10
    assert stats["dead_dims"] == 753


def test_features_argument_counts_finite_rows_as_present():
    X = np.ones((4, 3))
    X[2, 1] = np.inf
    entry = ledger_entry("features", [{"t": float(i)} for i in range(4)], features=X)
    assert entry["fields"]["features"]["present"] == 3
    assert entry["features"]["nonfinite_rows"] == 1


def test_ragged_feature_vectors_in_records():
    recs = [{"features": [1.0, 2.0, 3.0]}, {"features": [1.0, 2.0]}, {"features": None}]
    entry = ledger_entry("x", recs)
    assert entry["fields"]["features"]["present"] == 2
    feats = entry["features"]
    assert feats["dim"] == 3 and feats["ragged"] is True
    assert feats["row_dim_min"] == 2 and feats["row_dim_max"] == 3


def test_time_checks():
    recs = [{"t": 0.0}, {"t": 2.0}, {"t": 1.0}, {"t": 12.0}]
    time = time_stats(recs, duration=10.0)
    assert time["field"] == "t"
    assert time["t_min"] == 0.0 and time["t_max"] == 12.0
    assert time["monotonic"] is False and time["n_decreasing"] == 1
    assert time["fraction_in_range"] == pytest.approx(0.75)
    assert time_stats(recs)["fraction_in_range"] is None


def test_time_falls_back_to_start():
    assert time_stats([{"start": 1.0}, {"start": 2.0}])["field"] == "start"
    assert time_stats([{"x": 1}]) is None


def test_constant_scalar_field_recorded():
    recs = [{"consonance": 0.5} for _ in range(5)]
    assert ledger_entry("e", recs)["fields"]["consonance"]["constant"] == 0.5
    recs[0]["consonance"] = 0.4
    assert "constant" not in ledger_entry("e", recs)["fields"]["consonance"]


def test_dataframe_input():
    df = pd.DataFrame(_records())
    entry = ledger_entry("events", df)
    assert entry["n_records"] == 4
    assert entry["fields"]["gesture_token"]["present"] == 3  # None becomes NaN in the frame
    assert entry["fields"]["f0"]["present"] == 2
    assert entry["tokens"]["unique"] == 2


@dataclass
class _Event:
    t: float
    gesture_token: int | None


class _Plain:
    def __init__(self, t, token):
        self.t = t
        self.gesture_token = token
        self._private = "hidden"


def test_object_inputs():
    for recs in (
        [_Event(0.0, 1), _Event(1.0, None)],
        [_Plain(0.0, 1), _Plain(1.0, None)],
        [namedtuple("E", "t gesture_token")(0.0, 1), namedtuple("E", "t gesture_token")(1.0, None)],
    ):
        entry = ledger_entry("events", recs)
        assert entry["n_records"] == 2
        assert set(entry["fields"]) == {"t", "gesture_token"}
        assert entry["fields"]["gesture_token"]["present"] == 1


def test_columnar_inputs():
    @dataclass
    class Columns:
        start: np.ndarray
        end: np.ndarray

    recs = to_records(Columns(np.array([0.0, 1.0]), np.array([1.0, 2.0])))
    assert recs == [{"start": 0.0, "end": 1.0}, {"start": 1.0, "end": 2.0}]
    assert to_records({"t": [0, 1, 2]}) == [{"t": 0}, {"t": 1}, {"t": 2}]
    assert to_records(None) == []


@pytest.mark.parametrize("bad", [42, "text", np.zeros((3, 2)), {"t": 1}, [1, 2]])
def test_unreadable_records_raise_chandra_error(bad):
    with pytest.raises(ChandraError):
        to_records(bad)


def test_is_present():
    assert is_present(0) and is_present(0.0) and is_present("") and is_present([])
    assert not is_present(None) and not is_present(float("nan")) and not is_present(np.float32("nan"))


def test_field_matrix():
    ledger = [
        ledger_entry("events", [{"t": 0.0, "gesture_token": 1}, {"t": 1.0, "gesture_token": 2}]),
        ledger_entry("saved", [{"t": 0.0}, {"t": 1.0}]),
        ledger_entry("generated", []),
    ]
    stages, fields, present, fraction = field_matrix(ledger)
    assert stages == ["events", "saved", "generated"]
    assert fields == ["t", "gesture_token"]
    assert present.tolist() == [[2, 2], [2, 0], [0, 0]]
    assert fraction[1].tolist() == [1.0, 0.0]
    assert np.isnan(fraction[2]).all()


def test_json_safe():
    value = {"a": np.float32(1.5), "b": np.arange(20), "c": float("nan"), "d": (1, 2), "e": "x" * 50}
    out = json_safe(value, max_items=4, max_chars=10)
    assert out["a"] == 1.5
    assert out["b"] == [0, 1, 2, 3, "... (20 items)"]
    assert out["c"] is None
    assert out["d"] == [1, 2]
    assert out["e"] == "x" * 10 + "..."
    json.dumps(out, allow_nan=False)
    cut = json_safe({str(i): i for i in range(10)}, max_keys=3)
    assert list(cut) == ["0", "1", "2", "..."]


def test_stage_names_are_canonical_order():
    assert LEDGER_STAGES[0] == "segments" and LEDGER_STAGES[-1] == "generated"
    assert LEDGER_STAGES.index("saved") < LEDGER_STAGES.index("reloaded")
