"""Audio and segments: the whole recording in a player (waveform, onset rug
and log-mel spectrogram on one time axis, a playhead that follows playback,
click to play from anywhere, zoom with a minimap), the segment table
(click a row to hear it) and an onset click track."""

from __future__ import annotations

import numpy as np
import streamlit as st

from chandra.errors import ChandraError
from chandra.figures import stages as figs
from chandra.figures.player import FINE_FRAMES, PLAYER_MAX_SECONDS, encode_audio, recording_detail, recording_view
from dashboard import common

common.page_setup("Audio and segments", icon="🌊")
st.title("Audio and segments")
run = common.require_run()


@st.cache_data(max_entries=4, show_spinner="Computing the spectrogram…")
def _mel(run_path: str, stamp: str, n_mels: int, max_frames: int):
    state = common._cached_state(run_path, stamp)
    return figs.log_mel(state.signal, state.sample_rate, n_mels=n_mels, max_frames=max_frames)


def _segment_arrays(state, with_segments: bool):
    segs = state.segments if with_segments else None
    tokens = state.tokens if segs is not None and state.tokens is not None \
        and len(state.tokens) == len(segs) else None
    if segs is None:
        return {}
    return {"onsets": segs.start, "ends": segs.end, "segment_ids": segs.id, "tokens": tokens}


# The player page is a few MB (plotly.js, the audio, zoom detail). Its parts
# are built once per setting and shared, never copied per rerun; the audio and
# the zoom detail do not change with the highlight or the drawing bounds.
@st.cache_resource(max_entries=4, show_spinner="Encoding the audio for the player…")
def _audio(run_path: str, stamp: str, audio_start: float):
    state = common._cached_state(run_path, stamp)
    return encode_audio(state.signal, state.sample_rate, start=audio_start)


@st.cache_resource(max_entries=4, show_spinner="Preparing the zoom detail…")
def _detail(run_path: str, stamp: str, with_segments: bool):
    state = common._cached_state(run_path, stamp)
    return recording_detail(state.signal, state.sample_rate, mel=_mel(run_path, stamp, 48, FINE_FRAMES),
                            **_segment_arrays(state, with_segments))


@st.cache_resource(max_entries=4, show_spinner="Drawing the recording…")
def _view(run_path: str, stamp: str, n_columns: int, max_frames: int, max_markers: int, highlight: int | None,
          audio_start: float, with_segments: bool):
    state = common._cached_state(run_path, stamp)
    return recording_view(state.signal, state.sample_rate, highlight_token=highlight,
                          mel=_mel(run_path, stamp, 48, FINE_FRAMES), n_columns=n_columns, max_frames=max_frames,
                          max_markers=max_markers, audio=_audio(run_path, stamp, audio_start),
                          detail=_detail(run_path, stamp, with_segments), **_segment_arrays(state, with_segments))


@st.cache_data(max_entries=4, show_spinner="Mixing clicks…")
def _clicks(run_path: str, stamp: str):
    state = common._cached_state(run_path, stamp)
    return figs.click_track(state.signal, state.sample_rate, state.segments.start)


state = common.page_state(run)

if not common.require_stage(run, "load", label="loading the audio"):
    st.stop()

y, sr = state.signal, state.sample_rate
has_segments = state.segments is not None
stamp = common.run_stamp(run)
tokens = state.tokens if has_segments and state.tokens is not None and len(state.tokens) == len(state.segments) \
    else None

c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("duration", f"{state.duration:.2f} s")
c2.metric("sample rate", f"{sr} Hz")
c3.metric("segments", len(state.segments) if has_segments else "—")
if has_segments and len(state.segments):
    c4.metric("median segment", f"{float(np.median(state.segments.duration)):.3f} s")
if tokens is not None:
    c5.metric("tokens used", f"{len(np.unique(tokens))}")

with st.sidebar:
    n_columns = st.slider("waveform columns", 500, 4000, 2000, step=250,
                          help="The waveform is drawn as a min/max envelope with this many columns, "
                               "in the whole view and in any zoomed window.")
    max_frames = st.slider("spectrogram columns", 200, 1500, 800, step=50,
                           help="The spectrogram is averaged (in power) to at most this many columns per view.")
    max_markers = st.slider("onset ticks drawn at most", 200, 5000, figs.MAX_MARKERS, step=100,
                            help="Beyond this many onsets in view, an even sample is drawn; zoom in to see all.")

