"""Vocabulary: token histogram (empty tokens marked), a K-cell grid per
stage (fit set, assigned, saved, reloaded), entropy against log2 K,
perplexity, top-token share, and examples of any token to listen to."""

from __future__ import annotations

import numpy as np
import streamlit as st

from chandra.figures import stages as figs
from chandra.ledger import token_stats
from dashboard import common

common.page_setup("Vocabulary", icon="🔤")
st.title("Vocabulary")
run = common.require_run()

state = common.page_state(run)
if not common.require_stage(run, "vocabulary"):
    st.stop()

vocab = state.vocabulary
K = int(vocab.n_tokens_)
fit = dict(vocab.fit_metrics_ or {})
assigned = token_stats(state.tokens, n_tokens=K)
configured_k = K if run.config().n_tokens == "auto" else int(run.config().n_tokens)  # "auto": chosen by the rule

if configured_k != K:
    st.warning(f"K was reduced from the configured {configured_k} to {K} (too few distinct segments); "
               "this is recorded in the model's provenance.")

m = st.columns(6)
m[0].metric("K", K)
m[1].metric("active (fit set)", f"{fit.get('active', fit.get('unique', '—'))}/{K}")
m[2].metric("active (assigned)", f"{assigned['unique']}/{K}",
            delta=(assigned["unique"] - int(fit.get("active", assigned["unique"]))) or None)
m[3].metric("entropy (assigned)", f"{assigned['entropy_bits']:.2f} bits",
            help=f"Ceiling log2 K = {assigned['max_entropy_bits']:.2f} bits")
m[4].metric("perplexity", f"{assigned['perplexity']:.1f}", help="2^entropy: the effective number of tokens")
m[5].metric("top-token share", f"{assigned['top_share']:.1%}",
            help=f"token {assigned['top_token']} is the most frequent")

st.subheader("Token histogram (assigned tokens)")
empty = assigned.get("empty_tokens") or []
if empty:
    st.warning(f"{len(empty)} of {K} tokens are empty: {', '.join(map(str, empty[:32]))}"
               + (" …" if len(empty) > 32 else ""))
counts = np.asarray(assigned["counts"], dtype=np.int64)
# A bar clicked in the histogram (last run) picks that token.
clicked = figs.selection_ids(st.session_state.get("token_hist"))
clicked = clicked[0] if len(clicked) == 1 else None
if clicked is not None and st.session_state.get("_hist_clicked") != clicked:
    st.session_state[common.HIGHLIGHT_KEY] = clicked
st.session_state["_hist_clicked"] = clicked
h1, h2 = st.columns([1, 2])
with h1:
    order = st.radio("order", ("most used first", "by token id"), horizontal=True, key="hist_order")
with h2:
    token = common.token_picker(counts, key="listen_token", label="token (listen below; highlighted everywhere)",
                                allow_none=False,
                                help="Outlined in the histogram, shaded on the Audio page's waveform and drawn "
                                     "on top in the Features projection.")
# Fade the other bars only for a token someone picked, not for the default.
chosen = token if st.session_state.get(common.HIGHLIGHT_KEY) is not None else None
st.plotly_chart(figs.token_histogram_figure(counts, order="frequency" if order == "most used first" else "id",
                                            highlight_token=chosen),
                width="stretch", key="token_hist", on_select="rerun", selection_mode="points")
st.caption("Click a bar to pick its token.")

