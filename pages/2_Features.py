"""Features: norms before and after normalisation, dead dimensions and
duplicates, a 2-D projection coloured by token (PCA at once, UMAP on
demand), lasso/box selection with playback, and nearest neighbours."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from chandra.errors import ChandraError
from chandra.figures import stages as figs
from chandra.projection import UMAP_DEFAULTS, compute_pca, compute_umap, nearest_neighbours, umap_params
from dashboard import common

common.page_setup("Features", icon="🧭")
st.title("Features")
run = common.require_run()


def _matrix(state, space: str) -> np.ndarray:
    return state.features if space == "normalised" and state.features is not None else state.raw_features


@st.cache_data(max_entries=8, show_spinner="PCA…")
def _pca(run_path: str, stamp: str, space: str, seed: int) -> np.ndarray:
    return compute_pca(_matrix(common._cached_state(run_path, stamp), space), seed=seed)


@st.cache_data(max_entries=8, show_spinner="UMAP (the first run compiles numba, ~20 s)…")
def _umap(run_path: str, stamp: str, space: str, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    X = _matrix(common._cached_state(run_path, stamp), space)
    return compute_umap(X, {"n_neighbors": n_neighbors, "min_dist": min_dist, "seed": seed})


state = common.page_state(run)
if not common.require_stage(run, "encode", label="the encoder stage"):
    st.stop()

stamp = common.run_stamp(run)
ledger = state.ledger
by_stage = {e.get("stage"): e for e in ledger}
raw_stats = (by_stage.get("features") or {}).get("features") or {}
norm_stats = (by_stage.get("normalised") or {}).get("features") or {}

m = st.columns(5)
m[0].metric("segments", state.raw_features.shape[0])
m[1].metric("raw dimension", state.raw_features.shape[1])
m[2].metric("normalised dimension", state.features.shape[1] if state.features is not None else "—")
m[3].metric("dead dimensions", raw_stats.get("dead_dims", "—"),
            help="Dimensions with zero variance over all segments (raw features).")
dup = raw_stats.get("duplicate_rate")
m[4].metric("duplicate rate", f"{dup:.1%}" if dup is not None else "—",
            help="Share of segments whose raw feature vector equals an earlier one.")
if state.encoder_provenance:
    with st.expander("encoder provenance"):
        st.json(state.encoder_provenance)

st.subheader("Norms")
st.plotly_chart(figs.norms_figure(state.raw_features, state.features), width="stretch", key="norms")
health = figs.feature_health_table(ledger)
if not health.empty:
    st.dataframe(health, width="stretch", hide_index=True)

st.subheader("Projection")
tokens = state.tokens if state.tokens is not None and len(state.tokens) == state.raw_features.shape[0] else None
if tokens is None:
    st.caption("Points are grey until the vocabulary stage has run (then coloured by token).")
c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1, 2])
with c1:
    method = st.radio("method", ("PCA", "UMAP"), horizontal=True, key="proj_method")
with c2:
    space = st.radio("space", ("normalised", "raw"), horizontal=True, key="proj_space",
                     disabled=state.features is None)
    if state.features is None:
        space = "raw"
with c3:
    seed = st.number_input("seed", min_value=0, value=int(run.config().seed), step=1, key="proj_seed")
has_times = state.segments is not None and len(state.segments) == state.raw_features.shape[0]
with c4:
    colour_by = st.radio("colour by", ("token", "time") if has_times else ("token",), horizontal=True,
                         key="proj_colour", disabled=tokens is None and not has_times,
                         help="time: early segments dark, late ones yellow, so the recording's path shows")
highlight = None
with c5:
    if tokens is not None:
        highlight = common.token_picker(np.bincount(tokens[tokens >= 0]), key="proj_highlight",
                                        label="highlight a token",
                                        help="Draw this token's segments on top, larger and outlined; the others "
                                             "fade. The choice carries over to Audio and Vocabulary.")

coords = None
n_rows = state.raw_features.shape[0]
try:
    if method == "PCA":
        coords = _pca(str(run.path), stamp, space, int(seed))
        caption = f"PCA of the {space} features (seed {int(seed)})"
    else:
        u1, u2, u3 = st.columns([1, 1, 1])
        with u1:
            n_neighbors = st.number_input("n_neighbors", min_value=2, max_value=200,
                                          value=int(UMAP_DEFAULTS["n_neighbors"]), step=1, key="umap_nn")
        with u2:
            min_dist = st.number_input("min_dist", min_value=0.0, max_value=1.0, value=float(UMAP_DEFAULTS["min_dist"]),
                                       step=0.05, format="%.2f", key="umap_md")
        params = umap_params({"n_neighbors": n_neighbors, "min_dist": min_dist, "seed": seed}, n_rows=n_rows)
        key = (stamp, space, params["n_neighbors"], params["min_dist"], params["seed"])
        with u3:
            st.write("")
            if st.button("Compute UMAP", key="umap_go", type="primary"):
                st.session_state["umap_key"] = key
        if st.session_state.get("umap_key") == key:
            coords = _umap(str(run.path), stamp, space, params["n_neighbors"], params["min_dist"], params["seed"])
            caption = (f"UMAP of the {space} features: n_neighbors={params['n_neighbors']}, "
                       f"min_dist={params['min_dist']}, metric={params['metric']}, seed={params['seed']}")
        else:
            st.info(f"UMAP runs on demand: n_neighbors={params['n_neighbors']}, min_dist={params['min_dist']}, "
                    f"metric={params['metric']}, seed={params['seed']}. Press **Compute UMAP**.")
except ChandraError as exc:
    common.show_error(exc)

selected: list[int] = []
if coords is not None:
    hover = None
    if has_times:
        hover = [f"{a:.2f}–{b:.2f} s" for a, b in zip(state.segments.start, state.segments.end)]
    fig = figs.projection_figure(coords, tokens, title=caption, hover=hover, highlight_token=highlight,
                                 colour_by=colour_by,
                                 times=state.segments.start if has_times else None)
    event = st.plotly_chart(fig, width="stretch", key="projection", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    st.caption(caption + ". Click a point to hear its segment; pick the lasso or box tool (top right of the chart) "
               "and draw around points to hear a selection; drag to zoom, double-click to zoom out. "
               + ("The legend lists tokens from the most used; click an entry to hide that token, double-click "
                  "to show it alone." if tokens is not None and colour_by == "token" else ""))
    selected = figs.selection_ids(event)

# A new selection plays at once: one point is its segment, several are
# joined in time order (up to 10 s) with short silences between them.
sel_key = tuple(selected)
fresh = bool(selected) and st.session_state.get("_proj_played") != sel_key
st.session_state["_proj_played"] = sel_key
table = figs.segment_table(state.segments, tokens=tokens) if state.segments is not None else None
if selected and table is not None and has_times:
    st.subheader(f"Selected segments ({len(selected)})")
    s1, s2 = st.columns([3, 2])
    with s2:
        if len(selected) == 1:
            i = selected[0]
            common.audio_player(state.signal, state.sample_rate, float(state.segments.start[i]),
                                float(state.segments.end[i]), autoplay=fresh,
                                caption=f"segment {i}: {state.segments.start[i]:.2f}–{state.segments.end[i]:.2f} s"
                                + (f", token {int(tokens[i])}" if tokens is not None else ""))
        else:
            bounds = [(float(state.segments.start[i]), float(state.segments.end[i])) for i in selected]
            clip, n_heard = figs.concat_segments(state.signal, state.sample_rate, bounds, return_count=True)
            st.caption(f"{n_heard} of {len(selected)} selected segments in time order, joined with short silences"
                       + (" (the first 10 s)" if n_heard < len(selected) else ""))
            st.audio(clip, sample_rate=int(state.sample_rate), autoplay=fresh)
            pick = st.selectbox("or play one", selected, key="play_selected")
            common.audio_player(state.signal, state.sample_rate, float(state.segments.start[pick]),
                                float(state.segments.end[pick]), caption=f"segment {pick}")
    with s1:
        st.dataframe(table.iloc[selected], width="stretch", hide_index=True,
                     height=min(400, 40 + 35 * len(selected)))

st.subheader("Nearest neighbours (cosine)")
n1, n2 = st.columns([1, 1])
with n1:
    default = selected[0] if selected else 0
    query = st.number_input("segment id", min_value=0, max_value=n_rows - 1, value=int(min(default, n_rows - 1)),
                            step=1, key="nn_query")
with n2:
    k = st.slider("neighbours", 1, 20, 8, key="nn_k")
try:
    X = _matrix(state, space)
    idx, dist = nearest_neighbours(X, int(query), k=int(k), metric="cosine")
    nn = pd.DataFrame({"id": idx, "cosine distance": np.round(dist, 4)})
    if tokens is not None:
        nn["token"] = tokens[idx]
    if state.segments is not None:
        nn["start"] = np.round(state.segments.start[idx], 3)
        nn["end"] = np.round(state.segments.end[idx], 3)
    l1, l2 = st.columns([1, 1])
    with l1:
        st.dataframe(nn, width="stretch", hide_index=True)
    with l2:
        if state.segments is not None:
            q = int(query)
            common.audio_player(state.signal, state.sample_rate, float(state.segments.start[q]),
                                float(state.segments.end[q]), caption=f"query: segment {q}"
                                + (f" (token {int(tokens[q])})" if tokens is not None else ""))
            if len(idx):
                other = st.selectbox("neighbour to play", idx.tolist(), key="nn_play")
                common.audio_player(state.signal, state.sample_rate, float(state.segments.start[other]),
                                    float(state.segments.end[other]), caption=f"neighbour: segment {other}")
except ChandraError as exc:
    common.show_error(exc)
