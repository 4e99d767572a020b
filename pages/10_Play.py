"""Play: record (or upload) a phrase and hear the model answer it.

The model hears the phrase as it heard its training audio
(:mod:`chandra.respond`), finds where its ending is in the training
recording, and answers from there. Each phrase / answer pair is kept under
the run the model belongs to (``<runs>/<run>/responses/``), or under
``<runs>/_responses/`` for any other model, never anywhere else, so a demo
can be replayed; session state keeps only the path of the pair's record.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import common

from chandra.errors import ChandraError
from chandra.figures.respond import phrase_match_figure, phrase_table
from chandra.respond import source_place, take_name
from chandra.respond import MODES

MODEL_KEY = "play_model_path"
INPUT_KEY = "play_model_path_input"
RESULT_KEY = "play_record"
MODE_HELP = {
    "continue": "pick up where the phrase leaves off in the training recording",
    "imitate": "follow the phrase's gesture tokens, in its order, with the model's own material",
    "contrast": "answer with gestures the phrase did not use",
}


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def load_model_cached(path: str, mtime: float, size: int):
    """The model, shared read-only; keyed by path + mtime + size."""
    from chandra.model import load_model

    return load_model(path)


@st.cache_resource(max_entries=3, show_spinner="Preparing the model's ears (encoder, vocabulary)…")
def listener_cached(path: str, mtime: float, size: int, encoder_model: str | None, trust_remote_code: bool):
    """The model's :class:`~chandra.respond.Listener` (encoder loaded once per model file)."""
    from chandra.respond import get_listener

    return get_listener(load_model_cached(path, mtime, size), encoder_model=encoder_model,
                        trust_remote_code=trust_remote_code)





def encoder_source(model) -> str | None:
    """Where a transformer encoder's weights are read from: the model's record, checked against the
    allowed folders (a model file must not make the server read elsewhere), or the override typed here."""
    from chandra.respond import listening_spec

    spec = listening_spec(model)
    enc = spec["encoder"]
    if enc["name"] != "wav2vec2":
        return None
    override = st.text_input("Encoder weights folder (optional)", key="play_encoder_model",
                             help="Where this model's neural encoder is, if not where the model says. "
                                  + common.roots_hint()).strip()
    recorded = override or enc.get("model_path") or enc.get("model")
    return common.resolve_model_source(recorded)


def phrase_input() -> tuple[bytes, str] | None:
    """The phrase: a recording from the microphone or an uploaded file (the newest of the two)."""
    from chandra.audio import SUPPORTED_EXTENSIONS

    rec_col, up_col = st.columns(2)
    recording = rec_col.audio_input("Record a phrase", sample_rate=44100, key="play_record_input",
                                    help="Play a few seconds; the answer comes when you stop.")
    upload = up_col.file_uploader("…or upload one", type=[e.lstrip(".") for e in SUPPORTED_EXTENSIONS],
                                  key="play_upload_input")
    # Whichever arrived last wins: file ids are numbered in the order they are first seen.
    seen = st.session_state.setdefault("play_sources_seen", {})
    present = [(f, name) for f, name in ((recording, "recording.wav"), (upload, getattr(upload, "name", "")))
               if f is not None]
    for f, _ in present:
        seen.setdefault(f.file_id, len(seen))
    if not present:
        return None
    newest, name = max(present, key=lambda item: seen[item[0].file_id])
    return newest.getvalue(), name


def answer(model, model_path: Path, listener, phrase_bytes: bytes, phrase_name: str, options: dict) -> Path:
    """The record of this phrase's answer: found when it was made before, else made and kept."""
    from chandra.respond import respond, response_id, store_response

    folder = common.outputs_dir(model_path, "responses")
    rid = response_id(phrase_bytes, model_path=model_path, options=options)
    record = folder / f"{rid}.json"
    if record.exists():
        return record
    stored = common.save_upload(phrase_name, phrase_bytes, kind="audio")  # checked like every upload
    response = respond(model, stored, listener=listener, **options)
    return store_response(folder, response, phrase_bytes=phrase_bytes, phrase_name=phrase_name,
                          model_path=model_path)


