"""Generate: improvise from a model's oracle, hear it, and see the path it took.

The generation (path, steps, fallbacks, its "generated" ledger entry) and
its WAV are written under the run the model belongs to
(``<runs>/<run>/generations/``), or under ``<runs>/_generations/`` for any
other model, never anywhere else; session state keeps only the path of the
record (:mod:`chandra.generation_record`, the format the CLI shares).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard import common

from chandra.errors import ChandraError, ConstraintError
from chandra.generate import DEFAULT_TABOO
from chandra.figures.diagnostics import (
    generation_timeline_figure,
    token_histogram_comparison,
    token_strip_figure,
)

MODEL_KEY = "generate_model_path"
INPUT_KEY = "generate_model_path_input"
RESULT_KEY = "generation_record"


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def load_model_cached(path: str, mtime: float, size: int):
    """The model, shared read-only; keyed by path + mtime + size."""
    from chandra.model import load_model

    return load_model(path)


@st.cache_data(max_entries=8, show_spinner=False)
def read_record(path: str, mtime: float) -> dict:
    from chandra.generation_record import read_generation_record

    return read_generation_record(path)


@st.cache_data(max_entries=4, show_spinner=False)
def read_wav(path: str, mtime: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    y, sr = sf.read(path, dtype="float32", always_2d=False)
    return y, int(sr)


def n_tokens_of(model) -> int | None:
    if getattr(model, "centers", None) is not None:
        return int(len(model.centers))
    vocab = model.vocabulary or {}
    value = vocab.get("n_tokens") or (vocab.get("params") or {}).get("n_tokens")
    return int(value) if value else None





def where_check(model, text: str) -> tuple[bool, str]:
    """(ok, message) for a where-expression against the model's events."""
    from chandra.constraints import event_fields, parse_where

    try:
        constraint = parse_where(text, fields=event_fields(model.events))
        matches = int(np.count_nonzero(constraint.mask(model.events)))
    except (ChandraError, ValueError, RecursionError) as exc:  # a hostile expression is an error line, not a crash
        return False, str(exc) if isinstance(exc, ChandraError) else f"cannot use this expression ({type(exc).__name__})"

    if matches == 0:
        return False, f"`{constraint.describe()}` matches no frame; generation would fail."
    return True, f"`{constraint.describe()}` matches {matches} of {len(model.events)} frames."


