"""Figure builders and views of a corpus: the files x tokens heatmap is the token usage, the
ledger split per take is the ledger's per-file sections, every generated passage knows its take."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_audio import SR, melody, write

from chandra.corpus import token_usage
from chandra.corpus_view import describe_takes, generation_takes, passages, take_label, take_ledger
from chandra.errors import ChandraError
from chandra.figures.corpus import (
    generation_take_band,
    take_field_matrices,
    take_names,
    take_token_heatmap,
    token_usage_rows,
)
from chandra.figures.palette import token_color

FILES = [{"name": "a.wav", "duration": 1.5}, {"name": "b.wav", "duration": 2.0}, {"name": "c.wav", "duration": 0.5}]


def _usage(seed: int = 0, n: int = 200, k: int = 12, t: int = 3) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, k, n)
    takes = np.sort(rng.integers(0, t, n))
    return tokens, takes, token_usage(tokens, takes, n_tokens=k, n_takes=t)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heatmap_counts_equal_token_usage_and_shares_sum_to_one(seed):
    tokens, takes, usage = _usage(seed)
    fig = take_token_heatmap(usage, names=take_names(FILES))
    heat = next(t for t in fig.data if t.meta == "usage")
    z = np.asarray(heat.z)
    np.testing.assert_array_equal(z, np.asarray(usage["counts"]))
    for t in range(3):  # the counts are the frames of take t with token k
        np.testing.assert_array_equal(z[t], np.bincount(tokens[takes == t], minlength=12))
    assert list(heat.y) == ["0 · a.wav", "1 · b.wav", "2 · c.wav"]
    assert list(heat.x) == list(range(12))  # palette order: token id
    custom = np.asarray(heat.customdata)
    np.testing.assert_array_equal(custom[:, :, 0], z)
    assert "frames" in heat.hovertemplate and "token %{x}" in heat.hovertemplate
    share = np.asarray(next(t for t in take_token_heatmap(usage, names=take_names(FILES), value="share").data
                            if t.meta == "usage").z)
    np.testing.assert_allclose(share.sum(axis=1), 1.0)
    np.testing.assert_allclose(share, z / z.sum(axis=1, keepdims=True))
    strip = next(t for t in fig.data if t.meta == "palette")
    colours = [c for _, c in strip.colorscale]
    assert colours == [token_color(k) for k in range(12)]


def test_heatmap_refuses_names_that_do_not_match_the_takes():
    _, _, usage = _usage()
    with pytest.raises(ValueError, match="2 names for 3 takes"):
        take_token_heatmap(usage, names=["a", "b"])
    with pytest.raises(ValueError, match="counts"):
        take_token_heatmap(usage, names=take_names(FILES), value="bits")
    empty = take_token_heatmap({"counts": []}, names=[])
    assert empty.layout.annotations[0].text == "No token usage recorded"


def test_usage_rows_are_the_usage_per_take():
    _, takes, usage = _usage(3)
    rows = token_usage_rows(usage, FILES)
    assert [r["name"] for r in rows] == ["a.wav", "b.wav", "c.wav"]
    assert [r["frames"] for r in rows] == np.bincount(takes, minlength=3).tolist()
    assert [r["tokens used"] for r in rows] == usage["unique"]
    assert [r["only this take"] for r in rows] == usage["exclusive"]
    assert [r["owned"] for r in rows] == usage["owned"]
    assert sum(r["owned"] for r in rows) == usage["active_tokens"]


def test_take_ledger_is_the_per_file_section_and_a_lost_field_shows_in_its_take():
    from chandra.ledger import add_per_file, ledger_entry

    records = [{"t": 0.1 * i, "take": 0 if i < 4 else 1, "gesture_token": i % 3, "midi": 60.0} for i in range(10)]
    later = [dict(r) for r in records]
    for r in later[4:]:
        del r["midi"]  # take 1 loses its midi
    takes = [r["take"] for r in records]
    ledger = [add_per_file(ledger_entry("events", records), records, takes=takes, durations=[1.0, 1.0]),
              add_per_file(ledger_entry("oracle", later), later, takes=takes, durations=[1.0, 1.0])]
    one = take_ledger(ledger, 1)
    assert [e["stage"] for e in one] == ["events", "oracle"]
    assert [e["n_records"] for e in one] == [6, 6]
    assert one[0]["fields"]["midi"]["present"] == 6 and one[1]["fields"]["midi"]["present"] == 0
    assert take_ledger(ledger, 0)[1]["fields"]["midi"]["present"] == 4
    assert take_ledger([{"stage": "generated", "n_records": 3, "fields": {}}], 0) == []
    files = [{"name": "a.wav"}, {"name": "b.wav"}]
    matrices = take_field_matrices(ledger, files)
    assert [name for name, _ in matrices] == ["0 · a.wav", "1 · b.wav"]
    text0 = str(matrices[0][1].to_dict()["data"])
    text1 = str(matrices[1][1].to_dict()["data"])
    assert "LOST" not in text0 and "LOST" in text1


def test_take_label_names_index_file_and_duration():
    assert take_label({"take": 2, "name": "x.flac", "duration": 4.25}) == "2 · x.flac · 4.2 s"
    assert take_label({"take": 0, "name": "y.wav", "duration": 1.0, "label": "warm-up"}) == "0 · y.wav · 1.0 s · warm-up"


class _Model:
    """A model of three takes of 4, 3 and 5 frames, 0.5 s each."""

    def __init__(self):
        self.events = []
        for take, n in enumerate((4, 3, 5)):
            self.events += [{"t": 0.5 * i, "duration": 0.5, "take": take} for i in range(n)]

    def files(self):
        return [{"name": f"t{k}.wav"} for k in range(3)]

    def takes(self):
        return np.array([e["take"] for e in self.events], dtype=np.int64)


def test_passages_split_at_jumps_and_takes_and_cover_every_step():
    model = _Model()
    frames = [0, 1, 2, 7, 8, 9, 10, 4, 5, 1, 2]
    steps = [{"kind": "start"}] + [{"kind": "forward" if b == a + 1 else "jump"} for a, b in zip(frames, frames[1:])]
    gen = {"frames": frames, "steps": steps}
    rows = passages(gen, model)
    assert [(r["take"], r["first_frame"], r["last_frame"]) for r in rows] == [(0, 0, 2), (2, 7, 10), (1, 4, 5),
                                                                              (0, 1, 2)]
    assert [r["take_name"] for r in rows] == ["t0.wav", "t2.wav", "t1.wav", "t0.wav"]
    assert sum(r["steps"] for r in rows) == len(frames)
    assert rows[1]["source_start_s"] == 0.0 and rows[1]["source_end_s"] == 2.0  # frames 0..3 of take 2
    assert rows[1]["output_start_s"] == 1.5 and rows[-1]["output_end_s"] == 5.5
    np.testing.assert_array_equal(generation_takes(gen, model), model.takes()[frames])
    # a forward step across a take boundary (frame 3 -> 4) still starts a new passage
    assert len(passages({"frames": [2, 3, 4, 5]}, model)) == 2
    with pytest.raises(ChandraError, match="frames this model does not have"):
        generation_takes({"frames": [0, 99]}, model)
    band = generation_take_band(gen, model)
    assert {t.meta for t in band.data} == {"take 0", "take 1", "take 2"}
    widths = sum(sum(t.x) for t in band.data)
    assert widths == pytest.approx(5.5)


def test_describe_takes_reads_headers_and_names_an_unreadable_file(tmp_path):
    a = write(tmp_path / "a.wav", melody(8, sr=SR), sr=SR)
    b = write(tmp_path / "b.wav", melody(4, sr=44100), sr=44100)
    bad = tmp_path / "c.wav"
    bad.write_bytes(b"not audio at all" * 10)
    rows = describe_takes([a, b, bad])
    assert [r["name"] for r in rows] == ["a.wav", "b.wav", "c.wav"]
    assert rows[0]["sample rate (Hz)"] == SR and rows[1]["sample rate (Hz)"] == 44100
    assert rows[0]["duration (s)"] == 2.2 and rows[1]["duration (s)"] == 1.2  # notes x 0.25 s + 0.2 s
    assert rows[0]["problem"] is None and rows[2]["problem"] and rows[2]["duration (s)"] is None
