"""Audio and segments: the whole recording in a player (waveform, onset rug
and log-mel spectrogram on one time axis, a playhead that follows playback,
click to play from anywhere, zoom with a minimap), the segment table
(click a row to hear it) and an onset click track. A corpus run picks one
take and shows it exactly as a one-file run (its own audio, its own seconds)."""

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


@st.cache_resource(max_entries=8, show_spinner=False)
def _source(run_path: str, stamp: str, take: int | None):
    """What the page draws: the run's state, or one take of a corpus run
    (:func:`chandra.corpus_view.take_view`: signal, segments and tokens of
    that take, times from its start)."""
    state = common._cached_state(run_path, stamp)
    if take is None:
        return state
    from chandra.corpus_view import take_view
    from chandra.rundir import RunDirectory

    run_dir = RunDirectory(run_path)
    return take_view(state, run_dir.corpus_files(), run_dir.segment_takes(), int(take))


@st.cache_data(max_entries=4, show_spinner="Computing the spectrogram…")
def _mel(run_path: str, stamp: str, n_mels: int, max_frames: int, take: int | None = None):
    state = _source(run_path, stamp, take)
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
def _audio(run_path: str, stamp: str, audio_start: float, take: int | None = None):
    state = _source(run_path, stamp, take)
    return encode_audio(state.signal, state.sample_rate, start=audio_start)


@st.cache_resource(max_entries=4, show_spinner="Preparing the zoom detail…")
def _detail(run_path: str, stamp: str, with_segments: bool, take: int | None = None):
    state = _source(run_path, stamp, take)
    return recording_detail(state.signal, state.sample_rate, mel=_mel(run_path, stamp, 48, FINE_FRAMES, take),
                            **_segment_arrays(state, with_segments))


@st.cache_resource(max_entries=4, show_spinner="Drawing the recording…")
def _view(run_path: str, stamp: str, n_columns: int, max_frames: int, max_markers: int, highlight: int | None,
          audio_start: float, with_segments: bool, take: int | None = None):
    state = _source(run_path, stamp, take)
    return recording_view(state.signal, state.sample_rate, highlight_token=highlight,
                          mel=_mel(run_path, stamp, 48, FINE_FRAMES, take), n_columns=n_columns,
                          max_frames=max_frames, max_markers=max_markers,
                          audio=_audio(run_path, stamp, audio_start, take),
                          detail=_detail(run_path, stamp, with_segments, take), **_segment_arrays(state, with_segments))


@st.cache_data(max_entries=4, show_spinner="Mixing clicks…")
def _clicks(run_path: str, stamp: str, take: int | None = None):
    state = _source(run_path, stamp, take)
    return figs.click_track(state.signal, state.sample_rate, state.segments.start)


run_state = common.page_state(run)

if not common.require_stage(run, "load", label="loading the audio"):
    st.stop()

stamp = common.run_stamp(run)
take = None
if run.is_corpus:
    files = run.corpus_files()
    if not files:
        st.warning("This corpus run has no file table yet; run it on the Home page.")
        common.home_link()
        st.stop()
    take = common.take_picker(files, key="audio_take", label=f"take (of {len(files)})")
try:
    state = _source(str(run.path), stamp, take)
except ChandraError as exc:
    common.show_error(exc)
    st.stop()
if state.signal is None:
    st.info("This corpus keeps no audio (trained without embedding it), so there is nothing to draw or play.")
    st.stop()
if take is not None:
    st.caption(f"Take **{take}** · {state.name} · starts at {state.offset_s:.2f} s of the corpus; times below are "
               "seconds from the start of this take.")

y, sr = state.signal, state.sample_rate
has_segments = state.segments is not None
# Per-take widget keys: a segment picked in one take is not carried to another of another length.
sfx = "" if take is None else f"_take{take}"
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
                 audio_start, has_segments, take)
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
    event = st.dataframe(table, width="stretch", hide_index=True, height=300, key=f"segment_table{sfx}",
                         on_select="rerun", selection_mode="single-row",
                         column_config={"f0": st.column_config.NumberColumn("f0 (Hz)", help="empty = unpitched"),
                                        "centroid": st.column_config.NumberColumn("centroid (Hz)"),
                                        "rms_db": st.column_config.NumberColumn("rms (dB)")})
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    picked = int(rows[0]) if rows else None
    if picked is not None and st.session_state.get(f"_segment_row{sfx}") != picked:
        st.session_state[f"play_segment{sfx}"] = picked  # a clicked row plays at once
    st.session_state[f"_segment_row{sfx}"] = picked

    p1, p2 = st.columns([1, 2])
    with p1:
        seg_id = st.number_input("play segment id", min_value=0, max_value=max(0, len(state.segments) - 1),
                                 value=0, step=1, key=f"play_segment{sfx}", help="Or click a row of the table.")
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
        mixed = _clicks(str(run.path), stamp, take)
        window = 120.0  # seconds per player: a whole long recording would be a huge WAV
        start = 0.0
        if state.duration > window:
            start = float(st.slider("from (s)", 0.0, float(state.duration - window), 0.0, step=5.0))
        common.audio_player(mixed, sr, start, start + window)
        st.caption(f"{len(state.segments)} clicks (2 kHz, 20 ms) over the signal, peak-normalised.")
    except ChandraError as exc:
        common.show_error(exc)
