"""Compare: two runs, models, MusicHal files or traces side by side.

Each side is a run or trace in the runs folder, an uploaded model, a path on
the server (inside the allowed folders) or the MusicHal example. The URL
keeps both (``?a=run:<id>&b=run:<id>``), so a link reopens the comparison.
The work is :func:`chandra.compare.compare`; figures come from
:mod:`chandra.figures.compare`.
"""

from __future__ import annotations

import json

import streamlit as st

from dashboard import common

from chandra.uploads import MODEL_EXTENSIONS

from chandra.errors import ChandraError
from chandra.figures.compare import (
    compare_matrix_figure,
    differences_frame,
    findings_diff_frames,
    mapping_diff_frame,
    token_overlay_figure,
    token_stages,
)

KINDS = {
    "run": "Run or trace in the runs folder",
    "upload": "Uploaded model",
    "path": "Path on the server",
    "example": "Example: MusicHal reference model",
}


@st.cache_data(show_spinner="Comparing…", max_entries=8)
def run_compare(path_a: str, stamp_a: float, path_b: str, stamp_b: float) -> dict:
    """:func:`chandra.compare.compare`, keyed by both paths and their modification times."""
    from chandra.compare import compare

    return compare(path_a, path_b)


def _initial(side: str) -> None:
    """Fill a side's widgets from the URL once per session (a shared link)."""
    if f"cmp_{side}_kind" in st.session_state:
        return
    kind, _, value = str(st.query_params.get(side, "")).partition(":")
    st.session_state[f"cmp_{side}_kind"] = kind if kind in KINDS else "run"
    if kind == "run":
        st.session_state[f"cmp_{side}_run"] = value
    elif kind == "upload":
        st.session_state[f"cmp_{side}_upload"] = value
    elif kind == "path":
        st.session_state[f"cmp_{side}_path"] = value


def _choose(side: str, column) -> str | None:
    """The widgets of one side; returns its source spec or None."""
    _initial(side)
    with column:
        st.markdown(f"**{side.upper()}**")
        options = [k for k in KINDS if k != "example" or common.REFERENCE_MUSICHAL.is_file()]
        kind = st.radio("source", options, format_func=KINDS.get, key=f"cmp_{side}_kind",
                        label_visibility="collapsed")
        if kind == "run":
            folders = common.compare_folders()
            if not folders:
                st.caption("No runs or traces in the runs folder yet.")
                return None
            if st.session_state.get(f"cmp_{side}_run") not in folders:
                st.session_state[f"cmp_{side}_run"] = folders[0 if side == "a" else min(1, len(folders) - 1)]
            name = st.selectbox("run or trace", folders, key=f"cmp_{side}_run")
            return f"run:{name}" if name else None
        if kind == "upload":
            upload = st.file_uploader("model file", type=[s.lstrip(".") for s in MODEL_EXTENSIONS],
                                      key=f"cmp_{side}_file")
            if upload is not None:
                try:
                    saved = common.save_upload(upload.name, upload.getvalue(), kind="model")
                except (ChandraError, OSError) as exc:
                    common.show_error(exc)
                else:
                    st.session_state[f"cmp_{side}_upload"] = f"{saved.parent.name}/{saved.name}"
            uploads = common.model_uploads()
            if not uploads:
                return None
            if st.session_state.get(f"cmp_{side}_upload") not in uploads:
                st.session_state[f"cmp_{side}_upload"] = uploads[0]
            name = st.selectbox("uploaded model", uploads, key=f"cmp_{side}_upload")
            return f"upload:{name}" if name else None
        if kind == "path":
            text = st.text_input("path", key=f"cmp_{side}_path",
                                 placeholder="model.chandra, MusicHal .json, run or trace folder")
            return f"path:{text.strip()}" if text.strip() else None
        return "example:musichal"


