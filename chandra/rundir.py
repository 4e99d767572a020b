"""Run directories: a training run's intermediates on disk.

The dashboard runs stages one at a time (possibly in a background thread),
and any page, reload or second browser tab must see the same results, so
every stage's output is persisted under ``<root>/<run_id>/``::

    run.json            config, per-stage status/time/hash/error, ledger,
                        summaries, findings, job (queued / running / …)
    run.lock            the lock file every change of run.json holds
    progress.json       the running stage's progress (not in run.json)
    signal.npy          float32 mono signal
    segments.npz        Segments arrays
    raw_features.npy    encoder output (n, d)
    features.npy        normalised features (n, d')
    tokens.npy          int64 (n,)
    centers.npy         vocabulary centres
    vocabulary.json     fitted vocabulary summary (params, metrics)
    vocabulary_state.json + vocabulary_state.npz
                        the fitted GestureVocabulary (get_state / from_state)
    harmony.json        per-segment consonance / ratios
    events.json         events
    oracle.json + oracle_<name>.npy
    model.chandra       the saved model (after "save")
    cancel              present while a cancel is requested

A *corpus run* (:meth:`RunDirectory.create_corpus`) holds several takes:
``run.json`` has ``kind: "corpus"`` and ``inputs`` (one row per take: path,
name, sha256, label) and ``audio_sha256`` is the corpus hash (SHA-256 of the
takes' hashes in order, as in the model's ``provenance["input"]``). It is
trained as one job (:func:`chandra.corpus.train_corpus`); its results are
stored in the same files as a one-file run's, laid end to end, with times in
*corpus* seconds (a take's offset added) in ``segments.npz`` and ``signal.npy``
holding the takes one after another (the model's audio), plus::

    takes.npy           int64 (n_segments,): take of every segment
    files.json          the model's file table (``Model.files()``), with
                        ``offset_s`` and ``offset_samples`` of each take

Nothing here is pickled; arrays are ``.npy``/``.npz`` loaded with
``allow_pickle=False``, and every write is atomic.

Run metadata and concurrency
----------------------------
``run.json`` is changed only by a locked read-modify-write
(:meth:`RunDirectory.update_meta`): a per-run ``threading.RLock`` for the
threads of one process, and an exclusive ``fcntl.flock`` on ``run.lock`` for
other processes (a dashboard and a CLI, two servers on one runs folder).
Reads need no lock: every write replaces the file atomically, so a reader
sees the old or the new document, never a mix. Each writer re-reads the
current document inside the lock and changes only its own keys, so a
config change or a "generated" ledger entry made while a stage finishes in
another thread or process is kept. Progress ticks never touch ``run.json``:
they go to ``progress.json`` (replaced atomically, not fsynced, at most four
times a second).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

try:  # POSIX; elsewhere only the threads of one process are serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

import numpy as np

from chandra.errors import ChandraError
from chandra.io_utils import atomic_write, dump_json_atomic, sha256_file
from chandra.pipeline import STAGE_DEPENDENCIES, STAGES, RunState, TrainConfig, run_stage, stage_hash
from chandra.progress import Cancelled

__all__ = ["RunDirectory", "list_runs", "STATUS_NOT_RUN", "STATUS_DONE", "STATUS_STALE", "STATUS_FAILED",
           "STATUS_RUNNING", "STATUS_CANCELLED", "STAGE_FAILED", "STAGE_CANCELLED"]

STATUS_NOT_RUN = "not run"
STATUS_RUNNING = "running"
STATUS_DONE = "done"
STATUS_STALE = "stale"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"

#: Finding codes for stages that did not finish (counted beside the ledger's findings).
STAGE_FAILED = "STAGE_FAILED"
STAGE_CANCELLED = "STAGE_CANCELLED"

#: Seconds between two progress writes (the last tick of a stage is always written).
PROGRESS_INTERVAL_S = 0.25


class _RunLock:
    """Exclusive access to one run's metadata: a re-entrant thread lock plus,
    at the outermost level, ``flock`` on ``run.lock`` (a fresh descriptor per
    acquisition, so other processes wait too)."""

    def __init__(self, path: Path):
        self.file = path / "run.lock"
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None

    def __enter__(self) -> "_RunLock":
        self.rlock.acquire()
        try:
            if self.depth == 0 and fcntl is not None:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self.fd = fd
            self.depth += 1
        except BaseException:
            self.rlock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.depth -= 1
            if self.depth == 0 and self.fd is not None:
                fd, self.fd = self.fd, None
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        finally:
            self.rlock.release()


_locks: dict[str, _RunLock] = {}
_locks_guard = threading.Lock()


def _run_lock(path: Path) -> _RunLock:
    key = os.path.realpath(path)
    with _locks_guard:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = _RunLock(Path(key))
        return lock


def _reset_locks_after_fork() -> None:
    # A forked child must not inherit a parent's held thread locks or its
    # flock descriptors (which would share the parent's lock).
    global _locks_guard
    _locks.clear()
    _locks_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


class RunDirectory:
    """A persisted training run.

    Parameters
    ----------
    path : path
        The run's own directory (``<root>/<run_id>``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "run.json").exists():
            raise ChandraError(f"{self.path}: not a chandra run directory (no run.json)")
        self._state: RunState | None = None
        self._state_mtime: float | None = None

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(cls, root: str | os.PathLike, audio_path: str | os.PathLike, config: TrainConfig | None = None,
               *, run_id: str | None = None) -> "RunDirectory":
        """Make a new run for ``audio_path`` under ``root``."""
        audio_path = Path(audio_path).resolve()
        if not audio_path.is_file():
            raise ChandraError(f"{audio_path}: no such audio file")
        config = config or TrainConfig()
        config.validate()
        return cls._new(root, run_id, config, audio_path=str(audio_path), audio_name=audio_path.name,
                        audio_sha256=sha256_file(audio_path))

    @classmethod
    def _new(cls, root: str | os.PathLike, run_id: str | None, config: TrainConfig, **fields: Any) -> "RunDirectory":
        """Create the run folder and its first ``run.json`` (``fields`` describe the input)."""
        run_id = run_id or (_dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
        path = Path(root) / run_id
        path.mkdir(parents=True, exist_ok=False)
        meta = {"run_id": run_id, "created": _now()}
        meta.update(fields)
        meta.update({
            "config": config.to_dict(),
            "stages": {name: {"status": STATUS_NOT_RUN} for name in STAGES},
            "ledger": [],
            "summaries": {},
            "findings": [],
            "job": None,
        })
        dump_json_atomic(meta, path / "run.json")
        return cls(path)

    @classmethod
    def create_corpus(cls, root: str | os.PathLike, inputs, config: TrainConfig | None = None,
                      *, run_id: str | None = None) -> "RunDirectory":
        """Make a new run for a corpus of takes under ``root``.

        Parameters
        ----------
        root : path
        inputs : sequence of path or chandra.corpus.CorpusFile
            The takes in order (e.g. from :func:`chandra.corpus.collect_inputs`);
            each must be an existing file. Recorded in ``run.json`` with its
            SHA-256.
        config : TrainConfig, optional
        run_id : str, optional
        """
        from chandra.corpus import CorpusFile, corpus_sha256

        files = [item if isinstance(item, CorpusFile) else CorpusFile(path=os.fspath(item)) for item in inputs]
        if not files:
            raise ChandraError("no audio given: choose files or a folder with audio files in it")
        rows = []
        for item in files:
            path = Path(item.path).resolve()
            if not path.is_file():
                raise ChandraError(f"{item.path}: no such audio file")
            rows.append({"path": str(path), "name": path.name, "sha256": sha256_file(path), "label": item.label})
        config = config or TrainConfig()
        config.validate()
        names = ", ".join(r["name"] for r in rows[:3]) + (", …" if len(rows) > 3 else "")
        return cls._new(root, run_id, config, kind="corpus", inputs=rows, audio_path=rows[0]["path"],
                        audio_name=f"corpus of {len(rows)} takes ({names})",
                        audio_sha256=corpus_sha256([r["sha256"] for r in rows]))

    @property
    def is_corpus(self) -> bool:
        """True for a run of several takes (:meth:`create_corpus`)."""
        return self.meta().get("kind") == "corpus"

    def inputs(self) -> list[dict]:
        """The takes of a corpus run as recorded at creation (path, name, sha256, label);
        a one-file run gives its one file."""
        meta = self.meta()
        if meta.get("kind") == "corpus":
            return [dict(row) for row in meta.get("inputs") or []]
        return [{"path": meta.get("audio_path"), "name": meta.get("audio_name"), "sha256": meta.get("audio_sha256"),
                 "label": None}]

    def corpus_files(self) -> list[dict]:
        """The trained corpus's file table (``files.json``: the model's
        ``provenance["files"]`` rows with ``offset_s`` and ``offset_samples``),
        or ``[]`` before training (and for a one-file run)."""
        target = self.path / "files.json"
        if not target.is_file():
            return []
        value = json.loads(target.read_text(encoding="utf-8"))
        return value if isinstance(value, list) else []

    def segment_takes(self) -> np.ndarray | None:
        """Take of every segment of a trained corpus run (int64), else None."""
        target = self.path / "takes.npy"
        return _load_npy(target) if target.is_file() else None

    # ------------------------------------------------------------------ metadata

    @property
    def run_id(self) -> str:
        return self.path.name

    def meta(self) -> dict:
        """The current ``run.json`` (read fresh from disk)."""
        try:
            with open(self.path / "run.json", encoding="utf-8") as fh:
                return json.load(fh)
        except json.JSONDecodeError as exc:
            raise ChandraError(f"{self.path / 'run.json'}: malformed JSON ({exc})") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this run's metadata lock (threads and processes); re-entrant."""
        with _run_lock(self.path):
            yield

    def update_meta(self, change: Callable[[dict], Any]) -> dict:
        """Locked read-modify-write of ``run.json``.

        ``change(meta)`` edits the current document in place (read inside
        the lock, so nothing written meanwhile by another thread or process
        is lost); the result is written atomically and returned.
        """
        with self.locked():
            meta = self.meta()
            change(meta)
            dump_json_atomic(meta, self.path / "run.json")
            return meta

    def _update_meta(self, **changes: Any) -> dict:
        return self.update_meta(lambda meta: meta.update(changes))

    def _set_stage(self, stage: str, **info: Any) -> None:
        def change(meta: dict) -> None:
            meta["stages"][stage] = {**meta["stages"].get(stage, {}), **info}

        self.update_meta(change)

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.meta()["config"])

    def set_config(self, config: TrainConfig) -> None:
        """Change the options; stages whose inputs changed become stale."""
        config.validate()
        self._update_meta(config=config.to_dict())

    # ------------------------------------------------------------------ progress and job

    def _progress_file(self) -> Path:
        return self.path / "progress.json"

    def write_progress(self, progress: dict | None) -> None:
        """Replace the progress record (``None`` removes it). Not fsynced and
        not locked: progress is advisory, and the file is replaced whole."""
        target = self._progress_file()
        if progress is None:
            target.unlink(missing_ok=True)
            return
        tmp = self.path / f".progress.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            tmp.write_text(json.dumps(progress), encoding="utf-8")
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)  # a missed tick is harmless

    def progress(self) -> dict | None:
        """The running stage's progress ``{"stage", "done", "total", "time"}``
        (and ``note``, e.g. "compiling (first run only)", while one applies),
        or None."""
        try:
            value = json.loads(self._progress_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def set_job(self, job: dict | None) -> None:
        """Record the run's job state in ``run.json`` (e.g. ``{"status":
        "queued", "position": 3, "stages": "all"}``); see :mod:`chandra.jobs`."""
        self._update_meta(job=job)

    def job(self) -> dict | None:
        """The job state last recorded in ``run.json``, or None."""
        value = self.meta().get("job")
        return value if isinstance(value, dict) else None

    def stage_findings(self) -> list[dict]:
        """Findings for stages that did not finish: one error
        (:data:`STAGE_FAILED`) per failed stage with its error message, one
        warning (:data:`STAGE_CANCELLED`) per cancelled stage."""
        out: list[dict] = []
        status = self.status()
        if self.is_corpus:
            # A corpus trains as one job: its stages fail (or stop) together, with one error; said once.
            for code, wanted, severity, verb in ((STAGE_FAILED, STATUS_FAILED, "error", "failed"),
                                                 (STAGE_CANCELLED, STATUS_CANCELLED, "warning", "was cancelled")):
                stages = [s for s, info in status.items() if info.get("status") == wanted]
                for error in dict.fromkeys(status[s].get("error") for s in stages):
                    mine = [s for s in stages if status[s].get("error") == error]
                    text = f": {error or 'unknown error'}" if wanted == STATUS_FAILED else ""
                    out.append({"severity": severity, "code": code, "stage": mine[0],
                                "message": f"the corpus training {verb} ({', '.join(mine)}){text}",
                                "evidence": {"error": error, "stages": mine,
                                             "finished": status[mine[0]].get("finished")}})
            return out
        for stage, info in status.items():
            if info.get("status") == STATUS_FAILED:
                out.append({"severity": "error", "code": STAGE_FAILED, "stage": stage,
                            "message": f"the {stage} stage failed: {info.get('error') or 'unknown error'}",
                            "evidence": {"error": info.get("error"), "finished": info.get("finished")}})
            elif info.get("status") == STATUS_CANCELLED:
                out.append({"severity": "warning", "code": STAGE_CANCELLED, "stage": stage,
                            "message": f"the {stage} stage was cancelled before it finished",
                            "evidence": {"error": info.get("error")}})
        return out

    def status(self) -> dict[str, dict]:
        """Per stage: status (not run / running / done / stale / failed /
        cancelled), seconds, error, headline summary."""
        meta = self.meta()
        config = TrainConfig.from_dict(meta["config"])
        out: dict[str, dict] = {}
        for stage in STAGES:  # pipeline order: dependencies come first
            info = dict(meta["stages"].get(stage, {"status": STATUS_NOT_RUN}))
            if info.get("status") == STATUS_DONE:
                # The hash covers this stage's options and, recursively, its
                # upstream stages' options; a dependency that is itself no
                # longer done makes this result stale too.
                current = stage_hash(config, stage, audio_sha256=meta["audio_sha256"])
                deps_ok = all(out[d]["status"] == STATUS_DONE for d in STAGE_DEPENDENCIES[stage])
                if info.get("hash") != current or not deps_ok:
                    info["status"] = STATUS_STALE
            out[stage] = info
        return out

    def is_done(self, stage: str) -> bool:
        return self.status()[stage]["status"] == STATUS_DONE

    # ------------------------------------------------------------------ state I/O

    def _persist(self, state: RunState, stage: str) -> None:
        p = self.path
        if stage == "load":
            _save_npy(p / "signal.npy", state.signal)
        elif stage == "segment":
            with atomic_write(p / "segments.npz") as fh:
                np.savez(fh, **state.segments.to_arrays())
            dump_json_atomic(state.segments.params, p / "segments_params.json")
        elif stage == "encode":
            _save_npy(p / "raw_features.npy", state.raw_features)
            dump_json_atomic(state.encoder_provenance, p / "encoder.json")
        elif stage == "vocabulary":
            vocab = state.vocabulary
            _save_npy(p / "features.npy", state.features)
            _save_npy(p / "tokens.npy", state.tokens)
            _save_npy(p / "centers.npy", np.asarray(vocab.cluster_centers_, dtype=np.float32))
            # The fitted estimator itself, so a reloaded run's vocabulary
            # predicts and transforms like the one that was fitted.
            meta, arrays = vocab.get_state()
            with atomic_write(p / "vocabulary_state.npz") as fh:
                np.savez(fh, **{name: np.asarray(a) for name, a in arrays.items()})
            dump_json_atomic(meta, p / "vocabulary_state.json")
            dump_json_atomic({"params": vocab.get_params(), "n_tokens": int(vocab.n_tokens_),
                              "fit_metrics": vocab.fit_metrics_,
                              "effective": getattr(vocab, "effective_params_", {})}, p / "vocabulary.json")
        elif stage == "harmony":
            dump_json_atomic(state.harmony, p / "harmony.json")
        elif stage == "events":
            dump_json_atomic(state.events, p / "events.json", indent=None)
        elif stage == "oracle":
            arrays = state.oracle.to_arrays()
            for name, arr in arrays.items():
                _save_npy(p / f"oracle_{name}.npy", arr)
            dump_json_atomic({"meta": state.oracle.to_meta(), "arrays": sorted(arrays),
                              "threshold_curve": state.threshold_curve}, p / "oracle.json")

    def _state_stamp(self) -> tuple[int, int, int]:
        st = (self.path / "run.json").stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load_state(self) -> RunState:
        """Rebuild a :class:`RunState` from the files of the stages that are
        done (stale stages are loaded too, so pages can still show them)."""
        meta = self.meta()
        stamp = self._state_stamp()
        if self._state is not None and self._state_mtime == stamp:
            return self._state
        from chandra.segment import Segments

        p = self.path
        state = RunState(audio_path=meta["audio_path"], config=TrainConfig.from_dict(meta["config"]),
                         audio_sha256=meta["audio_sha256"])
        done = {s for s, info in meta["stages"].items() if info.get("status") == STATUS_DONE}
        if "load" in done and (p / "signal.npy").exists():
            state.signal = _load_npy(p / "signal.npy")
            state.sample_rate = int(meta["summaries"].get("load", {}).get("sample_rate", state.config.sample_rate))
            state.duration = len(state.signal) / float(state.sample_rate)
        if "segment" in done and (p / "segments.npz").exists():
            with np.load(p / "segments.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            params = json.loads((p / "segments_params.json").read_text()) if (p / "segments_params.json").exists() else {}
            state.segments = Segments.from_arrays(arrays, params=params)
        if "encode" in done and (p / "raw_features.npy").exists():
            state.raw_features = _load_npy(p / "raw_features.npy")
            state.encoder_provenance = json.loads((p / "encoder.json").read_text())
        if "vocabulary" in done and (p / "tokens.npy").exists():
            state.features = _load_npy(p / "features.npy")
            state.tokens = _load_npy(p / "tokens.npy")
            state.vocabulary = _load_vocabulary(p, state.raw_features)
        if "harmony" in done and (p / "harmony.json").exists():
            state.harmony = json.loads((p / "harmony.json").read_text())
        if "events" in done and (p / "events.json").exists():
            state.events = json.loads((p / "events.json").read_text())
        if "oracle" in done and (p / "oracle.json").exists():
            from chandra.oracle import Oracle

            info = json.loads((p / "oracle.json").read_text())
            arrays = {name: _load_npy(p / f"oracle_{name}.npy") for name in info["arrays"]}
            state.oracle = Oracle.from_arrays(info["meta"], arrays)
            state.threshold_curve = info.get("threshold_curve")
        if "save" in done and (p / "model.chandra").exists():
            state.saved_path = str(p / "model.chandra")
        state.ledger = list(meta.get("ledger", []))
        state.timings = {s: info["seconds"] for s, info in meta["stages"].items() if "seconds" in info}
        state.summaries = dict(meta.get("summaries", {}))
        self._state, self._state_mtime = state, stamp
        return state

    def record_ledger_entry(self, entry: dict) -> None:
        """Add (or replace) one ledger entry, e.g. the "generated" stage after
        an improvisation, keeping the canonical stage order. A locked
        read-modify-write: a stage finishing meanwhile keeps it."""
        def change(meta: dict) -> None:
            meta["ledger"] = _merge_ledger(meta.get("ledger", []), [entry])

        self.update_meta(change)

    def model_path(self) -> Path:
        return self.path / "model.chandra"

    # ------------------------------------------------------------------ execution

    def request_cancel(self) -> None:
        (self.path / "cancel").touch()

    def _progress_writer(self, cancel_file: Path, should_cancel: Callable[[], bool] | None,
                         progress: Callable[[str, int, int], None] | None, *,
                         extra: Callable[[], dict]) -> Callable[[str, int, int], None]:
        """The progress callback of a run: stops it when cancelled (``Cancelled``),
        writes ``progress.json`` at most every :data:`PROGRESS_INTERVAL_S` and at
        the end of each stage (with ``extra()``'s keys), and forwards to ``progress``."""
        last_write = [0.0]

        def on_progress(stage: str, done: int, total: int) -> None:
            if cancel_file.exists() or (should_cancel is not None and should_cancel()):
                raise Cancelled(f"cancelled during {stage}")
            now = time.monotonic()
            if now - last_write[0] > PROGRESS_INTERVAL_S or done >= total:
                last_write[0] = now
                self.write_progress({"stage": stage, "done": int(done), "total": int(total), "time": time.time(),
                                     **extra()})
            if progress is not None:
                progress(stage, done, total)

        return on_progress

    def execute(self, stages: str | list[str] = "all", *, progress=None,
                should_cancel: Callable[[], bool] | None = None) -> dict:
        """Run ``stages`` ("all", "stale" — every stage not done — or a list)
        in pipeline order, persisting each as it finishes.

        Progress goes to ``progress.json`` (see :meth:`progress`) so another
        thread, page or process can poll it without touching ``run.json``. A
        ``cancel`` file (:meth:`request_cancel`) or ``should_cancel()``
        returning True stops the run at the next progress report. Errors
        are recorded on the failing stage and re-raised.

        Each finished stage is recorded by a locked read-modify-write that
        changes only what the stage produced (its status, its ledger
        entries and summary, the invalidation of its dependents), so options
        changed or ledger entries added meanwhile are kept. A stage run
        with options that changed while it ran is recorded under the
        options it ran with, and so shows as stale.
        """
        if self.is_corpus:
            # A corpus trains as one unit (the feature cache makes a re-run
            # cheap): whatever stages were asked for, all of them run.
            return self._execute_corpus(progress=progress, should_cancel=should_cancel)
        if stages == "all":
            todo = list(STAGES)
        elif stages == "stale":
            status = self.status()
            todo = [s for s in STAGES if status[s]["status"] != STATUS_DONE]
        else:
            todo = [s for s in STAGES if s in stages]
        cancel_file = self.path / "cancel"
        cancel_file.unlink(missing_ok=True)
        meta = self.meta()
        config = TrainConfig.from_dict(meta["config"])
        audio_sha256 = meta["audio_sha256"]
        self._state = None
        state = self.load_state()
        state.config = config
        current_note: dict[str, str | None] = {"note": None}
        on_progress = self._progress_writer(cancel_file, should_cancel, progress,
                                            extra=lambda: {"note": current_note["note"]} if current_note["note"]
                                            else {})

        def on_note(stage: str, text: str) -> None:
            # Shown beside the running stage until it ends (e.g. "compiling (first run only)").
            current_note["note"] = text
            self.write_progress({"stage": stage, "done": 0, "total": 0, "time": time.time(), "note": text})
            from chandra.progress import note

            note(progress, stage, text)

        on_progress.note = on_note  # type: ignore[attr-defined]
        on_progress.clear_note = lambda: current_note.__setitem__("note", None)  # type: ignore[attr-defined]

        try:
            for stage in todo:
                if should_cancel is not None and should_cancel():
                    raise Cancelled(f"cancelled before {stage}")
                on_progress.clear_note()
                self._run_one(state, stage, todo, config, audio_sha256, on_progress, cancel_file)
        finally:
            self.write_progress(None)
            self._state = None
        return self.status()

    def _run_one(self, state: RunState, stage: str, todo: list[str], config: TrainConfig, audio_sha256: str,
                 on_progress, cancel_file: Path) -> None:
        self._set_stage(stage, status=STATUS_RUNNING, started=_now(), error=None)
        if stage == "save":
            # The model is new: an earlier improvisation no longer describes it.
            state.ledger = [e for e in state.ledger if e.get("stage") != "generated"]
        # References (not ids, which a freed object's successor may reuse) to
        # what was there before, to tell what this stage produced.
        ledger_before = list(state.ledger)
        summaries_before = dict(state.summaries)
        generated_before = next((e for e in self.meta().get("ledger", []) if e.get("stage") == "generated"), None)
        try:
            run_stage(state, stage, progress=on_progress,
                      output=self.path / "model.chandra" if stage == "save" else None)
            self._persist(state, stage)
        except Cancelled as exc:
            self._set_stage(stage, status=STATUS_CANCELLED, error=str(exc), finished=_now())
            cancel_file.unlink(missing_ok=True)
            raise
        except Exception as exc:
            self._set_stage(stage, status=STATUS_FAILED, error=f"{type(exc).__name__}: {exc}"
                            if not isinstance(exc, ChandraError) else str(exc), finished=_now())
            raise
        produced = [e for e in state.ledger if not any(e is b for b in ledger_before)]
        summaries = {k: v for k, v in state.summaries.items() if summaries_before.get(k) is not v}
        findings = None
        if stage == "save":
            from chandra.findings import ledger_findings

            findings = [dict(f) if isinstance(f, dict) else f.to_dict() for f in
                        ledger_findings(state.ledger, provenance=state.model.provenance,
                                        vocabulary=state.model.vocabulary)]

        def change(meta: dict) -> None:
            meta["stages"][stage] = {"status": STATUS_DONE, "seconds": state.timings.get(stage),
                                     "hash": stage_hash(config, stage, audio_sha256=audio_sha256),
                                     "finished": _now(), "error": None}
            # A re-run stage invalidates the stages that read its output
            # (directly or transitively) unless they are about to run too.
            for later in _dependents(stage):
                if later not in todo and meta["stages"][later].get("status") == STATUS_DONE:
                    meta["stages"][later]["hash"] = "invalidated"
            ledger = meta.get("ledger", [])
            if stage == "save" and generated_before is not None:
                ledger = [e for e in ledger if e != generated_before]
            meta["ledger"] = _merge_ledger(ledger, produced)
            meta["summaries"] = {**meta.get("summaries", {}), **summaries}
            if findings is not None:
                meta["findings"] = findings

        self.update_meta(change)

    # ------------------------------------------------------------------ corpus runs

    def _execute_corpus(self, *, progress=None, should_cancel: Callable[[], bool] | None = None) -> dict:
        """Train a corpus run as one job (:func:`chandra.corpus.train_corpus`).

        Every stage shows "running" while the corpus trains (none has a result
        of its own until the corpus is built); ``progress.json`` carries the
        phase ("files" done/total, then "vocabulary", "events", "oracle",
        "save"). At the end the results are stored in the run's files (see the
        module notes) and every stage is done; an error fails every stage
        with its message (naming the file when one take is at fault), a
        cancel request stops at the next progress report.
        """
        from chandra.corpus import CorpusFile, train_corpus
        from chandra.feature_cache import FeatureCache

        cancel_file = self.path / "cancel"
        cancel_file.unlink(missing_ok=True)
        meta = self.meta()
        config = TrainConfig.from_dict(meta["config"])
        corpus_sha = meta["audio_sha256"]
        rows = list(meta.get("inputs") or [])
        files = [CorpusFile(path=row["path"], label=row.get("label")) for row in rows]
        started = _now()

        def start(meta: dict) -> None:
            for stage in STAGES:
                meta["stages"][stage] = {**meta["stages"].get(stage, {}), "status": STATUS_RUNNING,
                                         "started": started, "error": None}

        self.update_meta(start)
        self._state = None
        on_progress = self._progress_writer(cancel_file, should_cancel, progress,
                                            extra=lambda: {"corpus": True, "n_files": len(files)})

        def finish(status: str, error: str) -> None:
            def change(meta: dict) -> None:
                for stage in STAGES:
                    if meta["stages"].get(stage, {}).get("status") == STATUS_RUNNING:
                        meta["stages"][stage] = {**meta["stages"][stage], "status": status, "error": error,
                                                 "finished": _now()}

            self.update_meta(change)

        try:
            if not files:
                raise ChandraError("this corpus run names no takes")
            cache = FeatureCache.default()
            result = train_corpus(files, config, output=self.path / "model.chandra", cache=cache,
                                  progress=on_progress)
            for row, trained in zip(rows, result.model.files()):
                if trained.get("sha256") != row.get("sha256"):
                    raise ChandraError(f"{row['path']}: the file changed since this run was made "
                                       "(its content hash differs); start a new run")
            self._persist_corpus(result, config, corpus_sha)
        except Cancelled as exc:
            finish(STATUS_CANCELLED, str(exc))
            cancel_file.unlink(missing_ok=True)
            raise
        except Exception as exc:
            finish(STATUS_FAILED, str(exc) if isinstance(exc, ChandraError) else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.write_progress(None)
            self._state = None
        return self.status()

    def _persist_corpus(self, result, config: TrainConfig, corpus_sha: str) -> None:
        """Store a trained corpus in the run's files and mark every stage done."""
        from chandra.pipeline import RunState
        from chandra.segment import Segments

        cs, model = result.state, result.model
        analyses = list(cs.analyses)
        sample_rate = int(analyses[0].sample_rate)
        offsets = np.concatenate(([0], np.cumsum([a.n_samples for a in analyses]))).astype(np.int64)
        parts = {name: [] for name in ("id", "start", "end", "rms", "f0", "centroid")}
        for k, a in enumerate(analyses):
            arrays = a.segments.to_arrays()
            shift = float(offsets[k]) / sample_rate
            for name in parts:
                values = np.asarray(arrays[name])
                parts[name].append(values + shift if name in ("start", "end") else values)
        joined = {name: np.concatenate(values) if values else np.zeros(0) for name, values in parts.items()}
        joined["id"] = np.arange(len(joined["start"]), dtype=np.int64)
        signal = model.audio
        if signal is None and all(a.signal is not None for a in analyses):
            signal = np.concatenate([a.signal for a in analyses])
        state = RunState(audio_path=str(analyses[0].path), config=config, audio_sha256=corpus_sha)
        state.signal = None if signal is None else np.asarray(signal, dtype=np.float32)
        state.sample_rate = sample_rate
        state.duration = float(offsets[-1]) / sample_rate
        state.segments = Segments.from_arrays(joined, params=dict(analyses[0].segments.params))
        state.raw_features = cs.raw_features
        state.encoder_provenance = dict(analyses[0].encoder_provenance or {})
        state.vocabulary = cs.vocabulary
        state.features = cs.features
        state.tokens = cs.tokens
        state.harmony = [row for a in analyses for row in a.harmony]
        state.events = model.events
        state.oracle = cs.oracle
        state.threshold_curve = cs.threshold_curve
        for stage in STAGES:
            if stage == "save" or (stage == "load" and state.signal is None):
                continue
            self._persist(state, stage)
        if state.signal is None:
            (self.path / "signal.npy").unlink(missing_ok=True)
        _save_npy(self.path / "takes.npy", np.asarray(cs.takes, dtype=np.int64))
        table = []
        for k, row in enumerate(model.files()):
            table.append({**row, "take": k, "offset_samples": int(offsets[k]),
                          "offset_s": float(offsets[k]) / sample_rate})
        dump_json_atomic(table, self.path / "files.json")

        cons = np.asarray([float(h.get("consonance") or 0.0) for h in state.harmony], dtype=np.float64)
        cache_counts: dict[str, int] = {}
        for a in analyses:
            cache_counts[a.feature_cache] = cache_counts.get(a.feature_cache, 0) + 1
        summaries = {
            "load": {"duration": state.duration, "sample_rate": sample_rate, "n_files": len(analyses)},
            "segment": {"n_segments": int(len(state.segments))},
            "encode": {"dim": int(cs.raw_features.shape[1]), "encoder": config.encoder,
                       "feature_cache": cache_counts},
            "vocabulary": dict(cs.summaries.get("vocabulary") or {}),
            "harmony": {"consonance_mean": float(cons.mean()) if cons.size else 0.0,
                        "consonance_std": float(cons.std()) if cons.size else 0.0},
            "events": {"n_events": len(model.events)},
            "oracle": dict(cs.summaries.get("oracle") or {}),
            "corpus": result.summary(),
        }
        seconds: dict[str, float] = {}
        for a in analyses:
            for name, value in (a.timings or {}).items():
                seconds[name] = seconds.get(name, 0.0) + float(value)
        seconds.update({k: float(v) for k, v in cs.timings.items()})
        finished = _now()

        def change(meta: dict) -> None:
            for stage in STAGES:
                meta["stages"][stage] = {"status": STATUS_DONE, "seconds": seconds.get(stage),
                                         "hash": stage_hash(config, stage, audio_sha256=corpus_sha),
                                         "finished": finished, "error": None}
            meta["ledger"] = _merge_ledger([], list(cs.ledger))
            meta["summaries"] = summaries
            meta["findings"] = list(result.findings)

        self.update_meta(change)


def _merge_ledger(ledger: list[dict], entries: list[dict]) -> list[dict]:
    """``ledger`` with each of ``entries`` replacing the entry of its stage,
    in canonical stage order (unknown stages last, in their order)."""
    from chandra.ledger import LEDGER_STAGES

    order = {name: i for i, name in enumerate(LEDGER_STAGES)}
    replaced = {e.get("stage") for e in entries}
    out = [e for e in ledger if e.get("stage") not in replaced] + list(entries)
    out.sort(key=lambda e: order.get(e.get("stage"), len(order)))
    return out


def _dependents(stage: str) -> list[str]:
    """Stages that read ``stage``'s output, directly or transitively."""
    out: list[str] = []
    for later in STAGES:
        if any(dep == stage or dep in out for dep in STAGE_DEPENDENCIES[later]):
            out.append(later)
    return out


def _load_vocabulary(path: Path, raw_features: np.ndarray | None):
    """The fitted :class:`~chandra.vocabulary.GestureVocabulary` of a run.

    Runs record its :meth:`get_state`; runs written before that kept only
    the centres and a summary, from which the estimator is rebuilt exactly
    when nothing else was fitted (L2 or no normalisation, no PCA). Otherwise
    a :class:`~chandra.errors.VocabularyError` asks for the stage to be run
    again.
    """
    from chandra.errors import VocabularyError
    from chandra.vocabulary import GestureVocabulary

    state_json, state_npz = path / "vocabulary_state.json", path / "vocabulary_state.npz"
    if state_json.exists() and state_npz.exists():
        meta = json.loads(state_json.read_text(encoding="utf-8"))
        with np.load(state_npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return GestureVocabulary.from_state(meta, arrays)
    # A run from before the state was persisted.
    info = json.loads((path / "vocabulary.json").read_text(encoding="utf-8"))
    params = dict(info.get("params") or {})
    centers = _load_npy(path / "centers.npy")
    if params.get("normalisation") not in ("l2", "none") or params.get("pca_components") or raw_features is None:
        raise VocabularyError(f"{path.name}: this run's vocabulary was saved by an older chandra without its "
                              "fitted normalisation; run the vocabulary stage again")
    rows = np.asarray(raw_features, dtype=np.float64)
    fit_metrics = dict(info.get("fit_metrics") or {})
    meta = {
        "params": params,
        "effective_params": dict(info.get("effective") or {}),
        "fit_metrics": fit_metrics,
        "n_tokens_": int(info["n_tokens"]),
        "n_features_in_": int(rows.shape[1]),
        "n_samples_fit_": int(rows.shape[0]),
        "n_zero_rows_": int(np.count_nonzero(~np.any(rows != 0, axis=1))),
        "n_distinct_rows_": int(len(np.unique(rows, axis=0))),
        "inertia_": float(fit_metrics.get("inertia", float("nan"))),
    }
    return GestureVocabulary.from_state(meta, {"centers": centers})


def list_runs(root: str | os.PathLike) -> list[RunDirectory]:
    """Runs under ``root``, newest first (folders without ``run.json``, such
    as uploads, are not runs)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for p in root.iterdir():
        if p.is_dir() and not p.is_symlink() and (p / "run.json").is_file():
            try:
                runs.append((RunDirectory(p), RunDirectory(p).meta().get("created", "")))
            except ChandraError:
                runs.append((RunDirectory(p), ""))
    return [r for r, _ in sorted(runs, key=lambda rc: rc[1], reverse=True)]
