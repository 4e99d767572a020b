"""Oracle: states and transitions, suffix links as arcs over time, LRS over
time and its histogram, oracle health and invariants, and the information
rate against the threshold when it was chosen automatically."""

from __future__ import annotations

import numpy as np
import streamlit as st

from chandra.errors import ChandraError
from chandra.figures import diagnostics as figs_diag
from chandra.figures import stages as figs
from dashboard import common

common.page_setup("Oracle", icon="🕸️")
st.title("Oracle")
run = common.require_run()

ORACLE_CODES = ("ORACLE_INVARIANT", "SFX_ALL_ROOT", "SFX_PREVIOUS", "TRANSITIONS_DENSE", "SPARSE_VOCABULARY")


@st.cache_data(max_entries=6, show_spinner="Checking the oracle…")
def _health(run_path: str, stamp: str) -> tuple[dict, list[dict]]:
    from chandra.oracle import check_oracle, oracle_health

    state = common._cached_state(run_path, stamp)
    oracle = state.oracle
    if oracle.kind == "tokens":
        violations = check_oracle(oracle, symbols=state.tokens[: oracle.n_frames])
    else:
        violations = check_oracle(oracle, features=state.features[: oracle.n_frames])
    return oracle_health(oracle), violations[:20]


state = common.page_state(run)
if not common.require_stage(run, "oracle"):
    st.stop()

oracle = state.oracle
try:
    health, violations = _health(str(run.path), common.run_stamp(run))
except ChandraError as exc:
    common.show_error(exc)
    st.stop()

kind = "factor oracle over gesture tokens" if oracle.kind == "tokens" else \
    f"audio oracle over features ({oracle.metric}, θ = {oracle.threshold:.4g})"
st.caption(f"{kind}. State 0 is the root; state i is reached after frame i−1.")

m = st.columns(6)
m[0].metric("states", health["n_states"])
m[1].metric("transitions", health["n_transitions"])
m[2].metric("transitions / state", f"{health['transitions_per_state_mean']:.2f}",
            help=f"max {health['transitions_per_state_max']}")
m[3].metric("root out-degree", health["root_out_degree"], help=f"{health['root_out_degree_share']:.1%} of frames")
m[4].metric("LRS mean", f"{health['lrs_mean']:.2f}", help=f"median {health['lrs_median']:.1f}, max {health['lrs_max']}")
m[5].metric("LRS max", health["lrs_max"])
h = st.columns(4)
h[0].metric("suffix links to root", f"{health['sfx_to_root_share']:.1%}",
            help="All (or almost all) links to 0 means no repetition was found.")
h[1].metric("suffix links to s−1", f"{health['sfx_to_previous_share']:.1%}",
            help="Almost every link to the previous state means one repeated symbol or a too-loose threshold.")
h[2].metric("transition density", f"{health['transition_density']:.3f}",
            help="Transitions / all forward pairs; near 1 = a near-complete graph.")
h[3].metric("invariant violations", len(violations))

if violations:
    st.error(f"{len(violations)} invariant violation(s); first: {violations[0].get('code')} at state "
             f"{violations[0].get('state')}: {violations[0].get('message')}")
else:
    st.success("Invariants hold: 0 ≤ sfx[i] < i, lrs[i] ≤ sfx[i], lrs = 0 ⇔ sfx = 0, direct transitions i−1 → i"
               + (", and d(frame_i, frame_sfx[i]) < θ." if oracle.kind == "features" else ", LRS contexts match."))
findings = common.run_findings(run, state.ledger)
common.render_findings([f for f in findings if f.get("code") in ORACLE_CODES])

times = None
if state.events and len(state.events) >= oracle.n_frames:
    t = np.array([float(e.get("t", np.nan)) for e in state.events[: oracle.n_frames]], dtype=np.float64)
    if np.isfinite(t).all() and (np.diff(t) >= 0).all():
        times = t

st.subheader("Suffix links")
max_arcs = st.slider("arcs drawn at most", 200, 2000, 1200, step=100, key="max_arcs",
                     help="Large oracles are evenly subsampled so the chart stays under 50k points.")
st.plotly_chart(figs.suffix_arc_figure(oracle.sfx, times=times, lrs=oracle.lrs, max_arcs=int(max_arcs)),
                width="stretch", key="arcs")

st.subheader("Longest repeated suffix")
st.plotly_chart(figs.lrs_figure(oracle.lrs, times=times), width="stretch", key="lrs")