def _show(doc: dict) -> None:
    reg = doc.get("regression") or {}
    diffs = doc.get("differences") or []
    a, b = doc.get("a") or {}, doc.get("b") or {}
    st.caption(f"A: `{a.get('path')}` ({a.get('kind')}, {a.get('format')}, {a.get('n_frames')} frames) · "
               f"B: `{b.get('path')}` ({b.get('kind')}, {b.get('format')}, {b.get('n_frames')} frames)")
    if not diffs:
        st.success("No differences: the two hold the same stages, fields, tokens, findings and parameters.")
    elif reg.get("regressed"):
        st.error("**B regresses**: " + "; ".join(reg.get("reasons", [])[:4])
                 + ("; …" if len(reg.get("reasons", [])) > 4 else ""), icon=":material/trending_down:")
    else:
        st.success(f"{len(diffs)} difference(s); B loses no field and gains no error.",
                   icon=":material/check_circle:")
    if diffs:
        st.subheader("Top differences")
        st.dataframe(differences_frame(doc, limit=12), hide_index=True, width="stretch")

    st.subheader("Fields surviving each stage")
    st.caption("Each cell: records carrying the field in A → in B. Red LOST: B lost a field A carried; "
               "blue BACK: B carries a field A lost; amber FEWER / light blue MORE: a smaller / larger share "
               "of records; purple outline: value or key types changed; grey: a stage only one side has.")
    st.plotly_chart(compare_matrix_figure(doc), width="stretch", key="compare_matrix")

    stages = token_stages(doc)
    if stages:
        st.subheader("Tokens")
        left, right = st.columns([3, 1])
        with right:
            stage = st.selectbox("stage", stages, key="cmp_token_stage")
            ranked = st.toggle("rank-ordered", key="cmp_token_ranked",
                               help="Sort each histogram by count: two vocabularies number their tokens "
                                    "arbitrarily, so ranked bars compare shapes")
        with left:
            st.plotly_chart(token_overlay_figure(doc, stage, ranked=ranked), width="stretch",
                            key="compare_tokens")

    st.subheader("Findings")
    frames = findings_diff_frames(doc)
    cols = st.columns(3)
    for col, key, title in zip(cols, ("resolved", "unchanged", "introduced"),
                               ("Resolved (A only)", "Unchanged", "Introduced (B only)")):
        with col:
            st.markdown(f"**{title}** — {len(frames[key])}")
            if len(frames[key]):
                st.dataframe(frames[key], hide_index=True, width="stretch")

    st.subheader("Parameters that differ")
    params = mapping_diff_frame(doc.get("parameters"))
    if len(params):
        st.dataframe(params, hide_index=True, width="stretch")
    else:
        st.caption("Same parameters.")
    with st.expander(f"Provenance that differs ({len(doc.get('provenance') or [])})"):
        st.dataframe(mapping_diff_frame(doc.get("provenance")), hide_index=True, width="stretch")
    for title, key in (("Oracle health", "oracle"), ("Vocabulary", "vocabulary"), ("Generation", "generation")):
        block = doc.get(key)
        if block and block.get("rows"):
            with st.expander(f"{title} ({block.get('changed', 0)} changed)"):
                st.dataframe([{"": r["key"], "A": json.dumps(r["a"]), "B": json.dumps(r["b"]),
                               "changed": r["changed"]} for r in block["rows"]], hide_index=True, width="stretch")
    st.download_button("Download the comparison (JSON)", json.dumps(doc, indent=1),
                       file_name="chandra_compare.json", mime="application/json")


common.page_setup("Compare", icon="⚖️")
st.title("Compare")
st.caption("Two runs, models, MusicHal files or traces side by side: what survived each stage on each side, "
           "how the tokens differ, which findings were resolved or introduced. Same as "
           "`chandra compare A B`.")
col_a, col_b = st.columns(2)
spec_a = _choose("a", col_a)
spec_b = _choose("b", col_b)
for side, spec in (("a", spec_a), ("b", spec_b)):
    if spec and st.query_params.get(side) != spec:
        st.query_params[side] = spec
if spec_a and spec_b:
    st.caption(f"Link to this comparison: `?a={spec_a}&b={spec_b}`")
    try:
        path_a = common.compare_source_path(spec_a)
        path_b = common.compare_source_path(spec_b)
        doc = run_compare(str(path_a), common.source_stamp(path_a), str(path_b), common.source_stamp(path_b))
    except (ChandraError, OSError, ValueError) as exc:
        common.show_error(exc)
    else:
        _show(doc)
else:
    st.info("Choose A and B: runs or traces in the runs folder, uploaded models, server paths or the "
            "MusicHal example.")
