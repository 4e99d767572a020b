"""Events and fields: which field survives which stage (stage x field
matrix with counts and percentages), per-frame field presence along the
timeline, and the time-axis check — with a loud error when a field is lost."""

from __future__ import annotations

import numpy as np
import streamlit as st

from chandra.figures import stages as figs
from dashboard import common

common.page_setup("Events and fields", icon="🧾")
st.title("Events and fields")
run = common.require_run()

FIELD_CODES = ("FIELD_LOST", "RECORDS_LOST", "TOKENS_MISSING", "TOKEN_COLLAPSE", "ROUNDTRIP_CHANGED")
TIME_CODES = ("EPOCH_TIME", "TIME_OUT_OF_RANGE", "TIME_NOT_MONOTONIC")


@st.cache_data(max_entries=6, show_spinner="Scanning events…")
def _presence_figure(run_path: str, stamp: str):
    state = common._cached_state(run_path, stamp)
    return figs.field_presence_figure(state.events, duration=state.duration)


state = common.page_state(run)

ledger = state.ledger
findings = common.run_findings(run, ledger)

st.subheader("Field survival")
lost = [f for f in findings if f.get("code") in FIELD_CODES]
common.render_findings(lost, empty="No field is lost between stages." if ledger else None)
if ledger:
    common.field_matrix_section(ledger, findings=findings, files=run.corpus_files() if run.is_corpus else [],
                                key="field_matrix")
    with st.expander("stage × field counts and percentages", expanded=bool(lost)):
        st.dataframe(figs.field_matrix_table(ledger), width="stretch")
else:
    st.info("The ledger is empty: run the pipeline on the Home page.")

if not common.require_stage(run, "events"):
    st.stop()

events = state.events or []
m = st.columns(4)
m[0].metric("events", len(events))
with_token = sum(1 for e in events if e.get("gesture_token") is not None)
m[1].metric("with gesture_token", f"{with_token}/{len(events)}")
# Count what the matrix above shows for the events row, so the two agree.
events_entry = next((e for e in ledger if e.get("stage") == "events"), None)
listed = list((events_entry or {}).get("fields") or {})
all_fields = list(dict.fromkeys(name for e in ledger for name in (e.get("fields") or {})))
outside = [f for f in listed if events and f not in events[0]]
not_carried = [f for f in all_fields if f not in listed]
m[2].metric("fields at 'events'", f"{len(listed)} of {len(all_fields)}" if listed else (len(events[0]) if events else 0),
            help="Columns of the matrix above that the 'events' stage carries. "
                 + (f"Not carried: {', '.join(not_carried)} (they belong to earlier stages). " if not_carried else "")
                 + (f"Stored beside the event records, not in them: {', '.join(outside)}." if outside else ""))
m[3].metric("segments", len(state.segments) if state.segments is not None else "—")

st.subheader("Fields per frame along the timeline")
if events:
    st.plotly_chart(_presence_figure(str(run.path), common.run_stamp(run)), width="stretch", key="presence")
    with st.expander("first events"):
        st.dataframe(events[:50], width="stretch")

st.subheader("Time axis")
st.caption("Times must be seconds from the start of the file (never wall-clock), inside the audio and "
           "non-decreasing; events are joined to segments by id, never by nearest time.")
t = np.array([float(e["t"]) for e in events if isinstance(e.get("t"), (int, float))], dtype=np.float64)
duration = float(state.duration or 0.0)
corpus_files = run.corpus_files() if run.is_corpus else []
if corpus_files and t.size:
    # A corpus: every take's t counts from that take's start; judge each event against its own take.
    from chandra.figures.corpus import take_names

    timed = [e for e in events if isinstance(e.get("t"), (int, float))]
    takes = np.array([int(e.get("take", -1)) for e in timed], dtype=np.int64)
    lengths = np.array([float(r.get("duration") or 0.0) for r in corpus_files])
    known = (takes >= 0) & (takes < len(corpus_files))
    own = np.where(known, lengths[np.clip(takes, 0, len(corpus_files) - 1)], np.nan)
    back = (np.diff(t) < 0) & (np.diff(takes) == 0)
    rows = []
    for k, name in enumerate(take_names(corpus_files)):
        mine = t[takes == k]
        rows.append({"take": name, "events": int(mine.size),
                     "t min (s)": round(float(mine.min()), 3) if mine.size else None,
                     "t max (s)": round(float(mine.max()), 3) if mine.size else None,
                     "take duration (s)": round(float(lengths[k]), 3),
                     "steps backwards": int(np.count_nonzero(back & (takes[1:] == k)))})
    c = st.columns(4)
    c[0].metric("takes", len(corpus_files))
    c[1].metric("t max in its take", f"{float(np.nanmax(t)):.3f} s")
    c[2].metric("longest take", f"{float(lengths.max()):.3f} s")
    c[3].metric("steps backwards within takes", int(np.count_nonzero(back)))
    problems = []
    if t.max() > 1e9:
        problems.append(f"t reaches {t.max():.6g} s: that is wall-clock epoch time, not seconds from file start")
    outside = int(np.count_nonzero(~known | (t < -0.05) | (t > own + 0.05)))
    if outside and t.max() <= 1e9:
        problems.append(f"{outside} event time(s) fall outside their own take's audio (or name no take)")
    if np.count_nonzero(back):
        problems.append(f"t goes backwards {int(np.count_nonzero(back))} time(s) within a take")
    for p in problems:
        st.error(p, icon=":material/schedule:")
    if not problems:
        st.success(f"Time axis OK: {t.size} event times, each inside its own take and non-decreasing within it.")
    st.dataframe(rows, hide_index=True, width="stretch", key="time_per_take")
elif t.size == 0:
    st.error("No event carries a numeric time 't'.")
else:
    c = st.columns(4)
    c[0].metric("t min", f"{t.min():.3f} s")
    c[1].metric("t max", f"{t.max():.3f} s")
    c[2].metric("audio duration", f"{duration:.3f} s")
    n_back = int(np.count_nonzero(np.diff(t) < 0))
    c[3].metric("steps backwards", n_back)
    problems = []
    if t.max() > 1e9:
        problems.append(f"t reaches {t.max():.6g} s: that is wall-clock epoch time, not seconds from file start")
    elif t.min() < -0.05 or t.max() > duration + 0.05:
        problems.append(f"t spans {t.min():.3f}–{t.max():.3f} s, outside the audio [0, {duration:.3f}] s")
    if n_back:
        problems.append(f"t goes backwards {n_back} time(s): events are not in time order")
    for p in problems:
        st.error(p, icon=":material/schedule:")
    if not problems:
        st.success(f"Time axis OK: {t.size} event times inside [0, {duration:.2f}] s and non-decreasing.")
common.render_findings([f for f in findings if f.get("code") in TIME_CODES])
st.dataframe(figs.time_axis_table(ledger), width="stretch", hide_index=True)