if state.threshold_curve:
    st.subheader("Information rate against the threshold")
    curve = state.threshold_curve
    st.caption(f"Best IR {curve.get('best_ir', float('nan')):.3f} bits/frame at θ = "
               f"{curve.get('best_threshold', float('nan')):.4g}; the oracle was built with θ = {oracle.threshold:.4g}.")
    st.plotly_chart(figs_diag.ir_curve_figure(curve, chosen=oracle.threshold), width="stretch", key="ir_curve")
elif oracle.kind == "features":
    st.caption(f"The threshold θ = {oracle.threshold:.4g} was given explicitly (no information-rate sweep).")

@st.cache_data(max_entries=6, show_spinner="Fitting a vocabulary for each K…")
def _ir_over_k(run_path: str, stamp: str, normalisation: str, pca: int | None, seed: int, k_used: int) -> dict:
    from chandra.pipeline import ir_over_k

    state = common._cached_state(run_path, stamp)
    return ir_over_k(state.raw_features, normalisation=normalisation, pca_components=pca, seed=seed,
                     include=(k_used,))


@st.cache_data(max_entries=6, show_spinner="Sweeping the audio-oracle threshold…")
def _ir_threshold(run_path: str, stamp: str, metric: str) -> dict:
    from chandra.oracle import ir_threshold_sweep

    state = common._cached_state(run_path, stamp)
    return ir_threshold_sweep(state.features, metric=metric)


st.subheader("Choosing K and θ by information rate")
st.caption("Dubnov's information rate (bits per segment that the past predicts) peaks where the symbols repeat "
           "with structure: too coarse and everything is predictable but uninformative, too fine and nothing "
           "repeats. The sweeps are computed on demand from this run's features.")
cfg = state.config
# K gets the full width: the chart needs room for its K ticks and legend.
if st.button("Information rate over K", key="ir_k_button") or st.session_state.get("ir_k_shown"):
    st.session_state["ir_k_shown"] = True
    if state.raw_features is None:
        st.info("Run the encode stage first.")
    else:
        n_tokens = int(state.vocabulary.n_tokens_) if state.vocabulary is not None \
            else (cfg.n_tokens if cfg.n_tokens != "auto" else 0)
        try:
            curve_k = _ir_over_k(str(run.path), common.run_stamp(run), cfg.normalisation, cfg.pca_components,
                                 cfg.seed, n_tokens)
        except ChandraError as exc:
            common.show_error(exc)
        else:
            rec = curve_k["recommended"]
            st.plotly_chart(figs.ir_over_k_figure(curve_k, chosen=n_tokens or None), width="stretch",
                            key="ir_k")
            how = " (chosen by the rule: K on auto)" if cfg.n_tokens == "auto" else ""
            st.markdown(f"**Recommended K = {rec['k']}**; this run uses K = {n_tokens}{how}. {rec['reason']}")
            st.caption(f"The rule: {rec['rule']} Hollow points: sizes whose tokens would mostly be used once "
                       f"or twice. The highest information rate alone (K = {curve_k['best_k']}) is not the "
                       "recommendation: a very small K is predictable but cannot tell gestures apart, and "
                       "past the rule's bound tokens stop recurring.")
            with st.expander("Evidence for the recommendation"):
                rows = [{"K": c["k"], "segments per token": round(c["mean_uses"], 1),
                         "tokens used once or twice": f"{c['rare_share']:.0%}", "IR (bits)": round(c["ir"], 3),
                         "kept": "yes" if c.get("accepted") else "no", "why not": c.get("why") or ""}
                        for c in rec["evidence"]["candidates"]]
                st.caption(f"{rec['evidence']['n_segments']} segments; the count alone allows K = "
                           f"{rec['evidence']['by_count']} (bounds {rec['bounds']['min']}–{rec['bounds']['max']}).")
                if rows:
                    st.dataframe(rows, hide_index=True, width="stretch")
if not state.threshold_curve and (st.button("Information rate over θ", key="ir_t_button")
                                  or st.session_state.get("ir_t_shown")):
    st.session_state["ir_t_shown"] = True
    try:
        curve_t = _ir_threshold(str(run.path), common.run_stamp(run), cfg.metric)
    except ChandraError as exc:
        common.show_error(exc)
    else:
        chosen = oracle.threshold if oracle.kind == "features" else None
        st.plotly_chart(figs_diag.ir_curve_figure(curve_t, chosen=chosen), width="stretch", key="ir_t")
        st.caption(f"Best θ = {curve_t['best_threshold']:.4g} ({curve_t['best_ir']:.3f} bits/frame); "
                   "train with oracle mode 'features' and threshold 'auto' to use it.")

with st.expander("health numbers"):
    st.json({k: v for k, v in health.items() if k != "lrs_histogram"})
