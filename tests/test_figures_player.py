"""Decimated drawing at any length, and the self-contained recording player.

The waveform, the onset rug and the spectrogram must stay readable and small
at 2,000 and at 20,000 segments: envelopes are min/max per column (checked
against a brute-force loop), the rug never draws more than ``MAX_MARKERS``
ticks, the spectrogram carries no overlay, and the page that plays the
recording is bounded and fetches nothing from a network.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from chandra.figures import player
from chandra.figures import stages as figs
from chandra.figures.palette import token_color

SR = 8000


def _brute_envelope(y: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    n = y.size
    lo, hi = [], []
    for j in range(m):
        a, b = (j * n) // m, ((j + 1) * n) // m
        lo.append(min(y[a:b]))
        hi.append(max(y[a:b]))
    return np.asarray(lo, np.float32), np.asarray(hi, np.float32)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), m=st.integers(1, 400), seed=st.integers(0, 2**16))
def test_envelope_matches_a_brute_force_min_max(n, m, seed):
    y = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    t, lo, hi = figs.envelope(y, SR, n_columns=m)
    cols = min(m, n)
    ref_lo, ref_hi = _brute_envelope(y, cols)
    assert t.size == lo.size == hi.size == cols
    assert np.array_equal(lo, ref_lo) and np.array_equal(hi, ref_hi)
    assert lo.min() == y.min() and hi.max() == y.max()  # no sample escapes
    assert np.all(np.diff(t) > 0) and 0 < t[0] and t[-1] < n / SR


def test_envelope_keeps_a_one_sample_click():
    y = np.zeros(SR * 60, np.float32)
    y[123_457] = 0.9  # one sample in a minute of silence
    _t, _lo, hi = figs.envelope(y, SR, n_columns=500)
    assert hi.max() == pytest.approx(0.9) and np.count_nonzero(hi) == 1


def test_pool_spectrogram_averages_power_like_a_brute_force_loop():
    rng = np.random.default_rng(3)
    S_db = rng.uniform(-80, 0, size=(6, 103)).astype(np.float32)
    times = np.arange(103) * 0.05
    t, _f, pooled = figs.pool_spectrogram((times, np.arange(6.0), S_db), 10)
    group = int(np.ceil(103 / 10))
    assert pooled.shape == (6, int(np.ceil(103 / group)))
    for c in range(pooled.shape[1]):
        cols = slice(c * group, min(103, (c + 1) * group))
        ref = 10 * np.log10(np.mean(10 ** (S_db[:, cols].astype(np.float64) / 10), axis=1))
        assert np.allclose(pooled[:, c], ref, atol=1e-3)
        assert t[c] == pytest.approx(times[cols].mean())
    same = figs.pool_spectrogram((times, np.arange(6.0), S_db), 500)
    assert same[2] is S_db or np.array_equal(same[2], S_db)


def test_thin_indices_bound_window_and_ends():
    t = np.sort(np.random.default_rng(4).uniform(0, 3600, 20_000))
    keep = figs.thin_indices(t, max_markers=2000)
    assert keep.size == 2000 and keep[0] == 0 and keep[-1] == 19_999 and np.all(np.diff(keep) > 0)
    gaps = np.diff(keep)
    assert gaps.max() - gaps.min() <= 1  # even
    inside = figs.thin_indices(t, max_markers=2000, start=100.0, end=160.0)
    expected = np.flatnonzero((t >= 100.0) & (t < 160.0))
    assert np.array_equal(inside, expected)  # a zoomed window few enough: every onset
    assert figs.thin_indices(t, max_markers=10, start=5000.0).size == 0


def _synthetic(minutes: float, n_segments: int, *, sr: int = SR, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * sr)
    y = (0.2 * rng.standard_normal(n)).astype(np.float32)
    starts = np.sort(rng.uniform(0, n / sr, n_segments))
    ends = np.append(starts[1:], n / sr)
    tokens = rng.integers(0, 64, n_segments)
    frames = 4000
    mel = (np.linspace(0, n / sr, frames), np.geomspace(40, sr / 2, 48),
           rng.uniform(-80, 0, (48, frames)).astype(np.float32))
    return y, starts, ends, tokens, mel


@pytest.mark.parametrize("n_segments", [2000, 20_000])
def test_figure_stays_bounded_at_any_number_of_segments(n_segments):
    y, starts, ends, tokens, mel = _synthetic(20, n_segments)
    fig = figs.waveform_spectrogram_figure(y, SR, onsets=starts, ends=ends, tokens=tokens, mel=mel,
                                           highlight_token=5)
    by_meta = {t.meta: t for t in fig.data}
    rug = by_meta["onsets"]
    assert [t.meta for t in fig.data].count("onsets") == 1  # one trace, not one line per onset
    assert len(rug.x) == min(n_segments, figs.MAX_MARKERS)
    assert rug.marker.symbol == "line-ns-open"
    # The spectrogram row holds the spectrogram only: no overlay tints it.
    assert {t.meta for t in fig.data if t.yaxis == "y3"} == {"mel", "mel_detail"}
    assert len(by_meta["mel"].x) <= 800 and len(by_meta["wave"].x) == 2 * 2000
    # highlight: token 5's segments only, at most MAX_MARKERS rectangles
    rect_x = np.asarray(by_meta["highlight"].x, dtype=float).reshape(-1, 6)
    assert 0 < rect_x.shape[0] <= figs.MAX_MARKERS
    assert set(np.round(rect_x[:, 0], 6)) <= set(np.round(starts[tokens == 5], 6))
    colours = set(rug.marker.color)
    assert colours <= {token_color(5), figs.RUG_DIM_COLOUR}
    assert figs.count_points(fig) <= figs.MAX_POINTS
    assert len(fig.to_json()) < 600_000


def test_rug_colours_follow_tokens_and_highlight():
    assert figs.rug_colours([1, 2]) == [token_color(1), token_color(2)]
    assert figs.rug_colours([1, 2], 2) == [figs.RUG_DIM_COLOUR, token_color(2)]
    assert figs.rug_colours(None) == []


def test_zoom_detail_is_bounded_and_covers_every_sample():
    y, starts, ends, tokens, mel = _synthetic(30, 20_000)
    detail = player.recording_detail(y, SR, mel=mel, onsets=starts, ends=ends, tokens=tokens)
    env = detail["env"]
    q = np.frombuffer(base64.b64decode(env["b64"]), dtype=np.int8).reshape(-1, 2)
    assert env["n"] == player.FINE_COLUMNS == q.shape[0]
    _t, lo, hi = figs.envelope(y, SR, n_columns=player.FINE_COLUMNS)
    # Quantised to 8 bits outward: the drawn band always contains the samples.
    assert np.all(q[:, 0] * env["scale"] <= lo + 1e-7) and np.all(q[:, 1] * env["scale"] >= hi - 1e-7)
    assert np.all(q[:, 1] * env["scale"] - hi <= env["scale"] + 1e-7)
    m = detail["mel"]
    assert m["n"] <= player.FINE_FRAMES and m["n_mels"] == 48
    on = detail["onsets"]
    assert on["n"] == 20_000
    assert np.allclose(np.frombuffer(base64.b64decode(on["start"]), np.float32), starts, atol=1e-3)
    assert np.array_equal(np.frombuffer(base64.b64decode(on["token"]), np.int32), tokens)
    # Bounded by constants, not by the length of the recording.
    assert len(json.dumps(detail)) < 1_200_000


def test_encode_audio_round_trip_window_and_long_files():
    sr = 22050
    t = np.arange(5 * sr) / sr
    y = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    a = player.encode_audio(y, sr)
    assert a.mime == "audio/ogg" and a.start == 0.0 and a.end == pytest.approx(5.0) and a.note is None
    back, back_sr = sf.read(io.BytesIO(a.data), dtype="float32")
    assert back_sr == sr and abs(back.size - y.size) < sr // 100
    assert len(a.data) < y.size * 2 / 4  # compressed well below 16-bit PCM
    assert a.data_uri().startswith("data:audio/ogg;base64,")
    w = player.encode_audio(y, sr, start=1.0, max_seconds=2.0)
    assert (w.start, w.end) == (1.0, 3.0) and "0:01.0–0:03.0 of 0:05.0" in w.note
    long = player.encode_audio(y, sr, full_rate_seconds=1.0)
    assert long.sample_rate == 16_000 and "16 kHz" in long.note
    wav = player.encode_audio(y, sr, fmt="wav")
    info = sf.info(io.BytesIO(wav.data))
    assert wav.mime == "audio/wav" and info.subtype == "PCM_16" and info.samplerate == 16_000
    assert info.frames == pytest.approx(5 * 16_000, abs=2)
    long_wav = player.encode_audio(np.zeros(sr * 400, np.float32), sr, fmt="wav")
    assert long_wav.end == player.WAV_MAX_SECONDS and "of 6:40.0" in long_wav.note
    with pytest.raises(ValueError):
        player.encode_audio(y, sr, fmt="mp3")


def _payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="chandra-payload">(.*?)</script>', html, re.S)
    assert m, "no payload"
    return json.loads(m.group(1))


def test_player_html_is_self_contained_and_wires_audio_to_the_chart():
    from plotly.offline import get_plotlyjs

    sr = 8000
    y, starts, ends, tokens, mel = _synthetic(0.5, 120, sr=sr)
    view = player.recording_view(y, sr, onsets=starts, ends=ends, tokens=tokens, mel=mel, highlight_token=3)
    html = view.html
    bundle = get_plotlyjs()
    assert bundle in html  # plotly.js inline, from the installed package
    own = html.replace(bundle, "")
    # Nothing is fetched: no URL in the page's own markup and script, no src/href to a network.
    assert not re.search(r"https?://|//cdn|<link\b", own, re.I), re.findall(r".{40}https?://.{40}", own)
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(?!data:)[a-z]+:""", own, re.I)
    # the audio, as a data URI of the encoded recording
    audio_b64 = base64.b64encode(view.audio.data).decode()
    assert f'<audio id="chandra-audio" controls preload="auto" src="data:audio/ogg;base64,{audio_b64}"' in html
    # the playhead follows playback; a click on the chart seeks and plays
    assert 'audio.addEventListener("timeupdate"' in own and 'gd.on("plotly_click"' in own
    assert "audio.currentTime = rel" in own and "audio.play()" in own
    assert 'id="chandra-playhead"' in own and 'gd.on("plotly_relayout"' in own
    payload = _payload(html)
    assert {t.get("meta") for t in payload["figure"]["data"]} >= {"wave", "mel", "mel_detail", "onsets", "highlight"}
    assert payload["highlight"] == 3 and payload["max_markers"] == figs.MAX_MARKERS
    assert payload["detail"]["onsets"]["n"] == 120
    assert view.onsets_total == 120 and view.onsets_drawn == 120
    sizes = view.payload_bytes
    assert sizes["total"] < sizes["plotly_js"] + sizes["audio"] + 1_500_000
    assert view.height > payload["figure"]["layout"]["height"]


def test_player_payload_cannot_close_its_script_element():
    text = player._script_json({"name": "</script><script>alert(1)</script><!--"})
    assert "</" not in text and "<!--" not in text and "<" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script><!--"}
