"""Model inspector: open a chandra or MusicHal 9000 model and see what it lost.

Findings come first (errors red, warnings amber), then the stage x field
matrix, the token strip, feature health, oracle health and provenance. A
MusicHal *training summary* (``…_summary.json``) is shown for what it is:
what training recorded, with findings where its numbers betray a fault.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import common

from chandra.errors import ChandraError
from chandra.figures.diagnostics import (
    feature_health_figure,
    field_matrix_figure,
    findings_table,
    oracle_health_figure,
    oracle_shape,
    token_strip_figure,
)

#: The real MusicHal 9000 model from DESIGN §5, when the shared folder is there.
REFERENCE_MODEL = common.REPO_ROOT.parent / "shared" / "reference" / "musichal_base_model_test_error_fix.json"
PATH_KEY = "inspector_path"
INPUT_KEY = "inspector_path_input"


@st.cache_data(show_spinner="Reading the model…", max_entries=8)
def inspect_file(path: str, mtime: float, size: int) -> dict:
    """Everything the page shows, JSON-able and small; keyed by path + mtime + size
    (never by the model's arrays)."""
    from chandra.inspect import inspect_loaded
    from chandra.ledger import json_safe, model_ledger_entry
    from chandra.model import load_model
    from chandra.musichal_summary import MusicHalSummaryError, inspect_summary

    try:
        model = load_model(path)
    except MusicHalSummaryError as exc:
        report = inspect_summary(path, document=exc.document, metadata=exc.metadata)
        return {"report": report, "ledger": [], "oracle_shape": None}
    report = inspect_loaded(model)
    report["path"], report["size_bytes"] = path, size
    history = [e for e in (model.ledger or []) if isinstance(e, dict)]
    ledger = history + [model_ledger_entry(model, stage="model")]
    shape = oracle_shape(model.oracle) if model.oracle is not None else None
    return {"report": report, "ledger": json_safe(ledger), "oracle_shape": shape}


def _extra_roots() -> tuple[Path, ...]:
    """The bundled example model is allowed by itself (not its folder)."""
    return (REFERENCE_MODEL,) if REFERENCE_MODEL.is_file() else ()


def _set_path(path: str) -> None:
    st.session_state[PATH_KEY] = path
    st.session_state[INPUT_KEY] = path


def _choose_model() -> str | None:
    # The text box is the one place the path is edited; PATH_KEY (a plain
    # handle, not a widget) keeps it when the user visits another page.
    if INPUT_KEY not in st.session_state:
        st.session_state[INPUT_KEY] = st.session_state.get(PATH_KEY, "")
    run = common.current_run()
    run_model = Path(run.path) / "model.chandra" if run is not None else None
    cols = st.columns(3)
    if run_model is not None and run_model.exists():
        if cols[0].button("Current run's model", help=str(run_model)):
            _set_path(str(run_model))
    else:
        cols[0].caption("The current run has no saved model yet." if run is not None else "No current run.")
    if REFERENCE_MODEL.exists():
        if cols[1].button("Example: MusicHal reference model",
                          help=f"{REFERENCE_MODEL} — a real MusicHal 9000 model with the documented faults"):
            _set_path(str(REFERENCE_MODEL))
    with cols[2]:
        upload = st.file_uploader("Upload a model", type=["chandra", "json", "zip"], label_visibility="collapsed")
    if upload is not None:
        try:
            saved = str(common.save_upload(upload.name, upload.getvalue(), kind="model"))
        except (ChandraError, OSError) as exc:
            common.show_error(exc)
        else:
            if st.session_state.get(PATH_KEY) != saved and st.session_state.get("inspector_upload") != saved:
                st.session_state["inspector_upload"] = saved
                _set_path(saved)
    typed = st.text_input("Model file on the server", key=INPUT_KEY,
                          placeholder="/path/to/model.chandra or musichal_model.json", help=common.roots_hint())
    st.session_state[PATH_KEY] = typed.strip()
    return st.session_state[PATH_KEY] or None


def _show_summary(report: dict) -> None:
    """A MusicHal training summary: what training recorded (no frames, no graph)."""
    facts = report.get("training") or {}
    findings = report.get("findings") or []
    summary = report.get("summary") or {}
    st.info("This file is a **MusicHal 9000 training summary**: it records what training did (events, oracle "
            "statistics, times, flags) but holds no frames and no oracle graph. The model itself is the trainer's "
            "`…_model.json` file.", icon=":material/summarize:")
    model = facts.get("model_file") or {}
    if model.get("named") or model.get("beside"):
        text = f"Describes the model **{model.get('named') or model.get('beside')}**"
        if model.get("named_in"):
            text += f" (named in `{model['named_in']}`)"
        st.markdown(text + ".")
        if model.get("beside"):
            st.button("Inspect that model", key="inspect_described_model", help=model["beside"],
                      on_click=_set_path, args=(model["beside"],))
    st.subheader(f"Findings — {summary.get('error', 0)} errors, {summary.get('warning', 0)} warnings, "
                 f"{summary.get('info', 0)} info")
    common.render_findings(findings, empty="No findings: the summary's numbers show no fault.")
    oracle = facts.get("oracle") or {}

    def show(value) -> str:
        if value is None:
            return "—"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    cols = st.columns(5)
    cols[0].metric("training successful", show(facts.get("training_successful")))
    cols[1].metric("events processed", show(facts.get("events_processed")))
    cols[2].metric("oracle states", show(oracle.get("total_states")))
    cols[3].metric("distinct patterns", show(oracle.get("total_patterns")))
    cols[4].metric("distance threshold", show(oracle.get("distance_threshold")),
                   help=f"distance function: {oracle.get('distance_function', '—')}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Audio oracle statistics**")
        st.dataframe([{"statistic": k, "value": show(v)} for k, v in oracle.items()] or [{"statistic": "—",
                     "value": "not recorded"}], hide_index=True, width="stretch")
        if facts.get("tokens"):
            st.markdown("**Gesture tokens**")
            st.dataframe([{"statistic": k, "value": show(v)} for k, v in facts["tokens"].items()],
                         hide_index=True, width="stretch")
    with right:
        st.markdown("**Training times (s)**")
        st.dataframe([{"step": k, "seconds": round(v, 2)} for k, v in (facts.get("times") or {}).items()]
                     or [{"step": "—", "seconds": None}], hide_index=True, width="stretch")
        st.markdown("**Flags**")
        st.dataframe([{"flag": k, "value": show(v)} for k, v in (facts.get("flags") or {}).items()]
                     or [{"flag": "—", "value": "none"}], hide_index=True, width="stretch")
    if facts.get("rhythm_oracle"):
        st.caption("Rhythm oracle: " + ", ".join(f"{k} {show(v)}" for k, v in facts["rhythm_oracle"].items()))
    if facts.get("counts"):
        st.caption("Counters: " + ", ".join(f"{k} {show(v)}" for k, v in facts["counts"].items()))
    with st.expander("Full inspect report (JSON, as `chandra inspect --json`)"):
        st.json(report, expanded=False)


def _show(data: dict) -> None:
    report, ledger = data["report"], data["ledger"]
    if report.get("format") == "musichal-summary":
        _show_summary(report)
        return
    findings = report.get("findings") or []
    summary = report.get("summary") or {}
    st.subheader(f"Findings — {summary.get('error', 0)} errors, {summary.get('warning', 0)} warnings, "
                 f"{summary.get('info', 0)} info")
    common.render_findings(findings, empty="No findings: every check passed.")
    with st.expander("Findings as a table"):
        st.dataframe(findings_table(findings), hide_index=True, width="stretch")

    tok = report.get("fields", {}).get("gesture_token", {})
    feats = report.get("fields", {}).get("features", {})
    size = report.get("size_bytes")
    st.caption(f"Format **{report.get('format', '?')}**"
               + (f" · {size / 1e6:.2f} MB" if isinstance(size, (int, float)) else "")
               + (f" · training ledger: {', '.join(report['ledger_stages'])}" if report.get("ledger_stages")
                  else " · no training ledger in the file"))
    cols = st.columns(4)
    cols[0].metric("frames", report.get("frames", 0))
    cols[1].metric("feature dim", report.get("feature_dim", 0))
    cols[2].metric("frames with gesture_token", f"{tok.get('present', 0)} of {report.get('frames', 0)}")
    cols[3].metric("frames with features", f"{feats.get('present', 0)} of {report.get('frames', 0)}")

    st.subheader("Fields surviving each stage")
    st.caption("Rows: the model's training ledger plus 'model' (the frames in this file). "
               "Red: a field present earlier is missing or fewer here.")
    st.plotly_chart(field_matrix_figure(ledger, findings=findings), width="stretch",
                    key="inspector_matrix")
    n_tokens = (report.get("tokens") or {}).get("n_tokens")
    st.plotly_chart(token_strip_figure(ledger, n_tokens=n_tokens), width="stretch", key="inspector_strip")

    # Stacked, each the page's width: side by side the taller oracle panels left a blank beside the features.
    st.plotly_chart(feature_health_figure({"stage": "model", "features": report.get("features")}),
                    width="stretch", key="inspector_features")
    health = data.get("oracle_shape") or report.get("oracle")
    st.plotly_chart(oracle_health_figure(health), width="stretch", key="inspector_oracle")
    time = report.get("time")
    if time:
        st.caption(f"Time axis '{time.get('field')}': {time.get('t_min'):.6g} … {time.get('t_max'):.6g} s, "
                   f"{'monotonic' if time.get('monotonic') else 'NOT monotonic'}"
                   + (f", {100 * time['fraction_in_range']:.0f}% inside the audio duration"
                      if time.get("fraction_in_range") is not None else ""))
    with st.expander("Provenance"):
        st.json(report.get("provenance") or {}, expanded=False)
    with st.expander("Full inspect report (JSON, as `chandra inspect --json`)"):
        st.json(report, expanded=False)


common.page_setup("Model inspector", icon="🔎")
st.title("Model inspector")
st.caption("Open a chandra model (.chandra), a MusicHal 9000 JSON model or a MusicHal training summary and see "
           "what it holds, what it lost, and what is wrong with it.")
path = _choose_model()
if path:
    st.caption(f"Inspecting `{path}`")
    try:
        p = common.resolve_user_path(path, extra=_extra_roots())
        stat = p.stat()
        data = inspect_file(str(p), stat.st_mtime, stat.st_size)
    except FileNotFoundError:
        st.error(f"{path}: no such file")
    except (ChandraError, OSError, ValueError) as exc:
        common.show_error(exc)
    else:
        _show(data)
else:
    # Name only the ways that exist here (a fresh clone has no reference model beside it).
    ways = []
    run = common.current_run()
    if run is not None and (Path(run.path) / "model.chandra").exists():
        ways.append("open the current run's model")
    if REFERENCE_MODEL.exists():
        ways.append("open the MusicHal example")
    ways += ["upload a file", "type a path on the server"]
    st.info(f"To inspect a model, {', '.join(ways[:-1])} or {ways[-1]}.")