highlight = None
if tokens is not None:
    h1, _h2 = st.columns([1, 2])
    highlight = common.token_picker(np.bincount(tokens[tokens >= 0]), key="audio_highlight", label="highlight a token",
                                    help="Shade this token's segments on the waveform and show only its ticks "
                                         "in colour. The choice carries over to Features and Vocabulary.",
                                    container=h1)

audio_start = 0.0
if state.duration > PLAYER_MAX_SECONDS:
    last = float(max(0.0, state.duration - PLAYER_MAX_SECONDS))
    audio_start = float(st.slider(f"the player holds {PLAYER_MAX_SECONDS / 60:.0f} minutes, from (s)", 0.0, last,
                                  0.0, step=60.0, key="player_from",
                                  help="A page carries at most this much audio; the charts show everything."))

try:
    view = _view(str(run.path), stamp, int(n_columns), int(max_frames), int(max_markers), highlight,
                 audio_start, has_segments)
    st.iframe(view.html, height=view.height)
    parts = ["Click the waveform, the onset rug or the spectrogram to play from there (space bar: play/pause); "
             "drag across it to zoom in time, double-click to zoom out; the strip under the time axis is the "
             "whole recording."]
    if view.onsets_total:
        parts.append(f"{view.onsets_total} onsets: all drawn." if view.onsets_drawn >= view.onsets_total else
                     f"{view.onsets_total} onsets: {view.onsets_drawn} drawn in the whole view, every one once "
                     "you zoom in far enough.")
    if view.audio.note:
        parts.append(f"Player: {view.audio.note}.")
    st.caption(" ".join(parts))
except ChandraError as exc:
    common.show_error(exc)

if not common.require_stage(run, "segment"):
    st.stop()


@st.fragment
def _segments_section() -> None:
    """Table and segment player; a click here reruns only this part (the
    recording player above is not sent again)."""
    st.subheader("Segments")
    table = figs.segment_table(state.segments, tokens=tokens)
    event = st.dataframe(table, width="stretch", hide_index=True, height=300, key="segment_table",
                         on_select="rerun", selection_mode="single-row",
                         column_config={"f0": st.column_config.NumberColumn("f0 (Hz)", help="empty = unpitched"),
                                        "centroid": st.column_config.NumberColumn("centroid (Hz)"),
                                        "rms_db": st.column_config.NumberColumn("rms (dB)")})
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    picked = int(rows[0]) if rows else None
    if picked is not None and st.session_state.get("_segment_row") != picked:
        st.session_state["play_segment"] = picked  # a clicked row plays at once
    st.session_state["_segment_row"] = picked

    p1, p2 = st.columns([1, 2])
    with p1:
        seg_id = st.number_input("play segment id", min_value=0, max_value=max(0, len(state.segments) - 1),
                                 value=0, step=1, key="play_segment", help="Or click a row of the table.")
        margin = st.slider("context either side (s)", 0.0, 1.0, 0.0, step=0.05)
    with p2:
        if len(state.segments):
            i = int(seg_id)
            a, b = float(state.segments.start[i]), float(state.segments.end[i])
            # Autoplay only when the choice changed (not on the page's first draw).
            autoplay = st.session_state.get("_segment_played", i) != i
            st.session_state["_segment_played"] = i
            common.audio_player(y, sr, a - margin, b + margin, autoplay=autoplay,
                                caption=f"segment {i}: {a:.3f}–{b:.3f} s ({b - a:.3f} s)"
                                + (f", token {int(tokens[i])}" if tokens is not None else ""))


_segments_section()

st.subheader("Onsets as clicks")
if st.toggle("mix a click at every onset over the recording", key="click_track"):
    try:
        mixed = _clicks(str(run.path), stamp)
        window = 120.0  # seconds per player: a whole long recording would be a huge WAV
        start = 0.0
        if state.duration > window:
            start = float(st.slider("from (s)", 0.0, float(state.duration - window), 0.0, step=5.0))
        common.audio_player(mixed, sr, start, start + window)
        st.caption(f"{len(state.segments)} clicks (2 kHz, 20 ms) over the signal, peak-normalised.")
    except ChandraError as exc:
        common.show_error(exc)
