"""chandra dashboard — home: choose audio and parameters, run the stages,
see the pipeline and its findings at a glance.

Run with ``streamlit run app.py`` (settings in ``.streamlit/config.toml``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import streamlit as st

from chandra.encoders import ENCODER_NAMES
from chandra.errors import ChandraError
from chandra.findings import count_by_severity
from chandra.normalisation import NORMALISATIONS
from chandra.oracle import KINDS as ORACLE_KINDS
from chandra.pipeline import STAGES, STAGE_DEPENDENCIES, TrainConfig
from dashboard import common

common.page_setup("Home", icon="🎛️")

STAGE_PAGES = {
    "segment": "pages/1_Audio_and_segments.py",
    "encode": "pages/2_Features.py",
    "vocabulary": "pages/3_Vocabulary.py",
    "events": "pages/4_Events_and_fields.py",
    "oracle": "pages/5_Oracle.py",
}


# --------------------------------------------------------------------------- parameters


def _params_from_config(cfg: TrainConfig) -> dict:
    thr = cfg.threshold
    return {
        "p_encoder": cfg.encoder if cfg.encoder in ENCODER_NAMES else "dsp",
        "p_model": cfg.model or "",
        "p_layer": int(cfg.layer),
        "p_trust": bool(cfg.trust_remote_code),
        "p_k_mode": "auto" if cfg.n_tokens == "auto" else "number",
        "p_k": int(cfg.n_tokens) if cfg.n_tokens != "auto" else 32,
        "p_norm": cfg.normalisation,
        "p_pca": int(cfg.pca_components or 0),
        "p_seed": int(cfg.seed),
        "p_reduce_k": bool(cfg.reduce_k),
        "p_min_dur": float(cfg.min_duration),
        "p_max_dur": float(cfg.max_duration),
        "p_oracle": cfg.oracle,
        "p_thr_mode": "number" if isinstance(thr, (int, float)) else "auto",
        "p_thr": float(thr) if isinstance(thr, (int, float)) else 0.1,
    }


#: What a new run gets from the dashboard: the library's defaults, with K chosen by the rule.
DASHBOARD_DEFAULTS = TrainConfig(n_tokens="auto")
PARAM_KEYS = tuple(_params_from_config(DASHBOARD_DEFAULTS))


def _sync_params(run) -> None:
    """Fill the parameter widgets from the current run once per run (and with
    defaults on first visit), so a reload shows the run's own options.

    Streamlit drops widget state while another page is shown, so the values
    are also kept in a plain shadow dict and restored on return."""
    ss = st.session_state
    target = run.run_id if run is not None else "__defaults__"
    missing = any(k not in ss for k in PARAM_KEYS)
    shadow = ss.get("_params_shadow")
    if missing and shadow and (ss.get("_params_for") == target or run is None):
        ss.update({k: shadow[k] for k in PARAM_KEYS if k not in ss and k in shadow})
        missing = any(k not in ss for k in PARAM_KEYS)
    if not missing and (ss.get("_params_for") == target or (run is None and "_params_for" in ss)):
        return  # already in step (or: keep what the user typed when leaving a run)
    cfg = run.config() if run is not None else DASHBOARD_DEFAULTS
    ss.update(_params_from_config(cfg))
    ss["_params_for"] = target


def _config_from_widgets(base: TrainConfig | None = None) -> TrainConfig:
    ss = st.session_state
    threshold = None
    if ss["p_oracle"] == "features":
        threshold = "auto" if ss["p_thr_mode"] == "auto" else float(ss["p_thr"])
    fields = dict(
        encoder=ss["p_encoder"],
        model=common.resolve_model_source(ss["p_model"]) if ss["p_encoder"] != "dsp" else (ss["p_model"].strip() or None),
        layer=int(ss["p_layer"]),
        trust_remote_code=bool(ss["p_trust"]),
        n_tokens="auto" if ss["p_k_mode"] == "auto" else int(ss["p_k"]),
        normalisation=ss["p_norm"],
        pca_components=(int(ss["p_pca"]) or None),
        seed=int(ss["p_seed"]),
        reduce_k=bool(ss["p_reduce_k"]),
        min_duration=float(ss["p_min_dur"]),
        max_duration=float(ss["p_max_dur"]),
        oracle=ss["p_oracle"],
        threshold=threshold,
    )
    cfg = dataclasses.replace(base, **fields) if base is not None else TrainConfig(**fields)
    cfg.validate()
    return cfg


def parameters_form() -> None:
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        st.markdown("**Encoder**")
        st.selectbox("encoder", ENCODER_NAMES, key="p_encoder",
                     help="dsp = librosa descriptors (offline). The others are transformer models.")
        st.text_input("model name or local directory", key="p_model",
                      help="Blank = the encoder's default. Hub names resolve from the local cache only.",
                      disabled=st.session_state["p_encoder"] == "dsp")
        st.number_input("layer (-1 = last)", step=1, key="p_layer", disabled=st.session_state["p_encoder"] == "dsp")
        st.checkbox("trust remote code (MERT)", key="p_trust", disabled=st.session_state["p_encoder"] == "dsp")
    with c2:
        st.markdown("**Vocabulary**")
        st.radio("K (tokens)", ("auto", "number"), key="p_k_mode", horizontal=True,
                 help="auto = the largest K in which every token stands for about 4 segments or more (8 to 64), "
                      "checked on the features; the rule and its evidence are stored with the model")
        st.number_input("K value", min_value=1, max_value=4096, step=1, key="p_k",
                        disabled=st.session_state["p_k_mode"] == "auto")
        st.selectbox("normalisation", NORMALISATIONS, key="p_norm")
        st.number_input("PCA components (0 = off)", min_value=0, max_value=2048, step=1, key="p_pca")
        st.number_input("seed", min_value=0, step=1, key="p_seed")
        st.checkbox("allow reducing K when there are too few segments", key="p_reduce_k")
    with c3:
        st.markdown("**Segmentation**")
        st.number_input("min segment duration (s)", min_value=0.01, max_value=10.0, step=0.05, format="%.2f",
                        key="p_min_dur")
        st.number_input("max segment duration (s)", min_value=0.02, max_value=30.0, step=0.1, format="%.2f",
                        key="p_max_dur")
    with c4:
        st.markdown("**Oracle**")
        st.radio("oracle over", ORACLE_KINDS, key="p_oracle", horizontal=True,
                 help="tokens = factor oracle over gesture tokens; features = audio oracle with a threshold")
        features = st.session_state["p_oracle"] == "features"
        st.radio("threshold", ("auto", "number"), key="p_thr_mode", horizontal=True, disabled=not features,
                 help="auto = best information rate over a threshold sweep")
        st.number_input("threshold value", min_value=1e-6, max_value=100.0, step=0.01, format="%.4f", key="p_thr",
                        disabled=not features or st.session_state["p_thr_mode"] == "auto")
    st.session_state["_params_shadow"] = {k: st.session_state[k] for k in PARAM_KEYS}


# --------------------------------------------------------------------------- audio


def audio_chooser() -> tuple[Path | None, ChandraError | None]:
    """The chosen audio file, or (None, why not). Every path is checked
    against the allowed folders here, before anything reads it."""
    source = st.radio("audio source", ("sample", "server path", "upload"), horizontal=True, key="audio_source")
    if source == "sample":
        samples = common.sample_files()
        if not samples:
            st.warning("No files in sample_audio/.")
            return None, None
        name = st.selectbox("sample", [p.name for p in samples], key="audio_sample")
        try:
            return common.resolve_user_path(str(common.SAMPLE_DIR / name)), None
        except ChandraError as exc:
            return None, exc
    if source == "server path":
        text = st.text_input("path of an audio file on the server", key="audio_path",
                             placeholder="/data/recordings/take1.wav", help=common.roots_hint())
        if not text.strip():
            return None, None
        try:
            return common.resolve_user_path(text), None
        except ChandraError as exc:
            common.show_error(exc)
            return None, exc
    from chandra.audio import SUPPORTED_EXTENSIONS

    cap = st.get_option("server.maxUploadSize")
    upload = st.file_uploader(f"upload audio (at most {cap} MB)", type=[e.lstrip(".") for e in SUPPORTED_EXTENSIONS],
                              key="audio_upload", help="The file is decoded when it arrives; one that is not "
                              "readable audio is refused here.")
    if upload is None:
        return None, None
    saved = st.session_state.get("_upload_saved") or {}
    if saved.get("file_id") == upload.file_id:  # checked on an earlier rerun: not hashed again
        if saved.get("error"):
            st.error(saved["error"], icon=":material/block:")
            return None, ChandraError(saved["error"])
        return Path(saved["path"]), None
    try:
        path = common.save_upload(upload.name, upload.getvalue())
    except ChandraError as exc:
        st.session_state["_upload_saved"] = {"file_id": upload.file_id, "error": str(exc)}
        common.show_error(exc)
        return None, exc
    st.session_state["_upload_saved"] = {"file_id": upload.file_id, "path": str(path)}
    return path, None


# --------------------------------------------------------------------------- a corpus of takes

TRAIN_MODES = ("one file", "several files or a folder")


def _corpus_uploads() -> tuple[list[Path], list[str]]:
    """Uploaded takes: each checked and stored by the one upload saver, once
    per upload (the outcome is kept by file id across reruns)."""
    from chandra.audio import SUPPORTED_EXTENSIONS

    cap = st.get_option("server.maxUploadSize")
    uploads = st.file_uploader(f"upload takes (several files; at most {cap} MB each)",
                               type=[e.lstrip(".") for e in SUPPORTED_EXTENSIONS], accept_multiple_files=True,
                               key="corpus_upload", help="Each file is decoded when it arrives; one that is not "
                               "readable audio is refused here and left out.")
    paths, errors = common.save_uploads(uploads, st.session_state.setdefault("_corpus_uploads", {}))
    return paths, errors


def _expand_checked(items: list[Path]) -> list[Path]:
    """Files and folders (searched recursively, :func:`chandra.corpus.collect_inputs`)
    as files, each found file checked against the allowed folders again (a
    symlink inside a folder cannot lead outside)."""
    from chandra.corpus import collect_inputs

    if not items:  # nothing chosen yet: no takes, not an error ("No takes chosen yet." below)
        return []
    found = collect_inputs(items)
    return [common.resolve_user_path(f.path) for f in found]


def corpus_chooser() -> tuple[list[Path], ChandraError | None]:
    """The chosen takes (files in order, folders expanded), or ([], why not)."""
    source = st.radio("takes from", ("samples", "server paths", "uploads"), horizontal=True, key="corpus_source")
    try:
        if source == "samples":
            samples = common.sample_files()
            if not samples:
                st.warning("No files in sample_audio/.")
                return [], None
            names = st.multiselect("samples", [p.name for p in samples], key="corpus_samples",
                                   help="The takes of the corpus, in the order picked")
            return _expand_checked([common.resolve_user_path(str(common.SAMPLE_DIR / n)) for n in names]), None
        if source == "server paths":
            text = st.text_area("files or folders on the server, one per line (folders are searched recursively)",
                                key="corpus_paths", placeholder="/data/session1/\n/data/extra/take7.wav",
                                help=common.roots_hint())
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            items = [common.resolve_user_path(line, kind=None) for line in lines]
            return _expand_checked(items), None
        paths, errors = _corpus_uploads()
        for message in errors:
            st.error(message, icon=":material/block:")
        return paths, None
    except ChandraError as exc:
        common.show_error(exc)
        return [], exc


@st.cache_data(max_entries=32, show_spinner="Reading the takes…")
def _describe(paths: tuple[str, ...], stamps: tuple[float, ...]) -> list[dict]:
    from chandra.corpus_view import describe_takes

    return describe_takes(list(paths))


def takes_preview(paths: list[Path]) -> None:
    """The takes found, before training: name, duration, sample rate."""
    if not paths:
        st.caption("No takes chosen yet.")
        return
    try:
        rows = _describe(tuple(str(p) for p in paths), tuple(p.stat().st_mtime for p in paths))
    except OSError as exc:
        common.show_error(exc)
        return
    total = sum(r["duration (s)"] or 0.0 for r in rows)
    st.markdown(f"**{len(rows)} take(s) found**, {total:.1f} s in all"
                + (" · one take trains as a one-file run" if len(rows) == 1 else ""))
    st.dataframe(rows, hide_index=True, width="stretch", key="takes_found")
    bad = [r for r in rows if r["problem"]]
    for r in bad:
        st.warning(f"{r['name']}: {r['problem']}", icon=":material/warning:")


# --------------------------------------------------------------------------- segments and K before training


@st.cache_data(max_entries=64, show_spinner=False)
def _file_digest(path: str, mtime: float, size: int) -> str:
    from chandra.io_utils import sha256_file

    return sha256_file(path)


@st.cache_data(max_entries=32, show_spinner="Counting segments…")
def _segment_preview(digest: str, sample_rate: int, min_duration: float, max_duration: float, hop_length: int,
                     _path: str) -> dict:
    """Segments and recommended K of a file, cached by its content hash and the
    segmentation parameters (not by its path: the same take uploaded twice is
    counted once)."""
    from chandra.pipeline import segment_preview

    config = TrainConfig(sample_rate=sample_rate, min_duration=min_duration, max_duration=max_duration,
                         hop_length=hop_length)
    return segment_preview(_path, config)


def _use_k(value: int | str) -> None:
    """on_click: put K into the form (before its widgets are drawn)."""
    if value == "auto":
        st.session_state["p_k_mode"] = "auto"
    else:
        st.session_state["p_k_mode"] = "number"
        st.session_state["p_k"] = int(value)


def k_preview(audio: Path | None) -> None:
    """The chosen file's segment count and recommended K, before training;
    a K larger than the segments is refused here with the largest that works."""
    ss = st.session_state
    if audio is None:
        return
    try:
        if not (0 < float(ss["p_min_dur"]) < float(ss["p_max_dur"])):
            return  # the form reports bad durations
        stat = audio.stat()
        digest = _file_digest(str(audio), stat.st_mtime, stat.st_size)
        base = DASHBOARD_DEFAULTS
        preview = _segment_preview(digest, int(base.sample_rate), float(ss["p_min_dur"]), float(ss["p_max_dur"]),
                                   int(base.hop_length), _path=str(audio))
    except (ChandraError, OSError) as exc:
        common.show_error(exc, context=audio.name)
        return
    n, rec = preview["n_segments"], preview["recommendation"]
    if ss["p_k_mode"] == "auto":
        ss["p_k"] = int(rec["k"])  # the greyed K box shows what auto picks from the count
    reason = rec["reason"].split(": ", 1)[-1]  # "<n> segments: with K = ..." -> "with K = ..."
    st.markdown(f"**{audio.name}**: **{n} segments** in {preview['duration']:.1f} s "
                f"(segments {ss['p_min_dur']:.2f}–{ss['p_max_dur']:.2f} s long) · recommended **K = {rec['k']}**: "
                f"{reason[0].upper() + reason[1:]}")
    st.caption(f"The rule: {rec['rule']} With K on auto, training checks this K on the features and records the "
               "rule and its evidence in the model.")
    if ss["p_k_mode"] != "number":
        return
    k = int(ss["p_k"])
    if k > n:
        st.warning(f"K = {k} is more than the {n} segments of this take: a vocabulary needs a segment for each "
                   f"token, so training would stop at the vocabulary stage. The largest K that works is {n}; the "
                   f"recommended K is {rec['k']}.", icon=":material/warning:")
        b1, b2, _ = st.columns([1, 1, 2])
        b1.button(f"Use K = {n} (the largest that works)", key="use_largest_k", on_click=_use_k, args=(n,),
                  width="stretch")
        b2.button(f"Use K = auto ({rec['k']} for this take)", key="use_auto_k", on_click=_use_k, args=("auto",),
                  width="stretch")
    elif n / k < 3 and k > rec["k"]:
        st.info(f"K = {k} gives each token about {n / k:.1f} segments: most tokens would be used once or twice, so "
                f"little would repeat for the improviser to recombine (recommended: K = {rec['k']}).",
                icon=":material/info:")
        st.button(f"Use K = auto ({rec['k']} for this take)", key="use_auto_k", on_click=_use_k, args=("auto",))


def _rerun_with_k(run, value: int | str) -> None:
    """on_click: set the run's K (and the form's), then run what became stale."""
    _use_k(value)
    cfg = run.config()
    run.set_config(dataclasses.replace(cfg, n_tokens=value if value == "auto" else int(value)))
    st.session_state["_params_for"] = run.run_id
    common.start_job(run, "stale")


def k_too_large_note(run, status: dict, meta: dict) -> None:
    """A vocabulary stage that failed because K exceeded the segments offers
    the largest K that works (and K on auto), one click each."""
    from chandra.vocabulary import recommend_k

    cfg = run.config()
    n = (meta.get("summaries", {}).get("segment") or {}).get("n_segments")
    if status.get("vocabulary", {}).get("status") != "failed" or cfg.n_tokens == "auto" or not n \
            or int(cfg.n_tokens) <= int(n) or common.job_running(run):
        return
    n = int(n)
    rec = recommend_k(n)["k"]
    st.info(f"This take has {n} segments, fewer than K = {cfg.n_tokens}. The largest K that works is {n}; the "
            f"recommended K is {rec}.", icon=":material/lightbulb:")
    b1, b2, _ = st.columns([1, 1, 2])
    b1.button(f"Re-run with K = {n}", key="rerun_largest_k", on_click=_rerun_with_k, args=(run, n),
              width="stretch", help="The largest K a vocabulary can have on this take (one segment per token)")
    b2.button(f"Re-run with K = auto ({rec})", key="rerun_auto_k", on_click=_rerun_with_k, args=(run, "auto"),
              width="stretch", help="K chosen by the rule, checked on the features")


# --------------------------------------------------------------------------- pipeline strip


def _stages_needed(status: dict, stage: str) -> list[str]:
    """``stage`` plus every upstream stage that has no current result."""
    needed: set[str] = set()

    def add(name: str) -> None:
        for dep in STAGE_DEPENDENCIES[name]:
            if status[dep]["status"] != "done":
                add(dep)
                needed.add(dep)
    add(stage)
    needed.add(stage)
    return [s for s in STAGES if s in needed]


def queue_note(run) -> None:
    """Where the run's job stands in the queue, with a Cancel button. Polled
    on its own (every 5 s) while the run waits: the stage strip above does
    not change meanwhile, so ten waiting sessions cost the server (and their
    browsers) three elements each, not the whole strip. When the job leaves
    the queue the whole page runs again."""
    job = common.job_for(run)
    if job is None or job.status != "queued":
        st.rerun()
    counts = common.job_queue().counts()
    qc1, qc2 = st.columns([5, 1])
    with qc1:
        st.info(f"Queued: position **{job.position}** of {counts['queued']} waiting · "
                f"{counts['running']} of {counts['max_workers']} job slot(s) busy. "
                "The run starts when a slot frees; other pages keep working meanwhile.",
                icon=":material/hourglass_top:")
    with qc2:
        if st.button("Cancel", key="cancel_queued", type="secondary", width="stretch",
                     help="Take this run out of the queue"):
            common.cancel_job(run)
            st.rerun()


def pipeline_panel(run, *, was_running: bool) -> None:
    from chandra.figures.stages import stage_headline

    meta = run.meta()
    status = common.stage_status(run)
    running = common.job_running(run)
    if was_running and not running:
        st.rerun()  # the job ended: refresh the whole page (results, findings)
    cols = st.columns(len(STAGES))
    for col, stage in zip(cols, STAGES):
        info = status[stage]
        s = info.get("status", "not run")
        with col:
            st.markdown(f"{common.STATUS_ICONS.get(s, '❔')} **{stage}**")
            st.caption(s + (f" · {info['seconds']:.2f} s" if info.get("seconds") is not None and s in
                            ("done", "stale") else ""))
            if st.button("Run", key=f"run_stage_{stage}", disabled=running, width="stretch",
                         help=f"Run '{stage}' (and any upstream stage without a current result)"):
                common.start_job(run, _stages_needed(status, stage))
                st.rerun()
            headline = stage_headline(stage, meta.get("summaries", {}), meta.get("ledger", [])) \
                if s in ("done", "stale") else ""
            if headline:
                st.caption(headline)
    if running and not common.job_queued(run):
        prog = run.progress() or {}
        current = next((s for s in STAGES if status[s]["status"] == "running"), prog.get("stage", "…"))
        done, total = int(prog.get("done", 0) or 0), int(prog.get("total", 0) or 0)
        frac = done / total if total else 0.0
        label = f"running **{current}**" + (f" — {prog.get('stage')} {done}/{total}" if total else "")
        if prog.get("corpus"):  # a corpus trains as one job: say which phase it is in
            label = f"training the corpus of {prog.get('n_files', '?')} takes — **{prog.get('stage', '…')}**" \
                + (f" {done}/{total}" if total else "")
        if prog.get("note"):
            label += f" · {prog['note']}"  # e.g. compiling (first run only)
        pc1, pc2 = st.columns([5, 1])
        with pc1:
            st.progress(min(max(frac, 0.0), 1.0), text=label)
        with pc2:
            if st.button("Cancel", key="cancel_run", type="secondary", width="stretch"):
                common.cancel_job(run)
                st.toast("Cancel requested; the stage stops at its next progress report.")
    recorded = run.job() or {}
    if recorded.get("status") in ("queued", "running") and common.job_for(run) is None:
        st.warning(f"This run's last job was {recorded['status']} in another server process "
                   f"(pid {recorded.get('pid', '?')}); if that server has stopped, run the stages again.")
    failed = [s for s in STAGES if status[s].get("status") == "failed"]
    if meta.get("kind") == "corpus" and len(failed) > 1 \
            and len({status[s].get("error") for s in failed}) == 1:
        # A corpus trains as one job: one error, said once.
        st.error(f"The corpus failed ({len(failed)} stages): {status[failed[0]].get('error') or 'unknown error'}",
                 icon=":material/block:")
        status = {s: (info if s not in failed else {**info, "status": "failed-shown"}) for s, info in status.items()}
    for stage in STAGES:
        info = status[stage]
        if info.get("status") == "failed":
            st.error(f"Stage **{stage}** failed: {info.get('error') or 'unknown error'}", icon=":material/block:")
        elif info.get("status") == "cancelled":
            st.warning(f"Stage **{stage}** was cancelled.")
        elif info.get("status") == "interrupted":
            st.warning(f"Stage **{stage}** was interrupted (the server stopped mid-run); run it again.")


# --------------------------------------------------------------------------- page

common.job_queue()  # once per server: sizes the queue and starts a warmed-up job process
st.title("chandra · trainer dashboard")
st.caption("Audio → onset segments → features → L2 → K-means gesture tokens → events → oracle → model. "
           "Every stage is persisted in a run directory; every page shows the same run.")

run = common.current_run()

# Existing runs: pick one to revisit.
from chandra.rundir import list_runs  # noqa: E402

try:
    runs = list_runs(common.runs_root())
except ChandraError as exc:
    common.show_error(exc)
    runs = []
if runs:
    ids = [r.run_id for r in runs]
    options = ["(none)"] + ids
    index = options.index(run.run_id) if run is not None and run.run_id in ids else 0

    def _label(rid: str) -> str:
        if rid == "(none)":
            return "(no run selected)"
        try:
            # Stable labels only: a label that changes while a run progresses
            # would make streamlit treat the picker as a new widget.
            return f"{rid} · {next(r for r in runs if r.run_id == rid).meta().get('audio_name')}"
        except Exception:  # noqa: BLE001 - a half-written run must not break the picker
            return rid

    picked = st.selectbox("current run", options, index=index, format_func=_label,
                          help="Each browser session has its own current run; it is also in the URL (?run=…).")
    if picked != (run.run_id if run is not None else "(none)"):
        common.set_current_run(None if picked == "(none)" else picked)
        st.rerun()

_sync_params(run)

with st.expander("Audio and parameters", expanded=run is None):
    mode = st.radio("train on", TRAIN_MODES, horizontal=True, key="train_mode",
                    help="Several files or a folder make one corpus: one vocabulary and one oracle over every take.")
    corpus_paths: list[Path] = []
    audio, audio_error = None, None
    if mode == TRAIN_MODES[0]:
        audio, audio_error = audio_chooser()
        if audio_error is None:
            k_preview(audio)
    else:
        corpus_paths, audio_error = corpus_chooser()
        if audio_error is None:
            takes_preview(corpus_paths)
    st.divider()
    parameters_form()
    b1, b2, b3 = st.columns([2, 2, 2])
    with b1:
        start_new = st.button("▶ Run all (new run)", type="primary", key="run_all", width="stretch",
                              disabled=run is not None and common.job_running(run))
    with b2:
        apply = st.button("Apply parameters to this run", key="apply_params", disabled=run is None,
                          width="stretch", help="Stages whose inputs change become stale.")
    with b3:
        run_stale = st.button("Run stale / missing stages", key="run_stale", disabled=run is None
                              or common.job_running(run), width="stretch")

if start_new and mode != TRAIN_MODES[0]:
    try:
        if audio_error is not None:
            raise audio_error
        if not corpus_paths:
            raise ChandraError("choose the takes first (samples, files or folders on the server, or uploads)")
        checked = [common.resolve_user_path(str(p)) for p in corpus_paths]  # checked again before a run is made
        config = _config_from_widgets()
        from chandra.rundir import RunDirectory

        if len(checked) == 1:
            new_run = RunDirectory.create(common.runs_root(), checked[0], config)
        else:
            new_run = RunDirectory.create_corpus(common.runs_root(), checked, config)
        common.set_current_run(new_run.run_id)
        st.session_state["_params_for"] = new_run.run_id
        common.start_job(new_run, "all")
        st.rerun()
    except ChandraError as exc:
        if exc is not audio_error:
            common.show_error(exc)
elif start_new:
    try:
        if audio_error is not None:
            raise audio_error
        if audio is None:
            raise ChandraError("choose an audio file first (a sample, a server path or an upload)")
        audio = common.resolve_user_path(str(audio))  # checked again: nothing outside the roots gets a run
        config = _config_from_widgets()
        from chandra.rundir import RunDirectory

        new_run = RunDirectory.create(common.runs_root(), audio, config)
        common.set_current_run(new_run.run_id)
        st.session_state["_params_for"] = new_run.run_id
        common.start_job(new_run, "all")
        st.rerun()
    except ChandraError as exc:
        if exc is not audio_error or st.session_state.get("audio_source") == "sample":
            common.show_error(exc)  # (a path or upload error is already shown under its box)

if run is not None and apply:
    try:
        run.set_config(_config_from_widgets(run.config()))
        st.toast("Parameters applied; affected stages are now stale.")
    except ChandraError as exc:
        common.show_error(exc)

if run is not None and run_stale:
    common.start_job(run, "stale")
    st.rerun()

if run is None:
    st.info("No run selected yet: choose audio and parameters above and press **Run all**, "
            "or pick an existing run.")
    st.stop()

meta = run.meta()
common.run_caption(run)
try:
    current_cfg = _config_from_widgets(run.config())
    if current_cfg.to_dict() != run.config().to_dict():
        st.info("The parameters above differ from this run's. **Apply** them to mark the affected stages stale, "
                "or **Run all** to start a new run with them.")
except ChandraError:
    pass  # an invalid form is reported when it is used

st.subheader("Pipeline")
if common.job_queued(run):
    # Waiting: the strip is drawn once; only the queue note polls (every 5 s).
    pipeline_panel(run, was_running=False)
    st.fragment(run_every=5.0)(queue_note)(run)
else:
    # A running job's panel refreshes every second (status, progress).
    was_running = common.job_running(run)
    st.fragment(run_every=1.0 if was_running else None)(pipeline_panel)(run, was_running=was_running)
k_too_large_note(run, common.stage_status(run), meta)
job = common.job_for(run)
if job is not None and job.status == "failed" and job.error is not None:
    failed = any(i.get("status") == "failed" for i in run.status().values())
    if not failed:  # errors of stages are already listed above
        common.show_error(job.error, context="run")

links = st.columns(len(STAGE_PAGES))
for col, (stage, page) in zip(links, STAGE_PAGES.items()):
    with col:
        try:
            st.page_link(page, label=f"{stage} →")
        except Exception:  # noqa: BLE001 - page registry absent (tests running app.py alone)
            pass

if meta.get("kind") == "corpus":
    corpus_summary = (meta.get("summaries") or {}).get("corpus") or {}
    st.subheader("Takes")
    if corpus_summary.get("files"):
        st.dataframe(corpus_summary["files"], hide_index=True, width="stretch", key="corpus_takes")
    else:
        st.dataframe([{k: r.get(k) for k in ("name", "path", "sha256")} for r in run.inputs()], hide_index=True,
                     width="stretch", key="corpus_takes")
        st.caption("The corpus trains as one job: every stage shows running until the model is saved.")

ledger = meta.get("ledger", [])
findings = common.run_findings(run, ledger)
st.subheader("Findings")
counts = count_by_severity(findings)
m1, m2, m3 = st.columns(3)
m1.metric("errors", counts["error"])
m2.metric("warnings", counts["warning"])
m3.metric("info", counts["info"])
common.render_findings(findings, empty="No findings: every field survives every stage." if ledger else None)
if findings:
    from chandra.figures.diagnostics import findings_table

    with st.expander("all findings as a table"):
        st.dataframe(findings_table(findings), width="stretch", hide_index=True)

st.subheader("At a glance")
if not ledger:
    st.caption("The ledger fills in as stages run.")
else:
    from chandra.figures.diagnostics import token_strip_figure

    configured_k = run.config().n_tokens
    n_tokens = (meta.get("summaries", {}).get("vocabulary", {}) or {}).get("n_tokens") \
        or (configured_k if configured_k != "auto" else None)
    common.field_matrix_section(ledger, findings=findings, files=run.corpus_files(), key="home_field_matrix")
    st.plotly_chart(token_strip_figure(ledger, n_tokens=int(n_tokens) if n_tokens else None), width="stretch",
                    key="home_token_strip")
