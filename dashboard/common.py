"""Helpers shared by the dashboard's pages (the only place besides the pages
that imports streamlit).

* The current run is a *handle* (its id): kept in ``st.session_state`` and
  mirrored in the ``?run=<id>`` query parameter, so a reload or a shared URL
  shows the same run and two browser sessions never share a current run.
* Loaded run state is cached by (run path, stage stamp) with
  ``st.cache_resource``; nothing hashes big arrays.
* Training jobs go through the process-wide queue of :mod:`chandra.jobs`
  (:func:`start_job`): at most ``--max-jobs`` run at once, the others wait
  with a visible position and can be cancelled; pages poll the run
  directory for progress and render stored results without waiting.
* Every path a user types or picks goes through :func:`resolve_user_path`
  (:func:`chandra.paths.resolve_allowed` over :func:`allowed_roots`):
  the bundled samples, the runs folder (uploads included) and the folders
  named with ``--data-dir`` when the server was started. Nothing outside is
  read, hashed, listed or written.
* Uploads are checked and stored by one saver (:func:`save_upload`).

Server options (after ``--``: ``streamlit run app.py -- --data-dir DIR
--max-jobs N``) and their environment equivalents: ``--data-dir`` /
``CHANDRA_DATA_DIRS`` (``os.pathsep``-separated), ``--max-jobs`` /
``CHANDRA_MAX_JOBS``, and ``CHANDRA_RUNS_DIR`` for the runs folder.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import streamlit as st

from chandra.errors import ChandraError

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "sample_audio"
UPLOAD_DIRNAME = "_uploads"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Status badges (material icons ship with streamlit; emoji fonts may be missing).
STATUS_ICONS = {
    "not run": ":gray[:material/radio_button_unchecked:]",
    "running": ":blue[:material/autorenew:]",
    "done": ":green[:material/check_circle:]",
    "stale": ":orange[:material/update:]",
    "failed": ":red[:material/error:]",
    "cancelled": ":violet[:material/cancel:]",
    "interrupted": ":orange[:material/warning:]",
}


# ---------------------------------------------------------------------------
# places
# ---------------------------------------------------------------------------


def runs_root() -> Path:
    """Where run directories live: ``$CHANDRA_RUNS_DIR`` or ``<repo>/runs``."""
    root = os.environ.get("CHANDRA_RUNS_DIR")
    return Path(root).expanduser() if root else REPO_ROOT / "runs"


def upload_dir() -> Path:
    return runs_root() / UPLOAD_DIRNAME


def _server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamlit run app.py --", add_help=False, allow_abbrev=False)
    p.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose files the dashboard may open (repeatable)")
    p.add_argument("--max-jobs", type=int, default=None, metavar="N",
                   help="training jobs run at once (default: one per two cores)")
    return p


@functools.lru_cache(maxsize=8)
def _parse_server_args(argv: tuple[str, ...]) -> argparse.Namespace:
    args, _ = _server_parser().parse_known_args(list(argv))
    return args


def server_args() -> argparse.Namespace:
    """The options given to the dashboard after ``--`` on the ``streamlit
    run`` line (only when the process runs this app; under pytest the
    process's own arguments are not the app's)."""
    argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name == "app.py" else []
    return _parse_server_args(tuple(argv))


def data_dirs() -> list[Path]:
    """Folders named by whoever started the server: ``--data-dir`` (repeatable)
    and ``$CHANDRA_DATA_DIRS`` (``os.pathsep``-separated)."""
    named = list(server_args().data_dir)
    named += [d for d in os.environ.get("CHANDRA_DATA_DIRS", "").split(os.pathsep) if d.strip()]
    return [Path(d).expanduser() for d in named]


def allowed_roots(extra: Iterable[Path] = ()) -> list[Path]:
    """Where a user's paths may point: the bundled samples, the runs folder
    (uploads and generations are inside it), the ``--data-dir`` folders and
    ``extra`` (e.g. a page's bundled example file)."""
    return [SAMPLE_DIR, runs_root(), upload_dir(), *data_dirs(), *extra]


def roots_hint() -> str:
    """One line naming the allowed folders, for help texts."""
    names = [str(p) for p in allowed_roots() if p.exists()]
    return "Paths must lie inside: " + ", ".join(dict.fromkeys(names)) + \
        ". Whoever starts the server can add folders with `streamlit run app.py -- --data-dir DIR`."


def resolve_user_path(text: str, *, kind: str | None = "file", extra: Iterable[Path] = ()) -> Path:
    """A path typed or picked by a user, resolved (symlinks too) and checked
    against :func:`allowed_roots`; raises
    :class:`chandra.paths.PathNotAllowedError` outside them and
    :class:`ChandraError` when it does not exist. Relative paths are taken
    relative to the repository (where ``sample_audio/`` is)."""
    from chandra.paths import resolve_allowed

    return resolve_allowed(text, allowed_roots(extra), kind=kind, base=REPO_ROOT)


def sample_files() -> list[Path]:
    """Audio files shipped in ``sample_audio/``."""
    from chandra.audio import SUPPORTED_EXTENSIONS

    if not SAMPLE_DIR.is_dir():
        return []
    return sorted(p for p in SAMPLE_DIR.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS)


def resolve_model_source(text: str | None) -> str | None:
    """The "model name or local directory" of a neural encoder: a hub name
    (looked up in the local model cache only) is kept as it is; anything
    that is a path (absolute, ``./``, ``../``, ``~``, or existing relative to
    the server's folder) must lie inside the allowed roots, since the
    encoder would read it (and, with trust_remote_code, run its code)."""
    text = (text or "").strip()
    if not text:
        return None
    # A hub name is "name" or "org/name"; anything else is read as a path.
    hub_name = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?", text) is not None
    if hub_name and not (REPO_ROOT / text).exists() and not Path(text).exists():
        return text
    from chandra.paths import resolve_allowed

    # Inside the roots but missing is left to the encoder, which says what it looked for.
    path = resolve_allowed(text, allowed_roots(), must_exist=False, base=REPO_ROOT)
    if path.exists() and not path.is_dir():
        raise ChandraError(f"{text}: a model must be a directory (with config.json), not a file")
    return str(path)


def resolve_user_dir(text: str) -> Path:
    """A folder typed by a user (see :func:`resolve_user_path`) whose entries
    also all resolve inside the allowed roots, so a symlink placed in an
    allowed folder cannot lead a reader of that folder outside."""
    from chandra.paths import resolve_allowed

    folder = resolve_user_path(text, kind="dir")
    roots = allowed_roots()
    for child in folder.iterdir():
        resolve_allowed(child, roots, must_exist=False)
    return folder


def save_upload(name: str, data: bytes, *, kind: str = "audio") -> Path:
    """Check and store an upload (every page uses this one saver): audio is
    decoded (header and first seconds) now, so a bad file is refused here;
    the file is kept content-addressed under the uploads folder
    (:func:`chandra.uploads.store_upload`). A refused upload leaves nothing."""
    from chandra.uploads import store_upload

    limit = st.get_option("server.maxUploadSize")
    return store_upload(upload_dir(), name, data, kind=kind,
                        max_bytes=int(limit) * 1024 * 1024 if limit else None)


def save_uploads(uploads: Iterable[Any], outcomes: dict) -> tuple[list[Path], list[str]]:
    """Several uploads (e.g. the takes of a corpus), each checked and stored
    by :func:`save_upload`; the outcome of each is kept in ``outcomes`` by
    the upload's ``file_id``, so a rerun neither hashes nor decodes it again.

    Returns
    -------
    (paths, errors)
        The stored files in upload order, and one line per refused upload
        ("name: why"); a refused upload leaves nothing and does not stop the others.
    """
    paths, errors = [], []
    for upload in uploads or []:
        outcome = outcomes.get(upload.file_id)
        if outcome is None:
            try:
                outcome = {"path": str(save_upload(upload.name, upload.getvalue()))}
            except ChandraError as exc:
                outcome = {"error": f"{upload.name}: {exc}"}
            outcomes[upload.file_id] = outcome
        if "error" in outcome:
            errors.append(outcome["error"])
        else:
            paths.append(Path(outcome["path"]))
    return paths, errors


# ---------------------------------------------------------------------------
# the current run
# ---------------------------------------------------------------------------


def _valid_run_id(run_id: str) -> bool:
    return bool(_RUN_ID.match(run_id)) and run_id != UPLOAD_DIRNAME


def set_current_run(run_id: str | None) -> None:
    """Make ``run_id`` this session's run (session state and URL)."""
    if run_id is None:
        st.session_state.pop("run_id", None)
        if "run" in st.query_params:
            del st.query_params["run"]
        return
    st.session_state["run_id"] = run_id
    st.query_params["run"] = run_id


def current_run():
    """This session's :class:`~chandra.rundir.RunDirectory`, or None.

    The ``?run=`` query parameter wins over session state (a pasted URL or a
    reload), then session state (page navigation may drop the query), and
    the two are kept in step.
    """
    from chandra.rundir import RunDirectory

    run_id = st.query_params.get("run") or st.session_state.get("run_id")
    if not run_id:
        return None
    if not _valid_run_id(str(run_id)):
        st.warning(f"'{run_id}' is not a run id.")
        set_current_run(None)
        return None
    path = runs_root() / str(run_id)
    from chandra.paths import is_within

    real_root = Path(os.path.realpath(runs_root()))
    if (path.is_symlink() or not is_within(Path(os.path.realpath(path)), real_root)
            or not (path / "run.json").is_file()):
        st.warning(f"Run '{run_id}' does not exist under {runs_root()}.")
        set_current_run(None)
        return None
    if st.session_state.get("run_id") != run_id or st.query_params.get("run") != run_id:
        set_current_run(str(run_id))
    try:
        return RunDirectory(path)
    except ChandraError as exc:
        show_error(exc)
        return None


def home_link(label: str = "Go to the Home page") -> None:
    """A link to the home page (plain markdown where page links are not
    available, e.g. a page run on its own)."""
    try:
        st.page_link("app.py", label=label, icon=":material/home:")
    except Exception:  # noqa: BLE001 - page registry absent when a page runs alone
        st.markdown(f"[{label}](/)")


def require_run():
    """The current run, or a note with a link home and ``st.stop()``."""
    run = current_run()
    if run is None:
        st.info("No run selected. Choose audio and parameters on the Home page and start a run, "
                "or pick an existing run there.")
        home_link()
        st.stop()
    return run


def stages_stamp(meta: dict) -> str:
    """A short hash that changes whenever a stage's result changes (not on
    mere progress updates), for cache keys."""
    payload = {s: (i.get("status"), i.get("hash"), i.get("finished")) for s, i in meta.get("stages", {}).items()}
    payload["_ledger"] = meta.get("ledger", [])
    payload["_config"] = meta.get("config")
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@st.cache_resource(max_entries=6, show_spinner=False)
def _cached_state(run_path: str, stamp: str):
    from chandra.rundir import RunDirectory

    return RunDirectory(run_path).load_state()


def load_state(run):
    """The run's :class:`~chandra.pipeline.RunState`, shared read-only
    across reruns and sessions until a stage changes."""
    return _cached_state(str(run.path), stages_stamp(run.meta()))


def page_state(run):
    """Load ``run``'s state for a page and caption the page with it; a
    broken run shows its error in place and stops this page only."""
    try:
        state = load_state(run)
    except ChandraError as exc:
        show_error(exc)
        st.stop()
    run_caption(run, state)
    return state


def run_stamp(run) -> str:
    """Cache key part for derived data of ``run``."""
    return stages_stamp(run.meta())


def stage_status(run) -> dict[str, dict]:
    """``run.status()``, with a "running" stage whose job is gone (the
    server restarted mid-run) shown as "interrupted"."""
    status = run.status()
    if not job_running(run):
        for info in status.values():
            if info.get("status") == "running":
                info["status"] = "interrupted"
    return status


def require_stage(run, stage: str, *, label: str | None = None) -> bool:
    """True when ``stage`` has results to show; otherwise a warning naming
    the stage to run (and a link home)."""
    status = stage_status(run)
    info = status.get(stage, {})
    s = info.get("status", "not run")
    if s == "done":
        return True
    if s == "stale":
        st.info(f"The '{stage}' stage is stale (an upstream parameter changed); showing its previous "
                f"results. Re-run it on the Home page.")
        return True
    what = label or f"the '{stage}' stage"
    if s == "failed":
        st.error(f"{what[0].upper() + what[1:]} failed: {info.get('error') or 'unknown error'}")
    elif s == "running":
        st.info(f"{what[0].upper() + what[1:]} is running; this page fills in when it is done.")
    else:
        st.warning(f"{what[0].upper() + what[1:]} has not run yet (status: {s}). Run '{stage}' on the Home page.")
    home_link()
    return False


# ---------------------------------------------------------------------------
# errors and findings
# ---------------------------------------------------------------------------


def show_error(exc: BaseException, *, context: str | None = None) -> None:
    """Render an error in place (the page carries on).

    A :class:`ChandraError` is a readable one-liner; anything else also
    shows its type and traceback in an expander.
    """
    from chandra.errors import shown

    prefix = f"{context}: " if context else ""
    if isinstance(exc, ChandraError):
        st.error(f"{prefix}{shown(exc)}", icon=":material/block:")
    else:
        st.error(f"{prefix}{type(exc).__name__}: {shown(exc)}", icon=":material/block:")
        with st.expander("details"):
            st.exception(exc)


def _as_dict(f: Any) -> dict:
    return dict(f) if isinstance(f, dict) else f.to_dict()


def run_findings(run, ledger: list | None = None) -> list[dict]:
    """Findings over the run's ledger (computed now, so they follow the
    ledger) merged with those stored at save time (which also saw the
    provenance); errors first."""
    meta = run.meta()
    ledger = meta.get("ledger", []) if ledger is None else ledger
    found: list[dict] = []
    try:
        from chandra.findings import ledger_findings

        found = [_as_dict(f) for f in ledger_findings(ledger)]
    except ChandraError as exc:
        found = [{"severity": "error", "code": "FINDINGS_FAILED", "stage": None, "message": str(exc)}]
    except ImportError:
        from chandra.figures.stages import lost_fields

        found = [{k: v for k, v in f.items() if k in ("severity", "code", "stage", "message")}
                 for f in lost_fields(ledger)]
    seen = {(f.get("code"), f.get("stage"), f.get("message")) for f in found}
    try:
        stage_findings = run.stage_findings()  # failed / cancelled stages count too
    except ChandraError:
        stage_findings = []
    for f in list(meta.get("findings", []) or []) + stage_findings:
        key = (f.get("code"), f.get("stage"), f.get("message"))
        if key not in seen:
            seen.add(key)
            found.append(f)
    from chandra.findings import sort_findings

    return sort_findings(found)


def _finding_text(f: dict) -> str:
    """Code, stage and technical message, then what it means for the music and what to do."""
    from chandra.findings import explain

    guide = explain(f.get("code"))
    where = f" · {f['stage']}" if f.get("stage") else ""
    return (f"**{f.get('code')}**{where} — {f.get('message')}\n\n"
            f"**What it means:** {f.get('meaning') or guide['meaning']}\n\n"
            f"**What to do:** {f.get('action') or guide['action']}")


def render_findings(findings: list[dict], *, codes: tuple[str, ...] | None = None, empty: str | None = None) -> None:
    """Errors as ``st.error``, warnings as ``st.warning``, info folded away.

    Each finding shows its code, stage and technical message, one sentence
    on what it means for the music and one on what to do
    (:data:`chandra.findings.GUIDE`); the numbers it was built from (its
    evidence) are one click away in an expander.
    """
    shown = [f for f in findings if codes is None or f.get("code") in codes]
    if not shown:
        if empty:
            st.success(empty)
        return
    infos = []
    for f in shown:
        text = _finding_text(f)
        if f.get("severity") == "error":
            st.error(text, icon=":material/error:")
        elif f.get("severity") == "warning":
            st.warning(text, icon=":material/warning:")
        else:
            infos.append(f)
            continue
        if f.get("evidence"):
            with st.expander(f"Evidence: {f.get('code')}" + (f" · {f['stage']}" if f.get("stage") else "")):
                st.json(f.get("evidence"), expanded=True)
    if infos:
        with st.expander(f"{len(infos)} informational finding(s)"):
            for f in infos:
                st.markdown(_finding_text(f))
                if f.get("evidence"):
                    st.json(f.get("evidence"), expanded=False)


# ---------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------


def audio_player(y: np.ndarray, sr: int, start: float, end: float, *, caption: str | None = None,
                 autoplay: bool = False) -> np.ndarray:
    """Play ``y[start:end]`` (seconds). The clip is sliced here because
    ``st.audio``'s own start/end round to whole seconds. ``autoplay`` starts
    it at once (for a clip the user just picked)."""
    from chandra.figures.stages import slice_signal

    clip = slice_signal(y, sr, start, end)
    if caption:
        st.caption(caption)
    if clip.size == 0:
        st.caption(f"(empty clip {start:.3f}–{end:.3f} s)")
    else:
        st.audio(clip, sample_rate=int(sr), autoplay=bool(autoplay))
    return clip


def field_matrix_section(ledger: list, *, findings: list | None = None, files: list | None = None,
                         key: str) -> bool:
    """The ledger's stage x field matrix; for a corpus (two or more takes and
    per-file ledger sections) a "split per file" toggle draws one matrix per
    take, in tabs. Returns True when split."""
    from chandra.figures.diagnostics import field_matrix_figure

    files = list(files or [])
    split = False
    if len(files) > 1 and any(isinstance(e, dict) and isinstance(e.get("per_file"), list) for e in ledger or []):
        split = st.toggle("split per file", key=f"{key}_split",
                          help="One matrix per take, from the ledger's per-file counts: a field lost in one take "
                               "shows in that take's matrix.")
    if not split:
        st.plotly_chart(field_matrix_figure(ledger, findings=findings), width="stretch", key=key)
        return False
    from chandra.figures.corpus import take_field_matrices

    matrices = take_field_matrices(ledger, files, findings=findings)
    for k, (tab, (name, fig)) in enumerate(zip(st.tabs([name for name, _ in matrices]), matrices)):
        with tab:
            st.plotly_chart(fig, width="stretch", key=f"{key}_take{k}")
    return True


def take_picker(files: list, *, key: str = "take", label: str = "take") -> int:
    """A selectbox of a corpus's takes (index · name · duration); the choice
    is kept in ``session_state[key]`` across pages."""
    from chandra.corpus_view import take_label

    options = list(range(len(files)))
    current = st.session_state.get(key)
    if current not in options:
        st.session_state[key] = 0
    return int(st.selectbox(label, options, key=key, format_func=lambda k: take_label({**files[k], "take": k}),
                            help="The corpus's takes in training order; the page shows the chosen take as it "
                                 "shows a one-file run."))


# ---------------------------------------------------------------------------
# background jobs
# ---------------------------------------------------------------------------

_queue_configured = False


def job_queue():
    """The process-wide training queue, sized once from ``--max-jobs`` /
    ``$CHANDRA_MAX_JOBS`` (default: one job per two cores)."""
    global _queue_configured
    from chandra import jobs

    queue = jobs.default_queue()
    if not _queue_configured:
        _queue_configured = True
        wanted = server_args().max_jobs
        if wanted is not None:
            jobs.configure(wanted)
        # One job process started and warmed up now, while the user picks a file: the first
        # Run all after a server start then runs at the speed of the next ones.
        jobs.prestart_workers(1)
    return queue


def start_job(run, stages: str | list[str] = "all") -> bool:
    """Queue ``stages`` of ``run`` (see :func:`chandra.jobs.submit_run`).
    False when the run already has a queued or running job."""
    from chandra.jobs import JobBusyError, submit_run

    try:
        submit_run(run, stages, queue=job_queue())
    except JobBusyError:
        return False
    return True


def _job_key(run) -> str:
    return os.path.realpath(run.path)


def job_for(run):
    """The run's latest :class:`chandra.jobs.Job` in this server, or None."""
    return job_queue().get(_job_key(run))


def job_running(run) -> bool:
    """True while the run's job is queued or running."""
    job = job_for(run)
    return bool(job is not None and job.alive)


def job_queued(run) -> bool:
    job = job_for(run)
    return bool(job is not None and job.status == "queued")


def cancel_job(run) -> bool:
    """Cancel the run's job: a queued job leaves the queue at once, a running
    one stops at its next progress report (also across processes, through
    the run's ``cancel`` file)."""
    job = job_for(run)
    if job is not None and job.status == "running":
        run.request_cancel()
    return job_queue().cancel(_job_key(run))


def wait_for_job(run, timeout: float = 60.0) -> bool:
    """Block until the run's job ends (tests); True when it ended."""
    return job_queue().wait(_job_key(run), timeout)


# ---------------------------------------------------------------------------
# page chrome
# ---------------------------------------------------------------------------


PAGES_DIR = REPO_ROOT / "pages"


def page_title(path: Path) -> str:
    """A page's name in the sidebar, as streamlit derives it from its file:
    ``pages/5_Oracle.py`` -> "Oracle", ``app.py`` -> "Home"."""
    if path.name == "app.py":
        return "Home"
    return re.sub(r"^\d+[_ -]*", "", path.stem).replace("_", " ").strip() or path.stem


def page_files() -> list[Path]:
    """The dashboard's pages in sidebar order: ``app.py`` (Home), then
    ``pages/*.py`` by their numeric prefix (new pages appear by themselves)."""
    def order(p: Path) -> tuple[float, str]:
        m = re.match(r"^(\d+)", p.name)
        return (int(m.group(1)) if m else float("inf"), p.name)

    pages = sorted(PAGES_DIR.glob("*.py"), key=order) if PAGES_DIR.is_dir() else []
    return [REPO_ROOT / "app.py", *[p for p in pages if not p.name.startswith("_")]]


def sidebar_navigation() -> None:
    """The page list in the sidebar, with the entry page called "Home"
    (``client.showSidebarNavigation`` is off in ``.streamlit/config.toml``).
    A page run on its own (no page registry, as in some tests) gets none."""
    with st.sidebar:
        for path in page_files():
            rel = path.relative_to(REPO_ROOT).as_posix()
            try:
                st.page_link(rel, label=page_title(path), icon=":material/home:" if rel == "app.py" else None)
            except Exception:  # noqa: BLE001 - page registry absent when a page runs alone
                return


def page_setup(title: str, *, icon: str = "🎛️") -> None:
    st.set_page_config(page_title=f"{title} · chandra", page_icon=icon, layout="wide")
    sidebar_navigation()


def run_caption(run, state=None) -> None:
    """One line naming the run and its audio; also in the sidebar."""
    meta = run.meta()
    text = f"Run **{run.run_id}** · {meta.get('audio_name', '?')}"
    if state is not None and state.duration:
        text += f" · {state.duration:.1f} s"
    st.caption(text)
    with st.sidebar:
        st.caption(f"Current run: `{run.run_id}`")


# ---------------------------------------------------------------------------
# comparison sources (Compare page)
# ---------------------------------------------------------------------------

#: The real MusicHal 9000 model (DESIGN §5), offered as an example when the shared folder is there.
REFERENCE_MUSICHAL = REPO_ROOT.parent / "shared" / "reference" / "musichal_base_model_test_error_fix.json"


def compare_folders() -> list[str]:
    """Run and trace folders under the runs folder, newest first."""
    root = runs_root()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _valid_run_id(p.name)
             and ((p / "run.json").is_file() or (p / "index.json").is_file())]
    marker = {p: (p / "run.json") if (p / "run.json").is_file() else (p / "index.json") for p in found}
    found.sort(key=lambda p: marker[p].stat().st_mtime, reverse=True)
    return [p.name for p in found]


