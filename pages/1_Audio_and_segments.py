"""Audio and segments: waveform envelope and log-mel spectrogram with onset
lines on one time axis, the segment table, segment playback and an onset
click track."""

from __future__ import annotations

import numpy as np
import streamlit as st

from chandra.errors import ChandraError
from chandra.figures import stages as figs
from dashboard import common

common.page_setup("Audio and segments", icon="🌊")
st.title("Audio and segments")
run = common.require_run()


@st.cache_data(max_entries=8, show_spinner="Computing the spectrogram…")
def _mel(run_path: str, stamp: str, n_mels: int, max_frames: int):
    state = common._cached_state(run_path, stamp)
    return figs.log_mel(state.signal, state.sample_rate, n_mels=n_mels, max_frames=max_frames)


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

c1, c2, c3, c4 = st.columns(4)
c1.metric("duration", f"{state.duration:.2f} s")
c2.metric("sample rate", f"{sr} Hz")
c3.metric("segments", len(state.segments) if has_segments else "—")
if has_segments and len(state.segments):
    c4.metric("median segment", f"{float(np.median(state.segments.duration)):.3f} s")

with st.sidebar:
    n_columns = st.slider("waveform columns", 500, 4000, 2000, step=250,
                          help="The waveform is drawn as a min/max envelope with this many columns.")
    max_frames = st.slider("spectrogram columns", 200, 900, 700, step=50)

try:
    mel = _mel(str(run.path), stamp, 48, int(max_frames))
    fig = figs.waveform_spectrogram_figure(y, sr, onsets=state.segments.start if has_segments else None,
                                           n_columns=int(n_columns), mel=mel)
    st.plotly_chart(fig, width="stretch", key="wave_spec")
except ChandraError as exc:
    common.show_error(exc)

if not common.require_stage(run, "segment"):
    st.stop()

st.subheader("Segments")
tokens = state.tokens if state.tokens is not None and len(state.tokens) == len(state.segments) else None
table = figs.segment_table(state.segments, tokens=tokens)
st.dataframe(table, width="stretch", hide_index=True, height=300,
             column_config={"f0": st.column_config.NumberColumn("f0 (Hz)", help="empty = unpitched"),
                            "centroid": st.column_config.NumberColumn("centroid (Hz)"),
                            "rms_db": st.column_config.NumberColumn("rms (dB)")})

p1, p2 = st.columns([1, 2])
with p1:
    seg_id = st.number_input("play segment id", min_value=0, max_value=max(0, len(state.segments) - 1), value=0,
                             step=1, key="play_segment")
    margin = st.slider("context either side (s)", 0.0, 1.0, 0.0, step=0.05)
with p2:
    if len(state.segments):
        i = int(seg_id)
        a, b = float(state.segments.start[i]), float(state.segments.end[i])
        common.audio_player(y, sr, a - margin, b + margin,
                            caption=f"segment {i}: {a:.3f}–{b:.3f} s ({b - a:.3f} s)"
                            + (f", token {int(tokens[i])}" if tokens is not None else ""))

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