if run.is_corpus:
    from chandra.corpus import token_usage
    from chandra.figures.corpus import take_names, take_token_heatmap, token_usage_rows

    files = run.corpus_files()
    segment_takes = run.segment_takes()
    st.subheader("Tokens per take")
    if not files or segment_takes is None or len(segment_takes) != len(state.tokens):
        st.warning("This corpus run has no file table for its tokens yet; run it on the Home page.")
    else:
        usage = token_usage(state.tokens, segment_takes, n_tokens=K, n_takes=len(files))
        common.render_findings([f for f in common.run_findings(run, state.ledger)
                                if f.get("code") in ("VOCAB_TAKE_DOMINANCE", "TAKES_SHARE_NO_TOKENS")])
        value = st.radio("colour by", ("counts", "share of the take"), horizontal=True, key="take_heatmap_value",
                         help="Frames of each take with each token, or each take's share of its own frames "
                              "(rows sum to 100%). The hover gives both.")
        st.plotly_chart(take_token_heatmap(usage, names=take_names(files),
                                           value="counts" if value == "counts" else "share"),
                        width="stretch", key="take_token_heatmap")
        st.caption(f"{usage['active_tokens']} active tokens, {usage['shared_tokens']} used by two takes or more. "
                   "Columns are token ids in palette order (the strip on top is each token's colour).")
        st.dataframe(token_usage_rows(usage, files), hide_index=True, width="stretch", key="token_usage_table",
                     column_config={"frame share": st.column_config.NumberColumn(format="percent"),
                                    "token share": st.column_config.NumberColumn(
                                        format="percent", help="Share of the active tokens this take owns "
                                                               "(has the most frames of)"),
                                    "only this take": st.column_config.NumberColumn(
                                        help="Tokens no other take uses"),
                                    "owned": st.column_config.NumberColumn(
                                        help="Tokens for which this take has the most frames")})

st.subheader("Tokens at each stage")
st.caption("One cell per token; red-outlined cells are empty. The fit set is what K-means saw; the later grids "
           "are what actually reached each stage.")
grids = figs.token_grids(state.ledger, fit_counts=fit.get("counts"))
st.plotly_chart(figs.token_grid_figure(grids, n_tokens=K), width="stretch", key="token_grids")

rows = [{"label": "fit set", "entropy_bits": fit.get("entropy_bits"), "max_entropy_bits": assigned["max_entropy_bits"]}]
for entry in state.ledger:
    tok = entry.get("tokens")
    if tok:
        rows.append({"label": entry.get("stage"), "entropy_bits": tok.get("entropy_bits"),
                     "max_entropy_bits": tok.get("max_entropy_bits")})
e1, e2 = st.columns([3, 2])
with e1:
    st.plotly_chart(figs.entropy_figure(rows), width="stretch", key="entropy")
with e2:
    st.dataframe([{"stage": r["label"], "entropy (bits)": None if r["entropy_bits"] is None
                   else round(float(r["entropy_bits"]), 3)} for r in rows], hide_index=True, width="stretch")

st.subheader(f"Listen to token {token}")
l1, l2 = st.columns([1, 2])
with l1:
    n_examples = st.slider("examples", 1, 10, 4, key="listen_n")
    st.caption(f"Token {token} labels {int(counts[token])} of {int(counts.sum())} segments "
               f"({counts[token] / max(1, counts.sum()):.1%}). Pick another token above.")
with l2:
    idx = figs.token_examples(state.tokens, int(token), n=int(n_examples))
    if idx.size == 0:
        st.info(f"Token {token} has no segments.")
    elif state.segments is not None and state.signal is not None:
        bounds = [(float(state.segments.start[i]), float(state.segments.end[i])) for i in idx]
        clip, n_heard = figs.concat_segments(state.signal, state.sample_rate, bounds, return_count=True)
        st.audio(clip, sample_rate=int(state.sample_rate))
        where = {}
        if run.is_corpus:  # name each segment's take and its time in that take, not in the corpus
            files, seg_takes = run.corpus_files(), run.segment_takes()
            if files and seg_takes is not None and len(seg_takes) == len(state.segments):
                for i, (a, b) in zip(idx, bounds):
                    row = files[int(seg_takes[i])]
                    where[int(i)] = f"{row['name']} {a - row['offset_s']:.2f}–{b - row['offset_s']:.2f} s"
        st.caption("segments " + ", ".join(f"{int(i)} ({where.get(int(i)) or f'{a:.2f}–{b:.2f} s'})"
                                           for i, (a, b) in zip(idx[:n_heard], bounds[:n_heard]))
                   + ", joined with short silences"
                   + (f" ({len(idx) - n_heard} more left out to stay under 10 s)" if n_heard < len(idx) else ""))
