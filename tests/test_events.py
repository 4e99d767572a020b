import numpy as np
import pytest

from chandra.errors import ChandraError
from chandra.events import EVENT_FIELDS, build_events, hz_to_midi, validate_events
from chandra.segment import Segments


def _segments(n=4):
    start = np.arange(n, dtype=float) * 0.5
    return Segments(id=np.arange(n), start=start, end=start + 0.5, rms=np.full(n, 0.1),
                    f0=np.array([220.0, np.nan, 440.0, 110.0][:n]), centroid=np.full(n, 1000.0))


def test_join_by_segment_id_carries_every_field():
    segs = _segments()
    tokens = np.array([3, 1, 3, 0])
    harmony = [{"consonance": 0.1 * i, "ratios": [1.0, 1.5]} for i in range(4)]
    events = build_events(segs, tokens, harmony)
    assert len(events) == 4
    for i, ev in enumerate(events):
        assert set(EVENT_FIELDS) <= set(ev)
        assert ev["segment_id"] == i and ev["gesture_token"] == tokens[i]
        assert ev["t"] == segs.start[i] and ev["duration"] == pytest.approx(0.5)
        assert ev["consonance"] == pytest.approx(0.1 * i)
    assert events[1]["f0"] is None and events[1]["midi"] is None
    assert events[2]["midi"] == pytest.approx(69.0)
    validate_events(events, duration=2.0)


def test_mismatched_lengths_refuse_to_join():
    segs = _segments()
    with pytest.raises(ChandraError, match="one-to-one"):
        build_events(segs, np.zeros(3, dtype=int), [{"consonance": 1.0}] * 4)
    with pytest.raises(ChandraError, match="harmony"):
        build_events(segs, np.zeros(4, dtype=int), [{"consonance": 1.0}] * 5)


def test_validate_events_catches_epoch_time_and_missing_token():
    events = build_events(_segments(), np.zeros(4, dtype=int), [{"consonance": 1.0, "ratios": []}] * 4)
    events[2]["t"] = 1.758e9
    with pytest.raises(ChandraError, match="outside the audio"):
        validate_events(events, duration=2.0)
    events[2]["t"] = 1.0
    events[1]["gesture_token"] = None
    with pytest.raises(ChandraError, match="gesture_token"):
        validate_events(events)


def test_hz_to_midi():
    assert hz_to_midi(440.0) == pytest.approx(69.0)
    assert hz_to_midi(float("nan")) is None and hz_to_midi(0.0) is None