def generate(model, model_path: Path, params: dict) -> Path:
    """Improvise, resynthesise and write the WAV (:func:`chandra.generate.generate_to_wav`,
    what ``chandra generate`` runs) and its record; return the record's path."""
    from chandra.generate import generate_to_wav
    from chandra.generation_record import generation_record, write_generation_record

    stat = model_path.stat()
    key = json.dumps({"model": str(model_path), "mtime": stat.st_mtime, "params": params}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    folder = common.outputs_dir(model_path, "generations")
    record_path = folder / f"gen_{digest}.json"
    if record_path.exists():
        return record_path
    wav_path = folder / f"gen_{digest}.wav"
    gen = generate_to_wav(model, wav_path, seconds=params["seconds"], seed=params["seed"],
                          continuity=params["continuity"], min_lrs=params["min_lrs"],
                          max_continuous=params["max_continuous"], where=params["where"] or None,
                          where_mode=params.get("where_mode", "filter"),
                          where_weight=params.get("where_weight", 4.0), taboo=params.get("taboo", DEFAULT_TABOO),
                          crossfade_ms=params["crossfade_ms"])
    record = generation_record(model, gen, wav_path=wav_path, model_path=model_path)
    write_generation_record(record, record_path)
    run = common.run_of_model(model_path)
    if run is not None:
        # The output joins the run's own ledger as the "generated" stage, so
        # the home page and the Events page show it beside training.
        run.record_ledger_entry(record["ledger_entry"])
    return record_path


def show_quality(summary: dict) -> None:
    """Variety of the path: distinct frames, the most played ones, verbatim copies, context, restarts."""
    if "top2_share" not in summary:
        return  # a record written before these were measured
    cols = st.columns(6)
    coverage = summary.get("coverage")
    cols[0].metric("distinct frames", summary.get("unique_frames", "—"),
                   help="Different source frames played" + ("" if coverage is None else
                        f"; {coverage:.0%} of min(steps, playable frames)"))
    cols[1].metric("top-2 frames", f"{summary['top2_share']:.1%}",
                   help="Share of the steps taken by the two most played frames (a loop shows here)")
    copy_s = summary.get("longest_copy_s")
    cols[2].metric("longest copy", "—" if copy_s is None else f"{copy_s:.1f} s",
                   help="Longest stretch played verbatim in source order")
    median = summary.get("median_jump_lrs")
    cols[3].metric("median jump LRS", "—" if median is None else f"{median:g}",
                   help="Frames of context shared at a jump (median)")
    cols[4].metric("restarts", summary.get("n_restarts", 0), help="Times the walk reached the end of the source")
    cols[5].metric("playable frames", summary.get("qualifying_frames") or "—",
                   help="Frames the constraint allows (all of them in weight mode)")


def show_result(model, record_path: Path) -> None:
    record = read_record(str(record_path), record_path.stat().st_mtime)
    wav_path = record_path.parent / record["wav"]
    gen = record["generation"]
    summary = record.get("summary") or {}
    st.subheader("Result")
    cols = st.columns(6)
    cols[0].metric("frames", summary.get("n_frames", len(gen["frames"])))
    cols[1].metric("seconds", f"{summary.get('duration_s') or 0:.1f}")
    cols[2].metric("jumps", summary.get("n_jumps", len(gen["jumps"])))
    mean_lrs = summary.get("mean_jump_lrs")
    cols[3].metric("mean jump LRS", "—" if mean_lrs is None else f"{mean_lrs:.1f}")
    cols[4].metric("fallbacks", summary.get("n_fallbacks", len(gen["fallbacks"])))
    cols[5].metric("unique tokens", summary.get("unique_tokens", "—"))
    show_quality(summary)

    fallbacks = gen.get("fallbacks") or []
    if fallbacks:
        lines = [f"- step {f.get('step')}: {f.get('reason')} → {f.get('choice')} (frame {f.get('frame')})"
                 for f in fallbacks[:50]]
        more = f"\n- … and {len(fallbacks) - 50} more" if len(fallbacks) > 50 else ""
        st.warning(f"**{len(fallbacks)} fallback(s)** — the walk could not follow the controls here:\n"
                   + "\n".join(lines) + more, icon="⚠️")
    else:
        st.success("No fallbacks: every step followed the controls.")

    if wav_path.exists():
        y, sr = read_wav(str(wav_path), wav_path.stat().st_mtime)
        st.audio(y, sample_rate=sr)
        st.download_button("Download WAV", data=wav_path.read_bytes(), file_name=f"chandra_{wav_path.name}",
                           mime="audio/wav")
    else:
        st.warning(f"{wav_path} is missing; generate again.")

    st.plotly_chart(generation_timeline_figure(gen, model), width="stretch", key="gen_timeline")
    if getattr(model, "is_corpus", False):
        from chandra.corpus_view import passages
        from chandra.figures.corpus import generation_take_band

        st.plotly_chart(generation_take_band(gen, model), width="stretch", key="gen_take_band")
        rows = passages(gen, model)
        takes_played = sorted({r["take"] for r in rows})
        st.caption(f"{len(rows)} passages from {len(takes_played)} of {len(model.files())} takes; "
                   f"{summary.get('take_changes', 0)} step(s) move to another take.")
        with st.expander("Passages and their takes", expanded=True):
            st.dataframe(rows, hide_index=True, width="stretch", key="gen_passages",
                         column_order=("passage", "take", "take_name", "output_start_s", "output_end_s",
                                       "source_start_s", "source_end_s", "steps", "first_step", "first_frame",
                                       "last_frame"))
    tokens = model.tokens()
    frames = np.asarray(gen["frames"], dtype=np.int64)
    played = tokens[frames] if frames.size and frames.max() < tokens.size else np.zeros(0, np.int64)
    k = n_tokens_of(model)
    st.plotly_chart(token_histogram_comparison(tokens, played, n_tokens=k), width="stretch",
                    key="gen_tokens")

    st.subheader("Ledger: training stages and the generated stage")
    ledger = [e for e in (model.ledger or []) if isinstance(e, dict)] + [record["ledger_entry"]]
    common.field_matrix_section(ledger, files=model.files() if getattr(model, "is_corpus", False) else [],
                                key="gen_matrix")
    st.plotly_chart(token_strip_figure(ledger, n_tokens=k), width="stretch", key="gen_strip")
    with st.expander("Steps (first 500)"):
        import pandas as pd

        st.dataframe(pd.DataFrame(gen["steps"][:500]), hide_index=True, width="stretch")
    with st.expander("Parameters"):
        st.json(record.get("params") or {})


common.page_setup("Generate")
st.title("Generate")
st.caption("Improvise from the model's oracle: forward steps continue the source, jumps follow suffix links "
           "to places sharing at least 'min LRS' frames of context, and no frame plays again within the taboo "
           "window. The result is spliced from the source audio.")

path_text = common.choose_model_path(model_key=MODEL_KEY, input_key=INPUT_KEY)
if path_text:
    model_path, model = common.open_chosen_model(path_text, load_model_cached)
    st.caption(f"{len(model.events)} frames · oracle: "
               f"{model.oracle.kind if model.oracle is not None else 'none'} · "
               f"source audio: {'yes' if model.audio is not None else 'no'}")
    if model.oracle is None:
        st.error("This model has no oracle; nothing to improvise from.")
        st.stop()
    if model.audio is None:
        st.warning("This model has no embedded source audio, so it cannot be resynthesised "
                   "(retrain with audio embedded).")

    c1, c2, c3, c4 = st.columns(4)
    seconds = c1.number_input("Seconds", min_value=1.0, max_value=600.0, value=20.0, step=1.0)
    seed = c2.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1)
    continuity = c3.slider("Continuity", min_value=0.0, max_value=1.0, value=0.8, step=0.05,
                           help="Probability of a forward step (continuing the source) when one is possible")
    crossfade_ms = c4.number_input("Crossfade (ms)", min_value=0.0, max_value=500.0, value=20.0, step=5.0)
    c5, c6 = st.columns(2)
    min_lrs = c5.number_input("Min LRS (frames of shared context for a jump)", min_value=0, max_value=1000,
                              value=1, step=1)
    max_continuous = c6.number_input("Max continuous forward steps (0 = no limit)", min_value=0, max_value=100000,
                                     value=0, step=1)
    where = st.text_input("Where (constraint on event fields)", key="generate_where",
                          placeholder="e.g. consonance > 0.5 and gesture_token in {1, 2}")
    c7, c8, c9 = st.columns(3)
    where_mode = c7.radio("Constraint mode", ["filter", "weight"], horizontal=True, key="generate_where_mode",
                          help="filter: play only matching frames; weight: make matching frames likelier")
    where_weight = c8.number_input("Weight of matching frames", min_value=1.01, max_value=1000.0, value=4.0,
                                   step=0.5, disabled=where_mode != "weight", key="generate_where_weight")
    taboo = c9.number_input("Taboo (steps before a frame may play again; 0 = off)", min_value=0,
                            max_value=10000, value=DEFAULT_TABOO, step=1, key="generate_taboo")
    where_ok = True
    if where.strip():
        where_ok, message = where_check(model, where.strip())
        if where_ok:
            st.caption(f"✓ {message}")
        else:
            st.error(f"Constraint: {message}")

    params = {"seconds": float(seconds), "seed": int(seed), "continuity": float(continuity),
              "min_lrs": int(min_lrs), "max_continuous": int(max_continuous) or None,
              "where": where.strip(), "crossfade_ms": float(crossfade_ms),
              "where_mode": where_mode if where.strip() else "filter",
              "where_weight": float(where_weight), "taboo": int(taboo)}
    if st.button("Generate", type="primary", disabled=model.audio is None):
        try:
            with st.spinner("Improvising…"):
                st.session_state[RESULT_KEY] = str(generate(model, model_path, params))
        except ConstraintError as exc:
            st.session_state.pop(RESULT_KEY, None)
            common.show_error(exc, context="Constraint")
        except (ChandraError, OSError, ValueError) as exc:
            st.session_state.pop(RESULT_KEY, None)
            common.show_error(exc)

    record_path = st.session_state.get(RESULT_KEY)
    if record_path and Path(record_path).exists():
        try:
            record = read_record(record_path, Path(record_path).stat().st_mtime)
        except ChandraError as exc:
            common.show_error(exc)
        else:
            if record.get("model_path") == str(model_path):
                show_result(model, Path(record_path))
