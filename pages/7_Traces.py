"""Traces: read a directory written by chandra.trace.Tracer (from any trainer)
and show what survived each checkpoint and where each fault first appeared."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import common

from chandra.errors import ChandraError
from chandra.figures.diagnostics import field_matrix_figure, findings_table, token_strip_figure

EXAMPLE_SCRIPT = common.REPO_ROOT / "examples" / "faulty_trainer.py"
EXAMPLE_NAME = "example_trace"
DIR_KEY = "trace_dir"


def example_dir() -> Path:
    return Path(common.runs_root()) / EXAMPLE_NAME


@st.cache_data(show_spinner="Reading the trace…", max_entries=8)
def read_trace(directory: str, index_mtime: float) -> dict:
    """:func:`chandra.trace.trace_report`, keyed by directory + index.json mtime."""
    from chandra.trace import trace_report

    return trace_report(directory)


def make_example() -> Path:
    """Run examples/faulty_trainer.py's ``main`` into the runs folder."""
    spec = importlib.util.spec_from_file_location("chandra_example_faulty_trainer", EXAMPLE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.main(example_dir()))


def _show_findings(findings: list[dict]) -> None:
    if not findings:
        st.success("No findings: every checkpoint kept its data.")
        return
    for f in findings:
        text = f"**{f['code']}** at checkpoint **`{f.get('stage') or '—'}`**: {f['message']}"
        if f["severity"] == "error":
            st.error(text, icon="🛑")
        elif f["severity"] == "warning":
            st.warning(text, icon="⚠️")
        else:
            st.info(text, icon="ℹ️")


def _show(report: dict) -> None:
    checkpoints = report.get("checkpoints") or []
    findings = report.get("findings") or []
    summary = report.get("summary") or {}
    st.subheader(f"Findings — {summary.get('error', 0)} errors, {summary.get('warning', 0)} warnings")
    _show_findings(findings)
    table = findings_table(findings).rename(columns={"stage": "checkpoint"})
    st.dataframe(table, hide_index=True, width="stretch")

    if not checkpoints:
        st.info("The trace has no checkpoints yet.")
        return
    ledger = [c["ledger"] for c in checkpoints]
    st.subheader("Survival across checkpoints")
    st.plotly_chart(field_matrix_figure(ledger, findings=findings, title="Fields at each checkpoint"),
                    width="stretch", key="trace_matrix")
    n_tokens = max((int((e.get("tokens") or {}).get("n_tokens") or 0) for e in ledger), default=0) or None
    st.plotly_chart(token_strip_figure(ledger, n_tokens=n_tokens, title="Tokens at each checkpoint"),
                    width="stretch", key="trace_strip")

    rows = []
    for c in checkpoints:
        e = c["ledger"]
        time = e.get("time") or {}
        tok = e.get("tokens") or {}
        rows.append({
            "checkpoint": c.get("name"),
            "records": c.get("n_records"),
            "fields": len(e.get("fields") or {}),
            "unique tokens": tok.get("unique"),
            "t range": (f"{time.get('t_min'):.6g} … {time.get('t_max'):.6g}" if time else None),
            "seconds since previous": round(float((c.get("timing") or {}).get("since_last_s") or 0.0), 4),
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    with st.expander("Sample records per checkpoint"):
        for c in checkpoints:
            st.markdown(f"**{c.get('name')}**")
            st.json(c.get("sample") or [], expanded=False)


common.page_setup("Traces", icon="🧵")
st.title("Traces")
st.caption("A trace is what `chandra.trace.Tracer` writes from inside any trainer: one checkpoint per step. "
           "This page shows which fields and tokens survived each checkpoint and names the checkpoint "
           "where each fault first appears.")

INPUT_KEY = "trace_dir_input"
if INPUT_KEY not in st.session_state:
    st.session_state[INPUT_KEY] = st.session_state.get(DIR_KEY) or (
        str(example_dir()) if (example_dir() / "index.json").exists() else "")
if st.button("Generate the example trace", help=f"Runs {EXAMPLE_SCRIPT.name} (a trainer with the documented "
             "MusicHal faults) into the runs folder"):
    try:
        made = str(make_example())
    except (ChandraError, OSError) as exc:
        common.show_error(exc)
    else:
        st.session_state[INPUT_KEY] = made
        read_trace.clear()
typed = st.text_input("Trace directory", key=INPUT_KEY, placeholder="folder holding index.json",
                      help=common.roots_hint())
directory = typed.strip()
st.session_state[DIR_KEY] = directory

if directory:
    try:
        folder = common.resolve_user_dir(directory)
        index = folder / "index.json"
        mtime = index.stat().st_mtime if index.exists() else 0.0
        report = read_trace(str(folder), mtime)
    except (ChandraError, OSError, ValueError) as exc:
        common.show_error(exc)
    else:
        st.caption(f"Trace `{report.get('directory')}` — {len(report.get('checkpoints') or [])} checkpoints")
        _show(report)
else:
    st.info("Type a trace directory, or click **Generate the example trace**.")