def show_pair(model, record_path: Path, *, key: str) -> None:
    from chandra.respond import read_response

    doc = read_response(record_path)
    summary = doc["summary"]
    phrase, match, gen = summary["phrase"], summary["match"], summary["generation"]
    folder = record_path.parent
    cov = phrase["coverage"]
    cols = st.columns(6)
    cols[0].metric("segments", phrase["n_segments"], help=f"{phrase['duration_s']:.2f} s of phrase")
    cols[1].metric("heard often", f"{cov['often']:.0%}", help="Segments close to gestures the model knows well")
    cols[2].metric("rarely / never", f"{cov['rarely']:.0%} / {cov['never']:.0%}",
                   help="Segments the model heard rarely, or nothing like")
    take = take_name(model, match["end_frame"])  # None for one file
    place = source_place(model, match["end_frame"])  # "12.34 s", or "take.wav 12.34 s" in a corpus
    when = place[len(take) + 1:] if take else place
    cols[3].metric("matched at", when, help=f"Source frame {match['end_frame']}" + (f", in {take}" if take else "")
                   + f"; the answer starts in state {match['state']}")
    n_aligned = len(match["frames"])
    cols[4].metric("context", f"{match['context']} of {n_aligned}",
                   help="Trailing phrase segments that match the training recording right before that point "
                        f"(exact token agreement: {match['token_context']})")
    cols[5].metric("answer", f"{summary['answer']['duration_s']:.1f} s",
                   help=f"{gen['n_frames']} frames, {gen['n_jumps']} jumps, mode {summary['mode']}")
    if take:
        st.caption(f"Matched in **{take}**, {when} from its start.")
    if cov["never"] >= 0.5:
        st.info("Most of this phrase is unlike anything in the training recording: the match is loose, and the "
                "answer comes from the closest material the model has.")
    a, b = st.columns(2)
    a.caption("Your phrase")
    a.audio(str(folder / doc["phrase_file"]))
    b.caption(f"The answer ({summary['mode']})")
    b.audio(str(folder / doc["answer_file"]))
    b.download_button("Download the answer", data=(folder / doc["answer_file"]).read_bytes(),
                      file_name=f"chandra_{doc['answer_file']}", mime="audio/wav", key=f"download_{key}")
    st.plotly_chart(phrase_match_figure(summary, model, answer_frames=doc.get("frames")), width="stretch",
                    key=f"match_{key}")
    with st.expander("Segments, tokens and coverage"):
        st.dataframe(phrase_table(summary, model), hide_index=True, width="stretch")
    with st.expander("The answer's path and parameters"):
        st.json({"params": summary["params"], "generation": gen, "follow": summary.get("follow"),
                 "timings_s": summary.get("timings_s")})


common.page_setup("Play")
st.title("Play")
st.caption("Play a phrase to the model: it segments and tokenises it the way it heard its training recording, "
           "finds where the phrase's ending sits in that recording (query matching on the oracle), and answers "
           "from there. Each phrase and answer are kept with the run so a demo can be replayed.")

path_text = common.choose_model_path(model_key=MODEL_KEY, input_key=INPUT_KEY)
if path_text:
    model_path, model = common.open_chosen_model(path_text, load_model_cached)
    if model.oracle is None:
        st.error("This model has no oracle; there is nothing to answer from.")
        st.stop()
    if model.audio is None:
        st.error("This model has no source audio embedded, so it cannot play an answer: retrain it with audio "
                 "embedded (the default).")
        st.stop()
    try:
        encoder_model = encoder_source(model)
        needs_code = bool((model.provenance.get("encoder") or {}).get("trust_remote_code"))
        trust = needs_code and st.checkbox("Run the encoder's own code (its model directory ships it, as MERT's "
                                           "does)", key="play_trust_remote_code")
        stat = model_path.stat()
        listener = listener_cached(str(model_path), stat.st_mtime, stat.st_size, encoder_model, trust)
    except (ChandraError, OSError, ValueError) as exc:
        common.show_error(exc, context="This model cannot listen")
        st.stop()
    st.caption(f"{len(model.events)} frames · oracle: {model.oracle.kind} · listens with "
               f"{listener.spec['encoder']['alias']} at {listener.sample_rate} Hz, "
               f"{listener.n_tokens} tokens")

    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    mode = c1.radio("Answer", MODES, horizontal=True, key="play_mode",
                    format_func=lambda m: m, help="; ".join(f"{k}: {v}" for k, v in MODE_HELP.items()))
    seconds = c2.number_input("Seconds", min_value=1.0, max_value=120.0, value=10.0, step=1.0, key="play_seconds")
    seed = c3.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="play_seed")
    continuity = c4.slider("Continuity", min_value=0.0, max_value=1.0, value=0.8, step=0.05, key="play_continuity")
    st.caption(f"**{mode}**: {MODE_HELP[mode]}.")
    options = {"mode": mode, "seconds": float(seconds), "seed": int(seed), "continuity": float(continuity)}

    given = phrase_input()
    if given is not None:
        try:
            with st.spinner("Listening and answering…"):
                st.session_state[RESULT_KEY] = str(answer(model, model_path, listener, given[0], given[1], options))
        except (ChandraError, OSError, ValueError) as exc:
            st.session_state.pop(RESULT_KEY, None)
            common.show_error(exc, context="The phrase")

    record_path = st.session_state.get(RESULT_KEY)
    if record_path and Path(record_path).exists() and Path(record_path).parent == common.outputs_dir(model_path, "responses"):
        st.subheader("The answer")
        try:
            show_pair(model, Path(record_path), key="current")
        except ChandraError as exc:
            common.show_error(exc)

    from chandra.respond import list_responses

    earlier = [d for d in list_responses(common.outputs_dir(model_path, "responses"))
               if d.get("model_path") == str(model_path) and d["path"] != record_path]
    if earlier:
        st.subheader(f"Earlier phrases ({len(earlier)})")
        labels = {d["path"]: f"{d.get('created', '?')} · {d.get('phrase_name')} · "
                             f"{d['summary'].get('mode')} · seed {d['summary'].get('params', {}).get('seed')}"
                  for d in earlier}
        chosen = st.selectbox("Replay", list(labels), format_func=labels.get, key="play_replay")
        if chosen:
            try:
                show_pair(model, Path(chosen), key="replay")
            except ChandraError as exc:
                common.show_error(exc)