def model_uploads() -> list[str]:
    """Model files in the uploads folder (as ``<digest>/<name>``), newest first."""
    from chandra.uploads import MODEL_EXTENSIONS

    folder = upload_dir()
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*/*") if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [f"{p.parent.name}/{p.name}" for p in files]


def compare_source_path(spec: str) -> Path:
    """The path behind a comparison source as written in the page's URL.

    ``run:<name>``
        A run or trace folder under the runs folder.
    ``upload:<file>``
        A model file in the uploads folder.
    ``path:<server path>``
        A model file, run or trace anywhere inside :func:`allowed_roots`.
    ``example:musichal``
        The MusicHal reference model, when present.

    Raises
    ------
    ChandraError
        Unknown prefix, a name with path separators, or a missing or
        disallowed path.
    """
    kind, _, value = (spec or "").partition(":")
    if kind == "run":
        if not _valid_run_id(value):
            raise ChandraError(f"'{value}' is not a run or trace name")
        path = runs_root() / value
        if not ((path / "run.json").is_file() or (path / "index.json").is_file()):
            raise ChandraError(f"no run or trace '{value}' under {runs_root()}")
        return path
    if kind == "upload":
        digest, _, name = value.partition("/")
        if not (digest and name) or any(part in ("", ".", "..") or part != Path(part).name or part.startswith(".")
                                        for part in (digest, name)):
            raise ChandraError(f"'{value}' is not an uploaded file name")
        path = upload_dir() / digest / name
        if not path.is_file():
            raise ChandraError(f"no uploaded file '{value}'")
        return path
    if kind == "path":
        return resolve_user_path(value, kind=None, extra=[REFERENCE_MUSICHAL])
    if kind == "example" and value == "musichal":
        if not REFERENCE_MUSICHAL.is_file():
            raise ChandraError("the MusicHal reference model is not on this machine")
        return REFERENCE_MUSICHAL
    raise ChandraError(f"'{spec}' is not a comparison source (run:, upload:, path: or example:musichal)")


def source_stamp(path: Path) -> float:
    """Modification time that changes when a comparison source changes (cache key)."""
    for name in ("run.json", "index.json"):
        if (path / name).is_file():
            return (path / name).stat().st_mtime
    return path.stat().st_mtime


# ---------------------------------------------------------------------------
# token identity across pages (Audio, Features, Vocabulary)
# ---------------------------------------------------------------------------

#: Session key of the token singled out on the stage pages (shared by them).
HIGHLIGHT_KEY = "highlight_token"


def token_picker(counts, *, key: str, label: str = "highlight token", allow_none: bool = True,
                 help: str | None = None, container=None) -> int | None:
    """A selectbox of tokens, most used first ("token 5 · 123 segments"),
    whose choice is shared by the stage pages: picking a token on one page
    highlights it on the others (``session_state[HIGHLIGHT_KEY]``).

    With ``allow_none`` the first option is "none"; without it the default
    is the most used token.
    """
    from chandra.figures.stages import token_order

    counts = np.asarray(counts, dtype=np.int64)
    options: list[int | None] = ([None] if allow_none else []) + [int(k) for k in token_order(counts)]
    if not options:
        return None
    shared = st.session_state.get(HIGHLIGHT_KEY)
    wanted = shared if shared in options else (None if allow_none else options[0])
    if st.session_state.get(key) not in options or st.session_state.get(f"_{key}_shared") != shared:
        st.session_state[key] = wanted  # follow a choice made on another page
    st.session_state[f"_{key}_shared"] = shared

    def _share() -> None:  # only a user's choice is shared, never a page's default
        st.session_state[HIGHLIGHT_KEY] = st.session_state[key]
        st.session_state[f"_{key}_shared"] = st.session_state[key]

    where = container if container is not None else st
    return where.selectbox(label, options, key=key, help=help, on_change=_share,
                           format_func=lambda k: "none" if k is None else f"token {k} · {int(counts[k])} segments")


# --------------------------------------------------------------------------- a model file to work on (Generate, Play)


def run_of_model(model_path: Path):
    """The run whose ``model.chandra`` ``model_path`` is (a resolved path
    directly inside the runs folder), else None."""
    from chandra.rundir import RunDirectory

    root = Path(os.path.realpath(runs_root()))
    folder = model_path.parent
    if model_path.name != "model.chandra" or folder.parent != root or folder.is_symlink() \
            or not (folder / "run.json").is_file():
        return None
    try:
        return RunDirectory(folder)
    except ChandraError:
        return None


def outputs_dir(model_path: Path, name: str) -> Path:
    """``<runs>/<run>/<name>`` for a run's model, else ``<runs>/_<name>``
    (never next to a model elsewhere)."""
    run = run_of_model(model_path)
    if run is not None:
        return run.path / name
    return Path(os.path.realpath(runs_root())) / f"_{name}"


def choose_model_path(*, model_key: str, input_key: str) -> str | None:
    """The "Model file" box with a button for the current run's model; the
    typed path (stripped) or None, with a hint and a Home link when empty."""
    run = current_run()
    run_model = run.model_path() if run is not None else None
    if input_key not in st.session_state:
        start = st.session_state.get(model_key) or ""
        if not start and run_model is not None and run_model.exists():
            start = str(run_model)
        st.session_state[input_key] = start
    if run_model is not None and run_model.exists() and st.session_state[input_key] != str(run_model):
        if st.button("Use the current run's model", help=str(run_model)):
            st.session_state[input_key] = str(run_model)
    typed = st.text_input("Model file", key=input_key, placeholder="model.chandra of a run, or any model file",
                          help=roots_hint())
    st.session_state[model_key] = typed.strip()
    if not typed.strip():
        if run is None:
            st.info("No current run. Train one on the Home page, or type the path of a model file.")
        else:
            st.info("The current run has no saved model yet: run all stages (including 'save') on the Home page.")
        home_link()
    return typed.strip() or None


def open_chosen_model(path_text: str, load: Any) -> tuple[Path, Any]:
    """Resolve a typed model path inside the allowed roots and load it with
    ``load(path, mtime, size)`` (the page's cached loader); on failure show
    the message in place and stop the page."""
    try:
        model_path = resolve_user_path(path_text)
        stat = model_path.stat()
        return model_path, load(str(model_path), stat.st_mtime, stat.st_size)
    except FileNotFoundError:
        st.error(f"{path_text}: no such file")
        st.stop()
    except (ChandraError, OSError, ValueError) as exc:
        show_error(exc)
        st.stop()
    raise AssertionError("unreachable")  # st.stop() raises
